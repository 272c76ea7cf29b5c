//! Settings: every flag also reads an environment variable.

use std::net::SocketAddr;

use clap::builder::BoolishValueParser;
use clap::Parser;

#[derive(Parser, Debug, Clone)]
#[command(name = "gateway", about = "Real-time chat gateway: WebSocket, REST and the agent console")]
pub struct Config {
    /// Listen address (port 0 picks a free port; the bound address is printed).
    #[arg(long, env = "GATEWAY_ADDR", default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,
    /// One URL, or comma-separated seed nodes of a Redis Cluster.
    #[arg(long, env = "REDIS_URL", default_value = "redis://127.0.0.1:6379")]
    pub redis_url: String,
    /// Treat REDIS_URL as a Redis Cluster (implied by several comma-separated URLs).
    #[arg(long, env = "CHAT_REDIS_CLUSTER", default_value = "false", value_parser = BoolishValueParser::new(), action = clap::ArgAction::Set)]
    pub redis_cluster: bool,
    /// Deadline of one Redis request; past it the client gets `unavailable`.
    #[arg(long, env = "CHAT_REDIS_TIMEOUT_MS", default_value_t = 2000)]
    pub redis_timeout_ms: u64,
    /// SQLite when unset or `sqlite://...`, PostgreSQL when `postgres://...`.
    #[arg(long, env = "DATABASE_URL", default_value = "sqlite://data/chat.db")]
    pub database_url: String,
    /// Dev mode: dev endpoints, demo agent demo/demo, demo customers with history.
    #[arg(long, env = "CHAT_DEV", default_value = "false", value_parser = BoolishValueParser::new(), action = clap::ArgAction::Set)]
    pub dev: bool,
    /// In dev mode, also seed demo customers with history (the demo agent is always created).
    #[arg(long, env = "CHAT_DEMO_DATA", default_value = "true", value_parser = BoolishValueParser::new(), action = clap::ArgAction::Set)]
    pub demo_data: bool,
    /// Prefix of every Redis key (isolates deployments and test runs on one Redis).
    #[arg(long, env = "CHAT_KEY_PREFIX", default_value = "chat:")]
    pub key_prefix: String,
    /// Number of log shards (streams) the workers consume. Same value on every process.
    #[arg(long, env = "CHAT_LOG_SHARDS", default_value_t = 4)]
    pub log_shards: u32,
    /// Origins allowed to open a WebSocket (comma separated). Empty: same host as the request.
    #[arg(long, env = "CHAT_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Vec<String>,
    /// Serve the console from this folder instead of the copy embedded in
    /// the binary at build time (development: a fresh `web/dist`).
    #[arg(long, env = "CHAT_WEB_DIR")]
    pub web_dir: Option<String>,
    /// Secret the business backend signs customer tokens with (HMAC-SHA256). Required outside dev mode.
    #[arg(long, env = "CHAT_CUSTOMER_SECRET")]
    pub customer_secret: Option<String>,
    /// Token the order system presents on `POST /api/orders/events`.
    #[arg(long, env = "CHAT_SERVICE_TOKEN")]
    pub service_token: Option<String>,
    /// This node's id (default: random). Must be unique among running gateways.
    #[arg(long, env = "CHAT_NODE_ID")]
    pub node_id: Option<String>,
    /// How often this node records its heartbeat in Redis (ms).
    #[arg(long, env = "CHAT_NODE_BEAT_MS", default_value_t = 2000)]
    pub node_beat_ms: u64,
    /// A node whose heartbeat is older than this (ms) is declared dead: the
    /// other nodes take it out of every conversation (its customers go
    /// offline, its inbox is dropped). A node that was only stalled closes
    /// its sockets and rejoins when it wakes.
    #[arg(long, env = "CHAT_NODE_TTL_MS", default_value_t = 15000)]
    pub node_ttl_ms: u64,
    /// Agent session lifetime.
    #[arg(long, env = "CHAT_SESSION_TTL_SECS", default_value_t = 12 * 3600)]
    pub session_ttl_secs: u64,
    /// When a read of this node's relay streams returns 8 or more entries (a
    /// busy node), wait this long (microseconds) before the next read so that
    /// entries gather: fewer and larger reads under load; a quiet node reads
    /// again at once (0 = never wait).
    #[arg(long, env = "CHAT_INBOX_LINGER_US", default_value_t = 1000)]
    pub inbox_linger_us: u64,
    /// Chat-list rows go to agent sockets at most once per this many ms
    /// (the latest row of a conversation wins in between; a row after a
    /// quiet spell goes at once). 0: every row at once, uncoalesced.
    #[arg(long, env = "CHAT_ROW_FLUSH_MS", default_value_t = 250)]
    pub row_flush_ms: u64,
    /// At most this many chat-list rows per flush (the others wait for the next).
    #[arg(long, env = "CHAT_ROWS_PER_FLUSH", default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
    pub rows_per_flush: u64,

