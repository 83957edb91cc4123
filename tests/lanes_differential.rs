//! One server, two lanes (issue 11): the same corpus of requests — valid, malformed, oversized,
//! pipelined — sent over plain TCP (the express lane, which hands some over to hyper) and over
//! TLS (hyper for every request) must get the same statuses, and reach the upstream as the same
//! requests. Only the scheme the proxy reports (`X-Forwarded-Proto`, `Forwarded`'s `proto`)
//! may differ.

mod proxy_harness;

use std::sync::Arc;
use std::time::Duration;

use proxy_harness::*;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

fn fields(n: usize) -> String {
    (0..n).map(|i| format!("X-Field-{i}: v{i}\r\n")).collect()
}

/// The corpus: (name, bytes). Each case ends its connection (`Connection: close` on the last
/// request, or a request the server must refuse).
fn corpus() -> Vec<(&'static str, Vec<u8>)> {
    let close = "Connection: close\r\n";
    let mut cases: Vec<(&'static str, Vec<u8>)> = vec![
        ("get", format!("GET /a?x=1 HTTP/1.1\r\nHost: h\r\n{close}\r\n").into_bytes()),
        (
            "pipelined",
            format!("GET /a HTTP/1.1\r\nHost: h\r\n\r\nPOST /b HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabcGET /c HTTP/1.1\r\nHost: h\r\n{close}\r\n").into_bytes(),
        ),
        (
            "post with length",
            format!("POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n{close}\r\nhello").into_bytes(),
        ),
        (
            "post chunked",
            format!("POST /p HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n{close}\r\n5\r\nhello\r\n0\r\n\r\n").into_bytes(),
        ),
        ("http/1.0", b"GET /old HTTP/1.0\r\nHost: h\r\n\r\n".to_vec()),
        ("120 fields", format!("GET /f HTTP/1.1\r\nHost: h\r\n{}{close}\r\n", fields(120)).into_bytes()),
        ("140 fields", format!("GET /f HTTP/1.1\r\nHost: h\r\n{}{close}\r\n", fields(140)).into_bytes()),
        (
            "a 70 KiB field",
            format!("GET /f HTTP/1.1\r\nHost: h\r\nX-Big: {}\r\n{close}\r\n", "a".repeat(70 * 1024)).into_bytes(),
        ),
        ("no colon", format!("GET / HTTP/1.1\r\nHost h\r\n{close}\r\n").into_bytes()),
        ("space before colon", format!("GET / HTTP/1.1\r\nHost : h\r\n{close}\r\n").into_bytes()),
        (
            "two lengths",
            format!("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nContent-Length: 4\r\n{close}\r\nabcd").into_bytes(),
        ),
        (
            "length and chunked",
            format!("POST /s HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n{close}\r\n3\r\nabc\r\n0\r\n\r\n").into_bytes(),
        ),
        ("bad method", format!("G(T / HTTP/1.1\r\nHost: h\r\n{close}\r\n").into_bytes()),
        ("no host", format!("GET / HTTP/1.1\r\n{close}\r\n").into_bytes()),
        ("two hosts", format!("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n{close}\r\n").into_bytes()),
        ("absolute form", format!("GET http://h/abs HTTP/1.1\r\nHost: h\r\n{close}\r\n").into_bytes()),
        ("scim without token", format!("GET /scim/v2/Users HTTP/1.1\r\nHost: h\r\n{close}\r\n").into_bytes()),
        ("dot segments", format!("GET /a/../b/./c HTTP/1.1\r\nHost: h\r\n{close}\r\n").into_bytes()),
        ("underscore name", format!("GET /u HTTP/1.1\r\nHost: h\r\nX_Custom: 1\r\n{close}\r\n").into_bytes()),
        ("gzip then chunked", format!("POST /z HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n{close}\r\n3\r\nabc\r\n0\r\n\r\n").into_bytes()),
    ];
    cases.push((
        "a 70 KiB target",
        format!(
            "GET /{} HTTP/1.1\r\nHost: h\r\n{close}\r\n",
            "t".repeat(70 * 1024)
        )
        .into_bytes(),
    ));
    cases
}

/// What one case produced: the statuses in order, and each request the upstream saw (its
/// echo, without the fields that name the scheme).
#[derive(Debug, PartialEq)]
struct Seen {
    statuses: Vec<u16>,
    upstream: Vec<Value>,
}

async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, bytes: &[u8]) -> Vec<u8> {
    // The server may refuse before reading everything: a failed write is part of the answer.
    let _ = stream.write_all(bytes).await;
    let _ = stream.flush().await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut out)).await;
    out
}

fn seen(bytes: &[u8]) -> Seen {
    let text = String::from_utf8_lossy(bytes);
    let mut statuses = Vec::new();
    let mut upstream = Vec::new();
    let mut rest = &text[..];
    while let Some(at) = rest.find("HTTP/1.") {
        let line = &rest[at..];
        if let Some(code) = line.get(9..12).and_then(|c| c.parse::<u16>().ok()) {
            statuses.push(code);
        }
        rest = &line[12.min(line.len())..];
        // The echo's JSON body, when this response has one.
        let next = rest.find("HTTP/1.").unwrap_or(rest.len());
        if let Some(start) = rest[..next].find("\r\n\r\n{") {
            let body = &rest[start + 4..next];
            if let Ok(mut echo) = serde_json::from_str::<Value>(body.trim_end()) {
                if let Some(headers) = echo["headers"].as_array_mut() {
                    headers.retain(|h| {
                        let name = h[0].as_str().unwrap_or_default();
                        name != "x-forwarded-proto" && name != "forwarded"
                    });
                }
                upstream.push(echo);
            }
        }
    }
    Seen { statuses, upstream }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_and_tls_lanes_answer_the_same_corpus_alike() {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert = certified.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        certified.signing_key.serialize_der(),
    ));
    let mut server_tls = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .unwrap();
    server_tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).unwrap();
    let mut client_tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    client_tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client_tls));

    let up = start_upstream().await;
    let plain = start_server(config_for(up.addr)).await;
    let tls = start_server_with(
        config_for(up.addr),
        Some(tokio_rustls::TlsAcceptor::from(Arc::new(server_tls))),
    )
    .await;

    let mut differences = Vec::new();
    for (name, bytes) in corpus() {
        let over_tcp = seen(&exchange(TcpStream::connect(plain.addr).await.unwrap(), &bytes).await);
        let tcp = TcpStream::connect(tls.addr).await.unwrap();
        let stream = connector
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .unwrap();
        let over_tls = seen(&exchange(stream, &bytes).await);
        assert!(!over_tcp.statuses.is_empty(), "{name}: no answer over TCP");
        if over_tcp != over_tls {
            differences.push(format!(
                "{name}: plain {:?} / TLS {:?}\n  plain upstream {:?}\n  TLS upstream {:?}",
                over_tcp.statuses, over_tls.statuses, over_tcp.upstream, over_tls.upstream
            ));
        }
    }
    assert!(differences.is_empty(), "{}", differences.join("\n"));
}
