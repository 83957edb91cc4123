//! Starting the real binary on loopback ports and talking to it.
//!
//! The binary announces its bound addresses in JSON log lines on stdout:
//! `{"message":"listening","listener":"public","address":"127.0.0.1:NNNN",...}` (and
//! `"listener":"admin"`), then `{"message":"ready"}`. Configurations use port 0.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

pub const BIN: &str = env!("CARGO_BIN_EXE_chamilo-scim-proxy");

/// A running `chamilo-scim-proxy` process, killed on drop.
pub struct ProxyProcess {
    child: Child,
    pub public: SocketAddr,
    pub admin: SocketAddr,
    lines: Arc<Mutex<Vec<String>>>,
}

impl ProxyProcess {
    /// Starts `run --config FILE` with extra environment and waits for "ready".
    pub fn start(config: &Path, env: &[(&str, &str)]) -> Self {
        let mut cmd = Command::new(BIN);
        cmd.arg("run").arg("--config").arg(config);
        Self::spawn(cmd, env)
    }

    /// Starts the binary with exactly `cmd` (for runs without a file).
    pub fn spawn(mut cmd: Command, env: &[(&str, &str)]) -> Self {
        for key in [
            "SCIM_TOKEN",
            "SCIM_TOKEN_FILE",
            "LISTEN_ADDR",
            "ADMIN_LISTEN_ADDR",
            "UPSTREAM_URL",
            "CHAMILO_SCIM_PROXY_CONFIG",
        ] {
            cmd.env_remove(key);
        }
        cmd.envs(env.iter().copied());
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("start the binary");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        for stream in [
            Box::new(stdout) as Box<dyn std::io::Read + Send>,
            Box::new(stderr),
        ] {
            let lines = lines.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    lines.lock().unwrap().push(line);
                }
            });
        }
        let mut process = Self {
            child,
            public: "0.0.0.0:0".parse().unwrap(),
            admin: "0.0.0.0:0".parse().unwrap(),
            lines,
        };
        let ready = process.wait_for_log(Duration::from_secs(20), |l| {
            l.contains("\"message\":\"ready\"")
        });
        assert!(
            ready,
            "the proxy did not become ready:\n{}",
            process.logs().join("\n")
        );
        for line in process.logs() {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            if v["message"] != "listening" {
                continue;
            }
            let addr: SocketAddr = v["address"].as_str().unwrap().parse().unwrap();
            match v["listener"].as_str() {
                Some("public") => process.public = addr,
                Some("admin") => process.admin = addr,
                _ => {}
            }
        }
        process
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal by name (`HUP`, `TERM`, `INT`).
    pub fn signal(&self, name: &str) {
        // The shell's built-in `kill`: no procps needed on a clean machine.
        let status = Command::new("sh")
            .args(["-c", &format!("kill -s {name} {}", self.pid())])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Every line written so far to stdout and stderr.
    pub fn logs(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// Polls the log until a line matches, up to `timeout`.
    pub fn wait_for_log(&self, timeout: Duration, pred: impl Fn(&str) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.lines.lock().unwrap().iter().any(|l| pred(l)) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Waits for the process to exit, up to `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.public, path)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{}", self.admin, path)
    }
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A plain HTTP/1.1 GET on a fresh connection: (status, body).
pub async fn get(url: &str) -> Result<(u16, String), String> {
    let client = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build_http::<Empty<Bytes>>();
    let resp = client
        .get(url.parse().map_err(|e| format!("{e}"))?)
        .await
        .map_err(|e| format!("{e:?}"))?;
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("{e}"))?
        .to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// The value of one sample in a Prometheus text exposition, e.g.
/// `metric(text, "config_reloads_total{result=\"error\"}")`.
pub fn metric(text: &str, sample: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(sample)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// Reads one metric sample from the admin port.
pub async fn admin_metric(proxy: &ProxyProcess, sample: &str) -> Option<f64> {
    let (_, text) = get(&proxy.admin_url("/metrics")).await.ok()?;
    metric(&text, sample)
}

/// Polls `check` every 50 ms until it is true or `timeout` passes.
pub async fn eventually<F, Fut>(timeout: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// A directory laid out the way the kubelet mounts a ConfigMap or Secret:
/// `dir/NAME -> ..data/NAME`, `..data -> ..<version>/`, swapped atomically by renaming a new
/// `..data_tmp` symlink over `..data`.
pub struct KubeVolume {
    pub dir: tempfile::TempDir,
    version: u32,
}

impl KubeVolume {
    pub fn new(files: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut volume = Self { dir, version: 0 };
        volume.swap(files);
        for (name, _) in files {
            std::os::unix::fs::symlink(format!("..data/{name}"), volume.dir.path().join(name))
                .unwrap();
        }
        volume
    }

    /// The path applications read: `dir/NAME`.
    pub fn path(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join(name)
    }

    /// Publishes a new version of the files the way the kubelet does.
    pub fn swap(&mut self, files: &[(&str, &str)]) {
        self.version += 1;
        let version_dir = format!("..2026_11_29_00_00_00.{:04}", self.version);
        let target = self.dir.path().join(&version_dir);
        std::fs::create_dir(&target).unwrap();
        for (name, content) in files {
            std::fs::write(target.join(name), content).unwrap();
        }
        let tmp = self.dir.path().join("..data_tmp");
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(&version_dir, &tmp).unwrap();
        std::fs::rename(&tmp, self.dir.path().join("..data")).unwrap();
        if self.version > 1 {
            let old = self
                .dir
                .path()
                .join(format!("..2026_11_29_00_00_00.{:04}", self.version - 1));
            std::fs::remove_dir_all(old).unwrap();
        }
    }
}

/// A minimal configuration on ephemeral loopback ports: `server_keys` go into `[server]`,
/// `extra` (other sections) is appended verbatim.
pub fn config_text(server_keys: &str, extra: &str) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n{server_keys}\n\n[admin]\nlisten = \"127.0.0.1:0\"\n\n{extra}\n"
    )
}

/// A trivial upstream ("Chamilo") on a loopback port: answers every request with 200 and
/// `"{method} {path}"`, after `delay` (for in-flight and timeout tests).
pub struct Upstream {
    pub addr: SocketAddr,
    _task: tokio::task::JoinHandle<()>,
}

impl Upstream {
    pub async fn start(delay: Duration) -> Self {
        use hyper::service::service_fn;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    break;
                };
                tokio::spawn(async move {
                    let service = service_fn(
                        move |req: hyper::Request<hyper::body::Incoming>| async move {
                            tokio::time::sleep(delay).await;
                            let body = format!("{} {}", req.method(), req.uri().path());
                            Ok::<_, std::convert::Infallible>(hyper::Response::new(
                                http_body_util::Full::new(Bytes::from(body)),
                            ))
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { addr, _task: task }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// Whether `status` is what the SCIM route answers a request without a token: 401. (404
/// means the route is switched off.)
pub fn is_scim_answer(status: u16) -> bool {
    status == 401
}

/// An HTTP/2 prior-knowledge (h2c) client connection to `addr`; the connection's task is
/// returned so a test can see when the server closes it.
pub async fn h2c_client(
    addr: std::net::SocketAddr,
) -> (
    hyper::client::conn::http2::SendRequest<http_body_util::Empty<bytes::Bytes>>,
    tokio::task::JoinHandle<hyper::Result<()>>,
) {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .unwrap();
    (sender, tokio::spawn(conn))
}
