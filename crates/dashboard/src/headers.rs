//! The headers every console response carries, and why.
//!
//! - `Content-Security-Policy`: scripts, styles, images and connections only from this origin;
//!   no inline script or style (so an injected `<script>` or `onclick=` never runs); forms post
//!   only here; the console is never framed (clickjacking) and `<base>` cannot be changed.
//! - `X-Content-Type-Options: nosniff`: a JSON or text answer is never run as a script.
//! - `Referrer-Policy: no-referrer`: links out never leak a console URL.
//! - `X-Frame-Options: DENY`: `frame-ancestors 'none'` for browsers that predate CSP 2.

use http::HeaderValue;
use http::header::{
    CONTENT_SECURITY_POLICY, HeaderMap, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};

/// The console's policy (tested: no `unsafe-*`, no other origin).
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; \
base-uri 'none'";

/// Adds the security headers to a console response.
pub fn secure(headers: &mut HeaderMap) {
    headers.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
}
