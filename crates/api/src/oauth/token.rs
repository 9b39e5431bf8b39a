//! `/oauth/token` (authorization code with PKCE, refresh with rotation) and `/oauth/revoke`
//! (RFC 7009). A code or refresh token is bound to the client it was issued to; each is spent
//! once, and one presented again revokes its grant with every token under it (someone else has
//! a copy). Every failure is an RFC 6749 §5.2 error that tells nothing about whose token it was.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use gig_store::{Exchange, NewOAuthToken, OAuthGrant, OAuthToken, OAuthTokenKind};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde_json::json;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::clients::ClientKind;
use super::form::Params;
use super::{ACCESS_PREFIX, REFRESH_PREFIX, new_secret, parse_scope};
use crate::ApiState;
use crate::routes::audit;
use crate::session::token_hash;

/// An RFC 6749 §5.2 error.
#[derive(Debug)]
pub(super) struct TokenError {
    code: &'static str,
    description: String,
    /// The client tried HTTP Basic: a 401 names the scheme back.
    basic: bool,
}

fn fail(code: &'static str, description: impl Into<String>) -> TokenError {
    TokenError {
        code,
        description: description.into(),
        basic: false,
    }
}

impl IntoResponse for TokenError {
    fn into_response(self) -> Response {
        let status = if self.code == "invalid_client" {
            StatusCode::UNAUTHORIZED
        } else if self.code == "server_error" {
            StatusCode::SERVICE_UNAVAILABLE
        } else {
            StatusCode::BAD_REQUEST
        };
        let mut response = (
            status,
            Json(json!({"error": self.code, "error_description": self.description})),
        )
            .into_response();
        no_store(response.headers_mut());
        if self.basic && status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(r#"Basic realm="gigmcp-oauth""#),
            );
        }
        response
    }
}

fn no_store(headers: &mut HeaderMap) {
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
}

impl From<gig_store::StoreError> for TokenError {
    fn from(e: gig_store::StoreError) -> Self {
        tracing::error!(error = %e, "OAuth token endpoint: store error");
        fail("server_error", "the store cannot be used; try again")
    }
}

/// `client_id` and `client_secret` from HTTP Basic (RFC 6749 §2.3.1: each form-urlencoded)
/// or from the body; never both ways at once.
fn client_credentials(
    headers: &HeaderMap,
    params: &Params,
) -> Result<(String, Option<String>, bool), TokenError> {
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "));
    let Some(basic) = basic else {
        let id = params
            .require("client_id")
            .map_err(|why| fail("invalid_client", why))?;
        return Ok((
            id.to_owned(),
            params.get("client_secret").map(str::to_owned),
            false,
        ));
    };
    let invalid = || TokenError {
        basic: true,
        ..fail("invalid_client", "malformed Basic credentials")
    };
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(basic.trim())
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(invalid)?;
    let (id, secret) = decoded.split_once(':').ok_or_else(invalid)?;
    let decode = |s: &str| {
        url::form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
    };
    let (id, secret) = (
        decode(id).ok_or_else(invalid)?,
        decode(secret).ok_or_else(invalid)?,
    );
    if params.get("client_secret").is_some() || params.get("client_id").is_some_and(|b| b != id) {
        return Err(fail(
            "invalid_request",
            "client credentials are given one way only",
        ));
    }
    Ok((id, Some(secret), true))
}

/// The authenticated client's id: a metadata-document client or a public registered one
/// presents no secret; a confidential one its secret.
async fn authenticate_client(
    state: &ApiState,
    headers: &HeaderMap,
    params: &Params,
) -> Result<String, TokenError> {
    let (id, secret, basic) = client_credentials(headers, params)?;
    let refused = || TokenError {
        basic,
        ..fail("invalid_client", "client authentication failed")
    };
    if id.starts_with("https://") {
        // Metadata-document clients are public: nothing to check but that none claims more.
        return if secret.is_none() {
            Ok(id)
        } else {
            Err(refused())
        };
    }
    let client = state
        .oauth
        .clients
        .find(&state.store, &id)
        .await
        .map_err(|_| refused())?;
    let ClientKind::Registered { secret_hash } = &client.kind else {
        return Err(refused());
    };
    match (secret_hash, secret) {
        (None, None) => Ok(id),
        (Some(expected), Some(given))
            if bool::from(token_hash(&given).as_bytes().ct_eq(expected.as_bytes())) =>
        {
            Ok(id)
        }
        _ => Err(refused()),
    }
}

