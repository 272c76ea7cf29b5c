//! The Kubernetes manifests in `deploy/k8s` parse and carry what running the
//! product at scale needs: probes, graceful termination, settings, resources.

use std::collections::BTreeSet;
use std::path::Path;

use serde_yaml::Value;

fn docs() -> Vec<(String, Value)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("k8s");
    let mut out = vec![];
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        for d in serde_yaml::Deserializer::from_str(&text) {
            let v = Value::deserialize(d).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            if !v.is_null() {
                out.push((f.file_name().unwrap().to_string_lossy().into_owned(), v));
            }
        }
    }
    out
}

use serde::Deserialize;

fn find<'a>(docs: &'a [(String, Value)], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .map(|(_, v)| v)
        .find(|v| v["kind"] == kind && v["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

fn env_names(c: &Value) -> BTreeSet<String> {
    c["env"].as_sequence().map(|s| s.iter().filter_map(|e| e["name"].as_str().map(String::from)).collect()).unwrap_or_default()
}

#[test]
fn every_document_is_well_formed() {
    let docs = docs();
    assert!(docs.len() >= 12, "{} documents", docs.len());
    for (file, d) in &docs {
        assert!(d["apiVersion"].as_str().is_some_and(|s| !s.is_empty()), "{file}: apiVersion");
        assert!(d["kind"].as_str().is_some(), "{file}: kind");
        assert!(d["metadata"]["name"].as_str().is_some(), "{file}: metadata.name");
        if d["kind"] != "Namespace" {
            assert_eq!(d["metadata"]["namespace"], "chat", "{file}: namespace");
        }
        // Workloads: selector matches the template's labels; every container has an image and resources.
        if matches!(d["kind"].as_str(), Some("Deployment" | "StatefulSet")) {
            let sel = d["spec"]["selector"]["matchLabels"].as_mapping().expect("selector");
            let labels = d["spec"]["template"]["metadata"]["labels"].as_mapping().expect("labels");
            for (k, v) in sel {
                assert_eq!(labels.get(k), Some(v), "{file}: selector does not match labels");
            }
            for c in d["spec"]["template"]["spec"]["containers"].as_sequence().expect("containers") {
                assert!(c["image"].as_str().is_some(), "{file}: image");
                assert!(c["resources"]["requests"].is_mapping(), "{file}: resources");
                assert!(c["readinessProbe"].is_mapping(), "{file}: readinessProbe");
            }
        }
    }
}

#[test]
fn gateway_and_worker_are_ready_for_rolling_restarts() {
    let docs = docs();
    let config = find(&docs, "ConfigMap", "chat-config");
    let secret = find(&docs, "Secret", "chat-secrets");
    for key in ["REDIS_URL", "CHAT_REDIS_CLUSTER", "CHAT_KEY_PREFIX", "CHAT_LOG_SHARDS"] {
        assert!(config["data"][key].is_string(), "config lacks {key}");
    }
    for key in ["DATABASE_URL", "CHAT_CUSTOMER_SECRET"] {
        assert!(secret["stringData"][key].is_string(), "secret lacks {key}");
    }
    assert!(secret["stringData"]["DATABASE_URL"].as_str().unwrap().starts_with("postgres://"));

    let gw = find(&docs, "Deployment", "gateway");
    let spec = &gw["spec"]["template"]["spec"];
    let c = &spec["containers"][0];
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    let grace = spec["terminationGracePeriodSeconds"].as_u64().unwrap();
    let drain: u64 = config["data"]["CHAT_SHUTDOWN_GRACE_SECS"].as_str().unwrap().parse().unwrap();
    assert!(grace > drain + 5, "the pod's grace ({grace}s) must cover the gateway's drain ({drain}s) and preStop");
    let env = env_names(c);
    assert!(env.contains("GATEWAY_ADDR") && env.contains("CHAT_NODE_ID"), "{env:?}");
    assert!(gw["spec"]["replicas"].as_u64().unwrap() >= 2);
    assert_eq!(gw["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"], 0);
    find(&docs, "Service", "gateway");
    find(&docs, "PodDisruptionBudget", "gateway");

    let wk = find(&docs, "Deployment", "worker");
    let c = &wk["spec"]["template"]["spec"]["containers"][0];
    let env = env_names(c);
    assert!(env.contains("WORKER_ID") && env.contains("WORKER_METRICS_ADDR"), "{env:?}");
    for workload in [gw, wk] {
        let froms: Vec<&str> = workload["spec"]["template"]["spec"]["containers"][0]["envFrom"]
            .as_sequence()
            .unwrap()
            .iter()
            .filter_map(|e| e["configMapRef"]["name"].as_str().or(e["secretRef"]["name"].as_str()))
            .collect();
        assert_eq!(froms, ["chat-config", "chat-secrets"]);
    }
}

#[test]
fn redis_cluster_and_postgres_exist() {
    let docs = docs();
    let rc = find(&docs, "StatefulSet", "redis-cluster");
    assert!(rc["spec"]["replicas"].as_u64().unwrap() >= 3, "a cluster needs at least 3 masters");
    let conf = find(&docs, "ConfigMap", "redis-cluster")["data"]["redis.conf"].as_str().unwrap();
    assert!(conf.contains("cluster-enabled yes"));
    let job = find(&docs, "Job", "redis-cluster-create");
    assert!(serde_yaml::to_string(job).unwrap().contains("--cluster create"));
    let pg = find(&docs, "StatefulSet", "postgres");
    assert!(pg["spec"]["volumeClaimTemplates"].is_sequence());
    // The gateway's seed nodes name pods of that StatefulSet.
    let urls = find(&docs, "ConfigMap", "chat-config")["data"]["REDIS_URL"].as_str().unwrap();
    assert!(urls.split(',').count() >= 3 && urls.contains("redis-cluster-0.redis-cluster"));
}
