//! Agent passwords: argon2id with the crate's default parameters.
//!
//! Hashing is deliberately slow (tens of milliseconds), so it runs on the
//! blocking pool, never on a runtime worker thread.

use std::sync::OnceLock;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;

use crate::{Result, StoreError};

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(|e| StoreError::Invalid(format!("password task failed: {e}")))
}

fn hash_now(password: &str) -> Result<String> {
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| StoreError::Invalid(format!("cannot hash password: {e}")))
}

pub(crate) async fn hash(password: &str) -> Result<String> {
    let password = password.to_string();
    blocking(move || hash_now(&password)).await?
}

/// A hash of a random password with the same parameters as real ones: an
/// unknown username is checked against it so that it costs as much time as a
/// known one and login timing does not reveal which usernames exist.
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        let random = format!("{:032x}", rand::random::<u128>());
        hash_now(&random).unwrap_or_default()
    })
}

/// Checks `password` against `stored` (or against the dummy hash when there is
/// no stored hash, always failing).
pub(crate) async fn verify(password: &str, stored: Option<String>) -> Result<bool> {
    let password = password.to_string();
    blocking(move || {
        let real = stored.is_some();
        let hash_text = stored.unwrap_or_else(|| dummy_hash().to_string());
        let ok = match PasswordHash::new(&hash_text) {
            Ok(parsed) => Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok(),
            Err(e) => {
                tracing::warn!(error = %e, "stored password hash does not parse");
                false
            }
        };
        real && ok
    })
    .await
}
