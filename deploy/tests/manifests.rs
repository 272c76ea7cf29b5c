//! The Kubernetes manifests in `deploy/k8s` parse and carry what running the
//! product at scale needs: probes, graceful termination, settings, resources;
//! Redis users and where every Redis client gets its credentials; network
//! policies that admit only the named clients (`redis_auth.rs` runs the
//! binaries against these very Redis users).

use std::collections::BTreeSet;

use serde_yaml::Value;

mod k8s;
use k8s::{acl_users, containers, docs, find, parse_redis_url, reachable, Peer};

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
    for key in ["CHAT_REDIS_CLUSTER", "CHAT_KEY_PREFIX", "CHAT_LOG_SHARDS"] {
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
    // Every role's seed nodes name pods of that StatefulSet.
    for key in ["GATEWAY_REDIS_URL", "WORKER_REDIS_URL"] {
        let urls = find(&docs, "Secret", "chat-redis")["stringData"][key].as_str().unwrap();
        assert!(urls.split(',').count() >= 3 && urls.contains("redis-cluster-0.redis-cluster"), "{key}");
    }
}

/// `env` entry `name` of a container.
fn env_entry<'a>(c: &'a Value, name: &str) -> Option<&'a Value> {
    c["env"].as_sequence()?.iter().find(|e| e["name"] == name)
}

/// The (Secret, key) an env entry reads, when it reads one.
fn secret_ref(e: &Value) -> Option<(&str, &str)> {
    let r = &e["valueFrom"]["secretKeyRef"];
    Some((r["name"].as_str()?, r["key"].as_str()?))
}

#[test]
fn redis_asks_every_client_for_a_user_of_the_secret() {
    let docs = docs();
    let users = acl_users(&docs);
    let secret = &find(&docs, "Secret", "chat-redis")["stringData"];
    let prefix = find(&docs, "ConfigMap", "chat-config")["data"]["CHAT_KEY_PREFIX"].as_str().unwrap();

    // Without a password nobody gets in.
    assert!(!users["default"].on, "the default user must be off");
    // The application's users: their own keys and channels only, no admin or dangerous commands.
    for role in ["gateway", "worker"] {
        let u = &users[role];
        assert!(u.on && !u.passwords.is_empty() && u.passwords.iter().all(|p| p.len() >= 8), "{role}: {u:?}");
        assert_eq!(u.keys, [format!("{prefix}*")], "{role}'s keys");
        assert_eq!(u.channels, [format!("{prefix}*")], "{role}'s channels");
        for r in ["-@admin", "-@dangerous"] {
            assert!(u.rules.iter().any(|x| x == r), "{role} lacks {r}: {:?}", u.rules);
        }
    }

    // The two Redis clients of the product: REDIS_URL from this Secret, the
    // URL's user and password one of users.acl's.
    let config = find(&docs, "ConfigMap", "chat-config");
    let config_text = serde_yaml::to_string(config).unwrap();
    assert!(!config_text.contains("redis://"), "Redis URLs carry credentials: not in the ConfigMap");
    for (workload, role, key) in [("gateway", "gateway", "GATEWAY_REDIS_URL"), ("worker", "worker", "WORKER_REDIS_URL")] {
        let c = &find(&docs, "Deployment", workload)["spec"]["template"]["spec"]["containers"][0];
        let e = env_entry(c, "REDIS_URL").unwrap_or_else(|| panic!("{workload}: no REDIS_URL"));
        assert_eq!(secret_ref(e), Some(("chat-redis", key)), "{workload}'s REDIS_URL");
        let urls = secret[key].as_str().unwrap();
        for u in urls.split(',') {
            let u = parse_redis_url(u);
            assert_eq!(u.user, role, "{key}: {workload} logs in as its own user");
            assert!(users[role].passwords.contains(&u.password), "{key}: the password is not {role}'s in users.acl");
        }
    }

    // Redis itself: loads the ACL from the Secret, replicas authenticate to
    // their masters with the replica user's password from the Secret.
    let conf = find(&docs, "ConfigMap", "redis-cluster")["data"]["redis.conf"].as_str().unwrap();
    assert!(conf.contains("aclfile /acl/users.acl") && conf.contains("masteruser replica"), "{conf}");
    let rc = find(&docs, "StatefulSet", "redis-cluster");
    let acl_volume = rc["spec"]["template"]["spec"]["volumes"].as_sequence().unwrap().iter().find(|v| v["name"] == "acl").expect("acl volume");
    assert_eq!(acl_volume["secret"]["secretName"], "chat-redis");
    let redis = &rc["spec"]["template"]["spec"]["containers"][0];
    assert!(redis["volumeMounts"].as_sequence().unwrap().iter().any(|m| m["name"] == "acl" && m["mountPath"] == "/acl"));
    let cmd: Vec<&str> = redis["command"].as_sequence().unwrap().iter().filter_map(Value::as_str).collect();
    let at = cmd.iter().position(|a| *a == "--masterauth").expect("--masterauth");
    assert_eq!(cmd[at + 1], "$(REPLICA_PASSWORD)");
    assert_eq!(secret_ref(env_entry(redis, "REPLICA_PASSWORD").unwrap()), Some(("chat-redis", "REPLICA_PASSWORD")));
    assert!(users["replica"].passwords.contains(&secret["REPLICA_PASSWORD"].as_str().unwrap().to_string()));

    // Every other Redis client (probes, the Job: whatever runs redis-cli)
    // names a user and reads that user's password from the Secret.
    let mut clients = 0;
    for (workload, c) in containers(&docs) {
        let mut strings = vec![];
        k8s::strings(c, &mut strings);
        let calls: Vec<&str> = strings.iter().filter(|l| l.contains("redis-cli")).copied().collect();
        if calls.is_empty() {
            continue;
        }
        clients += 1;
        for line in calls {
            let user = line.split("--user ").nth(1).and_then(|r| r.split_whitespace().next()).unwrap_or_else(|| panic!("{workload}: redis-cli without --user: {line}"));
            let var = format!("{}_PASSWORD", user.to_uppercase());
            assert!(line.contains(&format!("--pass \"${var}\"")), "{workload}: redis-cli must take {user}'s password from ${var}: {line}");
            let e = env_entry(c, &var).unwrap_or_else(|| panic!("{workload}: no {var}"));
            assert_eq!(secret_ref(e), Some(("chat-redis", var.as_str())), "{workload}: {var}");
            assert!(users[user].passwords.contains(&secret[var.as_str()].as_str().unwrap().to_string()), "{var} is not {user}'s password");
        }
    }
    assert!(clients >= 2, "the Redis probe and the cluster Job use redis-cli");

    // No password of users.acl appears in a manifest outside the Secret.
    for (file, d) in &docs {
        if d["kind"] == "Secret" {
            continue;
        }
        let text = serde_yaml::to_string(d).unwrap();
        for (name, u) in &users {
            for pw in u.passwords.iter().filter(|p| !p.is_empty()) {
                assert!(!text.contains(pw.as_str()), "{file}: {name}'s password outside the Secret");
            }
        }
    }
}

