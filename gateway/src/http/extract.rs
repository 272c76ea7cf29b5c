//! What routes read from a request: the JSON body (capped), the query,
//! and who is calling (any caller, agents only, agents or the owner).

use std::collections::HashMap;

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use schema::frames::ErrorCode;
use schema::limits::MAX_BODY_BYTES;
use serde::Deserialize;

use crate::auth;
use crate::error::{json_response, Body, GatewayError};
use crate::identity::Identity;
use crate::state::AppState;

type Result<T> = std::result::Result<T, GatewayError>;

/// The `{id}` of `/api/conversations/{id}...` and `/api/customers/{id}...`
/// in the OpenAPI description (`params(IdParam)`): a customer's id, which is
/// also its conversation's id (`schema::ids::valid_id`).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub struct IdParam {
    /// A customer's id, also its conversation's: 1..64 of letters, digits, `_`, `-`, `.` (not `.` or `..`).
    #[param(pattern = "^[A-Za-z0-9_.-]{1,64}$", example = "alice")]
    id: String,
}

pub fn with_status(mut r: Response<Body>, s: StatusCode) -> Response<Body> {
    *r.status_mut() = s;
    r
}

pub fn ok(v: serde_json::Value) -> Result<Response<Body>> {
    Ok(json_response(StatusCode::OK, &v))
}

/// 200 with a typed body (the type the handler's OpenAPI annotation names).
pub fn ok_json(v: &impl serde::Serialize) -> Result<Response<Body>> {
    Ok(json_response(StatusCode::OK, v))
}

/// Reads a JSON body, at most [`MAX_BODY_BYTES`].
pub async fn read_json<T: for<'de> Deserialize<'de>>(req: Request<Incoming>) -> Result<T> {
    let body = Limited::new(req.into_body(), MAX_BODY_BYTES);
    let bytes: Bytes = match body.collect().await {
        Ok(c) => c.to_bytes(),
        Err(e) => {
            if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() {
                return Err(GatewayError::client(ErrorCode::TooLarge, format!("request body over {MAX_BODY_BYTES} bytes")));
            }
            return Err(GatewayError::invalid("could not read the request body"));
        }
    };
    serde_json::from_slice(&bytes).map_err(|e| GatewayError::invalid(format!("invalid JSON body: {e}")))
}

pub fn query(req: &Request<Incoming>) -> HashMap<String, String> {
    req.uri()
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default()
}

pub async fn caller(state: &AppState, req: &Request<Incoming>) -> Result<Identity> {
    let token = auth::bearer(req).ok_or_else(|| GatewayError::unauthorized("missing Authorization: Bearer <token>"))?;
    auth::identify(state, &token).await
}

pub async fn agent(state: &AppState, req: &Request<Incoming>) -> Result<Identity> {
    let who = caller(state, req).await?;
    if !who.is_agent() {
        return Err(GatewayError::forbidden("agents only"));
    }
    Ok(who)
}

/// Agents, or the customer whose conversation it is.
pub async fn agent_or_owner(state: &AppState, req: &Request<Incoming>, conv: &str) -> Result<Identity> {
    let who = caller(state, req).await?;
    if let Some(own) = who.own_conversation() {
        if own != conv {
            return Err(GatewayError::forbidden("customers may only read their own conversation"));
        }
    }
    Ok(who)
}

pub fn client_addr(req: &Request<Incoming>) -> String {
    req.extensions().get::<std::net::SocketAddr>().map(|a| a.ip().to_string()).unwrap_or_default()
}

