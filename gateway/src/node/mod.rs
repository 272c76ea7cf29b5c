//! This node among the others: its inbox loop and delivery to local
//! sockets ([`inbox`]), customer presence ([`presence`]), agents' watches
//! ([`watch`]), and liveness: heartbeats, reaping a silent node, fencing
//! itself after a stall ([`liveness`]).

pub mod inbox;
pub mod liveness;
pub mod presence;
pub mod watch;