#[test]
fn network_policies_admit_only_the_named_clients() {
    let docs = docs();
    let gateway = Peer::workload(&docs, "Deployment", "gateway");
    let worker = Peer::workload(&docs, "Deployment", "worker");
    let redis = Peer::workload(&docs, "StatefulSet", "redis-cluster");
    let job = Peer::workload(&docs, "Job", "redis-cluster-create");
    let postgres = Peer::workload(&docs, "StatefulSet", "postgres");
    let ingress = Peer::new("ingress-nginx", &[("app.kubernetes.io/name", "ingress-nginx")]);
    let prometheus = Peer::new("monitoring", &[("app.kubernetes.io/name", "prometheus")]);
    // Anything else: a debug pod in the namespace, another team's pod, the
    // ingress namespace's other pods.
    let stranger = Peer::new("chat", &[("app", "debug")]);
    let other_ns = Peer::new("default", &[("app", "chat"), ("component", "gateway")]);
    let ingress_other = Peer::new("ingress-nginx", &[("app", "something-else")]);

    // Every policy selects pods that exist (a typo in a label would protect nothing).
    let workloads = [&gateway, &worker, &redis, &job, &postgres];
    for (_, d) in docs.iter().filter(|(_, d)| d["kind"] == "NetworkPolicy") {
        let sel = &d["spec"]["podSelector"];
        assert!(workloads.iter().any(|w| k8s::selects(sel, &w.labels)), "{} selects no pod", d["metadata"]["name"].as_str().unwrap());
    }
    let can = |kind: &str, name: &str, port: u16, from: &Peer| reachable(&docs, kind, name, port, from);

    // Redis: gateways, workers, the Job, and Redis pods to each other (replication, bus).
    for from in [&gateway, &worker, &job, &redis] {
        assert!(can("StatefulSet", "redis-cluster", 6379, from), "{from:?} must reach Redis");
    }
    assert!(can("StatefulSet", "redis-cluster", 16379, &redis), "cluster bus between Redis pods");
    for from in [&stranger, &other_ns, &ingress, &ingress_other, &prometheus, &postgres] {
        assert!(!can("StatefulSet", "redis-cluster", 6379, from), "{from:?} must not reach Redis");
    }
    for from in [&gateway, &worker, &job] {
        assert!(!can("StatefulSet", "redis-cluster", 16379, from), "{from:?} must not reach the cluster bus");
    }

    // PostgreSQL: gateways and workers.
    for from in [&gateway, &worker] {
        assert!(can("StatefulSet", "postgres", 5432, from), "{from:?} must reach PostgreSQL");
    }
    for from in [&stranger, &other_ns, &ingress, &redis, &job, &prometheus] {
        assert!(!can("StatefulSet", "postgres", 5432, from), "{from:?} must not reach PostgreSQL");
    }

    // Gateways' public port: the ingress controller only; /metrics: Prometheus only.
    assert!(can("Deployment", "gateway", 8080, &ingress));
    for from in [&stranger, &other_ns, &ingress_other, &worker, &redis, &prometheus] {
        assert!(!can("Deployment", "gateway", 8080, from), "{from:?} must not reach the gateways' public port");
    }
    assert!(can("Deployment", "gateway", 9092, &prometheus));
    assert!(can("Deployment", "worker", 9091, &prometheus));
    for from in [&stranger, &ingress, &gateway] {
        assert!(!can("Deployment", "gateway", 9092, from), "{from:?} must not reach the gateways' metrics");
        assert!(!can("Deployment", "worker", 9091, from), "{from:?} must not reach the workers' metrics");
    }
    // The Ingress routes to the Service's named port, which is the gateways' public port.
    let ing = find(&docs, "Ingress", "gateway");
    let backend = &ing["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"];
    assert_eq!(backend["name"], "gateway");
    assert_eq!(backend["port"]["name"], "http");
}
