//! Test harness for the pass-through: an echoing upstream, the real `Proxy` served by a small
//! hyper front (plain or TLS with ALPN h2/http1.1), and raw HTTP/1.1 helpers. Loopback only.
#![allow(dead_code)]

pub mod scripted;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use chamilo_scim_proxy::admin::Health;
use chamilo_scim_proxy::app::chamilo_metrics::ChamiloCallMetrics;
use chamilo_scim_proxy::app::scim_backend::scim_service;
use chamilo_scim_proxy::body::{empty, full, BoxBody};
use chamilo_scim_proxy::config::load::Loaded;
use chamilo_scim_proxy::config::{Config, Live};
use chamilo_scim_proxy::proxy::{ClientInfo, Proxy};
use chamilo_scim_proxy::server::dispatch::Dispatcher;
use chamilo_scim_proxy::server::metrics::HttpMetrics;
use chamilo_scim_proxy::server::route::{classify, Route};
use chamilo_scim_proxy::server::{accept, PublicListener};
use futures_util::StreamExt;
use http::{header, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use prometheus_client::registry::Registry;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// A 64 KiB chunk used to build large bodies without allocating per chunk.
pub fn chunk() -> Bytes {
    Bytes::from(
        (0..65536u32)
            .map(|i| (i * 7 % 251) as u8)
            .collect::<Vec<u8>>(),
    )
}

/// A body of `count` copies of `chunk`, produced lazily.
pub fn repeated(chunk: Bytes, count: usize) -> BoxBody {
    let stream = StreamExt::map(futures_util::stream::iter(0..count), move |_| {
        Ok::<_, chamilo_scim_proxy::body::BoxError>(Frame::data(chunk.clone()))
    });
    BodyExt::boxed(StreamBody::new(stream))
}

/// The upstream stand-in for Chamilo. Paths:
/// - `/download?N`: N chunks of [`chunk`];
/// - `/redirect`: a 302 with two `Set-Cookie`;
/// - `/hop`: a response full of hop-by-hop headers and a non-UTF-8 value;
/// - `/ws`: a WebSocket echo;
/// - anything else: JSON describing the request (method, target, headers, body length and
///   SHA-256), read as a stream.
pub struct Upstream {
    pub addr: SocketAddr,
    pub hits: Arc<AtomicUsize>,
}

pub async fn start_upstream() -> Upstream {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let counter = counter.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req| {
                    counter.fetch_add(1, Ordering::SeqCst);
                    upstream_handle(req)
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .with_upgrades()
                    .await;
            });
        }
    });
    Upstream { addr, hits }
}

