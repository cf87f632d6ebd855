//! The run: one monoio runtime per thread, each driving its share of the
//! connections, all stopping at the same instant.
//!
//! Runtimes drive sockets through epoll by default: for small requests on
//! loopback, io_uring measured about 13% more CPU per request here
//! (17.6 against 15.3 µs for 1 KiB keep-alive), and a load generator must
//! cost as little as the fastest peer. `--io uring` picks io_uring.
//!
//! A request counts when it completes inside the measured window (after
//! the warm-up, before the end); whatever is in flight at the end is
//! dropped uncounted. In the open loop each slot (an HTTP/1.1 connection,
//! or an HTTP/2 stream) has its own schedule, and a request's latency runs
//! from when it was due, not from when it could be sent: a server that
//! stalls is charged for every request that waited behind the stall (the
//! coordinated-omission correction that wrk2 made known).

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::conn::{Dial, Handshake};
use crate::stats::{ErrorKind, Progress, Stats};

/// What every thread does, and when.
#[derive(Clone)]
pub struct Plan {
    /// Requests completing before this are not counted (warm-up).
    pub record_from: Instant,
    pub stop_at: Instant,
    pub connections: usize,
    pub pipeline: usize,
    pub streams: usize,
    pub http2: bool,
    /// Requests per second over all slots (open loop), or none.
    pub rate: Option<f64>,
    pub new_connection: bool,
    pub timeout: Duration,
}

/// One thread's view of the run.
pub struct Ctx {
    pub dial: Dial,
    pub plan: Plan,
    pub h1_request: Bytes,
    pub h2_parts: (http::Method, http::Uri, http::HeaderMap),
    stats: RefCell<Stats>,
    progress: Arc<Progress>,
    /// Open-loop slots over all threads, and this thread's first.
    total_slots: usize,
    first_slot: usize,
}

impl Ctx {
    pub fn over(&self) -> bool {
        Instant::now() >= self.plan.stop_at
    }

    fn counting(&self, now: Instant) -> bool {
        now >= self.plan.record_from && now < self.plan.stop_at
    }

    /// A response arrived for a request sent (or due) at `sent`.
    pub fn completed(&self, sent: Instant, status: u16, bytes: usize) {
        let now = Instant::now();
        if !self.counting(now) {
            return;
        }
        let mut s = self.stats.borrow_mut();
        if status >= 400 {
            s.error(ErrorKind::Status);
            self.progress.add(0, 1);
        } else {
            s.done(now.saturating_duration_since(sent), bytes);
            self.progress.add(1, 0);
        }
    }

    pub fn error(&self, kind: ErrorKind) {
        if self.counting(Instant::now()) {
            self.stats.borrow_mut().error(kind);
            self.progress.add(0, 1);
        }
    }

    fn handshake(&self, kind: Handshake) {
        if !self.counting(Instant::now()) {
            return;
        }
        let mut s = self.stats.borrow_mut();
        match kind {
            Handshake::None => {}
            Handshake::Full => s.handshakes_full += 1,
            Handshake::Resumed => s.handshakes_resumed += 1,
        }
    }

    /// Waits for a connection attempt: counts its handshake, or its
    /// failure and then pauses (a refusing server is not spun on).
    pub async fn connected<T>(
        &self,
        attempt: impl std::future::Future<Output = Result<(T, Handshake), ErrorKind>>,
    ) -> Option<T> {
        match attempt.await {
            Ok((c, hs)) => {
                self.handshake(hs);
                Some(c)
            }
            Err(kind) => {
                self.error(kind);
                monoio::time::sleep(Duration::from_millis(10)).await;
                None
            }
        }
    }

    pub fn h2_request(&self) -> http::Request<()> {
        let (method, uri, headers) = &self.h2_parts;
        let mut r = http::Request::new(());
        *r.method_mut() = method.clone();
        *r.uri_mut() = uri.clone();
        *r.headers_mut() = headers.clone();
        r
    }

    /// The open-loop schedule of this thread's `slot` (none in the closed
    /// loop). Slots start staggered over one interval, so the load is
    /// smooth from the first second.
    pub fn pace(&self, slot: usize) -> Option<Pace> {
        let rate = self.plan.rate?;
        let interval = Duration::from_secs_f64(self.total_slots as f64 / rate);
        let offset = interval.mul_f64((self.first_slot + slot) as f64 / self.total_slots as f64);
        Some(Pace {
            interval,
            next: Instant::now() + offset,
        })
    }
}

/// When a slot's next request is due.
pub struct Pace {
    interval: Duration,
    next: Instant,
}

impl Pace {
    /// Waits until the next request is due (not at all when it is late)
    /// and returns when it was due.
    pub async fn wait(&mut self) -> Instant {
        let due = self.next;
        self.next += self.interval;
        let now = Instant::now();
        if due > now {
            monoio::time::sleep(due - now).await;
        }
        due
    }
}

/// What a thread needs to build its [`Ctx`].
pub struct ThreadPlan {
    pub dial: Dial,
    pub plan: Plan,
    pub h1_request: Bytes,
    pub h2_parts: (http::Method, http::Uri, http::HeaderMap),
    pub connections: usize,
    pub first_connection: usize,
    pub progress: Arc<Progress>,
}

/// Which kernel interface a thread's runtime drives its sockets with.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Driver {
    /// epoll readiness, then plain read and write calls.
    Epoll,
    /// io_uring completions.
    Uring,
}

/// Runs one thread's connections until the end of the run.
pub fn thread(tp: ThreadPlan, driver: Driver) -> Stats {
    let slots_per_conn = if tp.plan.http2 && !tp.plan.new_connection {
        tp.plan.streams.max(1)
    } else {
        1
    };
    let connections = tp.connections;
    let ctx = Rc::new(Ctx {
        total_slots: tp.plan.connections * slots_per_conn,
        first_slot: tp.first_connection * slots_per_conn,
        dial: tp.dial,
        plan: tp.plan,
        h1_request: tp.h1_request,
        h2_parts: tp.h2_parts,
        stats: RefCell::new(Stats::default()),
        progress: tp.progress,
    });
    let c = ctx.clone();
    let work = async move {
        for i in 0..connections {
            if c.plan.http2 {
                monoio::spawn(crate::h2::connection(c.clone(), i));
            } else {
                monoio::spawn(crate::h1::connection(c.clone(), i));
            }
        }
        let left = c.plan.stop_at.saturating_duration_since(Instant::now());
        monoio::time::sleep(left).await;
    };
    // The connections still open stay open until the process exits
    // (dropping their tasks outside the runtime is not allowed, and the
    // process is about to end); what they measured is taken now.
    match driver {
        Driver::Epoll => {
            let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
                .enable_timer()
                .build()
                .expect("an epoll runtime for the load thread");
            rt.block_on(work);
            std::mem::forget(rt);
        }
        Driver::Uring => {
            let mut rt = monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
                .with_entries(4096)
                .enable_timer()
                .build()
                .expect("an io_uring runtime for the load thread (is io_uring allowed here?)");
            rt.block_on(work);
            std::mem::forget(rt);
        }
    }
    let stats = std::mem::take(&mut *ctx.stats.borrow_mut());
    stats
}
