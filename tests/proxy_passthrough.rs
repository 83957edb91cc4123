//! Pass-through behaviour on loopback: a real echoing upstream, the real `Proxy`.

mod proxy_harness;

use std::sync::atomic::Ordering;
use std::time::Duration;

use chamilo_scim_proxy::body::{empty, full};
use chamilo_scim_proxy::config::AccessRule;
use http::Request;
use proxy_harness::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn get(path: &str, extra: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: chamilo.example\r\n{extra}Connection: close\r\n\r\n")
        .into_bytes()
}

#[tokio::test]
async fn request_reaches_upstream_with_host_target_and_body() {
    let up = start_upstream().await;
    let front = start_front(config_for(up.addr), None).await;
    let req = Request::post("/main/document/upload.php?cidReq=ABC&x=%2F")
        .header("host", "chamilo.example:8443")
        .header("content-type", "text/plain")
        .body(full("hello world"))
        .unwrap();
    let resp = send(front.addr, req).await;
    assert_eq!(resp.status(), 200);
    let echo = Echo::parse(&body_bytes(resp).await);
    assert_eq!(echo.0["method"], "POST");
    assert_eq!(echo.target(), "/main/document/upload.php?cidReq=ABC&x=%2F");
    assert_eq!(echo.header("host").unwrap(), "chamilo.example:8443");
    assert_eq!(
        echo.header("x-forwarded-host").unwrap(),
        "chamilo.example:8443"
    );
    assert_eq!(echo.header("content-type").unwrap(), "text/plain");
    assert_eq!(echo.0["body_len"], 11);
    assert_eq!(echo.0["version"], "HTTP/1.1");
}

#[tokio::test]
async fn hop_by_hop_and_connection_named_headers_are_dropped_both_ways() {
    let up = start_upstream().await;
    let front = start_front(config_for(up.addr), None).await;
    let resp = raw(
        front.addr,
        &get(
            "/index.php",
            "Connection: keep-alive, X-Client-Secret, X-Forwarded-For\r\n\
             X-Client-Secret: s\r\n\
             Keep-Alive: timeout=5\r\n\
             Proxy-Connection: keep-alive\r\n\
             Proxy-Authorization: Basic eDp5\r\n\
             TE: trailers\r\n\
             Upgrade: h2c\r\n\
             X-Forwarded-For: 6.6.6.6\r\n\
             X-Kept: yes\r\n",
        ),
    )
    .await;
    let echo = resp.echo();
    for name in [
        "x-client-secret",
        "keep-alive",
        "proxy-connection",
        "proxy-authorization",
        "te",
        "upgrade",
        "trailer",
    ] {
        assert_eq!(echo.header(name), None, "{name} reached the upstream");
    }
    assert_eq!(echo.header("x-kept").unwrap(), "yes");
    // `Connection: X-Forwarded-For` removed the client's value before the proxy added its own.
    assert_eq!(echo.header("x-forwarded-for").unwrap(), "127.0.0.1");
    // The client's `Connection` is not forwarded; the pooled upstream connection needs none.
    assert_eq!(echo.header("connection"), None);

    let resp = raw(front.addr, &get("/hop", "")).await;
    assert_eq!(resp.status, 200);
    for name in [
        "x-upstream-secret",
        "keep-alive",
        "proxy-authenticate",
        "trailer",
        "upgrade",
    ] {
        assert!(
            resp.header_all(name).is_empty(),
            "{name} reached the client"
        );
    }
    assert_eq!(resp.header("x-kept").unwrap(), "k");
    assert_eq!(resp.header_all("x-bytes"), [b"caf\xe9 \xff".as_slice()]);
    assert_eq!(resp.body, b"hop");
}