    /// Frames queued per socket before the socket counts as a slow consumer and is closed.
    /// 4,096 frames of a few hundred bytes is about Centrifugo's default of 1 MiB
    /// per client; the queue's memory is taken only while frames wait in it.
    #[arg(long, env = "CHAT_OUTBOUND_QUEUE", default_value_t = 4096)]
    pub outbound_queue: usize,
    /// Entries kept per conversation for `resume`; also the dedupe window:
    /// a retried `client_id` among a conversation's last this many messages
    /// gets the first send's seq.
    #[arg(long, env = "CHAT_REPLAY_LEN", default_value_t = schema::limits::REPLAY_LEN)]
    pub replay_len: usize,
    /// A conversation's replay stream and message metadata expire this long
    /// after its last positioned event, so Redis holds hot state for active
    /// conversations only (resuming later reloads history; metadata comes
    /// back from the SQL record when an old message is edited or quoted).
    #[arg(long, env = "CHAT_REPLAY_TTL_SECS", default_value_t = 24 * 3600)]
    pub replay_ttl_secs: u64,
    /// Most sockets this node accepts.
    #[arg(long, env = "CHAT_MAX_CONNECTIONS", default_value_t = 100_000)]
    pub max_connections: usize,
    /// Open sockets allowed from one client address.
    #[arg(long, env = "CHAT_MAX_CONNECTIONS_PER_IP", default_value_t = 10_000)]
    pub max_connections_per_ip: usize,
    /// New sockets per second allowed from one client address (bursts of 5x).
    #[arg(long, env = "CHAT_CONNECT_RATE_PER_IP", default_value_t = 200)]
    pub connect_rate_per_ip: u32,
    /// Messages (send/edit/delete/react) per second one socket may send; bursts of twice that.
    #[arg(long, env = "CHAT_SEND_RATE", default_value_t = 20)]
    pub send_rate: u32,
    /// Seconds a socket may stay silent (no frame, no pong) before it is closed.
    #[arg(long, env = "CHAT_IDLE_TIMEOUT_SECS", default_value_t = 90)]
    pub idle_timeout_secs: u64,
    /// Test only: serve `/ws-echo`, an echo over the same socket stack (for the Autobahn suite).
    #[arg(long, env = "CHAT_TEST_ECHO", default_value = "false", value_parser = BoolishValueParser::new(), action = clap::ArgAction::Set)]
    pub test_echo: bool,
    /// Seconds given to open sockets to drain on SIGTERM.
    #[arg(long, env = "CHAT_SHUTDOWN_GRACE_SECS", default_value_t = 10)]
    pub shutdown_grace_secs: u64,
    /// External loyalty service base URL (docs/loyalty-service.md). Unset: the SQL loyalty store.
    #[arg(long, env = "CHAT_LOYALTY_URL")]
    pub loyalty_url: Option<String>,
    /// Bearer token sent to the loyalty service.
    #[arg(long, env = "CHAT_LOYALTY_TOKEN")]
    pub loyalty_token: Option<String>,
    /// Timeout of one call to the loyalty service (panel reads; keep it under the points wait).
    #[arg(long, env = "CHAT_LOYALTY_TIMEOUT_MS", default_value_t = 3000)]
    pub loyalty_timeout_ms: u64,
    /// Largest amount one Give Points may award.
    #[arg(long, env = "CHAT_MAX_POINTS", default_value_t = 100_000)]
    pub max_points: i64,
    /// How long a points action waits for a worker's answer before answering 503.
    #[arg(long, env = "CHAT_POINTS_WAIT_MS", default_value_t = 5000)]
    pub points_wait_ms: u64,

