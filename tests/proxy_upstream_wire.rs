//! The proxy's own HTTP/1.1 client (`http1`, `proxy::upstream`) against an upstream that
//! writes exactly the bytes a test scripts: body framings, interim responses, broken and
//! early answers, and when a request may be sent again.

mod proxy_harness;

use std::time::Duration;

use proxy_harness::scripted::{field, Reply, Scripted};
use proxy_harness::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn request(method: &str, path: &str, extra: &str) -> Vec<u8> {
    format!("{method} {path} HTTP/1.1\r\nHost: lms.example\r\n{extra}Connection: close\r\n\r\n")
        .into_bytes()
}

async fn front_for(up: &Scripted) -> Front {
    start_front(config_for(up.addr), None).await
}

fn upstream_errors(front: &Front, kind: &str) -> f64 {
    let sample = format!("proxy_upstream_errors_total{{kind=\"{kind}\"}}");
    front
        .metrics()
        .lines()
        .find_map(|l| l.strip_prefix(&sample)?.trim().parse().ok())
        .unwrap_or(0.0)
}

const CHUNKED: &[u8] =
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: text/plain\r\n\r\n\
5;name=value\r\nhello\r\n6\r\n world\r\n0\r\nX-Checksum: 1\r\n\r\n";

#[tokio::test]
async fn a_chunked_response_arrives_whole_and_its_connection_is_reused() {
    let up = Scripted::start(|_, _| Reply::Keep(CHUNKED.to_vec())).await;
    let front = front_for(&up).await;
    for _ in 0..3 {
        let resp = raw(front.addr, &request("GET", "/", "")).await;
        assert_eq!(resp.status, 200);
        assert_eq!(resp.body, b"hello world");
        assert_eq!(resp.header("content-type").unwrap(), "text/plain");
    }
    assert_eq!(up.accepted(), 1);
}

#[tokio::test]
async fn a_response_delimited_by_close_is_read_to_its_end_and_not_reused() {
    let up = Scripted::start(|_, _| Reply::Close(b"HTTP/1.1 200 OK\r\n\r\nuntil the end".to_vec()))
        .await;
    let front = front_for(&up).await;
    for _ in 0..2 {
        let resp = raw(front.addr, &request("GET", "/", "")).await;
        assert_eq!(resp.status, 200);
        assert_eq!(resp.body, b"until the end");
    }
    assert_eq!(up.accepted(), 2);
}

#[tokio::test]
async fn transfer_encoding_overrides_content_length_and_the_connection_is_not_reused() {
    let smuggle = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n\
        5\r\nhello\r\n0\r\n\r\n";
    let up = Scripted::start(move |_, _| Reply::Keep(smuggle.to_vec())).await;
    let front = front_for(&up).await;
    for _ in 0..2 {
        let resp = raw(front.addr, &request("GET", "/", "")).await;
        assert_eq!(resp.body, b"hello");
        assert_ne!(resp.header("content-length").as_deref(), Some("3"));
    }
    assert_eq!(up.accepted(), 2);
}

#[tokio::test]
async fn interim_responses_are_skipped_and_a_custom_reason_is_kept() {
    let up = Scripted::start(|_, _| {
        Reply::Keep(
            b"HTTP/1.1 103 Early Hints\r\nLink: </app.css>; rel=preload\r\n\r\n\
              HTTP/1.1 404 Nicht Gefunden\r\nContent-Length: 4\r\n\r\ngone"
                .to_vec(),
        )
    })
    .await;
    let front = front_for(&up).await;
    let resp = raw(front.addr, &request("GET", "/", "")).await;
    assert_eq!(resp.status, 404);
    assert!(
        resp.head.starts_with("HTTP/1.1 404 Nicht Gefunden"),
        "{}",
        resp.head
    );
    assert_eq!(resp.body, b"gone");
}

#[tokio::test]
async fn a_head_response_keeps_its_length_and_its_connection() {
    let up = Scripted::start(|_, _| {
        Reply::Keep(b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n".to_vec())
    })
    .await;
    let front = front_for(&up).await;
    for _ in 0..2 {
        let resp = raw(front.addr, &request("HEAD", "/file.pdf", "")).await;
        assert_eq!(resp.status, 200);
        assert_eq!(resp.header("content-length").unwrap(), "1234");
        assert!(resp.body.is_empty());
    }
    assert_eq!(up.accepted(), 1);
    assert!(up.seen()[0].head.starts_with("head /file.pdf http/1.1"));
}

#[tokio::test]
async fn what_is_not_http_from_the_upstream_is_a_502() {
    let up = Scripted::start(|_, _| Reply::Close(b"SSH-2.0-OpenSSH_9.2\r\n\r\n".to_vec())).await;
    let front = front_for(&up).await;
    let resp = raw(front.addr, &request("GET", "/", "")).await;
    assert_eq!(resp.status, 502);
    assert_eq!(upstream_errors(&front, "reset"), 1.0);
}

#[tokio::test]
async fn a_body_cut_short_is_not_passed_off_as_complete() {
    let up = Scripted::start(|_, _| {
        Reply::Close(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten b".to_vec())
    })
    .await;
    let front = front_for(&up).await;
    let mut stream = TcpStream::connect(front.addr).await.unwrap();
    stream.write_all(&request("GET", "/", "")).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut buf))
        .await
        .expect("the connection ends")
        .ok();
    // Either the client gets nothing, or fewer bytes than announced: never a response that
    // looks complete.
    if !buf.is_empty() {
        let resp = parse_response(&buf);
        assert_eq!(resp.header("content-length").unwrap(), "100");
        assert!(resp.body.len() < 100, "{} bytes", resp.body.len());
    }
    assert_eq!(upstream_errors(&front, "truncated"), 1.0);
}