async fn upstream_handle(mut req: Request<Incoming>) -> Result<Response<BoxBody>, Infallible> {
    let path = req.uri().path().to_owned();
    match path.as_str() {
        "/download" => {
            let count: usize = req.uri().query().and_then(|q| q.parse().ok()).unwrap_or(1);
            let mut resp = Response::new(repeated(chunk(), count));
            resp.headers_mut().insert(
                header::CONTENT_LENGTH,
                HeaderValue::from(count as u64 * 65536),
            );
            Ok(resp)
        }
        "/redirect" => Ok(Response::builder()
            .status(StatusCode::FOUND)
            .header(
                header::LOCATION,
                "http://chamilo.example/main/auth/login.php?x=1",
            )
            .header(header::SET_COOKIE, "ch_sid=abc; Path=/; HttpOnly")
            .header(header::SET_COOKIE, "lang=fr; Path=/")
            .body(empty())
            .unwrap()),
        "/hop" => Ok(Response::builder()
            .header(header::CONNECTION, "keep-alive, X-Upstream-Secret")
            .header("x-upstream-secret", "s")
            .header("keep-alive", "timeout=5")
            .header("proxy-authenticate", "Basic")
            .header("trailer", "x-t")
            .header("upgrade", "h2c")
            .header("x-kept", "k")
            .header("x-bytes", HeaderValue::from_bytes(b"caf\xe9 \xff").unwrap())
            .body(full("hop"))
            .unwrap()),
        "/ws" => {
            let key = req
                .headers()
                .get("sec-websocket-key")
                .map(|k| k.as_bytes().to_vec())
                .unwrap_or_default();
            let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(&key);
            let on_upgrade = hyper::upgrade::on(&mut req);
            tokio::spawn(async move {
                let Ok(upgraded) = on_upgrade.await else {
                    return;
                };
                let mut ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
                    TokioIo::new(upgraded),
                    tokio_tungstenite::tungstenite::protocol::Role::Server,
                    None,
                )
                .await;
                while let Some(Ok(msg)) = ws.next().await {
                    if msg.is_close() {
                        break;
                    }
                    if futures_util::SinkExt::send(&mut ws, msg).await.is_err() {
                        break;
                    }
                }
            });
            Ok(Response::builder()
                .status(StatusCode::SWITCHING_PROTOCOLS)
                .header(header::CONNECTION, "Upgrade")
                .header(header::UPGRADE, "websocket")
                .header("sec-websocket-accept", accept)
                .body(empty())
                .unwrap())
        }
        _ => {
            let method = req.method().to_string();
            let target = req.uri().to_string();
            let version = format!("{:?}", req.version());
            let headers: Vec<serde_json::Value> = req
                .headers()
                .iter()
                .map(|(n, v)| {
                    serde_json::json!([
                        n.as_str(),
                        String::from_utf8_lossy(v.as_bytes()),
                        hex::encode(v.as_bytes())
                    ])
                })
                .collect();
            let mut body = req.into_body();
            let mut hasher = Sha256::new();
            let mut len: u64 = 0;
            let mut body_error = None;
            while let Some(frame) = body.frame().await {
                match frame {
                    Ok(frame) => {
                        if let Ok(data) = frame.into_data() {
                            len += data.len() as u64;
                            hasher.update(&data);
                        }
                    }
                    Err(e) => {
                        body_error = Some(e.to_string());
                        break;
                    }
                }
            }
            let json = serde_json::json!({
                "method": method,
                "target": target,
                "version": version,
                "headers": headers,
                "body_len": len,
                "body_sha256": hex::encode(hasher.finalize()),
                "body_error": body_error,
            });
            let mut resp = Response::new(full(json.to_string()));
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            Ok(resp)
        }
    }
}

/// What the echo upstream saw.
#[derive(Debug)]
pub struct Echo(pub serde_json::Value);

impl Echo {
    pub fn parse(body: &[u8]) -> Self {
        Echo(
            serde_json::from_slice(body)
                .unwrap_or_else(|e| panic!("not an echo ({e}): {}", String::from_utf8_lossy(body))),
        )
    }

    /// All values of header `name` (lower case), lossily decoded.
    pub fn header_all(&self, name: &str) -> Vec<String> {
        self.0["headers"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|h| h[0] == name)
            .map(|h| h[1].as_str().unwrap().to_owned())
            .collect()
    }

    pub fn header(&self, name: &str) -> Option<String> {
        let all = self.header_all(name);
        assert!(all.len() <= 1, "{name} appears {} times", all.len());
        all.into_iter().next()
    }

    /// The raw bytes of header `name`.
    pub fn header_bytes(&self, name: &str) -> Option<Vec<u8>> {
        self.0["headers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h[0] == name)
            .map(|h| hex::decode(h[2].as_str().unwrap()).unwrap())
    }

    pub fn target(&self) -> &str {
        self.0["target"].as_str().unwrap()
    }
}

/// The real `Proxy`, served by a minimal front that routes with the real `classify`.
/// SCIM routes answer 501 with `scim:<sub_path>` so tests can see where a request went.
pub struct Front {
    pub addr: SocketAddr,
    pub registry: Arc<Mutex<Registry>>,
    pub tunnels: TaskTracker,
}

impl Front {
    pub fn metrics(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry.lock().unwrap())
            .unwrap();
        text
    }
}

