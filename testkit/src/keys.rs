//! The Redis key prefix of one test, and deleting its keys afterwards.

/// `REDIS_URL`, or the local Redis.
pub fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| crate::REDIS_URL.into())
}

/// Deletes every key under `prefix` (best effort; a blocking connection, so
/// it works from `Drop`).
pub fn drop_keys(redis_url: &str, prefix: &str) {
    if prefix.is_empty() {
        return; // would delete every key
    }
    if let Ok(mut c) = redis::Client::open(redis_url).and_then(|c| c.get_connection()) {
        let keys: Vec<String> = redis::cmd("KEYS").arg(format!("{prefix}*")).query(&mut c).unwrap_or_default();
        for chunk in keys.chunks(500) {
            let _: Result<(), _> = redis::cmd("DEL").arg(chunk).query(&mut c);
        }
    }
}

/// A key prefix whose keys are deleted when it is dropped, pass or fail.
pub struct KeyPrefix {
    pub prefix: String,
    pub redis_url: String,
}

impl KeyPrefix {
    /// `lead` followed by a random tag and `:`.
    pub fn random(lead: &str) -> KeyPrefix {
        KeyPrefix::new(format!("{lead}{}:", uuid::Uuid::new_v4().simple()))
    }

    pub fn new(prefix: String) -> KeyPrefix {
        KeyPrefix { prefix, redis_url: redis_url() }
    }
}

impl Drop for KeyPrefix {
    fn drop(&mut self) {
        drop_keys(&self.redis_url, &self.prefix);
    }
}
