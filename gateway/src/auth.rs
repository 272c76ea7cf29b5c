//! Who is calling: agent session tokens (random, stored hashed in Redis with a
//! TTL, revoked on logout), customer tokens (HMAC-SHA256 signed by the
//! business's backend), and single-use WebSocket tickets.
//!
//! Customer token format: `cust.<hex(id)>.<hex(username)>.<expiry_unix_secs>.<hex(sig)>`
//! with `sig = HMAC-SHA256(secret, id + "\n" + username + "\n" + expiry)`.

use hmac::{Hmac, Mac};
use redis::AsyncCommands;
use schema::frames::UserKind;
use sha2::{Digest, Sha256};

use crate::error::GatewayError;
use crate::domain::conversations::ensure_customer_profile;
use crate::identity::Identity;
use crate::ids::random_token;
use crate::state::AppState;

type HmacSha256 = Hmac<Sha256>;

pub const TICKET_TTL_SECS: u64 = 30;
/// Failed logins allowed per username and per address per window.
pub const LOGIN_ATTEMPTS: i64 = 10;
pub const LOGIN_WINDOW_SECS: i64 = 300;


fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Signs a customer token (what the business backend does; also dev mode).
pub fn sign_customer_token(secret: &[u8], id: &str, username: &str, expiry: u64) -> String {
    let mut mac = HmacSha256::new_from_slice(secret).expect("hmac accepts any key length");
    mac.update(format!("{id}\n{username}\n{expiry}").as_bytes());
    let sig = hex::encode(mac.finalize().into_bytes());
    format!("cust.{}.{}.{}.{}", hex::encode(id), hex::encode(username), expiry, sig)
}

/// Verifies a customer token: signature (constant time), expiry, id syntax.
pub fn verify_customer_token(secret: &[u8], token: &str, now_secs: u64) -> Result<Identity, GatewayError> {
    let bad = || GatewayError::unauthorized("invalid customer token");
    let mut parts = token.split('.');
    if parts.next() != Some("cust") {
        return Err(bad());
    }
    let id = parts.next().and_then(|h| hex::decode(h).ok()).and_then(|b| String::from_utf8(b).ok()).ok_or_else(bad)?;
    let username = parts.next().and_then(|h| hex::decode(h).ok()).and_then(|b| String::from_utf8(b).ok()).ok_or_else(bad)?;
    let expiry: u64 = parts.next().and_then(|e| e.parse().ok()).ok_or_else(bad)?;
    let sig = parts.next().and_then(|h| hex::decode(h).ok()).ok_or_else(bad)?;
    if parts.next().is_some() {
        return Err(bad());
    }
    let mut mac = HmacSha256::new_from_slice(secret).expect("hmac accepts any key length");
    mac.update(format!("{id}\n{username}\n{expiry}").as_bytes());
    // verify_slice compares in constant time.
    mac.verify_slice(&sig).map_err(|_| bad())?;
    if expiry < now_secs {
        return Err(GatewayError::unauthorized("customer token expired"));
    }
    if !schema::ids::valid_id(&id) || !schema::ids::valid_username(&username) {
        return Err(bad());
    }
    Ok(Identity { kind: UserKind::Customer, id, username, display_name: None, session: None })
}

pub fn now_secs() -> u64 {
    (schema::now_ms() / 1000) as u64
}

/// Creates an agent session; returns the bearer token.
pub async fn create_session(state: &AppState, agent: &store::Agent) -> Result<String, GatewayError> {
    let token = random_token();
    let ident = Identity {
        kind: UserKind::Agent,
        id: agent.id.clone(),
        username: agent.username.clone(),
        display_name: Some(agent.display_name.clone()),
        session: None,
    };
    let mut conn = state.redis();
    let _: () = conn
        .set_ex(state.keys.session(&token_hash(&token)), serde_json::to_string(&ident).unwrap_or_default(), state.cfg.session_ttl_secs)
        .await?;
    Ok(token)
}

