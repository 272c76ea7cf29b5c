//! `ping` -> `pong` (an application-level liveness check; WebSocket pings
//! are answered by the socket itself).

use schema::frames::ServerFrame;

pub fn apply() -> ServerFrame {
    ServerFrame::Pong
}
