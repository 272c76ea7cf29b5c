//! The HTTP loyalty adapter (`CHAT_LOYALTY_URL`) against a small real HTTP
//! server started by the test: the contract of docs/loyalty-service.md,
//! backed by memory. Includes its failure: when the service is down, the
//! agent gets 503 `unavailable` and no system message claims an award.

mod common;
mod panel;

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::{Db, Stack};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use panel::{give, reset, system_texts};
use schema::loyalty::{Balance, LedgerEntry, PointsAction, PointsCommand, PointsOutcome, Voucher, VoucherState};
use serde_json::{json, Value};
use store::loyalty::{fingerprint, PointsRequestBody, TransactionsBody, VouchersBody};
use tokio::task::JoinHandle;

const TOKEN: &str = "mock-loyalty-token";

#[derive(Default)]
struct Data {
    ledgers: HashMap<String, Vec<LedgerEntry>>,
    /// idempotency key -> (fingerprint, outcome)
    keys: HashMap<String, (String, PointsOutcome)>,
    vouchers: HashMap<String, Vec<Voucher>>,
}

/// An in-memory loyalty service. `down` makes every call answer 503.
#[derive(Default)]
struct Mock {
    down: AtomicBool,
    calls: AtomicUsize,
    data: Mutex<Data>,
}

fn reply(status: StatusCode, body: Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert("content-type", "application/json".parse().unwrap());
    r
}

fn error(status: StatusCode, code: &str, message: &str) -> Response<Full<Bytes>> {
    reply(status, json!({"error": {"code": code, "message": message}}))
}

impl Mock {
    async fn handle(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self.down.load(Ordering::SeqCst) {
            return error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "maintenance");
        }
        if req.headers().get("authorization").and_then(|v| v.to_str().ok()) != Some(&format!("Bearer {TOKEN}")) {
            return error(StatusCode::UNAUTHORIZED, "unauthorized", "bad token");
        }
        let method = req.method().clone();
        let path = req.uri().path().to_string();
        let query: HashMap<String, String> =
            req.uri().query().map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect()).unwrap_or_default();
        let body = req.into_body().collect().await.map(|c| c.to_bytes()).unwrap_or_default();
        let segs: Vec<&str> = path.trim_start_matches("/v1/").split('/').collect();
        let mut d = self.data.lock().unwrap();
        match (method, segs.as_slice()) {
            (Method::GET, ["customers", id, "balance"]) => {
                let l = d.ledgers.get(*id).cloned().unwrap_or_default();
                let b = Balance { balance: l.iter().map(|e| e.amount).sum(), version: l.len() as u64 };
                reply(StatusCode::OK, serde_json::to_value(b).unwrap())
            }
            (Method::GET, ["customers", id, "transactions"]) => {
                let before: u64 = query.get("before").and_then(|b| b.parse().ok()).unwrap_or(u64::MAX);
                let limit: usize = query.get("limit").and_then(|l| l.parse().ok()).unwrap_or(20);
                let mut older: Vec<LedgerEntry> =
                    d.ledgers.get(*id).cloned().unwrap_or_default().into_iter().filter(|e| e.seq < before).collect();
                older.reverse();
                let has_more = older.len() > limit;
                older.truncate(limit);
                reply(StatusCode::OK, serde_json::to_value(TransactionsBody { items: older, has_more }).unwrap())
            }
            (Method::GET, ["customers", id, "vouchers"]) => {
                let items = d.vouchers.get(*id).cloned().unwrap_or_default();
                reply(StatusCode::OK, serde_json::to_value(VouchersBody { items }).unwrap())
            }
            (Method::PUT, ["customers", id, "vouchers", vid]) => {
                let Ok(v) = serde_json::from_slice::<Voucher>(&body) else {
                    return error(StatusCode::BAD_REQUEST, "invalid", "bad voucher");
                };
                let list = d.vouchers.entry(id.to_string()).or_default();
                list.retain(|x| x.id != *vid);
                list.push(v);
                reply(StatusCode::OK, json!({"ok": true}))
            }
            (Method::POST, ["customers", id, "points"]) => {
                let Ok(b) = serde_json::from_slice::<PointsRequestBody>(&body) else {
                    return error(StatusCode::BAD_REQUEST, "invalid", "bad body");
                };
                let Some(action) = b.action() else { return error(StatusCode::BAD_REQUEST, "invalid", "bad kind") };
                let cmd = PointsCommand {
                    customer: id.to_string(),
                    idempotency_key: b.idempotency_key.clone(),
                    action: action.clone(),
                    by: b.by.clone(),
                    ts: b.ts,
                };
                let fp = fingerprint(&cmd);
                if let Some((stored, outcome)) = d.keys.get(&b.idempotency_key) {
                    if *stored != fp {
                        return error(StatusCode::CONFLICT, "conflict", "key reused for another request");
                    }
                    let mut o = outcome.clone();
                    o.replayed = true;
                    return reply(StatusCode::OK, serde_json::to_value(o).unwrap());
                }
                let ledger = d.ledgers.entry(id.to_string()).or_default();
                let balance: i64 = ledger.iter().map(|e| e.amount).sum();
                let delta = match action {
                    PointsAction::Award { amount, .. } | PointsAction::Earn { amount, .. } => amount,
                    PointsAction::Spend { amount, .. } => -amount,
                    PointsAction::Reset => -balance,
                };
                let outcome = if delta == 0 {
                    PointsOutcome {
                        balance,
                        version: ledger.len() as u64,
                        transaction: None,
                        noop: true,
                        replayed: false,
                    }
                } else {
                    let seq = ledger.len() as u64 + 1;
                    let e = LedgerEntry {
                        id: format!("mock-{id}-{seq}"),
                        seq,
                        kind: action.kind(),
                        amount: delta,
                        balance_after: balance + delta,
                        reason: b.reason.clone(),
                        by: b.by.clone(),
                        ts: b.ts,
                    };
                    ledger.push(e.clone());
                    PointsOutcome {
                        balance: balance + delta,
                        version: seq,
                        transaction: Some(e),
                        noop: false,
                        replayed: false,
                    }
                };
                d.keys.insert(b.idempotency_key, (fp, outcome.clone()));
                reply(StatusCode::OK, serde_json::to_value(outcome).unwrap())
            }
            _ => error(StatusCode::NOT_FOUND, "not_found", "no route"),
        }
    }
}

