//! Start, readiness, SIGTERM drain and exit of the real binary.

mod common;

use std::time::{Duration, Instant};

use common::*;

const TOKEN_ENV: (&str, &str) = ("SCIM_TOKEN", "test-token-1");

fn shutdown_config(drain: &str, grace: &str, extra: &str) -> String {
    config_text(
        "",
        &format!("[shutdown]\ndrain_delay = \"{drain}\"\ngrace_period = \"{grace}\"\n\n{extra}"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_goes_down_first_then_the_listener_closes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(&path, shutdown_config("3s", "5s", "")).unwrap();
    let mut proxy = ProxyProcess::start(&path, &[TOKEN_ENV]);

    assert_eq!(
        get(&proxy.admin_url("/readyz")).await.unwrap(),
        (200, "ready\n".to_owned())
    );
    assert_eq!(get(&proxy.admin_url("/livez")).await.unwrap().0, 200);

    let sent = Instant::now();
    proxy.signal("TERM");
    let draining = eventually(Duration::from_secs(1), || async {
        matches!(get(&proxy.admin_url("/readyz")).await, Ok((503, body)) if body.contains("draining"))
    })
    .await;
    assert!(draining, "readyz did not turn 503");
    // During the drain delay the public listener still serves.
    assert!(is_scim_answer(
        get(&proxy.url("/scim/v2/Users")).await.unwrap().0
    ));
    assert!(
        sent.elapsed() < Duration::from_secs(3),
        "the test itself was too slow"
    );

    let status = proxy.wait_exit(Duration::from_secs(8)).expect("no exit");
    assert!(status.success(), "{status:?}");
    assert!(
        sent.elapsed() >= Duration::from_secs(3),
        "exited before the drain delay"
    );
    assert!(
        get(&proxy.url("/")).await.is_err(),
        "still accepting after exit"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keep_alive_connections_do_not_hold_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(&path, shutdown_config("100ms", "20s", "")).unwrap();
    let mut proxy = ProxyProcess::start(&path, &[TOKEN_ENV]);

    // An HTTP/1.1 connection left open and idle after one request.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut idle = tokio::net::TcpStream::connect(proxy.public).await.unwrap();
    idle.write_all(b"GET /scim/v2/Users HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = idle.read(&mut buf).await.unwrap();
    let head = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(
        head.starts_with("HTTP/1.1 501") || head.starts_with("HTTP/1.1 401"),
        "{head}"
    );

    let took = terminate(&mut proxy);
    assert!(
        took < Duration::from_secs(5),
        "an idle connection delayed shutdown by {took:?}"
    );
    // The server closed the idle connection.
    let n = tokio::time::timeout(Duration::from_secs(2), idle.read(&mut buf)).await;
    assert!(matches!(n, Ok(Ok(0)) | Ok(Err(_))), "{n:?}");
}

/// Connections served otherwise than by HTTP/1.1 after a request: an HTTP/2 (h2c) connection
/// left idle after a request, and a plain connection that has not sent a byte yet (the server
/// is still waiting to see which protocol it speaks).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_http2_and_silent_connections_do_not_hold_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(&path, shutdown_config("100ms", "20s", "")).unwrap();
    let mut proxy = ProxyProcess::start(&path, &[TOKEN_ENV]);

    let (mut sender, h2_conn) = h2c_client(proxy.public).await;
    let req = http::Request::get(format!("http://{}/scim/v2/Users", proxy.public))
        .body(http_body_util::Empty::new())
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert!(is_scim_answer(resp.status().as_u16()));
    drop(resp);
    let mut silent = tokio::net::TcpStream::connect(proxy.public).await.unwrap();

    let took = terminate(&mut proxy);
    assert!(
        took < Duration::from_secs(5),
        "idle connections delayed shutdown by {took:?}"
    );
    // Both were closed by the server.
    let ended = tokio::time::timeout(Duration::from_secs(2), h2_conn).await;
    assert!(ended.is_ok(), "the HTTP/2 connection is still open");
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(2), silent.read(&mut buf)).await;
    assert!(matches!(n, Ok(Ok(0)) | Ok(Err(_))), "{n:?}");
}

/// The request that is in flight when SIGTERM arrives is answered in full. It goes through the
/// pass-through to a slow upstream, so it needs the real `Proxy::forward` (branch `proxy`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_flight_request_completes_during_shutdown() {
    let upstream = Upstream::start(Duration::from_millis(1500)).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    let extra = format!("[upstream]\nurl = \"{}\"\n", upstream.url());
    std::fs::write(&path, shutdown_config("100ms", "10s", &extra)).unwrap();
    let mut proxy = ProxyProcess::start(&path, &[TOKEN_ENV]);

    let url = proxy.url("/slow/page.php");
    let request = tokio::spawn(async move { get(&url).await });
    tokio::time::sleep(Duration::from_millis(400)).await;
    proxy.signal("TERM");
    let answer = request.await.unwrap();
    assert_eq!(answer, Ok((200, "GET /slow/page.php".to_owned())));
    let status = proxy.wait_exit(Duration::from_secs(10)).expect("no exit");
    assert!(status.success());
}

/// A request slower than the grace period does not keep the process alive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grace_period_bounds_the_exit() {
    let upstream = Upstream::start(Duration::from_secs(30)).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    let extra = format!("[upstream]\nurl = \"{}\"\n", upstream.url());
    std::fs::write(&path, shutdown_config("100ms", "1s", &extra)).unwrap();
    let mut proxy = ProxyProcess::start(&path, &[TOKEN_ENV]);

    let url = proxy.url("/very-slow");
    let _request = tokio::spawn(async move { get(&url).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let took = terminate(&mut proxy);
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(6),
        "{took:?}"
    );
}

/// A WebSocket tunnel open at SIGTERM keeps working after accepting stops, and the process
/// exits as soon as it closes (long before the grace period).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_tunnel_is_waited_for_then_exit_follows_its_close() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;

    // Upstream: a WebSocket echo server.
    let upstream = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream_addr = upstream.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = upstream.accept().await {
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                    return;
                };
                while let Some(Ok(msg)) = ws.next().await {
                    if msg.is_text() && ws.send(msg).await.is_err() {
                        break;
                    }
                }
            });
        }
    });

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    let extra = format!("[upstream]\nurl = \"http://{upstream_addr}\"\n");
    std::fs::write(&path, shutdown_config("200ms", "20s", &extra)).unwrap();
    let mut proxy = ProxyProcess::start(&path, &[TOKEN_ENV]);

    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/chat", proxy.public))
        .await
        .unwrap();
    ws.send(Message::text("before")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("before"));

    let sent = Instant::now();
    proxy.signal("TERM");
    assert!(proxy.wait_for_log(Duration::from_secs(3), |l| l.contains("stopped accepting")));
    // Accepting has stopped, the tunnel still carries messages.
    ws.send(Message::text("during")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("during"));
    assert!(
        proxy.wait_exit(Duration::from_millis(500)).is_none(),
        "exited with a tunnel open"
    );

    ws.close(None).await.unwrap();
    while let Some(Ok(_)) = ws.next().await {}
    drop(ws);
    let status = proxy.wait_exit(Duration::from_secs(10)).expect("no exit");
    assert!(status.success());
    assert!(
        sent.elapsed() < Duration::from_secs(10),
        "{:?}",
        sent.elapsed()
    );
}

/// Sends SIGTERM and waits for a successful exit; returns how long that took.
fn terminate(proxy: &mut ProxyProcess) -> Duration {
    let sent = Instant::now();
    proxy.signal("TERM");
    let status = proxy.wait_exit(Duration::from_secs(10)).expect("no exit");
    assert!(status.success());
    sent.elapsed()
}
