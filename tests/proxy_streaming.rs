//! 1 GiB up and 1 GiB down through the proxy with flat memory. Alone in its test binary so
//! that `VmHWM` (peak resident memory of this process: client, proxy and upstream together)
//! measures only this traffic.

mod proxy_harness;

use http::Request;
use http_body_util::BodyExt;
use proxy_harness::*;
use sha2::{Digest, Sha256};

const CHUNKS: usize = 16 * 1024; // 16 Ki × 64 KiB = 1 GiB
const BOUND_KIB: u64 = 64 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_gib_up_and_down_with_flat_memory() {
    let up = start_upstream().await;
    let front = start_front(config_for(up.addr), None).await;
    let (hwm_before, rss_before) = memory_kib();

    // Upload: the upstream hashes what it receives; compute the expected hash meanwhile.
    let expected = tokio::task::spawn_blocking(|| {
        let c = chunk();
        let mut h = Sha256::new();
        for _ in 0..CHUNKS {
            h.update(&c);
        }
        hex::encode(h.finalize())
    });
    let req = Request::post("/main/upload/upload.php")
        .header("host", "chamilo.example")
        .header("content-length", (CHUNKS as u64 * 65536).to_string())
        .body(repeated(chunk(), CHUNKS))
        .unwrap();
    let resp = send(front.addr, req).await;
    assert_eq!(resp.status(), 200);
    let echo = Echo::parse(&body_bytes(resp).await);
    assert_eq!(echo.0["body_len"], CHUNKS as u64 * 65536);
    assert_eq!(echo.0["body_sha256"], expected.await.unwrap());
    let (hwm_up, rss_up) = memory_kib();

    // Download: count bytes as they stream, and check the content of every frame's start.
    let req = Request::get(format!("/download?{CHUNKS}"))
        .header("host", "chamilo.example")
        .body(chamilo_scim_proxy::body::empty())
        .unwrap();
    let resp = send(front.addr, req).await;
    assert_eq!(resp.status(), 200);
    let reference = chunk();
    let mut body = resp.into_body();
    let mut total: u64 = 0;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.unwrap().into_data() {
            let offset = (total % 65536) as usize;
            let n = data.len().min(65536 - offset).min(16);
            assert_eq!(&data[..n], &reference[offset..offset + n]);
            total += data.len() as u64;
        }
    }
    assert_eq!(total, CHUNKS as u64 * 65536);
    let (hwm_after, rss_after) = memory_kib();

    println!(
        "VmHWM KiB: before {hwm_before}, after upload {hwm_up}, after download {hwm_after}; \
         VmRSS KiB: {rss_before} / {rss_up} / {rss_after}"
    );
    assert!(
        hwm_after - hwm_before < BOUND_KIB,
        "peak memory grew by {} KiB moving 2 GiB",
        hwm_after - hwm_before
    );
}
