//! The connector registry: which connectors exist, which group each serves,
//! and whether it is active.
//!
//! A connector is *active* while it holds a tunnel or was seen within
//! `inactive_after` (default 5 minutes), *inactive* after that, and is
//! removed from the registry `removed_after` (default 10 days) without a
//! tunnel, as users of Entra application proxy expect. The registry is
//! persisted in the state directory like the app table; connectors add
//! themselves by registering with an enrollment token.

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::store::{self, StoreError};

pub const CONNECTORS_FILE: &str = "connectors.json";
pub const DEFAULT_INACTIVE_AFTER: Duration = Duration::from_secs(5 * 60);
pub const DEFAULT_REMOVED_AFTER: Duration = Duration::from_secs(10 * 24 * 3600);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectorRecord {
    pub id: String,
    pub host_name: String,
    pub version: String,
    pub group: String,
    pub registered_at: u64,
    /// Unix time of the last heartbeat or tunnel.
    pub last_seen: u64,
    #[serde(default)]
    pub revoked: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Registry {
    pub connectors: Vec<ConnectorRecord>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Active,
    Inactive,
    Revoked,
}

/// How long without a tunnel before a connector is inactive, then removed.
#[derive(Debug, Clone, Copy)]
pub struct Lifetimes {
    pub inactive_after: Duration,
    pub removed_after: Duration,
}

impl Default for Lifetimes {
    fn default() -> Self {
        Lifetimes {
            inactive_after: DEFAULT_INACTIVE_AFTER,
            removed_after: DEFAULT_REMOVED_AFTER,
        }
    }
}

/// A connector as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConnectorInfo {
    #[serde(flatten)]
    pub record: ConnectorRecord,
    pub state: State,
    /// Tunnels open to this edge now.
    pub tunnels: u32,
}

impl Registry {
    pub fn load(dir: &Path) -> Result<Registry, StoreError> {
        Ok(store::load_json(dir, CONNECTORS_FILE)?.unwrap_or_default())
    }

    pub fn save(&self, dir: &Path) -> Result<(), StoreError> {
        store::save_json(dir, CONNECTORS_FILE, self)
    }

    pub fn get(&self, id: &str) -> Option<&ConnectorRecord> {
        self.connectors.iter().find(|c| c.id == id)
    }

    /// Adds a newly registered connector.
    pub fn add(&mut self, record: ConnectorRecord) {
        self.connectors.retain(|c| c.id != record.id);
        self.connectors.push(record);
    }

    /// Marks `id` revoked; returns whether it exists.
    pub fn revoke(&mut self, id: &str) -> bool {
        match self.connectors.iter_mut().find(|c| c.id == id) {
            Some(c) => {
                c.revoked = true;
                true
            }
            None => false,
        }
    }

    /// Records that `id` was seen at `now` (tunnel opened or closed).
    pub fn touch(&mut self, id: &str, now: u64) {
        if let Some(c) = self.connectors.iter_mut().find(|c| c.id == id) {
            c.last_seen = now;
        }
    }

    /// The state of `c` at `now`, given how many tunnels it holds.
    pub fn state(c: &ConnectorRecord, tunnels: u32, now: u64, l: Lifetimes) -> State {
        if c.revoked {
            State::Revoked
        } else if tunnels > 0 || now.saturating_sub(c.last_seen) < l.inactive_after.as_secs() {
            State::Active
        } else {
            State::Inactive
        }
    }

    /// Drops connectors unseen for longer than `removed_after`; returns
    /// whether anything was removed.
    pub fn prune(&mut self, now: u64, l: Lifetimes) -> bool {
        let before = self.connectors.len();
        self.connectors
            .retain(|c| now.saturating_sub(c.last_seen) < l.removed_after.as_secs());
        self.connectors.len() != before
    }

    /// Every connector with its state; `tunnels(id)` counts open tunnels.
    pub fn list(
        &self,
        now: u64,
        l: Lifetimes,
        tunnels: impl Fn(&str) -> u32,
    ) -> Vec<ConnectorInfo> {
        self.connectors
            .iter()
            .filter(|c| now.saturating_sub(c.last_seen) < l.removed_after.as_secs())
            .map(|c| {
                let t = tunnels(&c.id);
                ConnectorInfo {
                    state: Registry::state(c, t, now, l),
                    tunnels: t,
                    record: c.clone(),
                }
            })
            .collect()
    }
}

