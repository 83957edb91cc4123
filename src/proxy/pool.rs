//! Keep-alive connections to the upstream, one idle list per worker thread.
//!
//! hyper-util's pooled client costs a spawned task per request (it hands a connection back to
//! its pool from a separate task once the connection is idle again) plus a channel hop and a
//! shared lock; on a sidecar whose whole job is to add little, that was most of the proxy's
//! own CPU time per request. Here a request takes an idle connection from its thread's list
//! (or opens one), and the response body puts it back when it has been read to its end, on the
//! same thread, with no task of its own. Connection tasks are spawned on the runtime of the
//! thread that opened them, so with one single-threaded runtime per core a request and its
//! upstream connection never cross threads.

use std::cell::Cell;
use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::FutureExt as _;
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::body::BoxBody;

/// Where connections go: host and port of `upstream.url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
}

/// Pool settings, fixed for the life of the process.
#[derive(Debug, Clone, Copy)]
pub struct PoolSettings {
    pub connect_timeout: Duration,
    /// Idle connections older than this are closed (kept below the upstream's keep-alive).
    pub idle_timeout: Duration,
    /// Idle connections kept per worker thread.
    pub max_idle_per_slot: usize,
}

/// Why no response came back.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("connect to the upstream failed: {0}")]
    Connect(#[source] io::Error),
    #[error("connect to the upstream timed out")]
    ConnectTimeout,
    #[error("upstream request failed: {0}")]
    Request(#[source] hyper::Error),
}

/// The connection pool; shared by every worker.
pub struct UpstreamPool {
    slots: Box<[Mutex<VecDeque<IdleConn>>]>,
    settings: PoolSettings,
    sweeper: OnceLock<()>,
}

struct IdleConn {
    sender: SendRequest<BoxBody>,
    endpoint: Arc<Endpoint>,
    since: Instant,
}

/// A connection lent to one request; handed back by [`PooledBody`] when the response is read.
pub struct Lease {
    pool: Weak<UpstreamPool>,
    slot: usize,
    sender: SendRequest<BoxBody>,
    endpoint: Arc<Endpoint>,
}

impl UpstreamPool {
    /// An empty pool with one idle list per available core.
    pub fn new(settings: PoolSettings) -> Arc<Self> {
        let slots = std::thread::available_parallelism().map_or(1, |n| n.get());
        Arc::new(Self {
            slots: (0..slots).map(|_| Mutex::new(VecDeque::new())).collect(),
            settings,
            sweeper: OnceLock::new(),
        })
    }

    /// Sends `req` on an idle connection to `endpoint`, or on a new one. A request that a
    /// pooled connection closed before writing (the upstream's keep-alive ran out just then)
    /// is sent again on another connection; one that was written is never resent.
    pub async fn send(
        self: &Arc<Self>,
        endpoint: &Arc<Endpoint>,
        mut req: Request<BoxBody>,
    ) -> Result<(Response<Incoming>, Lease), UpstreamError> {
        self.start_sweeper();
        let slot = thread_slot() % self.slots.len();
        while let Some(mut sender) = self.take_idle(slot, endpoint) {
            match sender.try_send_request(req).await {
                Ok(resp) => return Ok((resp, self.lease(slot, sender, endpoint))),
                Err(mut failed) => match failed.take_message() {
                    Some(unsent) => req = unsent,
                    None => return Err(UpstreamError::Request(failed.into_error())),
                },
            }
        }
        let mut sender = self.connect(endpoint).await?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(UpstreamError::Request)?;
        Ok((resp, self.lease(slot, sender, endpoint)))
    }

    fn lease(
        self: &Arc<Self>,
        slot: usize,
        sender: SendRequest<BoxBody>,
        e: &Arc<Endpoint>,
    ) -> Lease {
        Lease {
            pool: Arc::downgrade(self),
            slot,
            sender,
            endpoint: e.clone(),
        }
    }

    /// The most recently used idle connection to `endpoint` that is ready now. Closed, expired
    /// and other-endpoint (before a reload) connections met on the way are dropped, which
    /// closes them; one still finishing its previous exchange is kept for later.
    fn take_idle(&self, slot: usize, endpoint: &Endpoint) -> Option<SendRequest<BoxBody>> {
        let Ok(mut idle) = self.slots[slot].lock() else {
            return None;
        };
        let now = Instant::now();
        let mut busy = None;
        let mut found = None;
        while let Some(mut conn) = idle.pop_back() {
            if conn.sender.is_closed()
                || *conn.endpoint != *endpoint
                || now.duration_since(conn.since) >= self.settings.idle_timeout
            {
                continue;
            }
            match conn.sender.ready().now_or_never() {
                Some(Ok(())) => {
                    found = Some(conn.sender);
                    break;
                }
                Some(Err(_)) => continue,
                None => {
                    if busy.is_none() {
                        busy = Some(conn);
                    }
                }
            }
        }
        if let Some(conn) = busy {
            idle.push_back(conn);
        }
        found
    }

    async fn connect(&self, endpoint: &Endpoint) -> Result<SendRequest<BoxBody>, UpstreamError> {
        let connect = TcpStream::connect((endpoint.host.as_str(), endpoint.port));
        let stream = match tokio::time::timeout(self.settings.connect_timeout, connect).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(err)) => return Err(UpstreamError::Connect(err)),
            Err(_) => return Err(UpstreamError::ConnectTimeout),
        };
        if let Err(err) = stream.set_nodelay(true) {
            tracing::debug!(error = %err, "cannot set TCP_NODELAY upstream");
        }
        let (sender, conn) = http1::Builder::new()
            .handshake(TokioIo::new(stream))
            .await
            .map_err(UpstreamError::Request)?;
        tokio::spawn(async move {
            if let Err(err) = conn.with_upgrades().await {
                tracing::debug!(error = %err, "upstream connection ended with an error");
            }
        });
        Ok(sender)
    }

    fn check_in(&self, lease: Lease) {
        if lease.sender.is_closed() {
            return;
        }
        let Ok(mut idle) = self.slots[lease.slot].lock() else {
            return;
        };
        let now = Instant::now();
        // Oldest first: drop what has been idle too long, then make room.
        while idle
            .front()
            .is_some_and(|c| now.duration_since(c.since) >= self.settings.idle_timeout)
        {
            idle.pop_front();
        }
        if idle.len() >= self.settings.max_idle_per_slot {
            idle.pop_front();
        }
        if self.settings.max_idle_per_slot > 0 {
            idle.push_back(IdleConn {
                sender: lease.sender,
                endpoint: lease.endpoint,
                since: now,
            });
        }
    }

    /// Closes expired idle connections even when no request comes to do it, so a quiet site
    /// does not keep sockets the upstream is about to close.
    fn start_sweeper(self: &Arc<Self>) {
        self.sweeper.get_or_init(|| {
            let pool = Arc::downgrade(self);
            let period = (self.settings.idle_timeout / 2).max(Duration::from_millis(100));
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(period).await;
                    let Some(pool) = pool.upgrade() else { return };
                    let now = Instant::now();
                    for slot in pool.slots.iter() {
                        if let Ok(mut idle) = slot.lock() {
                            idle.retain(|c| {
                                !c.sender.is_closed()
                                    && now.duration_since(c.since) < pool.settings.idle_timeout
                            });
                        }
                    }
                }
            });
        });
    }

    /// Idle connections held now (all slots), for tests and metrics.
    pub fn idle_count(&self) -> usize {
        self.slots
            .iter()
            .map(|s| s.lock().map_or(0, |idle| idle.len()))
            .sum()
    }
}

