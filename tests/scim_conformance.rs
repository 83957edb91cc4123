//! The external conformance tool `scim2 test` (PyPI `scim2-cli`, which runs `scim2-tester`)
//! against the engine with the in-memory directory, served on loopback.
//!
//! The tool is found through `SCIM2_BIN` or `scim2` on `PATH` (`.ci/run` installs it). When it
//! is missing the test fails under `CI=true` and is skipped, loudly, elsewhere.

mod scim_support;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scim2_tester_passes_with_no_failures() {
    let Some(bin) = scim_support::scim2_or_skip() else {
        return;
    };
    let server = scim_support::start(scim_support::config()).await;
    let base = server.base.clone();
    scim_support::assert_scim2_passes(bin, base, "the engine (in-memory directory)").await;
}