/// The registry as the running edge keeps it: in memory, read and changed
/// under a short lock that is never held across I/O, and written to the
/// state directory by whoever needs it there. A change an operator or a
/// registration must see persisted ([`Live::change_durably`]) is written
/// before the call returns; activity times ([`Live::change_lazily`]) are
/// written by the next [`Live::flush`], which a control thread calls every
/// second, so a tunnel opening never waits for a disk.
pub struct Live {
    dir: std::path::PathBuf,
    /// The registry, its change count, and whether a lazy change waits.
    inner: std::sync::Mutex<(Registry, u64, bool)>,
    /// Serialises writes; holds the change count last written, so an
    /// older copy never overwrites a newer one.
    written: std::sync::Mutex<u64>,
}

impl Live {
    /// The registry stored in `dir`, from now on kept by this value.
    pub fn open(dir: &Path) -> Result<Live, StoreError> {
        Ok(Live::new(dir, Registry::load(dir)?))
    }

    /// Keeps `registry` (as stored in `dir`).
    pub fn new(dir: &Path, registry: Registry) -> Live {
        Live {
            dir: dir.to_path_buf(),
            inner: std::sync::Mutex::new((registry, 0, false)),
            written: std::sync::Mutex::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (Registry, u64, bool)> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reads the registry (no I/O).
    pub fn read<R>(&self, f: impl FnOnce(&Registry) -> R) -> R {
        f(&self.lock().0)
    }

    /// Changes the registry and writes it before returning. If the write
    /// fails the change stays in memory and is retried by the next flush.
    pub fn change_durably<R>(&self, f: impl FnOnce(&mut Registry) -> R) -> Result<R, StoreError> {
        let (result, copy, count) = {
            let mut g = self.lock();
            let r = f(&mut g.0);
            g.1 += 1;
            g.2 = true;
            (r, g.0.clone(), g.1)
        };
        self.write(&copy, count)?;
        Ok(result)
    }

    /// Changes the registry; the next [`Live::flush`] writes it.
    pub fn change_lazily(&self, f: impl FnOnce(&mut Registry)) {
        let mut g = self.lock();
        f(&mut g.0);
        g.1 += 1;
        g.2 = true;
    }

    /// Writes the registry if a change waits.
    pub fn flush(&self) -> Result<(), StoreError> {
        let (copy, count) = {
            let g = self.lock();
            if !g.2 {
                return Ok(());
            }
            (g.0.clone(), g.1)
        };
        self.write(&copy, count)
    }

    fn write(&self, copy: &Registry, count: u64) -> Result<(), StoreError> {
        let mut written = self.written.lock().unwrap_or_else(|e| e.into_inner());
        if *written >= count {
            return Ok(());
        }
        copy.save(&self.dir)?;
        *written = count;
        drop(written);
        let mut g = self.lock();
        if g.1 == count {
            g.2 = false;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, last_seen: u64) -> ConnectorRecord {
        ConnectorRecord {
            id: id.into(),
            host_name: "host".into(),
            version: "0.1.0".into(),
            group: "default".into(),
            registered_at: 0,
            last_seen,
            revoked: false,
        }
    }

    #[test]
    fn active_inactive_removed() {
        let l = Lifetimes::default();
        let now = 100 * 24 * 3600;
        let mut r = Registry {
            connectors: vec![
                record("fresh", now - 10),
                record("quiet", now - 6 * 60),
                record("gone", now - 11 * 24 * 3600),
            ],
        };
        let list = r.list(now, l, |id| u32::from(id == "quiet"));
        let states: Vec<_> = list
            .iter()
            .map(|c| (c.record.id.as_str(), c.state))
            .collect();
        assert_eq!(
            states,
            [("fresh", State::Active), ("quiet", State::Active)],
            "a tunnel keeps it active"
        );
        let list = r.list(now, l, |_| 0);
        assert_eq!(list[1].state, State::Inactive);
        assert!(r.prune(now, l));
        assert_eq!(r.connectors.len(), 2);
        r.connectors[0].revoked = true;
        assert_eq!(r.list(now, l, |_| 3)[0].state, State::Revoked);
    }

    #[test]
    fn live_changes_reach_the_disk_when_they_must() {
        let dir = std::env::temp_dir().join(format!("postern-live-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let live = Live::open(&dir).unwrap();
        live.change_durably(|r| r.add(record("a", 5))).unwrap();
        assert_eq!(
            Registry::load(&dir).unwrap().connectors.len(),
            1,
            "durable at once"
        );
        live.change_lazily(|r| r.touch("a", 9));
        assert_eq!(
            Registry::load(&dir).unwrap().connectors[0].last_seen,
            5,
            "lazy: not yet"
        );
        assert_eq!(
            live.read(|r| r.get("a").unwrap().last_seen),
            9,
            "but in memory"
        );
        live.flush().unwrap();
        assert_eq!(Registry::load(&dir).unwrap().connectors[0].last_seen, 9);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
