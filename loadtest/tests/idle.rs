//! The idle connections ramp against a real gateway whose open-file limit is
//! low (600): the ramp must end where the node refuses sockets, and the node
//! must refuse them with a clear 503 (not leave them hanging), keep the ones
//! it holds, and go on serving. Never timings.

mod common;

use std::path::Path;
use std::time::Duration;

use loadtest::procstat::Watched;
use loadtest::scenario;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_ramp_ends_where_the_node_refuses_sockets() {
    let s = common::Stack::start_with(1, 0, Some(600)).await;
    let stack = s.target();
    let watched = Watched::parse(&s.pids()).expect("pids");
    let exe = Path::new(env!("CARGO_BIN_EXE_loadtest"));
    let r = scenario::idle(exe, &stack, 800, 100, 2, &[], &watched, Duration::from_millis(200)).await.expect("idle ramp");
    eprintln!("held {} failed {} ended {} first error {:?}", r.held, r.failed, r.ended, r.first_error);
    assert_eq!(r.ended, "failed", "the ramp must stop at the node's limit: {r:?}");
    // 600 files, of which some are kept for Redis, SQL and HTTP.
    assert!(r.held >= 200 && r.held < 600, "held {}", r.held);
    let (last, before) = r.steps.split_last().expect("steps");
    assert!(last.failed > 0);
    assert!(before.iter().all(|st| st.failed == 0), "refusals before the last step: {:?}", r.steps);
    assert_eq!(before.len(), r.held / 100, "one step per 100 sockets held: {:?}", r.steps);
    let err = r.first_error.as_deref().unwrap_or_default();
    assert!(err.contains("503"), "refused with a clear status, got: {err}");
    // The node goes on serving: ready, and a new socket is admitted once the ramp's are gone.
    let http = reqwest::Client::new();
    let ready = http.get(format!("http://{}/readyz", s.gateways[0].addr)).send().await.expect("readyz");
    assert!(ready.status().is_success());
    tokio::time::sleep(Duration::from_secs(1)).await;
    let again = scenario::idle(exe, &stack, 10, 0, 1, &[], &watched, Duration::from_millis(100)).await.expect("idle again");
    assert_eq!((again.held, again.failed), (10, 0), "{again:?}");
}