#[tokio::test]
async fn forwarded_headers_from_an_untrusted_peer_start_a_new_chain() {
    let up = start_upstream().await;
    let mut cfg = config_for(up.addr);
    cfg.forwarding.trusted_networks = vec!["10.0.0.0/8".parse().unwrap()];
    let front = start_front(cfg, None).await;
    let resp = raw(
        front.addr,
        &get(
            "/main/webservices/registration.soap.php",
            "X-Forwarded-For: 6.6.6.6, 7.7.7.7\r\n\
             X-Forwarded-Proto: https\r\n\
             X-Forwarded-Host: evil.example\r\n\
             Forwarded: for=6.6.6.6\r\n\
             X-Real-IP: 6.6.6.6\r\n",
        ),
    )
    .await;
    let echo = resp.echo();
    assert_eq!(echo.header("x-forwarded-for").unwrap(), "127.0.0.1");
    assert_eq!(echo.header("x-forwarded-proto").unwrap(), "http");
    assert_eq!(echo.header("x-forwarded-host").unwrap(), "chamilo.example");
    assert_eq!(
        echo.header("forwarded").unwrap(),
        "for=127.0.0.1;host=chamilo.example;proto=http"
    );
    assert_eq!(echo.header("x-real-ip"), None);
}

#[tokio::test]
async fn forwarded_headers_from_a_trusted_peer_are_appended_to() {
    let up = start_upstream().await;
    let mut cfg = config_for(up.addr);
    cfg.forwarding.trusted_networks = vec!["127.0.0.0/8".parse().unwrap()];
    let front = start_front(cfg, None).await;
    let resp = raw(
        front.addr,
        &get(
            "/index.php",
            "X-Forwarded-For: 203.0.113.5\r\n\
             X-Forwarded-Proto: https\r\n\
             X-Forwarded-Host: chamilo.example.org\r\n\
             Forwarded: for=203.0.113.5;proto=https\r\n",
        ),
    )
    .await;
    let echo = resp.echo();
    assert_eq!(
        echo.header("x-forwarded-for").unwrap(),
        "203.0.113.5, 127.0.0.1"
    );
    assert_eq!(echo.header("x-forwarded-proto").unwrap(), "https");
    assert_eq!(
        echo.header("x-forwarded-host").unwrap(),
        "chamilo.example.org"
    );
    assert_eq!(
        echo.header("forwarded").unwrap(),
        "for=203.0.113.5;proto=https, for=127.0.0.1;host=chamilo.example;proto=http"
    );
}

#[tokio::test]
async fn access_rules_lock_webservices_to_a_network() {
    let up = start_upstream().await;
    let mut cfg = config_for(up.addr);
    cfg.forwarding.trusted_networks = vec!["127.0.0.1/32".parse().unwrap()];
    cfg.access.rules = vec![AccessRule {
        path_prefix: "/main/webservices/".to_owned(),
        allow: vec!["10.0.0.0/8".parse().unwrap()],
        deny: vec![],
    }];
    let front = start_front(cfg, None).await;

    // The trusted peer (127.0.0.1) forwards for an outside client: denied.
    let resp = raw(
        front.addr,
        &get(
            "//main/WebServices/api/v2.php",
            "X-Forwarded-For: 10.0.0.1, 203.0.113.5\r\n",
        ),
    )
    .await;
    assert_eq!(resp.status, 403);
    // A client that only claims to be inside, to the left of an untrusted hop: denied.
    let resp = raw(
        front.addr,
        &get(
            "/main/webservices/registration.soap.php",
            "X-Forwarded-For: 10.1.1.1, 198.51.100.1\r\n",
        ),
    )
    .await;
    assert_eq!(resp.status, 403);
    // Forwarded for an inside client: allowed.
    let resp = raw(
        front.addr,
        &get(
            "/main/webservices/registration.soap.php",
            "X-Forwarded-For: 10.1.1.1\r\n",
        ),
    )
    .await;
    assert_eq!(resp.status, 200);
    // Other paths stay open.
    let resp = raw(
        front.addr,
        &get("/index.php", "X-Forwarded-For: 203.0.113.5\r\n"),
    )
    .await;
    assert_eq!(resp.status, 200);
    assert_eq!(up.hits.load(Ordering::SeqCst), 2);
    assert!(front.metrics().contains("proxy_access_denied_total 2"));
}

