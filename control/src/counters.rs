//! Perfmon-style counters, kept per core and summed when read.
//!
//! Each worker owns one [`CoreCounters`]; only that worker writes it, so
//! an increment is a relaxed load and store of a cache line no other core
//! writes (no locked read-modify-write, no contention). Readers (the admin
//! API) load every core's values and add them up; a read may be a few
//! increments behind, never torn.
//!
//! Latency is recorded into fixed log-linear buckets of atomics (the same
//! single-writer rule) and turned into an `hdrhistogram` only when read,
//! so percentiles come from HdrHistogram without a lock on the request
//! path.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

/// Adds to a counter only the calling worker writes.
#[inline]
pub fn bump(c: &AtomicU64, n: u64) {
    if cfg!(feature = "counters") {
        c.store(c.load(Relaxed).wrapping_add(n), Relaxed);
    }
}

/// Why a request failed, for `failed requests` by reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailReason {
    BackendUnreachable,
    BackendTimeout,
    BackendError,
    Disabled,
    AuthRequired,
    ClientError,
    /// No connector of the app's group holds a tunnel.
    NoConnector,
    /// The client's address is outside the app's `access.source_cidrs`.
    Forbidden,
}

impl FailReason {
    pub const ALL: [FailReason; 8] = [
        FailReason::BackendUnreachable,
        FailReason::BackendTimeout,
        FailReason::BackendError,
        FailReason::Disabled,
        FailReason::AuthRequired,
        FailReason::ClientError,
        FailReason::NoConnector,
        FailReason::Forbidden,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            FailReason::BackendUnreachable => "backend_unreachable",
            FailReason::BackendTimeout => "backend_timeout",
            FailReason::BackendError => "backend_error",
            FailReason::Disabled => "disabled",
            FailReason::AuthRequired => "auth_required",
            FailReason::ClientError => "client_error",
            FailReason::NoConnector => "no_connector",
            FailReason::Forbidden => "forbidden",
        }
    }
}

/// Why a sign-in, or a request's credentials, failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignInFailure {
    /// A callback whose `state` was missing, expired, replayed or another
    /// app's.
    State,
    /// The provider sent the user back with an error (e.g. access denied).
    ProviderError,
    /// The code exchange at the token endpoint failed.
    Exchange,
    /// The id_token did not verify.
    IdToken,
    /// The provider has not been reached.
    ProviderUnreachable,
    /// A bearer token was refused.
    BearerToken,
    /// A session cookie did not open (tampered, another app's, expired,
    /// its key rotated out).
    SessionCookie,
    /// Renewing a session with its refresh token failed (the session then
    /// ends at its expiry).
    Renewal,
}

impl SignInFailure {
    pub const ALL: [SignInFailure; 8] = [
        SignInFailure::State,
        SignInFailure::ProviderError,
        SignInFailure::Exchange,
        SignInFailure::IdToken,
        SignInFailure::ProviderUnreachable,
        SignInFailure::BearerToken,
        SignInFailure::SessionCookie,
        SignInFailure::Renewal,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SignInFailure::State => "state",
            SignInFailure::ProviderError => "provider_error",
            SignInFailure::Exchange => "code_exchange",
            SignInFailure::IdToken => "id_token",
            SignInFailure::ProviderUnreachable => "provider_unreachable",
            SignInFailure::BearerToken => "bearer_token",
            SignInFailure::SessionCookie => "session_cookie",
            SignInFailure::Renewal => "renewal",
        }
    }
}

/// Why link translation left a response body alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TranslateSkip {
    /// HEAD, 1xx, 204, 304: no body.
    NoBody,
    /// 206: a byte range of a body cannot be translated on its own.
    Partial,
    /// `Cache-Control: no-transform`.
    NoTransform,
    /// Not a text type (images, downloads, unlabelled bodies).
    ContentType,
    /// A charset that is not ASCII-compatible.
    Charset,
    /// Stacked or unknown content codings.
    Encoding,
}

impl TranslateSkip {
    pub const ALL: [TranslateSkip; 6] = [
        TranslateSkip::NoBody,
        TranslateSkip::Partial,
        TranslateSkip::NoTransform,
        TranslateSkip::ContentType,
        TranslateSkip::Charset,
        TranslateSkip::Encoding,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TranslateSkip::NoBody => "no_body",
            TranslateSkip::Partial => "partial_content",
            TranslateSkip::NoTransform => "no_transform",
            TranslateSkip::ContentType => "content_type",
            TranslateSkip::Charset => "charset",
            TranslateSkip::Encoding => "content_encoding",
        }
    }
}

