//! What one worker thread measured, and the sum over threads.
//!
//! Each thread keeps its own latency histogram and counters (nothing
//! shared on the request path but one relaxed counter for the progress
//! line); the main thread adds them up when the run is over.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;

/// Latencies from 1 µs to 100 s, three significant figures.
const LOWEST_US: u64 = 1;
const HIGHEST_US: u64 = 100_000_000;

/// Why a request did not count as a success.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ErrorKind {
    /// The TCP connection could not be opened.
    Connect,
    /// The TLS handshake failed (or ALPN did not agree on the protocol).
    Tls,
    /// The server closed or reset the connection with requests pending.
    Closed,
    /// Reading or writing failed otherwise.
    Io,
    /// The response could not be parsed.
    Parse,
    /// No response within the request timeout.
    Timeout,
    /// The HTTP/2 stream or connection was reset or refused.
    Reset,
    /// A response with status 400–599.
    Status,
}

impl ErrorKind {
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::Connect => "connect",
            ErrorKind::Tls => "tls",
            ErrorKind::Closed => "closed",
            ErrorKind::Io => "io",
            ErrorKind::Parse => "parse",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Reset => "reset",
            ErrorKind::Status => "status",
        }
    }
}

pub struct Stats {
    pub latency: Histogram<u64>,
    pub requests: u64,
    pub bytes: u64,
    pub errors: BTreeMap<ErrorKind, u64>,
    pub handshakes_full: u64,
    pub handshakes_resumed: u64,
}

impl Default for Stats {
    fn default() -> Stats {
        Stats {
            latency: Histogram::new_with_bounds(LOWEST_US, HIGHEST_US, 3)
                .expect("histogram bounds"),
            requests: 0,
            bytes: 0,
            errors: BTreeMap::new(),
            handshakes_full: 0,
            handshakes_resumed: 0,
        }
    }
}

impl Stats {
    /// A completed request that took `latency` (from when it was due, in
    /// the open loop) and brought `bytes` of response.
    pub fn done(&mut self, latency: Duration, bytes: usize) {
        let us = (latency.as_micros() as u64).clamp(LOWEST_US, HIGHEST_US);
        self.latency.saturating_record(us);
        self.requests += 1;
        self.bytes += bytes as u64;
    }

    pub fn error(&mut self, kind: ErrorKind) {
        *self.errors.entry(kind).or_default() += 1;
    }

    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    pub fn merge(&mut self, other: &Stats) {
        let _ = self.latency.add(&other.latency);
        self.requests += other.requests;
        self.bytes += other.bytes;
        for (k, n) in &other.errors {
            *self.errors.entry(*k).or_default() += n;
        }
        self.handshakes_full += other.handshakes_full;
        self.handshakes_resumed += other.handshakes_resumed;
    }

    /// The latency at `q` (0..=1) in microseconds.
    pub fn quantile_us(&self, q: f64) -> u64 {
        if self.latency.is_empty() {
            return 0;
        }
        self.latency.value_at_quantile(q)
    }
}

/// Requests completed so far by one thread, read by the progress line.
#[derive(Default)]
pub struct Progress {
    pub completed: AtomicU64,
    pub errors: AtomicU64,
}

impl Progress {
    pub fn add(&self, completed: u64, errors: u64) {
        if completed > 0 {
            self.completed.fetch_add(completed, Ordering::Relaxed);
        }
        if errors > 0 {
            self.errors.fetch_add(errors, Ordering::Relaxed);
        }
    }
}
