//! Transparent pass-through to the upstream Chamilo.
//!
//! Upstream keep-alive connections live in an [`UpstreamPool`] with one idle list per worker
//! thread; HTTP/1.1 to the upstream is the proxy's own ([`crate::http1`], [`upstream`]). For each
//! request: access rules on the normalised path; the upstream's request head written without
//! hop-by-hop fields (those named by `Connection` first), with `Host`, joined cookies and the
//! forwarding fields; the body streams both ways under a per-frame idle timeout;
//! `101 Switching Protocols` becomes a tunnel.

pub mod access;
pub mod forwarded;
pub mod headers;
pub mod idle;
mod metrics;
pub mod pool;
mod upgrade;
pub mod upstream;

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use http::header::{self, HeaderMap, HeaderValue};
use http::uri::{Authority, Scheme};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::BodyExt;
use prometheus_client::registry::Registry;
use tokio_util::task::TaskTracker;

use crate::body::{full, plain_text, BoxBody};
use crate::config::{Config, UpstreamConfig};
use crate::http1::{RequestFraming, RequestHeadWriter};
use forwarded::Forwarding;
use headers::HopByHop;
use idle::IdleTimeout;
use metrics::{ErrorKind, ProxyMetrics};
use pool::{Endpoint, PoolSettings, UpstreamPool};
use upstream::{OutgoingRequest, ResponseBody};

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

/// The pass-through: the upstream connection pool and what each request needs.
pub struct Proxy {
    pool: Arc<UpstreamPool>,
    /// The parsed `upstream.url`, re-parsed only when a reload changes the text.
    target: ArcSwap<UpstreamTarget>,
    tunnels: TaskTracker,
    metrics: ProxyMetrics,
}

