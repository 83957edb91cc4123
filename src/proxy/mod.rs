//! Transparent pass-through to the upstream Chamilo.
//!
//! One pooled HTTP/1.1 client (hyper-util legacy) is shared by all connections. For each
//! request: access rules on the normalised path; hop-by-hop headers out (those named by
//! `Connection` first); then `Host`, cookies and the forwarding headers; the body streams both
//! ways under a per-frame idle timeout; `101 Switching Protocols` becomes a tunnel.

pub mod access;
pub mod forwarded;
pub mod headers;
pub mod idle;
mod metrics;
mod upgrade;

use std::cell::Cell;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use http::header::{self, HeaderValue};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Response, StatusCode, Uri, Version};
use http_body::Body as _;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use prometheus_client::registry::Registry;
use tokio_util::task::TaskTracker;

use crate::body::{full, BoxBody};
use crate::config::{Config, UpstreamConfig};
use idle::IdleTimeout;
use metrics::{ErrorKind, ProxyMetrics};

/// Who sent a request, as the listener saw it.
#[derive(Debug, Clone, Copy)]
pub struct ClientInfo {
    /// The TCP peer address.
    pub peer: SocketAddr,
    /// Whether the client connection is TLS (sets `X-Forwarded-Proto`).
    pub tls: bool,
}

/// Why the pass-through could not be built from its configuration.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ProxyError(pub String);

/// The pass-through: pooled upstream clients shared by all connections.
pub struct Proxy {
    /// One pool per slot; a thread always uses the same slot (see [`Proxy::client`]).
    clients: Box<[Client<HttpConnector, BoxBody>]>,
    /// The parsed `upstream.url`, re-parsed only when a reload changes the text.
    target: ArcSwap<UpstreamTarget>,
    tunnels: TaskTracker,
    metrics: ProxyMetrics,
}

/// `upstream.url` split into the parts a request target is built from.
#[derive(Debug)]
struct UpstreamTarget {
    url: String,
    scheme: Scheme,
    authority: Authority,
    /// Path prefix of the upstream URL without its trailing slash (usually empty).
    base_path: String,
}

impl UpstreamTarget {
    fn parse(url: &str) -> Result<Self, ProxyError> {
        let uri: Uri = url
            .parse()
            .map_err(|e| ProxyError(format!("upstream.url {url:?} is not a URL: {e}")))?;
        let scheme = uri
            .scheme()
            .cloned()
            .ok_or_else(|| ProxyError(format!("upstream.url {url:?} has no scheme")))?;
        if scheme != Scheme::HTTP {
            return Err(ProxyError(format!(
                "upstream.url {url:?}: only http:// is supported (Chamilo on loopback or in the pod)"
            )));
        }
        let authority = uri
            .authority()
            .cloned()
            .ok_or_else(|| ProxyError(format!("upstream.url {url:?} has no host")))?;
        if uri.query().is_some() {
            return Err(ProxyError(format!(
                "upstream.url {url:?} must not have a query"
            )));
        }
        Ok(Self {
            url: url.to_owned(),
            scheme,
            authority,
            base_path: uri.path().trim_end_matches('/').to_owned(),
        })
    }

    /// The upstream URI for a client's target: same path and query, upstream's origin.
    fn uri_for(&self, client_target: &Uri) -> Result<Uri, http::Error> {
        let path_and_query = match client_target.path_and_query() {
            Some(pq) if self.base_path.is_empty() => pq.clone(),
            Some(pq) => PathAndQuery::try_from(format!("{}{}", self.base_path, pq))?,
            None => PathAndQuery::try_from(format!("{}/", self.base_path))?,
        };
        Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(path_and_query)
            .build()
    }
}

impl Proxy {
    /// Builds the pooled client (settings in `upstream` that need a new pool are fixed for the
    /// life of the process) and registers the proxy's metrics. Upgraded tunnels (WebSocket) are
    /// spawned on `tunnels` so that graceful shutdown can wait for them.
    pub fn new(
        upstream: &UpstreamConfig,
        registry: &mut Registry,
        tunnels: TaskTracker,
    ) -> Result<Self, ProxyError> {
        let target = UpstreamTarget::parse(&upstream.url)?;

        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(upstream.connect_timeout));
        connector.enforce_http(true);

        // One pool per core: a connection's task is spawned on the thread (and runtime) that
        // opened it, so a thread reusing its own connections avoids cross-thread wake-ups, and
        // works unchanged when the server runs one single-threaded runtime per core.
        let slots = std::thread::available_parallelism().map_or(1, |n| n.get());
        let idle_per_slot = upstream.pool_max_idle_per_host.div_ceil(slots);
        let clients = (0..slots)
            .map(|_| {
                Client::builder(TokioExecutor::new())
                    .pool_idle_timeout(upstream.pool_idle_timeout)
                    .pool_max_idle_per_host(idle_per_slot)
                    .pool_timer(TokioTimer::new())
                    .timer(TokioTimer::new())
                    .build(connector.clone())
            })
            .collect();

