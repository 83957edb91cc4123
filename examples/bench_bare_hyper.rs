//! The floor for `bench_passthrough`: the smallest pass-through hyper 1 allows — an HTTP/1.1
//! server connection per client, a thread-local pool of HTTP/1.1 client connections, one
//! single-threaded runtime per core — and nothing else (no headers, timeouts, routing or
//! metrics). It tells how much of the proxy's cost per request is hyper's and how much its own
//! (`bench/passthrough.md`). Not a proxy to deploy.
//!
//! `cargo run --release --example bench_bare_hyper -- LISTEN UPSTREAM`
use std::cell::RefCell;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

thread_local! {
    static POOL: RefCell<Vec<SendRequest<Incoming>>> = const { RefCell::new(Vec::new()) };
}

/// The upstream's response body; gives its connection back to the pool once read to the end.
struct Returning {
    inner: Incoming,
    sender: Option<SendRequest<Incoming>>,
}

impl Body for Returning {
    type Data = Bytes;
    type Error = hyper::Error;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let r = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(None) = r {
            if let Some(s) = self.sender.take() {
                POOL.with(|p| p.borrow_mut().push(s));
            }
        }
        r
    }
    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

async fn forward(
    upstream: SocketAddr,
    mut req: Request<Incoming>,
) -> Result<Response<Returning>, Box<dyn std::error::Error + Send + Sync>> {
    let mut sender = loop {
        let s = POOL.with(|p| p.borrow_mut().pop());
        match s {
            Some(mut s) => {
                if s.ready().await.is_ok() {
                    break s;
                }
            }
            None => {
                let stream = tokio::net::TcpStream::connect(upstream).await?;
                stream.set_nodelay(true)?;
                let (s, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
                tokio::spawn(conn);
                break s;
            }
        }
    };
    *req.uri_mut() = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/")
        .parse()?;
    let resp = sender.send_request(req).await?;
    let (parts, body) = resp.into_parts();
    Ok(Response::from_parts(
        parts,
        Returning {
            inner: body,
            sender: Some(sender),
        },
    ))
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let listen: SocketAddr = args[1].parse().unwrap();
    let upstream: SocketAddr = args[2].parse().unwrap();
    let boot = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let guard = boot.enter();
    let listeners = chamilo_scim_proxy::server::bind_reuseport(listen, 2).unwrap();
    let threads: Vec<_> = listeners
        .into_iter()
        .map(|l| {
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async move {
                    let l = tokio::net::TcpListener::from_std(l).unwrap();
                    loop {
                        let (s, _) = l.accept().await.unwrap();
                        s.set_nodelay(true).unwrap();
                        tokio::spawn(async move {
                            let svc = service_fn(move |req| async move {
                                match forward(upstream, req).await {
                                    Ok(r) => {
                                        Ok::<_, Infallible>(r.map(http_body_util::Either::Left))
                                    }
                                    Err(_) => Ok(Response::builder()
                                        .status(502)
                                        .body(http_body_util::Either::Right(
                                            http_body_util::Empty::<Bytes>::new().map_err(
                                                |never: Infallible| -> hyper::Error {
                                                    match never {}
                                                },
                                            ),
                                        ))
                                        .unwrap()),
                                }
                            });
                            let _ = hyper::server::conn::http1::Builder::new()
                                .serve_connection(TokioIo::new(s), svc)
                                .await;
                        });
                    }
                })
            })
        })
        .collect();
    drop(guard);
    for t in threads {
        t.join().unwrap();
    }
}

/// A response abandoned before its end takes its connection with it.
impl Drop for Returning {
    fn drop(&mut self) {
        if self.inner.is_end_stream() {
            if let Some(s) = self.sender.take() {
                POOL.with(|p| p.borrow_mut().push(s));
            }
        }
    }
}
