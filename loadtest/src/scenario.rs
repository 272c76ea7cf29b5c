//! The phases of a load test.
//!
//! - [`run`]: customers and agents on sockets (spread over the gateways);
//!   each agent watches a fixed block of conversations ([`watch_sets`]);
//!   mixed open-loop traffic at a fixed message rate, then a drain; the
//!   delivery ledger is reconciled and CPU/memory of the watched processes
//!   are read around the window. With `http_users`, goose drives the agents'
//!   REST part at the same time.
//! - [`ramp`]: runs at rising rates until p99 passes the limit or anything
//!   is lost; reports the highest rate that held.
//! - [`soak`] is a long [`run`] with resident memory sampled on the way
//!   (the slope tells a leak).
//! - [`idle`]: many idle sockets on a gateway, spread over child processes
//!   (one process may hold at most its open-file limit), each from its own
//!   loopback source address; resident memory per held socket.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::{IpAddr, SocketAddr};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;
use tokio::sync::{watch, Semaphore};
use tokio::time::Instant;

use crate::client::{self, Auth, Mix, Plan, Role};
use crate::procstat::{self, Watched};
use crate::proto::Target;
use crate::stats::{self, CommandFigures, Deliveries, Live, Percentiles};

/// The dev-mode customer secret of the gateway (`CHAT_DEV=1` without `CHAT_CUSTOMER_SECRET`).
pub const DEV_SECRET: &str = "dev-only-customer-secret";

/// What is under test and how to reach it.
#[derive(Debug, Clone)]
pub struct Stack {
    pub target: Target,
    pub gateways: Vec<SocketAddr>,
    /// Secret to sign customer tokens with (ours).
    pub secret: String,
    pub agent_user: String,
    pub agent_pass: String,
    /// Redis and key prefix, to wait for the worker to drain the log (ours).
    pub redis_url: Option<String>,
    pub key_prefix: String,
    pub log_shards: u32,
}

/// A customer token as the business backend would sign it (docs/protocol.md).
pub fn customer_token(secret: &str, id: &str, expiry: u64) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(format!("{id}\n{id}\n{expiry}").as_bytes());
    let sig = hex::encode(mac.finalize().into_bytes());
    format!("cust.{}.{}.{}.{}", hex::encode(id), hex::encode(id), expiry, sig)
}

fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// A short random id prefix for one run's customers.
pub fn run_prefix() -> String {
    format!("lt{:06x}", rand::random::<u32>() & 0xff_ffff)
}

