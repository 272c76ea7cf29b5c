//! Signed download links: `<url>?exp=<unix s>&sig=<hex>`, so that an
//! `<img>` or a new tab (which cannot send a bearer token) may fetch a file
//! for a short while after its reader was authorised. HMAC-SHA256 over the
//! id, the variant (`file` or `thumbnail`) and the expiry, with a key every
//! gateway derives from the same secret.

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The link key from the deployment's secret (the customer-token secret,
/// which every gateway of a deployment shares), for this purpose only.
pub fn derive_key(secret: &[u8]) -> Vec<u8> {
    let mut m = HmacSha256::new_from_slice(secret).expect("HMAC takes any key length");
    m.update(b"chat attachment links v1");
    m.finalize().into_bytes().to_vec()
}

fn mac(key: &[u8], id: &str, variant: &str, exp: i64) -> HmacSha256 {
    let mut m = HmacSha256::new_from_slice(key).expect("HMAC takes any key length");
    m.update(format!("{id}\n{variant}\n{exp}").as_bytes());
    m
}

/// The query of a link valid until `exp` (unix seconds).
pub fn sign(key: &[u8], id: &str, variant: &str, exp: i64) -> String {
    format!("exp={exp}&sig={}", hex::encode(mac(key, id, variant, exp).finalize().into_bytes()))
}

/// True when `sig` signs (id, variant, exp) and `exp` is not past `now_s`.
pub fn verify(key: &[u8], id: &str, variant: &str, exp: i64, sig: &str, now_s: i64) -> bool {
    if exp < now_s {
        return false;
    }
    let Ok(bytes) = hex::decode(sig) else { return false };
    // Constant time (`verify_slice`).
    mac(key, id, variant, exp).verify_slice(&bytes).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_links() {
        let k = derive_key(b"secret");
        let q = sign(&k, "abc", "file", 100);
        let sig = q.split("sig=").nth(1).unwrap();
        assert!(verify(&k, "abc", "file", 100, sig, 99));
        assert!(!verify(&k, "abc", "file", 100, sig, 101), "expired");
        assert!(!verify(&k, "abd", "file", 100, sig, 99), "another file");
        assert!(!verify(&k, "abc", "thumbnail", 100, sig, 99), "another variant");
        assert!(!verify(&k, "abc", "file", 101, sig, 99), "another expiry");
        assert!(!verify(&derive_key(b"other"), "abc", "file", 100, sig, 99), "another key");
        assert!(!verify(&k, "abc", "file", 100, "zz", 99));
    }
}
