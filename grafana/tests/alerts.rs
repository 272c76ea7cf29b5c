//! The alert rules (`alerts.yml`, loaded by `prometheus.yml`) only use
//! metrics the processes really export, with the labels they really carry:
//! a gateway and a worker run, a message goes through them, and every metric
//! name a rule's expression selects must be on their `/metrics`
//! (`CHAT_METRICS_ADDR`, `WORKER_METRICS_ADDR`); every `label="value"`
//! matcher must match an exported series, and every label a matcher names
//! must exist on that metric. (`promtool check rules` validates the syntax:
//! `scripts/test.sh`.)

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use serde_json::json;
use testkit::{Db, Stack};

fn grafana_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

struct Rule {
    alert: String,
    expr: String,
}

fn rules() -> Vec<Rule> {
    let text = std::fs::read_to_string(grafana_dir().join("alerts.yml")).expect("grafana/alerts.yml");
    let v: serde_yaml::Value = serde_yaml::from_str(&text).expect("alerts.yml is YAML");
    let mut out = vec![];
    for g in v["groups"].as_sequence().expect("groups") {
        for r in g["rules"].as_sequence().expect("rules") {
            let alert = r["alert"].as_str().expect("every rule is an alert").to_string();
            let severity = r["labels"]["severity"].as_str().unwrap_or("");
            assert!(matches!(severity, "warning" | "critical"), "{alert}: severity {severity:?}");
            assert!(r["annotations"]["summary"].as_str().is_some_and(|s| !s.is_empty()), "{alert}: summary");
            out.push(Rule { alert, expr: r["expr"].as_str().expect("expr").to_string() });
        }
    }
    out
}

/// One selector of an expression: a metric name and its label matchers
/// (label, operator, value).
#[derive(Debug)]
struct Selector {
    name: String,
    matchers: Vec<(String, String, String)>,
}

/// Aggregation operators: followed by `by (...)` as often as by `(`.
const AGGREGATIONS: &[&str] = &["sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values", "bottomk", "topk", "quantile"];
const KEYWORDS: &[&str] = &["by", "without", "and", "or", "unless", "on", "ignoring", "group_left", "group_right", "bool", "offset", "inf", "nan"];

/// The selectors of a PromQL expression: identifiers that are not
/// functions, keywords, or label names of a grouping clause.
fn selectors(expr: &str) -> Vec<Selector> {
    let b = expr.as_bytes();
    let mut out = vec![];
    let mut i = 0;
    let mut last_word = String::new();
    while i < b.len() {
        let c = b[i] as char;
        if c == '"' || c == '\'' {
            // A string outside a selector (an argument like histogram_quantile's is a number).
            let end = expr[i + 1..].find(c).map_or(b.len(), |j| i + 1 + j + 1);
            i = end;
            continue;
        }
        if c == '[' {
            i = expr[i..].find(']').map_or(b.len(), |j| i + j + 1);
            continue;
        }
        if c == '(' && KEYWORDS.contains(&last_word.as_str()) {
            // by (...), without (...), on (...), ignoring (...), group_left (...)
            i = expr[i..].find(')').map_or(b.len(), |j| i + j + 1);
            last_word.clear();
            continue;
        }
        if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < b.len() && ((b[i] as char).is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b':') {
                i += 1;
            }
            let word = &expr[start..i];
            let rest = expr[i..].trim_start();
            let is_fn = rest.starts_with('(') || AGGREGATIONS.contains(&word);
            // A duration suffix of a number (5m) is consumed with the number below.
            if !is_fn && !KEYWORDS.contains(&word.to_ascii_lowercase().as_str()) {
                let mut matchers = vec![];
                if rest.starts_with('{') {
                    let open = i + expr[i..].find('{').unwrap();
                    let close = open + expr[open..].find('}').expect("closing brace");
                    matchers = parse_matchers(&expr[open + 1..close]);
                    i = close + 1;
                }
                out.push(Selector { name: word.to_string(), matchers });
            }
            last_word = word.to_ascii_lowercase();
            continue;
        }
        if c.is_ascii_digit() || c == '.' {
            while i < b.len() && ((b[i] as char).is_ascii_alphanumeric() || b[i] == b'.') {
                i += 1;
            }
            continue;
        }
        if !c.is_whitespace() {
            last_word.clear();
        }
        i += 1;
    }
    out
}