/// Sub-buckets per power of two: values keep about 6% precision.
const SUB: usize = 16;
const BUCKETS: usize = SUB * 41;

/// A lock-free, single-writer latency histogram (microseconds).
pub struct LatencyBuckets {
    counts: Box<[AtomicU64]>,
    sum_us: AtomicU64,
}

impl Default for LatencyBuckets {
    fn default() -> Self {
        LatencyBuckets {
            counts: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            sum_us: AtomicU64::new(0),
        }
    }
}

fn bucket_of(us: u64) -> usize {
    if us < SUB as u64 {
        return us as usize;
    }
    let exp = 63 - us.leading_zeros() as usize; // >= 4
    let sub = ((us >> (exp - 4)) & (SUB as u64 - 1)) as usize;
    ((exp - 3) * SUB + sub).min(BUCKETS - 1)
}

/// The smallest value that falls in bucket `i`.
fn bucket_floor(i: usize) -> u64 {
    if i < SUB {
        return i as u64;
    }
    let exp = i / SUB + 3;
    let sub = (i % SUB) as u64;
    (1u64 << exp) | (sub << (exp - 4))
}

impl LatencyBuckets {
    #[inline]
    pub fn record(&self, us: u64) {
        if cfg!(feature = "counters") {
            bump(&self.counts[bucket_of(us)], 1);
            bump(&self.sum_us, us);
        }
    }

    fn add_into(&self, counts: &mut [u64], sum: &mut u64) {
        for (c, a) in counts.iter_mut().zip(self.counts.iter()) {
            *c += a.load(Relaxed);
        }
        *sum += self.sum_us.load(Relaxed);
    }
}

/// Counters of one app on one core.
#[derive(Default)]
pub struct AppCounters {
    pub requests: AtomicU64,
    pub failed: [AtomicU64; FailReason::ALL.len()],
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    pub backend_latency: LatencyBuckets,
    /// Response bodies link translation went through, and their decoded
    /// bytes.
    pub translated_responses: AtomicU64,
    pub translated_bytes: AtomicU64,
    pub links_translated: AtomicU64,
    pub translate_skipped: [AtomicU64; 6],
    /// Translated responses cut short (bomb guard, corrupt encoding).
    pub translate_failed: AtomicU64,
    /// Completed sign-ins, and failures by reason.
    pub sign_ins: AtomicU64,
    pub sign_in_failures: [AtomicU64; SignInFailure::ALL.len()],
    /// Signed-in users the app's access rules turned away.
    pub policy_denials: AtomicU64,
    /// Sessions whose group list did not fit in the cookie and was cut.
    pub groups_trimmed: AtomicU64,
    /// Sessions renewed with their refresh token.
    pub session_renewals: AtomicU64,
    /// WebSockets relayed, and open now (this core's share; summed on read).
    pub websockets: AtomicU64,
    pub websockets_open: AtomicI64,
}

impl AppCounters {
    #[inline]
    pub fn fail(&self, reason: FailReason) {
        let i = FailReason::ALL
            .iter()
            .position(|r| *r == reason)
            .unwrap_or(0);
        bump(&self.failed[i], 1);
    }

    pub fn sign_in_failed(&self, reason: SignInFailure) {
        let i = SignInFailure::ALL
            .iter()
            .position(|r| *r == reason)
            .unwrap_or(0);
        bump(&self.sign_in_failures[i], 1);
    }

    /// A WebSocket relay starts (`true`) or ends.
    pub fn websocket(&self, open: bool) {
        if cfg!(feature = "counters") {
            let c = &self.websockets_open;
            if open {
                c.store(c.load(Relaxed) + 1, Relaxed);
                bump(&self.websockets, 1);
            } else {
                c.store(c.load(Relaxed) - 1, Relaxed);
            }
        }
    }

    #[inline]
    pub fn translate_skip(&self, reason: TranslateSkip) {
        let i = TranslateSkip::ALL
            .iter()
            .position(|r| *r == reason)
            .unwrap_or(0);
        bump(&self.translate_skipped[i], 1);
    }
}

