//! The embedded assets, each served under a name that carries a hash of its content
//! (`core.3f2a….js`): a changed file gets a new URL, so every asset can be cached for a year
//! and marked immutable; the `ETag` is the same hash.

use std::sync::OnceLock;

use axum::extract::Path;
use axum::response::{IntoResponse, Response};
use http::header::{CACHE_CONTROL, CONTENT_TYPE, ETAG, HeaderMap, IF_NONE_MATCH};
use http::{HeaderValue, StatusCode};
use sha2::{Digest, Sha256};

use crate::headers::secure;

/// One embedded file.
#[derive(Debug)]
pub struct Asset {
    /// The source name (`core.js`).
    pub name: &'static str,
    pub content_type: &'static str,
    pub bytes: &'static [u8],
}

macro_rules! asset {
    ($name:literal, $type:expr) => {
        Asset {
            name: $name,
            content_type: $type,
            bytes: include_bytes!(concat!("../assets/", $name)),
        }
    };
}

const JS: &str = "text/javascript; charset=utf-8";

/// Every file the pages load.
pub static ASSETS: &[Asset] = &[
    asset!("style.css", "text/css; charset=utf-8"),
    asset!("icon.svg", "image/svg+xml"),
    asset!("core.js", JS),
    asset!("charts.js", JS),
    asset!("overview.js", JS),
    asset!("catalog.js", JS),
    asset!("servers.js", JS),
    asset!("server.js", JS),
    asset!("credentials.js", JS),
    asset!("profiles.js", JS),
    asset!("users.js", JS),
    asset!("audit.js", JS),
];

/// An asset with its content-addressed URL.
#[derive(Debug)]
pub struct Hashed {
    pub asset: &'static Asset,
    /// First 16 hex digits of the SHA-256 of the bytes.
    pub hash: String,
    /// `/assets/core.<hash>.js`.
    pub url: String,
}

fn hashed() -> &'static [Hashed] {
    static ALL: OnceLock<Vec<Hashed>> = OnceLock::new();
    ALL.get_or_init(|| {
        ASSETS
            .iter()
            .map(|asset| {
                let hash = hex::encode(&Sha256::digest(asset.bytes)[..8]);
                let (stem, ext) = asset.name.rsplit_once('.').unwrap_or((asset.name, ""));
                let url = format!("/assets/{stem}.{hash}.{ext}");
                Hashed { asset, hash, url }
            })
            .collect()
    })
}

/// The URL of the asset named `name` (`core.js`). Panics on a name not in [`ASSETS`], which
/// the page table's test rules out.
pub fn url(name: &str) -> &'static str {
    match hashed().iter().find(|h| h.asset.name == name) {
        Some(h) => &h.url,
        None => panic!("no embedded asset {name}"),
    }
}

/// `GET /assets/{file}`: only the current content-addressed names; 304 on a matching
/// `If-None-Match`.
pub async fn serve(Path(file): Path<String>, request: HeaderMap) -> Response {
    let wanted = format!("/assets/{file}");
    let Some(found) = hashed().iter().find(|h| h.url == wanted) else {
        let mut response = (StatusCode::NOT_FOUND, "no such asset").into_response();
        secure(response.headers_mut());
        return response;
    };
    let etag = format!("\"{}\"", found.hash);
    let fresh = request
        .get(IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        found.asset.bytes.into_response()
    };
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static(found.asset.content_type),
    );
    headers.insert(
        CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    if let Ok(value) = HeaderValue::from_str(&etag) {
        headers.insert(ETAG, value);
    }
    secure(headers);
    response
}
