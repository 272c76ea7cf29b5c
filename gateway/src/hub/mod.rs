//! The local hub: which sockets this node holds ([`Registry`]: agents,
//! customers by conversation, watchers by conversation, admission caps),
//! the handle through which anything reaches a socket ([`ConnHandle`],
//! [`Out`]), the close codes ([`close`]) and the count of this node's
//! channel subscriptions ([`subs`]).

pub mod close;
mod handle;
mod registry;
pub mod subs;

pub use handle::{ConnHandle, Out, NO_FLOOR};
pub use registry::Registry;
