//! A simulated Chamilo: an in-process HTTP server on a loopback port that answers the web
//! services the proxy uses (`v2.php` and two SOAP operations) the way the current 1.11.x
//! release does, as recorded in `../shared/docs/chamilo-transcripts/`.
//!
//! It exists for tests, benchmarks and the `demo` subcommand. Besides the protocol it keeps
//! per-action call counters and models cost (a fixed latency per call, plus a listing cost
//! proportional to the number of users and to the number of extra fields requested), so a
//! design that lists every user per request shows up in a benchmark.
//!
//! ```no_run
//! # async fn f() -> std::io::Result<()> {
//! use chamilo_scim_proxy::standin::{Standin, StandinConfig};
//! let chamilo = Standin::start(StandinConfig::default()).await?;
//! chamilo.seed_users(1000);
//! println!("{} (admin key {})", chamilo.base_url, chamilo.admin_api_key);
//! # Ok(()) }
//! ```
//!
//! # Writes
//!
//! Writes follow Chamilo, not a database transaction (`rest-current-1.11-writes.txt`):
//!
//! - Every extra-field value row carries `updated_at`, in whole seconds
//!   ([`User::extra_updated_at`]). `save_user` stamps every value it writes (the original-id
//!   value, `extra[]`, `already_logged_in`).
//! - `update_user_from_username` walks the POST keys in `$_POST` order (a key sits where it first
//!   appeared; all `extra[…]` pairs are one key `extra`). Column keys (`firstname`, `active`,
//!   `status`, …) only record a pending value; `language` is checked when reached; each
//!   `extra` entry is saved at once, in order; an unsupported key aborts when reached. The
//!   pending columns are written after the loop, all together. An abort answers
//!   `{"error":true,…}`: extra values saved before it stay saved, no column is written.
//! - Saving one extra value ([`ChamiloState::save_extra_value`]) fails for an unknown field
//!   variable, and fails when the row already holds the value **and** was written in the same
//!   second (the `UPDATE` changes no row, which Chamilo's model reports as a failure). One
//!   second later the same write succeeds. Columns alone can be rewritten unchanged freely.
//!
//! # Clock
//!
//! "Now" comes from [`StandinConfig::clock`]: [`Clock::Real`] (wall-clock UNIX seconds, the
//! default) or [`Clock::manual`], which only moves when a test calls
//! [`Clock::set`]/[`Clock::advance`] (through [`StandinHandle::clock`] or a clone kept before
//! start). The server reads it once per request and passes it down (`rest.rs` and `soap.rs`
//! stay pure over the state); the direct-edit helpers tests use behind the proxy's back
//! ([`ChamiloState::set_extra`], [`ChamiloState::edit_user`], [`ChamiloState::user_mut`],
//! [`ChamiloState::insert_user`]) stamp with the same clock.
//!
//! ```no_run
//! # async fn f() -> std::io::Result<()> {
//! use chamilo_scim_proxy::standin::{Clock, Standin, StandinConfig};
//! let chamilo = Standin::start(StandinConfig {
//!     clock: Clock::manual(1_796_234_755),
//!     ..StandinConfig::default()
//! })
//! .await?;
//! // … a write, then the same write again: fails in this second …
//! chamilo.clock().advance(1); // … and succeeds in the next.
//! # Ok(()) }
//! ```
//!
//! # Fault injection
//!
//! [`StandinHandle::inject_fault`] queues a [`Fault`]: its [`FaultTarget`] picks one call, the
//! n-th of any action ([`FaultTarget::NthCall`]) or of one REST action / SOAP operation
//! ([`FaultTarget::NthOf`]), counted from the injection; its [`FaultKind`] says what happens
//! instead of the normal answer: [`FaultKind::Refuse`] (REST: HTTP 200 `error:true` with the
//! message; SOAP: HTTP 500 `Server` fault with the message), [`FaultKind::Fatal`] (HTTP 500,
//! empty body), [`FaultKind::HtmlPage`] (Chamilo's HTML error page, HTTP 200) — none of them
//! applies the call — and [`FaultKind::Timeout`] / [`FaultKind::Drop`], which apply the call
//! first when `applied` is true, then hold the response for [`FAULT_HOLD`] (or until the
//! stand-in stops) / close the TCP connection without a byte of response. Each fault fires
//! once; a faulted call is counted by [`StandinHandle::calls`]. [`StandinHandle::inject`]
//! still makes every REST call fail one way until reset.
//!
//! ```no_run
//! # async fn f(chamilo: chamilo_scim_proxy::standin::StandinHandle) {
//! use chamilo_scim_proxy::standin::{Fault, FaultKind};
//! // The next update is applied, but its response never arrives.
//! chamilo.inject_fault(Fault::nth_of(
//!     "update_user_from_username",
//!     1,
//!     FaultKind::Drop { applied: true },
//! ));
//! # }
//! ```

