//! Zero-downtime takeover. A new edge process started beside a running
//! one (`systemctl reload`, a binary upgrade, or simply a second `postern
//! edge` on the same state directory) asks the running one for its
//! listening sockets over a Unix socket in the state directory
//! ([`SOCKET_FILE`]), starts its workers on those very sockets, and only
//! then tells the old process to drain. The sockets never close, so a
//! connection waiting in an accept queue is taken by whichever process
//! accepts next: none is refused or reset.
//!
//! The exchange, one `SOCK_SEQPACKET` message each:
//!
//! 1. new → old: `TAKEOVER <pid>`. The old process stops writing its
//!    state (the new one is about to load it) and answers with
//! 2. old → new: one `<kind> <address>` message per listening socket,
//!    the socket itself attached (`SCM_RIGHTS`), then `END`;
//! 3. new → old: `READY` once the new process serves. The old one
//!    drains and exits. Had the new process failed instead (its
//!    connection closed without `READY`), the old one carries on as if
//!    nothing happened.
//!
//! Only a process of the same user may ask (`SO_PEERCRED`), and the
//! socket file lives in the state directory, mode 0600.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub const SOCKET_FILE: &str = "edge.sock";

/// Set once this process has handed its listeners over and drains.
pub static HANDED_OVER: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// How long a new process may take from its request to `READY`.
const START_LIMIT: Duration = Duration::from_secs(120);
/// How long either side waits for the other's next message otherwise.
const STEP_LIMIT: Duration = Duration::from_secs(10);
/// Largest message: a kind and a socket address.
const MAX_MESSAGE: usize = 256;

/// What a listening socket is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A public listener (`[[listener]]`).
    Listener,
    /// The tunnel listener connectors dial.
    Tunnel,
    /// The admin API.
    Admin,
    /// The token-free `/metrics` listener.
    Metrics,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Listener => "listener",
            Kind::Tunnel => "tunnel",
            Kind::Admin => "admin",
            Kind::Metrics => "metrics",
        }
    }

    fn parse(s: &str) -> Option<Kind> {
        match s {
            "listener" => Some(Kind::Listener),
            "tunnel" => Some(Kind::Tunnel),
            "admin" => Some(Kind::Admin),
            "metrics" => Some(Kind::Metrics),
            _ => None,
        }
    }
}

/// The listening sockets this process serves, as they would be handed
/// over. The descriptors stay owned by the workers (and the admin
/// thread); the kernel duplicates them into the message.
#[derive(Default)]
pub struct Offers {
    list: Mutex<Vec<(Kind, SocketAddr, RawFd)>>,
}

impl Offers {
    pub fn add(&self, kind: Kind, addr: SocketAddr, fd: RawFd) {
        self.list
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((kind, addr, fd));
    }

