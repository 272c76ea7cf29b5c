//! `loadtest`: the load tool's command line. See docs/loadtest.md.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use loadtest::client::Mix;
use loadtest::procstat::Watched;
use loadtest::proto::Target;
use loadtest::scenario::{self, RunOpts, Stack, DEV_SECRET};
use serde::Serialize;

#[derive(Parser)]
#[command(name = "loadtest", about = "Open-loop chat load against our gateway or the Socket.IO peer")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Args, Clone)]
struct Common {
    /// What to drive.
    #[arg(long, value_enum, default_value = "ours")]
    target: Target,
    /// Gateway (or peer node) address; repeat for several nodes (mixed: sockets go
    /// round robin; relay: customers on the first, agents on the others).
    #[arg(long = "gateway", required = true)]
    gateways: Vec<SocketAddr>,
    /// Process to measure, NAME=PID (CPU and memory); repeat. Names starting with
    /// `gateway` or `peer` count as servers for memory per connection.
    #[arg(long = "pid")]
    pids: Vec<String>,
    /// Loopback source addresses to spread sockets over (127.0.0.x); repeat.
    #[arg(long = "src-ip")]
    src_ips: Vec<IpAddr>,
    /// Customer token secret (ours; the dev-mode default works with CHAT_DEV=1).
    #[arg(long, default_value = DEV_SECRET)]
    secret: String,
    #[arg(long, default_value = "demo")]
    agent_user: String,
    #[arg(long, default_value = "demo")]
    agent_pass: String,
    /// Redis of the stack (ours: wait for the worker to drain the log before reading CPU).
    #[arg(long)]
    redis_url: Option<String>,
    #[arg(long, default_value = "chat:")]
    key_prefix: String,
    #[arg(long, default_value_t = 4)]
    log_shards: u32,
    /// Write the report as JSON here.
    #[arg(long)]
    json: Option<String>,
}

#[derive(Args, Clone)]
struct Load {
    /// What the sockets do. `mixed`: 25% messages, 60% typing, 15% seen, agents
    /// reply; sockets round robin over the gateways. `relay`: customer messages
    /// only (no typing, seen or replies); customers on the first gateway, agent
    /// sockets on the others (all on the one when there is one).
    #[arg(long, value_enum, default_value = "mixed")]
    mix: Mix,
    #[arg(long, default_value_t = 500)]
    customers: usize,
    #[arg(long, default_value_t = 4)]
    agents: usize,
    /// Conversations each agent socket watches (a contiguous block from agent j at
    /// j*customers/agents); agents reply, type and read only there. At most 100.
    /// Default: 10 (mixed), every customer's up to 100 (relay).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=scenario::MAX_AGENT_WATCH as i64))]
    agent_watch: Option<u16>,
    /// Messages per second offered (in the mixed mix typing and seen come on top: 25% messages, 60% typing, 15% seen).
    #[arg(long, default_value_t = 1000.0)]
    rate: f64,
    /// Message text length in bytes (the stamp, then filler). Default: ~64 (mixed), 130 (relay).
    #[arg(long, value_parser = clap::value_parser!(u16).range(16..=4000))]
    message_bytes: Option<u16>,
    #[arg(long, default_value_t = 10)]
    duration_secs: u64,
    #[arg(long, default_value_t = 1)]
    warmup_secs: u64,
    #[arg(long, default_value_t = 5)]
    drain_secs: u64,
    /// Share of messages sent by agents (replies), at most 40 actions/s per agent socket; the rest by customers.
    #[arg(long, default_value_t = 0.2)]
    agent_share: f64,
    /// goose users driving the agents' REST part at the same time (ours only).
    #[arg(long, default_value_t = 0)]
    http_users: usize,
    #[arg(long, default_value_t = 250.0)]
    p99_limit_ms: f64,
}