pub mod clock;
pub mod fault;
pub mod form;
pub mod rest;
pub mod soap;
pub mod state;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use self::clock::{Clock, ManualClock};
use self::fault::PendingFault;
pub use self::fault::{Fault, FaultKind, FaultTarget, Injected, FAULT_HOLD};
use self::form::FormPairs;
use self::rest::{Reply, RestRequest, Site};
pub use self::state::{ChamiloState, ExtraWrite, ExtraWriteError, NewUser, User, UserMut};

/// Path of the REST web services.
pub const REST_PATH: &str = "/main/webservices/api/v2.php";
/// Path of the SOAP registration service.
pub const SOAP_PATH: &str = "/main/webservices/registration.soap.php";

/// How the stand-in is set up.
#[derive(Debug, Clone)]
pub struct StandinConfig {
    /// Password of `admin` (id 1), for `authenticate`.
    pub admin_password: String,
    /// Chamilo's `security_key` (from `app/config/configuration.php`), for SOAP.
    pub security_key: String,
    /// Added to every call.
    pub latency: Duration,
    /// Added to a listing per user in the table.
    pub listing_cost_per_user: Duration,
    /// Added to a listing per user and per requested extra field (one query each in PHP).
    pub extra_field_cost_per_user: Duration,
    /// Size of the debug comment after each SOAP envelope.
    pub soap_debug_bytes: usize,
    /// Students created at start (see [`ChamiloState::seed_users`]).
    pub seed_users: usize,
    /// Where "now" comes from (default: the real clock). Give a [`Clock::manual`] to decide
    /// which calls fall in the same second.
    pub clock: Clock,
}

impl Default for StandinConfig {
    fn default() -> Self {
        Self {
            admin_password: "ChamiloAdmin2024".to_owned(),
            security_key: state::random_hex(16),
            latency: Duration::ZERO,
            listing_cost_per_user: Duration::ZERO,
            extra_field_cost_per_user: Duration::ZERO,
            soap_debug_bytes: 15_000,
            seed_users: 0,
            clock: Clock::Real,
        }
    }
}

impl StandinConfig {
    /// The cost shape measured on real Chamilo (PHP built-in server, loopback): about 40 ms
    /// per call, 40 µs per listed user, 0.4 ms per user and extra field.
    pub fn realistic() -> Self {
        Self {
            latency: Duration::from_millis(40),
            listing_cost_per_user: Duration::from_micros(40),
            extra_field_cost_per_user: Duration::from_micros(400),
            ..Self::default()
        }
    }
}

/// Modelled cost, adjustable while running.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cost {
    pub latency: Duration,
    pub listing_cost_per_user: Duration,
    pub extra_field_cost_per_user: Duration,
}

impl Cost {
    fn of(&self, work: rest::Work) -> Duration {
        let users = u32::try_from(work.listed_users).unwrap_or(u32::MAX);
        let fields = u32::try_from(work.extra_fields).unwrap_or(u32::MAX);
        self.latency
            + self.listing_cost_per_user.saturating_mul(users)
            + self
                .extra_field_cost_per_user
                .saturating_mul(users)
                .saturating_mul(fields)
    }
}

