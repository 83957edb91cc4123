//! Coarse deadlines for the timeouts every request sets and almost never reaches: hyper's
//! header-read timeout on client connections and the upstream's response-header timeout.
//!
//! tokio's timer is exact to the millisecond, and each sleep takes the time driver's lock and
//! a clock reading to register and again to cancel; at two per request that was a tenth of the
//! proxy's own CPU time per request. Here each worker thread keeps its deadlines in a slab
//! that one ticker task per thread checks, sleeping until the earliest deadline (never more
//! often than every [`TICK`]). Registering and cancelling cost an uncontended lock and no
//! clock reading; a deadline fires up to [`TICK`] late, nothing for timeouts of seconds.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// How late a deadline may fire; also the shortest sleep of a ticker.
pub const TICK: Duration = Duration::from_millis(10);

/// The timer hyper's HTTP/1.1 server uses for its header-read timeout.
#[derive(Debug, Clone, Copy, Default)]
pub struct CoarseTimer;

impl hyper::rt::Timer for CoarseTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(Deadline::at(Instant::now() + duration))
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(Deadline::at(deadline))
    }

    fn reset(&self, sleep: &mut Pin<Box<dyn hyper::rt::Sleep>>, new_deadline: Instant) {
        match sleep.as_mut().downcast_mut_pin::<Deadline>() {
            Some(deadline) => deadline.get_mut().reset(new_deadline),
            None => *sleep = self.sleep_until(new_deadline),
        }
    }
}

/// A future that completes at (or up to [`TICK`] after) an instant. It registers with its
/// thread's ticker when first polled, and leaves it when dropped.
#[derive(Debug)]
pub struct Deadline {
    at: Instant,
    registry: Arc<Registry>,
    slot: Option<usize>,
}

impl hyper::rt::Sleep for Deadline {}

impl Deadline {
    /// Completes at `at`.
    pub fn at(at: Instant) -> Self {
        Self {
            at,
            registry: REGISTRY.with(Arc::clone),
            slot: None,
        }
    }

    /// Completes `after` from now.
    pub fn after(after: Duration) -> Self {
        Self::at(Instant::now() + after)
    }

    /// Moves the deadline; a deadline that had fired is pending again.
    pub fn reset(&mut self, at: Instant) {
        self.at = at;
        if let Some(slot) = self.slot {
            let mut inner = self.registry.lock();
            inner.entries[slot].at = at;
            inner.entries[slot].fired = false;
            self.registry.watch(&mut inner, at);
        }
    }
}

impl Future for Deadline {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        let mut inner = this.registry.lock();
        let Some(slot) = this.slot else {
            let entry = Entry {
                at: this.at,
                waker: Some(cx.waker().clone()),
                fired: false,
            };
            let slot = match inner.free.pop() {
                Some(slot) => {
                    inner.entries[slot] = entry;
                    slot
                }
                None => {
                    inner.entries.push(entry);
                    inner.entries.len() - 1
                }
            };
            this.slot = Some(slot);
            this.registry.watch(&mut inner, this.at);
            return Poll::Pending;
        };
        let entry = &mut inner.entries[slot];
        if entry.fired {
            return Poll::Ready(());
        }
        match &entry.waker {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            _ => entry.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

impl Drop for Deadline {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            let mut inner = self.registry.lock();
            inner.entries[slot].waker = None;
            inner.free.push(slot);
        }
    }
}

thread_local! {
    static REGISTRY: Arc<Registry> = Arc::new(Registry::default());
}

/// One thread's deadlines.
#[derive(Debug, Default)]
struct Registry {
    inner: Mutex<Slab>,
    /// Wakes the ticker when a deadline earlier than the one it sleeps for arrives.
    sooner: Notify,
}

#[derive(Debug, Default)]
struct Slab {
    entries: Vec<Entry>,
    free: Vec<usize>,
    /// A ticker task is running for this registry.
    ticking: bool,
    /// When the ticker will look next.
    next_look: Option<Instant>,
}

#[derive(Debug)]
struct Entry {
    at: Instant,
    /// `None` for a free slot.
    waker: Option<Waker>,
    fired: bool,
}

impl Registry {
    fn lock(&self) -> MutexGuard<'_, Slab> {
        // A panic while holding the lock leaves nothing half-done worth refusing.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Makes sure a ticker will see a deadline `at`: starts one if none runs, wakes it if it
    /// sleeps past `at`.
    fn watch(self: &Arc<Self>, inner: &mut Slab, at: Instant) {
        if !inner.ticking {
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                inner.ticking = true;
                runtime.spawn(tick(self.clone()));
            }
        } else if inner.next_look.is_some_and(|next| at + TICK < next) {
            self.sooner.notify_one();
        }
    }
}

