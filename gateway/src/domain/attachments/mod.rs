//! Attachments: receiving an upload, claiming uploads for a message,
//! who may read one, opening its bytes, and sweeping the unused and the
//! deleted.
//!
//! An upload is spooled to a temp file while it arrives (never held whole
//! in memory), its type is judged from its first bytes ([`sniff`]) and
//! refused early when not allowed, an image is decoded whole
//! ([`images`]: a forged one is refused) and gets a thumbnail; then the
//! file is streamed to the blob store in parts and its row is recorded.
//! `send` claims the sender's own uploads for the message (all or
//! nothing, idempotent for a retried `client_id`); the message then
//! carries their metadata through the replay stream, the log and the
//! record. Downloads go through [`may_read`] or a signed link ([`links`]).

pub mod images;
pub mod links;
pub mod sniff;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::Stream;
use schema::frames::{Attachment, ErrorCode};
use store::attachments::Upload;
use tokio::io::AsyncWriteExt;

use crate::error::GatewayError;
use crate::identity::Identity;
use crate::state::AppState;

type Result<T> = std::result::Result<T, GatewayError>;

/// Multipart framing allowed around the file (boundaries, headers, other small fields).
const MULTIPART_OVERHEAD: u64 = 64 * 1024;
/// Uploads by outcome (`ok`, `too_large`, `unsupported_type`, `invalid`, `error`).
pub const UPLOADS: &str = "gateway_uploads_total";
/// Bytes of accepted uploads.
pub const UPLOAD_BYTES: &str = "gateway_upload_bytes_total";
/// Uploads removed by the sweep (`unused` or `deleted`).
pub const UPLOADS_SWEPT: &str = "gateway_uploads_swept_total";

fn owner_kind(ident: &Identity) -> &'static str {
    if ident.is_agent() {
        "agent"
    } else {
        "customer"
    }
}

fn internal(what: &str, e: impl std::fmt::Display) -> GatewayError {
    GatewayError::Internal(format!("{what}: {e}"))
}

fn too_large(max: u64) -> GatewayError {
    GatewayError::client(ErrorCode::TooLarge, format!("the file is larger than the limit of {max} bytes"))
}

fn multipart_error(e: multer::Error, max: u64) -> GatewayError {
    match e {
        multer::Error::FieldSizeExceeded { .. } | multer::Error::StreamSizeExceeded { .. } => too_large(max),
        other => GatewayError::invalid(format!("malformed multipart body: {other}")),
    }
}

/// The file name as shown: the last path segment, without control
/// characters, at most 200 characters; `file` when nothing is left.
pub fn clean_name(raw: Option<&str>) -> String {
    let base = raw.unwrap_or("").rsplit(['/', '\\']).next().unwrap_or("");
    let s: String = base.chars().filter(|c| !c.is_control()).take(200).collect();
    let s = s.trim().trim_start_matches('.').to_string();
    if s.is_empty() {
        "file".to_string()
    } else {
        s
    }
}

fn check_allowed(state: &AppState, content_type: &str) -> Result<()> {
    if state.cfg.upload_types.iter().any(|t| t.trim().eq_ignore_ascii_case(content_type)) {
        return Ok(());
    }
    Err(GatewayError::client(
        ErrorCode::UnsupportedType,
        format!("files of type {content_type} are not accepted (allowed: {})", state.cfg.upload_types.join(", ")),
    ))
}

/// Receives one upload: a `multipart/form-data` body (`content_type` is
/// the request's header) whose field `file` is the file. Returns what a
/// message will carry of it. Refusals: 400 `invalid` (not multipart, no
/// `file`, empty), 413 `too_large` (over `CHAT_MAX_UPLOAD_BYTES`, also
/// when the declared length already is), 415 `unsupported_type` (content
/// not in `CHAT_UPLOAD_TYPES`, or an image that does not decode).
pub async fn receive<S, E>(state: &AppState, ident: &Identity, content_type: Option<&str>, content_length: Option<u64>, body: S) -> Result<Attachment>
where
    S: Stream<Item = std::result::Result<Bytes, E>> + Send + 'static,
    E: Into<Box<dyn std::error::Error + Send + Sync>> + 'static,
{
    let r = receive_inner(state, ident, content_type, content_length, body).await;
    let outcome = match &r {
        Ok(_) => "ok",
        Err(GatewayError::Client(ErrorCode::TooLarge, _)) => "too_large",
        Err(GatewayError::Client(ErrorCode::UnsupportedType, _)) => "unsupported_type",
        Err(GatewayError::Client(..)) => "invalid",
        Err(_) => "error",
    };
    metrics::counter!(UPLOADS, "outcome" => outcome).increment(1);
    r
}

