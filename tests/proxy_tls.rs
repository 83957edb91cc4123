//! An HTTP/2-over-TLS client in front, the HTTP/1.1 upstream behind.

mod proxy_harness;

use std::sync::Arc;

use chamilo_scim_proxy::body::empty;
use http::Request;
use hyper_util::rt::{TokioExecutor, TokioIo};
use proxy_harness::*;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use tokio::net::TcpStream;

#[tokio::test]
async fn h2_over_tls_reaches_an_http1_upstream_with_host_and_joined_cookies() {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert = certified.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        certified.signing_key.serialize_der(),
    ));
    let mut server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .unwrap();
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];

    let up = start_upstream().await;
    let front = start_front(config_for(up.addr), Some(Arc::new(server))).await;

    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).unwrap();
    let mut client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    client.alpn_protocols = vec![b"h2".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
    let tcp = TcpStream::connect(front.addr).await.unwrap();
    let tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(b"h2".as_slice()));
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);

    let authority = format!("localhost:{}", front.addr.port());
    let req = Request::get(format!("https://{authority}/main/index.php?cidReq=X"))
        .header("cookie", "PHPSESSID=s1")
        .header("cookie", "lang=fr")
        .header("cookie", "ch_sid=z")
        .body(empty())
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.version(), http::Version::HTTP_2);
    let echo = Echo::parse(&body_bytes(resp).await);
    assert_eq!(echo.0["version"], "HTTP/1.1");
    assert_eq!(echo.target(), "/main/index.php?cidReq=X");
    assert_eq!(echo.header("host").unwrap(), authority);
    assert_eq!(
        echo.header_all("cookie"),
        ["PHPSESSID=s1; lang=fr; ch_sid=z"]
    );
    assert_eq!(echo.header("x-forwarded-proto").unwrap(), "https");
    assert_eq!(echo.header("x-forwarded-host").unwrap(), authority);
    assert_eq!(echo.header("x-forwarded-for").unwrap(), "127.0.0.1");

    // A redirect with cookies comes back over HTTP/2 unchanged.
    let req = Request::get(format!("https://{authority}/redirect"))
        .body(empty())
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 302);
    let cookies: Vec<_> = resp.headers().get_all("set-cookie").iter().collect();
    assert_eq!(cookies.len(), 2);
}
