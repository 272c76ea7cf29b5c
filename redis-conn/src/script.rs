//! The one Lua script runner of gateway and worker.
//!
//! Scripts live as `.lua` files in the crate that owns them and are loaded
//! with `include_str!`; shared fragments (helper functions) are prepended
//! with [`LuaScript::with_prelude`]. Every call goes out as `EVALSHA`; when
//! the server does not know the script (a restart, a failover, another
//! cluster node) the runner sends `EVAL` with the source once, which also
//! caches it. Scripts in a pipeline are retried the same way after a
//! `SCRIPT LOAD`.

use redis::aio::ConnectionLike;
use redis::{ErrorKind, FromRedisValue, Pipeline, RedisError, RedisResult, ToRedisArgs};

/// A Lua script: its name (for logs and metrics), source and SHA1.
#[derive(Debug, Clone)]
pub struct LuaScript {
    name: &'static str,
    source: String,
    hash: String,
}

impl LuaScript {
    /// A script from one source text.
    pub fn new(name: &'static str, source: &str) -> Self {
        Self::with_prelude(name, &[], source)
    }

    /// A script whose source is `prelude` fragments (helper functions) followed by `body`.
    pub fn with_prelude(name: &'static str, prelude: &[&str], body: &str) -> Self {
        let mut source = String::with_capacity(prelude.iter().map(|p| p.len() + 1).sum::<usize>() + body.len());
        for p in prelude {
            source.push_str(p);
            source.push('\n');
        }
        source.push_str(body);
        let hash = redis::Script::new(&source).get_hash().to_string();
        Self { name, source, hash }
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// The SHA1 that `EVALSHA` names.
    pub fn hash(&self) -> &str {
        &self.hash
    }

    /// Runs the script: `EVALSHA`, then `EVAL` with the source if the server lost it.
    pub async fn run<T: FromRedisValue>(&self, conn: &mut (impl ConnectionLike + Send), call: &Call) -> RedisResult<T> {
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(&self.hash).arg(call.keys.len()).arg(&call.keys).arg(&call.args);
        match cmd.query_async(conn).await {
            Err(e) if is_noscript(&e) => {
                let mut cmd = redis::cmd("EVAL");
                cmd.arg(&self.source).arg(call.keys.len()).arg(&call.keys).arg(&call.args);
                cmd.query_async(conn).await
            }
            r => r,
        }
    }

    /// Adds an `EVALSHA` of this script to `pipe`; send the pipeline with
    /// [`query_pipeline`] so that a server that lost the script gets it again.
    pub fn push(&self, pipe: &mut Pipeline, call: &Call) {
        pipe.cmd("EVALSHA").arg(&self.hash).arg(call.keys.len()).arg(&call.keys).arg(&call.args);
    }

    /// `SCRIPT LOAD`s the source (after a `NOSCRIPT`).
    pub async fn load(&self, conn: &mut (impl ConnectionLike + Send)) -> RedisResult<()> {
        redis::cmd("SCRIPT").arg("LOAD").arg(&self.source).query_async::<String>(conn).await.map(|_| ())
    }
}

/// Sends a pipeline holding `EVALSHA`s of `scripts`; on `NOSCRIPT` loads
/// them all and sends it once more. Only for pipelines that are safe to
/// repeat when the first attempt failed at its first script: Redis runs a
/// pipeline's commands in order, and a `NOSCRIPT` reply means that script
/// did nothing, but commands before it did run.
pub async fn query_pipeline<T: FromRedisValue>(conn: &mut (impl ConnectionLike + Send), pipe: &Pipeline, scripts: &[&LuaScript]) -> RedisResult<T> {
    match pipe.query_async(conn).await {
        Err(e) if is_noscript(&e) => {
            for s in scripts {
                s.load(conn).await?;
            }
            pipe.query_async(conn).await
        }
        r => r,
    }
}

/// The server does not know the script.
pub fn is_noscript(e: &RedisError) -> bool {
    e.kind() == ErrorKind::NoScriptError || e.code() == Some("NOSCRIPT")
}

/// Keys and arguments of one script call.
#[derive(Debug, Default, Clone)]
pub struct Call {
    keys: Vec<String>,
    args: Vec<Vec<u8>>,
}

impl Call {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn key(mut self, k: impl Into<String>) -> Self {
        self.keys.push(k.into());
        self
    }

    pub fn arg<T: ToRedisArgs>(mut self, a: T) -> Self {
        self.args.extend(a.to_redis_args());
        self
    }

    pub fn keys(&self) -> &[String] {
        &self.keys
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prelude_comes_before_the_body_and_changes_the_hash() {
        let plain = LuaScript::new("t", "return 1");
        let with = LuaScript::with_prelude("t", &["local function f() end"], "return 1");
        assert_eq!(with.source(), "local function f() end\nreturn 1");
        assert_ne!(plain.hash(), with.hash());
        // Redis's own SHA1 of the source, as EVALSHA expects.
        assert_eq!(plain.hash(), "e0e1f9fabfc9d4800c877a703b823ac0578ff8db");
    }
}