struct Shared {
    state: Mutex<ChamiloState>,
    calls: Mutex<HashMap<String, u64>>,
    cost: Mutex<Cost>,
    injected: Mutex<Option<Injected>>,
    faults: Mutex<Vec<PendingFault>>,
    clock: Clock,
    /// Nanoseconds spent answering (modelled cost included), for "proxy's own time" figures.
    busy_nanos: std::sync::atomic::AtomicU64,
    /// Nanoseconds of modelled cost charged (the sleeps alone), deterministic unlike `busy_nanos`.
    modelled_nanos: std::sync::atomic::AtomicU64,
    /// SQL queries a real Chamilo would have run (see [`StandinHandle::queries`]).
    queries: std::sync::atomic::AtomicU64,
    security_key: String,
    soap_debug_bytes: usize,
    site: Site,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Starts stand-ins.
pub struct Standin;

impl Standin {
    /// Binds an ephemeral loopback port, authenticates `admin` and starts serving.
    pub async fn start(config: StandinConfig) -> std::io::Result<StandinHandle> {
        let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let addr = listener.local_addr()?;
        let base_url = format!("http://{addr}");
        let mut state =
            ChamiloState::fresh_with_clock(&config.admin_password, config.clock.clone());
        let admin_api_key = state.ensure_api_key(1);
        state.seed_users(config.seed_users);
        let shared = Arc::new(Shared {
            state: Mutex::new(state),
            calls: Mutex::new(HashMap::new()),
            cost: Mutex::new(Cost {
                latency: config.latency,
                listing_cost_per_user: config.listing_cost_per_user,
                extra_field_cost_per_user: config.extra_field_cost_per_user,
            }),
            injected: Mutex::new(None),
            faults: Mutex::new(Vec::new()),
            clock: config.clock.clone(),
            busy_nanos: std::sync::atomic::AtomicU64::new(0),
            modelled_nanos: std::sync::atomic::AtomicU64::new(0),
            queries: std::sync::atomic::AtomicU64::new(0),
            security_key: config.security_key.clone(),
            soap_debug_bytes: config.soap_debug_bytes,
            site: Site {
                base_url: base_url.clone(),
            },
        });
        let stop = CancellationToken::new();
        let tracker = TaskTracker::new();
        tracker.spawn(accept_loop(
            listener,
            shared.clone(),
            stop.clone(),
            tracker.clone(),
        ));
        Ok(StandinHandle {
            base_url,
            addr,
            admin_api_key,
            admin_username: "admin".to_owned(),
            admin_password: config.admin_password,
            security_key: config.security_key,
            shared,
            stop,
            tracker,
        })
    }
}

/// A running stand-in. Dropping it stops the server.
pub struct StandinHandle {
    /// `http://127.0.0.1:<port>`.
    pub base_url: String,
    pub addr: SocketAddr,
    /// The REST key of `admin`.
    pub admin_api_key: String,
    pub admin_username: String,
    pub admin_password: String,
    /// Chamilo's SOAP `security_key`.
    pub security_key: String,
    shared: Arc<Shared>,
    stop: CancellationToken,
    tracker: TaskTracker,
}

impl StandinHandle {
    /// `base_url` + the REST path.
    pub fn rest_url(&self) -> String {
        format!("{}{REST_PATH}", self.base_url)
    }

    /// `base_url` + the SOAP path.
    pub fn soap_url(&self) -> String {
        format!("{}{SOAP_PATH}", self.base_url)
    }

    /// Adds `n` students (see [`ChamiloState::seed_users`]); returns their ids.
    pub fn seed_users(&self, n: usize) -> Vec<u64> {
        lock(&self.shared.state).seed_users(n)
    }

    /// How many calls of `action` (REST action or SOAP operation) were answered.
    pub fn calls(&self, action: &str) -> u64 {
        lock(&self.shared.calls).get(action).copied().unwrap_or(0)
    }

