//! One WebSocket connection of the load: opening it (from a chosen loopback
//! source address, with our bearer token or the peer's connect packet), and
//! its open-loop schedule. Actions happen at fixed times whatever the server
//! does; a message's latency counts from its scheduled time, so a stalled
//! server shows up as latency instead of silently lowering the offered rate.
//!
//! An agent socket first watches its conversations ([`watch_all`]); it then
//! receives their live events, and replies, types and reads only there.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use futures::{SinkExt, StreamExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message as WsMsg;
use tokio_tungstenite::WebSocketStream;

use crate::proto::{self, In, Target};
use crate::stats::{ConnResult, Live, Sent, ACKED, FAILED, WRITTEN};
use serde::Serialize;

pub type Ws = WebSocketStream<TcpStream>;

/// The generator's socket settings. tungstenite zero-fills its whole read
/// buffer before every read (128 KiB by default): with thousands of sockets
/// each reading small frames that was 14% of the machine's CPU at
/// 2,500 msg/s (`perf record -a`), taken from the servers under test. Frames
/// here are small; a larger one just takes several reads.
pub fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default().read_buffer_size(4096)
}

/// How a connection proves who it is.
#[derive(Debug, Clone)]
pub enum Auth {
    /// Our gateway: `Authorization: Bearer <token>`.
    Bearer(String),
    /// The peer: trusted `{kind, id}` in the Socket.IO connect packet.
    Sio { kind: &'static str, id: String },
}

/// Opens a socket and waits for the server's greeting (`hello`, or the
/// Socket.IO open + connect exchange).
pub async fn open(target: Target, addr: SocketAddr, auth: &Auth, src: Option<IpAddr>, timeout: Duration) -> anyhow::Result<Ws> {
    tokio::time::timeout(timeout, open_inner(target, addr, auth, src)).await.map_err(|_| anyhow!("connect timed out"))?
}

async fn open_inner(target: Target, addr: SocketAddr, auth: &Auth, src: Option<IpAddr>) -> anyhow::Result<Ws> {
    let sock = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    if let Some(ip) = src {
        sock.bind(SocketAddr::new(ip, 0)).with_context(|| format!("bind {ip}"))?;
    }
    let stream = sock.connect(addr).await.context("tcp connect")?;
    stream.set_nodelay(true)?;
    let mut req = format!("ws://{addr}{}", target.ws_path()).into_client_request()?;
    if let Auth::Bearer(t) = auth {
        req.headers_mut().insert("authorization", format!("Bearer {t}").parse()?);
    }
    let (mut ws, _) = tokio_tungstenite::client_async_with_config(req, stream, Some(ws_config())).await.context("websocket handshake")?;
    loop {
        let m = ws.next().await.ok_or_else(|| anyhow!("closed during greeting"))??;
        let WsMsg::Text(t) = m else { continue };
        match proto::scan(target, &t) {
            In::Ready => return Ok(ws),
            In::Open => {
                if let Auth::Sio { kind, id } = auth {
                    ws.send(WsMsg::Text(proto::sio_connect(kind, id).into())).await?;
                }
            }
            In::Ping => ws.send(WsMsg::Text("3".into())).await?,
            In::Refused => bail!("refused: {t}"),
            _ => {}
        }
    }
}

/// Watches `convs` on an agent socket (ours: `watch` with `after: 0`; the
/// peer: a `watch` event with an ack) and waits until every one is answered:
/// ours by `replay` (nothing to replay before the traffic), the peer by its
/// ack, i.e. after the join. `rate_limited` answers are retried; any other
/// refusal, a close or the timeout is an error.
pub async fn watch_all(target: Target, ws: &mut Ws, convs: &[&str], timeout: Duration) -> anyhow::Result<()> {
    tokio::time::timeout(timeout, watch_inner(target, ws, convs))
        .await
        .map_err(|_| anyhow!("watch of {} conversations timed out", convs.len()))?
}

async fn watch_inner(target: Target, ws: &mut Ws, convs: &[&str]) -> anyhow::Result<()> {
    let index: HashMap<&str, usize> = convs.iter().enumerate().map(|(i, c)| (*c, i)).collect();
    let mut answered = vec![false; convs.len()];
    let mut left = convs.len();
    for (i, c) in convs.iter().enumerate() {
        ws.feed(WsMsg::Text(proto::encode_watch(target, c, i as u64).into())).await?;
    }
    ws.flush().await?;
    while left > 0 {
        let m = ws.next().await.ok_or_else(|| anyhow!("closed while watching"))??;
        let t = match m {
            WsMsg::Text(t) => t,
            WsMsg::Close(f) => bail!("closed while watching: {f:?}"),
            _ => continue,
        };
        let done = match proto::scan(target, &t) {
            In::Replay { conv } => index.get(conv).copied(),
            In::WatchAck { i, refused: None } => Some(i as usize),
            In::WatchAck { i, refused: Some("rate_limited") } => {
                let c = convs.get(i as usize).context("answer to an unknown watch")?;
                tokio::time::sleep(Duration::from_millis(100)).await;
                ws.send(WsMsg::Text(proto::encode_watch(target, c, i).into())).await?;
                None
            }
            In::WatchAck { i, refused: Some(code) } => {
                bail!("watch of {} refused ({code}): {t}", convs.get(i as usize).copied().unwrap_or("?"))
            }
            In::Ping => {
                ws.send(WsMsg::Text("3".into())).await?;
                None
            }
            _ => None,
        };
        if let Some(i) = done {
            if i < answered.len() && !answered[i] {
                answered[i] = true;
                left -= 1;
            }
        }
    }
    Ok(())
}

/// Customer index of a load conversation id (`<prefix>c<index>`).
fn conv_index(conv: &str) -> Option<u32> {
    conv.rsplit('c').next()?.parse().ok()
}

/// Who a connection is in the scenario.
#[derive(Debug, Clone)]
pub enum Role {
    /// A customer writes to its own conversation (index = its origin).
    Customer { conv: String },
    /// An agent replies (and types, and reads) round robin across the
    /// conversations it watches (customer indexes into `convs`).
    Agent { convs: Arc<Vec<String>>, watching: Vec<u32> },
}

/// What the sockets do (`--mix`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Mix {
    /// Every socket acts on a fixed 20-slot pattern: 5 messages (25%), 3
    /// `seen` (15%), 12 `typing` (60%); agents reply in what they watch;
    /// sockets round robin over the gateways.
    #[default]
    Mixed,
    /// Messages only, from customers only (no typing, no seen, no agent
    /// replies); customers on the first gateway, agent sockets on the others
    /// (all on the one when there is one), each watching
    /// `--agent-watch` conversations (default: every customer, at most 100).
    Relay,
}