/// `upstream.url` split into the parts a request target is built from.
#[derive(Debug)]
struct UpstreamTarget {
    url: String,
    authority: Authority,
    /// Where connections go (host and port of `authority`).
    endpoint: Arc<Endpoint>,
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
        // `Authority::host` keeps an IPv6 literal's brackets; a socket address has none.
        let host = authority.host();
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        let endpoint = Arc::new(Endpoint {
            host: host.to_owned(),
            port: authority.port_u16().unwrap_or(80),
        });
        Ok(Self {
            url: url.to_owned(),
            authority,
            endpoint,
            base_path: uri.path().trim_end_matches('/').to_owned(),
        })
    }

    /// The request target sent upstream: origin-form (RFC 9112 §3.2.1), the client's path and
    /// query under the upstream URL's path. An absolute-form client target loses its origin.
    fn path_for<'a>(&self, client_target: &'a Uri) -> Cow<'a, str> {
        match client_target.path_and_query() {
            Some(pq) if self.base_path.is_empty() => Cow::Borrowed(pq.as_str()),
            Some(pq) => Cow::Owned(format!("{}{}", self.base_path, pq)),
            None => Cow::Owned(format!("{}/", self.base_path)),
        }
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
        let slots = std::thread::available_parallelism().map_or(1, |n| n.get());
        let pool = UpstreamPool::new(PoolSettings {
            connect_timeout: upstream.connect_timeout,
            idle_timeout: upstream.pool_idle_timeout,
            max_idle_per_slot: upstream.pool_max_idle_per_host.div_ceil(slots),
        });

        Ok(Self {
            pool,
            target: ArcSwap::from_pointee(target),
            tunnels,
            metrics: ProxyMetrics::register(registry),
        })
    }

    /// Passes `req` to the upstream named in `cfg` (the snapshot this request started with).
    /// `path` is the normalised path the router decided on; access rules are checked on it.
    pub async fn forward<B>(
        &self,
        mut req: Request<B>,
        client: ClientInfo,
        cfg: &Config,
        path: &str,
    ) -> Response<BoxBody>
    where
        B: http_body::Body<Data = bytes::Bytes> + Send + Sync + 'static,
        B::Error: Into<crate::body::BoxError>,
    {
        let trusted = &cfg.forwarding.trusted_networks;
        if !cfg.access.rules.is_empty() {
            let ip = forwarded::client_ip(req.headers(), client.peer.ip(), trusted);
            if !access::is_allowed(&cfg.access.rules, path, ip) {
                self.metrics.access_denied.inc();
                tracing::info!(path, client = ?ip, "pass-through denied by access rule");
                return plain_text(StatusCode::FORBIDDEN, "Forbidden\n");
            }
        }

        if let Some(coding) = unsupported_transfer_coding(req.headers()) {
            // The body would reach Chamilo with the coding lost (RFC 9112 §6.1: 501).
            tracing::info!(coding, "transfer coding other than chunked; answered 501");
            let mut resp = plain_text(
                StatusCode::NOT_IMPLEMENTED,
                "Transfer codings other than chunked are not supported\n",
            );
            resp.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            return resp;
        }

        let target = match self.target(&cfg.upstream.url) {
            Ok(target) => target,
            Err(err) => {
                self.metrics.error(ErrorKind::Config);
                tracing::error!(error = %err, "cannot use upstream.url");
                return gateway_error(StatusCode::BAD_GATEWAY);
            }
        };
        // The client's Host; an HTTP/2 `:authority` or absolute-form target wins (RFC 9112
        // §3.2.2). HTTP/1.0 without Host: name the upstream, as a client would.
        let host = match req.uri().authority() {
            Some(authority) => HeaderValue::from_str(authority.as_str()).ok(),
            None => req.headers().get(header::HOST).cloned(),
        };
        let hop = HopByHop::scan(req.headers());
        let client_upgrade = match (&hop.upgrade, req.version()) {
            (Some(_), Version::HTTP_11) => Some(hyper::upgrade::on(&mut req)),
            _ => None,
        };
        let (parts, body) = req.into_parts();
        let forwarding = Forwarding::new(
            &parts.headers,
            &hop,
            client.peer.ip(),
            client.tls,
            trusted,
            host.as_ref(),
        );
        let framing = RequestFraming::of(&parts.headers, body.is_end_stream());
        let head = UpstreamHead {
            method: &parts.method,
            target: &target.path_for(&parts.uri),
            headers: &parts.headers,
            host: host
                .as_ref()
                .map_or(target.authority.as_str().as_bytes(), HeaderValue::as_bytes),
            hop: &hop,
            upgrade: client_upgrade.as_ref().and(hop.upgrade.as_ref()),
            forwarding: &forwarding,
            framing,
        }
        .write();

        // The response-header timeout runs from the moment the request body is fully sent
        // (or dropped): a long upload is not a slow upstream. Until then, an upload that
        // makes no progress for `body_idle_timeout` (client silent, or upstream not reading)
        // ends the request.
        let idle = cfg.upstream.body_idle_timeout;
        let (body, watch) = if framing == RequestFraming::Empty {
            (None, None)
        } else {
            let (signal, watch) = idle::upload_watch();
            (
                Some(IdleTimeout::new(body, idle, Some(signal)).boxed()),
                Some(watch),
            )
        };
        let header_timeout = cfg.upstream.response_header_timeout;
        let deadline = async move {
            if let Some(watch) = watch {
                watch.sent(idle).await.map_err(|_| ErrorKind::BodyTimeout)?;
            }
            crate::timer::Deadline::after(header_timeout).await;
            Err::<(), _>(ErrorKind::ResponseTimeout)
        };

        let request = OutgoingRequest::new(parts.method, head, body, framing);
        let result = tokio::select! {
            result = self.pool.send(&target.endpoint, request) => result,
            Err(kind) = deadline => {
                self.metrics.error(kind);
                tracing::warn!(kind = kind.as_str(), "upstream request timed out");
                return gateway_error(kind.status());
            }
        };
        let mut resp = match result {
            Ok(resp) => resp,
            Err(err) if ErrorKind::is_client_fault(&err) => {
                self.metrics.client_body_errors.inc();
                tracing::info!(error = %crate::telemetry::error_chain(&err), "client request body broken; answered 400");
                return client_body_error();
            }
            Err(err) => {
                let kind = ErrorKind::of(&err);
                self.metrics.error(kind);
                tracing::warn!(kind = kind.as_str(), error = %crate::telemetry::error_chain(&err), "upstream request failed");
                return gateway_error(kind.status());
            }
        };

        if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
            return self.switch_protocols(
                resp,
                hop.upgrade,
                client_upgrade,
                cfg.upstream.tunnel_idle_timeout,
            );
        }
        headers::strip_hop_by_hop(resp.headers_mut());
        resp.body_mut()
            .count_failures_in(self.metrics.truncated.clone());
        let timeouts = self.metrics.body_timeouts.clone();
        resp.map(|body| {
            IdleTimeout::new(body, idle, None)
                .count_timeout_in(timeouts)
                .boxed()
        })
    }

    /// A `101` from upstream: accepted only for the protocol the client asked for; then both
    /// connections are spliced in a tracked task.
    fn switch_protocols(
        &self,
        mut resp: Response<ResponseBody>,
        requested: Option<HeaderValue>,
        client_upgrade: Option<hyper::upgrade::OnUpgrade>,
        tunnel_idle: std::time::Duration,
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
        let (mut parts, body) = resp.into_parts();
        let Some(upstream) = body.into_tunnel() else {
            return gateway_error(StatusCode::BAD_GATEWAY);
        };
        upgrade::splice(
            &self.tunnels,
            client_upgrade,
            upstream,
            tunnel_idle,
            self.metrics.clone(),
        );
        headers::restore_upgrade(&mut parts.headers, granted);
        Response::from_parts(parts, crate::body::empty())
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

/// What the request head the upstream gets is made of.
struct UpstreamHead<'a> {
    method: &'a Method,
    /// Origin-form.
    target: &'a str,
    /// The client's fields.
    headers: &'a HeaderMap,
    /// The `Host` value.
    host: &'a [u8],
    hop: &'a HopByHop,
    /// The protocol the client asked to upgrade to, when the upgrade can be followed.
    upgrade: Option<&'a HeaderValue>,
    forwarding: &'a Forwarding<'a>,
    framing: RequestFraming,
}