    // ---- durability (issue 20)
    /// What a send's `ack` means: `memory` (in the primary Redis's memory)
    /// or `replica` (also confirmed by at least one replica through `WAIT`;
    /// otherwise the sender gets `unavailable` and retries with the same
    /// `client_id`). Single Redis only.
    #[arg(long, env = "CHAT_ACK_DURABILITY", default_value = "memory", value_parser = ["memory", "replica"])]
    pub ack_durability: String,
    /// With `replica` durability: how long a send waits for a replica's confirmation (ms).
    #[arg(long, env = "CHAT_ACK_WAIT_MS", default_value_t = 200)]
    pub ack_wait_ms: u64,
    // ---- HTTP limits and headers (issue 20)
    /// Password hashes (argon2, ~19 MiB each) computed at once; 0 = the number of cores.
    #[arg(long, env = "CHAT_MAX_CONCURRENT_HASHES", default_value_t = 0)]
    pub max_concurrent_hashes: usize,
    /// How long a login waits for a hashing slot before it is answered 503 (ms).
    #[arg(long, env = "CHAT_HASH_WAIT_MS", default_value_t = 2000)]
    pub hash_wait_ms: u64,
    /// Login attempts per (username, client address) before each further one
    /// has to wait a delay that doubles per attempt.
    #[arg(long, env = "CHAT_LOGIN_FREE_ATTEMPTS", default_value_t = 5)]
    pub login_free_attempts: u32,
    /// First delay after the free attempts (ms); doubles per attempt.
    #[arg(long, env = "CHAT_LOGIN_DELAY_MS", default_value_t = 1000)]
    pub login_delay_ms: u64,
    /// Longest delay between attempts of one (username, address) pair (ms).
    #[arg(long, env = "CHAT_LOGIN_DELAY_MAX_MS", default_value_t = 15 * 60 * 1000)]
    pub login_delay_max_ms: u64,
    /// Failed (or in-flight) logins per client address, all usernames, per 5 minutes.
    #[arg(long, env = "CHAT_LOGIN_FAILURES_PER_IP", default_value_t = 100)]
    pub login_failures_per_ip: u32,
    /// Proxies (comma-separated CIDRs or addresses) whose `X-Forwarded-For` /
    /// `Forwarded` header is believed. Empty: the TCP peer is the client.
    #[arg(long, env = "CHAT_TRUSTED_PROXIES", value_delimiter = ',', value_parser = parse_net)]
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// A connection must send a request's headers within this long (ms).
    #[arg(long, env = "CHAT_HEADER_READ_TIMEOUT_MS", default_value_t = 10_000)]
    pub header_read_timeout_ms: u64,
    /// Open HTTP connections (not yet upgraded to a WebSocket) on this node.
    #[arg(long, env = "CHAT_MAX_HTTP_CONNECTIONS", default_value_t = 8192)]
    pub max_http_connections: usize,
    /// Open HTTP connections from one TCP peer (trusted proxies are exempt).
    #[arg(long, env = "CHAT_MAX_HTTP_CONNECTIONS_PER_IP", default_value_t = 256)]
    pub max_http_connections_per_ip: usize,
    /// Longest lifetime a customer token may have: one expiring later than
    /// this from now is refused.
    #[arg(long, env = "CHAT_CUSTOMER_TOKEN_MAX_SECS", default_value_t = 30 * 24 * 3600)]
    pub customer_token_max_secs: u64,
    /// CSP `frame-ancestors` sources allowed to embed the widget (space
    /// separated, CSP syntax, e.g. `'self' https://crm.example.com`).
    #[arg(long, env = "CHAT_FRAME_ANCESTORS", default_value = "'self'")]
    pub frame_ancestors: String,
    /// Where `/metrics` is served (not on the public port; port 0 picks one).
    #[arg(long, env = "CHAT_METRICS_ADDR", default_value = "127.0.0.1:9092")]
    pub metrics_addr: SocketAddr,
    // ---- socket limits (issue 20)
    /// Longest a socket's write or flush may wait for the client to read
    /// (ms); past it the socket is dropped (a client that stopped reading
    /// holds no memory beyond this).
    #[arg(long, env = "CHAT_WRITE_TIMEOUT_MS", default_value_t = 10_000)]
    pub write_timeout_ms: u64,
    /// Open sockets one customer may hold on this node (further upgrades get 429).
    #[arg(long, env = "CHAT_MAX_SOCKETS_PER_CUSTOMER", default_value_t = 10)]
    pub max_sockets_per_customer: usize,
    /// Open sockets one agent may hold on this node (further upgrades get 429).
    #[arg(long, env = "CHAT_MAX_SOCKETS_PER_AGENT", default_value_t = 20)]
    pub max_sockets_per_agent: usize,
    /// Messages (send/edit/delete/react) per second one identity may send
    /// across all its sockets on this node; bursts of twice that. Unset:
    /// `CHAT_SEND_RATE` (all its sockets together send as fast as one may).
    #[arg(long, env = "CHAT_SEND_RATE_PER_IDENTITY")]
    pub send_rate_per_identity: Option<u32>,