pub async fn start_front(cfg: Config, tls: Option<Arc<rustls::ServerConfig>>) -> Front {
    let mut registry = Registry::default();
    let tunnels = TaskTracker::new();
    let proxy = Arc::new(Proxy::new(&cfg.upstream, &mut registry, tunnels.clone()).unwrap());
    let cfg = Arc::new(cfg);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    tokio::spawn(async move {
        loop {
            let Ok((stream, peer)) = listener.accept().await else {
                return;
            };
            let _ = stream.set_nodelay(true);
            let proxy = proxy.clone();
            let cfg = cfg.clone();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let client = ClientInfo {
                    peer,
                    tls: acceptor.is_some(),
                };
                let svc = service_fn(move |req: Request<Incoming>| {
                    let proxy = proxy.clone();
                    let cfg = cfg.clone();
                    async move {
                        let resp = match classify(req.uri()) {
                            Route::Scim { sub_path } => {
                                let mut r = Response::new(full(format!("scim:{sub_path}")));
                                *r.status_mut() = StatusCode::NOT_IMPLEMENTED;
                                r
                            }
                            Route::PassThrough { path } => {
                                proxy.forward(req, client, &cfg, &path).await
                            }
                            Route::Reject { status, reason } => {
                                let mut r = Response::new(full(reason));
                                *r.status_mut() = status;
                                r
                            }
                        };
                        Ok::<_, Infallible>(resp)
                    }
                });
                let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                match acceptor {
                    Some(acceptor) => {
                        let Ok(tls) = acceptor.accept(stream).await else {
                            return;
                        };
                        let _ = builder
                            .serve_connection_with_upgrades(TokioIo::new(tls), svc)
                            .await;
                    }
                    None => {
                        let _ = builder
                            .serve_connection_with_upgrades(TokioIo::new(stream), svc)
                            .await;
                    }
                }
            });
        }
    });
    Front {
        addr,
        registry: Arc::new(Mutex::new(registry)),
        tunnels,
    }
}

/// The real public listener: `server::accept` and `server::connection` (protocol sniffing,
/// the express lane, hyper's server with its header-read timeout, the drain) in front of the real
/// `Dispatcher`, with the SCIM service composed as at start-up. Plain TCP, served on the
/// test's runtime as on one worker's.
pub struct Server {
    pub addr: SocketAddr,
    registry: Arc<Registry>,
    stop: CancellationToken,
    served: tokio::task::JoinHandle<()>,
}

impl Server {
    /// The metrics of the server's registry, in Prometheus text format.
    pub fn metrics(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry).unwrap();
        text
    }

    /// Stops accepting and drains as at SIGTERM (requests in flight finish, idle connections
    /// close); returns once every connection has ended.
    pub async fn drain(self) {
        self.stop.cancel();
        self.served.await.unwrap();
    }
}

pub async fn start_server(cfg: Config) -> Server {
    start_server_with(cfg, None).await
}

/// [`start_server`] with TLS: every HTTP/1.1 connection is then served by hyper (the express
/// lane serves plain TCP only), which makes the two lanes comparable.
pub async fn start_server_with(cfg: Config, tls: Option<tokio_rustls::TlsAcceptor>) -> Server {
    let mut registry = Registry::default();
    let metrics = HttpMetrics::register(&mut registry);
    let calls = ChamiloCallMetrics::register(&mut registry);
    let proxy = Arc::new(Proxy::new(&cfg.upstream, &mut registry, TaskTracker::new()).unwrap());
    let limit = Arc::new(Semaphore::new(cfg.server.max_connections.max(1)));
    let live = Live::new(&Loaded {
        config: cfg,
        tls: None,
        fingerprint: [0; 32],
        files: Vec::new(),
        warnings: Vec::new(),
    });
    let stop = CancellationToken::new();
    let scim = scim_service(&live, Arc::new(Health::default()), calls, stop.clone());
    let dispatcher = Arc::new(Dispatcher::new(
        live.clone(),
        proxy,
        Arc::new(scim),
        metrics.clone(),
    ));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let public = PublicListener {
        listener,
        limit,
        tls,
        dispatcher,
        live,
        metrics,
    };
    let served = tokio::spawn({
        let stop = stop.clone();
        async move { accept(public, stop).await.shutdown().await }
    });
    Server {
        addr,
        registry: Arc::new(registry),
        stop,
        served,
    }
}

/// A configuration pointing at `upstream` with short timeouts for tests.
pub fn config_for(upstream: SocketAddr) -> Config {
    let mut cfg = Config::default();
    cfg.upstream.url = format!("http://{upstream}");
    cfg.upstream.connect_timeout = Duration::from_secs(2);
    cfg.upstream.response_header_timeout = Duration::from_secs(10);
    cfg.upstream.body_idle_timeout = Duration::from_secs(10);
    cfg
}

/// A response read off the wire.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub head: String,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header_all(&self, name: &str) -> Vec<&[u8]> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
            .collect()
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.header_all(name)
            .first()
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }

    pub fn echo(&self) -> Echo {
        assert_eq!(self.status, 200, "{}", String::from_utf8_lossy(&self.body));
        Echo::parse(&self.body)
    }
}

