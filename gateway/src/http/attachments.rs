//! `POST /api/attachments` (upload), `GET /api/attachments/{id}` and
//! `/thumbnail` (download), `GET /api/attachments/{id}/link` (signed links
//! for `<img>` and new tabs, which cannot send a bearer token).
//!
//! Downloads are made safe to open from the console's origin: the stored
//! type (sniffed at upload) with `nosniff`, `Content-Disposition:
//! attachment` for everything but raster images, and a CSP `sandbox`
//! without scripts, so an uploaded HTML or SVG file runs nothing even when
//! a browser renders it.

use futures::{StreamExt, TryStreamExt};
use http_body_util::{BodyExt, BodyStream, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response, StatusCode};
use store::attachments::Upload;

use super::extract::{caller, query, IdParam};
use crate::error::ErrorReply;
use crate::domain::attachments::{self, links};
use crate::error::{json_response, Body, GatewayError};
use crate::state::AppState;

type Result<T> = std::result::Result<T, GatewayError>;

/// What a downloaded file may do when a browser renders it: nothing.
const DOWNLOAD_CSP: &str = "default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'; sandbox; frame-ancestors 'none'";

/// `POST /api/attachments`: multipart, field `file`; 201 with the attachment.
#[utoipa::path(post, path = "/api/attachments", tag = "attachments", security(("bearer" = [])),
    request_body(content_type = "multipart/form-data", description = "One field `file`"),
    responses(
        (status = 200, description = "Stored: id, name, size, content_type, url, thumbnail_url"),
        (status = 400, description = "Not multipart, or no `file` field", body = ErrorReply),
        (status = 401, description = "No or wrong token", body = ErrorReply),
        (status = 413, description = "Larger than CHAT_MAX_UPLOAD_BYTES", body = ErrorReply),
        (status = 415, description = "A type CHAT_UPLOAD_TYPES does not allow, judged by content", body = ErrorReply),
        (status = 503, description = "Storage unavailable", body = ErrorReply),
    ))]
pub async fn upload(state: &AppState, req: Request<Incoming>) -> Result<Response<Body>> {
    let who = caller(state, &req).await?;
    let ct = req.headers().get(hyper::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_string);
    let len = req
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let body = forward_then_drain(req.into_body(), state.cfg.max_upload_bytes.saturating_mul(4).max(1 << 20));
    let a = attachments::receive(state, &who, ct.as_deref(), len, body).await?;
    Ok(json_response(StatusCode::CREATED, &a))
}

/// The request body as a stream for the upload, read by a task of its own
/// that, once the upload stops listening (refused: too large, wrong type),
/// reads and discards the rest, up to `cap` bytes and a minute. A refusal
/// is sent before the client has finished sending; had nobody read the
/// rest, the connection would be reset under the client while it still
/// sends, and it would see a broken connection instead of the 413/415.
/// Past the cap the connection is closed anyway (bounded work per refusal).
fn forward_then_drain(body: Incoming, cap: u64) -> impl futures::Stream<Item = std::result::Result<bytes::Bytes, hyper::Error>> + Send + 'static {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::spawn(async move {
        let mut frames = BodyStream::new(body).try_filter_map(|f| futures::future::ready(Ok(f.into_data().ok())));
        let mut forwarding = true;
        let mut drained = 0u64;
        let _ = tokio::time::timeout(std::time::Duration::from_secs(60), async {
            while let Some(item) = frames.next().await {
                match item {
                    Ok(data) if forwarding => forwarding = tx.send(Ok(data)).await.is_ok(),
                    Ok(data) => {
                        drained += data.len() as u64;
                        if drained > cap {
                            break;
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        break;
                    }
                }
            }
        })
        .await;
    });
    futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) })
}

async fn find(state: &AppState, id: &str) -> Result<Upload> {
    let missing = || GatewayError::not_found("no such attachment");
    if !schema::ids::valid_attachment_id(id) {
        return Err(missing());
    }
    match state.store.upload(id).await? {
        Some(u) if u.deleted_at.is_none() => Ok(u),
        _ => Err(missing()),
    }
}

/// The upload, if the request may read it: a valid signed link for this
/// variant, or a bearer token of someone who may read it (else 404: an
/// upload the caller may not read does not exist for it).
async fn authorised(state: &AppState, req: &Request<Incoming>, id: &str, variant: &str) -> Result<Upload> {
    let q = query(req);
    if let (Some(exp), Some(sig)) = (q.get("exp"), q.get("sig")) {
        let exp: i64 = exp.parse().map_err(|_| GatewayError::not_found("no such attachment"))?;
        if !links::verify(&state.link_key, id, variant, exp, sig, schema::now_ms() / 1000) {
            return Err(GatewayError::not_found("no such attachment (or the link expired: ask for a new one)"));
        }
        return find(state, id).await;
    }
    let who = caller(state, req).await?;
    let u = find(state, id).await?;
    if !attachments::may_read(&who, &u) {
        return Err(GatewayError::not_found("no such attachment"));
    }
    Ok(u)
}