    // ---- attachments (issue 19)
    /// Where uploaded files are kept: a directory (`data/uploads`,
    /// `file:///var/lib/chat/uploads`) or an S3-compatible bucket
    /// (`s3://bucket/prefix`, with the `CHAT_S3_*` settings). Several
    /// gateways need a shared one (S3, or one volume).
    #[arg(long, env = "CHAT_UPLOAD_URL", default_value = "data/uploads")]
    pub upload_url: String,
    /// S3 endpoint (e.g. `http://127.0.0.1:9000` for MinIO or another
    /// S3-compatible server); unset: AWS.
    #[arg(long, env = "CHAT_S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,
    #[arg(long, env = "CHAT_S3_REGION")]
    pub s3_region: Option<String>,
    #[arg(long, env = "CHAT_S3_ACCESS_KEY_ID")]
    pub s3_access_key_id: Option<String>,
    #[arg(long, env = "CHAT_S3_SECRET_ACCESS_KEY")]
    pub s3_secret_access_key: Option<String>,
    /// Allow a plain `http://` S3 endpoint.
    #[arg(long, env = "CHAT_S3_ALLOW_HTTP", default_value = "false", value_parser = BoolishValueParser::new(), action = clap::ArgAction::Set)]
    pub s3_allow_http: bool,
    /// Largest file one upload may be (bytes); larger: 413.
    #[arg(long, env = "CHAT_MAX_UPLOAD_BYTES", default_value_t = 10 * 1024 * 1024)]
    pub max_upload_bytes: u64,
    /// Content types an upload may have, judged from its bytes (comma separated); others: 415.
    #[arg(
        long,
        env = "CHAT_UPLOAD_TYPES",
        value_delimiter = ',',
        default_value = "image/jpeg,image/png,image/webp,image/gif,application/pdf,text/plain"
    )]
    pub upload_types: Vec<String>,
    /// An upload not sent with a message within this long is removed (seconds).
    #[arg(long, env = "CHAT_UPLOAD_UNUSED_SECS", default_value_t = 24 * 3600)]
    pub upload_unused_secs: u64,
    /// How often a gateway removes unused and deleted uploads (seconds).
    #[arg(long, env = "CHAT_UPLOAD_SWEEP_SECS", default_value_t = 600)]
    pub upload_sweep_secs: u64,
    /// Lifetime of a signed download link (`GET /api/attachments/{id}/link`), seconds.
    #[arg(long, env = "CHAT_ATTACHMENT_LINK_SECS", default_value_t = 600)]
    pub attachment_link_secs: u64,
    /// Where an upload is spooled while it is checked (default: the system's temp directory).
    #[arg(long, env = "CHAT_UPLOAD_TMP_DIR")]
    pub upload_tmp_dir: Option<String>,
}

impl Config {
    /// Acks wait for a replica (`CHAT_ACK_DURABILITY=replica`).
    pub fn replica_acks(&self) -> bool {
        self.ack_durability == "replica"
    }

    /// Settings that are wrong together. A replica wait at or past the Redis
    /// response timeout would time the send's pipeline out on the client
    /// while Redis still runs it: the sender could not tell "refused" from
    /// "numbered and unconfirmed".
    pub fn check(&self) -> Result<(), String> {
        if self.replica_acks() && self.ack_wait_ms >= self.redis_timeout_ms {
            return Err(format!(
                "CHAT_ACK_WAIT_MS ({}) must be below CHAT_REDIS_TIMEOUT_MS ({})",
                self.ack_wait_ms, self.redis_timeout_ms
            ));
        }
        Ok(())
    }

    /// Parses only from the given environment-like pairs (tests never touch the process env).
    pub fn from_args<I, T>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        Config::try_parse_from(args)
    }
}

/// Parses one `CHAT_TRUSTED_PROXIES` entry: a CIDR, or a bare address (/32, /128).
pub fn parse_net(s: &str) -> Result<ipnet::IpNet, String> {
    let s = s.trim();
    if let Ok(n) = s.parse::<ipnet::IpNet>() {
        return Ok(n.trunc());
    }
    s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from).map_err(|_| format!("not a CIDR or an IP address: {s:?}"))
}

#[cfg(test)]
mod tests {
    use super::Config;

    #[test]
    fn a_replica_wait_past_the_redis_timeout_is_refused() {
        let cfg = |extra: &[&str]| Config::from_args(["gateway"].iter().chain(extra).copied()).unwrap();
        assert!(cfg(&["--ack-durability", "replica", "--ack-wait-ms", "2000"]).check().unwrap_err().contains("CHAT_ACK_WAIT_MS"));
        assert!(cfg(&["--ack-durability", "replica", "--ack-wait-ms", "1000"]).check().is_ok());
        // Memory acks never wait: any value is fine.
        assert!(cfg(&["--ack-wait-ms", "5000"]).check().is_ok());
    }
}
