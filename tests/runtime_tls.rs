//! TLS on the public listener: ALPN (HTTP/2 and HTTP/1.1), certificate reload through a
//! Secret-style `..data` swap, a mismatched key refused, and the expiry metric.

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http_body_util::Empty;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::{CertificateDer, ServerName};

const TOKEN_ENV: (&str, &str) = ("SCIM_TOKEN", "test-token-1");

struct TestCert {
    cert_pem: String,
    key_pem: String,
    der: CertificateDer<'static>,
    not_after: i64,
}

fn make_cert(year: i32) -> TestCert {
    let mut params =
        rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .unwrap();
    params.not_after = rcgen::date_time_ymd(year, 6, 1);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    let not_after = chrono::NaiveDate::from_ymd_opt(year, 6, 1)
        .unwrap()
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc()
        .timestamp();
    TestCert {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        der: cert.der().clone(),
        not_after,
    }
}

/// Connects with TLS offering `alpn`; returns the stream and the presented leaf certificate.
async fn connect(
    proxy: &ProxyProcess,
    trusted: &[&TestCert],
    alpn: &[&[u8]],
) -> (
    tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    CertificateDer<'static>,
) {
    let mut roots = rustls::RootCertStore::empty();
    for c in trusted {
        roots.add(c.der.clone()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(proxy.public).await.unwrap();
    let tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let leaf = tls.get_ref().1.peer_certificates().unwrap()[0]
        .clone()
        .into_owned();
    (tls, leaf)
}

fn start(volume: &KubeVolume) -> (tempfile::TempDir, ProxyProcess) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    let server = format!(
        "tls = {{ cert_file = {:?}, key_file = {:?} }}",
        volume.path("tls.crt").display().to_string(),
        volume.path("tls.key").display().to_string()
    );
    std::fs::write(
        &path,
        config_text(
            &server,
            "[reload]\npoll_interval = \"1h\"\ndebounce = \"50ms\"\n",
        ),
    )
    .unwrap();
    let proxy = ProxyProcess::start(&path, &[TOKEN_ENV]);
    (dir, proxy)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_by_alpn_and_http1_fallback() {
    let cert = make_cert(2035);
    let volume = KubeVolume::new(&[("tls.crt", &cert.cert_pem), ("tls.key", &cert.key_pem)]);
    let (_dir, proxy) = start(&volume);

    let (tls, leaf) = connect(&proxy, &[&cert], &[b"h2", b"http/1.1"]).await;
    assert_eq!(leaf, cert.der);
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut sender, conn) = hyper::client::conn::http2::handshake::<_, _, Empty<Bytes>>(
        TokioExecutor::new(),
        TokioIo::new(tls),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let req = http::Request::get("https://localhost/scim/v2/Users")
        .body(Empty::new())
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.version(), http::Version::HTTP_2);
    assert!(is_scim_answer(resp.status().as_u16()));

    let (tls, _) = connect(&proxy, &[&cert], &[b"http/1.1"]).await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = http::Request::get("/scim/v2/Users")
        .header("host", "localhost")
        .body(Empty::new())
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.version(), http::Version::HTTP_11);
    assert!(is_scim_answer(resp.status().as_u16()));

    assert_eq!(
        admin_metric(&proxy, "tls_certificate_expiry_timestamp_seconds").await,
        Some(cert.not_after as f64)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_reloads_and_a_mismatched_key_is_refused() {
    let first = make_cert(2035);
    let second = make_cert(2036);
    let mut volume = KubeVolume::new(&[("tls.crt", &first.cert_pem), ("tls.key", &first.key_pem)]);
    let (_dir, proxy) = start(&volume);
    let trusted = [&first, &second];
    assert_eq!(connect(&proxy, &trusted, &[b"h2"]).await.1, first.der);

    // A connection opened before the swap keeps working afterwards.
    let (old_conn, _) = connect(&proxy, &trusted, &[b"http/1.1"]).await;

    volume.swap(&[("tls.crt", &second.cert_pem), ("tls.key", &second.key_pem)]);
    let swapped = eventually(Duration::from_secs(5), || async {
        admin_metric(&proxy, "tls_certificate_expiry_timestamp_seconds").await
            == Some(second.not_after as f64)
    })
    .await;
    assert!(
        swapped,
        "certificate not reloaded:\n{}",
        proxy.logs().join("\n")
    );
    assert_eq!(connect(&proxy, &trusted, &[b"h2"]).await.1, second.der);

    let (mut sender, conn) =
        hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(old_conn))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = http::Request::get("/scim/v2/Users")
        .header("host", "localhost")
        .body(Empty::new())
        .unwrap();
    assert!(is_scim_answer(
        sender.send_request(req).await.unwrap().status().as_u16()
    ));

    // The first certificate with the second key: refused, the second pair stays.
    volume.swap(&[("tls.crt", &first.cert_pem), ("tls.key", &second.key_pem)]);
    let refused = eventually(Duration::from_secs(5), || async {
        admin_metric(&proxy, "config_reloads_total{result=\"error\"}").await == Some(1.0)
    })
    .await;
    assert!(
        refused,
        "mismatch not refused:\n{}",
        proxy.logs().join("\n")
    );
    assert!(proxy.wait_for_log(Duration::from_secs(1), |l| l
        .contains("does not belong to the certificate")));
    assert_eq!(connect(&proxy, &trusted, &[b"h2"]).await.1, second.der);
}

/// Reads until the server closes (or fails the stream); `None` if it still has not after 5 s.
/// An HTTP/2 server sends its SETTINGS first, and HTTP/1.1 may answer 408, so bytes before
/// the close are expected.
async fn time_until_closed(
    tls: &mut tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
) -> Option<Duration> {
    use tokio::io::AsyncReadExt;
    let started = std::time::Instant::now();
    let mut buf = [0u8; 1024];
    while started.elapsed() < Duration::from_secs(5) {
        match tokio::time::timeout(Duration::from_secs(5), tls.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) => {}
            Err(_) => return None,
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_client_after_the_handshake_is_cut_off() {
    use tokio::io::AsyncWriteExt;
    let cert = make_cert(2035);
    let volume = KubeVolume::new(&[("tls.crt", &cert.cert_pem), ("tls.key", &cert.key_pem)]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    let server = format!(
        "header_read_timeout = \"500ms\"\ntls = {{ cert_file = {:?}, key_file = {:?} }}",
        volume.path("tls.crt").display().to_string(),
        volume.path("tls.key").display().to_string()
    );
    std::fs::write(&path, config_text(&server, "")).unwrap();
    let proxy = ProxyProcess::start(&path, &[TOKEN_ENV]);

    // HTTP/2 by ALPN (hyper's HTTP/2 server has no header-read timeout of its own), HTTP/1.1
    // by ALPN, and no ALPN at all; then an HTTP/2 client that sends part of the preface.
    type Case<'a> = (&'a str, &'a [&'a [u8]], &'a [u8]);
    let cases: [Case; 4] = [
        ("h2", &[b"h2", b"http/1.1"], b""),
        ("http/1.1", &[b"http/1.1"], b""),
        ("no ALPN", &[], b""),
        ("h2, part of the preface", &[b"h2"], b"PRI * HTTP/2.0\r\n"),
    ];
    for (name, alpn, sent) in cases {
        let (mut tls, _) = connect(&proxy, &[&cert], alpn).await;
        if !sent.is_empty() {
            tls.write_all(sent).await.unwrap();
            tls.flush().await.unwrap();
        }
        let closed = time_until_closed(&mut tls).await;
        assert!(
            closed.is_some_and(|t| t < Duration::from_secs(3)),
            "{name}: a silent TLS client was not cut off in time: {closed:?}"
        );
    }
}
