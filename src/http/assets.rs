//! `/assets/...`: kernel, initrd and loaders from the images directory,
//! with Range, Content-Length, Last-Modified and ETag (tower-http's
//! ServeDir, plus an ETag from size and mtime). Never a directory listing,
//! never a file outside the directory: `..` is refused by ServeDir, and a
//! symlink that leads out is refused here. Whole files of 1 MiB or more
//! (kernels, initrds) are served from one shared copy in memory: a boot
//! storm asks for the same kernel and initrd hundreds of times at once,
//! and the copy saves a read per request and per chunk. The copies are the
//! TFTP server's ([`crate::files::Files`]), so a file fetched both
//! ways is held once; where they are full, the file is served from disk.

use std::time::UNIX_EPOCH;

use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tower::ServiceExt as _;
use tower_http::services::ServeDir;

use super::AppState;
use super::timeline::Refused;
use crate::boot::fixes;

/// Files at least this big are served from memory; smaller ones (loaders,
/// scripts) go through ServeDir.
const MIN_CACHED: u64 = 1 << 20;

/// Bytes read from a file per write to the socket: large, because kernels
/// and initrds are tens of MiB and every chunk costs a read, a write and a
/// wake-up (64 KiB chunks halved the throughput of a boot storm; 4 MiB
/// did no better than 1 MiB and holds four times the memory per request).
const CHUNK: usize = 1 << 20;

/// A validator that changes whenever the file does.
fn etag(meta: &std::fs::Metadata) -> String {
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    format!("\"{:x}-{:x}\"", meta.len(), mtime)
}

/// A 404 that tells the timeline what is missing and where it belongs.
fn not_found(s: &AppState, rel: &str, answer: &str) -> Response {
    let site = s.site();
    let stage = crate::boot::classify::tftp(rel, &site.names);
    let mut res = StatusCode::NOT_FOUND.into_response();
    res.extensions_mut().insert(Refused {
        answer: format!("{answer} (404)"),
        fix: Some(fixes::missing_file(stage, rel, &site.images)),
    });
    res
}

pub async fn serve(State(s): State<AppState>, Path(rel): Path<String>, req: Request) -> Response {
    let site = s.site();
    let root = &site.images;
    if rel.split('/').any(|c| c == "..") {
        return StatusCode::NOT_FOUND.into_response();
    }
    let target = match root.join(&rel).canonicalize() {
        Ok(t) if t.starts_with(root) => t,
        Ok(_) => {
            tracing::warn!(path = %rel, "asset refused: it leads outside the images directory");
            return StatusCode::NOT_FOUND.into_response();
        }
        Err(_) => return not_found(&s, &rel, "not found"),
    };
    let Ok(meta) = std::fs::metadata(&target) else {
        return not_found(&s, &rel, "not found");
    };
    if !meta.is_file() {
        return not_found(&s, &rel, "not a file");
    }
    let tag = etag(&meta);
    let matches = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == tag || t.trim() == "*"));
    if matches {
        let mut r = StatusCode::NOT_MODIFIED.into_response();
        if let Ok(v) = HeaderValue::from_str(&tag) {
            r.headers_mut().insert(header::ETAG, v);
        }
        return r;
    }
    // Whole big files come from memory (one shared copy for a boot storm).
    let whole =
        req.method() == axum::http::Method::GET && !req.headers().contains_key(header::RANGE);
    if whole && meta.len() >= MIN_CACHED {
        // The file may have changed since `meta`: only the same length is
        // served under this ETag (else disk, as for a refusal).
        let shared = s.files.open_path(&target).await.ok();
        if let Some(shared) = shared.filter(|f| f.as_ref().len() as u64 == meta.len()) {
            let mut r = axum::body::Bytes::from_owner(shared).into_response();
            let h = r.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
            if let Ok(v) = HeaderValue::from_str(&tag) {
                h.insert(header::ETAG, v);
            }
            return r;
        }
    }
    // ServeDir sees the path below /assets.
    let (mut parts, body) = req.into_parts();
    let query = parts
        .uri
        .query()
        .map(|q| format!("?{q}"))
        .unwrap_or_default();
    parts.uri = match format!("/{rel}{query}").parse() {
        Ok(u) => u,
        Err(_) => return StatusCode::BAD_REQUEST.into_response(),
    };
    let dir = ServeDir::new(root)
        .append_index_html_on_directories(false)
        .with_buf_chunk_size(CHUNK);
    let mut res = match dir.oneshot(Request::from_parts(parts, body)).await {
        Ok(r) => r.into_response(),
        Err(e) => match e {},
    };
    if res.status().is_success() {
        if let Ok(v) = HeaderValue::from_str(&tag) {
            res.headers_mut().insert(header::ETAG, v);
        }
    }
    res
}
