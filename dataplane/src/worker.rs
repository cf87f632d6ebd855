//! Per-worker state: everything a request touches that is not in the
//! snapshot, owned by one thread and never shared.
#![deny(clippy::disallowed_methods)]

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use postern_control::counters::{AppCounters, CoreCounters};

use crate::edge::tunnels::{Tunnel, TunnelList, Tunnels};
use crate::snapshot::{Published, Snapshot};
use crate::upstream::Upstream;

pub struct Worker {
    // The Rc around the shared Arc is deliberate: requests clone a
    // thread-local count instead of bouncing the Arc's cache line between
    // cores on every request.
    pub index: usize,
    /// How many workers the edge runs.
    pub workers: usize,
    #[allow(clippy::redundant_allocation)]
    snapshot: RefCell<Rc<Arc<Snapshot>>>,
    published: Arc<Published>,
    /// Version of the snapshot this worker serves, readable by the control
    /// side to confirm a change reached every worker.
    pub serving: Arc<AtomicU64>,
    pub upstream: Rc<Upstream>,
    id_prefix: u64,
    counter: Cell<u64>,
    conn_counter: Cell<u64>,
    /// This worker's counters (only this thread writes them).
    pub counters: Arc<CoreCounters>,
    /// Per-app counter blocks for the snapshot version in `.0`, by app id.
    app_counters: RefCell<(u64, Vec<Arc<AppCounters>>)>,
    /// Every open tunnel, and this worker's copy of the list.
    pub tunnels: Arc<Tunnels>,
    tunnel_cache: RefCell<(u64, TunnelList)>,
    /// Pre-authentication: provider views and this worker's caches.
    pub auth: crate::auth::WorkerAuth,
    /// The edge is draining (SIGTERM): no new connections, idle ones
    /// closed, HTTP/2 clients told with GOAWAY.
    draining: Cell<bool>,
    /// Tasks waiting for the drain: slots reused through a free list (a
    /// connection waiting idle takes one; no hashing on the request path).
    drain_wakers: RefCell<DrainWakers>,
}

