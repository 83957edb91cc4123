//! Serves `ScimService` with the in-memory directory on a loopback port for HTTP-level tests.

#![allow(dead_code)]

use std::sync::Arc;

use bytes::Bytes;
use chamilo_scim_proxy::config::{ScimConfig, Secret};
use chamilo_scim_proxy::directory::memory::MemoryDirectory;
use chamilo_scim_proxy::directory::Directory;
use chamilo_scim_proxy::scim::{ScimService, MOUNT_PATH};
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;

pub const TOKEN: &str = "test-token-1";

pub struct TestServer {
    pub base: String,
    pub port: u16,
    client: Client<HttpConnector, Full<Bytes>>,
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
    /// The request this answers, for failure messages: method, path (after the base URL) and
    /// body.
    pub method: Method,
    pub path: String,
    pub request: Option<String>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// The exchange, as a failing assertion should show it: request line and body, then status and
/// body of the answer (JSON pretty-printed).
impl std::fmt::Display for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let path = percent_encoding::percent_decode_str(&self.path).decode_utf8_lossy();
        writeln!(f, "\n>>> {} {path}", self.method)?;
        if let Some(body) = self.request.as_deref().filter(|b| !b.is_empty()) {
            writeln!(f, "{body}")?;
        }
        writeln!(f, "<<< {}", self.status)?;
        match &self.body {
            Value::Null => Ok(()),
            Value::String(text) => writeln!(f, "{text}"),
            json => writeln!(
                f,
                "{}",
                serde_json::to_string_pretty(json).unwrap_or_else(|_| json.to_string())
            ),
        }
    }
}

pub fn config() -> ScimConfig {
    ScimConfig {
        tokens: vec![Secret::new(TOKEN), Secret::new("test-token-2")],
        ..ScimConfig::default()
    }
}

pub async fn start(cfg: ScimConfig) -> TestServer {
    start_with(cfg, Arc::new(MemoryDirectory::new())).await
}

pub async fn start_with(cfg: ScimConfig, directory: Arc<dyn Directory>) -> TestServer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let service = Arc::new(ScimService::new(directory));
    let cfg = Arc::new(cfg);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let (service, cfg) = (service.clone(), cfg.clone());
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                    let (service, cfg) = (service.clone(), cfg.clone());
                    async move {
                        // Like the real router: the sub-path is percent-decoded once.
                        let path = percent_encoding::percent_decode_str(req.uri().path())
                            .decode_utf8_lossy()
                            .into_owned();
                        let sub = path.strip_prefix(MOUNT_PATH).unwrap_or(&path).to_owned();
                        Ok::<_, std::convert::Infallible>(service.handle(req, &sub, &cfg).await)
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    TestServer {
        base: format!("http://127.0.0.1:{port}{MOUNT_PATH}"),
        port,
        client: Client::builder(TokioExecutor::new()).build_http(),
    }
}

impl TestServer {
    /// Waits until the SCIM endpoint stops answering 503 (the Chamilo backend's index is
    /// built), then requires a 200; fails after `within` with `context()` in the message.
    pub async fn wait_until_ready(
        &self,
        within: std::time::Duration,
        context: impl Fn() -> String,
    ) {
        let deadline = std::time::Instant::now() + within;
        loop {
            let r = self.call(Method::GET, "/Users?count=1", None).await;
            if r.status != StatusCode::SERVICE_UNAVAILABLE {
                assert_eq!(r.status, StatusCode::OK, "{}", r.body);
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "SCIM still 503 after {within:?}:\n{}",
                context()
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// A client for a SCIM endpoint served elsewhere (e.g. by the real binary), `base` ending
    /// in `/scim/v2`.
    pub fn at(base: String) -> Self {
        let port = base
            .rsplit_once(':')
            .and_then(|(_, rest)| rest.split('/').next()?.parse().ok())
            .unwrap_or(0);
        Self {
            base,
            port,
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    /// Sends a request with the default token and a JSON body (if any).
    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Reply {
        self.send(
            method,
            path,
            Some(TOKEN),
            body.map(|b| b.to_string()),
            &[("content-type", "application/scim+json")],
        )
        .await
    }

    pub async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<String>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut req = Request::builder()
            .method(method.clone())
            .uri(format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let request = body.clone();
        let req = req
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .unwrap();
        let resp =
            tokio::time::timeout(std::time::Duration::from_secs(10), self.client.request(req))
                .await
                .expect("response within 10 s")
                .unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        Reply {
            status,
            headers,
            body,
            method,
            path: path.to_owned(),
            request,
        }
    }
}

/// The core Group schema's URN.
pub const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";

/// Creates a user named `name` and returns its id.
pub async fn create_user(s: &TestServer, name: &str) -> String {
    let r = s
        .call(
            Method::POST,
            "/Users",
            Some(serde_json::json!({"userName": name})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{r}");
    r.body["id"].as_str().unwrap().to_owned()
}

/// Asserts a SCIM Error body with `status` (and `scimType` when given).
pub fn assert_scim_error(r: &Reply, status: StatusCode, scim_type: Option<&str>) {
    assert_eq!(r.status, status, "{r}");
    assert_eq!(
        r.body["schemas"],
        serde_json::json!(["urn:ietf:params:scim:api:messages:2.0:Error"]),
        "{r}"
    );
    assert_eq!(r.body["status"], status.as_u16().to_string(), "{r}");
    if let Some(t) = scim_type {
        assert_eq!(r.body["scimType"], t, "{r}");
    }
}

/// Percent-encodes a query value.
pub fn q(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// The conformance tool `scim2` (PyPI `scim2-cli`): `SCIM2_BIN`, else `scim2` on `PATH`.
/// `None` means skip; under `CI=true` a missing tool fails the test instead.
pub fn scim2_or_skip() -> Option<String> {
    use std::process::Command;
    if let Ok(bin) = std::env::var("SCIM2_BIN") {
        return Some(bin);
    }
    let found = Command::new("scim2")
        .arg("--help")
        .output()
        .is_ok_and(|o| o.status.success());
    if found {
        return Some("scim2".to_owned());
    }
    let in_ci = std::env::var("CI").is_ok_and(|v| v == "true");
    assert!(
        !in_ci,
        "scim2 (PyPI scim2-cli) is required in CI: set SCIM2_BIN or put it on PATH"
    );
    eprintln!("SKIPPED: scim2 is not installed (pip install scim2-cli)");
    None
}

/// Runs `scim2 --url base test` with the test token and asserts zero failed checks (and that
/// it really ran: more than 50 succeeded). `label` names the target in the printed figures.
pub async fn assert_scim2_passes(bin: String, base: String, label: &str) {
    use std::process::Command;
    use std::time::Duration;
    let output = tokio::task::spawn_blocking(move || {
        Command::new(bin)
            .env("SCIM_CLI_HEADERS", format!("Authorization: Bearer {TOKEN}"))
            .args(["--url", &base, "test"])
            .output()
    });
    let output = tokio::time::timeout(Duration::from_secs(300), output)
        .await
        .expect("scim2 finishes within 300 s")
        .unwrap()
        .expect("scim2 runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let failures: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("ERROR") || l.starts_with("CRITICAL"))
        .collect();
    let successes = stdout.lines().filter(|l| l.starts_with("SUCCESS")).count();
    println!(
        "scim2 test against {label}: {successes} checks succeeded, {} failed",
        failures.len()
    );
    assert!(
        output.status.success() && failures.is_empty(),
        "scim2 test failed ({:?}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(successes > 50, "scim2 ran too few checks:\n{stdout}");
}