async fn agent_token(stack: &Stack) -> anyhow::Result<String> {
    let url = format!("http://{}/api/login", stack.gateways[0]);
    let v: serde_json::Value = reqwest::Client::new()
        .post(url)
        .json(&serde_json::json!({"username": stack.agent_user, "password": stack.agent_pass}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    Ok(v["token"].as_str().context("login returned no token")?.to_string())
}

/// Most actions per second one agent socket takes (a person replying fast).
pub const AGENT_MAX_ACTIONS: f64 = 40.0;

/// Most conversations one agent socket may watch (docs/protocol.md).
pub const MAX_AGENT_WATCH: usize = 100;

/// The conversations (customer indexes) each agent socket watches: agent j
/// holds `min(watch, customers)` distinct conversations, a contiguous block
/// starting at `j * customers / agents` (wrapping), so that agents overlap as
/// little as the numbers allow, as consoles each holding their open
/// conversation and a few cached ones.
pub fn watch_sets(customers: usize, agents: usize, watch: usize) -> Vec<Vec<u32>> {
    let n = watch.min(customers);
    (0..agents)
        .map(|j| {
            let start = j * customers / agents.max(1);
            (0..n).map(|x| ((start + x) % customers) as u32).collect()
        })
        .collect()
}

/// Where the sockets go and how fast each acts, for one run.
#[derive(Debug, Clone, PartialEq)]
pub struct Layout {
    /// Gateway (index into the stack's addresses) of each customer socket.
    pub customer_node: Vec<usize>,
    /// Gateway of each agent socket.
    pub agent_node: Vec<usize>,
    /// The conversations (customer indexes) each agent socket watches.
    pub watch: Vec<Vec<u32>>,
    /// Actions per second of each customer socket and of each agent socket.
    pub per_customer: f64,
    pub per_agent: f64,
}

/// The gateway (index of `gateways`) of socket `i` of its kind. Mixed: round
/// robin, customers and agents each from the first gateway. Relay: every
/// customer on the first gateway, agent sockets round robin over the others,
/// so that every delivery to an agent crosses nodes; with one gateway,
/// everything on it.
pub fn node_of(mix: Mix, is_agent: bool, i: usize, gateways: usize) -> usize {
    let n = gateways.max(1);
    match mix {
        Mix::Mixed => i % n,
        Mix::Relay if n == 1 || !is_agent => 0,
        Mix::Relay => 1 + i % (n - 1),
    }
}

/// The plan of a run over `gateways` nodes: placement ([`node_of`]), watch
/// sets ([`watch_sets`]) and the action rate of every socket. Mixed: the
/// action rate is 4x the message rate; agents carry `agent_share` of it, at
/// most [`AGENT_MAX_ACTIONS`] each (a person), customers the rest. Relay:
/// one action per message, all by customers; agents only watch.
pub fn layout(o: &RunOpts, gateways: usize) -> Layout {
    let action_rate = o.rate / o.mix.message_share();
    let share = if o.agents == 0 || o.mix == Mix::Relay { 0.0 } else { o.agent_share.clamp(0.0, 1.0) };
    // An agent socket is one person: its actions are capped (the gateway
    // handles one socket's frames in order, and nobody types 200 replies a
    // second). Customers carry the rest of the rate.
    let per_agent = if o.agents == 0 { 0.0 } else { (action_rate * share / o.agents as f64).min(AGENT_MAX_ACTIONS) };
    let per_customer = (action_rate - per_agent * o.agents as f64).max(0.0) / o.customers.max(1) as f64;
    Layout {
        customer_node: (0..o.customers).map(|i| node_of(o.mix, false, i, gateways)).collect(),
        agent_node: (0..o.agents).map(|j| node_of(o.mix, true, j, gateways)).collect(),
        watch: watch_sets(o.customers, o.agents, o.agent_watch),
        per_customer,
        per_agent,
    }
}

/// Options of one run.
#[derive(Debug, Clone)]
pub struct RunOpts {
    /// What the sockets do and where they go ([`Mix`]).
    pub mix: Mix,
    pub customers: usize,
    pub agents: usize,
    /// Conversations each agent socket watches (1..=[`MAX_AGENT_WATCH`]); its
    /// replies, typing and reads stay within them.
    pub agent_watch: usize,
    /// Messages per second offered (all senders together); in the mixed
    /// mix typing and seen come on top (25/60/15).
    pub rate: f64,
    /// Message text length in bytes (None: the mix's default, [`Mix::default_message_bytes`]).
    pub message_bytes: Option<usize>,
    pub duration: Duration,
    /// Latency of messages scheduled in this first part is not recorded.
    pub warmup: Duration,
    /// Longest wait for acks and deliveries after the last scheduled send.
    pub drain: Duration,
    /// Share of messages sent by agents (replies), capped at
    /// [`AGENT_MAX_ACTIONS`] actions per agent socket.
    pub agent_share: f64,
    /// goose users for the REST part (ours only; 0: none).
    pub http_users: usize,
    /// Sample resident memory this often (soak).
    pub rss_every: Option<Duration>,
    pub src_ips: Vec<IpAddr>,
    pub connect_concurrency: usize,
    pub id_prefix: String,
    /// p99 limit for a step to count as sustained.
    pub p99_limit_ms: f64,
}

impl Default for RunOpts {
    fn default() -> Self {
        RunOpts {
            mix: Mix::Mixed,
            customers: 500,
            agents: 4,
            agent_watch: 10,
            rate: 1000.0,
            message_bytes: None,
            duration: Duration::from_secs(10),
            warmup: Duration::from_secs(1),
            drain: Duration::from_secs(5),
            agent_share: 0.2,
            http_users: 0,
            rss_every: None,
            src_ips: vec![],
            connect_concurrency: 256,
            id_prefix: run_prefix(),
            p99_limit_ms: 250.0,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ProcFigures {
    pub cpu_seconds: f64,
    pub cpu_seconds_per_1k_msgs: f64,
    pub rss_kib: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct RunReport {
    pub target: String,
    /// `mixed` or `relay`.
    pub mix: String,
    /// Message text length asked for (null: the short default, ~64 bytes).
    pub message_bytes: Option<usize>,
    pub connections: usize,
    pub customers: usize,
    pub agents: usize,
    /// Conversations each agent socket watched.
    pub agent_watch: usize,
    pub connect_failures: usize,
    pub offered_msgs_per_s: f64,
    pub duration_s: f64,
    pub scheduled_msgs: u64,
    /// Messages delivered to every receiver they were meant for, per second.
    pub delivered_msgs_per_s: f64,
    /// Frames carrying a load message received per second (fan-out included).
    pub deliveries_per_s: f64,
    /// Chat-list rows (`conversation` frames) the agent sockets received
    /// from the traffic start to the end of the drain (reported, not judged).
    pub rows_received: u64,
    /// `rows_received` per second of the run.
    pub rows_per_s: f64,
    pub typing_sent: u64,
    pub seen_sent: u64,
    pub latency: Percentiles,
    /// The part of `latency` at agent sockets (in the relay mix: across nodes).
    pub latency_at_agents: Percentiles,
    pub ack_latency: Percentiles,
    pub deliveries: Deliveries,
    pub disconnects: u64,
    /// Close codes received from the servers (4008: slow consumer).
    pub close_codes: BTreeMap<u16, u64>,
    pub processes: BTreeMap<String, ProcFigures>,
    /// Redis commands in the window (`INFO commandstats` before and after,
    /// ours only), per command: calls and µs, in all and per delivered
    /// message. Empty for the peer, without `--redis-url`, or when the
    /// counters were reset in the window (`redis_commands_note` says which).
    pub redis_commands: BTreeMap<String, CommandFigures>,
    pub redis_commands_note: Option<String>,
    /// Resident memory of the server processes (gateways or peers) per held connection.
    pub server_rss_per_conn_kib: f64,
    pub http: Option<crate::http::HttpSummary>,
    /// (seconds since start, process, RSS KiB) samples (soak).
    pub rss_samples: Vec<(f64, String, u64)>,
    /// KiB per minute, per process (soak).
    pub rss_slope_kib_per_min: BTreeMap<String, f64>,
    pub sustained: bool,
    pub verdict: String,
}

/// Connects `n` sockets concurrently (bounded), returns them in order (None: failed).
/// Socket i goes to gateway `nodes[i]`.
async fn connect_all(stack: &Stack, auths: Vec<Auth>, nodes: &[usize], src_ips: &[IpAddr], concurrency: usize) -> Vec<Option<client::Ws>> {
    let sem = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut tasks = Vec::with_capacity(auths.len());
    for (i, auth) in auths.into_iter().enumerate() {
        let sem = sem.clone();
        let addr = stack.gateways[nodes[i] % stack.gateways.len()];
        let src = if src_ips.is_empty() { None } else { Some(src_ips[i % src_ips.len()]) };
        let target = stack.target;
        tasks.push(tokio::spawn(async move {
            let _permit = sem.acquire().await.ok()?;
            for attempt in 0..3 {
                match client::open(target, addr, &auth, src, Duration::from_secs(20)).await {
                    Ok(ws) => return Some(ws),
                    Err(e) if attempt == 2 => {
                        eprintln!("connect failed: {e:#}");
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                }
            }
            None
        }));
    }
    let mut out = Vec::with_capacity(tasks.len());
    for t in tasks {
        out.push(t.await.ok().flatten());
    }
    out
}

/// Waits until the workers have consumed the log shards (ours), at most
/// `max`. Returns how many `XLEN`s it sent (they are not the stack's commands).
async fn wait_log_drained(stack: &Stack, max: Duration) -> u64 {
    let Some(url) = &stack.redis_url else { return 0 };
    let Ok(client) = redis::Client::open(url.as_str()) else { return 0 };
    let Ok(mut conn) = client.get_multiplexed_async_connection().await else { return 0 };
    let deadline = Instant::now() + max;
    let mut sent = 0;
    while Instant::now() < deadline {
        let mut pipe = redis::pipe();
        for s in 0..stack.log_shards {
            pipe.cmd("XLEN").arg(format!("{}log:{}", stack.key_prefix, s));
        }
        sent += u64::from(stack.log_shards);
        let lens: Vec<u64> = pipe.query_async(&mut conn).await.unwrap_or_default();
        if lens.iter().sum::<u64>() == 0 {
            return sent;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    sent
}

/// A connection for `INFO commandstats` (ours with `--redis-url` only).
async fn stats_conn(stack: &Stack) -> Option<redis::aio::MultiplexedConnection> {
    if stack.target != Target::Ours {
        return None;
    }
    let client = redis::Client::open(stack.redis_url.as_deref()?).ok()?;
    client.get_multiplexed_async_connection().await.ok()
}

async fn commandstats(conn: &mut Option<redis::aio::MultiplexedConnection>) -> Option<BTreeMap<String, (u64, u64)>> {
    let c = conn.as_mut()?;
    let info: String = redis::cmd("INFO").arg("commandstats").query_async(c).await.ok()?;
    Some(stats::parse_commandstats(&info))
}

/// One run at a fixed rate.
pub async fn run(stack: &Stack, o: &RunOpts, watched: &Watched) -> anyhow::Result<RunReport> {
    let target = stack.target;
    let plan = layout(o, stack.gateways.len());
    let message_bytes = o.message_bytes.or(o.mix.default_message_bytes());
    if o.agents > 0 && !(1..=MAX_AGENT_WATCH).contains(&o.agent_watch) {
        bail!("agent_watch must be 1..={MAX_AGENT_WATCH}, not {}", o.agent_watch);
    }
    let cust_ids: Vec<String> = (0..o.customers).map(|i| format!("{}c{i}", o.id_prefix)).collect();
    let expiry = now_secs() + 24 * 3600;
    let agent_auth = match target {
        Target::Ours if o.agents > 0 => Some(Auth::Bearer(agent_token(stack).await?)),
        _ => None,
    };
    let agent_auths: Vec<Auth> = (0..o.agents)
        .map(|j| match (&agent_auth, target) {
            (Some(a), _) => a.clone(),
            _ => Auth::Sio { kind: "agent", id: format!("{}a{j}", o.id_prefix) },
        })
        .collect();
    let cust_auths: Vec<Auth> = cust_ids
        .iter()
        .map(|id| match target {
            Target::Ours => Auth::Bearer(customer_token(&stack.secret, id, expiry)),
            Target::Socketio => Auth::Sio { kind: "customer", id: id.clone() },
        })
        .collect();
    // Agents first: their node must be a staff node before customers talk.
    let t0 = Instant::now();
    let agents_ws = connect_all(stack, agent_auths, &plan.agent_node, &o.src_ips, o.connect_concurrency).await;
    let cust_ws = connect_all(stack, cust_auths, &plan.customer_node, &o.src_ips, o.connect_concurrency).await;
    let connect_secs = t0.elapsed().as_secs_f64();
    let failures = agents_ws.iter().chain(cust_ws.iter()).filter(|w| w.is_none()).count();
    if failures > 0 {
        bail!("{failures} of {} connections failed", o.customers + o.agents);
    }
    eprintln!("connected {} customers and {} agents in {connect_secs:.1}s", o.customers, o.agents);

    // Agents watch their conversations once every customer is connected (a
    // customer's first connection creates its conversation), and the traffic
    // starts only when every watch is answered.
    let sets = plan.watch.clone();
    let mut watchers = vec![0u32; o.customers];
    for c in sets.iter().flatten() {
        watchers[*c as usize] += 1;
    }
    let watchers = Arc::new(watchers);
    let t1 = Instant::now();
    let mut watching = Vec::with_capacity(o.agents);
    for (ws, set) in agents_ws.into_iter().zip(&sets) {
        let mut ws = ws.expect("checked");
        let names: Vec<String> = set.iter().map(|c| cust_ids[*c as usize].clone()).collect();
        watching.push(tokio::spawn(async move {
            let refs: Vec<&str> = names.iter().map(String::as_str).collect();
            let r = client::watch_all(target, &mut ws, &refs, Duration::from_secs(30)).await;
            r.map(|()| ws)
        }));
    }
    let mut agents_ws = Vec::with_capacity(o.agents);
    for (j, t) in watching.into_iter().enumerate() {
        match t.await {
            Ok(Ok(ws)) => agents_ws.push(ws),
            Ok(Err(e)) => bail!("agent {j}: {e:#}"),
            Err(e) => bail!("agent {j}: {e}"),
        }
    }
    if o.agents > 0 {
        eprintln!("{} agents watch {} conversations each ({:.1}s)", o.agents, sets[0].len(), t1.elapsed().as_secs_f64());
    }

    let epoch = Instant::now() + Duration::from_millis(500);
    let end = epoch + o.duration;
    let live = Arc::new(Live::new(o.warmup.as_micros() as u64));
    let (stop_tx, stop_rx) = watch::channel(false);
    let (per_agent, per_customer) = (plan.per_agent, plan.per_customer);
    let period_of = |r: f64| if r > 0.0 { Duration::from_secs_f64(1.0 / r) } else { Duration::from_secs(3600 * 24) };
    let convs = Arc::new(cust_ids.clone());
    let mut tasks = Vec::new();
    for (i, ws) in cust_ws.into_iter().enumerate() {
        let period = period_of(per_customer);
        let first = if per_customer > 0.0 { epoch + period.mul_f64(rand::random::<f64>()) } else { end };
        let plan = Plan {
            origin: i as u32,
            role: Role::Customer { conv: cust_ids[i].clone() },
            period,
            first,
            end,
            slot: rand::random::<u64>() % 20,
            watchers: watchers.clone(),
            mix: o.mix,
            message_bytes,
        };
        tasks.push(tokio::spawn(client::drive(target, ws.expect("checked"), plan, epoch, live.clone(), stop_rx.clone())));
    }
    for (j, (ws, set)) in agents_ws.into_iter().zip(sets).enumerate() {
        let period = period_of(per_agent);
        let first = if per_agent > 0.0 { epoch + period.mul_f64(rand::random::<f64>()) } else { end };
        let plan = Plan {
            origin: (o.customers + j) as u32,
            role: Role::Agent { convs: convs.clone(), watching: set },
            period,
            first,
            end,
            slot: rand::random::<u64>() % 20,
            watchers: watchers.clone(),
            mix: o.mix,
            message_bytes,
        };
        tasks.push(tokio::spawn(client::drive(target, ws, plan, epoch, live.clone(), stop_rx.clone())));
    }
    let http = if o.http_users > 0 && target == Target::Ours {
        let base = format!("http://{}", stack.gateways[0]);
        let (u, p) = (stack.agent_user.clone(), stack.agent_pass.clone());
        let convs: Vec<String> = cust_ids.iter().take(1000).cloned().collect();
        let users = o.http_users;
        let secs = o.duration.as_secs().max(1);
        Some(tokio::spawn(async move { crate::http::run(&base, users, secs, &u, &p, convs).await }))
    } else {
        None
    };

    let mut redis_stats = stats_conn(stack).await;
    tokio::time::sleep_until(epoch).await;
    let cmd0 = commandstats(&mut redis_stats).await;
    let cpu0 = watched.cpu();
    let sampler = o.rss_every.map(|every| {
        let w = watched.clone();
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            let mut out = Vec::new();
            let mut tick = tokio::time::interval(every);
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        let t = epoch.elapsed().as_secs_f64();
                        for (n, v) in w.rss() {
                            out.push((t, n, v));
                        }
                    }
                    _ = stop.changed() => return out,
                }
            }
        })
    });
    tokio::time::sleep_until(end).await;
    // Drain: every schedule over, every message acked or refused, and every
    // delivery in (or time is up). An acked message is expected at its
    // customer and its watchers.
    let drain_end = Instant::now() + o.drain;
    let connections = tasks.len() as u64;
    while Instant::now() < drain_end {
        if live.drained(connections) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let active = Instant::now().duration_since(epoch).as_secs_f64();
    let xlens = if target == Target::Ours { wait_log_drained(stack, Duration::from_secs(20)).await } else { 0 };
    let cpu1 = watched.cpu();
    let cmd1 = commandstats(&mut redis_stats).await;
    let rss = watched.rss();
    let _ = stop_tx.send(true);
    let mut results = Vec::with_capacity(tasks.len());
    for t in tasks {
        if let Ok(r) = t.await {
            results.push(r);
        }
    }
    let http_summary = match http {
        Some(h) => match h.await {
            Ok(Ok(s)) => Some(s),
            Ok(Err(e)) => {
                eprintln!("goose failed: {e:#}");
                None
            }
            Err(_) => None,
        },
        None => None,
    };
    let rss_samples = match sampler {
        Some(s) => s.await.unwrap_or_default(),
        None => Vec::new(),
    };

    let d = stats::reconcile(&results);
    let secs = o.duration.as_secs_f64();
    let lat = live.latency.lock().map(|h| Percentiles::of(&h)).unwrap_or_default();
    let lat_agents = live.latency_at_agents.lock().map(|h| Percentiles::of(&h)).unwrap_or_default();
    // Per delivered message, as CPU; the tool's own INFO (the first one:
    // the second is not in its own figures) and XLENs left out.
    let own = BTreeMap::from([("info".to_string(), 1), ("xlen".to_string(), xlens)]);
    let (redis_commands, redis_commands_note) = match (&cmd0, &cmd1) {
        (Some(a), Some(b)) => match stats::commands_per_message(a, b, &own, d.complete_messages) {
            Some(m) => (m, None),
            None => (BTreeMap::new(), Some("counters reset in the window (CONFIG RESETSTAT)".to_string())),
        },
        _ if target == Target::Ours && stack.redis_url.is_some() => (BTreeMap::new(), Some("INFO commandstats failed".to_string())),
        _ => (BTreeMap::new(), None),
    };
    let ack = live.ack.lock().map(|h| Percentiles::of(&h)).unwrap_or_default();
    let mut processes = BTreeMap::new();
    for (name, c1) in &cpu1 {
        let c = c1 - cpu0.get(name).copied().unwrap_or(*c1);
        let per_1k = if d.complete_messages > 0 { c / (d.complete_messages as f64 / 1000.0) } else { 0.0 };
        processes.insert(name.clone(), ProcFigures { cpu_seconds: c, cpu_seconds_per_1k_msgs: per_1k, rss_kib: rss.get(name).copied().unwrap_or(0) });
    }
    let conns = o.customers + o.agents;
    let server_rss: u64 = rss.iter().filter(|(n, _)| n.starts_with("gateway") || n.starts_with("peer")).map(|(_, v)| *v).sum();
    let mut slopes = BTreeMap::new();
    for name in rss.keys() {
        let pts: Vec<(f64, f64)> = rss_samples.iter().filter(|s| &s.1 == name).map(|s| (s.0 / 60.0, s.2 as f64)).collect();
        if pts.len() >= 2 {
            slopes.insert(name.clone(), procstat::slope(&pts));
        }
    }
    let disconnects = Live::get(&live.disconnects);
    let mut problems = Vec::new();
    if d.lost > 0 {
        problems.push(format!("{} lost", d.lost));
    }
    if d.duplicated > 0 {
        problems.push(format!("{} duplicated", d.duplicated));
    }
    if d.out_of_order > 0 {
        problems.push(format!("{} out of order", d.out_of_order));
    }
    if d.unexpected > 0 {
        problems.push(format!("{} delivered where not meant (unwatched)", d.unexpected));
    }
    if d.failed > 0 {
        problems.push(format!("{} refused", d.failed));
    }
    if d.unacked > 0 {
        problems.push(format!("{} unacked", d.unacked));
    }
    if disconnects > 0 {
        let codes = live.close_codes.lock().map(|m| format!("{m:?}")).unwrap_or_default();
        problems.push(format!("{disconnects} disconnects (close codes {codes})"));
    }
    if lat.p99_ms >= o.p99_limit_ms {
        problems.push(format!("p99 {:.1} ms >= {} ms", lat.p99_ms, o.p99_limit_ms));
    }
    let _ = active;
    Ok(RunReport {
        target: target.name().into(),
        mix: o.mix.name().into(),
        message_bytes,
        connections: conns,
        customers: o.customers,
        agents: o.agents,
        agent_watch: o.agent_watch.min(o.customers),
        connect_failures: failures,
        offered_msgs_per_s: o.rate,
        duration_s: secs,
        scheduled_msgs: Live::get(&live.scheduled_msgs),
        delivered_msgs_per_s: d.complete_messages as f64 / secs,
        deliveries_per_s: (d.delivered + d.unexpected) as f64 / secs,
        rows_received: Live::get(&live.rows),
        rows_per_s: Live::get(&live.rows) as f64 / secs,
        typing_sent: Live::get(&live.typing),
        seen_sent: Live::get(&live.seen),
        latency: lat,
        latency_at_agents: lat_agents,
        ack_latency: ack,
        deliveries: d,
        disconnects,
        close_codes: live.close_codes.lock().map(|m| m.clone()).unwrap_or_default(),
        processes,
        redis_commands,
        redis_commands_note,
        server_rss_per_conn_kib: if conns > 0 { server_rss as f64 / conns as f64 } else { 0.0 },
        http: http_summary,
        rss_samples,
        rss_slope_kib_per_min: slopes,
        sustained: problems.is_empty(),
        verdict: if problems.is_empty() { "sustained".into() } else { problems.join(", ") },
    })
}

/// Rate ramp: `start`, then ×`factor` (or +`step`) until a step fails or `max`.
/// Then `refine` more steps between the last sustained rate and the first
/// failed one (each at their geometric mean, keeping the half where the
/// answer lies), so a coarse factor does not decide the figure: with ×1.25
/// steps, two refinements pin the maximum within ×1.06.
#[allow(clippy::too_many_arguments)]
pub async fn ramp(stack: &Stack, base: &RunOpts, watched: &Watched, start: f64, step: f64, factor: f64, max: f64, refine: u32) -> anyhow::Result<(Vec<RunReport>, f64)> {
    let mut reports = Vec::new();
    let mut rate = start;
    let mut best = 0.0;
    let mut failed = None;
    while rate <= max {
        if step_at(stack, base, watched, rate, &mut reports).await? {
            best = rate;
        } else {
            failed = Some(rate);
            break;
        }
        rate = if factor > 1.0 { rate * factor } else { rate + step };
    }
    if let Some(mut fail) = failed {
        for _ in 0..refine {
            let Some(mid) = probe_between(best, fail) else { break };
            if step_at(stack, base, watched, mid, &mut reports).await? {
                best = mid;
            } else {
                fail = mid;
            }
        }
    }
    Ok((reports, best))
}

/// The next rate to try between a sustained `best` and a failed `fail`: their
/// geometric mean, rounded (half of `fail` when nothing was sustained);
/// `None` once no whole rate lies strictly between.
pub fn probe_between(best: f64, fail: f64) -> Option<f64> {
    let mid = if best > 0.0 { (best * fail).sqrt() } else { fail / 2.0 }.round();
    (mid > best.round() && mid < fail.round()).then_some(mid)
}

/// One ramp step at `rate`; true when sustained. Waits after it, so queues
/// and the worker settle before the next.
async fn step_at(stack: &Stack, base: &RunOpts, watched: &Watched, rate: f64, reports: &mut Vec<RunReport>) -> anyhow::Result<bool> {
    let mut o = base.clone();
    o.rate = rate;
    o.id_prefix = run_prefix();
    let r = run(stack, &o, watched).await?;
    eprintln!("{}", summary_line(&r));
    let ok = r.sustained;
    reports.push(r);
    tokio::time::sleep(Duration::from_secs(2)).await;
    Ok(ok)
}

pub fn summary_line(r: &RunReport) -> String {
    format!(
        "[{} {}] offered {:.0} msg/s -> delivered {:.0} msg/s ({:.0} frames/s, {:.0} rows/s) | p50 {:.2} ms p99 {:.2} ms p99.9 {:.2} ms max {:.1} ms (at agents: p50 {:.2} p99 {:.2}) | lost {} dup {} ooo {} refused {} | {}",
        r.target,
        r.mix,
        r.offered_msgs_per_s,
        r.delivered_msgs_per_s,
        r.deliveries_per_s,
        r.rows_per_s,
        r.latency.p50_ms,
        r.latency.p99_ms,
        r.latency.p999_ms,
        r.latency.max_ms,
        r.latency_at_agents.p50_ms,
        r.latency_at_agents.p99_ms,
        r.deliveries.lost,
        r.deliveries.duplicated,
        r.deliveries.out_of_order,
        r.deliveries.failed,
        r.verdict
    )
}

// ------------------------------------------------------------------ idle connections

#[derive(Debug, Clone, Default, Serialize)]
pub struct IdleReport {
    pub target: String,
    pub requested: usize,
    pub held: usize,
    pub failed: usize,
    pub client_processes: usize,
    pub seconds_to_connect: f64,
    /// Server processes' RSS before and with the sockets held, KiB.
    pub rss_before_kib: BTreeMap<String, u64>,
    pub rss_after_kib: BTreeMap<String, u64>,
    /// (after - before) / held, over the server processes.
    pub rss_per_conn_kib: f64,
    pub first_error: Option<String>,
    /// The ramp, one entry per step (a single step without `--step`).
    pub steps: Vec<IdleStep>,
    /// Why the ramp ended: `reached` (every socket requested is held) or
    /// `failed` (a step's sockets were refused: the node's limit).
    pub ended: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct IdleStep {
    /// Sockets held after the step, and refused in it.
    pub held: usize,
    pub failed: usize,
    /// Server processes' RSS (sum), KiB, after the settle time.
    pub rss_kib: u64,
    /// (rss - rss before the ramp) / held.
    pub rss_per_conn_kib: f64,
    pub seconds: f64,
}

/// One `idle-child` process: told on stdin how many more sockets to open
/// (`open N`), it answers `held N failed M [first error]` for each batch;
/// closing stdin closes its sockets.
struct IdleChild {
    child: std::process::Child,
    stdin: Option<std::process::ChildStdin>,
    lines: std::sync::mpsc::Receiver<String>,
}

impl IdleChild {
    fn spawn(exe: &std::path::Path, stack: &Stack, prefix: String, src: Option<IpAddr>) -> anyhow::Result<Self> {
        let mut cmd = Command::new(exe);
        cmd.arg("idle-child").arg("--target").arg(stack.target.name()).arg("--prefix").arg(prefix).arg("--secret").arg(&stack.secret);
        for g in &stack.gateways {
            cmd.arg("--gateway").arg(g.to_string());
        }
        if let Some(ip) = src {
            cmd.arg("--src-ip").arg(ip.to_string());
        }
        let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().context("spawn idle-child")?;
        let out = child.stdout.take().context("stdout")?;
        let stdin = child.stdin.take();
        let (tx, lines) = std::sync::mpsc::channel::<String>();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Ok(Self { child, stdin, lines })
    }

    fn open(&mut self, n: usize) -> anyhow::Result<()> {
        use std::io::Write;
        let stdin = self.stdin.as_mut().context("child stdin")?;
        writeln!(stdin, "open {n}")?;
        stdin.flush()?;
        Ok(())
    }

    /// The answer to the last `open`: (held, failed, first error).
    fn answer(&self, n: usize) -> (usize, usize, Option<String>) {
        let line = tokio::task::block_in_place(|| self.lines.recv_timeout(Duration::from_secs(600))).unwrap_or_default();
        let mut it = line.split_whitespace();
        if it.next() != Some("held") {
            return (0, n, Some(format!("idle-child said: {line:?}")));
        }
        let held = it.next().and_then(|v| v.parse::<usize>().ok()).unwrap_or(0);
        it.next();
        let failed = it.next().and_then(|v| v.parse::<usize>().ok()).unwrap_or(0);
        let rest: Vec<&str> = it.collect();
        (held, failed, (!rest.is_empty()).then(|| rest.join(" ")))
    }

    async fn close(mut self) {
        drop(self.stdin.take());
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            match self.child.try_wait() {
                Ok(Some(_)) => break,
                _ if std::time::Instant::now() > deadline => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    break;
                }
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }
}

fn server_rss(watched: &Watched) -> BTreeMap<String, u64> {
    watched.rss().into_iter().filter(|(n, _)| n.starts_with("gateway") || n.starts_with("peer")).collect()
}

/// Spreads `conns` idle sockets over `procs` child processes (`exe`: the
/// `loadtest` binary, run as `idle-child`), child i binding source address `src_ips[i % len]`, and
/// measures the servers' resident memory. With `step` > 0 the sockets come
/// `step` at a time, memory is read after each step, and the ramp ends at
/// `conns` or at the first step in which sockets are refused (how many one
/// node holds).
#[allow(clippy::too_many_arguments)]
pub async fn idle(exe: &std::path::Path, stack: &Stack, conns: usize, step: usize, procs: usize, src_ips: &[IpAddr], watched: &Watched, settle: Duration) -> anyhow::Result<IdleReport> {
    let procs = procs.max(1);
    let step = if step == 0 { conns } else { step.min(conns) };
    let before = server_rss(watched);
    let before_sum: u64 = before.values().sum();
    let prefix = run_prefix();
    let mut children = Vec::new();
    for i in 0..procs {
        children.push(IdleChild::spawn(exe, stack, format!("{prefix}p{i}"), (!src_ips.is_empty()).then(|| src_ips[i % src_ips.len()]))?);
    }
    let t0 = Instant::now();
    let (mut held, mut failed, mut first_error) = (0usize, 0usize, None);
    let mut steps = Vec::new();
    let mut after = before.clone();
    let mut seconds_to_connect = 0.0;
    let mut ended = "reached";
    while held + failed < conns {
        let want = step.min(conns - held - failed);
        let shares: Vec<usize> = (0..procs).map(|i| want / procs + usize::from(i < want % procs)).collect();
        for (c, n) in children.iter_mut().zip(&shares) {
            c.open(*n)?;
        }
        let mut step_failed = 0;
        for (c, n) in children.iter().zip(&shares) {
            let (h, f, e) = c.answer(*n);
            held += h;
            step_failed += f;
            if first_error.is_none() {
                first_error = e;
            }
        }
        failed += step_failed;
        seconds_to_connect = t0.elapsed().as_secs_f64();
        tokio::time::sleep(settle).await;
        after = server_rss(watched);
        let rss: u64 = after.values().sum();
        let per = if held > 0 { (rss as i64 - before_sum as i64) as f64 / held as f64 } else { 0.0 };
        steps.push(IdleStep { held, failed: step_failed, rss_kib: rss, rss_per_conn_kib: per, seconds: t0.elapsed().as_secs_f64() });
        if step_failed > 0 {
            ended = "failed";
            break;
        }
    }
    for c in children {
        c.close().await;
    }
    let grown: i64 = after.iter().map(|(n, v)| *v as i64 - before.get(n).copied().unwrap_or(0) as i64).sum();
    Ok(IdleReport {
        target: stack.target.name().into(),
        requested: conns,
        held,
        failed,
        client_processes: procs,
        seconds_to_connect,
        rss_before_kib: before,
        rss_after_kib: after,
        rss_per_conn_kib: if held > 0 { grown as f64 / held as f64 } else { 0.0 },
        first_error,
        steps,
        ended: ended.into(),
    })
}

/// The child side of [`idle`]: for every `open N` line on stdin, connect N
/// more customers and report `held N failed M [error]`; hold them until
/// stdin closes (or an hour passes).
pub async fn idle_child(stack: &Stack, prefix: &str, src: Option<IpAddr>) -> anyhow::Result<()> {
    let expiry = now_secs() + 24 * 3600;
    let sem = Arc::new(Semaphore::new(256));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = Vec::new();
    let (line_tx, mut lines) = tokio::sync::mpsc::unbounded_channel::<String>();
    std::thread::spawn(move || {
        let mut buf = String::new();
        while std::io::stdin().read_line(&mut buf).map(|n| n > 0).unwrap_or(false) {
            let _ = line_tx.send(std::mem::take(&mut buf));
        }
    });
    let mut next = 0usize;
    let end = tokio::time::Instant::now() + Duration::from_secs(3600);
    while let Ok(Some(line)) = tokio::time::timeout_at(end, lines.recv()).await {
        let Some(n) = line.trim().strip_prefix("open ").and_then(|n| n.parse::<usize>().ok()) else { continue };
        let (ok_tx, mut ok_rx) = tokio::sync::mpsc::unbounded_channel::<Result<(), String>>();
        for i in next..next + n {
            let id = format!("{prefix}c{i}");
            let auth = match stack.target {
                Target::Ours => Auth::Bearer(customer_token(&stack.secret, &id, expiry)),
                Target::Socketio => Auth::Sio { kind: "customer", id },
            };
            let addr = stack.gateways[i % stack.gateways.len()];
            let target = stack.target;
            let sem = sem.clone();
            let stop = stop_rx.clone();
            let ok_tx = ok_tx.clone();
            tasks.push(tokio::spawn(async move {
                let ws = {
                    let _p = sem.acquire().await;
                    client::open(target, addr, &auth, src, Duration::from_secs(60)).await
                };
                match ws {
                    Ok(ws) => {
                        let _ = ok_tx.send(Ok(()));
                        client::hold(target, ws, stop).await;
                    }
                    Err(e) => {
                        let _ = ok_tx.send(Err(format!("{e:#}")));
                    }
                }
            }));
        }
        next += n;
        drop(ok_tx);
        let (mut held, mut failed, mut err) = (0usize, 0usize, None);
        while held + failed < n {
            match ok_rx.recv().await {
                Some(Ok(())) => held += 1,
                Some(Err(e)) => {
                    failed += 1;
                    err.get_or_insert(e);
                }
                None => break,
            }
        }
        println!("held {held} failed {failed} {}", err.unwrap_or_default());
    }
    let _ = stop_tx.send(true);
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refinement_probes_narrow_the_bracket() {
        // Between the session-8 steps 4,657 (sustained) and 5,821 (failed).
        assert_eq!(probe_between(4657.0, 5821.0), Some(5207.0));
        // Sustained there: the next probe is in the upper half; failed: the lower.
        assert_eq!(probe_between(5207.0, 5821.0), Some(5505.0));
        assert_eq!(probe_between(4657.0, 5207.0), Some(4924.0));
        // Nothing sustained: halve toward zero.
        assert_eq!(probe_between(0.0, 500.0), Some(250.0));
        // No whole rate left strictly between.
        assert_eq!(probe_between(100.0, 101.0), None);
        assert_eq!(probe_between(0.0, 1.0), None);
    }

    #[test]
    fn mixed_places_sockets_round_robin() {
        let o = RunOpts { customers: 5, agents: 2, agent_watch: 2, rate: 1000.0, agent_share: 0.2, ..RunOpts::default() };
        let l = layout(&o, 2);
        assert_eq!(l.customer_node, vec![0, 1, 0, 1, 0]);
        assert_eq!(l.agent_node, vec![0, 1]);
        assert_eq!(l.watch, vec![vec![0, 1], vec![2, 3]]);
        // 4,000 actions/s: agents 20% (800), capped at 40 each; customers the rest.
        assert_eq!(l.per_agent, AGENT_MAX_ACTIONS);
        assert!((l.per_customer - (4000.0 - 80.0) / 5.0).abs() < 1e-9);
    }

    /// Issue 17's reference: 100 customers on gateway A, 2 agent sockets on
    /// B each watching all 100 conversations, messages only.
    #[test]
    fn relay_puts_customers_on_the_first_node_and_agents_on_the_others() {
        let o = RunOpts {
            mix: Mix::Relay,
            customers: 100,
            agents: 2,
            agent_watch: Mix::Relay.default_agent_watch(100, MAX_AGENT_WATCH),
            rate: 3000.0,
            agent_share: 0.2,
            ..RunOpts::default()
        };
        let l = layout(&o, 2);
        assert!(l.customer_node.iter().all(|n| *n == 0));
        assert_eq!(l.agent_node, vec![1, 1]);
        let all: Vec<u32> = (0..100).collect();
        for set in &l.watch {
            let mut s = set.clone();
            s.sort_unstable();
            assert_eq!(s, all, "each agent watches every conversation");
        }
        // Messages only, all by customers: one action per message, agents send nothing.
        assert_eq!(l.per_agent, 0.0);
        assert!((l.per_customer - 30.0).abs() < 1e-9);
        assert!((0..100).all(|s| o.mix.action_of(s) == crate::client::Action::Message));
        assert_eq!(o.mix.default_message_bytes(), Some(130));
        // One gateway: everything on it. Three: agents round robin over the two others.
        let one = layout(&o, 1);
        assert!(one.customer_node.iter().chain(&one.agent_node).all(|n| *n == 0));
        let o4 = RunOpts { agents: 4, ..o.clone() };
        let three = layout(&o4, 3);
        assert!(three.customer_node.iter().all(|n| *n == 0));
        assert_eq!(three.agent_node, vec![1, 2, 1, 2]);
        // More customers than an agent may watch: 100 each, in blocks.
        let big = RunOpts { customers: 300, agent_watch: Mix::Relay.default_agent_watch(300, MAX_AGENT_WATCH), ..o };
        let l = layout(&big, 2);
        assert_eq!(l.watch[0], (0..100).collect::<Vec<u32>>());
        assert_eq!(l.watch[1], (150..250).collect::<Vec<u32>>());
    }

    #[test]
    fn watch_sets_are_distinct_blocks() {
        // 2000 customers, 2 agents, 10 each: blocks at 0 and 1000, no overlap.
        let s = watch_sets(2000, 2, 10);
        assert_eq!(s[0], (0..10).collect::<Vec<u32>>());
        assert_eq!(s[1], (1000..1010).collect::<Vec<u32>>());
        // Blocks wrap around, and never name a conversation twice.
        let s = watch_sets(25, 3, 10);
        assert_eq!(s[2], vec![16, 17, 18, 19, 20, 21, 22, 23, 24, 0]);
        for set in &s {
            let mut d = set.clone();
            d.sort_unstable();
            d.dedup();
            assert_eq!(d.len(), 10);
        }
        // Fewer customers than the watch size: each agent watches them all, once.
        let s = watch_sets(3, 2, 10);
        assert_eq!(s[1], vec![1, 2, 0]);
        assert!(watch_sets(0, 2, 10).iter().all(Vec::is_empty));
    }
}
