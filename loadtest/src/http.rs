//! The agents' REST part, driven by goose: each goose user logs in (on
//! start), then opens the chat list and conversations (history and the
//! conversation's state) with think time in between. goose prints its own
//! report (per request: counts, failures, response-time percentiles).

use std::sync::OnceLock;
use std::time::Duration;

use goose::config::GooseConfiguration;
use goose::prelude::*;
use serde::Serialize;

struct Setup {
    user: String,
    pass: String,
    convs: Vec<String>,
}

static SETUP: OnceLock<Setup> = OnceLock::new();

#[derive(Clone)]
struct Token(String);

async fn login(user: &mut GooseUser) -> TransactionResult {
    let s = SETUP.get().expect("setup before goose starts");
    let body = serde_json::json!({"username": s.user, "password": s.pass});
    let resp = user.post_json("/api/login", &body).await?;
    let token = match resp.response {
        Ok(r) => r.json::<serde_json::Value>().await.ok(),
        Err(_) => None,
    };
    if let Some(t) = token.as_ref().and_then(|v| v["token"].as_str()) {
        user.set_session_data(Token(t.to_string()));
    }
    Ok(())
}

async fn authed_get(user: &mut GooseUser, path: &str, name: &str) -> TransactionResult {
    let token = user.get_session_data::<Token>().map(|t| t.0.clone()).unwrap_or_default();
    let rb = user.get_request_builder(&GooseMethod::Get, path)?.bearer_auth(token);
    let req = GooseRequest::builder().set_request_builder(rb).name(name).build();
    user.request(req).await?;
    Ok(())
}

async fn chat_list(user: &mut GooseUser) -> TransactionResult {
    authed_get(user, "/api/conversations?limit=50", "GET /api/conversations?limit=50").await
}

async fn open_conversation(user: &mut GooseUser) -> TransactionResult {
    let s = SETUP.get().expect("setup");
    if s.convs.is_empty() {
        return Ok(());
    }
    let c = &s.convs[rand::random::<usize>() % s.convs.len()];
    authed_get(user, &format!("/api/conversations/{c}/messages?limit=50"), "GET /api/conversations/{id}/messages").await?;
    authed_get(user, &format!("/api/conversations/{c}"), "GET /api/conversations/{id}").await
}

/// What the load report keeps of goose's figures.
#[derive(Debug, Clone, Default, Serialize)]
pub struct HttpSummary {
    pub requests: usize,
    pub failures: usize,
}

/// Runs the agents' REST scenario for `secs` against `base` with `users` goose users.
pub async fn run(base: &str, users: usize, secs: u64, user: &str, pass: &str, convs: Vec<String>) -> anyhow::Result<HttpSummary> {
    let _ = SETUP.set(Setup { user: user.into(), pass: pass.into(), convs });
    let users_s = users.to_string();
    let secs_s = format!("{secs}s");
    let cfg = GooseConfiguration::parse_args_default(&[
        "--host",
        base,
        "--users",
        &users_s,
        "--increase-rate",
        &users_s,
        "--run-time",
        &secs_s,
        // No controllers: they listen on fixed ports, which parallel runs would fight over.
        "--no-telnet",
        "--no-websocket",
    ])
    .map_err(|e| anyhow::anyhow!("goose configuration: {e}"))?;
    let metrics = GooseAttack::initialize_with_config(cfg)?
        .register_scenario(
            scenario!("Agent")
                .set_wait_time(Duration::from_millis(100), Duration::from_millis(500))?
                .register_transaction(transaction!(login).set_on_start().set_name("login"))
                .register_transaction(transaction!(chat_list).set_weight(3)?.set_name("chat list"))
                .register_transaction(transaction!(open_conversation).set_weight(2)?.set_name("open conversation")),
        )
        .execute()
        .await?;
    let mut s = HttpSummary::default();
    for r in metrics.requests.values() {
        s.requests += r.success_count + r.fail_count;
        s.failures += r.fail_count;
    }
    Ok(s)
}