/// Sends `request` bytes as-is (they should ask for `Connection: close`) and reads the whole
/// answer, skipping interim 1xx responses.
pub async fn raw(addr: SocketAddr, request: &[u8]) -> RawResponse {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut buf))
        .await
        .expect("response within 30 s")
        .unwrap();
    parse_response(&buf)
}

/// Sends `request` on a new connection and reads one response, leaving the connection open
/// (for requests that cannot ask for `Connection: close`).
pub async fn raw_one(addr: SocketAddr, request: &[u8]) -> RawResponse {
    let mut conn = ClientConnection::open(addr).await;
    conn.send(request).await;
    conn.response().await
}

/// How long a [`ClientConnection`] waits for a response before failing the test.
const WIRE_WAIT: Duration = Duration::from_secs(30);

/// One client connection spoken in raw bytes: requests are written as given, and responses
/// are read one at a time by their framing (RFC 9112 section 6.3), so what follows one
/// response stays buffered for the next (pipelining, keep-alive).
pub struct ClientConnection {
    stream: TcpStream,
    /// Received and not yet returned in a response.
    buf: Vec<u8>,
}

impl ClientConnection {
    pub async fn open(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect(addr).await.unwrap();
        Self {
            stream,
            buf: Vec::new(),
        }
    }

    /// Sends each write in its own segment, so that small writes reach the server apart.
    pub fn set_nodelay(&self) {
        self.stream.set_nodelay(true).unwrap();
    }

    /// Writes `bytes` as they are, in one write.
    pub async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    /// Reads the next response, skipping interim 1xx ones.
    pub async fn response(&mut self) -> RawResponse {
        self.next_response(Awaited::Final).await
    }

    /// Reads the next response as the answer to a `HEAD`: a head and no body, whatever its
    /// fields announce.
    pub async fn head_response(&mut self) -> RawResponse {
        self.next_response(Awaited::FinalToHead).await
    }

    /// Reads the next response, which must be an interim one (`100 Continue`).
    pub async fn interim_response(&mut self) -> RawResponse {
        self.next_response(Awaited::Interim).await
    }

    /// True when the server ends the connection (end of stream or reset) within `within`,
    /// false when it is still open then. Bytes arriving meanwhile fail the test: nothing
    /// should follow the last response.
    pub async fn closed_within(&mut self, within: Duration) -> bool {
        let read = async {
            let mut piece = [0u8; 4096];
            match self.stream.read(&mut piece).await {
                Ok(0) | Err(_) => {}
                Ok(n) => panic!(
                    "unexpected bytes instead of a close: {:?}",
                    String::from_utf8_lossy(&piece[..n])
                ),
            }
        };
        assert!(
            self.buf.is_empty(),
            "unread bytes: {:?}",
            String::from_utf8_lossy(&self.buf)
        );
        tokio::time::timeout(within, read).await.is_ok()
    }

    async fn next_response(&mut self, awaited: Awaited) -> RawResponse {
        tokio::time::timeout(WIRE_WAIT, self.read_framed(awaited))
            .await
            .expect("a response within 30 s")
    }

    async fn read_framed(&mut self, awaited: Awaited) -> RawResponse {
        loop {
            let end = loop {
                if let Some(at) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    break at + 4;
                }
                assert!(
                    self.fill().await,
                    "connection closed before a response head"
                );
            };
            let (status, head, headers) = parse_head(&self.buf[..end - 4]);
            let interim = (100..200).contains(&status) && status != 101;
            if interim || awaited == Awaited::Interim {
                assert!(interim, "not an interim response: {head}");
                self.buf.drain(..end);
                if awaited == Awaited::Interim {
                    return RawResponse {
                        status,
                        head,
                        headers,
                        body: Vec::new(),
                    };
                }
                continue;
            }
            let field = |name: &str| {
                headers
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
            };
            let chunked = field("transfer-encoding")
                .is_some_and(|v| v.to_ascii_lowercase().ends_with("chunked"));
            let (taken, body) =
                if awaited == Awaited::FinalToHead || matches!(status, 101 | 204 | 304) {
                    (0, Vec::new())
                } else if chunked {
                    let taken = loop {
                        if let Some(n) = chunked_len(&self.buf[end..]) {
                            break n;
                        }
                        assert!(self.fill().await, "connection closed inside a chunked body");
                    };
                    (taken, dechunk(&self.buf[end..end + taken]))
                } else if let Some(len) = field("content-length") {
                    let len: usize = len.parse().unwrap();
                    while self.buf.len() < end + len {
                        assert!(self.fill().await, "connection closed inside a body");
                    }
                    (len, self.buf[end..end + len].to_vec())
                } else {
                    // Delimited by the end of the connection.
                    while self.fill().await {}
                    let taken = self.buf.len() - end;
                    (taken, self.buf[end..].to_vec())
                };
            self.buf.drain(..end + taken);
            return RawResponse {
                status,
                head,
                headers,
                body,
            };
        }
    }

    /// Reads more bytes into the buffer; false at the end of the stream.
    async fn fill(&mut self) -> bool {
        let mut piece = [0u8; 8192];
        let n = self.stream.read(&mut piece).await.unwrap();
        self.buf.extend_from_slice(&piece[..n]);
        n > 0
    }
}

