//! A streaming body with a per-frame idle timeout instead of a total one: a 1 GiB upload may
//! take an hour, but not a minute of silence.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use prometheus_client::metrics::counter::Counter;
use tokio::sync::oneshot;
use tokio::time::{Instant, Sleep};

use crate::body::BoxError;

/// The error a body yields after `body_idle_timeout` without a frame.
#[derive(Debug, thiserror::Error)]
#[error("no body data for {0:?}")]
pub struct BodyIdleTimeout(pub Duration);

/// The sending side of an [`UploadWatch`], carried by a request body.
pub struct UploadSignal {
    frames: Arc<AtomicU64>,
    finished: Option<oneshot::Sender<()>>,
}

/// Watches a request body being sent upstream: it ends (or is dropped), or it stalls.
pub struct UploadWatch {
    frames: Arc<AtomicU64>,
    finished: oneshot::Receiver<()>,
}

/// The request body made no progress for a whole idle period.
#[derive(Debug)]
pub struct UploadStalled;

/// A connected signal and watch.
pub fn upload_watch() -> (UploadSignal, UploadWatch) {
    let frames = Arc::new(AtomicU64::new(0));
    let (tx, rx) = oneshot::channel();
    (
        UploadSignal {
            frames: frames.clone(),
            finished: Some(tx),
        },
        UploadWatch {
            frames,
            finished: rx,
        },
    )
}

impl UploadWatch {
    /// Resolves when the body has been sent or dropped; fails when no frame moved for `idle`.
    /// This also catches an upstream that stops reading (the body is then never polled, so
    /// its own idle timer cannot fire).
    pub async fn sent(mut self, idle: Duration) -> Result<(), UploadStalled> {
        loop {
            let seen = self.frames.load(Ordering::Relaxed);
            match tokio::time::timeout(idle, &mut self.finished).await {
                Ok(_) => return Ok(()),
                Err(_) if self.frames.load(Ordering::Relaxed) == seen => return Err(UploadStalled),
                Err(_) => {}
            }
        }
    }
}

pin_project! {
    /// Passes frames of `inner` through; fails when none arrives for `idle`. Frames and the
    /// end of the stream (or dropping the body) are reported to `signal`'s [`UploadWatch`].
    ///
    /// The timer is armed only when the body first has to wait: most responses are one
    /// frame that is ready at once, and they cost no clock reading and no timer.
    pub struct IdleTimeout<B> {
        #[pin]
        inner: B,
        sleep: Option<Pin<Box<Sleep>>>,
        idle: Duration,
        last_frame: Option<Instant>,
        signal: Option<UploadSignal>,
        on_timeout: Option<Counter>,
    }
}

impl<B> IdleTimeout<B> {
    /// Wraps `inner`; progress goes to `signal` when given.
    pub fn new(inner: B, idle: Duration, signal: Option<UploadSignal>) -> Self {
        Self {
            inner,
            sleep: None,
            idle,
            last_frame: None,
            signal,
            on_timeout: None,
        }
    }

    /// Counts a timeout in `counter` and logs it: a response body the upstream stopped
    /// sending (an upload's timeout is reported where the request fails).
    pub fn count_timeout_in(mut self, counter: Counter) -> Self {
        self.on_timeout = Some(counter);
        self
    }
}

impl<B> Body for IdleTimeout<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        match this.inner.poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                // Resetting the timer on every frame would cost a timer-wheel update each
                // time; remembering the instant and checking when the timer fires is enough.
                if this.sleep.is_some() {
                    *this.last_frame = Some(Instant::now());
                }
                if let Some(signal) = this.signal.as_ref() {
                    signal.frames.fetch_add(1, Ordering::Relaxed);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(err))) => Poll::Ready(Some(Err(err.into()))),
            Poll::Ready(None) => {
                if let Some(finished) = this.signal.as_mut().and_then(|s| s.finished.take()) {
                    let _ = finished.send(());
                }
                Poll::Ready(None)
            }
            Poll::Pending => {
                let idle = *this.idle;
                let sleep = this.sleep.get_or_insert_with(|| {
                    let now = Instant::now();
                    *this.last_frame = Some(now);
                    Box::pin(tokio::time::sleep_until(now + idle))
                });
                loop {
                    if sleep.as_mut().poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    let deadline = this.last_frame.map_or_else(Instant::now, |t| t + idle);
                    if Instant::now() >= deadline {
                        if let Some(counter) = this.on_timeout.take() {
                            counter.inc();
                            tracing::warn!(
                                kind = "body_timeout",
                                idle_ms = idle.as_millis() as u64,
                                "upstream response body stalled; cut after upstream.body_idle_timeout"
                            );
                        }
                        return Poll::Ready(Some(Err(Box::new(BodyIdleTimeout(idle)))));
                    }
                    sleep.as_mut().reset(deadline);
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, StreamBody};

    #[tokio::test]
    async fn idle_body_fails_and_busy_body_passes() {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, BoxError>>(4);
        let stream = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        });
        let (signal, watch) = upload_watch();
        let mut body = Box::pin(IdleTimeout::new(
            StreamBody::new(stream),
            Duration::from_millis(300),
            Some(signal),
        ));

        // Frames every 200 ms: each gap is below the idle limit though the total is above it.
        for _ in 0..3 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            tx.send(Ok(Frame::data(Bytes::from_static(b"x"))))
                .await
                .unwrap();
            let frame = body.frame().await.unwrap().unwrap();
            assert_eq!(frame.into_data().unwrap(), "x");
        }
        assert_eq!(watch.frames.load(Ordering::Relaxed), 3);

        // Then silence: the error names the timeout.
        let err = body.frame().await.unwrap().unwrap_err();
        assert!(err.downcast_ref::<BodyIdleTimeout>().is_some(), "{err}");
        drop(tx);
    }

    #[tokio::test]
    async fn end_of_stream_signals_finished() {
        let (signal, watch) = upload_watch();
        let body = IdleTimeout::new(
            http_body_util::Full::new(Bytes::from_static(b"abc")),
            Duration::from_secs(10),
            Some(signal),
        );
        let bytes = body.collect().await.unwrap().to_bytes();
        assert_eq!(bytes, "abc");
        assert!(watch.sent(Duration::from_millis(100)).await.is_ok());
    }

    #[tokio::test]
    async fn a_body_nobody_polls_is_a_stalled_upload() {
        let (signal, watch) = upload_watch();
        let _body = IdleTimeout::new(
            http_body_util::Full::new(Bytes::from_static(b"abc")),
            Duration::from_secs(10),
            Some(signal),
        );
        assert!(watch.sent(Duration::from_millis(100)).await.is_err());
    }
}