impl Worker {
    pub fn new(
        index: usize,
        workers: usize,
        published: Arc<Published>,
        serving: Arc<AtomicU64>,
        counters: Arc<CoreCounters>,
        tunnels: Arc<Tunnels>,
        auth: Arc<crate::auth::Auth>,
    ) -> Rc<Worker> {
        let snapshot = published.current();
        serving.store(snapshot.version, Ordering::Release);
        let mut seed = [0u8; 8];
        // A random prefix keeps request ids unique across workers and restarts.
        let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut seed);
        let upstream = Upstream::new(
            snapshot.settings.upstream_pool_size,
            snapshot.settings.backend_connect_timeout,
        );
        Rc::new(Worker {
            index,
            workers,
            tunnel_cache: RefCell::new((u64::MAX, Default::default())),
            tunnels,
            snapshot: RefCell::new(Rc::new(snapshot)),
            published,
            serving,
            upstream,
            id_prefix: u64::from_le_bytes(seed),
            counter: Cell::new(0),
            conn_counter: Cell::new(0),
            counters,
            app_counters: RefCell::new((u64::MAX, Vec::new())),
            auth: crate::auth::WorkerAuth::new(auth),
            draining: Cell::new(false),
            drain_wakers: RefCell::new(DrainWakers::default()),
        })
    }

    pub fn is_draining(&self) -> bool {
        self.draining.get()
    }

    /// Called often on the worker: starts this worker's drain once the
    /// edge has begun one, waking everything that waits for it.
    pub fn check_drain(&self) {
        if !self.draining.get() && crate::runtime::DRAINING.load(Ordering::Acquire) {
            self.draining.set(true);
            let wakers: Vec<_> = self
                .drain_wakers
                .borrow_mut()
                .slots
                .iter_mut()
                .filter_map(Option::take)
                .collect();
            for w in wakers {
                w.wake();
            }
        }
    }

    /// Resolves when the edge drains; the waiter's slot is let go on drop.
    pub fn drain_wait(&self) -> DrainWait<'_> {
        DrainWait {
            worker: self,
            slot: None,
        }
    }

    /// The snapshot a new request starts with (a thread-local refcount,
    /// no atomic traffic).
    #[allow(clippy::redundant_allocation)]
    pub fn snapshot(&self) -> Rc<Arc<Snapshot>> {
        let published = self.published.version();
        if published != self.snapshot.borrow().version {
            let fresh = self.published.current();
            self.serving.store(fresh.version, Ordering::Release);
            *self.snapshot.borrow_mut() = Rc::new(fresh);
        }
        self.snapshot.borrow().clone()
    }

    /// Runs `f` over the open tunnels, as of the last change (no lock, and
    /// no shared reference count touched, unless the list changed).
    pub fn with_tunnels<R>(&self, f: impl FnOnce(&[Arc<Tunnel>]) -> R) -> R {
        let v = self.tunnels.version();
        let mut cache = self.tunnel_cache.borrow_mut();
        if cache.0 != v {
            *cache = (v, self.tunnels.list());
        }
        f(&cache.1)
    }

    /// The counters of app `id` in `snapshot`.
    pub fn app_counters(&self, snapshot: &Snapshot, id: usize) -> Arc<AppCounters> {
        let mut cache = self.app_counters.borrow_mut();
        if cache.0 != snapshot.version {
            cache.1 = snapshot
                .apps
                .iter()
                .map(|a| self.counters.app(&a.app.name))
                .collect();
            cache.0 = snapshot.version;
        }
        cache.1[id].clone()
    }

    /// A connection id unique on this edge: the worker's index, then a
    /// counter.
    pub fn next_conn_id(&self) -> u64 {
        let n = self.conn_counter.get().wrapping_add(1);
        self.conn_counter.set(n);
        ((self.index as u64) << 48) | (n & ((1 << 48) - 1))
    }

    /// 24 hex digits: the worker's random prefix, then a counter.
    pub fn next_request_id(&self) -> RequestId {
        let n = self.counter.get().wrapping_add(1);
        self.counter.set(n);
        let v = ((self.id_prefix as u128) << 32) | n as u32 as u128;
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut out = [0u8; 24];
        for (i, b) in out.iter_mut().enumerate() {
            *b = HEX[((v >> (4 * (23 - i))) & 0xf) as usize];
        }
        RequestId(out)
    }
}

/// A request id: 24 hex digits, kept inline (no allocation per request).
#[derive(Clone, Copy)]
pub struct RequestId([u8; 24]);

impl std::ops::Deref for RequestId {
    type Target = str;
    fn deref(&self) -> &str {
        // Only ASCII hex digits are ever written.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

/// Wakers of the tasks waiting for a drain.
#[derive(Default)]
pub struct DrainWakers {
    slots: Vec<Option<std::task::Waker>>,
    free: Vec<usize>,
}

/// See [`Worker::drain_wait`].
pub struct DrainWait<'a> {
    worker: &'a Worker,
    slot: Option<usize>,
}

impl std::future::Future for DrainWait<'_> {
    type Output = ();

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        if self.worker.draining.get() {
            return std::task::Poll::Ready(());
        }
        let mut w = self.worker.drain_wakers.borrow_mut();
        match self.slot {
            Some(i) => {
                if !w.slots[i]
                    .as_ref()
                    .is_some_and(|old| old.will_wake(cx.waker()))
                {
                    w.slots[i] = Some(cx.waker().clone());
                }
            }
            None => {
                let waker = Some(cx.waker().clone());
                let i = match w.free.pop() {
                    Some(i) => {
                        w.slots[i] = waker;
                        i
                    }
                    None => {
                        w.slots.push(waker);
                        w.slots.len() - 1
                    }
                };
                drop(w);
                self.slot = Some(i);
            }
        }
        std::task::Poll::Pending
    }
}

impl Drop for DrainWait<'_> {
    fn drop(&mut self) {
        if let Some(i) = self.slot {
            let mut w = self.worker.drain_wakers.borrow_mut();
            w.slots[i] = None;
            w.free.push(i);
        }
    }
}