impl Mix {
    pub fn name(self) -> &'static str {
        match self {
            Mix::Mixed => "mixed",
            Mix::Relay => "relay",
        }
    }

    /// Share of actions that are messages: the action rate is the message
    /// rate divided by this.
    pub fn message_share(self) -> f64 {
        match self {
            Mix::Mixed => MESSAGE_SHARE,
            Mix::Relay => 1.0,
        }
    }

    /// The action of schedule slot `slot`.
    pub(crate) fn action_of(self, slot: u64) -> Action {
        match self {
            Mix::Mixed => action_of(slot),
            Mix::Relay => Action::Message,
        }
    }

    /// Message text length when `--message-bytes` is not given (None: the
    /// stamp and a short filler, ~64 bytes, as before the option existed).
    pub fn default_message_bytes(self) -> Option<usize> {
        match self {
            Mix::Mixed => None,
            Mix::Relay => Some(RELAY_MESSAGE_BYTES),
        }
    }

    /// Conversations each agent socket watches when `--agent-watch` is not
    /// given: 10 (a console's open and cached ones) in the mixed mix; every
    /// customer's, up to `max`, in the relay mix.
    pub fn default_agent_watch(self, customers: usize, max: usize) -> usize {
        match self {
            Mix::Mixed => 10,
            Mix::Relay => customers.clamp(1, max),
        }
    }
}

/// The relay mix's default message size (text bytes), as in issue 17's reference measurement.
pub const RELAY_MESSAGE_BYTES: usize = 130;

