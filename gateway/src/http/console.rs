//! The built console (web/dist): `/` and client routes -> index.html,
//! `/widget` -> widget.html, assets with long-lived caching.

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Response, StatusCode};
use schema::frames::ErrorCode;

use crate::error::{error_reply, Body};
use crate::state::AppState;

fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next().unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        "mp3" => "audio/mpeg",
        "wav" => "audio/wav",
        "webmanifest" => "application/manifest+json",
        _ => "application/octet-stream",
    }
}

/// Serves the built console: `/` and client routes -> index.html,
/// `/widget` -> widget.html, files under web/dist as they are.
pub async fn static_file(state: &AppState, path: &str) -> Response<Body> {
    let rel = path.trim_start_matches('/');
    if rel.split('/').any(|s| s == ".." || s.starts_with('.')) || rel.contains('\\') {
        return error_reply(ErrorCode::NotFound, "not found");
    }
    let dir = std::path::Path::new(&state.cfg.web_dir);
    let (file, cache) = match rel {
        "" | "index.html" => (dir.join("index.html"), "no-cache"),
        "widget" | "widget/" | "widget.html" => (dir.join("widget.html"), "no-cache"),
        r if r.starts_with("assets/") => (dir.join(r), "public, max-age=31536000, immutable"),
        r => {
            let f = dir.join(r);
            if tokio::fs::metadata(&f).await.map(|m| m.is_file()).unwrap_or(false) {
                (f, "no-cache")
            } else if !r.contains('.') {
                (dir.join("index.html"), "no-cache")
            } else {
                return error_reply(ErrorCode::NotFound, "not found");
            }
        }
    };
    match tokio::fs::read(&file).await {
        Ok(bytes) => Response::builder()
            .header("content-type", content_type(&file.to_string_lossy()))
            .header("cache-control", cache)
            .header("x-content-type-options", "nosniff")
            .body(Full::new(Bytes::from(bytes)))
            .unwrap_or_default(),
        Err(_) if rel.is_empty() || !rel.contains('.') => Response::builder()
            .status(StatusCode::OK)
            .header("content-type", "text/html; charset=utf-8")
            .body(Full::new(Bytes::from_static(
                b"<!doctype html><title>Chat</title><p>The console is not built yet: run <code>scripts/web-build.sh</code>.</p>",
            )))
            .unwrap_or_default(),
        Err(_) => error_reply(ErrorCode::NotFound, "not found"),
    }
}

