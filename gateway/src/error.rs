//! Errors become client replies here, and only here: a stable code and a
//! plain message; internal details go to the log, never to the client.

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::{Response, StatusCode};
use schema::frames::{ErrorCode, FrameError};

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("{1}")]
    Client(ErrorCode, String),
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("store: {0}")]
    Store(#[from] store::StoreError),
    /// Anything else that failed on our side (a blob store, a temp file):
    /// logged, and the client is told to retry.
    #[error("internal: {0}")]
    Internal(String),
}

impl GatewayError {
    pub fn client(code: ErrorCode, msg: impl Into<String>) -> Self {
        GatewayError::Client(code, msg.into())
    }
    pub fn invalid(msg: impl Into<String>) -> Self {
        Self::client(ErrorCode::Invalid, msg)
    }
    pub fn forbidden(msg: impl Into<String>) -> Self {
        Self::client(ErrorCode::Forbidden, msg)
    }
    pub fn not_found(msg: impl Into<String>) -> Self {
        Self::client(ErrorCode::NotFound, msg)
    }
    pub fn unauthorized(msg: impl Into<String>) -> Self {
        Self::client(ErrorCode::Unauthorized, msg)
    }

    /// The code and message a client sees. Backend failures are logged and
    /// reported as `unavailable` without their details.
    pub fn to_frame_error(&self) -> FrameError {
        match self {
            GatewayError::Client(code, msg) => FrameError::new(*code, msg.clone()),
            GatewayError::Redis(e) => {
                tracing::warn!(error = %e, "redis error");
                FrameError::new(ErrorCode::Unavailable, "the chat service is temporarily unavailable, retry shortly")
            }
            GatewayError::Store(store::StoreError::NotFound) => FrameError::new(ErrorCode::NotFound, "not found"),
            GatewayError::Store(e) => {
                tracing::warn!(error = %e, "store error");
                FrameError::new(ErrorCode::Unavailable, "the chat history is temporarily unavailable, retry shortly")
            }
            GatewayError::Internal(e) => {
                tracing::warn!(error = %e, "internal error");
                FrameError::new(ErrorCode::Unavailable, "the service could not complete this, retry shortly")
            }
        }
    }
}

impl From<FrameError> for GatewayError {
    fn from(e: FrameError) -> Self {
        GatewayError::Client(e.code, e.message)
    }
}

pub fn status_of(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::Invalid => StatusCode::BAD_REQUEST,
        ErrorCode::Forbidden => StatusCode::FORBIDDEN,
        ErrorCode::NotFound => StatusCode::NOT_FOUND,
        ErrorCode::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
        ErrorCode::Conflict => StatusCode::CONFLICT,
        ErrorCode::UnsupportedType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
    }
}

/// Response bodies: whole (JSON, pages) or streamed (attachment downloads).
pub type Body = UnsyncBoxBody<Bytes, std::io::Error>;

/// A body of bytes already in memory.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).map_err(|never| match never {}).boxed_unsync()
}

pub fn json_response(status: StatusCode, body: &impl serde::Serialize) -> Response<Body> {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("cache-control", "no-store")
        .body(full(bytes))
        .unwrap_or_default()
}

/// The body of every HTTP error: `{"error":{"code","message"}}` (the
/// OpenAPI description's `ErrorReply`).
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ErrorReply {
    pub error: ErrorDetail,
}

#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable, for programs: invalid (400), unauthorized (401), forbidden
    /// (403), not_found (404), conflict (409), too_large (413),
    /// rate_limited (429), unavailable (503).
    #[schema(value_type = String, example = "invalid")]
    pub code: &'static str,
    /// For people; may change.
    pub message: String,
}

pub fn error_response(e: &GatewayError) -> Response<Body> {
    let fe = e.to_frame_error();
    json_response(status_of(fe.code), &ErrorReply { error: ErrorDetail { code: fe.code.as_str(), message: fe.message } })
}

/// A client error as a response (code and message).
pub fn error_reply(code: ErrorCode, msg: &str) -> Response<Body> {
    error_response(&GatewayError::client(code, msg))
}