/// Fires the registry's due deadlines, then sleeps until the next one; ends when none is left
/// (the next registration starts a new ticker).
async fn tick(registry: Arc<Registry>) {
    // Also when the runtime drops this task: the next registration must start a new one.
    let _ticking = Ticking(registry.clone());
    let mut due: Vec<Waker> = Vec::new();
    loop {
        let next = {
            let mut inner = registry.lock();
            let now = Instant::now();
            let mut next: Option<Instant> = None;
            let mut pending = false;
            for entry in inner.entries.iter_mut() {
                let Some(waker) = &entry.waker else { continue };
                if entry.fired {
                    continue;
                }
                if entry.at <= now {
                    entry.fired = true;
                    due.push(waker.clone());
                } else {
                    pending = true;
                    next = Some(next.map_or(entry.at, |n: Instant| n.min(entry.at)));
                }
            }
            if !pending {
                inner.ticking = false;
                inner.next_look = None;
                drop(inner);
                due.drain(..).for_each(Waker::wake);
                return;
            }
            let next = next.map_or(now + TICK, |n| n.max(now + TICK));
            inner.next_look = Some(next);
            next
        };
        due.drain(..).for_each(Waker::wake);
        tokio::select! {
            () = tokio::time::sleep_until(next.into()) => {}
            () = registry.sooner.notified() => {}
        }
    }
}

/// Marks its registry as without a ticker when its ticker is dropped before finishing.
struct Ticking(Arc<Registry>);

impl Drop for Ticking {
    fn drop(&mut self) {
        if std::thread::panicking() {
            return;
        }
        let mut inner = self.0.lock();
        inner.ticking = false;
        inner.next_look = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Real time (the timer reads the real clock); a generous upper bound for a busy machine.
    const LATE: Duration = Duration::from_millis(150);

    #[tokio::test]
    async fn a_deadline_fires_at_its_instant_and_not_before() {
        let start = Instant::now();
        let deadline = Deadline::at(start + Duration::from_millis(300));
        tokio::pin!(deadline);
        assert!(
            tokio::time::timeout(Duration::from_millis(200), &mut deadline)
                .await
                .is_err()
        );
        deadline.await;
        let waited = start.elapsed();
        assert!(waited >= Duration::from_millis(300), "{waited:?}");
        assert!(waited <= Duration::from_millis(300) + LATE, "{waited:?}");
    }

    #[tokio::test]
    async fn an_earlier_deadline_wakes_a_sleeping_ticker() {
        let start = Instant::now();
        let late = Deadline::after(Duration::from_secs(60));
        tokio::pin!(late);
        assert!(futures_util::poll!(&mut late).is_pending());
        tokio::task::yield_now().await;
        Deadline::after(Duration::from_millis(200)).await;
        let waited = start.elapsed();
        assert!(waited < Duration::from_millis(200) + LATE, "{waited:?}");
        assert!(futures_util::poll!(&mut late).is_pending());
    }

    #[tokio::test]
    async fn a_reset_deadline_fires_again_later_and_dropped_ones_leave() {
        let start = Instant::now();
        let mut first = Box::pin(Deadline::after(Duration::from_millis(50)));
        (&mut first).await;
        first
            .as_mut()
            .get_mut()
            .reset(start + Duration::from_millis(400));
        assert!(futures_util::poll!(&mut first).is_pending());
        (&mut first).await;
        assert!(start.elapsed() >= Duration::from_millis(400));

        let mut dropped = Box::pin(Deadline::after(Duration::from_millis(50)));
        assert!(futures_util::poll!(&mut dropped).is_pending());
        drop(dropped);
        let registry = REGISTRY.with(Arc::clone);
        let live = |r: &Registry| {
            r.lock()
                .entries
                .iter()
                .filter(|e| e.waker.is_some())
                .count()
        };
        assert_eq!(live(&registry), 1, "only `first` is registered");
        drop(first);
        assert_eq!(live(&registry), 0);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(
            !registry.lock().ticking,
            "the ticker ends when nothing is left"
        );
    }

    #[tokio::test]
    async fn many_deadlines_fire_in_order_of_their_instants() {
        let start = Instant::now();
        let mut handles = Vec::new();
        for ms in [450u64, 50, 250, 150, 350] {
            handles.push(tokio::spawn(async move {
                Deadline::after(Duration::from_millis(ms)).await;
                (ms, start.elapsed())
            }));
        }
        for handle in handles {
            let (ms, waited) = handle.await.unwrap();
            assert!(waited >= Duration::from_millis(ms), "{ms}: {waited:?}");
            assert!(
                waited <= Duration::from_millis(ms) + LATE,
                "{ms}: {waited:?}"
            );
        }
    }
}
