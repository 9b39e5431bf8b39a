//! Sign-in and sign-out: the OIDC redirect, the callback that makes a session, logout, and
//! `/api/me` (which is also how a page learns its CSRF token).

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use gig_store::{NewSession, NewUser};
use http::{HeaderMap, StatusCode, header};
use serde::Deserialize;

use crate::ApiState;
use crate::error::ApiError;
use crate::extract::ApiQuery;
use crate::routes::{audit, redirect};
use crate::schema::{ErrorBody, Impersonation, Me, SignedOut, UserInfo};
use crate::session::{
    Caller, LOGIN_COOKIE, SESSION_COOKIE, SESSION_TTL, Via, cookie, random_token, set_cookie,
    token_hash, user_label,
};

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct LoginParams {
    /// A path on this gateway to return to once signed in (e.g. an OAuth authorization
    /// request); anything but a local path is ignored.
    return_to: Option<String>,
}

/// Starts a sign-in: a redirect to the identity provider.
#[utoipa::path(get, path = "/api/auth/login", tag = "session", params(LoginParams),
    responses((status = 302, description = "To the identity provider"), (status = 400, description = "Invalid request", body = ErrorBody)))]
pub(crate) async fn login(
    State(state): State<Arc<ApiState>>,
    ApiQuery(params): ApiQuery<LoginParams>,
) -> Response {
    let return_to = params.return_to.filter(|path| local_path(path));
    let (url, sealed) = state.oidc.begin(return_to);
    redirect(
        &url,
        &[set_cookie(&state, LOGIN_COOKIE, &sealed, "/api/auth", 600)],
    )
}

/// An authorization response (RFC 6749 §4.1.2, RFC 9207's `iss`): where an authorization
/// server sends a browser back, to sign-in here and to a connection (`connections.rs`).
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct CallbackParams {
    pub(crate) code: Option<String>,
    pub(crate) state: Option<String>,
    pub(crate) iss: Option<String>,
    pub(crate) error: Option<String>,
}

/// Where the identity provider sends the browser back: makes the session.
#[utoipa::path(get, path = "/api/auth/callback", tag = "session", params(CallbackParams),
    responses((status = 302, description = "Signed in: to the dashboard"), (status = 400, description = "Invalid request", body = ErrorBody)))]
pub(crate) async fn callback(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    ApiQuery(params): ApiQuery<CallbackParams>,
) -> Result<Response, ApiError> {
    let refused = |why: &str| ApiError::new(StatusCode::BAD_REQUEST, "sign_in_failed", why);
    if let Some(error) = &params.error {
        // Debug formatting: the value is the caller's, and must not forge log lines.
        let error: String = error.chars().take(200).collect();
        tracing::info!(error = ?error, "the identity provider refused a sign-in");
        return Err(refused("the identity provider refused the sign-in"));
    }
    let (Some(code), Some(oauth_state)) = (&params.code, &params.state) else {
        return Err(refused("the callback needs code and state"));
    };
    let browser = cookie(&headers, LOGIN_COOKIE)
        .ok_or_else(|| refused("no sign-in in progress in this browser"))?;
    let signed_in = state
        .oidc
        .finish(browser, oauth_state, code, params.iss.as_deref())
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "sign-in refused");
            refused("the sign-in could not be verified; start again at /api/auth/login")
        })?;
    let user = state
        .store
        .upsert_user(&NewUser {
            subject: &signed_in.identity,
            email: signed_in.email.as_deref(),
            display_name: signed_in.name.as_deref(),
        })
        .await?;
    state.store.set_only_role(user.id, signed_in.role).await?;
    // A session cookie the browser already had is ended: the new session replaces it.
    if let Some(old) = cookie(&headers, SESSION_COOKIE) {
        state.store.revoke_session(&token_hash(old)).await?;
    }
    let session = random_token();
    state
        .store
        .create_session(&NewSession {
            id_hash: &token_hash(&session),
            user_id: user.id,
            impersonating_user_id: None,
            expires_at: time::OffsetDateTime::now_utc() + SESSION_TTL,
        })
        .await?;
    audit(
        &state,
        &user_label(&user),
        "auth.login",
        &user_label(&user),
        serde_json::json!({"role": signed_in.role.as_str()}),
    )
    .await?;
    Ok(redirect(
        signed_in.return_to.as_deref().unwrap_or("/"),
        &[
            set_cookie(
                &state,
                SESSION_COOKIE,
                &session,
                "/",
                SESSION_TTL.whole_seconds(),
            ),
            set_cookie(&state, LOGIN_COOKIE, "", "/api/auth", 0),
        ],
    ))
}

/// Whether `path` is a path on this gateway and nothing else: one leading `/` (never `//`
/// or `/\`, which browsers read as another host), visible ASCII only, bounded (it rides in the
/// login cookie).
pub(crate) fn local_path(path: &str) -> bool {
    let bytes = path.as_bytes();
    bytes.first() == Some(&b'/')
        && !matches!(bytes.get(1), Some(b'/' | b'\\'))
        && path.len() <= 1500
        && bytes.iter().all(|b| b.is_ascii_graphic())
}

/// Ends the session (and names the identity provider's logout page).
#[utoipa::path(post, path = "/api/auth/logout", tag = "session",
    responses((status = 200, body = SignedOut), (status = 400, description = "Invalid request", body = ErrorBody), (status = 401, description = "Not signed in", body = ErrorBody), (status = 403, description = "The role does not allow it, or CSRF failed", body = ErrorBody)))]
pub(crate) async fn logout(
    State(state): State<Arc<ApiState>>,
    Extension(caller): Extension<Caller>,
) -> Result<Response, ApiError> {
    let Some(hash) = caller.session_hash() else {
        return Err(ApiError::bad_request(
            "an API token has no session to end: revoke it instead",
        ));
    };
    state.store.revoke_session(hash).await?;
    audit(
        &state,
        &caller.actor(),
        "auth.logout",
        &user_label(&caller.user),
        serde_json::json!({}),
    )
    .await?;
    let mut response = Json(SignedOut {
        signed_out: true,
        end_session_url: state.oidc.end_session_url().map(str::to_owned),
    })
    .into_response();
    if let Ok(value) = set_cookie(&state, SESSION_COOKIE, "", "/", 0).parse() {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    Ok(response)
}

/// The caller, their role, the impersonation state and the CSRF token.
#[utoipa::path(get, path = "/api/me", tag = "session",
    responses((status = 200, body = Me), (status = 401, description = "Not signed in", body = ErrorBody)))]
pub(crate) async fn me(Extension(caller): Extension<Caller>) -> Json<Me> {
    Json(Me {
        user: UserInfo::of(&caller.user, None),
        role: caller.role.as_str().to_owned(),
        impersonating: caller.real.as_ref().map(|real| Impersonation {
            real_user: UserInfo::of(real, None),
        }),
        csrf_token: match &caller.via {
            Via::Session { csrf_token, .. } => Some(csrf_token.clone()),
            Via::ApiToken { .. } => None,
        },
    })
}
