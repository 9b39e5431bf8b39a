//! Revoking a user's tokens when they disconnect (RFC 7009), at the endpoint the
//! authorization server's metadata names. rmcp has no revocation of its own; this is one form
//! POST per token through the same outbound client.

use std::time::Duration;

use oauth2::TokenResponse as _;
use rmcp::transport::auth::StoredCredentials;

use super::{OAuthServer, metadata};

const MAX_ANSWER_BYTES: usize = 64 << 10;
const TIMEOUT: Duration = Duration::from_secs(15);

/// Revokes the refresh token (which ends the whole grant at most servers), then the access
/// token. A server that names no revocation endpoint cannot be asked.
pub(super) async fn revoke(
    server: &OAuthServer,
    credentials: &StoredCredentials,
    client_secret: Option<&str>,
) -> Result<(), String> {
    let Some(tokens) = &credentials.token_response else {
        return Ok(());
    };
    let metadata = metadata(server).await.map_err(|e| e.to_string())?;
    // Tokens go back only to the authorization server that issued them, never to whichever
    // one the upstream's metadata names now.
    if credentials.issuer.is_none() || metadata.issuer != credentials.issuer {
        return Err(format!(
            "the upstream now names authorization server {:?}, not the one that issued the tokens",
            metadata.issuer.unwrap_or_default()
        ));
    }
    let Some(endpoint) = metadata
        .additional_fields
        .get("revocation_endpoint")
        .and_then(|v| v.as_str())
    else {
        return Err("the authorization server names no revocation endpoint".into());
    };
    let mut sent = Vec::new();
    if let Some(refresh) = tokens.refresh_token() {
        sent.push((refresh.secret().as_str(), "refresh_token"));
    }
    sent.push((tokens.access_token().secret().as_str(), "access_token"));
    for (token, hint) in sent {
        let mut request = http::Request::post(endpoint).header(
            http::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        );
        if let Some(secret) = client_secret {
            let basic = base64_basic(&credentials.client_id, secret);
            request = request.header(http::header::AUTHORIZATION, basic);
        }
        let body = revocation_form(
            token,
            hint,
            client_secret.is_none().then_some(&credentials.client_id),
        );
        let request = request.body(body.into_bytes()).map_err(|e| e.to_string())?;
        let response = server
            .http
            .0
            .execute(request, MAX_ANSWER_BYTES, TIMEOUT)
            .await
            .map_err(|e| e.to_string())?;
        if !response.status().is_success() {
            return Err(format!("revocation answered HTTP {}", response.status()));
        }
    }
    Ok(())
}

/// The form body; a public client names itself in it.
fn revocation_form(token: &str, hint: &str, public_client: Option<&String>) -> String {
    let mut form = url::form_urlencoded::Serializer::new(String::new());
    form.append_pair("token", token)
        .append_pair("token_type_hint", hint);
    if let Some(id) = public_client {
        form.append_pair("client_id", id);
    }
    form.finish()
}

/// `client_secret_basic` (RFC 6749 §2.3.1): both parts form-encoded, then base64.
fn base64_basic(id: &str, secret: &str) -> String {
    use base64::Engine as _;
    let encode = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let pair = format!("{}:{}", encode(id), encode(secret));
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    )
}
