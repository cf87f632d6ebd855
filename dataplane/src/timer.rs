//! Coarse timeouts for the hot path: every socket read and write of a
//! request is bounded, so each request arms and disarms several timers.
//! The runtime's timer wheel reads the clock and converts instants on
//! every arm, poll and turn of the loop; these timers read nothing.
//!
//! Each worker thread keeps a hashed wheel of 100 ms ticks. Arming a
//! timeout files it under its expiry tick, computed from the tick the
//! wheel last saw; a ticker task (started on the thread's first timeout)
//! advances the wheel every tick and wakes what expired. A timeout
//! therefore fires between its duration and one or two ticks later, which
//! is what timeouts counted in seconds need. A disarmed timeout leaves a
//! stale index in its bucket; the generation stored beside it tells the
//! ticker to drop it.
#![deny(clippy::disallowed_methods)]

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// One tick of the wheel.
pub const TICK: Duration = Duration::from_millis(100);
/// Buckets: a timeout further out than this many ticks waits in its
/// bucket for as many turns as it needs.
const BUCKETS: usize = 512;

/// The timeout elapsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elapsed;

struct Entry {
    expires: u64,
    generation: u32,
    waker: Option<Waker>,
    fired: bool,
    live: bool,
}

/// The wheel of one thread (pure bookkeeping; the ticker drives it).
pub struct Wheel {
    /// The last tick processed.
    now: u64,
    entries: Vec<Entry>,
    free: Vec<usize>,
    buckets: Vec<Vec<(usize, u32)>>,
}

impl Default for Wheel {
    fn default() -> Self {
        Wheel {
            now: 0,
            entries: Vec::new(),
            free: Vec::new(),
            buckets: (0..BUCKETS).map(|_| Vec::new()).collect(),
        }
    }
}

impl Wheel {
    /// Arms a timer `ticks` ticks from now (at least one whole tick away,
    /// so it never fires early); returns its handle.
    pub fn arm(&mut self, ticks: u64, waker: Waker) -> (usize, u32) {
        let expires = self.now + ticks.max(1) + 1;
        let slot = match self.free.pop() {
            Some(i) => i,
            None => {
                self.entries.push(Entry {
                    expires: 0,
                    generation: 0,
                    waker: None,
                    fired: false,
                    live: false,
                });
                self.entries.len() - 1
            }
        };
        let e = &mut self.entries[slot];
        e.generation = e.generation.wrapping_add(1);
        e.expires = expires;
        e.waker = Some(waker);
        e.fired = false;
        e.live = true;
        let generation = e.generation;
        self.buckets[(expires % BUCKETS as u64) as usize].push((slot, generation));
        (slot, generation)
    }

    /// Whether the timer fired; otherwise keeps `waker` to wake.
    pub fn check(&mut self, (slot, generation): (usize, u32), waker: &Waker) -> bool {
        let e = &mut self.entries[slot];
        if e.generation != generation || e.fired {
            return true;
        }
        match &e.waker {
            Some(w) if w.will_wake(waker) => {}
            _ => e.waker = Some(waker.clone()),
        }
        false
    }

    /// Disarms a timer (fired or not).
    pub fn disarm(&mut self, (slot, generation): (usize, u32)) {
        let e = &mut self.entries[slot];
        if e.generation == generation && e.live {
            e.live = false;
            e.waker = None;
            self.free.push(slot);
        }
    }

    /// Advances to tick `to`, waking every timer that expired.
    pub fn advance(&mut self, to: u64) {
        // After a long stall one turn covers every bucket.
        let from = self.now.max(to.saturating_sub(BUCKETS as u64));
        for t in from + 1..=to {
            self.now = t;
            let bucket = (t % BUCKETS as u64) as usize;
            let mut list = std::mem::take(&mut self.buckets[bucket]);
            list.retain(|&(slot, generation)| {
                let e = &mut self.entries[slot];
                if e.generation != generation || !e.live || e.fired {
                    return false;
                }
                if e.expires > t {
                    return true;
                }
                e.fired = true;
                if let Some(w) = e.waker.take() {
                    w.wake();
                }
                false
            });
            // Entries armed while this ran went into the now-empty bucket
            // (never this one: arming is at least two ticks ahead).
            self.buckets[bucket] = list;
        }
        self.now = to;
    }

    /// Timers armed and not yet disarmed.
    #[cfg(test)]
    pub fn armed(&self) -> usize {
        self.entries.len() - self.free.len()
    }
}

struct Local {
    wheel: RefCell<Wheel>,
    ticking: std::cell::Cell<bool>,
}

thread_local! {
    static LOCAL: Local = Local {
        wheel: RefCell::new(Wheel::default()),
        ticking: std::cell::Cell::new(false),
    };
}