#[tokio::test]
async fn path_confusion_never_reaches_the_upstream() {
    let up = start_upstream().await;
    let front = start_front(config_for(up.addr), None).await;
    let to_scim = [
        "/SCIM/v2/Users",
        "//scim/v2/Users",
        "/scim%2Fv2/Users",
        "/%73cim/v2/Users",
        "http://evil.example/scim/v2/Users",
    ];
    for target in to_scim {
        let resp = raw(front.addr, &get(target, "")).await;
        assert_eq!(resp.status, 501, "{target}");
        assert_eq!(resp.body, b"scim:/Users", "{target}");
    }
    let rejected = [
        "/foo/../scim/v2/Users",
        "/foo/%2e%2e/scim/v2/Users",
        "/scim;x/v2/Users",
        "/scim%5cv2/Users",
        "/scim/v2/Users%00",
        "/%c0%afscim/v2/Users",
        "/main/%2E%2E/main/webservices/x.php",
    ];
    for target in rejected {
        let resp = raw(front.addr, &get(target, "")).await;
        assert_eq!(resp.status, 400, "{target}");
    }
    assert_eq!(up.hits.load(Ordering::SeqCst), 0);

    // An absolute-form target for another path passes, in origin-form, with its authority as Host.
    let resp = raw(
        front.addr,
        &get("http://chamilo.example:8080/index.php?a=1", ""),
    )
    .await;
    let echo = resp.echo();
    assert_eq!(echo.target(), "/index.php?a=1");
    assert_eq!(echo.header("host").unwrap(), "chamilo.example:8080");
}

#[tokio::test]
async fn expect_100_continue_is_answered_and_not_forwarded() {
    let up = start_upstream().await;
    let front = start_front(config_for(up.addr), None).await;
    let mut stream = TcpStream::connect(front.addr).await.unwrap();
    stream
        .write_all(
            b"PUT /upload.php HTTP/1.1\r\nHost: chamilo.example\r\nContent-Length: 5\r\n\
              Expect: 100-continue\r\nConnection: close\r\n\r\n",
        )
        .await
        .unwrap();
    let mut interim = [0u8; 25];
    tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut interim))
        .await
        .expect("100 Continue within 5 s")
        .unwrap();
    assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    stream.write_all(b"hello").await.unwrap();
    let mut buf = Vec::new();
    stream.read_to_end(&mut buf).await.unwrap();
    let echo = parse_response(&buf).echo();
    assert_eq!(echo.header("expect"), None);
    assert_eq!(echo.0["body_len"], 5);
}

#[tokio::test]
async fn non_utf8_header_values_pass_without_breaking_the_connection() {
    let up = start_upstream().await;
    let front = start_front(config_for(up.addr), None).await;
    let mut request =
        b"GET /index.php HTTP/1.1\r\nHost: chamilo.example\r\nX-Name: Jos\xe9 \xff\r\n\
        Connection: close\r\nConnection: \xfe\xff, x-gone\r\nX-Gone: 1\r\nCookie: n=\xe9\r\n\r\n"
            .to_vec();
    let resp = raw(front.addr, &request).await;
    let echo = resp.echo();
    assert_eq!(echo.header_bytes("x-name").unwrap(), b"Jos\xe9 \xff");
    assert_eq!(echo.header_bytes("cookie").unwrap(), b"n=\xe9");
    assert_eq!(echo.header("x-gone"), None);

    // Non-UTF-8 Host: still forwarded as is, and the proxy keeps answering.
    request = b"GET /index.php HTTP/1.1\r\nHost: h\xe9st\r\nConnection: close\r\n\r\n".to_vec();
    let resp = raw(front.addr, &request).await;
    if resp.status == 200 {
        assert_eq!(resp.echo().header_bytes("host").unwrap(), b"h\xe9st");
    } else {
        assert_eq!(resp.status, 400);
    }
    let resp = raw(front.addr, &get("/index.php", "")).await;
    assert_eq!(resp.status, 200);
}

