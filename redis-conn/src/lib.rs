//! The Redis connection gateway and worker share: one type for a single server or a Redis
//! Cluster, with a deadline on every request, so that a Redis that stops
//! answering turns into a prompt `unavailable` for the client instead of a
//! hang; and the one Lua script runner ([`script`]).

pub mod script;
pub use script::{Call, LuaScript};

use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, ErrorKind, Pipeline, RedisError, RedisFuture, Value};

/// Adds one entry to a capped stream: `XADD key MAXLEN ~ cap * field bytes`
/// (the relay streams of gateway and worker; the reply is ignored).
pub fn xadd_capped(pipe: &mut Pipeline, key: &str, cap: usize, field: &str, bytes: &[u8]) {
    pipe.cmd("XADD").arg(key).arg("MAXLEN").arg("~").arg(cap).arg("*").arg(field).arg(bytes).ignore();
}

#[derive(Clone)]
enum Inner {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

/// A multiplexed connection (cheap to clone) with a per-request deadline.
#[derive(Clone)]
pub struct RedisConn {
    inner: Inner,
    timeout: Duration,
}

/// How to open connections: the shared one and dedicated ones for blocking reads.
#[derive(Clone)]
pub enum RedisTarget {
    Single(redis::Client),
    /// The cluster, and a client for its first seed node (pub/sub: a
    /// classic `PUBLISH` reaches subscribers on every node of a cluster).
    Cluster(ClusterClient, redis::Client),
}

impl RedisTarget {
    /// `urls`: one URL, or several comma-separated seed nodes of a cluster.
    pub fn new(urls: &str, cluster: bool) -> Result<Self, RedisError> {
        let list: Vec<&str> = urls.split(',').map(str::trim).filter(|u| !u.is_empty()).collect();
        if cluster || list.len() > 1 {
            let seed = redis::Client::open(list[0])?;
            Ok(RedisTarget::Cluster(ClusterClient::builder(list).build()?, seed))
        } else {
            Ok(RedisTarget::Single(redis::Client::open(urls.trim())?))
        }
    }

    pub fn is_cluster(&self) -> bool {
        matches!(self, RedisTarget::Cluster(..))
    }

    /// A client for pub/sub connections (subscribers need one of their own).
    pub fn pubsub_client(&self) -> Result<redis::Client, RedisError> {
        Ok(match self {
            RedisTarget::Single(c) => c.clone(),
            RedisTarget::Cluster(_, seed) => seed.clone(),
        })
    }

    /// A new reconnecting, multiplexed connection. Processes share one for
    /// ordinary commands and open one more for each blocking reader
    /// (`XREAD BLOCK` would stall everyone else on a shared one).
    pub async fn connect(&self, timeout: Duration) -> Result<RedisConn, RedisError> {
        let inner = match self {
            RedisTarget::Single(c) => {
                let cfg = ConnectionManagerConfig::new()
                    .set_connection_timeout(timeout)
                    .set_response_timeout(timeout)
                    .set_number_of_retries(1);
                Inner::Single(ConnectionManager::new_with_config(c.clone(), cfg).await?)
            }
            RedisTarget::Cluster(c, _) => Inner::Cluster(c.get_async_connection().await?),
        };
        let mut conn = RedisConn { inner, timeout };
        // A URL without the password that the server requires connects
        // fine and fails on the first command (NOAUTH): find out now, so
        // that a process refuses to start instead of failing every request.
        redis::cmd("PING").query_async::<()>(&mut conn).await?;
        Ok(conn)
    }
}

/// True when Redis refused the credentials of the URL, or their user lacks
/// a right (ACL): retrying cannot help, the configuration must change.
pub fn is_auth_error(e: &RedisError) -> bool {
    e.kind() == ErrorKind::AuthenticationFailed || matches!(e.code(), Some("NOAUTH" | "WRONGPASS" | "NOPERM"))
}

/// `urls` (one URL or comma-separated seeds) with every password replaced
/// by `***`, for log lines and error messages.
pub fn redacted(urls: &str) -> String {
    urls.split(',')
        .map(|u| {
            let u = u.trim();
            let Some(start) = u.find("://").map(|i| i + 3) else { return u.to_string() };
            let end = u[start..].find('/').map_or(u.len(), |i| start + i);
            match u[start..end].rfind('@') {
                Some(at) => {
                    let creds = &u[start..start + at];
                    let user = creds.split_once(':').map_or(creds, |(user, _)| user);
                    let masked = if creds.contains(':') { format!("{user}:***") } else { "***".to_string() };
                    format!("{}{masked}{}", &u[..start], &u[start + at..])
                }
                None => u.to_string(),
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn timed_out() -> RedisError {
    RedisError::from((ErrorKind::IoError, "redis request timed out"))
}

impl ConnectionLike for RedisConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        let t = self.timeout;
        Box::pin(async move {
            let fut = async {
                match &mut self.inner {
                    Inner::Single(c) => c.req_packed_command(cmd).await,
                    Inner::Cluster(c) => c.req_packed_command(cmd).await,
                }
            };
            tokio::time::timeout(t, fut).await.unwrap_or_else(|_| Err(timed_out()))
        })
    }

    fn req_packed_commands<'a>(&'a mut self, cmd: &'a Pipeline, offset: usize, count: usize) -> RedisFuture<'a, Vec<Value>> {
        let t = self.timeout;
        Box::pin(async move {
            let fut = async {
                match &mut self.inner {
                    Inner::Single(c) => c.req_packed_commands(cmd, offset, count).await,
                    // A cluster refuses a pipeline whose keys span slots. Our
                    // pipelines are not transactions, so send each command on
                    // its own, all at once: still one round trip of latency.
                    Inner::Cluster(c) => {
                        let calls = cmd.cmd_iter().map(|one| {
                            let mut c = c.clone();
                            async move { c.req_packed_command(one).await }
                        });
                        let replies = futures::future::join_all(calls).await;
                        let mut out = Vec::with_capacity(replies.len());
                        for r in replies {
                            out.push(r?);
                        }
                        Ok(out.into_iter().skip(offset).take(count).collect())
                    }
                }
            };
            tokio::time::timeout(t, fut).await.unwrap_or_else(|_| Err(timed_out()))
        })
    }

    fn get_db(&self) -> i64 {
        match &self.inner {
            Inner::Single(c) => c.get_db(),
            Inner::Cluster(c) => c.get_db(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::redacted;

    #[test]
    fn passwords_are_masked() {
        assert_eq!(redacted("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
        assert_eq!(redacted("redis://gateway:s3cr%40t@h:6379/0"), "redis://gateway:***@h:6379/0");
        assert_eq!(redacted("redis://:pw@h:1, rediss://u:p@k:2"), "redis://:***@h:1,rediss://u:***@k:2");
        assert_eq!(redacted("redis://pw@h"), "redis://***@h");
    }
}
