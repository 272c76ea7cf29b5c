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

/// Verifies a customer token: signature (constant time), expiry, lifetime
/// (an expiry at most `max_secs` from now), id syntax.
pub fn verify_customer_token(secret: &[u8], token: &str, now_secs: u64, max_secs: u64) -> Result<Identity, GatewayError> {
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
    check_token_lifetime(expiry, now_secs, max_secs)?;
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
        let ident = verify_customer_token(&state.customer_secret, token, now_secs(), state.cfg.customer_token_max_secs)?;
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

/// Where a login attempt stands, decided before any password is hashed.
#[derive(Debug, PartialEq, Eq)]
pub enum LoginGate {
    /// Go on and check the password.
    Go,
    /// Refused: retry after this many milliseconds.
    Wait(u64),
}

/// Counts an attempt of a (username, address) pair and decides, in one
/// script, before hashing: the first `free` attempts go; from then on each
/// attempt must wait a delay that doubles per attempt (capped) after the
/// one before. Keyed on the pair, so a stranger who knows a username delays
/// only their own address, never the agent's.
/// KEYS[1]: attempts, KEYS[2]: when the next attempt may run (ms, Redis time).
/// ARGV: free, first delay ms, delay cap ms, window ms.
const LOGIN_GATE_LUA: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local next_at = tonumber(redis.call('GET', KEYS[2]) or '0')
if now < next_at then return math.ceil(next_at - now) end
local n = redis.call('INCR', KEYS[1])
local free = tonumber(ARGV[1])
local window = tonumber(ARGV[4])
if n >= free then
  local d = math.floor(math.min(tonumber(ARGV[3]), tonumber(ARGV[2]) * 2 ^ math.min(n - free, 40)))
  if d > 0 then redis.call('SET', KEYS[2], now + d, 'PX', d) end
  window = math.max(window, 2 * d)
end
redis.call('PEXPIRE', KEYS[1], window)
return 0
"#;

/// Attempts of a pair are forgotten this long after the last one.
pub const LOGIN_WINDOW_MS: u64 = 15 * 60 * 1000;

fn login_pair_keys(state: &AppState, username: &str, addr: &str) -> (String, String) {
    // Hex keeps the hash tag intact whatever the username holds; the tag
    // keeps both keys in one Cluster slot for the script.
    let tag = format!("{{p:{}|{}}}", hex::encode(username.to_lowercase()), addr);
    (state.keys.login_attempts(&format!("{tag}:n")), state.keys.login_attempts(&format!("{tag}:next")))
}

fn login_addr_key(state: &AppState, addr: &str) -> String {
    state.keys.login_attempts(&format!("a:{addr}"))
}

/// Counts a login attempt (atomically, before the password is hashed) and
/// says whether it may go on: per (username, address) with growing delays,
/// and per address across usernames (`CHAT_LOGIN_FAILURES_PER_IP` per
/// [`LOGIN_ADDR_WINDOW_SECS`]; an attempt counts until it succeeds).
pub async fn login_gate(state: &AppState, username: &str, addr: &str) -> Result<LoginGate, GatewayError> {
    static SCRIPT: std::sync::OnceLock<redis::Script> = std::sync::OnceLock::new();
    let script = SCRIPT.get_or_init(|| redis::Script::new(LOGIN_GATE_LUA));
    let cfg = &state.cfg;
    let (n_key, next_key) = login_pair_keys(state, username, addr);
    let mut conn = state.redis();
    let wait: u64 = script
        .key(&n_key)
        .key(&next_key)
        .arg(cfg.login_free_attempts.max(1))
        .arg(cfg.login_delay_ms)
        .arg(cfg.login_delay_max_ms.max(cfg.login_delay_ms))
        .arg(LOGIN_WINDOW_MS)
        .invoke_async(&mut conn)
        .await?;
    if wait > 0 {
        return Ok(LoginGate::Wait(wait));
    }
    let a_key = login_addr_key(state, addr);
    let (n,): (i64,) = redis::pipe().incr(&a_key, 1).expire(&a_key, LOGIN_ADDR_WINDOW_SECS).ignore().query_async(&mut conn).await?;
    if n > i64::from(cfg.login_failures_per_ip) {
        return Ok(LoginGate::Wait(LOGIN_ADDR_WINDOW_SECS as u64 * 1000));
    }
    Ok(LoginGate::Go)
}

/// The per-address window of [`login_gate`].
pub const LOGIN_ADDR_WINDOW_SECS: i64 = 300;

/// A successful login clears its pair's attempts and no longer counts
/// against the address.
pub async fn login_succeeded(state: &AppState, username: &str, addr: &str) -> Result<(), GatewayError> {
    let (n_key, next_key) = login_pair_keys(state, username, addr);
    let mut conn = state.redis();
    let _: () = conn.del(&[n_key, next_key][..]).await?;
    let _: () = conn.decr(login_addr_key(state, addr), 1).await?;
    Ok(())
}

/// Password hashes (argon2, ~19 MiB each) computed at once on this node:
/// `CHAT_MAX_CONCURRENT_HASHES`, default the number of cores. One per
/// process (a gateway is one process).
fn hash_slots(state: &AppState) -> std::sync::Arc<tokio::sync::Semaphore> {
    static SLOTS: std::sync::OnceLock<std::sync::Arc<tokio::sync::Semaphore>> = std::sync::OnceLock::new();
    SLOTS
        .get_or_init(|| {
            let n = match state.cfg.max_concurrent_hashes {
                0 => std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2),
                n => n,
            };
            std::sync::Arc::new(tokio::sync::Semaphore::new(n))
        })
        .clone()
}

