//! `gateway`: read config, bind, print the address, serve until SIGTERM/SIGINT.

use clap::Parser;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    rt.enable_all();
    // A task that a running task wakes (above all the Redis connection's
    // driver, woken by every request) runs next by default, from tokio's LIFO
    // slot: one request per write to Redis. Without the slot, the driver waits
    // behind the sockets that are already ready and writes their requests
    // together. Measured at 4,000 msg/s on 2 gateways: about 4% less CPU in all,
    // and ramps sustain one x1.25 step more (BENCHMARKS.md, session 9).
    // `CHAT_LIFO_SLOT=1` keeps tokio's default (for A/B runs).
    #[cfg(tokio_unstable)]
    if std::env::var("CHAT_LIFO_SLOT").as_deref() != Ok("1") {
        rt.disable_lifo_slot();
    }
    rt.build()?.block_on(serve())
}

async fn serve() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    let mut cfg = gateway::Config::parse();
    if let Err(why) = cfg.check() {
        anyhow::bail!("configuration: {why}");
    }
    // Every socket is a file: refuse sockets past the open-file limit with a
    // clear "node is full" (503) instead of leaving them unaccepted in the
    // listen backlog. The rest is kept for Redis, SQL and HTTP calls.
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(nofile) => {
            let fit = nofile.saturating_sub(256.max(nofile / 50)) as usize;
            if fit < cfg.max_connections {
                tracing::info!(open_files = nofile, sockets = fit, "open-file limit caps the sockets of this node");
                cfg.max_connections = fit;
            }
        }
        Err(e) => tracing::warn!(error = %e, "could not read the open-file limit"),
    }
    // Metrics first: scripts and tests read both lines, this one before the other.
    let metrics = tokio::net::TcpListener::bind(cfg.metrics_addr).await?;
    println!("gateway metrics on http://{}", metrics.local_addr()?);
    let listener = tokio::net::TcpListener::bind(cfg.addr).await?;
    let addr = listener.local_addr()?;
    println!("gateway listening on http://{addr}");
    gateway::run(cfg, listener, metrics, shutdown_signal()).await
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
