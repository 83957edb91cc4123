//! One client connection, from accept to close: the TLS handshake and the protocol choice
//! ([`super::protocol`]), then the lane that serves it — the express lane for plain HTTP/1.1
//! ([`super::express`], which hands over to hyper when it must), hyper's server for the rest
//! ([`super::hyper_lane`]). Deadlines before the first request, and the drain, apply to all.

use std::sync::Arc;

use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;

use super::dispatch::Dispatcher;
use super::drain::DrainWatch;
use super::hyper_lane::{serve_http1, serve_http2};
use super::io::PrefaceDeadline;
use super::protocol::{sniff, Protocol};
use crate::config::Live;
use crate::proxy::ClientInfo;

/// Serves one accepted connection until it closes.
pub async fn serve(
    stream: TcpStream,
    tls: Option<TlsAcceptor>,
    client: ClientInfo,
    dispatcher: Arc<Dispatcher>,
    live: Live,
    mut drain: DrainWatch,
) {
    // Read once per connection, so that timeouts follow reloads for new connections.
    let cfg = live.current();
    let header_wait = cfg.server.header_read_timeout;
    let Some(acceptor) = tls else {
        let protocol = tokio::select! {
            biased;
            _ = drain.begun() => return,
            sniffed = tokio::time::timeout(header_wait, sniff(&stream)) => sniffed,
        };
        match protocol {
            Ok(Ok(Some(Protocol::Http1))) => {
                super::express::serve(stream, client, dispatcher, header_wait, drain).await
            }
            Ok(Ok(Some(Protocol::Http2))) => serve_http2(stream, client, dispatcher, drain).await,
            Ok(Ok(None)) => {}
            Ok(Err(e)) => tracing::debug!(peer = %client.peer, error = %e, "connection failed"),
            Err(_) => tracing::debug!(peer = %client.peer, "no request within header_read_timeout"),
        }
        return;
    };
    let handshake = tokio::select! {
        biased;
        _ = drain.begun() => return,
        tls = tokio::time::timeout(cfg.server.tls_handshake_timeout, acceptor.accept(stream)) => tls,
    };
    match handshake {
        Ok(Ok(tls)) => match Protocol::from_alpn(tls.get_ref().1.alpn_protocol()) {
            Protocol::Http1 => {
                serve_http1(tls, client, dispatcher, header_wait, drain, false).await
            }
            // hyper's HTTP/2 server has no header-read timeout, and a TLS stream cannot be
            // peeked at: the preface gets a deadline of its own.
            Protocol::Http2 => {
                let tls = PrefaceDeadline::new(tls, header_wait);
                serve_http2(tls, client, dispatcher, drain).await
            }
        },
        Ok(Err(e)) => tracing::debug!(peer = %client.peer, error = %e, "TLS handshake failed"),
        Err(_) => tracing::debug!(peer = %client.peer, "TLS handshake timed out"),
    }
}