/// Drives this thread's wheel, from the first timeout on, for as long as
/// the runtime runs (a later runtime on the thread starts its own).
async fn ticker() {
    struct Running;
    impl Drop for Running {
        fn drop(&mut self) {
            let _ = LOCAL.try_with(|l| l.ticking.set(false));
        }
    }
    let _running = Running;
    let start = Instant::now();
    let base = LOCAL.with(|l| l.wheel.borrow().now);
    let mut interval = monoio::time::interval(TICK);
    loop {
        interval.tick().await;
        let to = base + (start.elapsed().as_millis() / TICK.as_millis()) as u64;
        LOCAL.with(|l| l.wheel.borrow_mut().advance(to));
    }
}

/// This thread's coarse clock, in ticks: free to read, and advancing once
/// any timeout has been armed on the thread.
pub fn now_tick() -> u64 {
    LOCAL.with(|l| l.wheel.borrow().now)
}

/// `fut`, bounded by `limit` on this thread's wheel.
pub fn timeout<F: Future>(limit: Duration, fut: F) -> Timeout<F> {
    let ticks = limit.as_millis().div_ceil(TICK.as_millis()) as u64;
    Timeout {
        fut,
        ticks,
        handle: None,
    }
}

pin_project_lite::pin_project! {
    /// See [`timeout`].
    pub struct Timeout<F> {
        #[pin]
        fut: F,
        ticks: u64,
        handle: Option<(usize, u32)>,
    }

    impl<F> PinnedDrop for Timeout<F> {
        fn drop(this: Pin<&mut Self>) {
            if let Some(h) = this.handle {
                let _ = LOCAL.try_with(|l| l.wheel.borrow_mut().disarm(h));
            }
        }
    }
}

impl<F: Future> Future for Timeout<F> {
    type Output = Result<F::Output, Elapsed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(v) = this.fut.poll(cx) {
            return Poll::Ready(Ok(v));
        }
        let ticks = *this.ticks;
        let fired = LOCAL.with(|l| {
            let mut wheel = l.wheel.borrow_mut();
            let fired = match *this.handle {
                Some(h) => wheel.check(h, cx.waker()),
                None => {
                    *this.handle = Some(wheel.arm(ticks, cx.waker().clone()));
                    false
                }
            };
            if !l.ticking.replace(true) {
                monoio::spawn(ticker());
            }
            fired
        });
        if fired {
            Poll::Ready(Err(Elapsed))
        } else {
            Poll::Pending
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::Wake;

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn waker() -> (Arc<Count>, Waker) {
        let c = Arc::new(Count(AtomicUsize::new(0)));
        (c.clone(), Waker::from(c))
    }

    #[test]
    fn a_timer_fires_after_its_ticks_and_never_before() {
        let mut w = Wheel::default();
        let (count, wk) = waker();
        let h = w.arm(3, wk.clone());
        w.advance(3);
        assert!(!w.check(h, &wk));
        assert_eq!(count.0.load(Ordering::SeqCst), 0);
        w.advance(4);
        assert!(w.check(h, &wk));
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        w.disarm(h);
        assert_eq!(w.armed(), 0);
    }

    #[test]
    fn a_timer_past_one_turn_waits_for_its_turn() {
        let mut w = Wheel::default();
        let (_, wk) = waker();
        let far = BUCKETS as u64 * 2 + 5;
        let h = w.arm(far, wk.clone());
        for t in 1..=far {
            w.advance(t);
            assert!(!w.check(h, &wk), "fired at tick {t}");
        }
        w.advance(far + 1);
        assert!(w.check(h, &wk));
    }

    #[test]
    fn a_disarmed_slot_reused_is_not_fired_by_its_old_entry() {
        let mut w = Wheel::default();
        let (count, wk) = waker();
        let old = w.arm(1, wk.clone());
        w.disarm(old);
        let new = w.arm(50, wk.clone());
        assert_eq!(old.0, new.0, "the slot is reused");
        w.advance(10);
        assert!(!w.check(new, &wk));
        assert_eq!(count.0.load(Ordering::SeqCst), 0);
        // A stale handle reads as done, never as the new timer.
        assert!(w.check(old, &wk));
    }

    #[test]
    fn a_long_stall_fires_everything_due_at_once() {
        let mut w = Wheel::default();
        let (count, wk) = waker();
        let hs: Vec<_> = (1..100).map(|t| w.arm(t * 13, wk.clone())).collect();
        w.advance(100_000);
        assert!(hs.iter().all(|&h| w.check(h, &wk)));
        assert_eq!(count.0.load(Ordering::SeqCst), hs.len());
    }

    #[test]
    fn the_timeout_future_fires_and_passes_results_through() {
        let mut rt = monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
            .enable_timer()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let t0 = Instant::now();
            let r = timeout(Duration::from_millis(250), std::future::pending::<()>()).await;
            assert_eq!(r, Err(Elapsed));
            let took = t0.elapsed();
            assert!(took >= Duration::from_millis(250), "{took:?}");
            let r = timeout(Duration::from_secs(5), async { 7 }).await;
            assert_eq!(r, Ok(7));
            LOCAL.with(|l| assert_eq!(l.wheel.borrow().armed(), 0));
        });
    }
}