#[tokio::test]
async fn redirects_and_set_cookie_pass_untouched() {
    let up = start_upstream().await;
    let front = start_front(config_for(up.addr), None).await;
    let resp = raw(front.addr, &get("/redirect", "")).await;
    assert_eq!(resp.status, 302);
    assert_eq!(
        resp.header("location").unwrap(),
        "http://chamilo.example/main/auth/login.php?x=1"
    );
    assert_eq!(
        resp.header_all("set-cookie"),
        [
            b"ch_sid=abc; Path=/; HttpOnly".as_slice(),
            b"lang=fr; Path=/".as_slice()
        ]
    );
    assert_eq!(up.hits.load(Ordering::SeqCst), 1, "redirect was followed");
}

#[tokio::test]
async fn closed_port_gives_502_with_a_small_page() {
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let front = start_front(config_for(closed), None).await;
    let resp = raw(front.addr, &get("/index.php", "")).await;
    assert_eq!(resp.status, 502);
    assert!(resp
        .header("content-type")
        .unwrap()
        .starts_with("text/html"));
    assert!(String::from_utf8_lossy(&resp.body).contains("502 Bad Gateway"));
    assert!(resp.body.len() < 512);
    assert!(front
        .metrics()
        .contains("proxy_upstream_errors_total{kind=\"connect\"} 1"));
}

#[tokio::test]
async fn silent_upstream_gives_504() {
    // Accepts connections and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    let mut cfg = config_for(addr);
    cfg.upstream.response_header_timeout = Duration::from_millis(300);
    let front = start_front(cfg, None).await;
    let started = std::time::Instant::now();
    let resp = raw(front.addr, &get("/index.php", "")).await;
    assert_eq!(resp.status, 504);
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(String::from_utf8_lossy(&resp.body).contains("504 Gateway Timeout"));
    assert!(front
        .metrics()
        .contains("proxy_upstream_errors_total{kind=\"response_timeout\"} 1"));
}

#[tokio::test]
async fn upstream_reset_gives_502() {
    // Reads the request, then closes without answering.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await;
            drop(s);
        }
    });
    let front = start_front(config_for(addr), None).await;
    let resp = raw(front.addr, &get("/index.php", "")).await;
    assert_eq!(resp.status, 502);
    assert!(front
        .metrics()
        .contains("proxy_upstream_errors_total{kind=\"reset\"} 1"));
}

#[tokio::test]
async fn slow_upload_within_idle_timeout_is_not_cut_but_a_stalled_one_is() {
    let up = start_upstream().await;
    let mut cfg = config_for(up.addr);
    cfg.upstream.body_idle_timeout = Duration::from_millis(400);
    cfg.upstream.response_header_timeout = Duration::from_millis(400);
    let front = start_front(cfg, None).await;

    // Five pieces 250 ms apart: longer in total than both timeouts, never idle for long.
    let mut stream = TcpStream::connect(front.addr).await.unwrap();
    stream
        .write_all(
            b"POST /up.php HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nConnection: close\r\n\r\n",
        )
        .await
        .unwrap();
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        stream.write_all(b"x").await.unwrap();
    }
    let mut buf = Vec::new();
    stream.read_to_end(&mut buf).await.unwrap();
    let echo = parse_response(&buf).echo();
    assert_eq!(echo.0["body_len"], 5);

    // Two bytes of five, then silence: the upstream sees the body fail.
    let mut stream = TcpStream::connect(front.addr).await.unwrap();
    stream
        .write_all(
            b"POST /up.php HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nConnection: close\r\n\r\nxx",
        )
        .await
        .unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut buf))
        .await
        .expect("the proxy gives up on a stalled upload")
        .unwrap();
    let resp = parse_response(&buf);
    assert_eq!(resp.status, 504, "{}", String::from_utf8_lossy(&resp.body));
    assert!(front
        .metrics()
        .contains("proxy_upstream_errors_total{kind=\"body_timeout\"} 1"));
}

