//! Publishing: the log shard entry for the workers, the relay entry into the
//! inbox of every node holding a recipient, and the staff stream (what
//! every agent gets: chat-list rows, presence, points).

use std::time::Instant;

use redis::AsyncCommands;
use schema::envelope::{self, Audience, LogEvent, Relay};
use schema::keys::{self, FIELD};

use super::{Broker, INBOX_LEN};
use crate::error::GatewayError;

/// The nodes a conversation's frame goes to: those holding the customer's
/// sockets, and those holding agent sockets that watch the conversation.
#[derive(Debug, Default, Clone)]
pub struct Targets {
    pub customers: Vec<String>,
    pub watchers: Vec<String>,
}

/// What one publish call sends.
pub struct Publish<'a> {
    pub log: Option<&'a LogEvent>,
    /// A conversation's frame and the nodes it goes to (by its audience).
    pub relay: Option<(&'a Relay, &'a Targets)>,
}

impl Broker<'_> {
    /// One pipelined round trip: the log shard entry for the workers, and the
    /// relay entry into the inbox of every node that holds a recipient: the
    /// customer's sockets (customer side), agent sockets watching the
    /// conversation (staff side), one entry per node carrying the sides it serves.
    pub async fn publish(&self, p: Publish<'_>) -> Result<(), GatewayError> {
        let mut pipe = redis::pipe();
        if let Some(ev) = p.log {
            let shard = keys::shard_of(ev.conversation(), self.log_shards);
            pipe.cmd("XADD").arg(self.keys.log(shard)).arg("*").arg(FIELD).arg(envelope::encode(ev)).ignore();
        }
        if let Some((relay, targets)) = p.relay {
            let to_customer = matches!(relay.audience, Audience::Customer | Audience::Both);
            let to_staff = matches!(relay.audience, Audience::Staff | Audience::Both);
            // (node, customer side, staff side); a handful of nodes at most.
            let mut per_node: Vec<(&str, bool, bool)> = Vec::new();
            let customers = targets.customers.iter().filter(|_| to_customer).map(|n| (n, true));
            let watchers = targets.watchers.iter().filter(|_| to_staff).map(|n| (n, false));
            for (n, customer) in customers.chain(watchers) {
                match per_node.iter_mut().find(|(x, _, _)| *x == n.as_str()) {
                    Some(e) if customer => e.1 = true,
                    Some(e) => e.2 = true,
                    None => per_node.push((n.as_str(), customer, !customer)),
                }
            }
            let mut encoded: [Option<Vec<u8>>; 3] = [None, None, None];
            for (node, c, s) in per_node {
                let (slot, audience) = match (c, s) {
                    (true, true) => (0, Audience::Both),
                    (true, false) => (1, Audience::Customer),
                    _ => (2, Audience::Staff),
                };
                let bytes = encoded[slot].get_or_insert_with(|| {
                    envelope::encode(&Relay { audience, conversation: relay.conversation.clone(), pos: relay.pos, frame: relay.frame.clone() })
                });
                redis_conn::xadd_capped(&mut pipe, &self.keys.inbox(node), INBOX_LEN, FIELD, bytes);
            }
        }
        let started = Instant::now();
        let mut conn = self.conn();
        pipe.query_async::<()>(&mut conn).await?;
        metrics::histogram!(crate::metrics::REDIS_SECONDS, "op" => "publish").record(started.elapsed().as_secs_f64());
        Ok(())
    }

    /// Relays an unpositioned frame of a conversation (typing, receipt) to one
    /// side: the customer's nodes, or the nodes of agents watching it. Nothing
    /// is written when nobody there would receive it.
    pub async fn relay_frame(&self, audience: Audience, conv: &str, frame: String) -> Result<(), GatewayError> {
        let mut conn = self.conn();
        let mut targets = Targets::default();
        if matches!(audience, Audience::Customer | Audience::Both) {
            targets.customers = conn.smembers(self.keys.customer_nodes(conv)).await?;
        }
        if matches!(audience, Audience::Staff | Audience::Both) {
            targets.watchers = conn.hkeys(self.keys.watchers(conv)).await?;
        }
        if targets.customers.is_empty() && targets.watchers.is_empty() {
            return Ok(());
        }
        let relay = Relay { audience, conversation: Some(conv.to_string()), pos: 0, frame };
        self.publish(Publish { log: None, relay: Some((&relay, &targets)) }).await
    }

    /// Sends a frame to every agent socket of every node (presence, points):
    /// one entry in the staff stream, which every node reads.
    pub async fn to_all_staff(&self, conv: &str, frame: String) -> Result<(), GatewayError> {
        let relay = Relay { audience: Audience::Staff, conversation: Some(conv.to_string()), pos: 0, frame };
        let mut pipe = redis::pipe();
        redis_conn::xadd_capped(&mut pipe, &self.keys.staff_events(), schema::limits::STAFF_EVENTS_LEN, FIELD, &envelope::encode(&relay));
        let started = Instant::now();
        let mut conn = self.conn();
        pipe.query_async::<()>(&mut conn).await?;
        metrics::histogram!(crate::metrics::REDIS_SECONDS, "op" => "publish").record(started.elapsed().as_secs_f64());
        Ok(())
    }
}
