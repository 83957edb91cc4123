//! Header handling at the server layer: non-UTF-8 values never break a connection, and
//! credentials never reach the logs.

mod common;

use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TOKEN_ENV: (&str, &str) = ("SCIM_TOKEN", "test-token-1");

/// Reads one HTTP/1.1 response with a `content-length` body; returns the head.
async fn read_response(stream: &mut tokio::net::TcpStream) -> String {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let len: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().to_owned())
                })
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            while buf.len() < end + 4 + len {
                let n = stream.read(&mut chunk).await.unwrap();
                assert!(n > 0, "connection closed mid-body");
                buf.extend_from_slice(&chunk[..n]);
            }
            return head;
        }
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut chunk))
            .await
            .expect("response timed out")
            .unwrap();
        assert!(
            n > 0,
            "connection closed before a response: {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_utf8_header_values_do_not_break_the_connection() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    let upstream = Upstream::start(Duration::ZERO).await;
    let extra = format!(
        "[log]\nlevel = \"debug\"\n\n[upstream]\nurl = \"{}\"\n",
        upstream.url()
    );
    std::fs::write(&path, config_text("", &extra)).unwrap();
    let proxy = ProxyProcess::start(&path, &[TOKEN_ENV]);

    let mut stream = tokio::net::TcpStream::connect(proxy.public).await.unwrap();
    for target in ["/scim/v2/Users", "/index.php", "/scim/v2/Users/1"] {
        let mut req =
            format!("GET {target} HTTP/1.1\r\nHost: chamilo.test\r\nX-Latin1: caf").into_bytes();
        req.extend_from_slice(&[0xe9, b' ', 0xff, 0xfe]);
        req.extend_from_slice(b"\r\nCookie: a=\xc3\x28\r\nUser-Agent: \x80\x81\r\n\r\n");
        stream.write_all(&req).await.unwrap();
        let head = read_response(&mut stream).await;
        let status: u16 = head[9..12].parse().unwrap();
        // SCIM: 401 without a token; pass-through: the upstream's 200.
        let expected = if target.starts_with("/scim") {
            is_scim_answer(status)
        } else {
            status == 200
        };
        assert!(expected, "{target}: {head}");
    }
    // The process is still healthy.
    assert_eq!(get(&proxy.admin_url("/livez")).await.unwrap().0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_and_query_strings_are_not_logged() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(&path, config_text("", "[log]\nlevel = \"trace\"\n")).unwrap();
    let proxy = ProxyProcess::start(&path, &[TOKEN_ENV]);

    let mut stream = tokio::net::TcpStream::connect(proxy.public).await.unwrap();
    stream
        .write_all(
            b"GET /scim/v2/Users?access_token=QUERYSECRET HTTP/1.1\r\nHost: x\r\n\
              Authorization: Bearer HEADERSECRET\r\nCookie: PHPSESSID=COOKIESECRET\r\n\r\n",
        )
        .await
        .unwrap();
    read_response(&mut stream).await;
    assert!(proxy.wait_for_log(Duration::from_secs(2), |l| l
        .contains("\"path\":\"/scim/v2/Users\"")));
    let logs = proxy.logs().join("\n");
    for secret in [
        "QUERYSECRET",
        "HEADERSECRET",
        "COOKIESECRET",
        "test-token-1",
    ] {
        assert!(
            !logs.contains(secret),
            "{secret} leaked into the logs:\n{logs}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_silent_clients_are_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(&path, config_text("header_read_timeout = \"500ms\"", "")).unwrap();
    let proxy = ProxyProcess::start(&path, &[TOKEN_ENV]);

    // A client that never sends a byte.
    let mut silent = tokio::net::TcpStream::connect(proxy.public).await.unwrap();
    // A client that sends half a request head and stops (slow loris).
    let mut slow = tokio::net::TcpStream::connect(proxy.public).await.unwrap();
    slow.write_all(b"GET /scim/v2/Users HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    // A client that starts the HTTP/2 preface and stops before its end.
    let mut half_preface = tokio::net::TcpStream::connect(proxy.public).await.unwrap();
    half_preface.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();

    // A client that sends one request, reads the answer and then stays silent: the wait for
    // the next request head has the same deadline.
    let mut kept_alive = tokio::net::TcpStream::connect(proxy.public).await.unwrap();
    for _ in 0..2 {
        kept_alive
            .write_all(b"GET /scim/v2/Users HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        read_response(&mut kept_alive).await;
    }

    for (name, stream) in [
        ("silent", &mut silent),
        ("slow", &mut slow),
        ("half preface", &mut half_preface),
        ("silent after two requests", &mut kept_alive),
    ] {
        let mut buf = [0u8; 256];
        let started = std::time::Instant::now();
        let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await;
        let closed = match read {
            Ok(Ok(0)) | Ok(Err(_)) => true,
            // hyper may answer 408 before closing.
            Ok(Ok(n)) => String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 408"),
            Err(_) => false,
        };
        assert!(closed, "{name} client was not cut off: {read:?}");
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{name}: {:?}",
            started.elapsed()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_connections_holds_back_further_clients() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(&path, config_text("max_connections = 2", "")).unwrap();
    let proxy = ProxyProcess::start(&path, &[TOKEN_ENV]);

    let request = b"GET /scim/v2/Users HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut first = tokio::net::TcpStream::connect(proxy.public).await.unwrap();
    let mut second = tokio::net::TcpStream::connect(proxy.public).await.unwrap();
    for s in [&mut first, &mut second] {
        s.write_all(request).await.unwrap();
        read_response(s).await;
    }
    // The third connection completes in the kernel backlog but is not served...
    let mut third = tokio::net::TcpStream::connect(proxy.public).await.unwrap();
    third.write_all(request).await.unwrap();
    let mut buf = [0u8; 64];
    let early = tokio::time::timeout(Duration::from_millis(500), third.read(&mut buf)).await;
    assert!(early.is_err(), "served beyond max_connections: {early:?}");
    // ...until one of the first two closes.
    drop(first);
    let head = read_response(&mut third).await;
    assert!(head.starts_with("HTTP/1.1 "), "{head}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleartext_http2_with_prior_knowledge_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(&path, config_text("", "")).unwrap();
    let proxy = ProxyProcess::start(&path, &[TOKEN_ENV]);

    let (mut sender, _conn) = h2c_client(proxy.public).await;
    for _ in 0..3 {
        let req = http::Request::get(format!("http://{}/scim/v2/Users", proxy.public))
            .body(http_body_util::Empty::new())
            .unwrap();
        let resp = sender.send_request(req).await.unwrap();
        assert_eq!(resp.version(), http::Version::HTTP_2);
        assert!(is_scim_answer(resp.status().as_u16()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleartext_http2_preface_in_two_writes_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(&path, config_text("", "")).unwrap();
    let proxy = ProxyProcess::start(&path, &[TOKEN_ENV]);

    // The server decides between HTTP/1.1 and HTTP/2 on the first bytes; here they are only
    // part of the preface at first, so it has to wait for the rest.
    let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    let mut stream = tokio::net::TcpStream::connect(proxy.public).await.unwrap();
    stream.write_all(&preface[..10]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    stream.write_all(&preface[10..]).await.unwrap();
    // An empty SETTINGS frame: length 0, type 4, no flags, stream 0.
    stream
        .write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0])
        .await
        .unwrap();
    // An HTTP/2 server answers with a frame header (its SETTINGS), an HTTP/1.1 one with a 400.
    let mut frame = [0u8; 9];
    tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut frame))
        .await
        .expect("no answer")
        .unwrap();
    assert_eq!(frame[3], 4, "not an HTTP/2 SETTINGS frame: {frame:?}");
}
