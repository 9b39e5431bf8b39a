//! The console's promises, checked on what it actually serves.

use axum::body::Body;
use http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use tower::ServiceExt;

use crate::assets::{ASSETS, url};
use crate::headers::CSP;
use crate::pages::{PAGES, SERVER, render};

async fn get(path: &str, headers: &[(&str, &str)]) -> (StatusCode, http::HeaderMap, String) {
    let mut request = Request::get(path);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let response = crate::router()
        .oneshot(request.body(Body::empty()).expect("request"))
        .await
        .expect("response");
    let status = response.status();
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

fn assert_secure(headers: &http::HeaderMap, path: &str) {
    assert_eq!(headers[header::CONTENT_SECURITY_POLICY], CSP, "{path}");
    assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff", "{path}");
    assert_eq!(headers[header::REFERRER_POLICY], "no-referrer", "{path}");
}

#[test]
fn the_policy_allows_nothing_inline_and_no_other_origin() {
    for needed in [
        "default-src 'none'",
        "script-src 'self';",
        "style-src 'self';",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "connect-src 'self'",
    ] {
        assert!(CSP.contains(needed), "{needed}");
    }
    for banned in ["unsafe", "http:", "https:", "*", "blob:"] {
        assert!(!CSP.contains(banned), "{banned}");
    }
}

#[tokio::test]
async fn every_page_is_served_with_the_security_headers() {
    for path in PAGES
        .iter()
        .map(|p| p.path)
        .chain(["/servers/echo", "/servers/a.b-c_d"])
    {
        let (status, headers, body) = get(path, &[]).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert!(
            headers[header::CONTENT_TYPE]
                .to_str()
                .unwrap_or("")
                .starts_with("text/html"),
            "{path}"
        );
        assert_secure(&headers, path);
        assert!(body.starts_with("<!doctype html>"), "{path}");
    }
}

#[tokio::test]
async fn a_server_name_the_gateway_would_refuse_is_not_a_page() {
    for path in [
        "/servers/.hidden",
        "/servers/a%20b",
        "/servers/%3Cscript%3E",
    ] {
        let (status, headers, _) = get(path, &[]).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        assert_secure(&headers, path);
    }
}

/// No inline script, no inline style, no event-handler attribute, no other origin: the CSP
/// would block them, so a page that had one would be broken, not insecure — this keeps it
/// from being either.
#[test]
fn pages_have_no_inline_code_and_load_only_our_assets() {
    for page in PAGES.iter().chain(std::iter::once(&SERVER)) {
        let html = render(page);
        let lower = html.to_ascii_lowercase();
        assert!(
            !lower.contains("style="),
            "{} has a style attribute",
            page.path
        );
        assert!(
            !lower.contains("<style"),
            "{} has a style element",
            page.path
        );
        assert!(!lower.contains("javascript:"), "{}", page.path);
        for (i, _) in lower.match_indices("<script") {
            let tag = &lower[i..i + lower[i..].find('>').unwrap_or(0)];
            assert!(
                tag.contains("src=\"/assets/"),
                "{}: inline {tag}",
                page.path
            );
        }
        for word in lower.split(|c: char| c.is_whitespace() || c == '<') {
            assert!(
                !(word.starts_with("on") && word.contains("=\"")),
                "{}: event handler {word}",
                page.path
            );
        }
        assert!(
            !lower.contains("http://") && !lower.contains("https://"),
            "{}",
            page.path
        );
        assert!(!lower.contains("{{"), "{}: unfilled placeholder", page.path);
        assert!(
            lower.contains("<main") && lower.contains("lang=\"en\""),
            "{}",
            page.path
        );
    }
}

#[test]
fn scripts_never_write_html_or_evaluate_strings() {
    for asset in ASSETS.iter().filter(|a| a.name.ends_with(".js")) {
        // The SVG namespace is a name, not a request.
        let text = std::str::from_utf8(asset.bytes)
            .expect("utf-8")
            .replace("'http://www.w3.org/2000/svg'", "");
        for banned in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
            "new Function",
            "setAttribute('style'",
            "http://",
            "https://",
        ] {
            assert!(!text.contains(banned), "{} uses {banned}", asset.name);
        }
    }
}

#[tokio::test]
async fn assets_are_content_addressed_and_cached_for_a_year() {
    for asset in ASSETS {
        let path = url(asset.name);
        let (status, headers, body) = get(path, &[]).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert_eq!(body.as_bytes(), asset.bytes, "{path}");
        assert_eq!(headers[header::CONTENT_TYPE], asset.content_type);
        assert_eq!(
            headers[header::CACHE_CONTROL],
            "public, max-age=31536000, immutable"
        );
        assert_secure(&headers, path);
        let etag = headers[header::ETAG].to_str().expect("etag").to_owned();
        assert!(path.contains(etag.trim_matches('"')), "{path} {etag}");
        let (status, _, body) = get(path, &[("if-none-match", &etag)]).await;
        assert_eq!(status, StatusCode::NOT_MODIFIED, "{path}");
        assert!(body.is_empty());
    }
    for stale in [
        "/assets/core.js",
        "/assets/core.0000000000000000.js",
        "/assets/..%2Fsrc%2Flib.rs",
    ] {
        assert_eq!(get(stale, &[]).await.0, StatusCode::NOT_FOUND, "{stale}");
    }
}

#[test]
fn every_asset_is_used_by_some_page() {
    let all: String = PAGES
        .iter()
        .chain(std::iter::once(&SERVER))
        .map(render)
        .collect();
    for asset in ASSETS {
        assert!(
            all.contains(url(asset.name)),
            "{} is never loaded",
            asset.name
        );
    }
}