/// Which response [`ClientConnection`] reads next.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Awaited {
    Final,
    /// A final response to a `HEAD`: never a body.
    FinalToHead,
    Interim,
}

/// The length of the complete chunked body (trailers included) at the start of `data`, or
/// `None` while part of it is still to come.
fn chunked_len(data: &[u8]) -> Option<usize> {
    let line_end = |from: usize| {
        data[from..]
            .windows(2)
            .position(|w| w == b"\r\n")
            .map(|p| from + p)
    };
    let mut at = 0;
    loop {
        let eol = line_end(at)?;
        let size_text = String::from_utf8_lossy(&data[at..eol]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16)
            .unwrap_or_else(|_| panic!("bad chunk size line {size_text:?}"));
        at = eol + 2;
        if size == 0 {
            // Trailer fields, up to an empty line.
            loop {
                let eol = line_end(at)?;
                let empty = eol == at;
                at = eol + 2;
                if empty {
                    return Some(at);
                }
            }
        }
        if data.len() < at + size + 2 {
            return None;
        }
        assert_eq!(
            &data[at + size..at + size + 2],
            b"\r\n",
            "chunk without its CRLF"
        );
        at += size + 2;
    }
}

pub fn parse_response(mut buf: &[u8]) -> RawResponse {
    loop {
        let end = buf
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or_else(|| panic!("no head in {:?}", String::from_utf8_lossy(buf)));
        let (status, head, headers) = parse_head(&buf[..end]);
        let rest = &buf[end + 4..];
        if (100..200).contains(&status) && status != 101 {
            buf = rest;
            continue;
        }
        let chunked = headers
            .iter()
            .any(|(n, v)| n == "transfer-encoding" && v.eq_ignore_ascii_case(b"chunked"));
        let body = if chunked {
            dechunk(rest)
        } else {
            rest.to_vec()
        };
        return RawResponse {
            status,
            head,
            headers,
            body,
        };
    }
}

/// Status, head text and fields (names in lower case) of a response head without its final
/// empty line.
fn parse_head(head: &[u8]) -> (u16, String, Vec<(String, Vec<u8>)>) {
    let mut lines = head.split(|b| *b == b'\n');
    let status_line = String::from_utf8_lossy(lines.next().unwrap()).into_owned();
    let status: u16 = status_line.split(' ').nth(1).unwrap().parse().unwrap();
    let mut headers = Vec::new();
    for line in lines {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let colon = line.iter().position(|b| *b == b':').unwrap();
        let name = String::from_utf8_lossy(&line[..colon]).to_ascii_lowercase();
        let value = line[colon + 1..].trim_ascii().to_vec();
        headers.push((name, value));
    }
    (status, String::from_utf8_lossy(head).into_owned(), headers)
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = data.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size_text = String::from_utf8_lossy(&data[..eol]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16).unwrap();
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&data[eol + 2..eol + 2 + size]);
        data = &data[eol + 2 + size + 2..];
    }
}

/// Sends one request on a fresh HTTP/1.1 connection with hyper's client.
pub async fn send(addr: SocketAddr, req: Request<BoxBody>) -> Response<Incoming> {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    sender.send_request(req).await.unwrap()
}

/// Reads a response body whole (small bodies only).
pub async fn body_bytes(resp: Response<Incoming>) -> Bytes {
    resp.into_body().collect().await.unwrap().to_bytes()
}

/// Peak and current resident memory of this process, in KiB (`VmHWM`, `VmRSS`).
pub fn memory_kib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap()
    };
    (field("VmHWM:"), field("VmRSS:"))
}
