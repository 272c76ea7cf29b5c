//! WebSocket close codes the node sends (RFC 6455 section 7.4.1, plus one
//! of the application's own).

pub const NORMAL: u16 = 1000;
pub const GOING_AWAY: u16 = 1001;
pub const PROTOCOL: u16 = 1002;
pub const BAD_DATA: u16 = 1007;
pub const POLICY: u16 = 1008;
pub const TOO_BIG: u16 = 1009;
/// Application close code: the client did not read fast enough.
pub const SLOW_CONSUMER: u16 = 4008;
/// Application close code: the agent session the socket was opened with
/// was revoked (logout, expiry): log in again.
pub const REVOKED: u16 = 4001;

/// The reason sent with a close code.
pub fn reason(code: u16) -> &'static str {
    match code {
        GOING_AWAY => "going away: reconnect and resume",
        POLICY => "policy violation",
        TOO_BIG => "message too big",
        SLOW_CONSUMER => "slow consumer: reconnect and resume",
        REVOKED => "session revoked",
        _ => "",
    }
}