fn parse_matchers(inner: &str) -> Vec<(String, String, String)> {
    let re = regex::Regex::new(r#"([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)""#).unwrap();
    re.captures_iter(inner).map(|c| (c[1].to_string(), c[2].to_string(), c[3].to_string())).collect()
}

/// Exported series: metric name -> label sets.
fn exported(text: &str) -> BTreeMap<String, Vec<BTreeMap<String, String>>> {
    let re = regex::Regex::new(r#"([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)""#).unwrap();
    let mut out: BTreeMap<String, Vec<BTreeMap<String, String>>> = BTreeMap::new();
    for l in text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
        let name_end = l.find(['{', ' ']).unwrap_or(l.len());
        let labels = match l[name_end..].strip_prefix('{') {
            Some(rest) => re.captures_iter(&rest[..rest.find('}').unwrap_or(rest.len())]).map(|c| (c[1].to_string(), c[2].to_string())).collect(),
            None => BTreeMap::new(),
        };
        out.entry(l[..name_end].to_string()).or_default().push(labels);
    }
    out
}

#[test]
fn expressions_are_parsed() {
    let s = selectors(r#"sum by (le, instance) (rate(gateway_redis_seconds_bucket{op="script"}[5m])) > 0.05 and max by (group) (deriv(worker_stream_pending[10m])) > 0"#);
    let names: Vec<_> = s.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["gateway_redis_seconds_bucket", "worker_stream_pending"]);
    assert_eq!(s[0].matchers, [("op".to_string(), "=".to_string(), "script".to_string())]);
    let s = selectors(r#"sum(rate(http_requests_total{status=~"5.."}[5m])) / sum(rate(http_requests_total[5m])) > 0.05"#);
    assert_eq!(s.len(), 2);
    assert_eq!(s[0].matchers[0].1, "=~");
    let s = selectors(r#"up{job="gateway"} == 0"#);
    assert_eq!(s[0].name, "up");
    let e = exported("# HELP x\nworker_stream_lag{group=\"workers\"} 0\nup 1\n");
    assert_eq!(e["worker_stream_lag"][0]["group"], "workers");
    assert!(e["up"][0].is_empty());
}

#[test]
fn the_listed_conditions_have_alerts() {
    let exprs: Vec<String> = rules().into_iter().map(|r| r.expr).collect();
    let all = exprs.join("\n");
    // Issue 20: dead letters, stream lag and pending growth, slow-consumer
    // closes, 5xx rate, Redis latency, nodes reaped, points actions timing out.
    for metric in [
        "worker_dead_letters_total",
        "worker_stream_lag",
        "worker_stream_pending",
        "gateway_slow_consumer_disconnects_total",
        "http_requests_total{status=~\"5..\"}",
        "gateway_redis_seconds_bucket",
        "worker_redis_seconds_bucket",
        "gateway_nodes_reaped_total",
        "gateway_points_timeouts_total",
    ] {
        assert!(all.contains(metric), "no alert on {metric}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_use_only_exported_metrics_and_labels() {
    let rules = rules();
    assert!(rules.len() >= 12);
    let s = Stack::start(1, 1, Db::Sqlite).await;
    // Traffic through every layer: a send (gateway script, log, worker
    // persist and acks), history and a points action over HTTP.
    let tok = s.agent_token().await;
    let (cust_tok, conv) = s.customer("alerts-ann").await;
    let mut cust = s.ws(0, &cust_tok).await;
    let ack = cust.say(&conv, "hello metrics").await;
    assert_eq!(ack["type"], "ack", "{ack}");
    let seq = ack["seq"].as_u64().unwrap();
    s.history_until(&conv, &tok, |h| h.iter().any(|m| m["seq"] == seq)).await;
    // A customer's id is its conversation's.
    let r = s
        .http
        .post(format!("{}/api/customers/{conv}/points", s.url(0)))
        .bearer_auth(&tok)
        .header("Idempotency-Key", testkit::uuid())
        .json(&json!({"amount": 5, "reason": "alerts test"}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "points: {}", r.status());

    let http = reqwest::Client::new();
    let gw = http.get(format!("http://{}/metrics", s.gateways[0].metrics)).send().await.unwrap().text().await.unwrap();
    // The worker's stream gauges and Redis timings come with its claim tick.
    let mut wk = String::new();
    for _ in 0..100 {
        wk = http.get(format!("http://{}/metrics", s.workers[0].addr)).send().await.unwrap().text().await.unwrap();
        if wk.contains("worker_stream_lag") && wk.contains("worker_redis_seconds_bucket") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut have = exported(&gw);
    for (k, v) in exported(&wk) {
        have.entry(k).or_default().extend(v);
    }
    // `up` is Prometheus's own, per scrape job of prometheus.yml.
    let prom = std::fs::read_to_string(grafana_dir().join("prometheus.yml")).unwrap();
    let prom: serde_yaml::Value = serde_yaml::from_str(&prom).unwrap();
    let jobs: BTreeSet<String> = prom["scrape_configs"].as_sequence().unwrap().iter().map(|j| j["job_name"].as_str().unwrap().to_string()).collect();
    assert!(prom["rule_files"].as_sequence().unwrap().iter().any(|f| f == "alerts.yml"), "prometheus.yml loads alerts.yml");
    have.insert("up".into(), jobs.iter().map(|j| BTreeMap::from([("job".to_string(), j.clone())])).collect());

    let mut problems = vec![];
    for r in &rules {
        let sels = selectors(&r.expr);
        if sels.is_empty() {
            problems.push(format!("{}: selects no metric: `{}`", r.alert, r.expr));
        }
        for sel in sels {
            let Some(series) = have.get(&sel.name) else {
                problems.push(format!("{}: {} is not exported (in `{}`)", r.alert, sel.name, r.expr));
                continue;
            };
            for (label, op, value) in &sel.matchers {
                if !series.iter().any(|s| s.contains_key(label)) {
                    problems.push(format!("{}: {} has no label {label}", r.alert, sel.name));
                } else if op == "=" && !series.iter().any(|s| s.get(label) == Some(value)) {
                    let seen: BTreeSet<&String> = series.iter().filter_map(|s| s.get(label)).collect();
                    problems.push(format!("{}: no series {}{{{label}=\"{value}\"}} (exported values: {seen:?})", r.alert, sel.name));
                }
            }
        }
    }
    assert!(problems.is_empty(), "alert rules select what nobody exports:\n{}", problems.join("\n"));
}