impl UpstreamHead<'_> {
    /// The head: `Host` first, then the client's fields in their order without hop-by-hop
    /// ones, `Expect` (hyper's server already answered `100 Continue`) and those rewritten
    /// here: cookies joined into one field (HTTP/2 splits them, RFC 9113 §8.2.3; PHP reads
    /// one), the forwarding fields, and the upgrade pair when the client asked for one.
    fn write(&self) -> Vec<u8> {
        let Self {
            method,
            target,
            headers,
            host,
            hop,
            upgrade,
            forwarding,
            framing,
        } = *self;
        let mut head = RequestHeadWriter::new(method, target, headers.len() + 6);
        head.field(b"host", host);
        let mut cookies_written = false;
        for (name, value) in headers {
            if *name == header::HOST
                || *name == header::EXPECT
                || !hop.passes(name)
                || !forwarding.passes(name)
            {
                continue;
            }
            if *name == header::COOKIE {
                if !cookies_written {
                    let all = headers.get_all(header::COOKIE).iter();
                    head.joined_field(b"cookie", all.map(HeaderValue::as_bytes), b"; ");
                    cookies_written = true;
                }
                continue;
            }
            head.field(name.as_str().as_bytes(), value.as_bytes());
        }
        forwarding.write(&mut head);
        if let Some(protocol) = upgrade {
            head.field(b"connection", b"upgrade");
            head.field(b"upgrade", protocol.as_bytes());
        }
        head.finish(framing)
    }
}

/// 502 / 504 for browsers: a tiny HTML page that is also readable as text.
/// The first transfer coding of the request other than `chunked` (`gzip, chunked`), which the
/// proxy cannot pass on: it forwards bodies de-chunked and re-chunked.
fn unsupported_transfer_coding(headers: &http::HeaderMap) -> Option<String> {
    headers
        .get_all(header::TRANSFER_ENCODING)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|c| !c.is_empty())
        .find(|c| !c.eq_ignore_ascii_case(b"chunked"))
        .map(|c| String::from_utf8_lossy(c).into_owned())
}

