//! The upstream connection pool against a real upstream on loopback: reuse, what must not be
//! reused, idle expiry, and a change of upstream on reload.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chamilo_scim_proxy::body::full;
use chamilo_scim_proxy::http1::{RequestFraming, RequestHeadWriter};
use chamilo_scim_proxy::proxy::pool::{Endpoint, PoolSettings, UpstreamPool};
use chamilo_scim_proxy::proxy::upstream::OutgoingRequest;
use http::{Method, Request, Response};
use http_body_util::BodyExt;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// An upstream that answers `conn=<n>` (the connection's number, from 1), or 4 MiB of data
/// for `/big`, or `Connection: close` for `/close`. It counts connections accepted and closed.
struct Upstream {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    closed: Arc<AtomicUsize>,
}

async fn upstream() -> Upstream {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let closed = Arc::new(AtomicUsize::new(0));
    let (a, c) = (accepted.clone(), closed.clone());
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let n = a.fetch_add(1, Ordering::SeqCst) + 1;
            let c = c.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<hyper::body::Incoming>| async move {
                    let resp = match req.uri().path() {
                        "/big" => Response::new(full(vec![b'x'; 4 << 20])),
                        "/close" => Response::builder()
                            .header("connection", "close")
                            .body(full(format!("conn={n}")))
                            .unwrap(),
                        _ => Response::new(full(format!("conn={n}"))),
                    };
                    Ok::<_, Infallible>(resp)
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
                c.fetch_add(1, Ordering::SeqCst);
            });
        }
    });
    Upstream {
        addr,
        accepted,
        closed,
    }
}

fn settings(idle_timeout: Duration) -> PoolSettings {
    PoolSettings {
        connect_timeout: Duration::from_secs(2),
        idle_timeout,
        max_idle_per_slot: 8,
    }
}

fn endpoint(addr: SocketAddr) -> Arc<Endpoint> {
    Arc::new(Endpoint {
        host: addr.ip().to_string(),
        port: addr.port(),
    })
}

fn get(path: &str, addr: SocketAddr) -> OutgoingRequest {
    let mut head = RequestHeadWriter::new(&Method::GET, path, 1);
    head.field(b"host", addr.to_string().as_bytes());
    OutgoingRequest::new(
        Method::GET,
        head.finish(RequestFraming::Empty),
        None,
        RequestFraming::Empty,
    )
}

/// Sends one request and reads the whole response body.
async fn fetch(pool: &Arc<UpstreamPool>, to: &Arc<Endpoint>, path: &str) -> Bytes {
    let addr: SocketAddr = format!("{}:{}", to.host, to.port).parse().unwrap();
    let resp = pool.send(to, get(path, addr)).await.unwrap();
    resp.into_body().collect().await.unwrap().to_bytes()
}

async fn eventually(what: impl Fn() -> bool) -> bool {
    for _ in 0..200 {
        if what() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

#[tokio::test(flavor = "current_thread")]
async fn sequential_requests_share_one_connection() {
    let up = upstream().await;
    let pool = UpstreamPool::new(settings(Duration::from_secs(30)));
    let to = endpoint(up.addr);
    for _ in 0..5 {
        assert_eq!(fetch(&pool, &to, "/").await, "conn=1");
    }
    assert_eq!(up.accepted.load(Ordering::SeqCst), 1);
    assert_eq!(pool.idle_count(), 1);
}

#[tokio::test(flavor = "current_thread")]
async fn a_response_abandoned_midway_takes_its_connection_with_it() {
    let up = upstream().await;
    let pool = UpstreamPool::new(settings(Duration::from_secs(30)));
    let to = endpoint(up.addr);
    let resp = pool.send(&to, get("/big", up.addr)).await.unwrap();
    let mut body = resp.into_body();
    let first = body.frame().await.unwrap().unwrap();
    assert!(first.is_data());
    drop(body);
    // The rest of the 4 MiB must not be read as the next response.
    assert_eq!(fetch(&pool, &to, "/").await, "conn=2");
    assert!(eventually(|| up.closed.load(Ordering::SeqCst) == 1).await);
}

#[tokio::test(flavor = "current_thread")]
async fn a_connection_the_upstream_closes_is_not_reused() {
    let up = upstream().await;
    let pool = UpstreamPool::new(settings(Duration::from_secs(30)));
    let to = endpoint(up.addr);
    assert_eq!(fetch(&pool, &to, "/close").await, "conn=1");
    assert!(eventually(|| up.closed.load(Ordering::SeqCst) == 1).await);
    assert_eq!(fetch(&pool, &to, "/").await, "conn=2");
    assert_eq!(fetch(&pool, &to, "/").await, "conn=2");
}

#[tokio::test(flavor = "current_thread")]
async fn idle_connections_are_closed_after_the_idle_timeout() {
    let up = upstream().await;
    let pool = UpstreamPool::new(settings(Duration::from_millis(150)));
    let to = endpoint(up.addr);
    assert_eq!(fetch(&pool, &to, "/").await, "conn=1");
    assert_eq!(pool.idle_count(), 1);
    // No request comes: the sweeper closes it, and the upstream sees the close.
    assert!(eventually(|| up.closed.load(Ordering::SeqCst) == 1).await);
    assert_eq!(pool.idle_count(), 0);
    assert_eq!(fetch(&pool, &to, "/").await, "conn=2");
}

#[tokio::test(flavor = "current_thread")]
async fn a_new_upstream_after_a_reload_gets_new_connections() {
    let (a, b) = (upstream().await, upstream().await);
    let pool = UpstreamPool::new(settings(Duration::from_secs(30)));
    assert_eq!(fetch(&pool, &endpoint(a.addr), "/").await, "conn=1");
    assert_eq!(fetch(&pool, &endpoint(b.addr), "/").await, "conn=1");
    assert_eq!(b.accepted.load(Ordering::SeqCst), 1);
    // The idle connection to the old upstream was met on the way and closed.
    assert!(eventually(|| a.closed.load(Ordering::SeqCst) == 1).await);
    assert_eq!(pool.idle_count(), 1);
}

#[tokio::test(flavor = "current_thread")]
async fn concurrent_requests_open_connections_and_keep_them_up_to_the_limit() {
    let up = upstream().await;
    let pool = UpstreamPool::new(PoolSettings {
        max_idle_per_slot: 2,
        ..settings(Duration::from_secs(30))
    });
    let to = endpoint(up.addr);
    // Four responses held open at once need four connections.
    let mut held = Vec::new();
    for _ in 0..4 {
        let resp = pool.send(&to, get("/", up.addr)).await.unwrap();
        held.push(resp.into_body());
    }
    assert_eq!(up.accepted.load(Ordering::SeqCst), 4);
    for body in held {
        body.collect().await.unwrap();
    }
    // Two are kept; the others are closed.
    assert_eq!(pool.idle_count(), 2);
    assert!(eventually(|| up.closed.load(Ordering::SeqCst) == 2).await);
}

#[tokio::test(flavor = "current_thread")]
async fn a_refused_connect_is_a_connect_error() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let pool = UpstreamPool::new(settings(Duration::from_secs(30)));
    let to = Arc::new(Endpoint {
        host: "127.0.0.1".into(),
        port,
    });
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    match pool.send(&to, get("/", addr)).await {
        Err(chamilo_scim_proxy::proxy::upstream::UpstreamError::Connect(_)) => {}
        other => panic!("expected a connect error, got {:?}", other.map(|_| ())),
    }
}
