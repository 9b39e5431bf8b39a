//! Who is calling `/api`: the `gig_session` cookie, looked up by its hash in the store. The
//! cookie is HttpOnly and SameSite=Lax (Secure behind https), a fresh random value at every
//! sign-in; the CSRF token is derived from it, so only a page that can ask `/api/me` — same
//! origin, with the cookie — ever learns it.

use gig_config::Role;
use gig_store::User;
use http::HeaderMap;
use sha2::{Digest, Sha256};

use crate::ApiState;
use crate::error::ApiError;

pub const SESSION_COOKIE: &str = "gig_session";
/// Binds a pending sign-in to the browser that started it.
pub const LOGIN_COOKIE: &str = "gig_login";
/// How long a session lasts after sign-in.
pub const SESSION_TTL: time::Duration = time::Duration::hours(12);

/// The signed-in caller of one request.
#[derive(Debug, Clone)]
pub struct Caller {
    pub user: User,
    pub role: Role,
    /// Hash of the session cookie (the store's key for the session).
    pub session_hash: String,
    pub csrf_token: String,
}

/// 32 random bytes, hex: session cookies and login binders.
pub fn random_token() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

/// The store's key for a session or token: it never sees the raw value.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// The CSRF token of a session: derived, never stored.
pub fn csrf_for(session: &str) -> String {
    hex::encode(Sha256::digest(format!("gig-csrf:{session}").as_bytes()))
}

/// The value of cookie `name` (the first one; a duplicate is ignored).
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// `Set-Cookie` for `name=value` on `/` (or a narrower `path`).
pub fn set_cookie(
    state: &ApiState,
    name: &str,
    value: &str,
    path: &str,
    max_age_secs: i64,
) -> String {
    let secure = if state.secure_cookies { "; Secure" } else { "" };
    format!("{name}={value}; Path={path}; HttpOnly; SameSite=Lax; Max-Age={max_age_secs}{secure}")
}

/// The caller, if the request carries a live session cookie.
pub async fn caller(state: &ApiState, headers: &HeaderMap) -> Result<Option<Caller>, ApiError> {
    let Some(token) = cookie(headers, SESSION_COOKIE) else {
        return Ok(None);
    };
    // Anything but our own format is not a session: no store lookup for junk.
    if token.len() != 64 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(None);
    }
    let hash = token_hash(token);
    let Some(session) = state.store.get_session(&hash).await? else {
        return Ok(None);
    };
    if session.expires_at <= time::OffsetDateTime::now_utc() {
        return Ok(None);
    }
    let Some(user) = state.store.get_user(session.user_id).await? else {
        return Ok(None);
    };
    let role = state
        .store
        .list_roles(user.id)
        .await?
        .iter()
        .filter_map(|r| r.parse::<Role>().ok())
        .max()
        .unwrap_or(Role::Viewer);
    Ok(Some(Caller {
        user,
        role,
        session_hash: hash,
        csrf_token: csrf_for(token),
    }))
}

/// A change authenticated by the cookie must carry the session's CSRF token and come from
/// the gateway's own origin.
pub fn check_csrf(state: &ApiState, caller: &Caller, headers: &HeaderMap) -> Result<(), ApiError> {
    let token_ok = headers
        .get("x-csrf-token")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| {
            bool::from(subtle::ConstantTimeEq::ct_eq(
                t.as_bytes(),
                caller.csrf_token.as_bytes(),
            ))
        });
    let origin_ok = headers
        .get(http::header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|o| o == state.public_origin);
    if token_ok && origin_ok {
        Ok(())
    } else {
        Err(ApiError::new(
            http::StatusCode::FORBIDDEN,
            "csrf",
            "a change needs the X-CSRF-Token from /api/me and an Origin of this gateway",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_read_by_exact_name() {
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::COOKIE,
            "xgig_session=evil; gig_session=abc; other=1"
                .parse()
                .unwrap(),
        );
        assert_eq!(cookie(&headers, SESSION_COOKIE), Some("abc"));
        assert_eq!(cookie(&headers, "missing"), None);
    }

    #[test]
    fn csrf_tokens_differ_per_session_and_from_the_hash() {
        let (a, b) = (random_token(), random_token());
        assert_ne!(csrf_for(&a), csrf_for(&b));
        assert_ne!(csrf_for(&a), token_hash(&a));
    }
}
