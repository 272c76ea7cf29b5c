//! The authenticated user of a socket or request, and what it may touch.

use schema::frames::{UserKind, UserRef};

use crate::error::GatewayError;

/// The authenticated user of a socket or request.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Identity {
    pub kind: UserKind,
    pub id: String,
    pub username: String,
    #[serde(default)]
    pub display_name: Option<String>,
    /// An agent's session (hash of its token), carried into ws tickets so
    /// that a socket can be closed when the session is revoked. Not stored
    /// in the session itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
}

impl Identity {
    pub fn user_ref(&self) -> UserRef {
        UserRef { kind: self.kind, id: self.id.clone(), username: self.username.clone() }
    }
    pub fn is_agent(&self) -> bool {
        self.kind == UserKind::Agent
    }
    /// A customer's own conversation (conversation ids equal customer ids).
    pub fn own_conversation(&self) -> Option<&str> {
        (self.kind == UserKind::Customer).then_some(self.id.as_str())
    }
}

/// Customers act only on their own conversation.
pub fn authorize(ident: &Identity, conv: &str) -> Result<(), GatewayError> {
    match ident.own_conversation() {
        Some(own) if own != conv => Err(GatewayError::forbidden("customers may only use their own conversation")),
        _ => Ok(()),
    }
}
