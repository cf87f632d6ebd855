//! The access log: one line per request, formatted on the worker and handed
//! to a writer thread through a bounded queue.
//!
//! A worker never waits for the log: when the queue is full (the disk or
//! the terminal cannot keep up) the line is dropped and counted, because
//! slowing every request down to the speed of a log file is the worse
//! failure. Lines are plain text or JSON (`access_log_format`).
#![deny(clippy::disallowed_methods)]

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::OnceLock;

/// Lines buffered between workers and the writer.
const QUEUE: usize = 64 * 1024;

struct Sink {
    tx: SyncSender<String>,
    json: bool,
}

static SINK: OnceLock<Sink> = OnceLock::new();
/// Lines dropped because the writer fell behind.
pub static DROPPED: AtomicU64 = AtomicU64::new(0);
/// Lines queued and not yet written.
static PENDING: AtomicU64 = AtomicU64::new(0);

/// Where the log goes: `stdout`, `stderr`, `off`, or a file path (appended).
/// Called once at start-up, before any worker runs.
#[allow(clippy::disallowed_methods)]
pub fn init(target: &str, json: bool) -> std::io::Result<()> {
    let mut out: Box<dyn Write + Send> = match target {
        "off" => return Ok(()),
        "stdout" => Box::new(std::io::stdout()),
        "stderr" => Box::new(std::io::stderr()),
        path => Box::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)?,
        ),
    };
    let (tx, rx) = sync_channel::<String>(QUEUE);
    std::thread::Builder::new()
        .name("postern-accesslog".into())
        .spawn(move || {
            while let Ok(line) = rx.recv() {
                let _ = out.write_all(line.as_bytes());
                let mut n = 1;
                // Batch whatever else is already queued before flushing.
                while let Ok(more) = rx.try_recv() {
                    let _ = out.write_all(more.as_bytes());
                    n += 1;
                }
                let _ = out.flush();
                PENDING.fetch_sub(n, Ordering::Release);
            }
        })?;
    let _ = SINK.set(Sink { tx, json });
    Ok(())
}

/// What is logged about one request.
pub struct Entry<'a> {
    pub request_id: &'a str,
    pub app: Option<&'a str>,
    pub client: &'a str,
    pub method: &'a [u8],
    pub path: &'a [u8],
    pub status: u16,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub total_us: u64,
    pub backend_us: Option<u64>,
}

pub fn enabled() -> bool {
    SINK.get().is_some()
}

pub fn log(e: &Entry<'_>) {
    let Some(sink) = SINK.get() else { return };
    let ts = timestamp();
    let method = String::from_utf8_lossy(e.method);
    let path = String::from_utf8_lossy(e.path);
    let line = if sink.json {
        let mut v = serde_json::json!({
            "ts": ts,
            "request_id": e.request_id,
            "app": e.app,
            "client": e.client,
            "method": method,
            "path": path,
            "status": e.status,
            "bytes_in": e.bytes_in,
            "bytes_out": e.bytes_out,
            "total_ms": e.total_us as f64 / 1000.0,
        });
        if let Some(b) = e.backend_us {
            v["backend_ms"] = serde_json::json!(b as f64 / 1000.0);
        }
        format!("{v}\n")
    } else {
        let backend = e
            .backend_us
            .map_or_else(|| "-".to_string(), |b| format!("{:.3}", b as f64 / 1000.0));
        format!(
            "{ts} {} {} {} \"{method} {path}\" {} in={} out={} total_ms={:.3} backend_ms={backend}\n",
            e.request_id,
            e.app.unwrap_or("-"),
            e.client,
            e.status,
            e.bytes_in,
            e.bytes_out,
            e.total_us as f64 / 1000.0,
        )
    };
    PENDING.fetch_add(1, Ordering::Acquire);
    match sink.tx.try_send(line) {
        Ok(()) => {}
        Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
            PENDING.fetch_sub(1, Ordering::Release);
            DROPPED.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Waits (a second at most) for the queued lines to be written: called on
/// a control thread before the process exits.
#[allow(clippy::disallowed_methods)] // a control thread
pub fn flush() {
    let until = std::time::Instant::now() + std::time::Duration::from_secs(1);
    while PENDING.load(Ordering::Acquire) > 0 && std::time::Instant::now() < until {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// RFC 3339 UTC with milliseconds.
fn timestamp() -> String {
    let c = crate::clock::now();
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        c.year, c.month, c.day, c.hour, c.minute, c.second, c.millis
    )
}
