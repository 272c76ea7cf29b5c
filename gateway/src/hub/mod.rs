//! The local hub: which sockets this node holds ([`Registry`]: agents,
//! customers by conversation, watchers by conversation, admission caps),
//! the handle through which anything reaches a socket ([`ConnHandle`],
//! [`Out`]) and the close codes ([`close`]).

pub mod close;
mod handle;
mod registry;

pub use handle::{ConnHandle, Out, NO_FLOOR};
pub use registry::Registry;