/// The upstream closes a kept-alive connection on the second request without answering it:
/// the race every keep-alive proxy meets when the upstream's idle timeout runs out.
#[tokio::test]
async fn an_unanswered_request_on_a_reused_connection_is_resent_only_if_idempotent() {
    const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    let up = Scripted::start(|_, nth| {
        if nth == 1 {
            Reply::Keep(OK.to_vec())
        } else {
            Reply::Close(Vec::new())
        }
    })
    .await;
    let front = front_for(&up).await;

    assert_eq!(raw(front.addr, &request("GET", "/a", "")).await.status, 200);
    let resp = raw(front.addr, &request("GET", "/b", "")).await;
    assert_eq!(resp.status, 200, "GET is sent again on a new connection");
    let seen = up.seen();
    let b: Vec<_> = seen
        .iter()
        .filter(|s| s.head.starts_with("get /b"))
        .collect();
    assert_eq!(b.len(), 2);
    assert_ne!(b[0].connection, b[1].connection);

    // Connection 2 is now idle in the pool; a POST on it gets the same treatment but must
    // not be sent twice.
    let resp = raw(front.addr, &request("POST", "/c", "Content-Length: 0\r\n")).await;
    assert_eq!(resp.status, 502);
    let posts = up
        .seen()
        .iter()
        .filter(|s| s.head.starts_with("post /c"))
        .count();
    assert_eq!(posts, 1);
}

#[tokio::test]
async fn an_early_answer_to_an_upload_reaches_the_client() {
    let up = Scripted::start_reading_bodies(
        |_, _| {
            Reply::Close(
                b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 9\r\nConnection: close\r\n\r\ntoo large"
                    .to_vec(),
            )
        },
        false,
    )
    .await;
    let front = front_for(&up).await;
    let size = 32 << 20;
    let mut stream = TcpStream::connect(front.addr).await.unwrap();
    let head =
        format!("POST /upload HTTP/1.1\r\nHost: lms.example\r\nContent-Length: {size}\r\n\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let upload = tokio::spawn(async move {
        let block = vec![b'x'; 64 << 10];
        for _ in 0..size / block.len() {
            if writer.write_all(&block).await.is_err() {
                return;
            }
        }
    });
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let mut piece = [0u8; 4096];
            match reader.read(&mut piece).await {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&piece[..n]),
            }
            if buf.ends_with(b"too large") {
                break;
            }
        }
    });
    read.await.expect("an answer within 20 s");
    upload.abort();
    let resp = parse_response(&buf);
    assert_eq!(resp.status, 413);
    assert_eq!(resp.body, b"too large");
}

#[tokio::test]
async fn a_request_body_of_unknown_length_goes_chunked() {
    let up = Scripted::start(|_, _| Reply::Keep(b"HTTP/1.1 204 No Content\r\n\r\n".to_vec())).await;
    let front = front_for(&up).await;
    let resp = raw(
        front.addr,
        b"POST /main/upload.php HTTP/1.1\r\nHost: lms.example\r\nTransfer-Encoding: chunked\r\n\
          Connection: close\r\n\r\n4\r\nabcd\r\n3\r\nefg\r\n0\r\n\r\n",
    )
    .await;
    assert_eq!(resp.status, 204);
    let seen = up.seen();
    assert_eq!(
        field(&seen[0].head, "transfer-encoding").as_deref(),
        Some("chunked")
    );
    assert!(field(&seen[0].head, "content-length").is_none());
    let mut decoded = Vec::new();
    let mut rest = &seen[0].body[..];
    while let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(std::str::from_utf8(&rest[..eol]).unwrap(), 16).unwrap();
        if size == 0 {
            break;
        }
        decoded.extend_from_slice(&rest[eol + 2..eol + 2 + size]);
        rest = &rest[eol + 2 + size + 2..];
    }
    assert_eq!(decoded, b"abcdefg");
}