        Ok(Self {
            clients,
            target: ArcSwap::from_pointee(target),
            tunnels,
            metrics: ProxyMetrics::register(registry),
        })
    }

    /// Passes `req` to the upstream named in `cfg` (the snapshot this request started with).
    /// `path` is the normalised path the router decided on; access rules are checked on it.
    pub async fn forward(
        &self,
        mut req: Request<Incoming>,
        client: ClientInfo,
        cfg: &Config,
        path: &str,
    ) -> Response<BoxBody> {
        let trusted = &cfg.forwarding.trusted_networks;
        if !cfg.access.rules.is_empty() {
            let ip = forwarded::client_ip(req.headers(), client.peer.ip(), trusted);
            if !access::is_allowed(&cfg.access.rules, path, ip) {
                self.metrics.access_denied.inc();
                tracing::info!(path, client = ?ip, "pass-through denied by access rule");
                return plain(StatusCode::FORBIDDEN, "Forbidden\n");
            }
        }

        let target = match self.target(&cfg.upstream.url) {
            Ok(target) => target,
            Err(err) => {
                self.metrics.error(ErrorKind::Config);
                tracing::error!(error = %err, "cannot use upstream.url");
                return gateway_error(StatusCode::BAD_GATEWAY);
            }
        };
        let uri = match target.uri_for(req.uri()) {
            Ok(uri) => uri,
            Err(_) => return plain(StatusCode::BAD_REQUEST, "Bad request target\n"),
        };

        // The client's Host; an HTTP/2 `:authority` or absolute-form target wins (RFC 9112
        // §3.2.2), and must be copied before the target is rewritten.
        let host = match req.uri().authority() {
            Some(authority) => HeaderValue::from_str(authority.as_str()).ok(),
            None => req.headers().get(header::HOST).cloned(),
        };

        let protocol = headers::strip_hop_by_hop(req.headers_mut());
        let client_upgrade = match (&protocol, req.version()) {
            (Some(_), Version::HTTP_11) => Some(hyper::upgrade::on(&mut req)),
            _ => None,
        };

        let (mut parts, body) = req.into_parts();
        parts.uri = uri;
        parts.version = Version::HTTP_11;
        let h = &mut parts.headers;
        // hyper's server already answered `100 Continue`; its client cannot handle `Expect`.
        h.remove(header::EXPECT);
        headers::join_cookies(h);
        if let Some(host) = &host {
            h.insert(header::HOST, host.clone());
        }
        forwarded::apply(h, client.peer.ip(), client.tls, trusted, host.as_ref());
        if let (Some(protocol), Some(_)) = (&protocol, &client_upgrade) {
            headers::restore_upgrade(h, protocol.clone());
        }

        // The response-header timeout runs from the moment the request body is fully sent
        // (or dropped): a long upload is not a slow upstream. Until then, an upload that
        // makes no progress for `body_idle_timeout` (client silent, or upstream not reading)
        // ends the request.
        let idle = cfg.upstream.body_idle_timeout;
        let (body, watch) = if body.is_end_stream() {
            (IdleTimeout::new(body, idle, None).boxed(), None)
        } else {
            let (signal, watch) = idle::upload_watch();
            (
                IdleTimeout::new(body, idle, Some(signal)).boxed(),
                Some(watch),
            )
        };
        let header_timeout = cfg.upstream.response_header_timeout;
        let deadline = async move {
            if let Some(watch) = watch {
                watch.sent(idle).await.map_err(|_| ErrorKind::BodyTimeout)?;
            }
            tokio::time::sleep(header_timeout).await;
            Err::<(), _>(ErrorKind::ResponseTimeout)
        };

        let result = tokio::select! {
            result = self.client().request(Request::from_parts(parts, body)) => result,
            Err(kind) = deadline => {
                self.metrics.error(kind);
                tracing::warn!(kind = kind.as_str(), "upstream request timed out");
                return gateway_error(kind.status());
            }
        };
        let mut resp = match result {
            Ok(resp) => resp,
            Err(err) => {
                let kind = ErrorKind::of(&err);
                self.metrics.error(kind);
                tracing::warn!(kind = kind.as_str(), error = %error_chain(&err), "upstream request failed");
                return gateway_error(kind.status());
            }
        };

        if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
            return self.switch_protocols(resp, protocol, client_upgrade);
        }
        headers::strip_hop_by_hop(resp.headers_mut());
        let (parts, body) = resp.into_parts();
        Response::from_parts(parts, IdleTimeout::new(body, idle, None).boxed())
    }

    /// A `101` from upstream: accepted only for the protocol the client asked for; then both
    /// connections are spliced in a tracked task.
    fn switch_protocols(
        &self,
        mut resp: Response<Incoming>,
        requested: Option<HeaderValue>,
        client_upgrade: Option<hyper::upgrade::OnUpgrade>,
    ) -> Response<BoxBody> {
        let granted = headers::strip_hop_by_hop(resp.headers_mut());
        let (Some(requested), Some(granted), Some(client_upgrade)) =
            (requested, granted, client_upgrade)
        else {
            self.metrics.error(ErrorKind::Upgrade);
            tracing::warn!("upstream switched protocols without a matching upgrade request");
            return gateway_error(StatusCode::BAD_GATEWAY);
        };
        if !granted
            .as_bytes()
            .eq_ignore_ascii_case(requested.as_bytes())
        {
            self.metrics.error(ErrorKind::Upgrade);
            tracing::warn!("upstream switched to another protocol than the one requested");
            return gateway_error(StatusCode::BAD_GATEWAY);
        }
        let upstream_upgrade = hyper::upgrade::on(&mut resp);
        upgrade::splice(
            &self.tunnels,
            client_upgrade,
            upstream_upgrade,
            self.metrics.clone(),
        );
        let (mut parts, _) = resp.into_parts();
        headers::restore_upgrade(&mut parts.headers, granted);
        Response::from_parts(parts, crate::body::empty())
    }

    /// The pool of the calling thread: threads take slots round-robin on first use.
    fn client(&self) -> &Client<HttpConnector, BoxBody> {
        static NEXT_SLOT: AtomicUsize = AtomicUsize::new(0);
        thread_local! {
            static SLOT: Cell<usize> = const { Cell::new(usize::MAX) };
        }
        let slot = SLOT.with(|slot| {
            if slot.get() == usize::MAX {
                slot.set(NEXT_SLOT.fetch_add(1, Ordering::Relaxed));
            }
            slot.get()
        });
        &self.clients[slot % self.clients.len()]
    }

    fn target(&self, url: &str) -> Result<Arc<UpstreamTarget>, ProxyError> {
        let current = self.target.load_full();
        if current.url == url {
            return Ok(current);
        }
        let fresh = Arc::new(UpstreamTarget::parse(url)?);
        self.target.store(fresh.clone());
        Ok(fresh)
    }
}

