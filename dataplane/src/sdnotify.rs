//! systemd's service notifications (`Type=notify`): `READY=1` once the
//! process serves, `STOPPING=1` when it begins to drain, `MAINPID=` when a
//! reload's new process takes over, and `WATCHDOG=1` pings while every
//! worker is alive. They go as datagrams to the socket systemd names in
//! `NOTIFY_SOCKET`; without it (not started by systemd) nothing is sent.
//!
//! Sending never blocks for long (a datagram to a local socket) and only
//! control threads send.

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Set once this process has handed its service over to a new one: from
/// then on the new process speaks for the service.
static QUIET: AtomicBool = AtomicBool::new(false);

fn target() -> Option<SocketAddr> {
    let raw = std::env::var_os("NOTIFY_SOCKET")?;
    let bytes = raw.as_encoded_bytes();
    match bytes.first() {
        Some(b'@') => SocketAddr::from_abstract_name(&bytes[1..]).ok(),
        Some(b'/') => SocketAddr::from_pathname(Path::new(&raw)).ok(),
        _ => None,
    }
}

/// Sends `state` (newline-separated `KEY=value` assignments). Failures are
/// logged at debug level only: a service manager that went away is not
/// the edge's problem.
pub fn notify(state: &str) {
    if QUIET.load(Ordering::Acquire) {
        return;
    }
    let Some(addr) = target() else {
        return;
    };
    let sent = UnixDatagram::unbound().and_then(|s| s.send_to_addr(state.as_bytes(), &addr));
    if let Err(e) = sent {
        tracing::debug!(error = %e, state, "cannot notify the service manager");
    }
}

/// Stops every further notification from this process (its service now
/// belongs to the process it handed over to).
pub fn go_quiet() {
    QUIET.store(true, Ordering::Release);
}

/// How often to ping the watchdog: half of `WATCHDOG_USEC`, when the
/// watchdog is on and meant for this process (`WATCHDOG_PID`, if set, is
/// ours).
pub fn watchdog_every() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    if let Ok(pid) = std::env::var("WATCHDOG_PID") {
        if pid.parse::<u32>().ok()? != std::process::id() {
            return None;
        }
    }
    (usec > 0).then(|| Duration::from_micros(usec) / 2)
}

/// Pings the watchdog from a control thread for as long as `healthy`
/// says so; a process that stops being healthy stops pinging, and the
/// service manager restarts it.
pub fn start_watchdog(healthy: impl Fn() -> bool + Send + 'static) {
    let Some(every) = watchdog_every() else {
        return;
    };
    let spawned = std::thread::Builder::new()
        .name("postern-watchdog".into())
        .spawn(move || {
            let mut warned = false;
            loop {
                std::thread::sleep(every);
                if healthy() {
                    notify("WATCHDOG=1");
                    warned = false;
                } else if !warned {
                    tracing::error!("a worker is not answering; the watchdog is no longer pinged, so the service manager will restart this process");
                    warned = true;
                }
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start the watchdog thread");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notifications_reach_the_socket_systemd_names() {
        let dir = std::env::temp_dir().join(format!("postern-sdnotify-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("notify");
        let _ = std::fs::remove_file(&path);
        let listener = UnixDatagram::bind(&path).unwrap();
        // Tests share the environment; this is the only one that sets it.
        std::env::set_var("NOTIFY_SOCKET", &path);
        assert!(target().is_some());
        notify("READY=1\nSTATUS=serving");
        let mut buf = [0u8; 64];
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1\nSTATUS=serving");
        std::env::remove_var("NOTIFY_SOCKET");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
