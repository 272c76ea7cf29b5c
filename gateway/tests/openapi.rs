//! The OpenAPI description (`GET /api/openapi.json`, issue 20) is served
//! without credentials by a real gateway, and it is honest about the
//! replies: every operation, called without credentials or body, answers a
//! status the description lists for it, and every error is the `ErrorReply`
//! shape. (`scripts/api-fuzz.sh` fuzzes the same description with
//! schemathesis; `http/openapi.rs`'s unit test keeps it in step with the
//! route table.)

mod common;

use common::{Db, Stack};
use serde_json::Value;

#[tokio::test(flavor = "multi_thread")]
async fn every_described_operation_answers_a_described_status() {
    let s = Stack::start(1, 0, Db::Sqlite).await;
    let r = s.http.get(format!("{}/api/openapi.json", s.url(0))).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("application/json"));
    let spec: Value = r.json().await.unwrap();
    assert!(spec["openapi"].as_str().unwrap().starts_with("3."), "{}", spec["openapi"]);
    let paths = spec["paths"].as_object().unwrap();
    assert!(paths.len() >= 18, "{:?}", paths.keys());

    let mut checked = 0;
    for (path, item) in paths {
        for (method, op) in item.as_object().unwrap() {
            let url = format!("{}{}", s.url(0), path.replace("{id}", "nobody-here").replace("{seq}", "1"));
            let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let r = s.http.request(m, &url).send().await.unwrap();
            let status = r.status().as_u16();
            let listed: Vec<&String> = op["responses"].as_object().unwrap().keys().collect();
            assert!(listed.iter().any(|l| **l == status.to_string()), "{method} {path}: {status} is not among {listed:?}");
            let ctype = r.headers().get("content-type").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
            let body = r.text().await.unwrap();
            if status >= 400 {
                assert!(ctype.starts_with("application/json"), "{method} {path}: {status} as {ctype}");
                let v: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{method} {path}: {e}: {body}"));
                let e = &v["error"];
                assert!(e["code"].is_string() && e["message"].is_string() && e.as_object().unwrap().len() == 2, "{method} {path}: {body}");
                let described = &op["responses"][status.to_string()]["content"]["application/json"]["schema"]["$ref"];
                assert_eq!(described, "#/components/schemas/ErrorReply", "{method} {path} {status}");
            }
            checked += 1;
        }
    }
    assert!(checked >= 19, "{checked} operations");
}