    /// Calls of every action.
    pub fn all_calls(&self) -> HashMap<String, u64> {
        lock(&self.shared.calls).clone()
    }

    /// Total number of calls answered.
    pub fn total_calls(&self) -> u64 {
        lock(&self.shared.calls).values().sum()
    }

    /// Sets every counter (and the busy time) back to zero.
    pub fn reset_calls(&self) {
        lock(&self.shared.calls).clear();
        self.shared
            .busy_nanos
            .store(0, std::sync::atomic::Ordering::Relaxed);
        self.shared
            .queries
            .store(0, std::sync::atomic::Ordering::Relaxed);
        self.shared
            .modelled_nanos
            .store(0, std::sync::atomic::Ordering::Relaxed);
    }

    /// Modelled cost charged since the last reset: what the configured latency and per-user
    /// costs add up to for the calls answered, whatever the machine's load.
    pub fn modelled_time(&self) -> Duration {
        Duration::from_nanos(
            self.shared
                .modelled_nanos
                .load(std::sync::atomic::Ordering::Relaxed),
        )
    }

    /// SQL queries a real Chamilo would have run for the REST calls since the last reset:
    /// one per call, plus one per listed user and requested extra field (Chamilo 1.11 reads
    /// each extra field of each listed user with its own query).
    pub fn queries(&self) -> u64 {
        self.shared
            .queries
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Time spent answering requests since the last reset, modelled cost included: subtract
    /// it from a client's elapsed time to get the client's own share.
    pub fn busy_time(&self) -> Duration {
        Duration::from_nanos(
            self.shared
                .busy_nanos
                .load(std::sync::atomic::Ordering::Relaxed),
        )
    }

    /// The database, for direct reads and edits behind the proxy's back. Do not hold the guard
    /// across an `.await`: the server needs the same lock.
    pub fn state(&self) -> MutexGuard<'_, ChamiloState> {
        lock(&self.shared.state)
    }

    /// The modelled cost.
    pub fn cost(&self) -> Cost {
        *lock(&self.shared.cost)
    }

    /// Changes the modelled cost.
    pub fn set_cost(&self, cost: Cost) {
        *lock(&self.shared.cost) = cost;
    }

    /// Changes only the per-call latency.
    pub fn set_latency(&self, latency: Duration) {
        lock(&self.shared.cost).latency = latency;
    }

    /// Makes every following REST call fail this way (`None` to answer normally again).
    /// A queued [`Fault`] that hits a call takes precedence.
    pub fn inject(&self, failure: Option<Injected>) {
        *lock(&self.shared.injected) = failure;
    }

    /// The stand-in's clock (shared with its database's direct-edit helpers). With a manual
    /// clock, `chamilo.clock().advance(1)` moves every later call to the next second.
    pub fn clock(&self) -> &Clock {
        &self.shared.clock
    }

    /// Queues a fault: the call it targets (REST or SOAP) fails as `fault.kind` says, once.
    /// Several may be queued; each counts matching calls from its own injection. When two
    /// are due on the same call, the earlier-injected one fires and the other waits for the
    /// next matching call. A faulted call is counted by [`StandinHandle::calls`] like any.
    pub fn inject_fault(&self, fault: Fault) {
        lock(&self.shared.faults).push(PendingFault { fault, seen: 0 });
    }

    /// The faults queued and not fired yet, as injected, in injection order.
    pub fn pending_faults(&self) -> Vec<Fault> {
        lock(&self.shared.faults)
            .iter()
            .map(|p| p.fault.clone())
            .collect()
    }

    /// Forgets every queued fault.
    pub fn clear_faults(&self) {
        lock(&self.shared.faults).clear();
    }

