//! The OpenAPI 3 description of the REST API, served at
//! `GET /api/openapi.json`: assembled here from the `#[utoipa::path]`
//! annotations that sit on the handlers (`http/<resource>.rs`), with their
//! request and reply types (`ToSchema`) and the one error shape
//! (`error::ErrorReply`).
//!
//! Adding a route:
//! 1. its arm in the route table (`http/mod.rs`, `route` or `api`), with its
//!    route label (the OpenAPI path: `/api/things/{id}`);
//! 2. `#[utoipa::path(<method>, path = "<label>", tag, params, request_body,
//!    security, responses(...))]` on its handler, next to it; bodies and
//!    replies as `#[derive(ToSchema)]` types, every error status with
//!    `body = ErrorReply`;
//! 3. the handler in `paths(...)` below.
//!
//! The test below reads the route table and fails naming every route that
//! is not described here (and every described path no route serves).

use std::sync::OnceLock;

use hyper::{Response, StatusCode};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::error::{json_response, Body};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Customer chat REST API",
        description = "The gateway's REST API (the real-time part is the WebSocket at /ws: docs/protocol.md). \
            Every error is `{\"error\":{\"code\",\"message\"}}` with the status its code names.",
    ),
    paths(
        super::health::healthz,
        super::health::readyz,
        crate::ws::upgrade::ws_upgrade,
        openapi_json,
        super::attachments::upload,
        super::attachments::download_file,
        super::attachments::download_thumbnail,
        super::attachments::link,
        super::auth::login,
        super::auth::logout,
        super::auth::me,
        super::auth::ws_ticket,
        super::auth::dev_customer_token,
        super::conversations::list,
        super::conversations::one,
        super::conversations::messages,
        super::conversations::message_edits,
        super::conversations::customer,
        super::loyalty::vouchers,
        super::loyalty::orders,
        super::loyalty::transactions,
        super::loyalty::give_points,
        super::loyalty::reset_points,
        super::orders::order_event,
    ),
    modifiers(&SecuritySchemes),
    tags(
        (name = "sessions", description = "Agent login, sessions, WebSocket tickets"),
        (name = "conversations", description = "The chat list, conversations, history"),
        (name = "customers", description = "Customer profiles and the loyalty panel"),
        (name = "orders", description = "Order events from the order system"),
        (name = "realtime", description = "The WebSocket"),
        (name = "health", description = "Liveness and readiness"),
        (name = "dev", description = "Dev mode only (CHAT_DEV=1)"),
        (name = "meta", description = "This description"),
    )
)]
pub struct ApiDoc;

/// `bearer`: an agent's session token (`POST /api/login`) or a customer
/// token (signed by the business backend); `service`: `CHAT_SERVICE_TOKEN`.
struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        let c = api.components.get_or_insert_with(Default::default);
        let bearer = |what: &str| {
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).description(Some(what.to_string())).build())
        };
        c.add_security_scheme("bearer", bearer("An agent session token (POST /api/login) or a customer token"));
        c.add_security_scheme("service", bearer("The order system's CHAT_SERVICE_TOKEN"));
    }
}

/// The description as JSON, rendered once.
pub fn json() -> &'static str {
    static JSON: OnceLock<String> = OnceLock::new();
    JSON.get_or_init(|| ApiDoc::openapi().to_json().unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}")))
}

/// `GET /api/openapi.json`: this description (no authentication).
#[utoipa::path(get, path = "/api/openapi.json", tag = "meta",
    responses((status = 200, description = "The OpenAPI 3 description of this API", body = Object)))]
