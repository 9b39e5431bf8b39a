//! `/oauth/authorize`: the browser's part. `GET` checks the request and shows the consent page
//! to a signed-in user (anyone else is sent to sign in first and comes back); `POST` takes the
//! user's decision and sends the browser back to the client with a code (or `access_denied`).
//!
//! Until the client and its redirect URI are known good, every refusal is a page shown here:
//! redirecting to an unchecked URI would make this an open redirector. After that, refusals go
//! back to the client as RFC 6749 §4.1.2.1 errors, with `state` and `iss` (RFC 9207).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode, Uri, header};
use serde::{Deserialize, Serialize};

use super::form::Params;
use super::page::{self, Consent};
use super::{CODE_PREFIX, CODE_TTL, CONSENT_TTL, SCOPE_MCP, new_secret, parse_scope};
use crate::ApiState;
use crate::rbac::{Permission, allows};
use crate::routes::audit;
use crate::session::{Caller, Via, token_hash};

/// The checked authorization request, sealed into the consent form so `POST` acts on exactly
/// what was shown, for the session that was shown it.
#[derive(Debug, Serialize, Deserialize)]
struct Pending {
    client_id: String,
    client_name: String,
    redirect_uri: String,
    state: Option<String>,
    scope: String,
    code_challenge: String,
    user_id: i64,
    session_hash: String,
    /// Unix seconds.
    expires: i64,
}

/// Where the browser goes back to, once the redirect URI is known to be the client's.
struct Back<'a> {
    redirect_uri: &'a str,
    state: Option<&'a str>,
    issuer: &'a str,
    status: StatusCode,
}

impl Back<'_> {
    fn with(&self, pairs: &[(&str, &str)]) -> Response {
        let Ok(mut url) = url::Url::parse(self.redirect_uri) else {
            return page::error(StatusCode::BAD_REQUEST, "the redirect URI is not a URL");
        };
        {
            let mut query = url.query_pairs_mut();
            for (k, v) in pairs {
                query.append_pair(k, v);
            }
            if let Some(state) = self.state {
                query.append_pair("state", state);
            }
            query.append_pair("iss", self.issuer);
        }
        let mut response = (self.status, [(header::LOCATION, url.as_str())]).into_response();
        response.headers_mut().insert(
            header::REFERRER_POLICY,
            http::HeaderValue::from_static("no-referrer"),
        );
        response
    }

    fn error(&self, code: &str, description: &str) -> Response {
        self.with(&[("error", code), ("error_description", description)])
    }
}

/// The caller if they are signed in with a browser session (not a token) as themselves; the
/// error is why the page refuses.
async fn browser_user(
    state: &ApiState,
    headers: &HeaderMap,
) -> Result<Option<Caller>, &'static str> {
    let caller = match crate::session::caller(state, headers).await {
        Ok(Some(caller)) => caller,
        Ok(None) => return Ok(None),
        Err(_) => return Err("the store cannot be read; try again"),
    };
    if !matches!(caller.via, Via::Session { .. }) {
        return Err("authorization is given in a browser session, not with a token");
    }
    if caller.real.is_some() {
        return Err("not while impersonating: stop impersonating first");
    }
    Ok(Some(caller))
}