/// One connection's schedule: an action every `period`, from `first` until
/// `end`. The action of slot n follows the mix ([`Mix::action_of`]).
#[derive(Debug, Clone)]
pub struct Plan {
    pub origin: u32,
    pub role: Role,
    pub period: Duration,
    pub first: Instant,
    pub end: Instant,
    pub slot: u64,
    /// Agent sockets watching each conversation (by customer index): an
    /// acked message is expected at 1 + that many sockets.
    pub watchers: Arc<Vec<u32>>,
    pub mix: Mix,
    /// Text length of a message in bytes ([`proto::stamp`]; None: the short default).
    pub message_bytes: Option<usize>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Action {
    Message,
    Seen,
    Typing,
}

fn action_of(slot: u64) -> Action {
    match slot % 20 {
        0 | 4 | 8 | 12 | 16 => Action::Message,
        2 | 10 | 18 => Action::Seen,
        _ => Action::Typing,
    }
}

/// Share of actions that are messages in the mixed mix (see [`Mix`]).
pub const MESSAGE_SHARE: f64 = 0.25;

/// Runs the schedule, reads everything the server sends, and keeps reading
/// after `end` until `stop` flips (the run's drain), then closes.
pub async fn drive(target: Target, mut ws: Ws, plan: Plan, epoch: Instant, live: Arc<Live>, mut stop: watch::Receiver<bool>) -> ConnResult {
    let watching: &[u32] = match &plan.role {
        Role::Agent { watching, .. } => watching,
        Role::Customer { .. } => &[],
    };
    let is_agent = matches!(plan.role, Role::Agent { .. });
    let mut res = ConnResult { origin: plan.origin, is_agent, watching: watching.to_vec(), ..Default::default() };
    // Agents: position in `watching` of each watched conversation.
    let slot_of: HashMap<u32, usize> = watching.iter().enumerate().map(|(i, c)| (*c, i)).collect();
    // Last message seq seen per watched conversation (agents) or in the own one (customers).
    let mut last_seq: Vec<u64> = vec![0; watching.len().max(1)];
    // Agents: the next watched conversation to act in (its position in `watching`).
    let mut cursor = 0usize;
    let mut next = plan.first;
    let mut slot = plan.slot;
    let mut sending = next < plan.end && (!is_agent || !watching.is_empty());
    // Counts this connection in `schedules_done` when dropped: when its
    // schedule ends, or on any early return (a closed socket sends no more).
    let mut schedule = Some(ScheduleDone(&live));
    if !sending {
        drop(schedule.take());
    }
    let us = |t: Instant| t.saturating_duration_since(epoch).as_micros() as u64;
    loop {
        tokio::select! {
            biased;
            _ = stop.changed() => break,
            _ = tokio::time::sleep_until(next), if sending => {
                let now = Instant::now();
                let mut n = 0;
                // Open loop: every action that is due goes now, late or not.
                while next <= now && next < plan.end {
                    let (conv_idx, conv): (u32, &str) = match &plan.role {
                        Role::Customer { conv } => (plan.origin, conv.as_str()),
                        Role::Agent { convs, watching } => (watching[cursor], convs[watching[cursor] as usize].as_str()),
                    };
                    let action = plan.mix.action_of(slot);
                    let frame = match action {
                        Action::Message => {
                            let k = res.sent.len() as u64;
                            res.sent.push(Sent { conv: conv_idx, status: WRITTEN });
                            Live::inc(&live.scheduled_msgs);
                            Some(proto::encode_send(target, conv, k, &proto::stamp(plan.origin, k, us(next), plan.message_bytes)))
                        }
                        Action::Typing => {
                            Live::inc(&live.typing);
                            Some(proto::encode_typing(target, conv))
                        }
                        Action::Seen => {
                            let s = last_seq[cursor];
                            if s > 0 {
                                Live::inc(&live.seen);
                                Some(proto::encode_seen(target, conv, s))
                            } else {
                                None
                            }
                        }
                    };
                    if action == Action::Message && is_agent {
                        cursor = (cursor + 1) % watching.len();
                    }
                    slot += 1;
                    next += plan.period;
                    if let Some(f) = frame {
                        if ws.feed(WsMsg::Text(f.into())).await.is_err() {
                            Live::inc(&live.disconnects);
                            return res;
                        }
                        n += 1;
                    }
                }
                if n > 0 && ws.flush().await.is_err() {
                    Live::inc(&live.disconnects);
                    return res;
                }
                if next >= plan.end {
                    sending = false;
                    drop(schedule.take());
                }
            }
            m = ws.next() => {
                let t = match m {
                    Some(Ok(WsMsg::Text(t))) => t,
                    Some(Ok(WsMsg::Close(f))) => {
                        let code = f.map(|f| u16::from(f.code)).unwrap_or(1005);
                        if let Ok(mut m) = live.close_codes.lock() {
                            *m.entry(code).or_default() += 1;
                        }
                        Live::inc(&live.disconnects);
                        return res;
                    }
                    None | Some(Err(_)) => {
                        Live::inc(&live.disconnects);
                        return res;
                    }
                    Some(Ok(_)) => continue,
                };
                Live::inc(&live.frames_in);
                match proto::scan(target, &t) {
                    In::Message { conv, seq, text } => {
                        let idx = match &plan.role {
                            Role::Agent { .. } => conv_index(conv).and_then(|c| slot_of.get(&c).copied()),
                            Role::Customer { conv: own } => (conv == own).then_some(0),
                        };
                        // A message of a conversation this socket does not hold is not
                        // meant for it: the ledger counts it as unexpected, the drain and
                        // the latency leave it out, and it moves no read state.
                        if let Some(i) = idx {
                            last_seq[i] = last_seq[i].max(seq);
                        }
                        if let Some((origin, k, sched)) = proto::parse_stamp(text) {
                            if res.ledger.mark(origin, k) && idx.is_some() {
                                Live::inc(&live.deliveries);
                                let now = us(Instant::now());
                                live.record(&live.latency, sched, now);
                                if is_agent {
                                    live.record(&live.latency_at_agents, sched, now);
                                }
                            }
                        }
                    }
                    In::Ack { k, ok } => {
                        if let Some(s) = res.sent.get_mut(k as usize) {
                            if s.status == WRITTEN {
                                s.status = if ok { ACKED } else { FAILED };
                                if ok {
                                    Live::inc(&live.acked);
                                    let watchers = plan.watchers.get(s.conv as usize).copied().unwrap_or(0);
                                    Live::add(&live.expected, 1 + u64::from(watchers));
                                    // The ack carries no stamp: the schedule gives the send time back.
                                    let sched = us(plan.first) + k_sched_offset(&plan, k);
                                    live.record(&live.ack, sched, us(Instant::now()));
                                } else {
                                    Live::inc(&live.errors);
                                }
                            }
                        }
                    }
                    In::Row if is_agent => Live::inc(&live.rows),
                    In::Ping => {
                        let sent = ws.send(WsMsg::Text("3".into())).await;
                        if sent.is_err() {
                            return res;
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
    res
}

/// Marks a connection's schedule as over when dropped.
struct ScheduleDone<'a>(&'a Live);

impl Drop for ScheduleDone<'_> {
    fn drop(&mut self) {
        Live::inc(&self.0.schedules_done);
    }
}

/// Scheduled time (µs after `plan.first`) of message number `k`.
fn k_sched_offset(plan: &Plan, k: u64) -> u64 {
    if plan.mix == Mix::Relay {
        // Every slot is a message.
        return k * plan.period.as_micros() as u64;
    }
    // Messages sit at fixed slots of every 20: find the slot of the k-th one.
    let offs = [0u64, 4, 8, 12, 16];
    let base = plan.slot - plan.slot % 20;
    let mut seen = 0u64;
    let mut block = base;
    loop {
        for o in offs {
            let s = block + o;
            if s >= plan.slot {
                if seen == k {
                    return (s - plan.slot) * plan.period.as_micros() as u64;
                }
                seen += 1;
            }
        }
        block += 20;
        if block > plan.slot + 20 * (k + 2) {
            return 0;
        }
    }
}

/// Holds an idle socket open: answers pings, reads until `stop` or close.
pub async fn hold(target: Target, mut ws: Ws, mut stop: watch::Receiver<bool>) -> bool {
    loop {
        tokio::select! {
            _ = stop.changed() => {
                let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
                return true;
            }
            m = ws.next() => match m {
                Some(Ok(WsMsg::Text(t))) => {
                    if proto::scan(target, &t) == In::Ping && ws.send(WsMsg::Text("3".into())).await.is_err() {
                        return false;
                    }
                }
                Some(Ok(_)) => {}
                _ => return false,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn message_slots() {
        let plan = Plan {
            origin: 0,
            role: Role::Customer { conv: "c".into() },
            period: Duration::from_millis(10),
            first: Instant::now(),
            end: Instant::now(),
            slot: 3,
            watchers: Arc::new(vec![]),
            mix: Mix::Mixed,
            message_bytes: None,
        };
        // Slots from 3: messages at 4, 8, 12, 16, 20...
        assert_eq!(k_sched_offset(&plan, 0), 10_000);
        assert_eq!(k_sched_offset(&plan, 1), 50_000);
        assert_eq!(k_sched_offset(&plan, 4), 170_000);
        let n = (0..20).filter(|s| Mix::Mixed.action_of(*s) == Action::Message).count();
        assert_eq!(n, 5);
        assert_eq!((0..20).filter(|s| Mix::Mixed.action_of(*s) == Action::Typing).count(), 12);
        // Relay: every slot is a message, whatever the phase.
        let relay = Plan { mix: Mix::Relay, ..plan };
        assert_eq!(k_sched_offset(&relay, 0), 0);
        assert_eq!(k_sched_offset(&relay, 7), 70_000);
        assert!((0..1000).all(|s| Mix::Relay.action_of(s) == Action::Message));
        assert_eq!(Mix::Relay.message_share(), 1.0);
    }

    #[test]
    fn mix_defaults() {
        assert_eq!(Mix::Mixed.default_message_bytes(), None);
        assert_eq!(Mix::Relay.default_message_bytes(), Some(130));
        assert_eq!(Mix::Mixed.default_agent_watch(2000, 100), 10);
        assert_eq!(Mix::Relay.default_agent_watch(100, 100), 100);
        assert_eq!(Mix::Relay.default_agent_watch(2000, 100), 100);
        assert_eq!(Mix::Relay.default_agent_watch(40, 100), 40);
    }

    #[test]
    fn conversation_index() {
        assert_eq!(conv_index("ltabc0c17"), Some(17));
        assert_eq!(conv_index("lt0c0c0"), Some(0));
        assert_eq!(conv_index("other"), None);
    }
}
