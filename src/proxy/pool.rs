//! Keep-alive connections to the upstream, one idle list per worker thread.
//!
//! A request takes an idle connection from its thread's list (or opens one), and the response
//! body puts it back when it has been read to its end, on the same thread. With one
//! single-threaded runtime per core, a request and its upstream connection never cross
//! threads, and no connection has a task of its own (see [`super::upstream`]).

use std::cell::Cell;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use http::Response;
use tokio::time::Instant;

use super::upstream::{self, Home, OutgoingRequest, ResponseBody, UpstreamConn, UpstreamError};

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

/// The connection pool; shared by every worker.
pub struct UpstreamPool {
    slots: Box<[Mutex<VecDeque<IdleConn>>]>,
    settings: PoolSettings,
    sweeper: OnceLock<()>,
}

struct IdleConn {
    conn: UpstreamConn,
    endpoint: Arc<Endpoint>,
    since: Instant,
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

    /// Sends `req` on an idle connection to `endpoint`, or on a new one. A request that
    /// cannot have reached the upstream (a pooled connection the upstream closed just then;
    /// for idempotent requests without a body, also one answered with nothing) is sent again
    /// on another connection; any other is never resent.
    pub async fn send(
        self: &Arc<Self>,
        endpoint: &Arc<Endpoint>,
        mut req: OutgoingRequest,
    ) -> Result<Response<ResponseBody>, UpstreamError> {
        self.start_sweeper();
        let slot = thread_slot() % self.slots.len();
        while let Some(mut conn) = self.take_idle(slot, endpoint) {
            match conn.exchange(&mut req).await {
                Ok(exchanged) => return Ok(self.respond(conn, exchanged, slot, endpoint)),
                Err(failed) if failed.unsent => continue,
                Err(failed) => return Err(failed.error),
            }
        }
        let mut conn = UpstreamConn::connect(endpoint, self.settings.connect_timeout).await?;
        match conn.exchange(&mut req).await {
            Ok(exchanged) => Ok(self.respond(conn, exchanged, slot, endpoint)),
            Err(failed) => Err(failed.error),
        }
    }

    fn respond(
        self: &Arc<Self>,
        conn: UpstreamConn,
        exchanged: upstream::Exchanged,
        slot: usize,
        endpoint: &Arc<Endpoint>,
    ) -> Response<ResponseBody> {
        let home = Home {
            pool: Arc::downgrade(self),
            slot,
            endpoint: endpoint.clone(),
        };
        upstream::response(conn, exchanged, home)
    }

    /// The most recently used idle connection to `endpoint` that is still open. Closed,
    /// expired and other-endpoint (before a reload) connections met on the way are dropped,
    /// which closes them.
    fn take_idle(&self, slot: usize, endpoint: &Endpoint) -> Option<UpstreamConn> {
        let Ok(mut idle) = self.slots[slot].lock() else {
            return None;
        };
        let now = Instant::now();
        while let Some(candidate) = idle.pop_back() {
            if *candidate.endpoint == *endpoint
                && now.duration_since(candidate.since) < self.settings.idle_timeout
                && candidate.conn.is_idle_and_open()
            {
                return Some(candidate.conn);
            }
        }
        None
    }

    /// Takes a connection back after a complete response.
    pub(super) fn check_in(&self, conn: UpstreamConn, home: Home) {
        let Ok(mut idle) = self.slots[home.slot].lock() else {
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
                conn,
                endpoint: home.endpoint,
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
                                now.duration_since(c.since) < pool.settings.idle_timeout
                                    && c.conn.is_idle_and_open()
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
