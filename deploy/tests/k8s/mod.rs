//! Reading the manifests of `deploy/k8s` (shared by the tests of this folder):
//! the documents, the Redis users of the `chat-redis` Secret, and an
//! evaluator of the NetworkPolicies (which peer may open a connection to
//! which pod and port).

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use serde_yaml::Value;

/// Every document of every file: (file name, document).
pub fn docs() -> Vec<(String, Value)> {
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

pub fn find<'a>(docs: &'a [(String, Value)], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .map(|(_, v)| v)
        .find(|v| v["kind"] == kind && v["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

/// The pod template of a Deployment, StatefulSet or Job (None for other kinds).
pub fn pod_template(d: &Value) -> Option<&Value> {
    matches!(d["kind"].as_str(), Some("Deployment" | "StatefulSet" | "Job")).then(|| &d["spec"]["template"])
}

/// Every container (init containers included) of every workload: (workload name, container).
pub fn containers(docs: &[(String, Value)]) -> Vec<(String, &Value)> {
    let mut out = vec![];
    for (_, d) in docs {
        if let Some(t) = pod_template(d) {
            for list in ["initContainers", "containers"] {
                for c in t["spec"][list].as_sequence().into_iter().flatten() {
                    out.push((d["metadata"]["name"].as_str().unwrap().to_string(), c));
                }
            }
        }
    }
    out
}

/// Every string under `v` (commands, arguments, probe commands...).
pub fn strings<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
    match v {
        Value::String(s) => out.push(s),
        Value::Sequence(items) => items.iter().for_each(|i| strings(i, out)),
        Value::Mapping(m) => m.values().for_each(|i| strings(i, out)),
        _ => {}
    }
}

/// One ACL user of `users.acl`: on/off, passwords (`>pw`), key and channel
/// patterns (`~p`, `&p`) and the command rules, in order.
#[derive(Debug, Default)]
pub struct AclUser {
    pub on: bool,
    pub passwords: Vec<String>,
    pub keys: Vec<String>,
    pub channels: Vec<String>,
    pub rules: Vec<String>,
}

/// The users of the `chat-redis` Secret's `users.acl`, by name.
pub fn acl_users(docs: &[(String, Value)]) -> BTreeMap<String, AclUser> {
    let text = find(docs, "Secret", "chat-redis")["stringData"]["users.acl"].as_str().expect("users.acl");
    let mut out = BTreeMap::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let mut words = line.split_whitespace();
        assert_eq!(words.next(), Some("user"), "users.acl: {line}");
        let name = words.next().expect("user name").to_string();
        let mut u = AclUser::default();
        for w in words {
            match w {
                "on" => u.on = true,
                "off" => u.on = false,
                "resetkeys" => u.keys.clear(),
                "resetchannels" => u.channels.clear(),
                "allkeys" => u.keys.push("*".into()),
                "allchannels" => u.channels.push("*".into()),
                "nopass" => u.passwords.push(String::new()),
                _ => match w.split_at(1) {
                    (">", pw) => u.passwords.push(pw.into()),
                    ("~", p) => u.keys.push(p.into()),
                    ("&", p) => u.channels.push(p.into()),
                    ("+" | "-", _) => u.rules.push(w.into()),
                    _ => panic!("users.acl: unknown rule {w} in {line}"),
                },
            }
        }
        assert!(out.insert(name.clone(), u).is_none(), "users.acl: {name} twice");
    }
    out
}

/// A `redis://user:password@host:port` URL, split (no percent-decoding: the
/// Secret's passwords are plain).
#[derive(Debug)]
pub struct RedisUrl {
    pub user: String,
    pub password: String,
    pub host: String,
    pub port: u16,
}

pub fn parse_redis_url(u: &str) -> RedisUrl {
    let rest = u.trim().strip_prefix("redis://").unwrap_or_else(|| panic!("{u}: not redis://"));
    let (creds, addr) = rest.rsplit_once('@').unwrap_or_else(|| panic!("{u}: no credentials"));
    let (user, password) = creds.split_once(':').unwrap_or_else(|| panic!("{u}: no user:password"));
    let addr = addr.trim_end_matches('/');
    let (host, port) = addr.rsplit_once(':').unwrap_or((addr, "6379"));
    RedisUrl { user: user.into(), password: password.into(), host: host.into(), port: port.parse().unwrap() }
}

// ---------------------------------------------------------------- NetworkPolicy

/// Who opens the connection: a pod with these labels in this namespace.
#[derive(Debug, Clone)]
pub struct Peer {
    pub namespace: String,
    pub labels: BTreeMap<String, String>,
}

impl Peer {
    pub fn new(namespace: &str, labels: &[(&str, &str)]) -> Peer {
        Peer { namespace: namespace.into(), labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect() }
    }

    /// The pods of a workload of the manifests (namespace `chat`).
    pub fn workload(docs: &[(String, Value)], kind: &str, name: &str) -> Peer {
        let labels = &pod_template(find(docs, kind, name)).unwrap()["metadata"]["labels"];
        Peer { namespace: "chat".into(), labels: labels_of(labels) }
    }

    fn namespace_labels(&self) -> BTreeMap<String, String> {
        // What Kubernetes sets on every namespace.
        BTreeMap::from([("kubernetes.io/metadata.name".to_string(), self.namespace.clone())])
    }
}

fn labels_of(v: &Value) -> BTreeMap<String, String> {
    v.as_mapping()
        .map(|m| m.iter().map(|(k, v)| (k.as_str().unwrap().to_string(), v.as_str().unwrap().to_string())).collect())
        .unwrap_or_default()
}

/// A label selector (matchLabels only; the manifests use no expressions).
pub fn selects(selector: &Value, labels: &BTreeMap<String, String>) -> bool {
    assert!(selector["matchExpressions"].is_null(), "matchExpressions are not evaluated here");
    labels_of(&selector["matchLabels"]).iter().all(|(k, v)| labels.get(k) == Some(v))
}

fn peer_matches(rule_peer: &Value, policy_ns: &str, from: &Peer) -> bool {
    assert!(rule_peer["ipBlock"].is_null(), "ipBlock is not evaluated here");
    let ns_ok = match &rule_peer["namespaceSelector"] {
        Value::Null => from.namespace == policy_ns,
        sel => selects(sel, &from.namespace_labels()),
    };
    let pod_ok = match &rule_peer["podSelector"] {
        Value::Null => true,
        sel => selects(sel, &from.labels),
    };
    ns_ok && pod_ok
}

/// The target container port `port` (a number) under a rule's port entry
/// (a number or the name of one of the target's container ports).
fn port_matches(rule_port: &Value, port: u16, target_ports: &[(String, u16)]) -> bool {
    match &rule_port["port"] {
        Value::Null => true,
        Value::Number(n) => n.as_u64() == Some(port as u64),
        Value::String(name) => target_ports.iter().any(|(n, p)| n == name && *p == port),
        other => panic!("port {other:?}"),
    }
}

/// May `from` open a TCP connection to port `port` of a pod of the workload
/// (`kind`, `name`)? Kubernetes' rule: a pod selected by no Ingress policy
/// admits everything; otherwise some selecting policy must admit the peer on
/// that port.
pub fn reachable(docs: &[(String, Value)], kind: &str, name: &str, port: u16, from: &Peer) -> bool {
    let template = pod_template(find(docs, kind, name)).unwrap();
    let labels = labels_of(&template["metadata"]["labels"]);
    let ports: Vec<(String, u16)> = template["spec"]["containers"]
        .as_sequence()
        .into_iter()
        .flatten()
        .flat_map(|c| c["ports"].as_sequence().into_iter().flatten())
        .filter_map(|p| Some((p["name"].as_str()?.to_string(), p["containerPort"].as_u64()? as u16)))
        .collect();
    let policies: Vec<&Value> = docs
        .iter()
        .map(|(_, d)| d)
        .filter(|d| d["kind"] == "NetworkPolicy" && d["metadata"]["namespace"] == "chat")
        .filter(|d| d["spec"]["policyTypes"].as_sequence().is_some_and(|t| t.iter().any(|t| t == "Ingress")))
        .filter(|d| selects(&d["spec"]["podSelector"], &labels))
        .collect();
    if policies.is_empty() {
        return true;
    }
    policies.iter().any(|p| {
        p["spec"]["ingress"].as_sequence().into_iter().flatten().any(|rule| {
            let peer_ok = match rule["from"].as_sequence() {
                None => true,
                Some(peers) => peers.iter().any(|rp| peer_matches(rp, "chat", from)),
            };
            let port_ok = match rule["ports"].as_sequence() {
                None => true,
                Some(ps) => ps.iter().any(|rp| port_matches(rp, port, &ports)),
            };
            peer_ok && port_ok
        })
    })
}
