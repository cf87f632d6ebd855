//! The access log: one line per request, formatted on the worker and handed
//! to a writer thread through a bounded queue.
//!
//! A worker never waits for the log: when the queue is full (the disk or
//! the terminal cannot keep up) the line is dropped and counted, because
//! slowing every request down to the speed of a log file is the worse
//! failure. Lines are plain text or JSON (`access_log_format`); with
//! `access_log = "journald"` each request is a journal entry of its own,
//! with native fields (`POSTERN_REQUEST_ID`, `POSTERN_APP`,
//! `POSTERN_STATUS`…) beside the text line as `MESSAGE`, sent to
//! journald's socket.
#![deny(clippy::disallowed_methods)]

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::OnceLock;

/// Lines buffered between workers and the writer.
const QUEUE: usize = 64 * 1024;

struct Sink {
    tx: SyncSender<Vec<u8>>,
    json: bool,
    journal: bool,
}

/// journald's socket for native entries.
const JOURNAL_SOCKET: &str = "/run/systemd/journal/socket";

static SINK: OnceLock<Sink> = OnceLock::new();
/// Lines dropped because the writer fell behind.
pub static DROPPED: AtomicU64 = AtomicU64::new(0);
/// Lines queued and not yet written.
static PENDING: AtomicU64 = AtomicU64::new(0);

/// Where the log goes: `stdout`, `stderr`, `off`, or a file path (appended).
/// Called once at start-up, before any worker runs.
#[allow(clippy::disallowed_methods)]
pub fn init(target: &str, json: bool) -> std::io::Result<()> {
    let mut out = match target {
        "off" => return Ok(()),
        "journald" => {
            let sock = std::os::unix::net::UnixDatagram::unbound()?;
            sock.connect(JOURNAL_SOCKET).map_err(|e| {
                std::io::Error::new(
                    e.kind(),
                    format!("access_log = \"journald\": {JOURNAL_SOCKET}: {e} (is systemd-journald running?)"),
                )
            })?;
            Output::Journal(sock)
        }
        "stdout" => Output::Stream(Box::new(std::io::stdout())),
        "stderr" => Output::Stream(Box::new(std::io::stderr())),
        path => Output::Stream(Box::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)?,
        )),
    };
    let journal = matches!(out, Output::Journal(_));
    let (tx, rx) = sync_channel::<Vec<u8>>(QUEUE);
    std::thread::Builder::new()
        .name("postern-accesslog".into())
        .spawn(move || {
            while let Ok(first) = rx.recv() {
                out.send(&first);
                let mut n = 1;
                // Batch whatever else is already queued before flushing.
                while let Ok(more) = rx.try_recv() {
                    out.send(&more);
                    n += 1;
                }
                out.flush();
                PENDING.fetch_sub(n, Ordering::Release);
            }
        })?;
    let _ = SINK.set(Sink {
        tx,
        json: json && !journal,
        journal,
    });
    Ok(())
}

/// Where the writer thread puts entries.
enum Output {
    /// Text or JSON lines to a stream (stdout, stderr, a file).
    Stream(Box<dyn Write + Send>),
    /// One datagram per entry to journald (a full socket blocks this
    /// thread only).
    Journal(std::os::unix::net::UnixDatagram),
}

impl Output {
    fn send(&mut self, entry: &[u8]) {
        match self {
            Output::Stream(w) => {
                let _ = w.write_all(entry);
            }
            Output::Journal(sock) => {
                let _ = sock.send(entry);
            }
        }
    }