    /// Stops accepting, closes every open connection and waits for the tasks to end.
    pub async fn stop(&self) {
        self.stop.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }
}

impl Drop for StandinHandle {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    stop: CancellationToken,
    tracker: TaskTracker,
) {
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => break,
            a = listener.accept() => a,
        };
        let Ok((stream, peer)) = accepted else {
            // Out of descriptors or similar: back off instead of spinning.
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let shared = shared.clone();
        let conn_ctl = ConnControl {
            stop: stop.clone(),
            kill: CancellationToken::new(),
        };
        tracker.spawn(async move {
            let kill = conn_ctl.kill.clone();
            let stop = conn_ctl.stop.clone();
            let service = service_fn(move |req| {
                let shared = shared.clone();
                let conn_ctl = conn_ctl.clone();
                async move {
                    let started = std::time::Instant::now();
                    let response = serve(shared.clone(), peer, req, conn_ctl).await;
                    let nanos = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
                    shared
                        .busy_nanos
                        .fetch_add(nanos, std::sync::atomic::Ordering::Relaxed);
                    Ok::<_, Infallible>(response)
                }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            // Dropping `conn` closes the socket without writing anything more: that is how a
            // `Drop` or `Timeout` fault ends its connection.
            tokio::select! {
                _ = conn => {}
                _ = stop.cancelled() => {}
                _ = kill.cancelled() => {}
            }
        });
    }
}

fn php_headers(builder: http::response::Builder) -> http::response::Builder {
    let sid: String = {
        use rand::Rng;
        const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
        let mut rng = rand::rng();
        (0..26)
            .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
            .collect()
    };
    builder
        .header("X-Powered-By", "PHP/8.2.36")
        .header(
            header::SET_COOKIE,
            format!("ch_sid={sid}; path=/; HttpOnly"),
        )
        .header(header::EXPIRES, "Thu, 19 Nov 1981 08:52:00 GMT")
        .header(header::CACHE_CONTROL, "no-store, no-cache, must-revalidate")
        .header(header::PRAGMA, "no-cache")
}

fn respond(
    status: StatusCode,
    content_type: &str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut builder =
        php_headers(Response::builder().status(status)).header(header::CONTENT_TYPE, content_type);
    if content_type == "application/json" {
        builder = builder.header(header::ACCESS_CONTROL_ALLOW_ORIGIN, "*");
    }
    builder
        .body(Full::new(body.into()))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}

/// What a connection's requests may do to the connection.
#[derive(Clone)]
struct ConnControl {
    /// The stand-in is stopping.
    stop: CancellationToken,
    /// Close this connection now, without a response.
    kill: CancellationToken,
}

/// Counts a call of `action` and returns the fault it triggers, if any.
fn record_call(shared: &Shared, action: &str) -> Option<FaultKind> {
    *lock(&shared.calls).entry(action.to_owned()).or_insert(0) += 1;
    fault::fire(&mut lock(&shared.faults), action)
}

/// Answers (or does not answer) a faulted call. The change, when the fault applies it, was
/// made by the caller already.
async fn fault_response(
    kind: FaultKind,
    refuse: impl FnOnce(&str) -> Response<Full<Bytes>>,
    latency: Duration,
    conn: &ConnControl,
) -> Response<Full<Bytes>> {
    tokio::time::sleep(latency).await;
    match kind {
        FaultKind::Refuse { message } => refuse(&message),
        FaultKind::Fatal => respond(
            StatusCode::INTERNAL_SERVER_ERROR,
            "text/html; charset=UTF-8",
            "",
        ),
        FaultKind::HtmlPage => respond(
            StatusCode::OK,
            "text/html; charset=UTF-8",
            soap::html_error_page(),
        ),
        FaultKind::Timeout { .. } => {
            tokio::select! {
                _ = tokio::time::sleep(FAULT_HOLD) => {}
                _ = conn.stop.cancelled() => {}
            }
            conn.kill.cancel();
            std::future::pending().await
        }
        FaultKind::Drop { .. } => {
            conn.kill.cancel();
            std::future::pending().await
        }
    }
}

async fn serve(
    shared: Arc<Shared>,
    peer: SocketAddr,
    req: Request<Incoming>,
    conn: ConnControl,
) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let body = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return respond(StatusCode::BAD_REQUEST, "text/html; charset=UTF-8", ""),
    };
    let body = String::from_utf8_lossy(&body).into_owned();
    let cost = *lock(&shared.cost);
    let now = shared.clock.now();
    match parts.uri.path() {
        REST_PATH if parts.method == Method::POST || parts.method == Method::GET => {
            let rest_req = RestRequest {
                query: FormPairs::parse(parts.uri.query().unwrap_or("")),
                body: if parts.method == Method::POST {
                    FormPairs::parse(&body)
                } else {
                    FormPairs::default()
                },
            };
            let action = rest::action_of(&rest_req);
            if let Some(kind) = record_call(&shared, &action) {
                if kind.applies() {
                    let mut state = lock(&shared.state);
                    rest::handle(&mut state, &shared.site, &rest_req, now);
                }
                let refuse = |message: &str| {
                    let body = serde_json::json!({"error": true, "message": message});
                    respond(StatusCode::OK, "application/json", rest::php_json(&body))
                };
                return fault_response(kind, refuse, cost.latency, &conn).await;
            }
            let injected = *lock(&shared.injected);
            let (reply, work) = match injected {
                Some(Injected::Fatal) => (Reply::Fatal, rest::Work::default()),
                Some(Injected::HtmlErrorPage) => {
                    tokio::time::sleep(cost.latency).await;
                    return respond(
                        StatusCode::OK,
                        "text/html; charset=UTF-8",
                        soap::html_error_page(),
                    );
                }
                None => {
                    let mut state = lock(&shared.state);
                    rest::handle(&mut state, &shared.site, &rest_req, now)
                }
            };
            shared
                .queries
                .fetch_add(work.queries(), std::sync::atomic::Ordering::Relaxed);
            let charged = cost.of(work);
            shared.modelled_nanos.fetch_add(
                u64::try_from(charged.as_nanos()).unwrap_or(u64::MAX),
                std::sync::atomic::Ordering::Relaxed,
            );
            tokio::time::sleep(charged).await;
            match reply {
                Reply::Json(v) => respond(StatusCode::OK, "application/json", rest::php_json(&v)),
                Reply::Fatal => respond(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "text/html; charset=UTF-8",
                    "",
                ),
            }
        }
        SOAP_PATH if parts.method == Method::POST => {
            let ip = parts
                .headers
                .get("x-forwarded-for")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split(',').next())
                .map(|s| s.trim().to_owned())
                .unwrap_or_else(|| match peer.ip() {
                    IpAddr::V4(a) => a.to_string(),
                    IpAddr::V6(a) => a.to_string(),
                });
            let op = soap::operation_of(&body);
            let fault = record_call(&shared, &op);
            let apply = fault.as_ref().is_none_or(FaultKind::applies);
            let reply = if apply {
                let mut state = lock(&shared.state);
                let (_, reply) = soap::handle(
                    &mut state,
                    &shared.security_key,
                    &ip,
                    &body,
                    shared.soap_debug_bytes,
                    now,
                );
                Some(reply)
            } else {
                None
            };
            if let Some(kind) = fault {
                let refuse = |message: &str| {
                    let r = soap::refusal(message, &body, &ip, shared.soap_debug_bytes);
                    let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::OK);
                    respond(status, r.content_type, r.body)
                };
                return fault_response(kind, refuse, cost.latency, &conn).await;
            }
            let Some(reply) = reply else {
                return respond(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "text/html; charset=UTF-8",
                    "",
                );
            };
            tokio::time::sleep(cost.latency).await;
            let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::OK);
            respond(status, reply.content_type, reply.body)
        }
        _ => respond(
            StatusCode::NOT_FOUND,
            "text/html; charset=UTF-8",
            "<html><body><h1>Not Found</h1></body></html>",
        ),
    }
}