/// Edge-wide counters of one core.
#[derive(Default)]
pub struct EdgeCounters {
    /// Connections open now (single writer, may go up and down).
    pub active_connections: AtomicI64,
    pub connections_accepted: AtomicU64,
    pub tls_handshakes: AtomicU64,
    pub tls_handshake_failures: AtomicU64,
    /// Requests answered without reaching an app (unknown host, 421, 4xx).
    pub requests_unrouted: AtomicU64,
    pub bad_requests: AtomicU64,
    /// Connections whose handler panicked (each was closed, nothing else).
    pub panics: AtomicU64,
    /// Requests relayed over a tunnel another worker holds.
    pub cross_core_relays: AtomicU64,
    /// Requests sent over a tunnel (any worker's).
    pub tunnel_requests: AtomicU64,
    /// Connections closed on accept: the edge was at `max_connections`.
    pub refused_over_total: AtomicU64,
    /// Connections closed on accept: their source address was at
    /// `max_connections_per_source`.
    pub refused_over_source: AtomicU64,
    /// Requests answered 503 because their source address held
    /// `max_tunnel_streams_per_source` tunnel streams.
    pub refused_tunnel_streams: AtomicU64,
    /// Bearer tokens found in the verified-token cache, and not.
    pub token_cache_hits: AtomicU64,
    pub token_cache_misses: AtomicU64,
}

impl EdgeCounters {
    #[inline]
    pub fn connection_opened(&self) {
        if cfg!(feature = "counters") {
            let c = &self.active_connections;
            c.store(c.load(Relaxed) + 1, Relaxed);
            bump(&self.connections_accepted, 1);
        }
    }
    #[inline]
    pub fn connection_closed(&self) {
        if cfg!(feature = "counters") {
            let c = &self.active_connections;
            c.store(c.load(Relaxed) - 1, Relaxed);
        }
    }
}

/// Milliseconds since this process first asked (a monotonic clock that
/// fits an atomic).
pub fn monotonic_ms() -> u64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    START
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_millis() as u64
}

/// A worker that has not beaten for this long is reported down.
pub const WORKER_SILENT_AFTER: std::time::Duration = std::time::Duration::from_secs(5);

/// Everything one worker counts.
#[derive(Default)]
pub struct CoreCounters {
    pub edge: EdgeCounters,
    /// When the worker last showed it runs ([`monotonic_ms`]); a worker
    /// that died or is stuck stops updating it.
    pub heartbeat_ms: AtomicU64,
    /// Per-app blocks, created when a core first serves an app. Only this
    /// map's shape is locked, and only on that first request per app.
    apps: Mutex<HashMap<String, Arc<AppCounters>>>,
}

impl CoreCounters {
    /// The worker is alive now.
    pub fn beat(&self) {
        self.heartbeat_ms.store(monotonic_ms(), Relaxed);
    }

    /// The block for `app`, created on first use.
    pub fn app(&self, app: &str) -> Arc<AppCounters> {
        let mut map = self.apps.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(app.to_string()).or_default().clone()
    }
}

/// All cores' counters.
#[derive(Default, Clone)]
pub struct Registry {
    cores: Arc<Mutex<Vec<Arc<CoreCounters>>>>,
    /// Identity-provider key sets fetched (control threads write it).
    pub jwks_refreshes: Arc<AtomicU64>,
}

/// Summed counters of one app.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct AppTotals {
    pub requests: u64,
    pub failed: u64,
    pub failed_by_reason: std::collections::BTreeMap<String, u64>,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub backend_latency_count: u64,
    pub backend_latency_sum_ms: f64,
    pub backend_latency_p50_ms: f64,
    pub backend_latency_p90_ms: f64,
    pub backend_latency_p99_ms: f64,
    pub translated_responses: u64,
    pub translated_bytes: u64,
    pub links_translated: u64,
    pub translate_skipped_by_reason: std::collections::BTreeMap<String, u64>,
    pub translate_failed: u64,
    pub sign_ins: u64,
    pub sign_in_failures: u64,
    pub sign_in_failures_by_reason: std::collections::BTreeMap<String, u64>,
    pub policy_denials: u64,
    pub groups_trimmed: u64,
    pub session_renewals: u64,
    pub websockets: u64,
    pub websockets_open: i64,
    /// Backend latency as cumulative counts at [`LATENCY_BOUNDS_S`]
    /// (Prometheus histogram buckets; the last is `+Inf`): two samples
    /// give the latency of the requests between them.
    pub backend_latency_le: Vec<u64>,
}

/// Upper bounds (seconds) of the backend-latency histogram buckets the
/// metrics expose (`+Inf` follows them).
pub const LATENCY_BOUNDS_S: [f64; 16] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];

