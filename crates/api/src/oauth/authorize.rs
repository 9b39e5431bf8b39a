//! `/oauth/authorize`: the browser's part. `GET` checks the request and shows the consent page
//! to a signed-in user (anyone else is sent to sign in first and comes back); `POST` takes the
//! user's decision and sends the browser back to the client with a code (or `access_denied`).
//!
//! Every refusal before the person has acted is a page shown here, never a redirect: anyone can
//! register a client with any redirect URI, so redirecting on a bad request would make the
//! gateway a redirector for any site. Only the person's own decision sends the browser back to
//! the client — a code, or `access_denied` — always with `state` and `iss` (RFC 9207).

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

/// Longest `state` kept (it rides sealed in the consent form).
const MAX_STATE: usize = 512;

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
    /// Makes the form single-use: a decision is taken once.
    nonce: String,
}

/// Where the browser goes back to, once the redirect URI is known to be the client's.
struct Back<'a> {
    redirect_uri: &'a str,
    state: Option<&'a str>,
    issuer: &'a str,
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
        // 303: the browser follows a form POST with a GET.
        let mut response =
            (StatusCode::SEE_OTHER, [(header::LOCATION, url.as_str())]).into_response();
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

/// What a checked authorization request asks for.
struct Checked<'a> {
    client: Arc<super::clients::Client>,
    redirect_uri: String,
    challenge: &'a str,
    scopes: Vec<&'static str>,
}

/// `GET /oauth/authorize`: sign in first, check the request, then show the consent page.
pub(super) async fn request(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let query = uri.query().unwrap_or("");
    // Signed in first: an anonymous request never makes the gateway fetch a client document.
    let caller = match browser_user(&state, &headers).await {
        Ok(Some(caller)) => caller,
        Ok(None) => return sign_in_first(query),
        Err(why) => return page::error(StatusCode::FORBIDDEN, why),
    };
    let params = match Params::parse(query.as_bytes()) {
        Ok(p) => p,
        Err(why) => return page::error(StatusCode::BAD_REQUEST, &why),
    };
    let checked = match check(&state, &caller, &params).await {
        Ok(checked) => checked,
        Err(refused) => return refused,
    };
    let profiles = match state.store.list_profiles(caller.user.id).await {
        Ok(p) => p,
        Err(_) => return page::error(StatusCode::SERVICE_UNAVAILABLE, "the store cannot be read"),
    };
    if profiles.is_empty() {
        return page::no_profile(checked.client.display_name());
    }
    let Via::Session { hash, csrf_token } = &caller.via else {
        return page::error(StatusCode::FORBIDDEN, "a browser session is required");
    };
    let client = &checked.client;
    let pending = Pending {
        client_id: client.id.clone(),
        client_name: client.display_name().to_owned(),
        redirect_uri: checked.redirect_uri.clone(),
        state: params.get("state").map(str::to_owned),
        scope: checked.scopes.join(" "),
        code_challenge: checked.challenge.to_owned(),
        user_id: caller.user.id,
        session_hash: hash.clone(),
        expires: unix_now() + CONSENT_TTL.as_secs() as i64,
        nonce: crate::session::random_token(),
    };
    let redirect_host = url::Url::parse(&checked.redirect_uri)
        .map(|u| shown_destination(&u))
        .unwrap_or_default();
    let profiles: Vec<(i64, String)> = profiles.into_iter().map(|p| (p.id, p.name)).collect();
    let vouching_host = client.vouching_host();
    page::consent(&Consent {
        client_name: client.display_name(),
        client_id: &client.id,
        vouching_host: vouching_host.as_deref(),
        redirect_host: &redirect_host,
        scopes: &checked.scopes,
        user: &crate::session::user_label(&caller.user),
        profiles: &profiles,
        sealed_request: &state.oauth.sealer.seal(&pending),
        csrf: csrf_token,
    })
}

/// Sends a browser that is not signed in to sign in, and back here afterwards.
fn sign_in_first(query: &str) -> Response {
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
    (
        StatusCode::FOUND,
        [(header::LOCATION, format!("/api/auth/login?{login}"))],
    )
        .into_response()
}