async fn receive_inner<S, E>(state: &AppState, ident: &Identity, content_type: Option<&str>, content_length: Option<u64>, body: S) -> Result<Attachment>
where
    S: Stream<Item = std::result::Result<Bytes, E>> + Send + 'static,
    E: Into<Box<dyn std::error::Error + Send + Sync>> + 'static,
{
    let max = state.cfg.max_upload_bytes;
    let boundary = content_type
        .and_then(|ct| multer::parse_boundary(ct).ok())
        .ok_or_else(|| GatewayError::invalid("expected a multipart/form-data body with the file in field `file`"))?;
    if content_length.is_some_and(|n| n > max + MULTIPART_OVERHEAD) {
        return Err(too_large(max));
    }
    let limits = multer::SizeLimit::new().whole_stream(max + MULTIPART_OVERHEAD).per_field(max);
    let mut parts = multer::Multipart::with_constraints(body, boundary, multer::Constraints::new().size_limit(limits));
    let dir = state.cfg.upload_tmp_dir.clone().map(std::path::PathBuf::from).unwrap_or_else(std::env::temp_dir);
    let mut found = None;
    while let Some(mut field) = parts.next_field().await.map_err(|e| multipart_error(e, max))? {
        if field.name() != Some("file") {
            // Dropping a field skips the rest of it (still within the stream's limit).
            continue;
        }
        let name = clean_name(field.file_name());
        let spool = tempfile::Builder::new()
            .prefix("chat-upload-")
            .tempfile_in(&dir)
            .map_err(|e| internal("temp file", e))?;
        let (file, path) = spool.into_parts();
        let mut file = tokio::fs::File::from_std(file);
        let mut head: Vec<u8> = Vec::with_capacity(sniff::HEAD_BYTES);
        let mut size = 0u64;
        let mut sniffed: Option<&'static str> = None;
        while let Some(chunk) = field.chunk().await.map_err(|e| multipart_error(e, max))? {
            size += chunk.len() as u64;
            if size > max {
                return Err(too_large(max));
            }
            if head.len() < sniff::HEAD_BYTES {
                let take = (sniff::HEAD_BYTES - head.len()).min(chunk.len());
                head.extend_from_slice(&chunk[..take]);
                if head.len() == sniff::HEAD_BYTES {
                    // Refuse a wrong type before reading the rest.
                    let t = sniff::sniff(&head, false);
                    check_allowed(state, t)?;
                    sniffed = Some(t);
                }
            }
            file.write_all(&chunk).await.map_err(|e| internal("spooling the upload", e))?;
        }
        file.flush().await.map_err(|e| internal("spooling the upload", e))?;
        drop(file);
        found = Some((name, path, head, size, sniffed));
        break;
    }
    let Some((name, path, head, size, sniffed)) = found else {
        return Err(GatewayError::invalid("no field `file` in the form"));
    };
    if size == 0 {
        return Err(GatewayError::invalid("the file is empty"));
    }
    let content_type = match sniffed {
        Some(t) => t,
        None => {
            let t = sniff::sniff(&head, true);
            check_allowed(state, t)?;
            t
        }
    };
    let mut verified = None;
    if let Some(format) = sniff::image_format(content_type) {
        let _slot = state.image_slots.acquire().await.map_err(|e| internal("image slots", e))?;
        let p = path.to_path_buf();
        let v = tokio::task::spawn_blocking(move || images::verify(&p, format))
            .await
            .map_err(|e| internal("image check", e))?
            .map_err(|reason| GatewayError::client(ErrorCode::UnsupportedType, reason))?;
        verified = Some(v);
    }

    let id = crate::ids::random_token()[..32].to_string();
    let blob_key = format!("files/{}/{id}", &id[..2]);
    let file = tokio::fs::File::open(&path).await.map_err(|e| internal("reopening the upload", e))?;
    let stored = state
        .blobs
        .put_stream(&blob_key, tokio_util::io::ReaderStream::new(file))
        .await
        .map_err(|e| internal("storing the upload", e))?;
    drop(path);
    let mut thumb_key = None;
    if let Some(v) = &verified {
        let ext = if v.thumb_type == "image/png" { "png" } else { "jpg" };
        let key = format!("thumbs/{}/{id}.{ext}", &id[..2]);
        state.blobs.put_bytes(&key, Bytes::from(v.thumb.clone())).await.map_err(|e| internal("storing the thumbnail", e))?;
        thumb_key = Some(key);
    }
    let up = Upload {
        id,
        owner_kind: owner_kind(ident).to_string(),
        owner_id: ident.id.clone(),
        name,
        size: stored,
        content_type: content_type.to_string(),
        blob_key,
        thumb_key,
        width: verified.as_ref().map(|v| v.width),
        height: verified.as_ref().map(|v| v.height),
        created_at: schema::now_ms(),
        conversation_id: None,
        client_id: None,
        seq: None,
        deleted_at: None,
    };
    if let Err(e) = state.store.insert_upload(&up).await {
        remove_blobs(state, &up).await;
        return Err(e.into());
    }
    metrics::counter!(UPLOAD_BYTES).increment(stored);
    Ok(up.to_attachment())
}