/// Cumulative counts at each of [`LATENCY_BOUNDS_S`] and `+Inf`. A fine
/// bucket counts at a bound once its lower end is within it: a value is
/// off by at most the fine buckets' ~6% width.
fn cumulative_le(counts: &[u64]) -> Vec<u64> {
    let mut out = vec![0u64; LATENCY_BOUNDS_S.len() + 1];
    for (i, &c) in counts.iter().enumerate() {
        if c == 0 {
            continue;
        }
        let floor_s = bucket_floor(i) as f64 / 1e6;
        for (slot, bound) in out.iter_mut().zip(LATENCY_BOUNDS_S) {
            if floor_s <= bound {
                *slot += c;
            }
        }
        out[LATENCY_BOUNDS_S.len()] += c;
    }
    out
}

/// Summed edge-wide counters.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct EdgeTotals {
    pub active_connections: i64,
    pub connections_accepted: u64,
    pub tls_handshakes: u64,
    pub tls_handshake_failures: u64,
    pub requests_unrouted: u64,
    pub bad_requests: u64,
    pub panics: u64,
    pub cross_core_relays: u64,
    pub tunnel_requests: u64,
    pub refused_over_total: u64,
    pub refused_over_source: u64,
    pub refused_tunnel_streams: u64,
    pub token_cache_hits: u64,
    pub token_cache_misses: u64,
    pub jwks_refreshes: u64,
}

#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Totals {
    pub edge: EdgeTotals,
    pub apps: std::collections::BTreeMap<String, AppTotals>,
}

impl Registry {
    /// For each core: whether it beat within [`WORKER_SILENT_AFTER`], and
    /// how long ago it last did.
    pub fn liveness(&self) -> Vec<(bool, std::time::Duration)> {
        self.liveness_at(monotonic_ms())
    }

