//! Pre-authentication as the running edge does it.
//!
//! * [`Auth`] — shared by every worker, kept by control threads: the
//!   identity providers ([`provider`]), the session-cookie keys (persisted
//!   in the state directory, rotated on a schedule, the last three
//!   opening cookies) and the keys that sign identity assertions for
//!   backends.
//! * [`WorkerAuth`] — one per worker: the views of those it serves from,
//!   and caches of opened cookies and verified tokens, so a repeat costs a
//!   lookup rather than a decryption or a signature check.
//! * [`gate`] — the proxy core's policy phase for `oidc` apps.
//!
//! The verification itself (JWT, cookies, access rules) is runtime-free
//! and lives in the control crate.

pub mod assertion;
pub mod fetch;
pub mod gate;
pub mod provider;

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use postern_control::jwt::TokenCache;
use postern_control::policy::Identity;
use postern_control::session::{CookieKeys, Session};
use postern_control::EdgeConfig;
use serde::{Deserialize, Serialize};

use self::assertion::Signer;
use self::provider::{Provider, View};

/// Where the session-cookie keys are kept in the state directory.
pub const KEYS_FILE: &str = "session-keys.json";
/// Opened cookies and verified tokens each worker keeps.
const CACHE_ENTRIES: usize = 8192;
/// Bytes of cookie values and tokens each worker's cache holds at most.
const CACHE_BYTES: usize = 8 * 1024 * 1024;

#[derive(Serialize, Deserialize)]
struct StoredKeys {
    /// Unix seconds of the last rotation.
    rotated_at: u64,
    /// Newest first.
    keys: Vec<StoredKey>,
}

#[derive(Serialize, Deserialize)]
struct StoredKey {
    id: u8,
    key: String,
}

/// A value the control side replaces and workers pick up by version.
pub struct Versioned<T> {
    value: Mutex<Arc<T>>,
    version: AtomicU64,
}

impl<T> Versioned<T> {
    fn new(v: T) -> Versioned<T> {
        Versioned {
            value: Mutex::new(Arc::new(v)),
            version: AtomicU64::new(1),
        }
    }

    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    pub fn get(&self) -> Arc<T> {
        self.value.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn set(&self, v: T) {
        *self.value.lock().unwrap_or_else(|e| e.into_inner()) = Arc::new(v);
        self.version.fetch_add(1, Ordering::AcqRel);
    }
}

/// The edge's pre-authentication state, shared by every worker.
pub struct Auth {
    pub providers: Vec<Arc<Provider>>,
    pub cookie_keys: Versioned<CookieKeys>,
    pub signer: Versioned<Signer>,
    /// Sign-in `state` values already used, until they expire (a replayed
    /// callback is refused even when its sign-in cookie was kept).
    used_states: Mutex<HashMap<String, u64>>,
    pub session_lifetime: u64,
    rotation: Duration,
    /// When the stored keys last rotated (Unix seconds).
    rotated_at: AtomicU64,
    /// Held while a rotation writes the keys file: the schedule and the
    /// admin API never rotate at once.
    rotating: Mutex<()>,
    state_dir: PathBuf,
}

/// Unix seconds.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Auth {
    /// Reads the providers' credentials and the stored cookie keys (or
    /// makes the first). On the starting thread.
    pub fn open(
        cfg: &EdgeConfig,
        state_dir: &Path,
        jwks_refreshes: Arc<AtomicU64>,
    ) -> Result<Arc<Auth>, String> {
        let providers = cfg
            .identity_providers
            .iter()
            .map(|p| Provider::new(p.clone(), jwks_refreshes.clone()).map(Arc::new))
            .collect::<Result<Vec<_>, _>>()?;
        let (keys, rotated_at) = load_keys(state_dir)?;
        Ok(Arc::new(Auth {
            providers,
            cookie_keys: Versioned::new(keys),
            signer: Versioned::new(Signer::generate(None)),
            used_states: Mutex::new(HashMap::new()),
            session_lifetime: cfg.edge.session_lifetime.as_secs(),
            rotation: cfg.edge.session_key_rotation,
            rotated_at: AtomicU64::new(rotated_at),
            rotating: Mutex::new(()),
            state_dir: state_dir.to_path_buf(),
        }))
    }

    /// Starts the control threads: one per provider (discovery and keys),
    /// and the key rotation.
    pub fn start(self: &Arc<Self>) {
        for p in &self.providers {
            let p = p.clone();
            let name = format!("postern-idp-{}", p.cfg.name);
            if let Err(e) = std::thread::Builder::new()
                .name(name)
                .spawn(move || p.refresh_loop())
            {
                tracing::error!(error = %e, "cannot start the identity provider thread");
            }
        }
        if self.providers.is_empty() {
            return;
        }
        let me = self.clone();
        let _ = std::thread::Builder::new()
            .name("postern-keys".into())
            .spawn(move || me.rotation_loop());
    }