pub fn openapi_json() -> Response<Body> {
    let v: serde_json::Value = serde_json::from_str(json()).unwrap_or_default();
    json_response(StatusCode::OK, &v)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// (METHOD, path) of every arm of the route table in `http/mod.rs` that
    /// a client may call, read from its source: `(Method::GET, [...]) =>
    /// ("/api/label", ...)` in `api`, `(&Method::GET, "/x") => ("/x", ...)`
    /// in `route`. Arms labelled "static" or "other" (the console's files,
    /// refusals) and the test-only echo route are not API routes.
    fn route_table() -> BTreeSet<(String, String)> {
        let src = include_str!("mod.rs");
        let arm = regex_lite(src);
        arm.into_iter().filter(|(_, label)| !matches!(label.as_str(), "static" | "other" | "/ws-echo")).collect()
    }

    /// A small parser of the arms (no regex crate in the gateway): every
    /// line that starts a match arm on a method, with the first string
    /// literal after its `=>` as its label. Panics on an arm whose label it
    /// cannot find, so a new arm written another way fails loudly instead
    /// of escaping the check.
    fn regex_lite(src: &str) -> Vec<(String, String)> {
        let mut out = vec![];
        let lines: Vec<&str> = src.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let t = line.trim_start();
            let method = if let Some(r) = t.strip_prefix("(Method::").or_else(|| t.strip_prefix("(&Method::")) {
                r.split(|c: char| !c.is_ascii_alphabetic()).next().unwrap_or("").to_string()
            } else if t.starts_with("(_, \"/") {
                // Any method (the WebSocket upgrade is a GET).
                "GET".to_string()
            } else {
                continue;
            };
            if !t.contains("=>") {
                continue;
            }
            // The label: the first string literal after `=>`, on this line or the next two.
            let after = t.split_once("=>").map(|(_, r)| r.to_string()).unwrap_or_default();
            let rest = [after, lines.get(i + 1).copied().unwrap_or("").to_string(), lines.get(i + 2).copied().unwrap_or("").to_string()].join("\n");
            let label = rest
                .split('"')
                .nth(1)
                .filter(|l| l.starts_with('/') || *l == "static" || *l == "other")
                .unwrap_or_else(|| panic!("http/mod.rs:{}: a route arm without a route label: {t}", i + 1));
            let m = if method == "GET" && t.contains("Method::HEAD") { "GET".into() } else { method };
            out.push((m.to_uppercase(), label.to_string()));
        }
        out
    }

    fn described() -> BTreeSet<(String, String)> {
        let v: serde_json::Value = serde_json::from_str(json()).unwrap();
        let mut out = BTreeSet::new();
        for (path, item) in v["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                out.insert((method.to_uppercase(), path.clone()));
            }
        }
        out
    }

    #[test]
    fn every_route_is_described() {
        let table = route_table();
        assert!(table.len() >= 18, "the route table parsed to {table:?}");
        let spec = described();
        let missing: Vec<String> = table.difference(&spec).map(|(m, p)| format!("{m} {p}")).collect();
        assert!(
            missing.is_empty(),
            "routes of http/mod.rs missing from the OpenAPI description: {missing:?}\n\
             add #[utoipa::path] to each handler and list it in http/openapi.rs paths(...)"
        );
        let stale: Vec<String> = spec.difference(&table).map(|(m, p)| format!("{m} {p}")).collect();
        assert!(stale.is_empty(), "described but no route in http/mod.rs serves them: {stale:?}");
    }

    #[test]
    fn the_description_is_openapi_3_with_errors_and_security() {
        let v: serde_json::Value = serde_json::from_str(json()).unwrap();
        assert!(v["openapi"].as_str().unwrap().starts_with("3."));
        let schemas = &v["components"]["schemas"];
        assert_eq!(schemas["ErrorReply"]["required"], serde_json::json!(["error"]));
        assert!(v["components"]["securitySchemes"]["bearer"].is_object());
        // Every 4xx/5xx reply of an API route is the error shape.
        for (path, item) in v["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                for (status, r) in op["responses"].as_object().unwrap() {
                    if status.starts_with('4') || (status.starts_with('5') && path != "/readyz") {
                        let s = &r["content"]["application/json"]["schema"]["$ref"];
                        assert_eq!(s, "#/components/schemas/ErrorReply", "{method} {path} {status}");
                    }
                }
            }
        }
    }

    #[test]
    fn the_parser_reads_arms() {
        let src = "        (Method::POST, [\"login\"]) => (\"/api/login\", x),\n        (Method::GET, [\"c\", id]) => {\n            let id = id.to_string();\n            (\"/api/c/{id}\", y)\n        }\n        (&Method::GET | &Method::HEAD, _) => (\"static\", z),\n";
        assert_eq!(
            regex_lite(src),
            [("POST".into(), "/api/login".into()), ("GET".into(), "/api/c/{id}".into()), ("GET".into(), "static".into())]
        );
    }
}
