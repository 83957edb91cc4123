//! The pass-through through the real binary: same upstream as the harness tests, the process
//! started from a TOML file on loopback ports.

mod common;
mod proxy_harness;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{config_text, is_scim_answer, ProxyProcess};
use futures_util::{SinkExt, StreamExt};
use http::Request;
use http_body_util::BodyExt;
use proxy_harness::*;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

fn start(upstream: &str, extra: &str) -> (ProxyProcess, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    let text = config_text(
        "",
        &format!("[upstream]\nurl = \"{upstream}\"\nresponse_header_timeout = \"500ms\"\n{extra}"),
    );
    std::fs::write(&path, text).unwrap();
    (ProxyProcess::start(&path, &[]), dir)
}

fn get(path: &str, extra: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: chamilo.example\r\n{extra}Connection: close\r\n\r\n")
        .into_bytes()
}

#[tokio::test]
async fn binary_forwarding_headers_untrusted_and_trusted() {
    let up = start_upstream().await;
    let spoof = "X-Forwarded-For: 6.6.6.6\r\nX-Forwarded-Proto: https\r\n\
                 Connection: X-Forwarded-Host\r\nX-Forwarded-Host: evil.example\r\n";

    let (untrusted, _d1) = start(
        &format!("http://{}", up.addr),
        "[forwarding]\ntrusted_networks = [\"10.0.0.0/8\"]\n",
    );
    let echo = raw(untrusted.public, &get("/index.php", spoof))
        .await
        .echo();
    assert_eq!(echo.header("x-forwarded-for").unwrap(), "127.0.0.1");
    assert_eq!(echo.header("x-forwarded-proto").unwrap(), "http");
    assert_eq!(echo.header("x-forwarded-host").unwrap(), "chamilo.example");
    assert_eq!(echo.header("host").unwrap(), "chamilo.example");

    let (trusted, _d2) = start(
        &format!("http://{}", up.addr),
        "[forwarding]\ntrusted_networks = [\"127.0.0.0/8\"]\n",
    );
    let echo = raw(trusted.public, &get("/index.php", spoof)).await.echo();
    assert_eq!(
        echo.header("x-forwarded-for").unwrap(),
        "6.6.6.6, 127.0.0.1"
    );
    assert_eq!(echo.header("x-forwarded-proto").unwrap(), "https");
    // Named in `Connection`, so dropped before the proxy set its own.
    assert_eq!(echo.header("x-forwarded-host").unwrap(), "chamilo.example");
}

#[tokio::test]
async fn binary_hop_by_hop_path_confusion_and_access_rules() {
    let up = start_upstream().await;
    let (proxy, _dir) = start(
        &format!("http://{}", up.addr),
        "[[access.rules]]\npath_prefix = \"/main/webservices/\"\nallow = [\"10.0.0.0/8\"]\n",
    );

    let echo = raw(
        proxy.public,
        &get(
            "/index.php",
            "Connection: X-Secret\r\nX-Secret: 1\r\nTE: trailers\r\nKeep-Alive: 5\r\n",
        ),
    )
    .await
    .echo();
    for name in ["x-secret", "te", "keep-alive", "connection"] {
        assert_eq!(echo.header(name), None, "{name}");
    }
    let resp = raw(proxy.public, &get("/hop", "")).await;
    assert!(resp.header_all("x-upstream-secret").is_empty());
    assert_eq!(resp.header_all("x-bytes"), [b"caf\xe9 \xff".as_slice()]);
    let hits_before = up.hits.load(Ordering::SeqCst);

    for target in [
        "/SCIM/v2/Users",
        "//scim/v2/Users",
        "/scim%2Fv2/Users",
        "http://evil.example/scim/v2/Users",
    ] {
        let resp = raw(proxy.public, &get(target, "")).await;
        assert!(is_scim_answer(resp.status), "{target}: {}", resp.status);
    }
    for target in [
        "/x/%2e%2e/scim/v2/Users",
        "/scim;a/v2/Users",
        "/scim%5cv2/Users",
    ] {
        let resp = raw(proxy.public, &get(target, "")).await;
        assert_eq!(resp.status, 400, "{target}");
    }
    let resp = raw(
        proxy.public,
        &get("/main//webservices/registration.soap.php", ""),
    )
    .await;
    assert_eq!(resp.status, 403);
    assert_eq!(up.hits.load(Ordering::SeqCst), hits_before);
}

