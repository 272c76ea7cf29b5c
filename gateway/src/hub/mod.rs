//! The local hub: which sockets this node holds ([`Registry`]: agents,
//! customers by conversation, watchers by conversation, admission caps),
//! the handle through which anything reaches a socket ([`ConnHandle`],
//! [`Out`]), the close codes ([`close`]), per-identity socket caps and send
//! budgets ([`limits`]), the revocation channel ([`revoke`]), the count
//! of this node's channel subscriptions ([`subs`]) and the chat-list rows
//! waiting for agent sockets, coalesced ([`rows`]).

pub mod close;
mod handle;
pub mod limits;
mod registry;
pub mod revoke;
pub mod rows;
pub mod subs;

pub use handle::{ConnHandle, Out, NO_FLOOR};
pub use registry::Registry;
