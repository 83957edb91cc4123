//! The client side of HTTP/1.1 on the wire, against the real public listener
//! (`server::accept` → `server::connection` → `Dispatcher`): keep-alive, pipelining, each
//! response framing, connection ends, malformed heads, the header-read timeout, the drain, and
//! the fields a response carries. Each test writes its own bytes on plain TCP and reads
//! responses by their framing, so it pins what a client sees, whoever serves the connection.

mod proxy_harness;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use proxy_harness::scripted::{Reply, Scripted};
use proxy_harness::*;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A keep-alive GET of `path`.
fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: chamilo.example\r\n\r\n").into_bytes()
}

async fn server_for(upstream: std::net::SocketAddr) -> Server {
    start_server(config_for(upstream)).await
}

/// Generous bounds: the machine is shared, and a close that comes late is not what these
/// tests are about.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// Scripted answers by request line, one per framing the upstream may use.
fn framings(head: &str) -> Reply {
    let keep = |bytes: &[u8]| Reply::Keep(bytes.to_vec());
    if head.starts_with("head /streamed ") {
        keep(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n")
    } else if head.starts_with("head ") {
        keep(b"HTTP/1.1 200 OK\r\nContent-Type: application/pdf\r\nContent-Length: 1234\r\n\r\n")
    } else if head.starts_with("get /length ") {
        keep(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 6\r\n\r\nlength")
    } else if head.starts_with("get /chunked ") {
        keep(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n\
              5;name=value\r\nhello\r\n6\r\n world\r\n0\r\nX-Checksum: 1\r\n\r\n",
        )
    } else if head.starts_with("get /204 ") {
        keep(b"HTTP/1.1 204 No Content\r\nX-Empty: yes\r\n\r\n")
    } else if head.starts_with("get /304 ") {
        keep(b"HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\nContent-Length: 6\r\n\r\n")
    } else if head.starts_with("get /upstream-closes ") {
        Reply::Close(
            b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 4\r\n\r\nlast".to_vec(),
        )
    } else if head.starts_with("get /until-close ") {
        Reply::Close(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end".to_vec())
    } else {
        keep(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
    }
}

#[tokio::test]
async fn a_keep_alive_sequence_with_a_body_and_a_scim_request_stays_on_one_connection() {
    let up = start_upstream().await;
    let server = server_for(up.addr).await;
    let mut conn = ClientConnection::open(server.addr).await;

    conn.send(&get("/index.php?a=1")).await;
    let echo = conn.response().await.echo();
    assert_eq!(echo.0["method"], "GET");
    assert_eq!(echo.target(), "/index.php?a=1");

    conn.send(&get("/main/course_home/")).await;
    assert_eq!(conn.response().await.echo().target(), "/main/course_home/");

    let body = b"title=Intro&text=caf\xc3\xa9";
    let mut post = format!(
        "POST /main/upload.php HTTP/1.1\r\nHost: chamilo.example\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    post.extend_from_slice(body);
    conn.send(&post).await;
    let echo = conn.response().await.echo();
    assert_eq!(echo.0["method"], "POST");
    assert_eq!(echo.target(), "/main/upload.php");
    assert_eq!(echo.0["body_len"], body.len());
    assert_eq!(echo.0["body_sha256"], hex::encode(Sha256::digest(body)));

    conn.send(&get("/after-post")).await;
    assert_eq!(conn.response().await.echo().target(), "/after-post");

    // SCIM is on by default and no token is configured: refused by the SCIM service itself,
    // with a SCIM error body, and the connection goes on.
    conn.send(&get("/scim/v2/Users")).await;
    let scim = conn.response().await;
    assert_eq!(scim.status, 401, "{scim:?}");
    assert_eq!(
        scim.header("content-type").as_deref(),
        Some("application/scim+json")
    );
    assert!(
        String::from_utf8_lossy(&scim.body).contains("urn:ietf:params:scim:api:messages:2.0:Error"),
        "{scim:?}"
    );

    conn.send(&get("/after-scim")).await;
    assert_eq!(conn.response().await.echo().target(), "/after-scim");
    assert_eq!(up.hits.load(Ordering::SeqCst), 5);
    assert!(!conn.closed_within(Duration::from_millis(50)).await);
}

#[tokio::test]
async fn a_scim_request_with_scim_disabled_is_a_404_and_the_connection_goes_on() {
    let up = start_upstream().await;
    let mut cfg = config_for(up.addr);
    cfg.scim.enabled = false;
    let server = start_server(cfg).await;
    let mut conn = ClientConnection::open(server.addr).await;
    conn.send(&get("/scim/v2/Users?filter=userName%20eq%20%22a%22"))
        .await;
    let resp = conn.response().await;
    assert_eq!(resp.status, 404);
    assert_eq!(resp.body, b"Not Found\n");
    assert_eq!(
        resp.header("content-type").as_deref(),
        Some("text/plain; charset=utf-8")
    );
    conn.send(&get("/index.php")).await;
    assert_eq!(conn.response().await.echo().target(), "/index.php");
    assert_eq!(up.hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    let up = start_upstream().await;
    let server = server_for(up.addr).await;
    let mut conn = ClientConnection::open(server.addr).await;
    let mut three = get("/one");
    three.extend_from_slice(&get("/two?x=2"));
    three.extend_from_slice(&get("/three"));
    conn.send(&three).await;
    for target in ["/one", "/two?x=2", "/three"] {
        assert_eq!(conn.response().await.echo().target(), target);
    }
    // And the connection is still usable afterwards.
    conn.send(&get("/four")).await;
    assert_eq!(conn.response().await.echo().target(), "/four");
}

#[tokio::test]
async fn a_pipeline_mixing_bodies_scim_and_plain_requests_is_answered_in_order() {
    let up = start_upstream().await;
    let server = server_for(up.addr).await;
    let mut conn = ClientConnection::open(server.addr).await;
    let mut all = get("/first");
    all.extend_from_slice(
        b"POST /form HTTP/1.1\r\nHost: chamilo.example\r\nContent-Length: 7\r\n\r\nname=ab",
    );
    all.extend_from_slice(&get("/scim/v2/Users"));
    all.extend_from_slice(&get("/after-scim"));
    all.extend_from_slice(
        b"POST /chunked HTTP/1.1\r\nHost: chamilo.example\r\nTransfer-Encoding: chunked\r\n\r\n\
          3\r\nabc\r\n0\r\n\r\n",
    );
    all.extend_from_slice(&get("/last"));
    conn.send(&all).await;

    assert_eq!(conn.response().await.echo().target(), "/first");
    let echo = conn.response().await.echo();
    assert_eq!((echo.target(), &echo.0["body_len"]), ("/form", &7.into()));
    assert_eq!(conn.response().await.status, 401);
    assert_eq!(conn.response().await.echo().target(), "/after-scim");
    let echo = conn.response().await.echo();
    assert_eq!(
        (echo.target(), &echo.0["body_len"]),
        ("/chunked", &3.into())
    );
    assert_eq!(conn.response().await.echo().target(), "/last");
    assert_eq!(up.hits.load(Ordering::SeqCst), 5);
    assert!(!conn.closed_within(Duration::from_millis(50)).await);
}

#[tokio::test]
async fn a_head_arriving_a_byte_at_a_time_is_served() {
    let up = start_upstream().await;
    let server = server_for(up.addr).await;
    let mut conn = ClientConnection::open(server.addr).await;
    conn.set_nodelay();
    for _ in 0..2 {
        for byte in get("/slowly?x=1") {
            conn.send(&[byte]).await;
            tokio::task::yield_now().await;
        }
        assert_eq!(conn.response().await.echo().target(), "/slowly?x=1");
    }
}

#[tokio::test]
async fn an_upstream_failure_is_answered_on_a_kept_connection() {
    // A port nothing listens on any more.
    let closed = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let server = server_for(closed).await;
    let mut conn = ClientConnection::open(server.addr).await;
    for _ in 0..2 {
        conn.send(&get("/index.php")).await;
        let resp = conn.response().await;
        assert!(
            resp.head.starts_with("HTTP/1.1 502 Bad Gateway\r\n"),
            "{}",
            resp.head
        );
        assert_eq!(resp.header("connection"), None);
        assert!(!resp.body.is_empty());
    }
    assert!(!conn.closed_within(Duration::from_millis(50)).await);
}

#[tokio::test]
async fn request_fields_reach_the_upstream_minus_hop_by_hop_ones_in_order() {
    let up = start_upstream().await;
    let server = server_for(up.addr).await;
    let mut conn = ClientConnection::open(server.addr).await;
    conn.send(
        b"GET /fields HTTP/1.1\r\nHost: chamilo.example\r\n\
          Connection: keep-alive, X-Client-Secret\r\nX-Client-Secret: s\r\n\
          Keep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\n\
          Proxy-Authorization: Basic eDp5\r\nTE: trailers\r\n\
          Cookie: a=1\r\nAccept: text/html\r\nCookie: b=2\r\nX-Empty:\r\n\
          X-Forwarded-For: 6.6.6.6\r\nUser-Agent: wire-test\r\n\r\n",
    )
    .await;
    let echo = conn.response().await.echo();
    let fields: Vec<(String, String)> = echo.0["headers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h[0].as_str().unwrap().to_owned(),
                h[1].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    // Cookie fields are joined into one where the first was, whatever the client's version
    // (`proxy::forward`, for PHP); the rest keep their order.
    let expected = [
        ("host", "chamilo.example"),
        ("cookie", "a=1; b=2"),
        ("accept", "text/html"),
        ("x-empty", ""),
        ("user-agent", "wire-test"),
        ("x-forwarded-for", "127.0.0.1"),
        ("x-forwarded-proto", "http"),
        ("x-forwarded-host", "chamilo.example"),
        ("forwarded", "for=127.0.0.1;host=chamilo.example;proto=http"),
    ];
    let expected: Vec<(String, String)> = expected
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
    assert_eq!(fields, expected);
}

#[tokio::test]
async fn a_head_response_has_the_upstreams_length_and_no_body() {
    let up = Scripted::start(|head, _| framings(head)).await;
    let server = server_for(up.addr).await;
    let mut conn = ClientConnection::open(server.addr).await;
    conn.send(b"HEAD /file.pdf HTTP/1.1\r\nHost: chamilo.example\r\n\r\n")
        .await;
    let head = conn.head_response().await;
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length").as_deref(), Some("1234"));
    assert_eq!(
        head.header("content-type").as_deref(),
        Some("application/pdf")
    );
    assert_eq!(head.header("transfer-encoding"), None);
    // Had any body byte followed the head, it would be read as the start of this response.
    conn.send(&get("/length")).await;
    let next = conn.response().await;
    assert!(next.head.starts_with("HTTP/1.1 200 OK"), "{}", next.head);
    assert_eq!(next.body, b"length");
    let seen = up.seen();
    assert!(seen[0].head.starts_with("head /file.pdf http/1.1\r\n"));

    // An upstream HEAD answer announcing a chunked body: the client's has no framing field.
    conn.send(b"HEAD /streamed HTTP/1.1\r\nHost: chamilo.example\r\n\r\n")
        .await;
    let head = conn.head_response().await;
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-type").as_deref(), Some("text/plain"));
    assert_eq!(head.header("content-length"), None);
    assert_eq!(head.header("transfer-encoding"), None);
    conn.send(&get("/length")).await;
    assert_eq!(conn.response().await.body, b"length");
    assert_eq!(up.accepted(), 1);
}

#[tokio::test]
async fn every_upstream_framing_reaches_the_client_framed_on_one_connection() {
    let up = Scripted::start(|head, _| framings(head)).await;
    let server = server_for(up.addr).await;
    let mut conn = ClientConnection::open(server.addr).await;

    conn.send(&get("/length")).await;
    let resp = conn.response().await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("content-length").as_deref(), Some("6"));
    assert_eq!(resp.header("transfer-encoding"), None);
    assert_eq!(resp.body, b"length");

    // Chunked upstream: chunked to the client too, extensions and trailer fields dropped.
    conn.send(&get("/chunked")).await;
    let resp = conn.response().await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("transfer-encoding").as_deref(), Some("chunked"));
    assert_eq!(resp.header("content-length"), None);
    assert_eq!(resp.body, b"hello world");

    conn.send(&get("/204")).await;
    let resp = conn.response().await;
    assert_eq!(resp.status, 204);
    assert_eq!(resp.header("x-empty").as_deref(), Some("yes"));
    assert_eq!(resp.header("content-length"), None);
    assert_eq!(resp.header("transfer-encoding"), None);

    conn.send(&get("/304")).await;
    let resp = conn.response().await;
    assert_eq!(resp.status, 304);
    assert_eq!(resp.header("etag").as_deref(), Some("\"v1\""));
    assert_eq!(resp.header("transfer-encoding"), None);

    // Delimited by the upstream closing: chunked to the client, whose connection stays.
    conn.send(&get("/until-close")).await;
    let resp = conn.response().await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("transfer-encoding").as_deref(), Some("chunked"));
    assert_eq!(resp.body, b"until the end");

    // The upstream's `Connection: close` is its own hop: the client's connection stays.
    conn.send(&get("/upstream-closes")).await;
    let resp = conn.response().await;
    assert_eq!(resp.header("connection"), None);
    assert_eq!(resp.header("content-length").as_deref(), Some("4"));
    assert_eq!(resp.body, b"last");

    conn.send(&get("/length")).await;
    assert_eq!(conn.response().await.body, b"length");
    assert!(!conn.closed_within(Duration::from_millis(50)).await);
    // Each answer that ended its upstream connection took it along.
    assert_eq!(up.accepted(), 3);
}

/// An upstream may repeat its `Content-Length` (RFC 9112 §6.3 lets a recipient accept that);
/// a client may refuse it, so the client gets one field.
#[tokio::test]
async fn a_repeated_upstream_content_length_reaches_the_client_as_one_field() {
    let up = Scripted::start(|head, _| {
        let reply: &[u8] = if head.starts_with("get /twice ") {
            b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\nContent-Length: 6\r\n\r\nlength"
        } else {
            b"HTTP/1.1 200 OK\r\nContent-Length: 6, 6\r\n\r\nlength"
        };
        Reply::Keep(reply.to_vec())
    })
    .await;
    let server = server_for(up.addr).await;
    let mut conn = ClientConnection::open(server.addr).await;
    for path in ["/twice", "/listed", "/twice"] {
        conn.send(&get(path)).await;
        let resp = conn.response().await;
        assert_eq!(resp.header_all("content-length"), [&b"6"[..]], "{path}");
        assert_eq!(resp.body, b"length");
    }
    assert_eq!(up.accepted(), 1);
}

#[tokio::test]
async fn connection_close_from_the_client_is_echoed_and_the_connection_ends() {
    let up = start_upstream().await;
    let server = server_for(up.addr).await;
    let mut conn = ClientConnection::open(server.addr).await;
    // A second request written after the closing one is never answered.
    let mut bytes =
        b"GET /last HTTP/1.1\r\nHost: chamilo.example\r\nConnection: close\r\n\r\n".to_vec();
    bytes.extend_from_slice(&get("/never"));
    conn.send(&bytes).await;
    let resp = conn.response().await;
    assert_eq!(resp.header("connection").as_deref(), Some("close"));
    let echo = resp.echo();
    assert_eq!(echo.target(), "/last");
    assert!(conn.closed_within(CLOSE_WAIT).await);
    assert_eq!(up.hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn close_among_other_connection_options_in_any_case_ends_the_connection() {
    let up = start_upstream().await;
    let server = server_for(up.addr).await;
    for field in ["Connection: keep-alive, close", "CONNECTION: CLOSE"] {
        let mut conn = ClientConnection::open(server.addr).await;
        conn.send(
            format!("GET /x HTTP/1.1\r\nHost: chamilo.example\r\n{field}\r\n\r\n").as_bytes(),
        )
        .await;
        let resp = conn.response().await;
        assert_eq!(resp.status, 200, "{field}");
        assert_eq!(
            resp.header("connection").as_deref(),
            Some("close"),
            "{field}"
        );
        assert!(conn.closed_within(CLOSE_WAIT).await, "{field}");
    }
}

#[tokio::test]
async fn http10_without_keep_alive_is_answered_then_closed() {
    let up = start_upstream().await;
    let server = server_for(up.addr).await;
    let mut conn = ClientConnection::open(server.addr).await;
    conn.send(b"GET /index.php HTTP/1.0\r\nHost: chamilo.example\r\n\r\n")
        .await;
    let resp = conn.response().await;
    assert!(
        resp.head.starts_with("HTTP/1.0 200 OK\r\n"),
        "{}",
        resp.head
    );
    assert_eq!(resp.header("connection"), None);
    assert!(resp.header("content-length").is_some());
    let echo = resp.echo();
    assert_eq!(echo.target(), "/index.php");
    // The upstream is spoken to in HTTP/1.1 whatever the client's version.
    assert_eq!(echo.0["version"], "HTTP/1.1");
    assert!(conn.closed_within(CLOSE_WAIT).await);
}

#[tokio::test]
async fn http10_gets_a_chunked_upstream_body_delimited_by_the_close() {
    let up = Scripted::start(|head, _| framings(head)).await;
    let server = server_for(up.addr).await;
    let mut conn = ClientConnection::open(server.addr).await;
    conn.send(b"GET /chunked HTTP/1.0\r\nHost: chamilo.example\r\n\r\n")
        .await;
    let resp = conn.response().await;
    assert!(
        resp.head.starts_with("HTTP/1.0 200 OK\r\n"),
        "{}",
        resp.head
    );
    assert_eq!(resp.header("transfer-encoding"), None);
    assert_eq!(resp.header("content-length"), None);
    assert_eq!(resp.body, b"hello world");
}

#[tokio::test]
async fn http10_with_keep_alive_is_kept_open() {
    let up = start_upstream().await;
    let server = server_for(up.addr).await;
    let mut conn = ClientConnection::open(server.addr).await;
    for target in ["/a", "/b"] {
        conn.send(
            format!(
                "GET {target} HTTP/1.0\r\nHost: chamilo.example\r\nConnection: keep-alive\r\n\r\n"
            )
            .as_bytes(),
        )
        .await;
        let resp = conn.response().await;
        assert!(
            resp.head.starts_with("HTTP/1.0 200 OK\r\n"),
            "{}",
            resp.head
        );
        assert_eq!(resp.header("connection").as_deref(), Some("keep-alive"));
        assert_eq!(resp.echo().target(), target);
    }
    assert!(!conn.closed_within(Duration::from_millis(50)).await);
}

#[tokio::test]
async fn a_malformed_head_is_a_400_and_the_connection_closes() {
    let up = start_upstream().await;
    let server = server_for(up.addr).await;
    let malformed: [&[u8]; 10] = [
        b"GET /index.php HTTP/1.1\r\nHost : chamilo.example\r\n\r\n",
        b"GET /index.php HTTP/1.1\r\nHost: chamilo.example\r\nContent-Length: +1\r\n\r\na",
        b"NOT HTTP AT ALL\r\n\r\n",
        b"GET /index.php HTTP/2.0\r\nHost: chamilo.example\r\n\r\n",
        b"GET /index.php HTTP/1.1\r\nHost: chamilo.example\r\nX-Folded: a\r\n b\r\n\r\n",
        b"POST /index.php HTTP/1.1\r\nHost: chamilo.example\r\nTransfer-Encoding: gzip\r\n\r\n",
        b"GET /index.php HTTP/1.1\r\nHost chamilo.example\r\n\r\n",
        b"GET /index.php HTTP/1.1\r\nHost: chamilo.example\r\nBad Name: v\r\n\r\n",
        b"GET /index.php HTTP/1.1\r\nHost: chamilo.example\r\nX-Ctl: a\x01b\r\n\r\n",
        b"GET /index.php HTTP/1.1\r\nHost: chamilo.example\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
    ];
    for bytes in malformed {
        let what = String::from_utf8_lossy(bytes);
        let mut conn = ClientConnection::open(server.addr).await;
        conn.send(bytes).await;
        let resp = conn.response().await;
        assert_eq!(resp.status, 400, "{what:?}: {resp:?}");
        assert!(
            resp.head.starts_with("HTTP/1.1 400 Bad Request\r\n"),
            "{what:?}: {}",
            resp.head
        );
        assert_eq!(resp.header("connection").as_deref(), Some("close"));
        assert_eq!(resp.header("content-length").as_deref(), Some("0"));
        assert!(resp.header("date").is_some());
        assert!(resp.body.is_empty());
        assert!(conn.closed_within(CLOSE_WAIT).await, "{what:?}");
    }

    // The same after a good request on a kept-alive connection.
    let mut conn = ClientConnection::open(server.addr).await;
    conn.send(&get("/first")).await;
    assert_eq!(conn.response().await.echo().target(), "/first");
    conn.send(b"GET /index.php HTTP/1.1\r\nHost chamilo.example\r\n\r\n")
        .await;
    assert_eq!(conn.response().await.status, 400);
    assert!(conn.closed_within(CLOSE_WAIT).await);
    assert_eq!(up.hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_head_or_target_too_large_is_refused_and_the_connection_closes() {
    let up = start_upstream().await;
    let server = server_for(up.addr).await;
    let too_many: String = (0..200).map(|i| format!("X-F{i}: v\r\n")).collect();
    let too_long = format!("X-Long: {}\r\n", "a".repeat(512 * 1024));
    let long_target = format!("/index.php?q={}", "a".repeat(70_000));
    let cases = [
        (
            "/index.php",
            too_many,
            "431 Request Header Fields Too Large",
        ),
        (
            "/index.php",
            too_long,
            "431 Request Header Fields Too Large",
        ),
        // 431 as hyper answers it over TLS (tests/lanes_differential.rs).
        (
            long_target.as_str(),
            String::new(),
            "431 Request Header Fields Too Large",
        ),
    ];
    for (target, fields, status) in cases {
        let mut conn = ClientConnection::open(server.addr).await;
        let bytes = format!("GET {target} HTTP/1.1\r\nHost: chamilo.example\r\n{fields}\r\n");
        conn.send(bytes.as_bytes()).await;
        let resp = conn.response().await;
        assert!(
            resp.head.starts_with(&format!("HTTP/1.1 {status}\r\n")),
            "{}",
            resp.head
        );
        assert!(
            conn.closed_within(CLOSE_WAIT).await,
            "{status} {}",
            fields.len()
        );
    }
    assert_eq!(up.hits.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn targets_the_router_refuses_are_400s_that_keep_the_connection() {
    let up = start_upstream().await;
    let server = server_for(up.addr).await;
    let mut conn = ClientConnection::open(server.addr).await;
    for request in [
        get("/main/../app/config/configuration.php"),
        b"OPTIONS * HTTP/1.1\r\nHost: chamilo.example\r\n\r\n".to_vec(),
        b"CONNECT chamilo.example:443 HTTP/1.1\r\nHost: chamilo.example:443\r\n\r\n".to_vec(),
    ] {
        conn.send(&request).await;
        let resp = conn.response().await;
        assert!(
            resp.head.starts_with("HTTP/1.1 400 Bad Request\r\n"),
            "{}",
            resp.head
        );
        assert_eq!(resp.body, b"400 Bad Request\n");
        assert_eq!(
            resp.header("content-type").as_deref(),
            Some("text/plain; charset=utf-8")
        );
        assert_eq!(resp.header("connection"), None);
    }
    conn.send(&get("/index.php")).await;
    assert_eq!(conn.response().await.echo().target(), "/index.php");
    assert_eq!(up.hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn lenient_heads_are_served_on_a_kept_connection() {
    let up = start_upstream().await;
    let server = server_for(up.addr).await;
    let mut conn = ClientConnection::open(server.addr).await;

    // Lines ended by a bare LF.
    conn.send(b"GET /bare-lf HTTP/1.1\nHost: chamilo.example\n\n")
        .await;
    let echo = conn.response().await.echo();
    assert_eq!(echo.target(), "/bare-lf");
    assert_eq!(echo.header("host").as_deref(), Some("chamilo.example"));

    // Absolute form: forwarded in origin form, with the target's authority as `Host`.
    conn.send(b"GET http://other.example/abs?q=1 HTTP/1.1\r\nHost: chamilo.example\r\n\r\n")
        .await;
    let echo = conn.response().await.echo();
    assert_eq!(echo.target(), "/abs?q=1");
    assert_eq!(echo.header("host").as_deref(), Some("other.example"));

    // HTTP/1.1 without `Host`, and two `Host` fields, are refused (RFC 9112 section 3.2):
    // which host would Chamilo see? The router's 400; the connection goes on.
    for head in [
        &b"GET /no-host HTTP/1.1\r\n\r\n"[..],
        b"GET /two-hosts HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n\r\n",
    ] {
        conn.send(head).await;
        let resp = conn.response().await;
        assert_eq!(resp.status, 400, "{}", String::from_utf8_lossy(head));
        assert_eq!(resp.body, b"400 Bad Request\n");
    }
    assert_eq!(up.hits.load(Ordering::SeqCst), 2);
    // HTTP/1.0 may leave `Host` out: the upstream gets its own authority.
    conn.send(b"GET /no-host HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        .await;
    let echo = conn.response().await.echo();
    assert_eq!(
        echo.header("host").as_deref(),
        Some(up.addr.to_string().as_str())
    );
    assert_eq!(echo.header("x-forwarded-host"), None);

    // Empty lines before the request line, a method in lower case (methods are case
    // sensitive, so forwarded as it is), raw UTF-8 in the target, a tab inside a value.
    conn.send(b"\r\n\r\nget /caf\xc3\xa9?q=\xc3\xa9 HTTP/1.1\r\nHost: chamilo.example\r\nX-Tab: a\tb\r\n\r\n")
        .await;
    let echo = conn.response().await.echo();
    assert_eq!(echo.0["method"], "get");
    assert_eq!(echo.target(), "/café?q=é");
    assert_eq!(echo.header("x-tab").as_deref(), Some("a\tb"));

    // POST without a length in HTTP/1.1 has no body; GET with a length has one.
    conn.send(b"POST /no-length HTTP/1.1\r\nHost: chamilo.example\r\n\r\n")
        .await;
    let echo = conn.response().await.echo();
    assert_eq!(
        (echo.target(), &echo.0["body_len"]),
        ("/no-length", &0.into())
    );
    conn.send(b"GET /with-body HTTP/1.1\r\nHost: chamilo.example\r\nContent-Length: 3\r\n\r\nabc")
        .await;
    let echo = conn.response().await.echo();
    assert_eq!(
        (echo.target(), &echo.0["body_len"]),
        ("/with-body", &3.into())
    );

    conn.send(&get("/after")).await;
    assert_eq!(conn.response().await.echo().target(), "/after");
}

#[tokio::test]
async fn chunked_and_expect_100_uploads_keep_the_connection() {
    let up = start_upstream().await;
    let server = server_for(up.addr).await;
    let mut conn = ClientConnection::open(server.addr).await;

    conn.send(
        b"POST /chunked-upload HTTP/1.1\r\nHost: chamilo.example\r\nTransfer-Encoding: chunked\r\n\r\n\
          4\r\nabcd\r\n3;ext=1\r\nefg\r\n0\r\nX-Trailer: t\r\n\r\n",
    )
    .await;
    let echo = conn.response().await.echo();
    assert_eq!(echo.target(), "/chunked-upload");
    assert_eq!(echo.0["body_len"], 7);
    assert_eq!(
        echo.0["body_sha256"],
        hex::encode(Sha256::digest(b"abcdefg"))
    );

    // The head alone first: the body follows only once `100 Continue` has arrived.
    conn.send(
        b"POST /expect HTTP/1.1\r\nHost: chamilo.example\r\nExpect: 100-continue\r\n\
          Content-Length: 5\r\n\r\n",
    )
    .await;
    let interim = conn.interim_response().await;
    assert_eq!(interim.head, "HTTP/1.1 100 Continue");
    conn.send(b"hello").await;
    let echo = conn.response().await.echo();
    assert_eq!(echo.target(), "/expect");
    assert_eq!(echo.0["body_len"], 5);
    assert_eq!(echo.header("expect"), None);

    conn.send(&get("/after")).await;
    assert_eq!(conn.response().await.echo().target(), "/after");
}

#[tokio::test]
async fn transfer_encoding_with_content_length_is_served_chunked_then_closed() {
    let up = start_upstream().await;
    let server = server_for(up.addr).await;
    let mut conn = ClientConnection::open(server.addr).await;
    // The shape of request smuggling: the chunked framing wins, the connection is not trusted
    // with another request, and what follows is never answered.
    let mut bytes = b"POST /ambiguous HTTP/1.1\r\nHost: chamilo.example\r\nContent-Length: 3\r\n\
          Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
        .to_vec();
    bytes.extend_from_slice(&get("/smuggled"));
    conn.send(&bytes).await;
    let resp = conn.response().await;
    assert_eq!(resp.header("connection").as_deref(), Some("close"));
    let echo = resp.echo();
    assert_eq!(echo.target(), "/ambiguous");
    assert_eq!(echo.0["body_len"], 3);
    assert!(conn.closed_within(CLOSE_WAIT).await);
    assert_eq!(up.hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn large_bodies_both_ways_keep_the_connection_in_step() {
    let up = start_upstream().await;
    let server = server_for(up.addr).await;
    let mut conn = ClientConnection::open(server.addr).await;

    // 2 MiB down, pipelined with the request after it.
    let mut two = get("/download?32");
    two.extend_from_slice(&get("/after-download"));
    conn.send(&two).await;
    let resp = conn.response().await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("content-length").as_deref(), Some("2097152"));
    let chunk = chunk();
    assert_eq!(resp.body.len(), 32 * chunk.len());
    assert!(resp.body.chunks(chunk.len()).all(|c| c == chunk));
    assert_eq!(conn.response().await.echo().target(), "/after-download");

    // 2 MiB up.
    let body: Vec<u8> = (0..2 * 1024 * 1024u32).map(|i| (i % 253) as u8).collect();
    let mut post = format!(
        "POST /upload HTTP/1.1\r\nHost: chamilo.example\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    post.extend_from_slice(&body);
    // The upstream reads the body as it comes, so the whole write completes first.
    conn.send(&post).await;
    let echo = conn.response().await.echo();
    assert_eq!(echo.0["body_len"], body.len());
    assert_eq!(echo.0["body_sha256"], hex::encode(Sha256::digest(&body)));

    conn.send(&get("/after-upload")).await;
    assert_eq!(conn.response().await.echo().target(), "/after-upload");
}

/// Asserts that `conn` stays open for most of `timeout`, then closes well within a bound.
async fn closes_after(conn: &mut ClientConnection, since: Instant, timeout: Duration) {
    let early = timeout / 2;
    assert!(
        !conn
            .closed_within(early.saturating_sub(since.elapsed()))
            .await,
        "closed after {:?}, before half of {timeout:?}",
        since.elapsed()
    );
    assert!(
        conn.closed_within(CLOSE_WAIT).await,
        "still open {:?} after {timeout:?}",
        since.elapsed()
    );
    let took = since.elapsed();
    assert!(
        took >= timeout - Duration::from_millis(20),
        "closed after {took:?}, before {timeout:?}"
    );
}

#[tokio::test]
async fn a_client_silent_in_its_head_or_between_requests_is_closed_after_the_header_timeout() {
    let up = start_upstream().await;
    let mut cfg = config_for(up.addr);
    let timeout = Duration::from_millis(300);
    cfg.server.header_read_timeout = timeout;
    let server = start_server(cfg).await;

    // Half a head, then nothing.
    let half = async {
        let mut conn = ClientConnection::open(server.addr).await;
        conn.send(b"GET /index.php HTTP/1.1\r\nHost: chamilo.ex")
            .await;
        closes_after(&mut conn, Instant::now(), timeout).await;
    };
    // Nothing at all after connecting.
    let silent = async {
        let mut conn = ClientConnection::open(server.addr).await;
        closes_after(&mut conn, Instant::now(), timeout).await;
    };
    // An idle keep-alive connection: the same timeout runs from the end of the last response.
    let idle = async {
        let mut conn = ClientConnection::open(server.addr).await;
        conn.send(&get("/index.php")).await;
        assert_eq!(conn.response().await.status, 200);
        closes_after(&mut conn, Instant::now(), timeout).await;
    };
    tokio::join!(half, silent, idle);
    assert_eq!(up.hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_drain_closes_idle_connections_and_lets_a_request_in_flight_finish() {
    // An upstream that holds its answer until the test lets it go.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = listener.local_addr().unwrap();
    let (arrived_tx, arrived) = tokio::sync::oneshot::channel::<()>();
    let (release, released) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let mut byte = [0u8; 1];
            if stream.read(&mut byte).await.unwrap() == 0 {
                return;
            }
            head.push(byte[0]);
        }
        let _ = arrived_tx.send(());
        let _ = released.await;
        let _ = stream
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nslow")
            .await;
        // Held open: the proxy must not wait for this connection to end.
        tokio::time::sleep(Duration::from_secs(30)).await;
    });
    let server = server_for(upstream).await;
    let addr = server.addr;

    // Half a head on a fresh connection. Sent first: the round trips below give the server
    // the turns of its event loop it needs to have read these bytes when the drain begins.
    let mut fresh_partial = ClientConnection::open(addr).await;
    fresh_partial
        .send(b"GET /scim/v2/Users HTTP/1.1\r\nHost: chamil")
        .await;
    // Idle after a request: the SCIM route answers without the upstream.
    let mut idle = ClientConnection::open(addr).await;
    idle.send(&get("/scim/v2/Users")).await;
    assert_eq!(idle.response().await.status, 401);
    // Half of a second head on a kept-alive connection.
    let mut kept_partial = ClientConnection::open(addr).await;
    kept_partial.send(&get("/scim/v2/Users")).await;
    assert_eq!(kept_partial.response().await.status, 401);
    kept_partial
        .send(b"GET /scim/v2/Users HTTP/1.1\r\nHost: chamil")
        .await;
    let mut busy = ClientConnection::open(addr).await;
    busy.send(&get("/slow")).await;
    tokio::time::timeout(CLOSE_WAIT, arrived)
        .await
        .expect("the request reached the upstream")
        .unwrap();

    let drained = tokio::spawn(server.drain());
    assert!(
        idle.closed_within(CLOSE_WAIT).await,
        "the idle connection was not closed by the drain"
    );
    // hyper counts a kept-alive connection as idle until a whole head has arrived, so the
    // half head is dropped unanswered ...
    assert!(
        kept_partial.closed_within(CLOSE_WAIT).await,
        "a kept-alive connection with half a head was not closed by the drain"
    );
    // ... while on a fresh connection the request counts as begun: it may finish, and is
    // answered as the connection's last.
    assert!(
        !fresh_partial
            .closed_within(Duration::from_millis(100))
            .await
    );
    fresh_partial.send(b"o.example\r\n\r\n").await;
    let resp = fresh_partial.response().await;
    assert_eq!(resp.status, 401);
    assert_eq!(resp.header("connection").as_deref(), Some("close"));
    assert!(fresh_partial.closed_within(CLOSE_WAIT).await);
    assert!(!drained.is_finished(), "the drain did not wait");
    release.send(()).unwrap();
    let resp = busy.response().await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.body, b"slow");
    assert_eq!(resp.header("connection").as_deref(), Some("close"));
    assert!(busy.closed_within(CLOSE_WAIT).await);
    tokio::time::timeout(CLOSE_WAIT, drained)
        .await
        .expect("the drain ends once its connections have")
        .unwrap();
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "still accepting after the drain"
    );
}

#[tokio::test]
async fn response_fields_lose_hop_by_hop_ones_and_keep_cookies_in_order() {
    let up = Scripted::start(|head, _| {
        if head.starts_with("get /dated ") {
            return Reply::Keep(
                b"HTTP/1.1 200 Fine\r\nDate: Tue, 01 Jan 2030 00:00:00 GMT\r\nServer: Apache/2.4\r\n\
                  X-Bytes: caf\xe9 \xff\r\nContent-Length: 2\r\n\r\nok"
                    .to_vec(),
            );
        }
        Reply::Keep(
            b"HTTP/1.1 200 OK\r\n\
              Connection: keep-alive, X-Upstream-Secret\r\n\
              Keep-Alive: timeout=5, max=100\r\n\
              X-Upstream-Secret: s\r\n\
              Set-Cookie: ch_sid=abc; Path=/; HttpOnly\r\n\
              X-Between: x\r\n\
              Set-Cookie: lang=fr; Path=/\r\n\
              Set-Cookie: theme=dark\r\n\
              Proxy-Authenticate: Basic\r\n\
              Trailer: X-T\r\n\
              Upgrade: h2c\r\n\
              Proxy-Connection: keep-alive\r\n\
              Cache-Control: no-store\r\n\
              Transfer-Encoding: chunked\r\n\r\n\
              5\r\nhello\r\n0\r\n\r\n"
                .to_vec(),
        )
    })
    .await;
    let server = server_for(up.addr).await;
    let mut conn = ClientConnection::open(server.addr).await;
    conn.send(&get("/cookies")).await;
    let resp = conn.response().await;
    assert_eq!(resp.body, b"hello");
    assert_eq!(
        resp.header_all("set-cookie"),
        [
            b"ch_sid=abc; Path=/; HttpOnly".as_slice(),
            b"lang=fr; Path=/".as_slice(),
            b"theme=dark".as_slice()
        ]
    );
    let mut names: Vec<&str> = resp.headers.iter().map(|(n, _)| n.as_str()).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "cache-control",
            "date",
            "set-cookie",
            "set-cookie",
            "set-cookie",
            "transfer-encoding",
            "x-between"
        ],
        "{}",
        resp.head
    );
    assert_eq!(resp.header("transfer-encoding").as_deref(), Some("chunked"));
    assert_eq!(resp.header_all("date").len(), 1);

    // The upstream's own Date is passed on, not replaced nor doubled; so are its reason
    // phrase, its `Server` and a value that is not UTF-8.
    conn.send(&get("/dated")).await;
    let resp = conn.response().await;
    assert!(
        resp.head.starts_with("HTTP/1.1 200 Fine\r\n"),
        "{}",
        resp.head
    );
    assert_eq!(resp.header("server").as_deref(), Some("Apache/2.4"));
    assert_eq!(resp.header_all("x-bytes"), [b"caf\xe9 \xff".as_slice()]);
    assert_eq!(
        resp.header_all("date"),
        [b"Tue, 01 Jan 2030 00:00:00 GMT".as_slice()]
    );
    assert_eq!(resp.body, b"ok");
}

#[tokio::test]
async fn non_utf8_header_values_reach_the_upstream_unchanged_on_a_kept_connection() {
    let up = start_upstream().await;
    let server = server_for(up.addr).await;
    let mut conn = ClientConnection::open(server.addr).await;
    conn.send(
        b"GET /index.php HTTP/1.1\r\nHost: chamilo.example\r\nX-Name: Jos\xe9 \x80\xff\r\n\
          Cookie: n=\xe9; m=1\r\nReferer: http://chamilo.example/caf\xe9\r\n\r\n",
    )
    .await;
    let echo = conn.response().await.echo();
    assert_eq!(echo.header_bytes("x-name").unwrap(), b"Jos\xe9 \x80\xff");
    assert_eq!(echo.header_bytes("cookie").unwrap(), b"n=\xe9; m=1");
    assert_eq!(
        echo.header_bytes("referer").unwrap(),
        b"http://chamilo.example/caf\xe9"
    );
    conn.send(&get("/next")).await;
    assert_eq!(conn.response().await.echo().target(), "/next");
}

/// Issue 11 §5: a client's broken chunked framing is the client's fault: 400, counted as a
/// client error, never as an upstream one (which any client could otherwise inflate).
#[tokio::test]
async fn broken_chunked_framing_from_a_client_is_400_and_not_an_upstream_error() {
    for bad in [
        &b"zz\r\nabc\r\n0\r\n\r\n"[..],
        &b"3\r\nabcdef\r\n0\r\n\r\n"[..],
    ] {
        let up = start_upstream().await;
        let server = server_for(up.addr).await;
        let mut conn = ClientConnection::open(server.addr).await;
        let mut req =
            b"POST /upload HTTP/1.1\r\nHost: chamilo.example\r\nTransfer-Encoding: chunked\r\n\r\n"
                .to_vec();
        req.extend_from_slice(bad);
        conn.send(&req).await;
        let resp = conn.response().await;
        let shown = String::from_utf8_lossy(bad);
        assert_eq!(resp.status, 400, "{shown}");
        let metrics = server.metrics();
        assert!(
            !metrics.contains("proxy_upstream_errors_total{kind=\"reset\"}"),
            "{shown}: {metrics}"
        );
        assert!(
            metrics.contains("proxy_client_errors_total{kind=\"request_body\"} 1"),
            "{shown}: {metrics}"
        );
        assert!(conn.closed_within(CLOSE_WAIT).await, "{shown}");
    }
}

/// Issue 11 §8: a name with `_` from an untrusted peer would reach PHP as the same
/// `$_SERVER` key as its `-` twin (`X_Forwarded_For` standing in for `X-Forwarded-For`).
#[tokio::test]
async fn names_with_underscores_from_an_untrusted_peer_are_dropped() {
    let up = start_upstream().await;
    let server = server_for(up.addr).await;
    let mut conn = ClientConnection::open(server.addr).await;
    conn.send(
        b"GET /fields HTTP/1.1\r\nHost: chamilo.example\r\nX_Forwarded_For: 6.6.6.6\r\n\
          X_Real_IP: 6.6.6.6\r\nX-Kept: yes\r\n\r\n",
    )
    .await;
    let echo = conn.response().await.echo();
    assert_eq!(echo.header("x_forwarded_for"), None);
    assert_eq!(echo.header("x_real_ip"), None);
    assert_eq!(echo.header("x-kept").as_deref(), Some("yes"));
    assert_eq!(echo.header("x-forwarded-for").as_deref(), Some("127.0.0.1"));
}

/// Issue 11 §8: `Transfer-Encoding: gzip, chunked` was forwarded as plain `chunked`, the
/// coding lost; RFC 9112 §6.1 answers 501 for a coding the server does not understand.
#[tokio::test]
async fn a_transfer_coding_before_chunked_is_501_and_nothing_reaches_chamilo() {
    for te in ["gzip, chunked", "deflate,chunked", "x-custom, chunked"] {
        let up = start_upstream().await;
        let server = server_for(up.addr).await;
        let mut conn = ClientConnection::open(server.addr).await;
        conn.send(
            format!(
                "POST /upload HTTP/1.1\r\nHost: chamilo.example\r\nTransfer-Encoding: {te}\r\n\r\n\
                 3\r\nabc\r\n0\r\n\r\n"
            )
            .as_bytes(),
        )
        .await;
        let resp = conn.response().await;
        assert_eq!(resp.status, 501, "{te}");
        assert_eq!(up.hits.load(Ordering::SeqCst), 0, "{te}");
    }
}