    pub fn provider(&self, name: Option<&str>) -> Option<(usize, &Arc<Provider>)> {
        match name {
            Some(n) => self
                .providers
                .iter()
                .enumerate()
                .find(|(_, p)| p.cfg.name == n),
            None if self.providers.len() == 1 => Some((0, &self.providers[0])),
            None => None,
        }
    }

    fn rotation_loop(self: Arc<Self>) {
        loop {
            let due = self
                .rotated_at
                .load(Ordering::Acquire)
                .saturating_add(self.rotation.as_secs());
            let now = now();
            // A process handing over leaves rotation to the new one.
            if now < due || postern_control::store::writes_held() {
                std::thread::sleep(Duration::from_secs(due.saturating_sub(now).clamp(1, 60)));
                continue;
            }
            match self.rotate() {
                Ok(_) => tracing::info!("session and assertion keys rotated on schedule"),
                Err(e) => {
                    tracing::error!(error = %e, "cannot store the rotated session keys; keeping the current ones (retrying in a minute)");
                    std::thread::sleep(Duration::from_secs(60));
                }
            }
        }
    }

    /// Rotates the session-cookie and assertion keys now: a new key seals
    /// from here on, and the last three keep opening cookies. The keys
    /// file is written (and synced) before the new key is used, so a
    /// restart never forgets a key that sealed a cookie. On a control
    /// thread (the schedule's, or the admin API's). Returns the rotation
    /// time.
    pub fn rotate(&self) -> Result<u64, String> {
        let _one = self.rotating.lock().unwrap_or_else(|e| e.into_inner());
        let mut keys = CookieKeys::from_raw(&self.cookie_keys.get().export())
            .unwrap_or_else(|_| CookieKeys::generate());
        keys.rotate();
        let now = now();
        save_keys(&self.state_dir, &keys, now)?;
        self.rotated_at.store(now, Ordering::Release);
        self.cookie_keys.set(keys);
        self.signer.set(Signer::generate(Some(&self.signer.get())));
        Ok(now)
    }

    /// When the keys last rotated and when they next will (Unix seconds).
    pub fn rotation_times(&self) -> (u64, u64) {
        let at = self.rotated_at.load(Ordering::Acquire);
        (at, at.saturating_add(self.rotation.as_secs()))
    }

    /// Marks a sign-in `state` used; false if it already was.
    pub fn spend_state(&self, state: &str, expires: u64) -> bool {
        let mut used = self.used_states.lock().unwrap_or_else(|e| e.into_inner());
        let now = now();
        if used.len() > 100_000 {
            used.retain(|_, e| *e > now);
        }
        used.insert(state.to_string(), expires).is_none()
    }
}

/// The stored keys and when they last rotated; the first key on a first
/// start.
fn load_keys(dir: &Path) -> Result<(CookieKeys, u64), String> {
    let stored: Option<StoredKeys> =
        postern_control::store::load_json(dir, KEYS_FILE).map_err(|e| e.to_string())?;
    let Some(stored) = stored else {
        let keys = CookieKeys::generate();
        let now = now();
        save_keys(dir, &keys, now)?;
        return Ok((keys, now));
    };
    let path = dir.join(KEYS_FILE);
    let mut list = Vec::new();
    for k in &stored.keys {
        let raw = STANDARD
            .decode(&k.key)
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .ok_or_else(|| format!("{}: key {} is not 32 bytes of base64", path.display(), k.id))?;
        list.push((k.id, raw));
    }
    let keys = CookieKeys::from_raw(&list).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok((keys, stored.rotated_at))
}

fn save_keys(dir: &Path, keys: &CookieKeys, rotated_at: u64) -> Result<(), String> {
    let stored = StoredKeys {
        rotated_at,
        keys: keys
            .export()
            .into_iter()
            .map(|(id, raw)| StoredKey {
                id,
                key: STANDARD.encode(raw),
            })
            .collect(),
    };
    postern_control::store::save_json(dir, KEYS_FILE, &stored).map_err(|e| e.to_string())
}

/// An opened session cookie, as cached.
pub struct Opened {
    pub app: Box<str>,
    pub session: Session,
    pub identity: Rc<Identity>,
    /// The identity headers for the backend (with `sso.headers`).
    pub headers: Vec<(&'static str, bytes::Bytes)>,
    /// The last identity assertion signed for it: (expiry, signer
    /// version, token).
    pub assertion: RefCell<Option<(u64, u64, Rc<str>)>>,
    /// A renewal with the session's refresh token has started.
    pub renewing: std::cell::Cell<bool>,
    /// For an older cookie whose session was renewed: the `Set-Cookie`
    /// value that hands the client the renewed one, sent with each
    /// response until the client uses it.
    pub set_cookie: Option<Rc<str>>,
}

/// Opened cookies and verified tokens by value (the value is the key:
/// equality is exact, and the cached entry names the app it opened for),
/// bounded in entries and bytes.
pub struct SessionCache {
    map: HashMap<Box<str>, Rc<Opened>, TailHash>,
    /// Bytes of the cached cookie values and tokens.
    bytes: usize,
}

impl SessionCache {
    fn get(&self, app: &str, value: &str, now: u64) -> Option<Rc<Opened>> {
        let o = self.map.get(value)?;
        (&*o.app == app && now < o.session.expires).then(|| o.clone())
    }