/// `POST /oauth/token`.
pub(super) async fn token(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, TokenError> {
    let params = Params::parse(&body).map_err(|why| fail("invalid_request", why))?;
    let client_id = authenticate_client(&state, &headers, &params).await?;
    let (field, kind) = match params
        .require("grant_type")
        .map_err(|w| fail("invalid_request", w))?
    {
        "authorization_code" => ("code", OAuthTokenKind::Code),
        "refresh_token" => ("refresh_token", OAuthTokenKind::Refresh),
        _ => {
            return Err(fail(
                "unsupported_grant_type",
                "authorization_code or refresh_token",
            ));
        }
    };
    let presented = params
        .require(field)
        .map_err(|w| fail("invalid_request", w))?;
    if kind == OAuthTokenKind::Code && params.get("code_verifier").is_none() {
        return Err(fail("invalid_request", "code_verifier is required"));
    }
    // One transaction spends what was presented, judges it, and either issues the new pair
    // or (judged wrong) ends the grant: a stolen code or refresh token gets one try.
    let judge = |spent: &OAuthToken, grant: &OAuthGrant| {
        if grant.client_id != client_id {
            return Err(fail(
                "invalid_grant",
                "the code or refresh token was issued to another client",
            ));
        }
        match kind {
            OAuthTokenKind::Code => check_code(&params, spent)?,
            _ => check_refresh(&params, grant)?,
        }
        match params.get("resource") {
            Some(r) if r != grant.resource => {
                Err(fail("invalid_target", "the grant is for another resource"))
            }
            _ => Ok(()),
        }
    };
    let now = time::OffsetDateTime::now_utc();
    let (access, refresh) = (new_secret(ACCESS_PREFIX), new_secret(REFRESH_PREFIX));
    let exchanged = state
        .store
        .exchange_oauth_token(
            &token_hash(presented),
            kind,
            judge,
            &NewOAuthToken {
                token_hash: &token_hash(&access),
                expires_at: now + state.oauth.access_ttl,
            },
            &NewOAuthToken {
                token_hash: &token_hash(&refresh),
                expires_at: now + state.oauth.refresh_ttl,
            },
        )
        .await?;
    let invalid = || {
        fail(
            "invalid_grant",
            "the code or refresh token is invalid, expired or spent",
        )
    };
    let grant = match exchanged {
        Exchange::Issued(grant) => grant,
        Exchange::Invalid => return Err(invalid()),
        Exchange::Refused { grant_id, why } => {
            tracing::warn!(grant = grant_id, ?kind, reason = %why.description, "OAuth exchange refused: grant revoked");
            let detail = json!({"grant": grant_id, "reason": why.description});
            grant_ended(&state, &client_id, "oauth.refused", grant_id, detail).await?;
            return Err(why);
        }
        Exchange::Replayed { grant_id } => {
            tracing::warn!(
                grant = grant_id,
                ?kind,
                "spent OAuth code or refresh token presented again: grant revoked"
            );
            let detail = json!({"grant": grant_id, "kind": format!("{kind:?}").to_lowercase()});
            grant_ended(&state, &client_id, "oauth.replay", grant_id, detail).await?;
            return Err(invalid());
        }
    };
    let mut response = Json(json!({
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": state.oauth.access_ttl.as_secs(),
        "refresh_token": refresh,
        "scope": grant.scope,
    }))
    .into_response();
    no_store(response.headers_mut());
    Ok(response)
}

/// An audit row for a grant the token endpoint ended (a replay, a failed check).
async fn grant_ended(
    state: &ApiState,
    client_id: &str,
    action: &str,
    grant_id: i64,
    detail: serde_json::Value,
) -> Result<(), TokenError> {
    audit(
        state,
        &format!("client:{client_id}"),
        action,
        &format!("grant:{grant_id}"),
        detail,
    )
    .await
    .map_err(|_| fail("server_error", "the store cannot be written"))
}

/// The exchange matches the authorization request: same redirect URI (when given) and the
/// verifier whose S256 is the challenge.
fn check_code(params: &Params, code: &OAuthToken) -> Result<(), TokenError> {
    let mismatch = |what: &str| {
        fail(
            "invalid_grant",
            format!("{what} does not match the authorization request"),
        )
    };
    if params
        .get("redirect_uri")
        .is_some_and(|r| Some(r) != code.redirect_uri.as_deref())
    {
        return Err(mismatch("redirect_uri"));
    }
    let verifier = params.get("code_verifier").unwrap_or_default();
    let computed = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(Sha256::digest(verifier.as_bytes()));
    let expected = code.code_challenge.as_deref().unwrap_or_default();
    if !bool::from(computed.as_bytes().ct_eq(expected.as_bytes())) {
        return Err(mismatch("code_verifier"));
    }
    Ok(())
}

/// A refresh keeps the grant's scope: a `scope` parameter, when given, must name exactly it
/// (a narrower token per refresh is not offered, so it is refused rather than ignored).
fn check_refresh(params: &Params, grant: &OAuthGrant) -> Result<(), TokenError> {
    if let Some(asked) = params.get("scope") {
        let mut granted: Vec<&str> = grant.scope.split(' ').collect();
        let mut asked = parse_scope(asked).unwrap_or_default();
        granted.sort_unstable();
        asked.sort_unstable();
        if asked != granted {
            return Err(fail(
                "invalid_scope",
                "a refresh keeps the grant's scope; ask for it unchanged or omit scope",
            ));
        }
    }
    Ok(())
}

/// `POST /oauth/revoke`: the client's own access or refresh token (a refresh token takes its
/// whole grant with it). Unknown and other clients' tokens are answered the same, 200.
pub(super) async fn revoke(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, TokenError> {
    let params = Params::parse(&body).map_err(|why| fail("invalid_request", why))?;
    let client_id = authenticate_client(&state, &headers, &params).await?;
    let presented = params
        .require("token")
        .map_err(|w| fail("invalid_request", w))?;
    let hash = token_hash(presented);
    if let Some((token, owner)) = state.store.find_oauth_token(&hash).await?
        && owner == client_id
    {
        match token.kind {
            OAuthTokenKind::Access => state.store.delete_oauth_token(&hash).await?,
            OAuthTokenKind::Refresh | OAuthTokenKind::Code => {
                state.store.revoke_oauth_grant(token.grant_id, None).await?;
            }
        }
        tracing::info!(grant = token.grant_id, kind = ?token.kind, "OAuth token revoked by its client");
    }
    let mut response = StatusCode::OK.into_response();
    no_store(response.headers_mut());
    Ok(response)
}