fn unix_now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// `GET /oauth/authorize`.
pub(super) async fn request(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let query = uri.query().unwrap_or("");
    // Signed in first: an anonymous request never makes the gateway fetch a client document.
    let caller = match browser_user(&state, &headers).await {
        Ok(Some(caller)) => caller,
        Ok(None) => {
            let back_here = format!("/oauth/authorize?{query}");
            if !crate::signin::local_path(&back_here) {
                return page::error(
                    StatusCode::BAD_REQUEST,
                    "the authorization request is too long",
                );
            }
            let login: String = url::form_urlencoded::Serializer::new(String::new())
                .append_pair("return_to", &back_here)
                .finish();
            return (
                StatusCode::FOUND,
                [(header::LOCATION, format!("/api/auth/login?{login}"))],
            )
                .into_response();
        }
        Err(why) => return page::error(StatusCode::FORBIDDEN, why),
    };
    let params = match Params::parse(query.as_bytes()) {
        Ok(p) => p,
        Err(why) => return page::error(StatusCode::BAD_REQUEST, &why),
    };
    let client_id = match params.require("client_id") {
        Ok(id) => id,
        Err(why) => return page::error(StatusCode::BAD_REQUEST, &why),
    };
    let client = match state.oauth.clients.find(&state.store, client_id).await {
        Ok(client) => client,
        Err(e) => {
            tracing::info!(client_id = ?client_id, error = %e, "authorization refused: client");
            return page::error(StatusCode::BAD_REQUEST, &e.to_string());
        }
    };
    let redirect_uri = match params.get("redirect_uri") {
        Some(uri) if client.redirect_uris.iter().any(|r| r == uri) => uri.to_owned(),
        None if client.redirect_uris.len() == 1 => client.redirect_uris[0].clone(),
        _ => {
            return page::error(
                StatusCode::BAD_REQUEST,
                "the redirect URI is not one the client registered",
            );
        }
    };
    let back = Back {
        redirect_uri: &redirect_uri,
        state: params.get("state"),
        issuer: &state.oauth.issuer,
        status: StatusCode::FOUND,
    };
    if params.get("response_type") != Some("code") {
        return back.error("unsupported_response_type", "only response_type=code");
    }
    let challenge = params.get("code_challenge").filter(|c| pkce_shaped(c));
    let (Some(challenge), Some("S256")) = (challenge, params.get("code_challenge_method")) else {
        return back.error(
            "invalid_request",
            "PKCE with code_challenge_method=S256 is required",
        );
    };
    if params
        .get("resource")
        .is_some_and(|r| r != state.oauth.resource)
    {
        return back.error(
            "invalid_target",
            "tokens are issued only for this gateway's /mcp",
        );
    }
    let scopes = match parse_scope(params.get("scope").unwrap_or(SCOPE_MCP)) {
        Some(s) if s.is_empty() => vec![SCOPE_MCP],
        Some(s) => s,
        None => return back.error("invalid_scope", "scopes granted here: mcp, offline_access"),
    };
    if !allows(caller.role, Permission::UseProfiles) {
        return back.error("access_denied", "your role cannot use profiles");
    }
    let profiles = match state.store.list_profiles(caller.user.id).await {
        Ok(p) => p,
        Err(_) => return page::error(StatusCode::SERVICE_UNAVAILABLE, "the store cannot be read"),
    };
    if profiles.is_empty() {
        return page::no_profile(client.display_name());
    }
    let Via::Session { hash, csrf_token } = &caller.via else {
        return page::error(StatusCode::FORBIDDEN, "a browser session is required");
    };
    let pending = Pending {
        client_id: client.id.clone(),
        client_name: client.display_name().to_owned(),
        redirect_uri: redirect_uri.clone(),
        state: back.state.map(str::to_owned),
        scope: scopes.join(" "),
        code_challenge: challenge.to_owned(),
        user_id: caller.user.id,
        session_hash: hash.clone(),
        expires: unix_now() + CONSENT_TTL.as_secs() as i64,
    };
    let redirect_host = url::Url::parse(&redirect_uri)
        .ok()
        .map(|u| match u.host_str() {
            Some(host) => host.to_owned(),
            None => format!("{}:", u.scheme()),
        })
        .unwrap_or_default();
    let profiles: Vec<(i64, String)> = profiles.into_iter().map(|p| (p.id, p.name)).collect();
    let vouching_host = client.vouching_host();
    page::consent(&Consent {
        client_name: client.display_name(),
        client_id: &client.id,
        vouching_host: vouching_host.as_deref(),
        redirect_host: &redirect_host,
        scopes: &scopes,
        user: &crate::session::user_label(&caller.user),
        profiles: &profiles,
        sealed_request: &state.oauth.sealer.seal(&pending),
        csrf: csrf_token,
    })
}

