//! Pass-through benchmark: direct vs this proxy vs nginx, same upstream, same load generator.
//!
//! ```sh
//! apt-get install -y nginx wrk        # Debian packages
//! cargo build --release --bin chamilo-scim-proxy --example bench_passthrough
//! target/release/examples/bench_passthrough [SECONDS=5] [CONNECTIONS=64] [ROUNDS=3]
//! ```
//!
//! Starts, on loopback, each in its own process: a trivial hyper upstream (this program with
//! `--upstream`), the proxy and nginx (`worker_processes 2`, keepalive pool to the upstream,
//! access log off, and the same four forwarding fields as the proxy sends, so that the
//! upstream parses the same request from both). The proxy is the real binary (`BENCH_PROXY_BIN`, else
//! `chamilo-scim-proxy` next to `examples/`, started with `--config FILE`); with
//! `BENCH_PROXY_MODE=multi-thread|per-core` it is this program with `--proxy` instead: the
//! library's `Proxy` and `route` behind a plain hyper-util server loop. Each target is driven
//! by `wrk --latency` with the same threads, connections and duration, in interleaved rounds
//! (the machine is shared: interleaving spreads background load over all three); printed are
//! every round, the medians of req/s, p50 and p99, the proxy÷nginx ratios of each round and
//! their median (proxy and nginx take turns going first), and the ratios proxy÷nginx and
//! proxy÷direct. Then 1 GiB is uploaded through the proxy while its peak resident memory
//! (`VmHWM`) is read from `/proc`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chamilo_scim_proxy::body::{full, BoxBody, BoxError};
use chamilo_scim_proxy::config::Config;
use chamilo_scim_proxy::proxy::{ClientInfo, Proxy};
use chamilo_scim_proxy::server::route::{classify, Route};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};

const BODY: &str = "<!doctype html><title>Chamilo</title><p>Hello from the upstream.</p>\n";

fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("--upstream") => serve_upstream(args[2].parse()?),
        Some("--proxy") => serve_proxy(args[2].parse()?, args[3].parse()?),
        _ => {
            let seconds: u64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(5);
            let connections: u64 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(64);
            let rounds: usize = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(3);
            run(seconds, connections, rounds.max(1))
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, BoxError> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

/// The trivial upstream: a small HTML page for any GET, the byte count for a POST.
fn serve_upstream(addr: SocketAddr) -> Result<(), BoxError> {
    runtime()?.block_on(async move {
        let listener = TcpListener::bind(addr).await?;
        loop {
            let (stream, _) = listener.accept().await?;
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let svc = service_fn(|req: Request<Incoming>| async move {
                    let mut len: u64 = 0;
                    let mut body = req.into_body();
                    while let Some(Ok(frame)) = body.frame().await {
                        if let Ok(data) = frame.into_data() {
                            len += data.len() as u64;
                        }
                    }
                    let text = if len == 0 {
                        Bytes::from_static(BODY.as_bytes())
                    } else {
                        Bytes::from(format!("received {len}\n"))
                    };
                    Ok::<_, Infallible>(Response::new(full(text)))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    })
}

/// The library's pass-through behind a minimal server loop. `BENCH_PROXY_MODE=per-core`
/// runs one single-threaded runtime per core, each with its own `SO_REUSEPORT` listener, all
/// sharing one `Proxy` (nginx's model); `handoff` accepts on a multi-threaded runtime and
/// serves each connection on one of several single-threaded runtimes; the default is one
/// multi-threaded runtime.
fn serve_proxy(listen: SocketAddr, upstream: SocketAddr) -> Result<(), BoxError> {
    let mut cfg = Config::default();
    cfg.upstream.url = format!("http://{upstream}");
    let cfg = Arc::new(arc_swap::ArcSwap::from_pointee(cfg));
    let threads: usize = std::env::var("BENCH_PROXY_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    let mut registry = prometheus_client::registry::Registry::default();
    let tunnels = tokio_util::task::TaskTracker::new();
    let proxy = Arc::new(Proxy::new(&cfg.load().upstream, &mut registry, tunnels)?);
    if std::env::var("BENCH_PROXY_MODE").as_deref() == Ok("handoff") {
        return serve_handoff(listen, proxy, cfg, threads);
    }
    if std::env::var("BENCH_PROXY_MODE").as_deref() == Ok("per-core") {
        let threads: Vec<_> = (0..threads)
            .map(|_| {
                let cfg = cfg.clone();
                let proxy = proxy.clone();
                std::thread::spawn(move || -> Result<(), String> {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .map_err(|e| e.to_string())?;
                    rt.block_on(proxy_loop(listen, proxy, cfg, true))
                        .map_err(|e| e.to_string())
                })
            })
            .collect();
        for t in threads {
            let _ = t.join();
        }
        return Ok(());
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()?
        .block_on(proxy_loop(listen, proxy, cfg, false))
}

async fn proxy_loop(
    listen: SocketAddr,
    proxy: Arc<Proxy>,
    cfg: Arc<arc_swap::ArcSwap<Config>>,
    reuse_port: bool,
) -> Result<(), BoxError> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.set_reuseport(reuse_port)?;
    socket.bind(listen)?;
    let listener = socket.listen(1024)?;
    loop {
        let (stream, peer) = listener.accept().await?;
        tokio::spawn(serve_connection(stream, peer, proxy.clone(), cfg.clone()));
    }
}

/// `handoff`: accept on a multi-threaded runtime, serve each connection on one of `threads`
/// single-threaded runtimes, round-robin.
fn serve_handoff(
    listen: SocketAddr,
    proxy: Arc<Proxy>,
    cfg: Arc<arc_swap::ArcSwap<Config>>,
    threads: usize,
) -> Result<(), BoxError> {
    let mut handles = Vec::new();
    for _ in 0..threads {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        handles.push(rt.handle().clone());
        std::thread::spawn(move || rt.block_on(std::future::pending::<()>()));
    }
    runtime()?.block_on(async move {
        let listener = TcpListener::bind(listen).await?;
        let mut next = 0usize;
        loop {
            let (stream, peer) = listener.accept().await?;
            let std_stream = stream.into_std()?;
            let (proxy, cfg) = (proxy.clone(), cfg.clone());
            handles[next % handles.len()].spawn(async move {
                if let Ok(stream) = TcpStream::from_std(std_stream) {
                    serve_connection(stream, peer, proxy, cfg).await;
                }
            });
            next = next.wrapping_add(1);
        }
    })
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    proxy: Arc<Proxy>,
    cfg: Arc<arc_swap::ArcSwap<Config>>,
) {
    let _ = stream.set_nodelay(true);
    let client = ClientInfo { peer, tls: false };
    let svc = service_fn(move |req: Request<Incoming>| {
        let proxy = proxy.clone();
        let cfg = cfg.load_full();
        async move {
            let resp = match classify(req.uri()) {
                Route::PassThrough { path } => proxy.forward(req, client, &cfg, &path).await,
                Route::Scim { .. } => status(StatusCode::NOT_IMPLEMENTED),
                Route::Reject { status: s, .. } => status(s),
            };
            Ok::<_, Infallible>(resp)
        }
    });
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new());
    let _ = builder
        .serve_connection_with_upgrades(TokioIo::new(stream), svc)
        .await;
}

fn status(status: StatusCode) -> Response<BoxBody> {
    let mut resp = Response::new(full(status.as_str().to_owned()));
    *resp.status_mut() = status;
    resp
}

/// A child process killed when dropped.
struct Process(Child);

impl Drop for Process {
    /// SIGTERM first (nginx's master then stops its workers; SIGKILL would orphan them), then
    /// SIGKILL after 5 s.
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> Result<SocketAddr, BoxError> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

fn wait_until_listening(addr: SocketAddr) -> Result<(), BoxError> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(addr).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(format!("nothing listens on {addr}").into())
}

/// One `wrk --latency` result.
struct Figures {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: String,
}

fn wrk(addr: SocketAddr, seconds: u64, connections: u64) -> Result<Figures, BoxError> {
    let out = Command::new("wrk")
        .args([
            "-t2",
            &format!("-c{connections}"),
            &format!("-d{seconds}s"),
            "--latency",
            "-H",
            "Host: chamilo.example",
            &format!("http://{addr}/index.php"),
        ])
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let find = |prefix: &str| -> Option<String> {
        text.lines()
            .map(str::trim)
            .find(|l| l.starts_with(prefix))
            .map(|l| l.split_whitespace().nth(1).unwrap_or("").to_owned())
    };
    let rps = find("Requests/sec:")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("no Requests/sec in wrk output:\n{text}"))?;
    let p50 = find("50%").map(|v| to_ms(&v)).ok_or("no p50")?;
    let p99 = find("99%").map(|v| to_ms(&v)).ok_or("no p99")?;
    let errors = text
        .lines()
        .filter(|l| l.contains("Non-2xx") || l.contains("Socket errors"))
        .map(str::trim)
        .collect::<Vec<_>>()
        .join("; ");
    Ok(Figures {
        rps,
        p50_ms: p50,
        p99_ms: p99,
        errors,
    })
}

fn to_ms(value: &str) -> f64 {
    let (number, factor) = if let Some(n) = value.strip_suffix("us") {
        (n, 0.001)
    } else if let Some(n) = value.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = value.strip_suffix('s') {
        (n, 1000.0)
    } else {
        (value, 1.0)
    };
    number.parse::<f64>().unwrap_or(f64::NAN) * factor
}

fn nginx_config(dir: &std::path::Path, listen: SocketAddr, upstream: SocketAddr) -> String {
    let d = dir.display();
    format!(
        "daemon off;\nmaster_process on;\nworker_processes 2;\nuser root;\npid {d}/nginx.pid;\n\
         error_log {d}/error.log warn;\n\
         events {{ worker_connections 4096; }}\n\
         http {{\n  access_log off;\n\
           client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
           fastcgi_temp_path {d}/fcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
           client_max_body_size 0;\n\
           upstream chamilo {{ server {upstream}; keepalive 256; }}\n\
           server {{\n    listen {listen} reuseport;\n\
             location / {{\n      proxy_pass http://chamilo;\n      proxy_http_version 1.1;\n\
               proxy_set_header Connection \"\";\n      proxy_set_header Host $http_host;\n\
               proxy_set_header X-Forwarded-For $remote_addr;\n\
               proxy_set_header X-Forwarded-Proto $scheme;\n\
               proxy_set_header X-Forwarded-Host $http_host;\n\
               proxy_set_header Forwarded \"for=$remote_addr;host=\\\"$http_host\\\";proto=$scheme\";\n\
               proxy_request_buffering off;\n    }}\n  }}\n}}\n"
    )
}

/// Uploads `chunks` × 64 KiB through `addr` while sampling the resident memory of `pid`.
fn upload_peak_kib(addr: SocketAddr, pid: u32, chunks: usize) -> Result<(u64, u64, f64), BoxError> {
    let status_path = format!("/proc/{pid}/status");
    let read_kib = |field: &str| -> u64 {
        std::fs::read_to_string(&status_path)
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with(field))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|v| v.parse().ok())
            })
            .unwrap_or(0)
    };
    let before = read_kib("VmHWM:");
    let started = Instant::now();
    runtime()?.block_on(async move {
        let stream = TcpStream::connect(addr).await?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        let chunk = Bytes::from(vec![b'x'; 65536]);
        let frames =
            futures_util::StreamExt::map(futures_util::stream::iter(0..chunks), move |_| {
                Ok::<_, BoxError>(Frame::data(chunk.clone()))
            });
        let req = Request::post("/upload.php")
            .header("host", "chamilo.example")
            .header("content-length", (chunks as u64 * 65536).to_string())
            .body(BodyExt::boxed(StreamBody::new(frames)))?;
        let resp = sender.send_request(req).await?;
        let body = resp.into_body().collect().await?.to_bytes();
        let expected = format!("received {}\n", chunks as u64 * 65536);
        if body != expected.as_bytes() {
            return Err(format!("upload answer {body:?}").into());
        }
        Ok::<_, BoxError>(())
    })?;
    let secs = started.elapsed().as_secs_f64();
    Ok((before, read_kib("VmHWM:"), secs))
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn run(seconds: u64, connections: u64, rounds: usize) -> Result<(), BoxError> {
    let exe = std::env::current_exe()?;
    let upstream = free_port()?;
    let _upstream = Process(
        Command::new(&exe)
            .args(["--upstream", &upstream.to_string()])
            .spawn()?,
    );
    wait_until_listening(upstream)?;

    // The real binary: `BENCH_PROXY_BIN`, else the release binary next to this example.
    let dir = tempfile::tempdir()?;
    let proxy = free_port()?;
    let sibling = exe
        .parent()
        .and_then(|examples| examples.parent())
        .map(|release| release.join("chamilo-scim-proxy"));
    let binary = std::env::var("BENCH_PROXY_BIN")
        .ok()
        .map(std::path::PathBuf::from)
        .or(sibling.filter(|p| p.is_file()));
    let (proxy_child, proxy_kind) = match binary {
        Some(bin) if std::env::var("BENCH_PROXY_MODE").is_err() => {
            let config = dir.path().join("proxy.toml");
            let admin = free_port()?;
            std::fs::write(
                &config,
                format!(
                    "[server]\nlisten = \"{proxy}\"\n[upstream]\nurl = \"http://{upstream}\"\n\
                     [admin]\nlisten = \"{admin}\"\n[log]\nlevel = \"warn\"\n\
                     [scim]\nenabled = false\n"
                ),
            )?;
            let child = Command::new(&bin)
                .arg("--config")
                .arg(&config)
                .stdout(Stdio::null())
                .spawn()?;
            (child, format!("the binary {}", bin.display()))
        }
        _ => {
            let child = Command::new(&exe)
                .args(["--proxy", &proxy.to_string(), &upstream.to_string()])
                .spawn()?;
            let mode = std::env::var("BENCH_PROXY_MODE").unwrap_or_else(|_| "multi-thread".into());
            (
                child,
                format!("the library's Proxy behind this example's server loop ({mode})"),
            )
        }
    };
    let proxy_pid = proxy_child.id();
    let _proxy = Process(proxy_child);
    wait_until_listening(proxy)?;

    let nginx = free_port()?;
    let conf = dir.path().join("nginx.conf");
    std::fs::write(&conf, nginx_config(dir.path(), nginx, upstream))?;
    let _nginx = Process(
        Command::new("nginx")
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&conf)
            .stderr(Stdio::null())
            .spawn()?,
    );
    wait_until_listening(nginx)?;

    println!(
        "wrk -t2 -c{connections} -d{seconds}s --latency, GET /index.php ({} byte body), \
         {rounds} interleaved rounds, medians",
        BODY.len()
    );
    println!("proxy: {proxy_kind}");
    println!("nginx: worker_processes 2, keepalive 256 to the upstream, access_log off");
    // A short warm-up for each, so pools and caches are filled before measuring.
    for addr in [upstream, proxy, nginx] {
        wrk(addr, 1, connections)?;
    }
    let targets = [("direct", upstream), ("proxy", proxy), ("nginx", nginx)];
    let mut runs: Vec<Vec<Figures>> = vec![Vec::new(), Vec::new(), Vec::new()];
    println!("\nround  target        req/s     p50 ms     p99 ms  errors");
    for round in 1..=rounds {
        // proxy and nginx take turns going first, so that neither always follows `direct`.
        let order: [usize; 3] = if round % 2 == 1 { [0, 1, 2] } else { [0, 2, 1] };
        for i in order {
            let (name, addr) = targets[i];
            let f = wrk(addr, seconds, connections)?;
            println!(
                "{round:>5}  {name:<8} {:>10.0} {:>10.3} {:>10.3}  {}",
                f.rps,
                f.p50_ms,
                f.p99_ms,
                if f.errors.is_empty() { "-" } else { &f.errors }
            );
            runs[i].push(f);
        }
    }
    let summary: Vec<(f64, f64, f64)> = runs
        .iter()
        .map(|r| {
            (
                median(&mut r.iter().map(|f| f.rps).collect::<Vec<_>>()),
                median(&mut r.iter().map(|f| f.p50_ms).collect::<Vec<_>>()),
                median(&mut r.iter().map(|f| f.p99_ms).collect::<Vec<_>>()),
            )
        })
        .collect();
    println!("\nmedian  target        req/s     p50 ms     p99 ms");
    for ((name, _), (rps, p50, p99)) in targets.iter().zip(&summary) {
        println!("        {name:<8} {rps:>10.0} {p50:>10.3} {p99:>10.3}");
    }
    let (direct, ours, theirs) = (summary[0], summary[1], summary[2]);
    // Paired per round: the machine's speed drifts between rounds, much less within one.
    let mut paired: Vec<f64> = runs[1]
        .iter()
        .zip(&runs[2])
        .map(|(p, n)| p.rps / n.rps)
        .collect();
    let listed: Vec<String> = paired.iter().map(|r| format!("{r:.2}")).collect();
    println!("\nthroughput proxy÷nginx per round: {}", listed.join(" "));
    println!(
        "throughput proxy÷nginx, median of the rounds: {:.2}",
        median(&mut paired)
    );
    let mut paired_p99: Vec<f64> = runs[1]
        .iter()
        .zip(&runs[2])
        .map(|(p, n)| p.p99_ms / n.p99_ms)
        .collect();
    println!(
        "p99 proxy÷nginx, median of the rounds: {:.2}",
        median(&mut paired_p99)
    );
    println!("\nthroughput proxy÷nginx  {:.2}", ours.0 / theirs.0);
    println!("throughput proxy÷direct {:.2}", ours.0 / direct.0);
    println!(
        "p99 proxy÷nginx {:.2}; added p99 over direct (ms): proxy {:.3}, nginx {:.3}",
        ours.2 / theirs.2,
        ours.2 - direct.2,
        theirs.2 - direct.2
    );

    let (before, peak, secs) = upload_peak_kib(proxy, proxy_pid, 16 * 1024)?;
    println!(
        "\n1 GiB streaming upload through the proxy: {secs:.1} s, proxy VmHWM {before} KiB before, \
         {peak} KiB after ({:+} KiB)",
        peak as i64 - before as i64
    );
    Ok(())
}
