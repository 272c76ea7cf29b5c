//! Conversations: one per customer (conversation id = customer id). Makes
//! sure Redis knows a conversation (the customer's profile hash) and that
//! its counter continues from the SQL record after Redis lost its state.

use redis::AsyncCommands;
use schema::frames::CustomerRef;

use crate::error::GatewayError;
use crate::identity::Identity;
use crate::state::AppState;

type Result<T> = std::result::Result<T, GatewayError>;

/// Makes sure Redis knows the customer (profile hash, so the conversation
/// exists for sends) and that the conversation's sequence continues from the
/// SQL record when Redis has lost it.
pub async fn ensure_customer_profile(state: &AppState, ident: &Identity) -> Result<()> {
    let conv = ident.id.as_str();
    let mut conn = state.redis();
    let (exists, has_seq): (bool, bool) = redis::pipe()
        .exists(state.keys.customer(conv))
        .exists(state.keys.seq(conv))
        .query_async(&mut conn)
        .await?;
    if exists && has_seq {
        return Ok(());
    }
    let stored = state.store.customer(conv).await?;
    if stored.as_ref().map(|c| c.username.as_str()) != Some(ident.username.as_str()) {
        state.store.upsert_customer(conv, &ident.username, None).await?;
    }
    seed_conversation(state, conv, &ident.username, stored.and_then(|c| c.avatar_url).as_deref()).await
}

/// Writes the profile hash and seeds `seq` from the SQL record (SET NX: never lowers it).
pub async fn seed_conversation(state: &AppState, conv: &str, username: &str, avatar: Option<&str>) -> Result<()> {
    let max_pos = state.store.max_pos(conv).await?;
    let mut conn = state.redis();
    let _: () = redis::pipe()
        .hset_multiple(state.keys.customer(conv), &[("username", username), ("avatar_url", avatar.unwrap_or(""))])
        .ignore()
        .cmd("SET")
        .arg(state.keys.seq(conv))
        .arg(max_pos)
        .arg("NX")
        .ignore()
        .query_async(&mut conn)
        .await?;
    Ok(())
}

/// Ensures a conversation exists for an agent's action: Redis first, then the
/// SQL record (after Redis lost state). `not_found` otherwise.
pub async fn ensure_conversation(state: &AppState, conv: &str) -> Result<()> {
    let mut conn = state.redis();
    let exists: bool = conn.exists(state.keys.customer(conv)).await?;
    if exists {
        return Ok(());
    }
    match state.store.customer(conv).await? {
        Some(c) => seed_conversation(state, conv, &c.username, c.avatar_url.as_deref()).await,
        None => Err(GatewayError::not_found(format!("no conversation `{conv}`"))),
    }
}

/// The customer of a conversation, from its Redis profile hash.
pub async fn customer_ref(state: &AppState, conv: &str) -> Result<CustomerRef> {
    let mut conn = state.redis();
    let (username, avatar): (Option<String>, Option<String>) =
        conn.hget(state.keys.customer(conv), &["username", "avatar_url"]).await?;
    Ok(CustomerRef {
        id: conv.to_string(),
        username: username.unwrap_or_else(|| conv.to_string()),
        avatar_url: avatar.filter(|a| !a.is_empty()),
    })
}

