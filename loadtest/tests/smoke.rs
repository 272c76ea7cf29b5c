//! A short load run against real processes (2 gateways, 1 worker): a few
//! hundred sockets, a few seconds of mixed traffic, agents each watching 10
//! conversations. Asserts what must hold at any speed: nothing lost,
//! duplicated or out of order, at the customers and at the watching agents,
//! and nothing delivered to an agent that does not watch. Never timings.

mod common;

use std::time::Duration;

use loadtest::client::Mix;
use loadtest::procstat::Watched;
use loadtest::scenario::{self, RunOpts};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smoke_run_loses_and_duplicates_nothing() {
    let s = common::Stack::start(2, 1).await;
    let stack = s.target();
    let opts = RunOpts {
        customers: 300,
        agents: 3,
        agent_watch: 10,
        rate: 300.0,
        duration: Duration::from_secs(4),
        warmup: Duration::from_secs(0),
        drain: Duration::from_secs(10),
        http_users: 2,
        // Timing is never asserted: a slow CI machine must not fail this test.
        p99_limit_ms: f64::INFINITY,
        ..RunOpts::default()
    };
    let watched = Watched::parse(&s.pids()).expect("pids");
    let r = scenario::run(&stack, &opts, &watched).await.expect("run");
    eprintln!("{}", scenario::summary_line(&r));
    let d = &r.deliveries;
    assert!(d.acked > 500, "too few messages went through: {d:?}");
    assert_eq!(d.failed, 0, "refused sends: {d:?}");
    assert_eq!(d.unacked, 0, "unacked sends: {d:?}");
    assert_eq!(d.lost, 0, "lost deliveries: {d:?}");
    assert_eq!(d.duplicated, 0, "duplicated deliveries: {d:?}");
    assert_eq!(d.out_of_order, 0, "out-of-order deliveries: {d:?}");
    // The watching agents are receivers too: their replies and the customers'
    // messages in the 30 watched conversations must reach them (lost counts them).
    assert!(d.expected_at_agents >= 50, "too few deliveries were meant for watching agents: {d:?}");
    assert_eq!(d.delivered_at_agents, d.expected_at_agents, "{d:?}");
    // The other 270 conversations' messages must not reach the agents.
    assert_eq!(d.unexpected, 0, "messages delivered to agents that do not watch the conversation: {d:?}");
    assert!(r.rows_received > 0, "agents receive the chat-list rows of every conversation");
    assert_eq!(r.disconnects, 0);
    assert!(r.typing_sent > 0 && r.seen_sent > 0, "the mix includes typing and seen");
    assert!(r.http.as_ref().is_some_and(|h| h.requests > 0 && h.failures == 0), "goose REST part: {:?}", r.http);
    assert!(r.processes.contains_key("gateway0") && r.processes.contains_key("worker0"));
}

/// The rate ramp with refinement, against real processes. Whether a step is
/// sustained must not depend on this machine's speed, so the limits decide:
/// an impossible p99 limit (0 ms) fails every step, an infinite one none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ramp_refines_between_the_last_sustained_and_the_first_failed_step() {
    let s = common::Stack::start(1, 1).await;
    let stack = s.target();
    let watched = Watched::parse(&s.pids()).expect("pids");
    let base = RunOpts {
        customers: 40,
        agents: 1,
        agent_watch: 5,
        duration: Duration::from_secs(1),
        warmup: Duration::from_secs(0),
        drain: Duration::from_secs(5),
        http_users: 0,
        ..RunOpts::default()
    };
    let rates = |steps: &[scenario::RunReport]| steps.iter().map(|r| r.offered_msgs_per_s).collect::<Vec<_>>();

    // Every step fails: the first at 80, then two refinements toward zero.
    let failing = RunOpts { p99_limit_ms: 0.0, ..base.clone() };
    let (steps, best) = scenario::ramp(&stack, &failing, &watched, 80.0, 0.0, 2.0, 1000.0, 2).await.expect("ramp");
    assert_eq!(rates(&steps), vec![80.0, 40.0, 20.0]);
    assert!(steps.iter().all(|r| !r.sustained && r.verdict.contains("p99")), "{:?}", steps.iter().map(|r| &r.verdict).collect::<Vec<_>>());
    assert_eq!(best, 0.0);

    // Nothing fails up to --max: no refinement, the maximum is the last step.
    let passing = RunOpts { p99_limit_ms: f64::INFINITY, ..base };
    let (steps, best) = scenario::ramp(&stack, &passing, &watched, 40.0, 0.0, 2.0, 80.0, 2).await.expect("ramp");
    assert_eq!(rates(&steps), vec![40.0, 80.0]);
    assert!(steps.iter().all(|r| r.sustained && r.deliveries.lost == 0), "{:?}", steps.iter().map(|r| &r.verdict).collect::<Vec<_>>());
    assert_eq!(best, 80.0);
}

/// The relay mix against real processes: customers all on gateway 0, two
/// agent sockets on gateway 1 each watching every conversation, customer
/// messages only. Every message must reach its customer's echo and both
/// agents (across nodes), once and in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_mix_delivers_every_message_across_nodes() {
    let s = common::Stack::start(2, 1).await;
    let stack = s.target();
    let opts = RunOpts {
        mix: Mix::Relay,
        customers: 40,
        agents: 2,
        agent_watch: Mix::Relay.default_agent_watch(40, scenario::MAX_AGENT_WATCH),
        rate: 200.0,
        duration: Duration::from_secs(3),
        warmup: Duration::from_secs(0),
        drain: Duration::from_secs(10),
        http_users: 0,
        p99_limit_ms: f64::INFINITY,
        ..RunOpts::default()
    };
    let watched = Watched::parse(&s.pids()).expect("pids");
    let r = scenario::run(&stack, &opts, &watched).await.expect("run");
    eprintln!("{}", scenario::summary_line(&r));
    let d = &r.deliveries;
    assert_eq!((r.mix.as_str(), r.message_bytes, r.agent_watch), ("relay", Some(130), 40));
    assert!(d.acked > 300, "too few messages went through: {d:?}");
    assert_eq!((d.failed, d.unacked, d.lost, d.duplicated, d.out_of_order, d.unexpected), (0, 0, 0, 0, 0, 0), "{d:?}");
    // Messages only, from customers only: each one at its customer and at both agents.
    assert_eq!((r.typing_sent, r.seen_sent), (0, 0));
    assert_eq!(d.sent, d.acked);
    assert_eq!(d.expected, 3 * d.acked, "{d:?}");
    assert_eq!(d.delivered_at_agents, 2 * d.acked, "{d:?}");
    assert_eq!(r.latency_at_agents.count, d.delivered_at_agents);
    assert_eq!(r.disconnects, 0);
    // Redis is shared with other tests: only that the window was read (or why not).
    assert!(!r.redis_commands.is_empty() || r.redis_commands_note.is_some(), "no INFO commandstats figures");
}
