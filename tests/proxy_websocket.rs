//! WebSocket echo through the proxy, and the tunnel gauge.

mod proxy_harness;

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use proxy_harness::*;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn websocket_echo_through_the_proxy() {
    let up = start_upstream().await;
    let front = start_front(config_for(up.addr), None).await;
    let tcp = TcpStream::connect(front.addr).await.unwrap();
    let url = format!("ws://127.0.0.1:{}/ws", front.addr.port());
    let (mut ws, resp) = tokio_tungstenite::client_async(url, tcp).await.unwrap();
    assert_eq!(resp.status(), 101);

    for i in 0..20 {
        let text = format!("message {i} {}", "é".repeat(i * 100));
        ws.send(Message::text(text.clone())).await.unwrap();
        let echoed = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(echoed.into_text().unwrap().as_str(), text);
    }
    let big = vec![7u8; 1 << 20];
    ws.send(Message::binary(big.clone())).await.unwrap();
    let echoed = ws.next().await.unwrap().unwrap();
    assert_eq!(echoed.into_data().as_ref(), big.as_slice());
    assert!(
        front.metrics().contains("proxy_open_tunnels 1"),
        "{}",
        front.metrics()
    );
    assert_eq!(front.tunnels.len(), 1);

    ws.close(None).await.unwrap();
    while let Some(Ok(_)) = ws.next().await {}
    drop(ws);
    // The tracked task ends once both sides are closed.
    for _ in 0..50 {
        if front.tunnels.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(front.tunnels.is_empty());
    assert!(front.metrics().contains("proxy_open_tunnels 0"));
}

#[tokio::test]
async fn upgrade_refused_by_upstream_is_an_ordinary_response() {
    let up = start_upstream().await;
    let front = start_front(config_for(up.addr), None).await;
    // The echo path does not upgrade: the client gets the upstream's 200, the upstream saw
    // the upgrade request itself (restored after hop-by-hop removal), and no tunnel opens.
    let resp = raw_one(
        front.addr,
        b"GET /echo HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .await;
    let echo = resp.echo();
    assert_eq!(echo.header("upgrade").unwrap(), "websocket");
    assert_eq!(echo.header("connection").unwrap(), "upgrade");
    assert_eq!(front.tunnels.len(), 0);
}

#[tokio::test]
async fn an_idle_tunnel_is_closed_and_a_busy_one_is_not() {
    let up = start_upstream().await;
    let mut cfg = config_for(up.addr);
    cfg.upstream.tunnel_idle_timeout = Duration::from_millis(400);
    let front = start_front(cfg, None).await;
    let url = format!("ws://127.0.0.1:{}/ws", front.addr.port());

    // Busy: a message every 100 ms for three times the idle timeout.
    let tcp = TcpStream::connect(front.addr).await.unwrap();
    let (mut busy, _) = tokio_tungstenite::client_async(url.clone(), tcp)
        .await
        .unwrap();
    let pinger = tokio::spawn(async move {
        for i in 0..12 {
            busy.send(Message::text(format!("{i}"))).await.unwrap();
            let echoed = tokio::time::timeout(Duration::from_secs(2), busy.next())
                .await
                .expect("the busy tunnel answers")
                .expect("the busy tunnel is open")
                .unwrap();
            assert_eq!(echoed.into_text().unwrap().as_str(), format!("{i}"));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });

    // Idle: nothing sent; the proxy closes the tunnel and the client sees the end.
    let tcp = TcpStream::connect(front.addr).await.unwrap();
    let (mut idle, _) = tokio_tungstenite::client_async(url, tcp).await.unwrap();
    let started = std::time::Instant::now();
    let end = tokio::time::timeout(Duration::from_secs(5), idle.next())
        .await
        .expect("the idle tunnel is closed by the proxy");
    assert!(!matches!(end, Some(Ok(Message::Text(_)))), "{end:?}");
    assert!(started.elapsed() >= Duration::from_millis(350));

    pinger
        .await
        .expect("the busy tunnel stayed open throughout");
}
