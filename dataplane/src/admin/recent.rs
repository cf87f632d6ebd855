//! The last failed requests, for the dashboard's "recent errors": request
//! id, app, status and why, newest last. Workers add to it only when the
//! lock is free at that instant (a failure is never made to wait for the
//! dashboard); the admin API reads it.

use std::collections::VecDeque;
use std::sync::Mutex;

use serde::Serialize;

/// How many failures are kept.
const KEPT: usize = 100;

#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    /// Unix time, milliseconds.
    pub at_ms: u64,
    pub request_id: String,
    pub app: String,
    pub method: String,
    pub path: String,
    /// What the client was answered (absent: the connection was closed).
    pub status: Option<u16>,
    /// Which side failed: edge, backend, connector.
    pub source: String,
    pub reason: String,
}

static RING: Mutex<VecDeque<Failure>> = Mutex::new(VecDeque::new());

/// Adds a failure, unless another thread holds the list this instant.
pub fn record(f: Failure) {
    if let Ok(mut ring) = RING.try_lock() {
        if ring.len() == KEPT {
            ring.pop_front();
        }
        ring.push_back(f);
    }
}

/// The failures kept, oldest first.
pub fn list() -> Vec<Failure> {
    RING.lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .cloned()
        .collect()
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
