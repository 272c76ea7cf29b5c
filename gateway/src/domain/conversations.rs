//! Conversations: one per customer (conversation id = customer id). Makes
//! sure Redis knows a conversation (the customer's profile hash) and that
//! its state (position counter, profile copy) continues from the SQL record
//! after Redis lost it or it expired while the conversation was idle.

use redis::AsyncCommands;
use schema::frames::CustomerRef;

use crate::error::GatewayError;
use crate::identity::Identity;
use crate::state::AppState;

type Result<T> = std::result::Result<T, GatewayError>;

/// Makes sure Redis knows the customer (profile hash, so the conversation
/// exists for sends) and that the conversation's state continues from the
/// SQL record when Redis has lost it or it expired while idle.
pub async fn ensure_customer_profile(state: &AppState, ident: &Identity) -> Result<()> {
    let conv = ident.id.as_str();
    let mut conn = state.redis();
    let (exists, has_state): (bool, bool) = redis::pipe()
        .exists(state.keys.customer(conv))
        .exists(state.keys.state(conv))
        .query_async(&mut conn)
        .await?;
    if exists && has_state {
        return Ok(());
    }
    let stored = state.store.customer(conv).await?;
    if stored.as_ref().map(|c| c.username.as_str()) != Some(ident.username.as_str()) {
        state.store.upsert_customer(conv, &ident.username, None).await?;
    }
    seed_conversation(state, conv, &ident.username, stored.and_then(|c| c.avatar_url).as_deref()).await
}

/// Writes the profile hash and seeds the conversation's state: its counter
/// continues after the highest position anyone may hold (the SQL record's,
/// the replay stream's, a counter of the layout before the state hash) and
/// is never lowered (`seed.lua`).
pub async fn seed_conversation(state: &AppState, conv: &str, username: &str, avatar: Option<&str>) -> Result<()> {
    let max_pos = state.store.max_pos(conv).await?;
    let mut conn = state.redis();
    let legacy: Option<u64> = conn.get(state.keys.legacy_seq(conv)).await?;
    let replayed = crate::broker::replay::last(&mut conn, &state.keys.replay(conv)).await?.map_or(0, |(pos, _)| pos);
    let n = max_pos.max(legacy.unwrap_or(0)).max(replayed);
    let _: () = conn.hset_multiple(state.keys.customer(conv), &[("username", username), ("avatar_url", avatar.unwrap_or(""))]).await?;
    let call = redis_conn::Call::new()
        .key(state.keys.state(conv))
        .arg(n)
        .arg(username)
        .arg(avatar.unwrap_or(""))
        .arg(state.cfg.replay_ttl_secs * 1000)
        .arg(schema::now_ms());
    let _: i64 = state.broker().run(&state.scripts.seed, &call).await?;
    Ok(())
}

/// Seeds a conversation's state again (a script found none: Redis lost it,
/// or it expired while the conversation was idle), with the profile Redis
/// still has or the record's. `not_found` for an unknown conversation.
pub async fn repair_conversation(state: &AppState, conv: &str) -> Result<()> {
    let mut conn = state.redis();
    let (username, avatar): (Option<String>, Option<String>) =
        conn.hget(state.keys.customer(conv), &["username", "avatar_url"]).await?;
    match username {
        Some(u) => seed_conversation(state, conv, &u, avatar.as_deref().filter(|a| !a.is_empty())).await,
        None => match state.store.customer(conv).await? {
            Some(c) => seed_conversation(state, conv, &c.username, c.avatar_url.as_deref()).await,
            None => Err(GatewayError::not_found(format!("no conversation `{conv}`"))),
        },
    }
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