    fn flush(&mut self) {
        if let Output::Stream(w) = self {
            let _ = w.flush();
        }
    }
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
    let line = if sink.journal {
        journal_entry(e, &method, &path)
    } else if sink.json {
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
        format!("{v}\n").into_bytes()
    } else {
        format!("{ts} {}\n", summary(e, &method, &path)).into_bytes()
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

/// One request in a line of text, without its time: the text log's line
/// and the journal entry's MESSAGE.
fn summary(e: &Entry<'_>, method: &str, path: &str) -> String {
    let backend = e
        .backend_us
        .map_or_else(|| "-".to_string(), |b| format!("{:.3}", b as f64 / 1000.0));
    format!(
        "{} {} {} \"{method} {path}\" {} in={} out={} total_ms={:.3} backend_ms={backend}",
        e.request_id,
        e.app.unwrap_or("-"),
        e.client,
        e.status,
        e.bytes_in,
        e.bytes_out,
        e.total_us as f64 / 1000.0,
    )
}

/// One request as a journal entry (journald's native protocol: a
/// `KEY=value` line per field; a value holding a newline goes with its
/// length instead).
fn journal_entry(e: &Entry<'_>, method: &str, path: &str) -> Vec<u8> {
    fn field(out: &mut Vec<u8>, key: &str, value: &[u8]) {
        out.extend_from_slice(key.as_bytes());
        if value.contains(&b'\n') {
            out.push(b'\n');
            out.extend_from_slice(&(value.len() as u64).to_le_bytes());
        } else {
            out.push(b'=');
        }
        out.extend_from_slice(value);
        out.push(b'\n');
    }
    let mut out = Vec::with_capacity(512);
    field(&mut out, "MESSAGE", summary(e, method, path).as_bytes());
    // Server errors stand out (warning); the rest is information.
    field(
        &mut out,
        "PRIORITY",
        if e.status >= 500 { b"4" } else { b"6" },
    );
    field(&mut out, "SYSLOG_IDENTIFIER", b"postern-access");
    field(&mut out, "POSTERN_REQUEST_ID", e.request_id.as_bytes());
    if let Some(app) = e.app {
        field(&mut out, "POSTERN_APP", app.as_bytes());
    }
    field(&mut out, "POSTERN_CLIENT", e.client.as_bytes());
    field(&mut out, "POSTERN_METHOD", method.as_bytes());
    field(&mut out, "POSTERN_PATH", path.as_bytes());
    field(&mut out, "POSTERN_STATUS", e.status.to_string().as_bytes());
    field(
        &mut out,
        "POSTERN_BYTES_IN",
        e.bytes_in.to_string().as_bytes(),
    );
    field(
        &mut out,
        "POSTERN_BYTES_OUT",
        e.bytes_out.to_string().as_bytes(),
    );
    field(
        &mut out,
        "POSTERN_TOTAL_MS",
        format!("{:.3}", e.total_us as f64 / 1000.0).as_bytes(),
    );
    if let Some(b) = e.backend_us {
        field(
            &mut out,
            "POSTERN_BACKEND_MS",
            format!("{:.3}", b as f64 / 1000.0).as_bytes(),
        );
    }
    out
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_entries_use_native_fields() {
        let e = Entry {
            request_id: "r-1",
            app: Some("expenses"),
            client: "192.0.2.7",
            method: b"GET",
            path: b"/a\nb",
            status: 502,
            bytes_in: 10,
            bytes_out: 20,
            total_us: 1500,
            backend_us: None,
        };
        let out = journal_entry(&e, "GET", "/a\nb");
        let text = String::from_utf8_lossy(&out);
        assert!(text.starts_with("MESSAGE\n"), "{text}");
        assert!(text.contains("\nPRIORITY=4\n"));
        assert!(text.contains("\nPOSTERN_REQUEST_ID=r-1\n"));
        assert!(text.contains("\nPOSTERN_APP=expenses\n"));
        assert!(text.contains("\nPOSTERN_STATUS=502\n"));
        assert!(!text.contains("POSTERN_BACKEND_MS"));
        // A value with a newline goes with its length, little-endian.
        let path = b"POSTERN_PATH\n\x04\0\0\0\0\0\0\0/a\nb\n";
        assert!(out.windows(path.len()).any(|w| w == path));
    }
}
