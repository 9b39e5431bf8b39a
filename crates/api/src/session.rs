//! Who is calling `/api`: the `gig_session` cookie, looked up by its hash in the store. The
//! cookie is HttpOnly and SameSite=Lax (Secure behind https), a fresh random value at every
//! sign-in; the CSRF token is derived from it, so only a page that can ask `/api/me` — same
//! origin, with the cookie — ever learns it.

use gig_store::Role;
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

/// How the caller proved who they are.
#[derive(Debug, Clone)]
pub enum Via {
    /// The `gig_session` cookie: changes need CSRF.
    Session { hash: String, csrf_token: String },
    /// An API token in `Authorization: Bearer`: no cookie, so no CSRF.
    ApiToken { hash: String },
}

/// The caller of one `/api` request.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Whose permissions apply: the impersonated user while impersonating.
    pub user: User,
    pub role: Role,
    /// The administrator behind an impersonation, kept for audit; never adds a permission.
    pub real: Option<User>,
    pub via: Via,
}

impl Caller {
    /// New credentials (API tokens, profiles and their tokens) are made only by a person in a
    /// browser session, as themselves: not through a token (a stolen one would mint successors
    /// that outlive its revocation) and not while impersonating (they would outlive it and act
    /// as the target alone).
    pub fn may_mint_credentials(&self) -> Result<(), crate::error::ApiError> {
        if self.real.is_some() {
            return Err(crate::error::ApiError::new(
                http::StatusCode::FORBIDDEN,
                "forbidden",
                "not while impersonating: stop first",
            ));
        }
        match self.via {
            Via::Session { .. } => Ok(()),
            Via::ApiToken { .. } => Err(crate::error::ApiError::new(
                http::StatusCode::FORBIDDEN,
                "forbidden",
                "credentials are made from a signed-in session, not with a token",
            )),
        }
    }

    /// Who acted, for audit rows: both users while impersonating.
    pub fn actor(&self) -> String {
        match &self.real {
            Some(real) => format!("{} as {}", user_label(real), user_label(&self.user)),
            None => user_label(&self.user),
        }
    }

    pub fn session_hash(&self) -> Option<&str> {
        match &self.via {
            Via::Session { hash, .. } => Some(hash),
            Via::ApiToken { .. } => None,
        }
    }
}

/// `user:ID:EMAIL` (or `user:ID`): how users are named in audit rows.
pub fn user_label(user: &User) -> String {
    match &user.email {
        Some(email) => format!("user:{}:{email}", user.id),
        None => format!("user:{}", user.id),
    }
}

/// What an API token looks like; anything else is not looked up.
pub const API_TOKEN_PREFIX: &str = "giga_";

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

/// The user's role as stored (set at sign-in or by an admin); no role reads as the least.
pub(crate) async fn role_of(store: &gig_store::Store, user_id: i64) -> Result<Role, ApiError> {
    Ok(store
        .list_roles(user_id)
        .await?
        .into_iter()
        .max()
        .unwrap_or(Role::Viewer))
}

/// The caller: an API token in `Authorization: Bearer`, else a live session cookie.
pub async fn caller(state: &ApiState, headers: &HeaderMap) -> Result<Option<Caller>, ApiError> {
    if let Some(token) = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    {
        return api_token_caller(state, token.trim()).await;
    }
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
    let Some(real) = state.store.get_user(session.user_id).await? else {
        return Ok(None);
    };
    let (user, real) = match session.impersonating_user_id {
        None => (real, None),
        Some(target) => {
            // An administrator demoted while impersonating loses the impersonation at once and
            // is themself again: it never outlives the permission that started it.
            let real_role = role_of(&state.store, real.id).await?;
            if crate::rbac::allows(real_role, crate::rbac::Permission::Impersonate) {
                match state.store.get_user(target).await? {
                    Some(target) => (target, Some(real)),
                    None => return Ok(None),
                }
            } else {
                state.store.set_session_impersonation(&hash, None).await?;
                (real, None)
            }
        }
    };
    let role = role_of(&state.store, user.id).await?;
    let via = Via::Session {
        hash,
        csrf_token: csrf_for(token),
    };
    Ok(Some(Caller {
        user,
        role,
        real,
        via,
    }))
}

/// An API token acts as its owner with at most the role it was made with, and never more
/// than the owner holds now (a demoted user's tokens are demoted with them).
async fn api_token_caller(state: &ApiState, token: &str) -> Result<Option<Caller>, ApiError> {
    let well_formed = token
        .strip_prefix(API_TOKEN_PREFIX)
        .is_some_and(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()));
    if !well_formed {
        return Ok(None);
    }
    let hash = token_hash(token);
    let now = time::OffsetDateTime::now_utc();
    // Read first: a random well-formed token costs a read, never a write.
    let known = state.store.get_api_token(&hash).await?;
    if !known.is_some_and(|t| t.is_active(now)) {
        return Ok(None);
    }
    let Some(api_token) = state.store.touch_api_token(&hash, now).await? else {
        return Ok(None);
    };
    let Some(user) = state.store.get_user(api_token.user_id).await? else {
        return Ok(None);
    };
    let role = api_token.role.min(role_of(&state.store, user.id).await?);
    Ok(Some(Caller {
        user,
        role,
        real: None,
        via: Via::ApiToken { hash },
    }))
}

/// A change authenticated by the cookie must carry the session's CSRF token and come from
/// the gateway's own origin.
pub fn check_csrf(state: &ApiState, caller: &Caller, headers: &HeaderMap) -> Result<(), ApiError> {
    let Via::Session { csrf_token, .. } = &caller.via else {
        // A bearer token is not sent by browsers on their own: no cross-site request rides it.
        return Ok(());
    };
    let token_ok = headers
        .get("x-csrf-token")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| {
            bool::from(subtle::ConstantTimeEq::ct_eq(
                t.as_bytes(),
                csrf_token.as_bytes(),
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