    fn liveness_at(&self, now: u64) -> Vec<(bool, std::time::Duration)> {
        self.cores
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|c| {
                let age = std::time::Duration::from_millis(
                    now.saturating_sub(c.heartbeat_ms.load(Relaxed)),
                );
                (age < WORKER_SILENT_AFTER, age)
            })
            .collect()
    }

    /// A new core's counters, included in every later read.
    pub fn add_core(&self) -> Arc<CoreCounters> {
        let core = Arc::new(CoreCounters::default());
        core.beat();
        self.cores
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(core.clone());
        core
    }

    /// Sums every core.
    pub fn totals(&self) -> Totals {
        let cores = self.cores.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let mut t = Totals::default();
        t.edge.jwks_refreshes = self.jwks_refreshes.load(Relaxed);
        let mut lat: HashMap<String, (Vec<u64>, u64)> = HashMap::new();
        for core in &cores {
            let e = &core.edge;
            t.edge.active_connections += e.active_connections.load(Relaxed);
            t.edge.connections_accepted += e.connections_accepted.load(Relaxed);
            t.edge.tls_handshakes += e.tls_handshakes.load(Relaxed);
            t.edge.tls_handshake_failures += e.tls_handshake_failures.load(Relaxed);
            t.edge.requests_unrouted += e.requests_unrouted.load(Relaxed);
            t.edge.bad_requests += e.bad_requests.load(Relaxed);
            t.edge.panics += e.panics.load(Relaxed);
            t.edge.cross_core_relays += e.cross_core_relays.load(Relaxed);
            t.edge.tunnel_requests += e.tunnel_requests.load(Relaxed);
            t.edge.refused_over_total += e.refused_over_total.load(Relaxed);
            t.edge.refused_over_source += e.refused_over_source.load(Relaxed);
            t.edge.refused_tunnel_streams += e.refused_tunnel_streams.load(Relaxed);
            t.edge.token_cache_hits += e.token_cache_hits.load(Relaxed);
            t.edge.token_cache_misses += e.token_cache_misses.load(Relaxed);
            let apps: Vec<(String, Arc<AppCounters>)> = core
                .apps
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            for (name, a) in apps {
                let at = t.apps.entry(name.clone()).or_default();
                at.requests += a.requests.load(Relaxed);
                for (i, r) in FailReason::ALL.iter().enumerate() {
                    let n = a.failed[i].load(Relaxed);
                    at.failed += n;
                    *at.failed_by_reason
                        .entry(r.as_str().to_string())
                        .or_default() += n;
                }
                at.bytes_in += a.bytes_in.load(Relaxed);
                at.bytes_out += a.bytes_out.load(Relaxed);
                at.translated_responses += a.translated_responses.load(Relaxed);
                at.translated_bytes += a.translated_bytes.load(Relaxed);
                at.links_translated += a.links_translated.load(Relaxed);
                at.translate_failed += a.translate_failed.load(Relaxed);
                at.sign_ins += a.sign_ins.load(Relaxed);
                at.policy_denials += a.policy_denials.load(Relaxed);
                at.groups_trimmed += a.groups_trimmed.load(Relaxed);
                at.session_renewals += a.session_renewals.load(Relaxed);
                at.websockets += a.websockets.load(Relaxed);
                at.websockets_open += a.websockets_open.load(Relaxed);
                for (i, r) in SignInFailure::ALL.iter().enumerate() {
                    let n = a.sign_in_failures[i].load(Relaxed);
                    at.sign_in_failures += n;
                    *at.sign_in_failures_by_reason
                        .entry(r.as_str().to_string())
                        .or_default() += n;
                }
                for (i, r) in TranslateSkip::ALL.iter().enumerate() {
                    *at.translate_skipped_by_reason
                        .entry(r.as_str().to_string())
                        .or_default() += a.translate_skipped[i].load(Relaxed);
                }
                let (counts, sum) = lat.entry(name).or_insert_with(|| (vec![0; BUCKETS], 0));
                a.backend_latency.add_into(counts, sum);
            }
        }
        for (name, (counts, sum_us)) in lat {
            let Some(at) = t.apps.get_mut(&name) else {
                continue;
            };
            let mut h = match hdrhistogram::Histogram::<u64>::new(3) {
                Ok(h) => h,
                Err(_) => continue,
            };
            for (i, &c) in counts.iter().enumerate() {
                if c > 0 {
                    let _ = h.record_n(bucket_floor(i).max(1), c);
                }
            }
            at.backend_latency_count = h.len();
            at.backend_latency_sum_ms = sum_us as f64 / 1000.0;
            at.backend_latency_le = cumulative_le(&counts);
            if !h.is_empty() {
                at.backend_latency_p50_ms = h.value_at_quantile(0.5) as f64 / 1000.0;
                at.backend_latency_p90_ms = h.value_at_quantile(0.9) as f64 / 1000.0;
                at.backend_latency_p99_ms = h.value_at_quantile(0.99) as f64 / 1000.0;
            }
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_monotonic_and_tight() {
        let mut last = 0;
        for v in [
            0u64,
            1,
            15,
            16,
            17,
            31,
            32,
            100,
            1000,
            12345,
            1 << 30,
            1 << 40,
        ] {
            let b = bucket_of(v);
            assert!(b >= last, "{v}");
            last = b;
            let floor = bucket_floor(b);
            assert!(floor <= v, "{v}: floor {floor}");
            assert!(v - floor <= v / 16 + 1, "{v}: floor {floor} too far");
        }
    }

    #[test]
    fn totals_sum_every_core() {
        let reg = Registry::default();
        let (a, b) = (reg.add_core(), reg.add_core());
        for core in [&a, &b] {
            let app = core.app("x");
            for ms in 1..=100u64 {
                bump(&app.requests, 1);
                app.backend_latency.record(ms * 1000);
            }
            app.fail(FailReason::BackendTimeout);
            core.edge.connection_opened();
        }
        b.edge.connection_closed();
        let t = reg.totals();
        let x = &t.apps["x"];
        assert_eq!(x.requests, 200);
        assert_eq!(x.failed, 2);
        assert_eq!(x.failed_by_reason["backend_timeout"], 2);
        assert_eq!(t.edge.active_connections, 1);
        assert_eq!(x.backend_latency_count, 200);
        assert!(
            (x.backend_latency_p50_ms - 50.0).abs() < 4.0,
            "{}",
            x.backend_latency_p50_ms
        );
        assert!(
            (x.backend_latency_p99_ms - 99.0).abs() < 7.0,
            "{}",
            x.backend_latency_p99_ms
        );
    }

    #[test]
    fn a_silent_worker_is_reported_down() {
        let r = Registry::default();
        let a = r.add_core();
        let b = r.add_core();
        a.heartbeat_ms.store(10_000, Relaxed);
        b.heartbeat_ms.store(13_000, Relaxed);
        let l = r.liveness_at(16_000);
        assert_eq!((l[0].0, l[1].0), (false, true));
        assert_eq!(l[0].1.as_secs(), 6);
    }
}