impl Lease {
    /// Hands the connection back for the next request.
    fn release(self) {
        if let Some(pool) = self.pool.upgrade() {
            pool.check_in(self);
        }
    }
}

/// The slot of the calling thread: threads take slots round-robin on first use.
fn thread_slot() -> usize {
    static NEXT_SLOT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SLOT: Cell<usize> = const { Cell::new(usize::MAX) };
    }
    SLOT.with(|slot| {
        if slot.get() == usize::MAX {
            slot.set(NEXT_SLOT.fetch_add(1, Ordering::Relaxed));
        }
        slot.get()
    })
}

pin_project_lite::pin_project! {
    /// The upstream's response body; gives its connection back once read to the end. A body
    /// dropped before its end (client gone) takes the connection with it: what is left of the
    /// response would otherwise be read as the next one.
    pub struct PooledBody {
        #[pin]
        inner: Incoming,
        lease: Option<Lease>,
    }

    impl PinnedDrop for PooledBody {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if this.inner.is_end_stream() {
                if let Some(lease) = this.lease.take() {
                    lease.release();
                }
            }
        }
    }
}

impl PooledBody {
    pub fn new(inner: Incoming, lease: Lease) -> Self {
        Self {
            inner,
            lease: Some(lease),
        }
    }
}

impl Body for PooledBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        if let Poll::Ready(None) = polled {
            if let Some(lease) = this.lease.take() {
                lease.release();
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
