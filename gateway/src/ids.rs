//! Ids the gateway makes: random tokens (sessions, tickets, lock owners,
//! node ids) and stable UUID-shaped ids derived from a name (the
//! `client_id` of system messages and order cards, so a retry posts nothing
//! twice).

use rand::RngCore;
use sha2::{Digest, Sha256};

/// 32 random bytes, hex.
pub fn random_token() -> String {
    let mut b = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut b);
    hex::encode(b)
}

/// A UUID-shaped id derived from a name (stable across runs).
pub fn stable_uuid(name: &str) -> String {
    let h = hex::encode(Sha256::digest(name.as_bytes()));
    format!("{}-{}-4{}-a{}-{}", &h[0..8], &h[8..12], &h[13..16], &h[17..20], &h[20..32])
}

#[cfg(test)]
mod tests {
    #[test]
    fn stable_uuid_is_a_uuid() {
        let u = super::stable_uuid("x");
        assert!(schema::ids::valid_client_id(&u), "{u}");
        assert_eq!(u, super::stable_uuid("x"));
    }
}
