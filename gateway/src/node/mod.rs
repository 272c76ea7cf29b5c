//! This node among the others: delivery to local sockets and the staff
//! stream ([`delivery`]), its subscriptions to conversation channels and
//! their reader ([`subs`]), customer presence ([`presence`]), agents'
//! watches ([`watch`]), and liveness: heartbeats, reaping a silent node,
//! fencing itself after a stall ([`liveness`]), and closing the sockets of
//! revoked sessions ([`revoke`]).

pub mod delivery;
pub mod liveness;
pub mod presence;
pub mod revoke;
pub mod subs;
pub mod watch;
