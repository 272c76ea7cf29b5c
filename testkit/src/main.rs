//! `testkit stack`: the test kit's [`Stack`] for callers that are not Rust
//! tests (the browser tests' harness, the benchmark scripts). Starts the
//! stack, prints one JSON line describing it, runs until stdin closes or
//! SIGTERM/SIGINT arrives, then stops the processes (SIGTERM, SIGKILL after
//! `--grace-secs`) and removes the prefix's keys, the database and (unless
//! `--dir` named it) the directory.
//!
//!   testkit stack --gateways 2 --workers 1 --db sqlite --dev --env K=V

use std::io::Read;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use testkit::{Db, Stack};

#[derive(Parser)]
#[command(name = "testkit", about = "Starts the chat stack for tests and benchmarks")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Starts gateways and workers; prints {prefix, db, database_url, redis_url, dir, gateways:[{addr,url,pid,log}], workers:[...]}.
    Stack(StackArgs),
}

#[derive(clap::Args)]
struct StackArgs {
    #[arg(long, default_value_t = 1)]
    gateways: usize,
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// sqlite (a file in the stack's directory) or postgres (a fresh database).
    #[arg(long, default_value = "sqlite")]
    db: Db,
    /// Dev mode (CHAT_DEV=1: the demo agent, dev customer tokens).
    #[arg(long)]
    dev: bool,
    /// The Rust tests' settings (short claim timers, no demo customers) under the --env ones.
    #[arg(long)]
    test_defaults: bool,
    /// A setting of every process (repeatable; later ones win).
    #[arg(long = "env", value_name = "K=V")]
    env: Vec<String>,
    /// A setting of the gateways only.
    #[arg(long = "gateway-env", value_name = "K=V")]
    gateway_env: Vec<String>,
    /// A setting of the workers only.
    #[arg(long = "worker-env", value_name = "K=V")]
    worker_env: Vec<String>,
    /// Directory of the gateway and worker binaries (default: next to this one; built when missing there).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Logs and the SQLite file go here, kept afterwards (default: a temporary directory, removed).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Redis key prefix (default: a random one).
    #[arg(long)]
    prefix: Option<String>,
    #[arg(long, env = "REDIS_URL", default_value = testkit::REDIS_URL)]
    redis_url: String,
    /// Open-file limit (soft and hard) of the gateways, through prlimit(1).
    #[arg(long)]
    gateway_nofile: Option<u64>,
    /// Run until a signal only (for `&` in a script, where stdin is /dev/null).
    #[arg(long)]
    ignore_stdin: bool,
    /// How long SIGTERMed processes may drain before SIGKILL.
    #[arg(long, default_value_t = 10)]
    grace_secs: u64,
}

fn pairs(v: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    v.iter()
        .map(|kv| kv.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())).with_context(|| format!("`{kv}` is not K=V")))
        .collect()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let Cmd::Stack(a) = Cli::parse().cmd;
    let id = uuid::Uuid::new_v4().simple().to_string();
    let prefix = a.prefix.clone().unwrap_or_else(|| format!("t{}:", &id[..12]));
    if prefix.is_empty() {
        bail!("--prefix must not be empty");
    }
    let (dir, keep) = match &a.dir {
        Some(d) => (d.clone(), true),
        None => (std::env::temp_dir().join(format!("chat-stack-{}", &id[..12])), false),
    };
    let mut s = Stack::with(a.db, prefix, dir, keep).await;
    s.redis_url = a.redis_url.clone();
    if !a.test_defaults {
        s.base_env.clear();
    }
    if a.dev {
        s.base_env.push(("CHAT_DEV".into(), "1".into()));
    }
    s.extra_env = pairs(&a.env)?;
    s.gw_env = pairs(&a.gateway_env)?;
    s.wk_env = pairs(&a.worker_env)?;
    s.gateway_nofile = a.gateway_nofile;
    if let Some(d) = &a.bin_dir {
        s.bin_dir = std::path::absolute(d).context("--bin-dir")?;
    }
    // Starting blocks (a process's ready line); a panic there still drops
    // the stack, which removes what was started.
    let mut s = s.spawn(a.gateways, a.workers).await;
    println!("{}", s.describe());

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let stdin_closed = async {
        if a.ignore_stdin {
            std::future::pending::<()>().await;
        }
        let _ = tokio::task::spawn_blocking(|| {
            let mut sink = [0u8; 256];
            let mut stdin = std::io::stdin();
            while matches!(stdin.read(&mut sink), Ok(n) if n > 0) {}
        })
        .await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
        _ = stdin_closed => {}
    }
    s.shutdown(Duration::from_secs(a.grace_secs));
    Ok(())
}