#[tokio::test]
async fn binary_502_and_504() {
    // A privileged port nothing listens on: a port freed by a closed listener can be taken
    // by another test's server in the meantime (it answered 404 once).
    let (proxy, _d1) = start("http://127.0.0.1:1", "");
    let resp = raw(proxy.public, &get("/index.php", "")).await;
    assert_eq!(resp.status, 502);
    assert!(String::from_utf8_lossy(&resp.body).contains("502 Bad Gateway"));

    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_addr = silent.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            held.push(s);
        }
    });
    let (proxy, _d2) = start(&format!("http://{silent_addr}"), "");
    let resp = raw(proxy.public, &get("/index.php", "")).await;
    assert_eq!(resp.status, 504);
    let metrics = common::get(&proxy.admin_url("/metrics")).await.unwrap().1;
    assert!(
        metrics.contains("proxy_upstream_errors_total{kind=\"response_timeout\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn binary_websocket_echo_and_tunnel_gauge() {
    let up = start_upstream().await;
    let (proxy, _dir) = start(&format!("http://{}", up.addr), "");
    let tcp = TcpStream::connect(proxy.public).await.unwrap();
    let url = format!("ws://{}/ws", proxy.public);
    let (mut ws, resp) = tokio_tungstenite::client_async(url, tcp).await.unwrap();
    assert_eq!(resp.status(), 101);
    ws.send(Message::text("bonjour")).await.unwrap();
    let echoed = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(echoed.into_text().unwrap().as_str(), "bonjour");
    let metrics = common::get(&proxy.admin_url("/metrics")).await.unwrap().1;
    assert!(metrics.contains("proxy_open_tunnels 1"), "{metrics}");
    ws.close(None).await.unwrap();
}

/// The binary's own peak memory (`VmHWM` of its process) while 1 GiB goes up and 1 GiB down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_streams_one_gib_each_way_with_flat_memory() {
    const CHUNKS: usize = 16 * 1024;
    let up = start_upstream().await;
    let (proxy, _dir) = start(&format!("http://{}", up.addr), "");
    let hwm = || {
        let status = std::fs::read_to_string(format!("/proc/{}/status", proxy.pid())).unwrap();
        status
            .lines()
            .find(|l| l.starts_with("VmHWM:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap()
    };
    // Warm up (pools, buffers) so the baseline is the steady state.
    let _ = raw(proxy.public, &get("/index.php", "")).await.echo();
    let before = hwm();

    let req = Request::post("/upload.php")
        .header("host", "chamilo.example")
        .header("content-length", (CHUNKS as u64 * 65536).to_string())
        .body(repeated(chunk(), CHUNKS))
        .unwrap();
    let resp = send(proxy.public, req).await;
    let echo = Echo::parse(&body_bytes(resp).await);
    assert_eq!(echo.0["body_len"], CHUNKS as u64 * 65536);

    let req = Request::get(format!("/download?{CHUNKS}"))
        .header("host", "chamilo.example")
        .body(chamilo_scim_proxy::body::empty())
        .unwrap();
    let resp = send(proxy.public, req).await;
    let mut body = resp.into_body();
    let mut total = 0u64;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.unwrap().into_data() {
            total += data.len() as u64;
        }
    }
    assert_eq!(total, CHUNKS as u64 * 65536);
    let after = hwm();
    println!("binary VmHWM: {before} KiB before, {after} KiB after 2 GiB");
    assert!(after - before < 64 * 1024, "grew by {} KiB", after - before);
}

/// An HTTP/2 client over TLS in front of the binary, the HTTP/1.1 echo upstream behind it.
#[tokio::test]
async fn binary_h2_over_tls_host_from_authority_and_cookies_joined() {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use rustls::pki_types::ServerName;
    use std::sync::Arc;

    let up = start_upstream().await;
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cert_path = dir.path().join("tls.crt");
    let key_path = dir.path().join("tls.key");
    std::fs::write(&cert_path, certified.cert.pem()).unwrap();
    std::fs::write(&key_path, certified.signing_key.serialize_pem()).unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        config_text(
            &format!(
                "tls = {{ cert_file = {:?}, key_file = {:?} }}",
                cert_path.display().to_string(),
                key_path.display().to_string()
            ),
            &format!("[upstream]\nurl = \"http://{}\"\n", up.addr),
        ),
    )
    .unwrap();
    let proxy = ProxyProcess::start(&config, &[]);

    let mut roots = rustls::RootCertStore::empty();
    roots.add(certified.cert.der().clone()).unwrap();
    let mut client = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    client.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = TcpStream::connect(proxy.public).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(client))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);

    let authority = format!("localhost:{}", proxy.public.port());
    let req = Request::get(format!("https://{authority}/main/index.php"))
        .header("cookie", "PHPSESSID=s1")
        .header("cookie", "ch_lang=fr")
        .body(chamilo_scim_proxy::body::empty())
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.version(), http::Version::HTTP_2);
    let echo = Echo::parse(&body_bytes(resp).await);
    assert_eq!(echo.0["version"], "HTTP/1.1");
    assert_eq!(echo.header("host").unwrap(), authority);
    assert_eq!(echo.header_all("cookie"), ["PHPSESSID=s1; ch_lang=fr"]);
    assert_eq!(echo.header("x-forwarded-proto").unwrap(), "https");
}