/// The error and its sources on one line (hyper-util's own message is just "client error").
fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// A short text answer produced by the proxy itself.
fn plain(status: StatusCode, text: &'static str) -> Response<BoxBody> {
    let mut resp = Response::new(full(text));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// 502 / 504 for browsers: a tiny HTML page that is also readable as text.
fn gateway_error(status: StatusCode) -> Response<BoxBody> {
    let body: &'static str = if status == StatusCode::GATEWAY_TIMEOUT {
        "<!doctype html>\n<title>504 Gateway Timeout</title>\n<h1>504 Gateway Timeout</h1>\n\
         <p>The site took too long to answer. Please try again in a moment.</p>\n"
    } else {
        "<!doctype html>\n<title>502 Bad Gateway</title>\n<h1>502 Bad Gateway</h1>\n\
         <p>The site cannot be reached right now. Please try again in a moment.</p>\n"
    };
    let mut resp = Response::new(full(body));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_target_keeps_the_raw_client_target() {
        let t = UpstreamTarget::parse("http://127.0.0.1:8081").unwrap();
        let uri = t
            .uri_for(&"/main/a%2Fb.php?x=1&y=%00".parse().unwrap())
            .unwrap();
        assert_eq!(
            uri.to_string(),
            "http://127.0.0.1:8081/main/a%2Fb.php?x=1&y=%00"
        );
        let uri = t
            .uri_for(&"http://evil.example/index.php".parse().unwrap())
            .unwrap();
        assert_eq!(uri.to_string(), "http://127.0.0.1:8081/index.php");

        let t = UpstreamTarget::parse("http://chamilo:80/lms/").unwrap();
        let uri = t.uri_for(&"/index.php?a".parse().unwrap()).unwrap();
        assert_eq!(uri.to_string(), "http://chamilo:80/lms/index.php?a");
    }

    #[test]
    fn upstream_target_rejects_what_it_cannot_serve() {
        for url in ["https://x", "x:80", "http://x/?q", "not a url"] {
            assert!(UpstreamTarget::parse(url).is_err(), "{url}");
        }
    }
}