pub async fn revoke_session(state: &AppState, token: &str) -> Result<(), GatewayError> {
    let mut conn = state.redis();
    let _: () = conn.del(state.keys.session(&token_hash(token))).await?;
    crate::hub::revoke::announce(&mut conn, state.keys.prefix(), &token_hash(token)).await;
    Ok(())
}

/// Resolves a bearer token (agent session or customer token).
pub async fn identify(state: &AppState, token: &str) -> Result<Identity, GatewayError> {
    if token.starts_with("cust.") {
        let ident = verify_customer_token(&state.customer_secret, token, now_secs())?;
        ensure_customer_profile(state, &ident).await?;
        return Ok(ident);
    }
    if token.len() != 64 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(GatewayError::unauthorized("invalid token"));
    }
    let mut conn = state.redis();
    let v: Option<String> = conn.get(state.keys.session(&token_hash(token))).await?;
    let v = v.ok_or_else(|| GatewayError::unauthorized("session expired or logged out; log in again"))?;
    let ident: Identity = serde_json::from_str(&v).map_err(|_| GatewayError::unauthorized("invalid session"))?;
    Ok(Identity { session: Some(token_hash(token)), ..ident })
}

/// The bearer token of a request, if any.
pub fn bearer<B>(req: &hyper::Request<B>) -> Option<String> {
    let h = req.headers().get(hyper::header::AUTHORIZATION)?.to_str().ok()?;
    let t = h.strip_prefix("Bearer ").or_else(|| h.strip_prefix("bearer "))?;
    Some(t.trim().to_string())
}

pub async fn issue_ticket(state: &AppState, ident: &Identity) -> Result<String, GatewayError> {
    let ticket = random_token();
    let mut conn = state.redis();
    let _: () = conn
        .set_ex(state.keys.ticket(&ticket), serde_json::to_string(ident).unwrap_or_default(), TICKET_TTL_SECS)
        .await?;
    Ok(ticket)
}

/// Redeems a ticket once (GETDEL: a second use finds nothing).
pub async fn redeem_ticket(state: &AppState, ticket: &str) -> Result<Identity, GatewayError> {
    if ticket.len() != 64 || !ticket.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(GatewayError::unauthorized("invalid ticket"));
    }
    let mut conn = state.redis();
    let v: Option<String> = redis::cmd("GETDEL").arg(state.keys.ticket(ticket)).query_async(&mut conn).await?;
    let v = v.ok_or_else(|| GatewayError::unauthorized("ticket unknown, expired or already used"))?;
    serde_json::from_str(&v).map_err(|_| GatewayError::unauthorized("invalid ticket"))
}

/// Counts a failed login for a key; true when the key is over its budget.
pub async fn login_throttled(state: &AppState, who: &str) -> Result<bool, GatewayError> {
    let mut conn = state.redis();
    let n: Option<i64> = conn.get(state.keys.login_attempts(who)).await?;
    Ok(n.unwrap_or(0) >= LOGIN_ATTEMPTS)
}

pub async fn login_failed(state: &AppState, who: &str) -> Result<(), GatewayError> {
    let mut conn = state.redis();
    let key = state.keys.login_attempts(who);
    let _: () = redis::pipe().incr(&key, 1).ignore().expire(&key, LOGIN_WINDOW_SECS).ignore().query_async(&mut conn).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn customer_tokens() {
        let t = sign_customer_token(b"k", "cus_1", "ann", 2000);
        let id = verify_customer_token(b"k", &t, 1000).unwrap();
        assert_eq!(id.id, "cus_1");
        assert!(verify_customer_token(b"other", &t, 1000).is_err());
        assert!(verify_customer_token(b"k", &t, 3000).is_err());
        let forged = t.replace(&hex::encode("cus_1"), &hex::encode("cus_2"));
        assert!(verify_customer_token(b"k", &forged, 1000).is_err());
        assert!(verify_customer_token(b"k", "cust.zz", 1000).is_err());
    }
}
