//! Serves the SCIM engine with the in-memory directory on a loopback port, for conformance
//! tools (`scim2 … test`) and manual poking.
//!
//! Usage: `SCIM_TOKEN=secret cargo run --example scim_memory [PORT]` (PORT 0 or absent picks a
//! free port). Prints `listening on 127.0.0.1:PORT` once ready.

use std::io::Write;
use std::sync::Arc;

use chamilo_scim_proxy::config::{ScimConfig, Secret};
use chamilo_scim_proxy::directory::memory::MemoryDirectory;
use chamilo_scim_proxy::scim::{ScimService, MOUNT_PATH};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let token = std::env::var("SCIM_TOKEN").map_err(|_| anyhow::anyhow!("set SCIM_TOKEN"))?;
    let port: u16 = std::env::args()
        .nth(1)
        .map(|p| p.parse())
        .transpose()?
        .unwrap_or(0);
    let cfg = Arc::new(ScimConfig {
        tokens: vec![Secret::new(token)],
        ..ScimConfig::default()
    });
    let service = Arc::new(ScimService::new(Arc::new(MemoryDirectory::new())));
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!("listening on {}", listener.local_addr()?);
    std::io::stdout().flush()?;
    loop {
        let (stream, _) = listener.accept().await?;
        let (service, cfg) = (service.clone(), cfg.clone());
        tokio::spawn(async move {
            let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let (service, cfg) = (service.clone(), cfg.clone());
                async move {
                    let path = req.uri().path().to_owned();
                    let resp = match path.strip_prefix(MOUNT_PATH) {
                        Some(sub) if sub.is_empty() || sub.starts_with('/') => {
                            service.handle(req, sub, &cfg).await
                        }
                        _ => {
                            let mut r = hyper::Response::new(chamilo_scim_proxy::body::empty());
                            *r.status_mut() = hyper::StatusCode::NOT_FOUND;
                            r
                        }
                    };
                    Ok::<_, std::convert::Infallible>(resp)
                }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}