#[tokio::test]
async fn http2_cookies_are_joined_and_authority_becomes_host() {
    // Covered over TLS in proxy_tls.rs; here h2c (prior knowledge) exercises the same path.
    let up = start_upstream().await;
    let front = start_front(config_for(up.addr), None).await;
    let stream = TcpStream::connect(front.addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let req = Request::get(format!(
        "http://chamilo.example:{}/index.php?x",
        front.addr.port()
    ))
    .header("cookie", "a=1")
    .header("cookie", "PHPSESSID=abc")
    .body(empty())
    .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let echo = Echo::parse(&body_bytes(resp).await);
    assert_eq!(echo.target(), "/index.php?x");
    assert_eq!(
        echo.header("host").unwrap(),
        format!("chamilo.example:{}", front.addr.port())
    );
    assert_eq!(echo.header_all("cookie"), ["a=1; PHPSESSID=abc"]);
    assert_eq!(echo.0["version"], "HTTP/1.1");
}

#[tokio::test]
async fn chunked_request_with_a_stale_content_length_is_reframed() {
    let up = start_upstream().await;
    let front = start_front(config_for(up.addr), None).await;
    let resp = raw(
        front.addr,
        b"POST /up.php HTTP/1.1\r\nHost: h\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\
          Connection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    )
    .await;
    // hyper's server may refuse the message outright; if it accepts it, the upstream must see
    // the 5 bytes that were sent, framed consistently.
    if resp.status == 400 {
        assert_eq!(up.hits.load(Ordering::SeqCst), 0);
        return;
    }
    let echo = resp.echo();
    assert_eq!(echo.0["body_len"], 5);
    assert_ne!(echo.header("content-length").as_deref(), Some("100"));
}

#[tokio::test]
async fn upstream_that_stops_reading_an_upload_gives_504() {
    // Reads the request head, then neither reads nor answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut s, _)) = listener.accept().await {
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await;
            held.push(s);
        }
    });
    let mut cfg = config_for(addr);
    cfg.upstream.body_idle_timeout = Duration::from_millis(300);
    let front = start_front(cfg, None).await;
    let mut stream = TcpStream::connect(front.addr).await.unwrap();
    let size = 64 * 1024 * 1024;
    stream
        .write_all(
            format!("POST /up.php HTTP/1.1\r\nHost: h\r\nContent-Length: {size}\r\n\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
    // Keep writing until the buffers are full; the proxy must answer meanwhile.
    let (mut rd, mut wr) = stream.into_split();
    let writer = tokio::spawn(async move {
        let piece = vec![b'x'; 65536];
        for _ in 0..size / 65536 {
            if wr.write_all(&piece).await.is_err() {
                break;
            }
        }
    });
    let mut head = vec![0u8; 12];
    tokio::time::timeout(Duration::from_secs(10), rd.read_exact(&mut head))
        .await
        .expect("an answer while the upload is blocked")
        .unwrap();
    assert_eq!(&head, b"HTTP/1.1 504");
    writer.abort();
    assert!(front
        .metrics()
        .contains("proxy_upstream_errors_total{kind=\"body_timeout\"} 1"));
}

/// Issue 11 §6: an upstream that stops sending in the middle of a response body is cut after
/// `upstream.body_idle_timeout`, and that is counted (`body_timeout`) and logged, as the
/// README says, not dropped silently.
#[tokio::test]
async fn a_response_body_stalled_mid_way_is_cut_and_counted() {
    // Answers with a head announcing 1000 bytes, sends 10, then holds the connection.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut s, _)) = listener.accept().await {
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf).await;
            let _ = s
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n0123456789")
                .await;
            held.push(s);
        }
    });
    let mut cfg = config_for(addr);
    cfg.upstream.body_idle_timeout = Duration::from_millis(300);
    let front = start_front(cfg, None).await;
    let mut stream = TcpStream::connect(front.addr).await.unwrap();
    stream
        .write_all(b"GET /big.php HTTP/1.1\r\nHost: h\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut got))
        .await
        .expect("the proxy cuts the stalled body")
        .unwrap();
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.ends_with("0123456789"), "{text}");
    let metrics = front.metrics();
    assert!(
        metrics.contains("proxy_upstream_errors_total{kind=\"body_timeout\"} 1"),
        "{metrics}"
    );
}