/// Checks a password within the node's hashing budget. `None` when no
/// slot freed up within `CHAT_HASH_WAIT_MS` (the caller answers 503).
/// The hash runs in its own task holding the slot, so a client that hangs
/// up mid-hash does not free the slot while the memory is still taken.
pub async fn verify_password(state: &AppState, username: &str, password: &str) -> Result<Option<Option<store::Agent>>, GatewayError> {
    let wait = std::time::Duration::from_millis(state.cfg.hash_wait_ms);
    let Ok(Ok(permit)) = tokio::time::timeout(wait, hash_slots(state).acquire_owned()).await else {
        return Ok(None);
    };
    let (st, u, p) = (state.clone(), username.to_string(), password.to_string());
    let task = tokio::spawn(async move {
        let r = st.store.verify_agent(&u, &p).await;
        drop(permit);
        r
    });
    match task.await {
        Ok(r) => Ok(Some(r?)),
        Err(_) => Err(GatewayError::client(schema::frames::ErrorCode::Unavailable, "login failed, retry")),
    }
}

/// The lifetime cap of customer tokens: one whose expiry is further than
/// `max_secs` from now is refused (a leaked token must not live for ever).
pub fn check_token_lifetime(ident_expiry: u64, now: u64, max_secs: u64) -> Result<(), GatewayError> {
    if ident_expiry > now.saturating_add(max_secs) {
        return Err(GatewayError::unauthorized(format!(
            "customer token lives too long: its expiry may be at most {max_secs} s from now (CHAT_CUSTOMER_TOKEN_MAX_SECS)"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn customer_tokens() {
        const MAX: u64 = 30 * 24 * 3600;
        let t = sign_customer_token(b"k", "cus_1", "ann", 2000);
        let id = verify_customer_token(b"k", &t, 1000, MAX).unwrap();
        assert_eq!(id.id, "cus_1");
        assert!(verify_customer_token(b"other", &t, 1000, MAX).is_err());
        assert!(verify_customer_token(b"k", &t, 3000, MAX).is_err());
        let forged = t.replace(&hex::encode("cus_1"), &hex::encode("cus_2"));
        assert!(verify_customer_token(b"k", &forged, 1000, MAX).is_err());
        assert!(verify_customer_token(b"k", "cust.zz", 1000, MAX).is_err());
    }

    #[test]
    fn customer_token_lifetime_is_capped() {
        let now = 1_700_000_000;
        let ok = sign_customer_token(b"k", "cus_1", "ann", now + 3600);
        assert!(verify_customer_token(b"k", &ok, now, 7200).is_ok());
        // Ten years: refused, with a message that names the setting.
        let forever = sign_customer_token(b"k", "cus_1", "ann", now + 10 * 365 * 24 * 3600);
        let e = verify_customer_token(b"k", &forever, now, 30 * 24 * 3600).unwrap_err();
        let fe = e.to_frame_error();
        assert_eq!(fe.code, schema::frames::ErrorCode::Unauthorized);
        assert!(fe.message.contains("CHAT_CUSTOMER_TOKEN_MAX_SECS"), "{}", fe.message);
    }
}