#[derive(Subcommand)]
enum Cmd {
    /// One run at a fixed rate.
    Run {
        #[command(flatten)]
        c: Common,
        #[command(flatten)]
        l: Load,
    },
    /// Rising rates until p99 passes the limit or anything is lost.
    Ramp {
        #[command(flatten)]
        c: Common,
        #[command(flatten)]
        l: Load,
        #[arg(long, default_value_t = 1000.0)]
        start: f64,
        /// Added per step (when --factor is 1).
        #[arg(long, default_value_t = 1000.0)]
        step: f64,
        /// Multiplied per step (overrides --step when > 1).
        #[arg(long, default_value_t = 1.0)]
        factor: f64,
        #[arg(long, default_value_t = 100_000.0)]
        max: f64,
        /// After the first failed step, this many steps between it and the
        /// last sustained one (geometric midpoints) to narrow the maximum.
        #[arg(long, default_value_t = 0)]
        refine: u32,
    },
    /// A long run with resident memory sampled (memory slope).
    Soak {
        #[command(flatten)]
        c: Common,
        #[command(flatten)]
        l: Load,
        #[arg(long, default_value_t = 10)]
        sample_secs: u64,
    },
    /// Idle connections ramp: how many sockets a node holds, and their memory.
    Idle {
        #[command(flatten)]
        c: Common,
        #[arg(long, default_value_t = 10_000)]
        conns: usize,
        /// Open the sockets this many at a time, reading the servers' memory
        /// after each step; the ramp ends at --conns or at the first step
        /// with refused sockets (0 = all at once).
        #[arg(long, default_value_t = 0)]
        step: usize,
        /// Client processes to spread the sockets over (each is bound by its open-file limit).
        #[arg(long, default_value_t = 1)]
        procs: usize,
        #[arg(long, default_value_t = 3)]
        settle_secs: u64,
    },
    #[command(hide = true)]
    IdleChild {
        #[arg(long, value_enum)]
        target: Target,
        #[arg(long = "gateway")]
        gateways: Vec<SocketAddr>,
        #[arg(long)]
        prefix: String,
        #[arg(long)]
        secret: String,
        #[arg(long)]
        src_ip: Option<IpAddr>,
    },
    /// Chat-list page benchmark: seed N conversations into Redis, time the first page.
    Chatlist {
        #[arg(long, default_value = "redis://127.0.0.1:6379")]
        redis_url: String,
        /// Key prefix of the gateway under test (its CHAT_KEY_PREFIX).
        #[arg(long)]
        key_prefix: String,
        #[arg(long, default_value_t = 100_000)]
        count: usize,
        #[arg(long)]
        gateway: String,
        /// The gateway's metrics address (its CHAT_METRICS_ADDR; /metrics is not on the public port).
        #[arg(long, default_value = "127.0.0.1:9092")]
        gateway_metrics: String,
        #[arg(long, default_value_t = 1000)]
        samples: usize,
        /// Skip seeding (rows are already there).
        #[arg(long)]
        no_seed: bool,
        /// Only seed the rows (no timing; the browser test of the chat list seeds through this).
        #[arg(long)]
        seed_only: bool,
        #[arg(long, default_value = "demo")]
        agent_user: String,
        #[arg(long, default_value = "demo")]
        agent_pass: String,
        #[arg(long)]
        json: Option<String>,
    },
    /// Round trips against the `ws-echo` server (the machine's WebSocket ceiling).
    Echo {
        #[arg(long)]
        addr: SocketAddr,
        #[arg(long, default_value_t = 50)]
        conns: usize,
        #[arg(long, default_value_t = 16)]
        inflight: usize,
        #[arg(long, default_value_t = 64)]
        size: usize,
        #[arg(long, default_value_t = 10)]
        secs: u64,
        #[arg(long)]
        json: Option<String>,
    },
}

fn stack_of(c: &Common) -> Stack {
    Stack {
        target: c.target,
        gateways: c.gateways.clone(),
        secret: c.secret.clone(),
        agent_user: c.agent_user.clone(),
        agent_pass: c.agent_pass.clone(),
        redis_url: c.redis_url.clone(),
        key_prefix: c.key_prefix.clone(),
        log_shards: c.log_shards,
    }
}

fn opts_of(c: &Common, l: &Load) -> RunOpts {
    RunOpts {
        mix: l.mix,
        customers: l.customers,
        agents: l.agents,
        agent_watch: l.agent_watch.map(usize::from).unwrap_or_else(|| l.mix.default_agent_watch(l.customers, scenario::MAX_AGENT_WATCH)),
        rate: l.rate,
        message_bytes: l.message_bytes.map(usize::from),
        duration: Duration::from_secs(l.duration_secs),
        warmup: Duration::from_secs(l.warmup_secs),
        drain: Duration::from_secs(l.drain_secs),
        agent_share: l.agent_share,
        http_users: l.http_users,
        src_ips: c.src_ips.clone(),
        p99_limit_ms: l.p99_limit_ms,
        ..RunOpts::default()
    }
}

