//! The built console (web/dist): `/` and client routes -> index.html,
//! `/widget` -> widget.html, assets with long-lived caching. Embedded in the
//! binary (rust-embed), so a gateway started from any directory serves it;
//! `CHAT_WEB_DIR` serves a folder instead.

use bytes::Bytes;
use hyper::{Response, StatusCode};
use schema::frames::ErrorCode;

use crate::error::{error_reply, full, Body};
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

/// The console as built into the binary (`web/dist` at build time; empty
/// when the web build had not run, which then serves the "not built yet" page).
#[derive(rust_embed::RustEmbed)]
#[folder = "../web/dist"]
#[allow_missing = true]
struct Console;

/// Where the console's files come from: the embedded copy, or `CHAT_WEB_DIR`.
enum Source<'a> {
    Embedded,
    Dir(&'a std::path::Path),
}

impl Source<'_> {
    async fn is_file(&self, rel: &str) -> bool {
        match self {
            Source::Embedded => Console::get(rel).is_some(),
            Source::Dir(d) => tokio::fs::metadata(d.join(rel)).await.map(|m| m.is_file()).unwrap_or(false),
        }
    }

    async fn read(&self, rel: &str) -> Option<Bytes> {
        match self {
            Source::Embedded => Console::get(rel).map(|f| match f.data {
                std::borrow::Cow::Borrowed(b) => Bytes::from_static(b),
                std::borrow::Cow::Owned(v) => Bytes::from(v),
            }),
            Source::Dir(d) => tokio::fs::read(d.join(rel)).await.ok().map(Bytes::from),
        }
    }
}

/// Serves the built console: `/` and client routes -> index.html,
/// `/widget` -> widget.html, files under web/dist as they are.
pub async fn static_file(state: &AppState, path: &str) -> Response<Body> {
    let rel = path.trim_start_matches('/');
    if rel.split('/').any(|s| s == ".." || s.starts_with('.')) || rel.contains('\\') {
        return error_reply(ErrorCode::NotFound, "not found");
    }
    let src = match &state.cfg.web_dir {
        Some(d) => Source::Dir(std::path::Path::new(d)),
        None => Source::Embedded,
    };
    let (file, cache) = match rel {
        "" | "index.html" => ("index.html", "no-cache"),
        "widget" | "widget/" | "widget.html" => ("widget.html", "no-cache"),
        r if r.starts_with("assets/") => (r, "public, max-age=31536000, immutable"),
        r => {
            if src.is_file(r).await {
                (r, "no-cache")
            } else if !r.contains('.') {
                ("index.html", "no-cache")
            } else {
                return error_reply(ErrorCode::NotFound, "not found");
            }
        }
    };
    match src.read(file).await {
        Some(bytes) => Response::builder()
            .header("content-type", content_type(file))
            .header("cache-control", cache)
            .header("x-content-type-options", "nosniff")
            .body(full(bytes))
            .unwrap_or_default(),
        None if rel.is_empty() || !rel.contains('.') => Response::builder()
            .status(StatusCode::OK)
            .header("content-type", "text/html; charset=utf-8")
            .body(full(Bytes::from_static(
                b"<!doctype html><title>Chat</title><p>The console is not built yet: run <code>scripts/web-build.sh</code>.</p>",
            )))
            .unwrap_or_default(),
        None => error_reply(ErrorCode::NotFound, "not found"),
    }
}
