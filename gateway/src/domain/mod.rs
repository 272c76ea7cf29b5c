//! What the product does, independent of transport (socket frames and REST
//! routes both call it): [`messages`] (post, edit, delete, react),
//! [`receipts`] (delivered/seen), [`conversations`] (ensure, seed, repair
//! after Redis lost state), [`points`] (Give Points, Reset Balance through a
//! worker), [`orders`] (order events and their cards) and [`attachments`]
//! (uploads: receive, verify, claim for a message, read, sweep).

pub mod attachments;
pub mod conversations;
pub mod messages;
pub mod orders;
pub mod points;
pub mod receipts;
