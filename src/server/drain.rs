//! The graceful drain: a worker tells its open connections to finish, and waits until they
//! have.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::sync::watch;

/// Tells a worker's open connections to finish and waits until they all have.
///
/// The same contract as hyper-util's `GracefulShutdown`, which cannot watch hyper's
/// `http1::UpgradeableConnection` (its trait is sealed and has no implementation for it).
pub struct Drain {
    signal: watch::Sender<()>,
}

/// One connection's end of a [`Drain`]; the drain waits until every one is dropped.
pub struct DrainWatch {
    signal: watch::Receiver<()>,
}

impl Drain {
    /// A drain no connection watches yet.
    pub fn new() -> Self {
        Self {
            signal: watch::channel(()).0,
        }
    }

    /// Taken in the accept loop, before the connection's task starts, so that a drain that
    /// begins afterwards always waits for it.
    pub fn watch(&self) -> DrainWatch {
        DrainWatch {
            signal: self.signal.subscribe(),
        }
    }

    /// Asks every connection to finish (requests in flight complete, idle connections close),
    /// then waits until all have ended.
    pub async fn shutdown(self) {
        let _ = self.signal.send(());
        self.signal.closed().await;
    }
}

impl Default for Drain {
    fn default() -> Self {
        Self::new()
    }
}

impl DrainWatch {
    /// Whether the drain has begun (or its worker is gone): one atomic load.
    pub(super) fn has_begun(&self) -> bool {
        self.signal.has_changed().unwrap_or(true)
    }

    /// Resolves when the drain begins (or its worker is gone).
    pub(super) async fn begun(&mut self) {
        let _ = self.signal.changed().await;
    }

    /// A probe for a task that asks at many points whether the drain has begun.
    pub(super) fn probe(&self) -> DrainProbe {
        let mut notified = self.signal.clone();
        DrainProbe {
            changed: Box::pin(async move {
                let _ = notified.changed().await;
            }),
            signal: self.signal.clone(),
            stage: DrainStage::Unregistered,
        }
    }

    /// Drives `conn` to its end; when the drain begins, calls `graceful` on it once first.
    pub(super) async fn serve<C, T>(self, conn: C, mut graceful: impl FnMut(Pin<&mut C>)) -> T
    where
        C: Future<Output = T>,
    {
        let mut probe = self.probe();
        let mut conn = std::pin::pin!(conn);
        let mut asked = false;
        std::future::poll_fn(move |cx| {
            if !asked && probe.poll_begun(cx).is_ready() {
                graceful(conn.as_mut());
                asked = true;
            }
            conn.as_mut().poll(cx)
        })
        .await
    }
}

/// Tells one task whether the drain has begun, and wakes it when it does.
///
/// The drain's notification future is polled only once, to register the task's waker:
/// polling it again would take its lock on every wake-up of the connection. Later polls read
/// the channel's version instead, one atomic load. That is only sound because a probe is
/// polled by its connection's own task alone, whose waker does not change.
pub(super) struct DrainProbe {
    changed: Pin<Box<dyn Future<Output = ()> + Send>>,
    signal: watch::Receiver<()>,
    stage: DrainStage,
}

impl DrainProbe {
    /// Ready once the drain has begun.
    pub(super) fn poll_begun(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        match self.stage {
            DrainStage::Unregistered => {
                if self.changed.as_mut().poll(cx).is_ready() {
                    self.stage = DrainStage::Begun;
                    return Poll::Ready(());
                }
                self.stage = DrainStage::Registered;
                Poll::Pending
            }
            DrainStage::Registered if self.signal.has_changed().unwrap_or(true) => {
                self.stage = DrainStage::Begun;
                Poll::Ready(())
            }
            DrainStage::Registered => Poll::Pending,
            DrainStage::Begun => Poll::Ready(()),
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum DrainStage {
    /// The notification future has not been polled yet.
    Unregistered,
    /// This task's waker is registered; the version tells whether the drain began.
    Registered,
    /// The drain has begun.
    Begun,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[tokio::test]
    async fn a_drain_waits_for_its_watches_and_asks_each_to_finish() {
        let drain = Drain::new();
        let watch = drain.watch();
        let (finish_tx, finish_rx) = tokio::sync::oneshot::channel::<()>();
        // A stand-in connection: ends once asked to finish.
        let asked = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let seen = asked.clone();
        let conn = async move {
            let _ = finish_rx.await;
            Ok::<(), ()>(())
        };
        let mut finish = Some(finish_tx);
        let task = tokio::spawn(watch.serve(conn, move |_| {
            seen.store(true, std::sync::atomic::Ordering::SeqCst);
            if let Some(tx) = finish.take() {
                let _ = tx.send(());
            }
        }));
        tokio::task::yield_now().await;
        assert!(!asked.load(std::sync::atomic::Ordering::SeqCst));
        tokio::time::timeout(Duration::from_secs(5), drain.shutdown())
            .await
            .unwrap();
        assert!(asked.load(std::sync::atomic::Ordering::SeqCst));
        assert_eq!(task.await.unwrap(), Ok(()));
    }
}