    fn snapshot(&self) -> Vec<(Kind, SocketAddr, RawFd)> {
        self.list.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Sockets taken over from a running edge, and the line back to it.
pub struct Taken {
    conn: OwnedFd,
    /// The old process's id.
    pub from: u32,
    sockets: Vec<(Kind, SocketAddr, OwnedFd)>,
}

impl Taken {
    /// Removes and returns the sockets of `kind` bound to `addr`.
    pub fn take(&mut self, kind: Kind, addr: SocketAddr) -> Vec<OwnedFd> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < self.sockets.len() {
            if self.sockets[i].0 == kind && self.sockets[i].1 == addr {
                out.push(self.sockets.swap_remove(i).2);
            } else {
                i += 1;
            }
        }
        out
    }

    /// Sockets nothing in this process's configuration claimed (a
    /// listener that was removed), as `kind address` for the log.
    pub fn unclaimed(&self) -> Vec<String> {
        self.sockets
            .iter()
            .map(|(k, a, _)| format!("{} {a}", k.as_str()))
            .collect()
    }

    /// Tells the old process this one serves; it drains and exits.
    pub fn ready(self) -> io::Result<()> {
        send(self.conn.as_fd(), b"READY", None)?;
        let mut buf = [0u8; MAX_MESSAGE];
        let (n, _) = recv(self.conn.as_fd(), &mut buf)?;
        if &buf[..n] != b"DRAINING" {
            return Err(io::Error::other(
                "the old edge process did not confirm its drain",
            ));
        }
        Ok(())
    }
}

/// Asks the edge running on `state_dir`, if any, for its sockets.
/// `Ok(None)`: no edge runs there (no socket, or a stale one).
pub fn take_over(state_dir: &Path) -> Result<Option<Taken>, String> {
    let path = state_dir.join(SOCKET_FILE);
    let conn = match connect(&path) {
        Ok(c) => c,
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::ENOENT | libc::ECONNREFUSED | libc::ENOTSOCK)
            ) =>
        {
            return Ok(None)
        }
        Err(e) => {
            return Err(format!(
                "cannot reach the edge running on {} ({}): {e}",
                state_dir.display(),
                path.display()
            ))
        }
    };
    let fail = |e: io::Error| format!("taking over from the running edge failed: {e}");
    set_timeout(conn.as_fd(), STEP_LIMIT).map_err(fail)?;
    send(
        conn.as_fd(),
        format!("TAKEOVER {}", std::process::id()).as_bytes(),
        None,
    )
    .map_err(fail)?;
    let mut sockets = Vec::new();
    let mut buf = [0u8; MAX_MESSAGE];
    let from = loop {
        let (n, fd) = recv(conn.as_fd(), &mut buf).map_err(fail)?;
        if n == 0 {
            return Err(fail(io::Error::other(
                "the running edge closed the connection (is it draining already?)",
            )));
        }
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        if let Some(pid) = text.strip_prefix("END ") {
            break pid.parse().unwrap_or(0);
        }
        let mut words = text.split(' ');
        let kind = words.next().and_then(Kind::parse);
        let addr = words.next().and_then(|a| a.parse::<SocketAddr>().ok());
        match (kind, addr, fd) {
            (Some(k), Some(a), Some(fd)) => sockets.push((k, a, fd)),
            _ => {
                return Err(fail(io::Error::other(format!(
                    "unexpected message from the running edge: {text:?}"
                ))))
            }
        }
    };
    set_timeout(conn.as_fd(), START_LIMIT).map_err(fail)?;
    Ok(Some(Taken {
        conn,
        from,
        sockets,
    }))
}

/// Whether an edge serves takeovers on `state_dir` (it runs).
pub fn running(state_dir: &Path) -> bool {
    connect(&state_dir.join(SOCKET_FILE)).is_ok()
}

/// What the serving side does at each step of a takeover.
pub trait Steps: Send + Sync + 'static {
    /// A new process asked: stop writing state (it is about to load it).
    fn freeze(&self);
    /// It failed before serving: carry on.
    fn thaw(&self);
    /// It serves: drain and exit.
    fn hand_over(&self);
}

/// Serves takeover requests on `state_dir`'s socket from a control
/// thread, until one succeeds.
pub fn serve(state_dir: &Path, offers: Arc<Offers>, steps: Arc<dyn Steps>) -> io::Result<()> {
    let path = state_dir.join(SOCKET_FILE);
    let listener = bind(&path)?;
    std::thread::Builder::new()
        .name("postern-handover".into())
        .spawn(move || loop {
            let conn = match accept(listener.as_fd()) {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "takeover socket: accept failed");
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                }
            };
            match handle(&conn, &offers, steps.as_ref()) {
                Ok(true) => return,
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "a takeover request failed; still serving"),
            }
        })?;
    Ok(())
}

/// One request; `Ok(true)` once this process has handed over.
fn handle(conn: &OwnedFd, offers: &Offers, steps: &dyn Steps) -> io::Result<bool> {
    let (uid, pid) = peer(conn.as_fd())?;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if uid != me {
        return Err(io::Error::other(format!(
            "process {pid} of user {uid} asked to take over; only user {me} may"
        )));
    }
    set_timeout(conn.as_fd(), STEP_LIMIT)?;
    let mut buf = [0u8; MAX_MESSAGE];
    let (n, _) = recv(conn.as_fd(), &mut buf)?;
    if n == 0 {
        // A probe: is an edge running here? (`postern quickstart`, status)
        return Ok(false);
    }
    if !buf[..n].starts_with(b"TAKEOVER ") {
        return Err(io::Error::other("not a takeover request"));
    }
    tracing::info!(pid, "a new edge process is taking over the listeners");
    steps.freeze();
    let offered = (|| {
        for (kind, addr, fd) in offers.snapshot() {
            // SAFETY: the descriptor belongs to a listener this process
            // keeps open until it drains, which happens only after the
            // new process said READY below.
            let fd = unsafe { BorrowedFd::borrow_raw(fd) };
            send(
                conn.as_fd(),
                format!("{} {addr}", kind.as_str()).as_bytes(),
                Some(fd),
            )?;
        }
        send(
            conn.as_fd(),
            format!("END {}", std::process::id()).as_bytes(),
            None,
        )?;
        set_timeout(conn.as_fd(), START_LIMIT)?;
        recv(conn.as_fd(), &mut buf)
    })();
    match offered {
        Ok((n, _)) if &buf[..n] == b"READY" => {
            steps.hand_over();
            let _ = send(conn.as_fd(), b"DRAINING", None);
            tracing::info!(pid, "handed the listeners over; draining");
            Ok(true)
        }
        Ok(_) => {
            steps.thaw();
            tracing::warn!(
                pid,
                "the new edge process stopped before serving; this one carries on"
            );
            Ok(false)
        }
        Err(e) => {
            steps.thaw();
            Err(e)
        }
    }
}