/// The answer to a request whose body the client broke; the connection is not reused (its
/// framing can no longer be trusted).
fn client_body_error() -> Response<BoxBody> {
    let mut resp = Response::new(full(
        "<!doctype html>\n<title>400 Bad Request</title>\n<h1>400 Bad Request</h1>\n\
         <p>The request body was malformed or incomplete.</p>\n",
    ));
    *resp.status_mut() = StatusCode::BAD_REQUEST;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    resp
}

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
        assert_eq!(
            *t.endpoint,
            Endpoint {
                host: "127.0.0.1".into(),
                port: 8081
            }
        );
        let uri: Uri = "/main/a%2Fb.php?x=1&y=%00".parse().unwrap();
        assert_eq!(t.path_for(&uri), "/main/a%2Fb.php?x=1&y=%00");
        let uri: Uri = "http://evil.example/index.php".parse().unwrap();
        assert_eq!(t.path_for(&uri), "/index.php");

        let t = UpstreamTarget::parse("http://chamilo/lms/").unwrap();
        assert_eq!(t.endpoint.port, 80);
        let uri: Uri = "/index.php?a".parse().unwrap();
        assert_eq!(t.path_for(&uri), "/lms/index.php?a");

        let t = UpstreamTarget::parse("http://[::1]:8081").unwrap();
        assert_eq!(t.endpoint.host, "::1");
    }

    fn client_fields(pairs: &[(&str, &[u8])]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.append(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_bytes(value).unwrap(),
            );
        }
        h
    }

    fn head_for(h: &HeaderMap, upgrade: bool) -> Vec<u8> {
        let hop = HopByHop::scan(h);
        let peer: std::net::IpAddr = "203.0.113.9".parse().unwrap();
        let host = h.get("host").cloned();
        let fwd = Forwarding::new(h, &hop, peer, false, &[], host.as_ref());
        UpstreamHead {
            method: &Method::GET,
            target: "/index.php",
            headers: h,
            host: host.as_ref().map_or(b"upstream", HeaderValue::as_bytes),
            hop: &hop,
            upgrade: hop.upgrade.as_ref().filter(|_| upgrade),
            forwarding: &fwd,
            framing: RequestFraming::Empty,
        }
        .write()
    }

    #[test]
    fn the_upstream_gets_the_client_fields_in_order_minus_hop_by_hop_ones() {
        let h = client_fields(&[
            ("x-first", b"1"),
            ("host", b"lms.example"),
            ("connection", b"keep-alive, X-Secret"),
            ("keep-alive", b"timeout=5"),
            ("x-secret", b"s"),
            ("expect", b"100-continue"),
            ("cookie", b"a=1"),
            ("accept", b"text/html"),
            ("cookie", b"PHPSESSID=x"),
            ("cookie", b"c=\xe9"),
            ("x-forwarded-for", b"6.6.6.6"),
            ("x-last", b"\xff"),
        ]);
        let head = head_for(&h, false);
        let text = String::from_utf8_lossy(&head);
        assert!(
            text.starts_with("GET /index.php HTTP/1.1\r\nhost: lms.example\r\n"),
            "{text}"
        );
        let fields = crate::http1::request::tests::request_fields(&head);
        let names: Vec<&str> = fields.keys().map(|k| k.as_str()).collect();
        assert_eq!(
            names,
            [
                "host",
                "x-first",
                "cookie",
                "accept",
                "x-last",
                "x-forwarded-for",
                "x-forwarded-proto",
                "x-forwarded-host",
                "forwarded"
            ]
        );
        let cookies: Vec<_> = fields.get_all("cookie").iter().collect();
        assert_eq!(cookies.len(), 1);
        assert_eq!(cookies[0].as_bytes(), b"a=1; PHPSESSID=x; c=\xe9");
        assert_eq!(fields["x-forwarded-for"], "203.0.113.9");
        assert_eq!(fields["x-last"].as_bytes(), b"\xff");
    }

    #[test]
    fn an_upgrade_goes_on_only_when_the_client_connection_can_follow() {
        let h = client_fields(&[
            ("host", b"lms.example"),
            ("connection", b"Upgrade"),
            ("upgrade", b"websocket"),
            ("sec-websocket-key", b"k"),
        ]);
        let fields = crate::http1::request::tests::request_fields(&head_for(&h, true));
        assert_eq!(fields["connection"], "upgrade");
        assert_eq!(fields["upgrade"], "websocket");
        assert_eq!(fields["sec-websocket-key"], "k");
        let fields = crate::http1::request::tests::request_fields(&head_for(&h, false));
        assert!(fields.get("connection").is_none());
        assert!(fields.get("upgrade").is_none());
    }

    #[test]
    fn upstream_target_rejects_what_it_cannot_serve() {
        for url in ["https://x", "x:80", "http://x/?q", "not a url"] {
            assert!(UpstreamTarget::parse(url).is_err(), "{url}");
        }
    }
}
