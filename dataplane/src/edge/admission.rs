//! Connection caps, decided when a connection is accepted: at most
//! `max_connections` client connections in all, and at most
//! `max_connections_per_source` from one address. A connection over a cap
//! is closed at once, before a TLS handshake or a byte of buffer is spent
//! on it, and counted.
//!
//! The totals are shared by every worker (an atomic for the whole edge, a
//! sharded map for the sources); they change once per connection, never
//! per request.
#![deny(clippy::disallowed_methods)]

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

const SHARDS: usize = 16;

pub struct Admission {
    total: AtomicUsize,
    max_total: usize,
    sources: [Mutex<HashMap<IpAddr, usize>>; SHARDS],
    max_per_source: usize,
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    OverTotal,
    OverSource,
}

/// A connection's place under the caps, given back when it closes.
pub struct Admitted {
    admission: Arc<Admission>,
    source: IpAddr,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.admission.release(self.source);
    }
}

impl Admission {
    pub fn new(max_total: usize, max_per_source: usize) -> Arc<Admission> {
        Arc::new(Admission {
            total: AtomicUsize::new(0),
            max_total,
            sources: std::array::from_fn(|_| Mutex::new(HashMap::new())),
            max_per_source,
        })
    }

    fn shard(&self, ip: IpAddr) -> &Mutex<HashMap<IpAddr, usize>> {
        let folded = match ip {
            IpAddr::V4(a) => u32::from(a) as usize,
            IpAddr::V6(a) => {
                let n = u128::from(a);
                (n ^ (n >> 64) ^ (n >> 32)) as usize
            }
        };
        &self.sources[folded % SHARDS]
    }

    /// Takes a place for a connection from `source`, or says which cap it
    /// is over.
    pub fn admit(self: &Arc<Self>, source: IpAddr) -> Result<Admitted, Refused> {
        self.admit_within(source, self.max_per_source)
    }

    /// [`Admission::admit`] with a per-source cap decided by the caller.
    pub fn admit_within(
        self: &Arc<Self>,
        source: IpAddr,
        max_per_source: usize,
    ) -> Result<Admitted, Refused> {
        let source = source.to_canonical();
        if self.total.fetch_add(1, Ordering::Relaxed) >= self.max_total {
            self.total.fetch_sub(1, Ordering::Relaxed);
            return Err(Refused::OverTotal);
        }
        let mut map = self.shard(source).lock().unwrap_or_else(|e| e.into_inner());
        let n = map.entry(source).or_insert(0);
        if *n >= max_per_source {
            drop(map);
            self.total.fetch_sub(1, Ordering::Relaxed);
            return Err(Refused::OverSource);
        }
        *n += 1;
        Ok(Admitted {
            admission: self.clone(),
            source,
        })
    }

    fn release(&self, source: IpAddr) {
        let mut map = self.shard(source).lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = map.get_mut(&source) {
            *n -= 1;
            if *n == 0 {
                map.remove(&source);
            }
        }
        drop(map);
        self.total.fetch_sub(1, Ordering::Relaxed);
    }

    /// Connections held now.
    #[cfg(test)]
    pub fn open(&self) -> usize {
        self.total.load(Ordering::Relaxed)
    }
}

/// The default `max_connections`: three quarters of the process's
/// file-descriptor limit, leaving the rest for backend connections,
/// tunnels and files.
pub fn default_max_connections() -> usize {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct it is given and nothing else.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0;
    let soft = if ok && lim.rlim_cur != libc::RLIM_INFINITY {
        lim.rlim_cur as usize
    } else {
        1 << 20
    };
    (soft / 4 * 3).max(16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_hold_and_places_come_back() {
        let a = Admission::new(3, 2);
        let x: IpAddr = "10.0.0.1".parse().unwrap();
        let y: IpAddr = "::ffff:10.0.0.2".parse().unwrap();
        let x1 = a.admit(x).unwrap();
        let _x2 = a.admit(x).unwrap();
        assert_eq!(a.admit(x).err(), Some(Refused::OverSource));
        let _y1 = a.admit(y).unwrap();
        assert_eq!(
            a.admit("10.0.0.3".parse().unwrap()).err(),
            Some(Refused::OverTotal)
        );
        assert_eq!(a.open(), 3);
        drop(x1);
        assert_eq!(a.open(), 2);
        // The IPv4-mapped spelling is the same source.
        assert_eq!(a.admit("10.0.0.2".parse().unwrap()).map(|_| ()), Ok(()));
        let _x3 = a.admit(x).unwrap();
        assert_eq!(a.open(), 3);
    }
}