fn seqpacket() -> io::Result<OwnedFd> {
    // SAFETY: socket has no memory preconditions; a non-negative result
    // is a new descriptor this process owns.
    let fd = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just created and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn address(path: &Path) -> io::Result<(libc::sockaddr_un, libc::socklen_t)> {
    // SAFETY: sockaddr_un is plain data; all zeroes is a valid value.
    let mut sa: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    sa.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let bytes = path.as_os_str().as_encoded_bytes();
    if bytes.len() >= sa.sun_path.len() {
        return Err(io::Error::other(format!(
            "the path {} is too long for a Unix socket (at most {} bytes)",
            path.display(),
            sa.sun_path.len() - 1
        )));
    }
    for (d, s) in sa.sun_path.iter_mut().zip(bytes) {
        *d = *s as libc::c_char;
    }
    let len = std::mem::size_of::<libc::sa_family_t>() + bytes.len() + 1;
    Ok((sa, len as libc::socklen_t))
}

fn connect(path: &Path) -> io::Result<OwnedFd> {
    let sock = seqpacket()?;
    let (sa, len) = address(path)?;
    // SAFETY: `sa` is a valid sockaddr_un of `len` bytes for the call.
    let rc = unsafe {
        libc::connect(
            sock.as_raw_fd(),
            std::ptr::addr_of!(sa).cast::<libc::sockaddr>(),
            len,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(sock)
}

/// Binds `path` afresh (a file left by an earlier process that no longer
/// listens is replaced), mode 0600.
fn bind(path: &PathBuf) -> io::Result<OwnedFd> {
    let sock = seqpacket()?;
    let (sa, len) = address(path)?;
    let _ = std::fs::remove_file(path);
    // SAFETY: `sa` is a valid sockaddr_un of `len` bytes for the call.
    let rc = unsafe {
        libc::bind(
            sock.as_raw_fd(),
            std::ptr::addr_of!(sa).cast::<libc::sockaddr>(),
            len,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    // SAFETY: listen on a bound socket this process owns.
    if unsafe { libc::listen(sock.as_raw_fd(), 4) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(sock)
}

fn accept(listener: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    // SAFETY: null address arguments are allowed; a non-negative result
    // is a new descriptor this process owns.
    let fd = unsafe {
        libc::accept4(
            listener.as_raw_fd(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            libc::SOCK_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just accepted and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn set_timeout(sock: BorrowedFd<'_>, limit: Duration) -> io::Result<()> {
    let tv = libc::timeval {
        tv_sec: limit.as_secs() as libc::time_t,
        tv_usec: limit.subsec_micros() as libc::suseconds_t,
    };
    for opt in [libc::SO_RCVTIMEO, libc::SO_SNDTIMEO] {
        // SAFETY: setsockopt reads `tv` for the call only.
        let rc = unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::SOL_SOCKET,
                opt,
                std::ptr::addr_of!(tv).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// The user and process at the other end.
fn peer(sock: BorrowedFd<'_>) -> io::Result<(u32, i32)> {
    // SAFETY: ucred is plain data; all zeroes is a valid value.
    let mut cred: libc::ucred = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `cred`.
    let rc = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            std::ptr::addr_of_mut!(cred).cast(),
            &mut len,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((cred.uid, cred.pid))
}

/// Room for one descriptor's control message.
#[repr(C)]
union Control {
    header: libc::cmsghdr,
    bytes: [u8; 64],
}

fn send(sock: BorrowedFd<'_>, msg: &[u8], fd: Option<BorrowedFd<'_>>) -> io::Result<()> {
    let mut iov = libc::iovec {
        iov_base: msg.as_ptr() as *mut libc::c_void,
        iov_len: msg.len(),
    };
    let mut control = Control { bytes: [0; 64] };
    // SAFETY: msghdr is plain data; all zeroes is a valid value.
    let mut hdr: libc::msghdr = unsafe { std::mem::zeroed() };
    hdr.msg_iov = &mut iov;
    hdr.msg_iovlen = 1;
    if let Some(fd) = fd {
        // SAFETY: CMSG_SPACE only computes a size.
        let space = unsafe { libc::CMSG_SPACE(std::mem::size_of::<RawFd>() as u32) } as usize;
        hdr.msg_control = std::ptr::addr_of_mut!(control).cast();
        hdr.msg_controllen = space;
        // SAFETY: the control buffer holds `space` bytes (64 > CMSG_SPACE
        // of one descriptor) and is aligned for cmsghdr (the union), so
        // CMSG_FIRSTHDR points into it and its data has room for one fd.
        unsafe {
            let cmsg = libc::CMSG_FIRSTHDR(&hdr);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<RawFd>() as u32) as usize;
            std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<RawFd>(), fd.as_raw_fd());
        }
    }
    // SAFETY: `hdr` points at `iov` and `control`, both alive for the call.
    let n = unsafe { libc::sendmsg(sock.as_raw_fd(), &hdr, libc::MSG_NOSIGNAL) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn recv(sock: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<(usize, Option<OwnedFd>)> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let mut control = Control { bytes: [0; 64] };
    // SAFETY: msghdr is plain data; all zeroes is a valid value.
    let mut hdr: libc::msghdr = unsafe { std::mem::zeroed() };
    hdr.msg_iov = &mut iov;
    hdr.msg_iovlen = 1;
    hdr.msg_control = std::ptr::addr_of_mut!(control).cast();
    hdr.msg_controllen = std::mem::size_of::<Control>();
    // SAFETY: `hdr` points at `iov` (over `buf`) and `control`, both
    // alive and writable for the call.
    let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut hdr, libc::MSG_CMSG_CLOEXEC) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut fd = None;
    // SAFETY: the kernel filled `control` up to msg_controllen; the CMSG
    // macros walk only within it, and an SCM_RIGHTS message's data holds
    // descriptors now owned by this process.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&hdr);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let raw = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<RawFd>());
                fd = Some(OwnedFd::from_raw_fd(raw));
            }
            cmsg = libc::CMSG_NXTHDR(&hdr, cmsg);
        }
    }
    Ok((n as usize, fd))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[derive(Default)]
    struct Seen {
        frozen: AtomicUsize,
        thawed: AtomicUsize,
        handed: AtomicUsize,
    }

    struct Recorder(Arc<Seen>);

    impl Steps for Recorder {
        fn freeze(&self) {
            self.0.frozen.fetch_add(1, Ordering::SeqCst);
        }
        fn thaw(&self) {
            self.0.thawed.fetch_add(1, Ordering::SeqCst);
        }
        fn hand_over(&self) {
            self.0.handed.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn listening_sockets_cross_and_keep_their_queue() {
        let dir = std::env::temp_dir().join(format!("postern-handover-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert!(take_over(&dir).unwrap().is_none(), "nothing runs yet");

        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let offers = Arc::new(Offers::default());
        offers.add(Kind::Listener, addr, listener.as_raw_fd());
        let seen = Arc::new(Seen::default());
        serve(&dir, offers, Arc::new(Recorder(seen.clone()))).unwrap();

        // A client waits in the accept queue while the socket moves.
        let client = std::net::TcpStream::connect(addr).unwrap();

        // A process that fails before serving: the old one carries on.
        let failed = take_over(&dir).unwrap().expect("an edge runs");
        drop(failed);
        for _ in 0..200 {
            if seen.thawed.load(Ordering::SeqCst) == 1 {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(seen.thawed.load(Ordering::SeqCst), 1);

        let mut taken = take_over(&dir).unwrap().expect("an edge runs");
        assert_eq!(taken.from, std::process::id());
        assert!(taken.take(Kind::Tunnel, addr).is_empty());
        let mut fds = taken.take(Kind::Listener, addr);
        assert_eq!(fds.len(), 1);
        assert!(taken.unclaimed().is_empty());
        drop(listener);
        let moved = std::net::TcpListener::from(fds.remove(0));
        let (mut served, _) = moved.accept().unwrap();
        use std::io::{Read, Write};
        (&client).write_all(b"ping").unwrap();
        let mut buf = [0u8; 4];
        served.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"ping");
        taken.ready().unwrap();
        assert_eq!(seen.frozen.load(Ordering::SeqCst), 2);
        assert_eq!(seen.handed.load(Ordering::SeqCst), 1);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