/// RFC 6266 / 5987: an ASCII fallback and the UTF-8 name.
fn disposition(kind: &str, name: &str) -> String {
    let ascii: String = name.chars().map(|c| if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' { c } else { '_' }).collect();
    let encoded: String = name
        .bytes()
        .map(|b| if b.is_ascii_alphanumeric() || b"-._~".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect();
    format!("{kind}; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
}

/// `GET /api/attachments/{id}` (and `/thumbnail`): the bytes, streamed.
#[utoipa::path(get, path = "/api/attachments/{id}", tag = "attachments", params(IdParam), security(("bearer" = [])),
    responses(
        (status = 200, description = "The file (Content-Disposition attachment except raster images; sandboxed CSP)"),
        (status = 400, description = "Not a valid id", body = ErrorReply),
        (status = 401, description = "No or wrong token", body = ErrorReply),
        (status = 404, description = "No such file, or not the caller's to read", body = ErrorReply),
    ))]
pub async fn download_file(state: &AppState, req: Request<Incoming>, id: &str) -> Result<Response<Body>> {
    download(state, req, id, false).await
}

#[utoipa::path(get, path = "/api/attachments/{id}/thumbnail", tag = "attachments", params(IdParam), security(("bearer" = [])),
    responses(
        (status = 200, description = "The image's thumbnail"),
        (status = 400, description = "Not a valid id", body = ErrorReply),
        (status = 401, description = "No or wrong token", body = ErrorReply),
        (status = 404, description = "No such file or thumbnail, or not the caller's to read", body = ErrorReply),
    ))]
pub async fn download_thumbnail(state: &AppState, req: Request<Incoming>, id: &str) -> Result<Response<Body>> {
    download(state, req, id, true).await
}

async fn download(state: &AppState, req: Request<Incoming>, id: &str, thumbnail: bool) -> Result<Response<Body>> {
    let u = authorised(state, &req, id, if thumbnail { "thumbnail" } else { "file" }).await?;
    let (size, stream) = attachments::open(state, &u, thumbnail).await?;
    let (content_type, inline) = if thumbnail {
        (attachments::thumbnail_type(&u).to_string(), true)
    } else if u.content_type == "text/plain" {
        ("text/plain; charset=utf-8".to_string(), false)
    } else {
        // Raster images show inline; everything else (PDF, SVG, HTML) is a download.
        (u.content_type.clone(), attachments::sniff::image_format(&u.content_type).is_some())
    };
    let body = StreamBody::new(stream.map_ok(Frame::data)).boxed_unsync();
    Response::builder()
        .status(StatusCode::OK)
        .header(hyper::header::CONTENT_TYPE, content_type)
        .header(hyper::header::CONTENT_LENGTH, size)
        .header(hyper::header::CONTENT_DISPOSITION, disposition(if inline { "inline" } else { "attachment" }, &u.name))
        .header(hyper::header::CONTENT_SECURITY_POLICY, DOWNLOAD_CSP)
        .header(hyper::header::CACHE_CONTROL, "private, max-age=300")
        .header("cross-origin-resource-policy", "same-origin")
        .body(body)
        .map_err(|e| GatewayError::Internal(format!("download response: {e}")))
}

/// `GET /api/attachments/{id}/link`: signed URLs of the file and its
/// thumbnail, valid `CHAT_ATTACHMENT_LINK_SECS`.
#[utoipa::path(get, path = "/api/attachments/{id}/link", tag = "attachments", params(IdParam), security(("bearer" = [])),
    responses(
        (status = 200, description = "A short-lived signed URL of the file"),
        (status = 400, description = "Not a valid id", body = ErrorReply),
        (status = 401, description = "No or wrong token", body = ErrorReply),
        (status = 404, description = "No such file, or not the caller's to read", body = ErrorReply),
    ))]
pub async fn link(state: &AppState, req: Request<Incoming>, id: &str) -> Result<Response<Body>> {
    let who = caller(state, &req).await?;
    let u = find(state, id).await?;
    if !attachments::may_read(&who, &u) {
        return Err(GatewayError::not_found("no such attachment"));
    }
    let exp = schema::now_ms() / 1000 + state.cfg.attachment_link_secs as i64;
    let url = format!("/api/attachments/{id}?{}", links::sign(&state.link_key, id, "file", exp));
    let thumb = u.thumb_key.as_ref().map(|_| format!("/api/attachments/{id}/thumbnail?{}", links::sign(&state.link_key, id, "thumbnail", exp)));
    Ok(json_response(StatusCode::OK, &serde_json::json!({"url": url, "thumbnail_url": thumb, "expires_at": exp * 1000})))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dispositions_quote_safely() {
        assert_eq!(disposition("attachment", "menu.pdf"), "attachment; filename=\"menu.pdf\"; filename*=UTF-8''menu.pdf");
        let d = disposition("inline", "reçu \"1\".png");
        assert!(d.starts_with("inline; filename=\"re_u _1_.png\"; filename*=UTF-8''re%C3%A7u%20%221%22.png"), "{d}");
    }
}
