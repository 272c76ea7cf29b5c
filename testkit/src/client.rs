//! A WebSocket client of the gateway that buffers frames, so a test can wait
//! for one kind while others keep arriving.

use std::collections::VecDeque;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message as WsMsg;

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A WebSocket client that buffers frames so tests can wait for one kind
/// while others keep arriving.
pub struct Client {
    pub ws: Ws,
    pub buf: VecDeque<Value>,
    pub hello: Value,
    pub closed: Option<(u16, String)>,
}

pub fn uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}

impl Client {
    pub async fn connect(addr: &str, token: &str) -> Client {
        let mut req = format!("ws://{addr}/ws").into_client_request().unwrap();
        req.headers_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
        let (ws, _) = tokio_tungstenite::connect_async(req).await.expect("ws connect");
        let mut c = Client { ws, buf: VecDeque::new(), hello: Value::Null, closed: None };
        c.hello = c.expect(|f| f["type"] == "hello").await;
        c
    }

    pub async fn send(&mut self, v: Value) {
        self.ws.send(WsMsg::Text(v.to_string().into())).await.expect("ws send");
    }

    pub async fn send_raw(&mut self, s: String) {
        self.ws.send(WsMsg::Text(s.into())).await.expect("ws send");
    }

    async fn read_one(&mut self, wait: Duration) -> Option<Value> {
        // One deadline for the call: pings and pongs do not extend it.
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => return None,
                Ok(None) => return None,
                // No close frame: 1006, "abnormal closure" (RFC 6455 7.1.5).
                Ok(Some(Err(e))) => {
                    self.closed.get_or_insert((1006, e.to_string()));
                    return None;
                }
                Ok(Some(Ok(WsMsg::Text(t)))) => return Some(serde_json::from_str(&t).expect("server sends JSON")),
                Ok(Some(Ok(WsMsg::Close(f)))) => {
                    self.closed = Some(f.map(|f| (u16::from(f.code), f.reason.to_string())).unwrap_or((1005, String::new())));
                    return None;
                }
                Ok(Some(Ok(_))) => continue,
            }
        }
    }

    /// Waits (up to 10 s) for the first frame matching `pred`; others stay buffered.
    pub async fn expect(&mut self, pred: impl Fn(&Value) -> bool) -> Value {
        if let Some(i) = self.buf.iter().position(&pred) {
            return self.buf.remove(i).unwrap();
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.read_one(left).await {
                Some(v) if pred(&v) => return v,
                Some(v) => self.buf.push_back(v),
                None => panic!("expected frame not received (closed: {:?}); {} buffered, the last: {}", self.closed, self.buf.len(), self.tail()),
            }
        }
    }

    /// The last few buffered frames, shortened, for failure messages.
    pub fn tail(&self) -> String {
        self.buf
            .iter()
            .rev()
            .take(4)
            .map(|v| {
                let s = v.to_string();
                if s.len() > 300 { format!("{}...", &s[..300]) } else { s }
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Asserts no frame matching `pred` arrives within `wait`.
    pub async fn expect_none(&mut self, wait: Duration, pred: impl Fn(&Value) -> bool) {
        if let Some(v) = self.buf.iter().find(|v| pred(v)) {
            panic!("unexpected frame: {v}");
        }
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return;
            }
            match self.read_one(left).await {
                Some(v) if pred(&v) => panic!("unexpected frame: {v}"),
                Some(v) => self.buf.push_back(v),
                None => return,
            }
        }
    }

    /// Sends a message and returns its ack.
    pub async fn say(&mut self, conv: &str, text: &str) -> Value {
        // rid = client_id, so tests can map acks to the record.
        let rid = uuid();
        self.send(json!({"type":"send","rid":rid,"conversation":conv,"client_id":rid,"text":text})).await;
        self.reply(&rid).await
    }

    /// Agents: watches a conversation (its live events come to this socket
    /// from now on; those after `after` are replayed first). Returns the
    /// `replay` frame that answers it.
    pub async fn watch(&mut self, conv: &str, after: u64) -> Value {
        self.send(json!({"type":"watch","conversation":conv,"after":after})).await;
        let c = conv.to_string();
        self.expect(move |f| f["type"] == "replay" && f["conversation"] == c.as_str()).await
    }

    /// Agents: watches a conversation from its current end (nothing replayed).
    pub async fn watch_now(&mut self, conv: &str) -> Value {
        self.send(json!({"type":"watch","conversation":conv,"after":u64::MAX / 2})).await;
        let c = conv.to_string();
        self.expect(move |f| f["type"] == "replay" && f["conversation"] == c.as_str()).await
    }

    /// The ack or error answering `rid`.
    pub async fn reply(&mut self, rid: &str) -> Value {
        let rid = rid.to_string();
        self.expect(move |f| f["rid"] == rid.as_str()).await
    }

    /// Waits until the socket is closed by the server; returns the close code.
    pub async fn closed_code(&mut self) -> u16 {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while self.closed.is_none() {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                break;
            }
            match self.read_one(left).await {
                Some(v) => self.buf.push_back(v),
                None => break,
            }
        }
        self.closed.as_ref().map(|c| c.0).unwrap_or(0)
    }
}

pub fn is_msg(conv: &str, text: &str) -> impl Fn(&Value) -> bool {
    let conv = conv.to_string();
    let text = text.to_string();
    move |f: &Value| f["type"] == "message" && f["conversation"] == conv.as_str() && f["message"]["text"] == text.as_str()
}