fn emit<T: Serialize>(path: &Option<String>, v: &T) -> anyhow::Result<()> {
    let s = serde_json::to_string_pretty(v)?;
    match path {
        Some(p) => std::fs::write(p, s + "\n")?,
        None => println!("{s}"),
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // As many sockets as the hard limit allows.
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    match Cli::parse().cmd {
        Cmd::Run { c, l } => {
            let r = scenario::run(&stack_of(&c), &opts_of(&c, &l), &Watched::parse(&c.pids)?).await?;
            eprintln!("{}", scenario::summary_line(&r));
            emit(&c.json, &r)?;
        }
        Cmd::Ramp { c, l, start, step, factor, max, refine } => {
            let (steps, best) = scenario::ramp(&stack_of(&c), &opts_of(&c, &l), &Watched::parse(&c.pids)?, start, step, factor, max, refine).await?;
            eprintln!("max sustained: {best:.0} msg/s");
            #[derive(Serialize)]
            struct RampReport {
                max_sustained_msgs_per_s: f64,
                steps: Vec<scenario::RunReport>,
            }
            emit(&c.json, &RampReport { max_sustained_msgs_per_s: best, steps })?;
        }
        Cmd::Soak { c, l, sample_secs } => {
            let mut o = opts_of(&c, &l);
            o.rss_every = Some(Duration::from_secs(sample_secs.max(1)));
            let r = scenario::run(&stack_of(&c), &o, &Watched::parse(&c.pids)?).await?;
            eprintln!("{}", scenario::summary_line(&r));
            for (n, s) in &r.rss_slope_kib_per_min {
                eprintln!("RSS slope {n}: {s:+.1} KiB/min");
            }
            emit(&c.json, &r)?;
        }
        Cmd::Idle { c, conns, step, procs, settle_secs } => {
            let r = scenario::idle(&std::env::current_exe()?, &stack_of(&c), conns, step, procs, &c.src_ips, &Watched::parse(&c.pids)?, Duration::from_secs(settle_secs)).await?;
            if r.steps.len() > 1 {
                for s in &r.steps {
                    eprintln!("  step: {} held ({} refused), server RSS {} KiB, {:.2} KiB per socket, at {:.1}s", s.held, s.failed, s.rss_kib, s.rss_per_conn_kib, s.seconds);
                }
            }
            eprintln!(
                "[{}] held {} of {} idle sockets ({} failed{}) in {:.1}s; server memory {:.2} KiB per socket",
                r.target,
                r.held,
                r.requested,
                r.failed,
                r.first_error.as_deref().map(|e| format!(", first error: {e}")).unwrap_or_default(),
                r.seconds_to_connect,
                r.rss_per_conn_kib
            );
            emit(&c.json, &r)?;
        }
        Cmd::IdleChild { target, gateways, prefix, secret, src_ip } => {
            let stack = Stack {
                target,
                gateways,
                secret,
                agent_user: String::new(),
                agent_pass: String::new(),
                redis_url: None,
                key_prefix: String::new(),
                log_shards: 0,
            };
            scenario::idle_child(&stack, &prefix, src_ip).await?;
        }
        Cmd::Chatlist { redis_url, key_prefix, count, gateway, gateway_metrics, samples, no_seed, seed_only, agent_user, agent_pass, json } => {
            if !no_seed {
                let s = loadtest::seed::seed_rows(&redis_url, &key_prefix, count).await?;
                eprintln!("seeded {count} conversations in {s:.1}s");
            }
            if seed_only {
                return Ok(());
            }
            let r = loadtest::seed::time_page(&gateway, &gateway_metrics, &agent_user, &agent_pass, samples).await?;
            eprintln!(
                "page of {} out of {}: client p50 {:.3} ms p99 {:.3} ms; server: {:.1}% <= 1 ms, {:.1}% <= 2 ms, p50 ~{:.3} ms",
                r.items_per_page,
                r.conversations,
                r.client_p50_ms,
                r.client_p99_ms,
                r.server_share_le_1ms * 100.0,
                r.server_share_le_2ms * 100.0,
                r.server_p50_ms_estimate
            );
            emit(&json, &r)?;
        }
        Cmd::Echo { addr, conns, inflight, size, secs, json } => {
            let r = loadtest::echo::bench(addr, conns, inflight, size, secs).await?;
            eprintln!("echo: {:.0} round trips/s ({} conns x {} in flight, {} B)", r.round_trips_per_s, conns, inflight, size);
            emit(&json, &r)?;
        }
    }
    Ok(())
}
