//! The express lane of the real public server: plain requests stay in it, the first unusual
//! one hands the connection to hyper's server, which then answers it and everything after it
//! on the same connection; the drain closes idle connections and lets a request in flight end.

mod proxy_harness;

use std::time::Duration;

use bytes::Bytes;
use chamilo_scim_proxy::body::{empty, full, BoxBody};
use chamilo_scim_proxy::config::Secret;
use http::{Method, Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use proxy_harness::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One client connection with hyper's client: every request goes over the same TCP
/// connection, one after the other.
async fn connection(server: &Server) -> SendRequest<BoxBody> {
    let stream = TcpStream::connect(server.addr).await.unwrap();
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    sender
}

async fn call(
    sender: &mut SendRequest<BoxBody>,
    method: Method,
    target: &str,
    body: BoxBody,
) -> (Response<()>, Bytes) {
    sender.ready().await.expect("connection still open");
    let req = Request::builder()
        .method(method)
        .uri(target)
        .header("host", "lms.example")
        .body(body)
        .unwrap();
    let resp: Response<Incoming> =
        tokio::time::timeout(Duration::from_secs(10), sender.send_request(req))
            .await
            .expect("answer within 10 s")
            .unwrap();
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    (Response::from_parts(parts, ()), body)
}

fn handovers(server: &Server, reason: &str) -> f64 {
    let sample = format!("http_express_handovers_total{{reason=\"{reason}\"}} ");
    server
        .metrics()
        .lines()
        .find_map(|line| line.strip_prefix(&sample).map(str::to_owned))
        .map_or(0.0, |v| v.parse().unwrap())
}

/// Every `http_express_handovers_total` sample, summed.
fn all_handovers(server: &Server) -> f64 {
    server
        .metrics()
        .lines()
        .filter(|line| line.starts_with("http_express_handovers_total{"))
        .map(|line| line.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum()
}

#[tokio::test]
async fn gets_heads_and_posts_with_a_length_stay_in_the_lane() {
    let upstream = start_upstream().await;
    let server = start_server(config_for(upstream.addr)).await;
    let mut conn = connection(&server).await;

    for target in ["/index.php", "/main/course/?cid=3&x=%2F", "/favicon.ico"] {
        let (resp, body) = call(&mut conn, Method::GET, target, empty()).await;
        assert_eq!(resp.status(), 200);
        assert!(resp.headers().contains_key("date"));
        let echo = Echo::parse(&body);
        assert_eq!(echo.target(), target);
        assert_eq!(echo.header("host").as_deref(), Some("lms.example"));
        assert_eq!(echo.header("x-forwarded-for").as_deref(), Some("127.0.0.1"));
    }
    let (resp, body) = call(&mut conn, Method::HEAD, "/index.php", empty()).await;
    assert_eq!(resp.status(), 200);
    assert!(body.is_empty());

    let (resp, body) = call(
        &mut conn,
        Method::POST,
        "/main/login.php",
        full("user=a&pw=b"),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let echo = Echo::parse(&body);
    assert_eq!(echo.0["method"], "POST");
    assert_eq!(echo.0["body_len"], 11);
    assert_eq!(echo.header("content-length").as_deref(), Some("11"));

    // 8 MiB with a Content-Length, read from the client connection as the upstream takes it.
    conn.ready().await.unwrap();
    let upload = Request::put("/main/upload.php")
        .header("host", "lms.example")
        .header("content-length", 128 * 65536)
        .body(repeated(chunk(), 128))
        .unwrap();
    let resp = conn.send_request(upload).await.unwrap();
    assert_eq!(resp.status(), 200);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let echo = Echo::parse(&body);
    assert_eq!(echo.0["body_len"], 128 * 65536);
    let mut expected = <sha2::Sha256 as sha2::Digest>::new();
    for _ in 0..128 {
        sha2::Digest::update(&mut expected, chunk());
    }
    assert_eq!(
        echo.0["body_sha256"],
        hex::encode(sha2::Digest::finalize(expected))
    );

    let (resp, body) = call(&mut conn, Method::GET, "/after", empty()).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(Echo::parse(&body).target(), "/after");
    assert_eq!(upstream.hits.load(std::sync::atomic::Ordering::SeqCst), 7);
    assert_eq!(all_handovers(&server), 0.0, "{}", server.metrics());
}

#[tokio::test]
async fn a_chunked_upload_hands_the_connection_to_hyper_which_serves_the_rest() {
    let upstream = start_upstream().await;
    let server = start_server(config_for(upstream.addr)).await;
    let mut client = ClientConnection::open(server.addr).await;
    client
        .send(b"GET /first HTTP/1.1\r\nHost: lms.example\r\n\r\n")
        .await;
    assert_eq!(client.response().await.echo().target(), "/first");
    client
        .send(b"POST /chunked HTTP/1.1\r\nHost: lms.example\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\nGET /then HTTP/1.1\r\nHost: lms.example\r\n\r\n")
        .await;
    let echo = client.response().await.echo();
    assert_eq!(echo.0["body_len"], 5);
    assert_eq!(client.response().await.echo().target(), "/then");
    assert_eq!(handovers(&server, "transfer-encoding"), 1.0);
}

#[tokio::test]
async fn an_early_answer_to_an_upload_closes_the_connection_after_it() {
    let upstream = scripted::Scripted::start_reading_bodies(
        |_, _| {
            scripted::Reply::Close(
                b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 4\r\nConnection: close\r\n\r\nbig!"
                    .to_vec(),
            )
        },
        false,
    )
    .await;
    let server = start_server(config_for(upstream.addr)).await;
    let mut client = ClientConnection::open(server.addr).await;
    // The head and a little of the body: the rest never comes, the upstream answers first.
    client
        .send(b"POST /upload HTTP/1.1\r\nHost: lms.example\r\nContent-Length: 1000000\r\n\r\nsome")
        .await;
    let resp = client.response().await;
    assert_eq!(resp.status, 413);
    assert_eq!(resp.body, b"big!");
    assert_eq!(resp.header("connection").as_deref(), Some("close"));
    assert!(client.closed_within(Duration::from_secs(5)).await);
    assert_eq!(all_handovers(&server), 0.0);
}

#[tokio::test]
async fn a_scim_request_on_a_pass_through_connection_reaches_the_scim_service() {
    let upstream = start_upstream().await;
    let mut cfg = config_for(upstream.addr);
    cfg.scim.enabled = true;
    cfg.scim.tokens = vec![Secret::new("t0ken-for-tests".to_owned())];
    let server = start_server(cfg).await;
    let mut conn = connection(&server).await;

    let (resp, _) = call(&mut conn, Method::GET, "/index.php", empty()).await;
    assert_eq!(resp.status(), 200);
    let (resp, body) = call(&mut conn, Method::GET, "/scim/v2/Users", empty()).await;
    assert_eq!(resp.status(), 401, "{}", String::from_utf8_lossy(&body));
    assert!(
        String::from_utf8_lossy(&body).contains("urn:ietf:params:scim:api:messages:2.0:Error"),
        "{}",
        String::from_utf8_lossy(&body)
    );
    assert_eq!(handovers(&server, "scim route"), 1.0);
    let (resp, body) = call(&mut conn, Method::GET, "/index.php?again", empty()).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(Echo::parse(&body).target(), "/index.php?again");
    assert_eq!(upstream.hits.load(std::sync::atomic::Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_malformed_head_gets_hypers_answer() {
    let upstream = start_upstream().await;
    let server = start_server(config_for(upstream.addr)).await;
    let resp = raw(server.addr, b"GET / HTTP/1.1\r\nBad Header\r\n\r\n").await;
    assert_eq!(resp.status, 400, "{}", resp.head);
    assert_eq!(handovers(&server, "malformed head"), 1.0);
    assert_eq!(upstream.hits.load(std::sync::atomic::Ordering::SeqCst), 0);
}

#[tokio::test]
async fn the_drain_closes_an_idle_connection_and_lets_a_request_in_flight_finish() {
    let upstream = start_upstream().await;
    let server = start_server(config_for(upstream.addr)).await;

    // Idle after one request.
    let mut idle = TcpStream::connect(server.addr).await.unwrap();
    idle.write_all(b"GET /first HTTP/1.1\r\nHost: lms.example\r\n\r\n")
        .await
        .unwrap();
    let mut first = vec![0u8; 65536];
    let n = idle.read(&mut first).await.unwrap();
    assert!(first[..n].starts_with(b"HTTP/1.1 200 "));

    // In flight: a 64 MiB download the client reads slowly, so the drain begins mid-body.
    let mut busy = TcpStream::connect(server.addr).await.unwrap();
    busy.write_all(b"GET /download?1024 HTTP/1.1\r\nHost: lms.example\r\n\r\n")
        .await
        .unwrap();
    let mut got = vec![0u8; 4096];
    let mut received = busy.read(&mut got).await.unwrap();
    assert!(got.starts_with(b"HTTP/1.1 200 "));

    let drained = tokio::spawn(async move {
        server.drain().await;
    });
    // The idle connection is closed by the drain.
    let closed = tokio::time::timeout(Duration::from_secs(5), idle.read(&mut first)).await;
    assert!(matches!(closed, Ok(Ok(0))), "{closed:?}");
    // The download completes, then its connection closes.
    let finished = tokio::time::timeout(Duration::from_secs(30), async {
        let mut rest = Vec::new();
        busy.read_to_end(&mut rest).await.unwrap();
        received += rest.len();
        received
    })
    .await
    .expect("download finishes");
    let head_len = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert_eq!(finished - head_len, 1024 * 65536);
    tokio::time::timeout(Duration::from_secs(10), drained)
        .await
        .expect("drain completes")
        .unwrap();
}