    /// Caches `o` under `value` (replacing what was there).
    pub fn insert(&mut self, value: &str, o: Rc<Opened>, now: u64) {
        if self.map.len() >= CACHE_ENTRIES || self.bytes > CACHE_BYTES {
            self.map.retain(|_, o| o.session.expires > now);
            if self.map.len() >= CACHE_ENTRIES / 2 || self.bytes > CACHE_BYTES / 2 {
                self.map.clear();
            }
            self.bytes = self.map.keys().map(|k| k.len()).sum();
        }
        if self.map.insert(value.into(), o).is_none() {
            self.bytes += value.len();
        }
    }

    fn clear(&mut self) {
        self.map.clear();
        self.bytes = 0;
    }
}

/// Hashes a cached credential by its length and last 32 bytes only, with
/// the standard library's randomly keyed SipHash. A credential ends in its
/// authentication tag or signature, so the tail tells entries apart as
/// well as the whole; and only credentials that opened or verified are
/// ever stored, which nobody can mint with a chosen tail, so the table's
/// buckets cannot be flooded. Lookups hash 32 bytes instead of the 200 of
/// a cookie or the 500 to 1,500 of a token.
#[derive(Default, Clone)]
pub struct TailHash(std::collections::hash_map::RandomState);

pub struct TailHasher(std::collections::hash_map::DefaultHasher);

impl std::hash::BuildHasher for TailHash {
    type Hasher = TailHasher;
    fn build_hasher(&self) -> TailHasher {
        TailHasher(self.0.build_hasher())
    }
}

impl std::hash::Hasher for TailHasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.write_usize(bytes.len());
        self.0.write(&bytes[bytes.len().saturating_sub(32)..]);
    }
    fn finish(&self) -> u64 {
        self.0.finish()
    }
}

/// One worker's view of [`Auth`] and its caches. Only its thread uses it.
pub struct WorkerAuth {
    pub shared: Arc<Auth>,
    keys: RefCell<(u64, Arc<CookieKeys>)>,
    signer: RefCell<(u64, Arc<Signer>)>,
    views: RefCell<Vec<(u64, Option<Arc<View>>)>>,
    /// Verified bearer tokens, per provider.
    pub tokens: RefCell<Vec<TokenCache>>,
    /// Opened session cookies and verified tokens (shared with this
    /// worker's renewal tasks).
    sessions: Rc<RefCell<SessionCache>>,
}

impl WorkerAuth {
    pub fn new(shared: Arc<Auth>) -> WorkerAuth {
        let n = shared.providers.len();
        WorkerAuth {
            keys: RefCell::new((shared.cookie_keys.version(), shared.cookie_keys.get())),
            signer: RefCell::new((shared.signer.version(), shared.signer.get())),
            views: RefCell::new(vec![(0, None); n]),
            tokens: RefCell::new((0..n).map(|_| TokenCache::new(CACHE_ENTRIES)).collect()),
            sessions: Rc::new(RefCell::new(SessionCache {
                map: HashMap::with_hasher(TailHash::default()),
                bytes: 0,
            })),
            shared,
        }
    }

    /// The cookie keys as of the last rotation.
    pub fn keys(&self) -> Arc<CookieKeys> {
        let v = self.shared.cookie_keys.version();
        let mut k = self.keys.borrow_mut();
        if k.0 != v {
            *k = (v, self.shared.cookie_keys.get());
            // Cookies sealed with a key that rotated out must stop opening.
            self.sessions.borrow_mut().clear();
        }
        k.1.clone()
    }

    pub fn signer(&self) -> Arc<Signer> {
        let v = self.shared.signer.version();
        let mut s = self.signer.borrow_mut();
        if s.0 != v {
            *s = (v, self.shared.signer.get());
        }
        s.1.clone()
    }

    pub fn signer_version(&self) -> u64 {
        self.signer.borrow().0
    }

    /// Provider `i`'s keys and endpoints, if it has been reached.
    pub fn view(&self, i: usize) -> Option<Arc<View>> {
        let p = &self.shared.providers[i];
        let v = p.version();
        let mut views = self.views.borrow_mut();
        if views[i].0 != v {
            views[i] = (v, p.view());
        }
        views[i].1.clone()
    }

    /// A cached opened cookie for `app`.
    pub fn cached_session(&self, app: &str, value: &str, now: u64) -> Option<Rc<Opened>> {
        self.sessions.borrow().get(app, value, now)
    }

    pub fn cache_session(&self, value: &str, opened: Opened, now: u64) -> Rc<Opened> {
        let o = Rc::new(opened);
        self.sessions.borrow_mut().insert(value, o.clone(), now);
        o
    }

    /// The cache itself, for a renewal finishing after its request.
    pub fn session_cache(&self) -> Rc<RefCell<SessionCache>> {
        self.sessions.clone()
    }
}