/// RFC 7636 §4.2: 43 to 128 characters of `[A-Za-z0-9-._~]` (S256 gives exactly 43).
fn pkce_shaped(value: &str) -> bool {
    (43..=128).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// `POST /oauth/authorize`: the consent form's answer.
pub(super) async fn decide(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let refused = |why: &str| page::error(StatusCode::FORBIDDEN, why);
    // A form posted from another site carries its Origin: refused before anything is read.
    let same_origin = headers
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|o| o == state.public_origin);
    if !same_origin {
        return refused("the form must be sent from this gateway's own page");
    }
    let caller = match browser_user(&state, &headers).await {
        Ok(Some(caller)) => caller,
        Ok(None) => {
            return refused("your session has ended: start the sign-in again from the client");
        }
        Err(why) => return refused(why),
    };
    let params = match Params::parse(&body) {
        Ok(p) => p,
        Err(why) => return page::error(StatusCode::BAD_REQUEST, &why),
    };
    let Via::Session { hash, csrf_token } = &caller.via else {
        return refused("a browser session is required");
    };
    let csrf_ok = params.get("csrf").is_some_and(|t| {
        bool::from(subtle::ConstantTimeEq::ct_eq(
            t.as_bytes(),
            csrf_token.as_bytes(),
        ))
    });
    let pending = params
        .get("request")
        .and_then(|r| state.oauth.sealer.open::<Pending>(r, 16 * 1024))
        .filter(|p| {
            p.expires > unix_now() && p.user_id == caller.user.id && &p.session_hash == hash
        });
    let (true, Some(pending)) = (csrf_ok, pending) else {
        return refused(
            "this consent form is not valid for your session (expired, or not yours): start again from the client",
        );
    };
    let back = Back {
        redirect_uri: &pending.redirect_uri,
        state: pending.state.as_deref(),
        issuer: &state.oauth.issuer,
        status: StatusCode::SEE_OTHER,
    };
    match params.get("decision") {
        Some("allow") => {}
        Some("deny") => return back.error("access_denied", "the user denied access"),
        _ => return page::error(StatusCode::BAD_REQUEST, "decision is allow or deny"),
    }
    let profile = match params.get("profile").and_then(|p| p.parse::<i64>().ok()) {
        Some(id) => state.store.get_profile(id).await.ok().flatten(),
        None => None,
    };
    let Some(profile) = profile.filter(|p| p.user_id == caller.user.id) else {
        return page::error(StatusCode::BAD_REQUEST, "choose one of your profiles");
    };
    let code = new_secret(CODE_PREFIX);
    let grant = state
        .store
        .create_oauth_grant(
            &gig_store::NewOAuthGrant {
                user_id: caller.user.id,
                profile_id: profile.id,
                client_id: &pending.client_id,
                client_name: &pending.client_name,
                resource: &state.oauth.resource,
                scope: &pending.scope,
            },
            &gig_store::NewOAuthToken {
                token_hash: &token_hash(&code),
                expires_at: time::OffsetDateTime::now_utc() + CODE_TTL,
            },
            &pending.code_challenge,
            &pending.redirect_uri,
        )
        .await;
    let grant = match grant {
        Ok(grant) => grant,
        Err(_) => {
            return page::error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the store cannot be written",
            );
        }
    };
    let detail = serde_json::json!({
        "grant": grant.id,
        "client": pending.client_id,
        "clientName": pending.client_name,
        "profile": profile.id,
        "scope": pending.scope,
        "redirectUri": pending.redirect_uri,
    });
    let target = format!("profile:{}", profile.id);
    if audit(&state, &caller.actor(), "oauth.grant", &target, detail)
        .await
        .is_err()
    {
        return page::error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the store cannot be written",
        );
    }
    back.with(&[("code", &code)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_challenges_have_the_rfc_shape() {
        assert!(pkce_shaped(&"a".repeat(43)));
        assert!(pkce_shaped("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"));
        assert!(!pkce_shaped(&"a".repeat(42)));
        assert!(!pkce_shaped(&"a".repeat(129)));
        assert!(!pkce_shaped(&format!("{}=", "a".repeat(43))));
    }
}
