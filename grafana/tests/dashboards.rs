//! The Grafana dashboards only query metrics the processes really export:
//! every metric name in the dashboards' PromQL must appear on the `/metrics`
//! of a running gateway or worker after some traffic.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use loadtest::procstat::Watched;
use loadtest::scenario::{self, RunOpts};
use testkit::{Db, Stack, LOAD_ENV};

fn grafana_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// (dashboard file, expr) of every panel target.
fn dashboard_exprs() -> Vec<(String, String)> {
    let mut out = Vec::new();
    let dir = grafana_dir().join("dashboards");
    for e in std::fs::read_dir(&dir).expect("grafana/dashboards") {
        let path = e.expect("entry").path();
        if path.extension().is_none_or(|x| x != "json") {
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("dashboard is JSON");
        assert!(v["uid"].is_string() && v["title"].is_string(), "{} needs uid and title", path.display());
        let panels = v["panels"].as_array().expect("panels");
        assert!(!panels.is_empty());
        for p in panels {
            assert_eq!(p["datasource"]["uid"], "prometheus", "panel {} uses the provisioned datasource", p["title"]);
            for t in p["targets"].as_array().expect("targets") {
                out.push((path.file_name().unwrap().to_string_lossy().into_owned(), t["expr"].as_str().expect("expr").to_string()));
            }
        }
    }
    out
}

/// Metric names (as written, `_bucket` included) referenced by a PromQL expression.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let re = regex::Regex::new(r"\b((?:gateway|worker|http)_[a-z0-9_]+)").expect("regex");
    re.captures_iter(expr).map(|c| c[1].to_string()).collect()
}

fn exported(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_string)
        .collect()
}

#[test]
fn names_are_parsed() {
    let n = metric_names(r#"histogram_quantile(0.99, sum by (le, op) (rate(gateway_redis_seconds_bucket[1m]))) + sum(worker_stream_lag{group="x"})"#);
    assert_eq!(n.into_iter().collect::<Vec<_>>(), vec!["gateway_redis_seconds_bucket", "worker_stream_lag"]);
    let prov = std::fs::read_to_string(grafana_dir().join("provisioning/datasources/prometheus.yml")).expect("datasource provisioning");
    assert!(prov.contains("uid: prometheus"));
    assert!(grafana_dir().join("prometheus.yml").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboards_use_only_exported_metrics() {
    let exprs = dashboard_exprs();
    assert!(exprs.len() >= 20, "three dashboards with their panels");
    let s = Stack::new(Db::Sqlite).await.base(LOAD_ENV).spawn(1, 1).await;
    let stack = scenario::Stack {
        target: loadtest::proto::Target::Ours,
        gateways: s.gateways.iter().map(|g| g.addr.parse().expect("addr")).collect(),
        secret: scenario::DEV_SECRET.into(),
        agent_user: "demo".into(),
        agent_pass: "demo".into(),
        redis_url: Some(s.redis_url.clone()),
        key_prefix: s.prefix.clone(),
        log_shards: 4,
    };
    let opts = RunOpts {
        customers: 20,
        agents: 2,
        rate: 100.0,
        duration: Duration::from_secs(2),
        warmup: Duration::ZERO,
        http_users: 1,
        p99_limit_ms: f64::INFINITY,
        ..RunOpts::default()
    };
    let r = scenario::run(&stack, &opts, &Watched::default()).await.expect("traffic");
    assert!(r.deliveries.acked > 0);
    let http = reqwest::Client::new();
    let gw = http.get(format!("http://{}/metrics", s.gateways[0].metrics)).send().await.expect("gateway metrics").text().await.expect("body");
    // The worker refreshes its stream gauges on its claim tick; wait for one with data.
    let mut wk = String::new();
    for _ in 0..100 {
        wk = http.get(format!("http://{}/metrics", s.workers[0].addr)).send().await.expect("worker metrics").text().await.expect("body");
        if wk.contains("worker_persist_seconds_bucket") && wk.contains("worker_stream_lag") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let have: BTreeSet<String> = exported(&gw).union(&exported(&wk)).cloned().collect();
    let mut missing = Vec::new();
    for (file, expr) in &exprs {
        for name in metric_names(expr) {
            if !have.contains(&name) {
                missing.push(format!("{file}: {name} (in `{expr}`)"));
            }
        }
    }
    assert!(missing.is_empty(), "dashboards query metrics nobody exports:\n{}\nexported: {have:?}", missing.join("\n"));
}