/// A running mock: its URL, and the tasks to abort to take it down for good.
struct Server {
    url: String,
    mock: Arc<Mock>,
    accept: JoinHandle<()>,
    conns: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Server {
    async fn start() -> Server {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/v1", listener.local_addr().unwrap());
        let mock = Arc::new(Mock::default());
        let conns: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let (m, c) = (mock.clone(), conns.clone());
        let accept = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let m = m.clone();
                let task = tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        let m = m.clone();
                        async move { Ok::<_, Infallible>(m.handle(req).await) }
                    });
                    let _ =
                        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
                });
                c.lock().unwrap().push(task);
            }
        });
        Server { url, mock, accept, conns }
    }

    /// Closes the listener and every open connection: calls are refused.
    fn kill(&self) {
        self.accept.abort();
        for t in self.conns.lock().unwrap().drain(..) {
            t.abort();
        }
    }

    fn ledger_len(&self, customer: &str) -> usize {
        self.mock.data.lock().unwrap().ledgers.get(customer).map(Vec::len).unwrap_or(0)
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn http_loyalty_service() {
    let server = Server::start().await;
    let mut s = Stack::new(Db::Sqlite)
        .await
        .env("CHAT_LOYALTY_URL", &server.url)
        .env("CHAT_LOYALTY_TOKEN", TOKEN)
        .env("CHAT_LOYALTY_TIMEOUT_MS", "1000");
    s.add_worker();
    s.add_gateway();
    s.wait_ready().await;
    let tok = s.agent_token().await;
    let (_, conv) = s.customer("hal").await;
    let mut agent = s.ws(0, &tok).await;
    // A first frame other than `resume` releases live events at once.
    agent.send(json!({"type": "ping"})).await;

    // An award goes to the service, once per key.
    let r1 = give(&s, 0, &tok, &conv, "h1", json!({"amount": 40, "reason": "welcome"})).await;
    assert_eq!(r1.status, 200, "{:?}", r1.body);
    assert_eq!(r1.body["balance"], 40);
    assert_eq!(r1.body["transaction"]["id"], format!("mock-{conv}-1"));
    assert_eq!(r1.body["transaction"]["by"]["display_name"], "Demo Agent");
    agent.expect(|f| f["type"] == "points" && f["balance"] == 40).await;
    let r2 = give(&s, 0, &tok, &conv, "h1", json!({"amount": 40, "reason": "welcome"})).await;
    assert!(r2.replayed);
    assert_eq!(r2.body, r1.body);
    let r3 = give(&s, 0, &tok, &conv, "h1", json!({"amount": 41})).await;
    assert_eq!(r3.status, 409, "{:?}", r3.body);
    assert_eq!(server.ledger_len(&conv), 1);

    // Reads come from the service too.
    server.mock.data.lock().unwrap().vouchers.insert(
        conv.clone(),
        vec![
            Voucher {
                id: "v1".into(),
                title: "Free cake".into(),
                code: "CAKE".into(),
                expires_at: None,
                state: VoucherState::Active,
            },
            Voucher {
                id: "v2".into(),
                title: "Used".into(),
                code: "OLD".into(),
                expires_at: None,
                state: VoucherState::Redeemed,
            },
        ],
    );
    let (st, v) = s.get(0, &format!("/api/customers/{conv}/vouchers"), &tok).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["items"].as_array().unwrap().len(), 1);
    assert_eq!(v["items"][0]["code"], "CAKE");
    let (_, c) = s.get(0, &format!("/api/customers/{conv}"), &tok).await;
    assert_eq!(c["points"], 40);
    assert_eq!(c["points_unavailable"], false);
    let r = reset(&s, 0, &tok, &conv, "h-reset").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["transaction"]["amount"], -40);
    let (_, t) = s.get(0, &format!("/api/customers/{conv}/transactions"), &tok).await;
    assert_eq!(t["items"].as_array().unwrap().len(), 2);
    assert_eq!(t["items"][0]["kind"], "reset");
    let announced =
        ["40 points awarded by Demo Agent: welcome", "Points balance reset to 0 by Demo Agent (40 points removed)"];
    assert_eq!(system_texts(&s, &tok, &conv, |t| t.len() == 2).await, announced);

    // The service is down: a clear 503, no message, nothing recorded.
    tokio::time::sleep(Duration::from_millis(300)).await;
    agent.expect_none(Duration::from_millis(200), |_| false).await;
    agent.buf.clear();
    server.mock.down.store(true, Ordering::SeqCst);
    let r = give(&s, 0, &tok, &conv, "h2", json!({"amount": 30})).await;
    assert_eq!(r.status, 503, "{:?}", r.body);
    assert_eq!(r.body["error"]["code"], "unavailable");
    assert!(r.body["error"]["message"].as_str().unwrap().contains("loyalty service"), "{:?}", r.body);
    let (st, c) = s.get(0, &format!("/api/customers/{conv}"), &tok).await;
    assert_eq!(st, 200, "the profile is served without the balance");
    assert!(c["points"].is_null());
    assert_eq!(c["points_unavailable"], true);
    let (st, _) = s.get(0, &format!("/api/customers/{conv}/transactions"), &tok).await;
    assert_eq!(st, 503);
    agent.expect_none(Duration::from_millis(800), |f| f["type"] == "points" || f["type"] == "message").await;
    assert_eq!(system_texts(&s, &tok, &conv, |_| true).await, announced);

    // Back up: the same key now runs (it never ran before).
    server.mock.down.store(false, Ordering::SeqCst);
    let r = give(&s, 0, &tok, &conv, "h2", json!({"amount": 30})).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert!(!r.replayed);
    assert_eq!(r.body["balance"], 30);
    system_texts(&s, &tok, &conv, |t| t.len() == 3 && t[2] == "30 points awarded by Demo Agent").await;

    // Gone for good (connections refused): 503 again, nothing announced.
    server.kill();
    let r = give(&s, 0, &tok, &conv, "h3", json!({"amount": 5})).await;
    assert_eq!(r.status, 503, "{:?}", r.body);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(system_texts(&s, &tok, &conv, |_| true).await.len(), 3);
    assert_eq!(server.ledger_len(&conv), 3);

    // The SQL ledger was never used in this configuration.
    let store = store::Store::connect(&s.db_url).await.unwrap();
    use store::loyalty::LoyaltyStore;
    assert_eq!(store.loyalty().balance(&conv).await.unwrap().version, 0);
    assert!(server.mock.calls.load(Ordering::SeqCst) > 5);
}