/// Checks an authorization request for a signed-in `caller`; the error is the page to show.
/// Nothing is redirected from here: anyone can register a client, so sending the browser to its
/// redirect URI before the person has acted would make this gateway a redirector for any site
/// (RFC 9700 §4.11.2).
async fn check<'p>(
    state: &ApiState,
    caller: &Caller,
    params: &'p Params,
) -> Result<Checked<'p>, Response> {
    let refused =
        |code: &str, why: &str| page::error(StatusCode::BAD_REQUEST, &format!("{why} ({code})"));
    // Before anything is fetched on the caller's behalf.
    if !allows(caller.role, Permission::UseProfiles) {
        return Err(page::error(
            StatusCode::FORBIDDEN,
            "your role cannot use profiles, so it cannot let a client use one",
        ));
    }
    let client_id = params
        .require("client_id")
        .map_err(|why| page::error(StatusCode::BAD_REQUEST, &why))?;
    let client = state
        .oauth
        .clients
        .find(&state.store, client_id)
        .await
        .map_err(|e| {
            tracing::info!(client_id = ?client_id, error = %e, "authorization refused: client");
            page::error(StatusCode::BAD_REQUEST, &e.to_string())
        })?;
    let Some(redirect_uri) = chosen_redirect_uri(&client.redirect_uris, params.get("redirect_uri"))
    else {
        return Err(page::error(
            StatusCode::BAD_REQUEST,
            "the redirect URI is not one the client registered",
        ));
    };
    if params.get("response_type") != Some("code") {
        return Err(refused(
            "unsupported_response_type",
            "only response_type=code is supported",
        ));
    }
    let challenge = params.get("code_challenge").filter(|c| pkce_shaped(c));
    let (Some(challenge), Some("S256")) = (challenge, params.get("code_challenge_method")) else {
        return Err(refused(
            "invalid_request",
            "PKCE with code_challenge_method=S256 is required",
        ));
    };
    if params
        .get("resource")
        .is_some_and(|r| r != state.oauth.resource)
    {
        return Err(refused(
            "invalid_target",
            "tokens are issued only for this gateway's /mcp",
        ));
    }
    let scopes = match parse_scope(params.get("scope").unwrap_or(SCOPE_MCP)) {
        Some(s) if s.is_empty() => vec![SCOPE_MCP],
        Some(s) => s,
        None => {
            return Err(refused(
                "invalid_scope",
                "the scopes granted here are mcp and offline_access",
            ));
        }
    };
    if params.get("state").is_some_and(|s| s.len() > MAX_STATE) {
        return Err(refused("invalid_request", "state is at most 512 bytes"));
    }
    Ok(Checked {
        client,
        redirect_uri,
        challenge,
        scopes,
    })
}

/// Where the code goes: exactly (byte for byte) one of the URIs the client registered, or its
/// only one when the request names none. No normalisation, no prefix or pattern match.
pub(super) fn chosen_redirect_uri(
    registered: &[String],
    requested: Option<&str>,
) -> Option<String> {
    match requested {
        Some(uri) if registered.iter().any(|r| r == uri) => Some(uri.to_owned()),
        None if registered.len() == 1 => Some(registered[0].clone()),
        _ => None,
    }
}

/// Where a redirect URI sends the code, as the person should read it: the host of an https
/// URI; anything else with its scheme (`cursor://anysphere…` is not the site `anysphere…`, and
/// `http://127.0.0.1` is a program on this machine).
fn shown_destination(uri: &url::Url) -> String {
    match (uri.scheme(), uri.host_str()) {
        ("https", Some(host)) => host.to_owned(),
        (scheme, Some(host)) => format!("{scheme}://{host}"),
        (scheme, None) => format!("{scheme}:"),
    }
}

/// RFC 7636 §4.2: 43 to 128 characters of `[A-Za-z0-9-._~]` (S256 gives exactly 43).
pub(super) fn pkce_shaped(value: &str) -> bool {
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
    // Used up only by an answer that passed every other check.
    let pending = pending.filter(|p| csrf_ok && state.oauth.first_use(&p.nonce, p.expires));
    let (true, Some(pending)) = (csrf_ok, pending) else {
        return refused(
            "this consent form is not valid for your session (expired, used, or not yours): start again from the client",
        );
    };
    let back = Back {
        redirect_uri: &pending.redirect_uri,
        state: pending.state.as_deref(),
        issuer: &state.oauth.issuer,
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
    fn destinations_name_their_scheme_unless_https() {
        let shown = |u: &str| shown_destination(&url::Url::parse(u).unwrap());
        assert_eq!(shown("https://claude.ai/cb"), "claude.ai");
        assert_eq!(shown("evilapp://claude.ai/cb"), "evilapp://claude.ai");
        assert_eq!(shown("http://127.0.0.1:9/cb"), "http://127.0.0.1");
        assert_eq!(shown("com.example.app:/cb"), "com.example.app:");
    }

    #[test]
    fn pkce_challenges_have_the_rfc_shape() {
        assert!(pkce_shaped(&"a".repeat(43)));
        assert!(pkce_shaped("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"));
        assert!(!pkce_shaped(&"a".repeat(42)));
        assert!(!pkce_shaped(&"a".repeat(129)));
        assert!(!pkce_shaped(&format!("{}=", "a".repeat(43))));
    }
}