/// Claims the sender's uploads `ids` for its message `client_id` in
/// `conv` (see `Store::claim_uploads`) and returns what the message carries.
pub async fn claim(state: &AppState, ident: &Identity, conv: &str, client_id: &str, ids: &[String]) -> Result<Vec<Attachment>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    match state.store.claim_uploads(owner_kind(ident), &ident.id, conv, client_id, ids).await? {
        Some(ups) => Ok(ups.iter().map(Upload::to_attachment).collect()),
        None => Err(GatewayError::not_found(
            "attachments: an upload does not exist, is not yours, or was already sent with another message",
        )),
    }
}

/// Who may read an upload: its uploader; once sent, whoever may read the
/// conversation (every agent, and that conversation's customer). Nobody
/// once its message is deleted.
pub fn may_read(ident: &Identity, u: &Upload) -> bool {
    if u.deleted_at.is_some() {
        return false;
    }
    if u.owner_kind == owner_kind(ident) && u.owner_id == ident.id {
        return true;
    }
    match (&u.conversation_id, ident.own_conversation()) {
        (None, _) => false,
        (Some(_), None) => true,
        (Some(c), Some(own)) => c == own,
    }
}

/// The thumbnail's content type (its key ends with what `images::verify` wrote).
pub fn thumbnail_type(u: &Upload) -> &'static str {
    match u.thumb_key.as_deref() {
        Some(k) if k.ends_with(".png") => "image/png",
        _ => "image/jpeg",
    }
}

/// The bytes of the file (`thumbnail`: of its thumbnail).
pub async fn open(state: &AppState, u: &Upload, thumbnail: bool) -> Result<(u64, BoxStream<'static, std::io::Result<Bytes>>)> {
    let key = if thumbnail { u.thumb_key.as_deref().ok_or_else(|| GatewayError::not_found("this file has no thumbnail"))? } else { &u.blob_key };
    match state.blobs.get(key).await {
        Ok((n, s)) => Ok((n, s)),
        Err(blobs::BlobError::NotFound) => Err(GatewayError::not_found("no such attachment")),
        Err(e) => Err(internal("reading the upload", e)),
    }
}

async fn remove_blobs(state: &AppState, u: &Upload) {
    for key in std::iter::once(&u.blob_key).chain(u.thumb_key.as_ref()) {
        if let Err(e) = state.blobs.delete(key).await {
            tracing::warn!(error = %e, key, "could not delete a blob");
        }
    }
}

/// Removes (blobs, then row) the uploads never sent within
/// `CHAT_UPLOAD_UNUSED_SECS` and those whose message was deleted; returns
/// how many. Safe on several gateways at once (deletes are idempotent).
pub async fn sweep_once(state: &AppState) -> Result<usize> {
    let window = (state.cfg.upload_unused_secs * 1000) as i64;
    let rows = state.store.sweepable_uploads(schema::now_ms() - window, window, 200).await?;
    for u in &rows {
        remove_blobs(state, u).await;
        state.store.delete_upload(&u.id).await?;
        let why = if u.deleted_at.is_some() { "deleted" } else { "unused" };
        metrics::counter!(UPLOADS_SWEPT, "why" => why).increment(1);
    }
    Ok(rows.len())
}

/// Sweeps every `CHAT_UPLOAD_SWEEP_SECS` until shutdown.
pub async fn sweep_loop(state: AppState) {
    let mut stop = state.shutdown.clone();
    let every = std::time::Duration::from_secs(state.cfg.upload_sweep_secs.max(1));
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => return,
        }
        loop {
            match sweep_once(&state).await {
                // A full page: there may be more.
                Ok(200) => continue,
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "upload sweep failed");
                    break;
                }
            }
        }
    }
}
