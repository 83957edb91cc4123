//! A streaming body with a per-frame idle timeout instead of a total one: a 1 GiB upload may
//! take an hour, but not a minute of silence.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tokio::sync::oneshot;
use tokio::time::{Instant, Sleep};

use crate::body::BoxError;

/// The error a body yields after `body_idle_timeout` without a frame.
#[derive(Debug, thiserror::Error)]
#[error("no body data for {0:?}")]
pub struct BodyIdleTimeout(pub Duration);

pin_project! {
    /// Passes frames of `inner` through; fails when none arrives for `idle`. When the stream
    /// ends, or the body is dropped, `finished` fires (the response-header timeout starts then).
    pub struct IdleTimeout<B> {
        #[pin]
        inner: B,
        #[pin]
        sleep: Sleep,
        idle: Duration,
        last_frame: Instant,
        finished: Option<oneshot::Sender<()>>,
    }
}

impl<B> IdleTimeout<B> {
    /// Wraps `inner`; `finished` is signalled at the end of the stream.
    pub fn new(inner: B, idle: Duration, finished: Option<oneshot::Sender<()>>) -> Self {
        let now = Instant::now();
        Self {
            inner,
            sleep: tokio::time::sleep_until(now + idle),
            idle,
            last_frame: now,
            finished,
        }
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
        let mut this = self.project();
        match this.inner.poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                // Resetting the timer on every frame would cost a timer-wheel update each
                // time; remembering the instant and checking when the timer fires is enough.
                *this.last_frame = Instant::now();
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(err))) => Poll::Ready(Some(Err(err.into()))),
            Poll::Ready(None) => {
                if let Some(finished) = this.finished.take() {
                    let _ = finished.send(());
                }
                Poll::Ready(None)
            }
            Poll::Pending => loop {
                if this.sleep.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                let deadline = *this.last_frame + *this.idle;
                if Instant::now() >= deadline {
                    return Poll::Ready(Some(Err(Box::new(BodyIdleTimeout(*this.idle)))));
                }
                this.sleep.as_mut().reset(deadline);
            },
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
        let (done_tx, mut done_rx) = oneshot::channel();
        let mut body = Box::pin(IdleTimeout::new(
            StreamBody::new(stream),
            Duration::from_millis(300),
            Some(done_tx),
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
        assert!(done_rx.try_recv().is_err());

        // Then silence: the error names the timeout.
        let err = body.frame().await.unwrap().unwrap_err();
        assert!(err.downcast_ref::<BodyIdleTimeout>().is_some(), "{err}");
        drop(tx);
    }

    #[tokio::test]
    async fn end_of_stream_signals_finished() {
        let (done_tx, done_rx) = oneshot::channel();
        let body = IdleTimeout::new(
            http_body_util::Full::new(Bytes::from_static(b"abc")),
            Duration::from_secs(10),
            Some(done_tx),
        );
        let bytes = body.collect().await.unwrap().to_bytes();
        assert_eq!(bytes, "abc");
        assert!(done_rx.await.is_ok());
    }
}
