//! Who a client is. Two ways, as MCP clients do it:
//!
//! - **Metadata document**: the `client_id` is an https URL and the gateway fetches the JSON
//!   there (through [`gig_outbound`]: the egress address policy, bounded size and time, no
//!   redirects) and caches it as its `Cache-Control` allows (1 minute to 1 day). The client's
//!   name is shown with the host that vouched for it.
//! - **Dynamic registration** (RFC 7591): anyone may register, so what they register is their
//!   own claim (the consent page says so), registrations are capped (the oldest unused make
//!   room), and ones no user ever granted are forgotten after an hour.
//!
//! Either way the redirect URIs are fixed up front and matched exactly later.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use gig_outbound::{Outbound, OutboundError};
use gig_store::Store;
use http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{CLIENT_PREFIX, new_secret, parse_scope};
use crate::ApiState;
use crate::lock;
use crate::session::token_hash;

/// Largest metadata document fetched.
const MAX_DOCUMENT: usize = 64 * 1024;
/// How long a metadata document may take to arrive.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// Cache lifetime bounds for metadata documents, and the lifetime without `max-age`.
const MIN_CACHE: Duration = Duration::from_secs(60);
const MAX_CACHE: Duration = Duration::from_secs(86_400);
const DEFAULT_CACHE: Duration = Duration::from_secs(300);
/// How long a document that could not be used is remembered as such.
const FAILURE_CACHE: Duration = Duration::from_secs(30);
/// Documents remembered at once.
const MAX_CACHED: usize = 1000;
/// Redirect URIs one client may have.
const MAX_REDIRECT_URIS: usize = 10;
/// Registered clients kept at once (registration is unauthenticated).
const MAX_REGISTERED: i64 = 10_000;
/// Longest client name kept.
const MAX_NAME: usize = 100;

/// A client as the authorization and token endpoints see it.
#[derive(Debug, Clone)]
pub(super) struct Client {
    pub id: String,
    /// The client's own name for itself, if it gave one.
    pub name: Option<String>,
    pub redirect_uris: Vec<String>,
    pub kind: ClientKind,
}

#[derive(Debug, Clone)]
pub(super) enum ClientKind {
    /// Identified by the document at its https `client_id` (a public client).
    Document,
    /// Registered here; `secret_hash` for a confidential one.
    Registered { secret_hash: Option<String> },
}

impl Client {
    /// How the consent page names it: the name it claims, or its id.
    pub fn display_name(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.id)
    }

    /// For a metadata-document client, the host that published it.
    pub fn vouching_host(&self) -> Option<String> {
        match self.kind {
            ClientKind::Document => url::Url::parse(&self.id)
                .ok()
                .and_then(|u| u.host_str().map(str::to_owned)),
            ClientKind::Registered { .. } => None,
        }
    }
}

/// Why a client could not be identified; the text is shown to the user.
#[derive(Debug, thiserror::Error)]
pub(super) enum ClientError {
    #[error("unknown client")]
    Unknown,
    #[error("the client's metadata document could not be fetched: {0}")]
    Fetch(OutboundError),
    #[error("the client's metadata document is invalid: {0}")]
    Document(String),
    /// A recent failure, remembered (its text).
    #[error("{0}")]
    Remembered(String),
    #[error("too many client documents are being fetched; try again shortly")]
    Busy,
    #[error("the store cannot be read")]
    Store,
}

/// A fetched document's client, or why it could not be used.
type Cached = Result<Arc<Client>, String>;

#[derive(Debug)]
pub(super) struct Clients {
    outbound: Outbound,
    /// Fetched documents (or why they could not be used), until they expire.
    documents: Mutex<HashMap<String, (Instant, Cached)>>,
    /// Metadata fetches under way, bounded so a burst of new client ids cannot turn the
    /// gateway into a crawler.
    fetches: tokio::sync::Semaphore,
}

impl Clients {
    pub fn new(outbound: Outbound) -> Self {
        Clients {
            outbound,
            documents: Mutex::default(),
            fetches: tokio::sync::Semaphore::new(16),
        }
    }

    /// The client `client_id`: a metadata document when it is an https URL, else a
    /// registration.
    pub async fn find(&self, store: &Store, client_id: &str) -> Result<Arc<Client>, ClientError> {
        if client_id.starts_with("https://") {
            return self.document(client_id).await;
        }
        if !client_id.starts_with(CLIENT_PREFIX) {
            return Err(ClientError::Unknown);
        }
        let record = store
            .get_oauth_client(client_id)
            .await
            .map_err(|_| ClientError::Store)?
            .ok_or(ClientError::Unknown)?;
        let metadata: Registration =
            serde_json::from_value(record.metadata).map_err(|_| ClientError::Unknown)?;
        Ok(Arc::new(Client {
            id: record.client_id,
            name: metadata.client_name,
            redirect_uris: metadata.redirect_uris,
            kind: ClientKind::Registered {
                secret_hash: record.secret_hash,
            },
        }))
    }

    async fn document(&self, client_id: &str) -> Result<Arc<Client>, ClientError> {
        if let Some(known) = self.cached(client_id) {
            return known;
        }
        let url = document_url(client_id).map_err(ClientError::Document)?;
        // Waiting for a fetch slot is bounded too: slow documents cannot stall everyone else
        // for longer than one fetch takes.
        let _permit = tokio::time::timeout(FETCH_TIMEOUT, self.fetches.acquire())
            .await
            .map_err(|_| ClientError::Busy)?
            .map_err(|_| ClientError::Busy)?;
        // Someone else may have fetched it while this request waited.
        if let Some(known) = self.cached(client_id) {
            return known;
        }
        let fetched = self
            .outbound
            .get_json(&url, MAX_DOCUMENT, FETCH_TIMEOUT)
            .await
            .map_err(ClientError::Fetch)
            .and_then(|f| {
                let client = parse_document(client_id, f.value).map_err(ClientError::Document)?;
                Ok((Arc::new(client), f.max_age))
            });
        let (entry, lifetime) = match fetched {
            Ok((client, max_age)) => (
                Ok(client),
                max_age.unwrap_or(DEFAULT_CACHE).clamp(MIN_CACHE, MAX_CACHE),
            ),
            // A failure is remembered briefly, so retries do not turn into fetches.
            Err(e) => (Err(e.to_string()), FAILURE_CACHE),
        };
        let mut documents = lock(&self.documents);
        let now = Instant::now();
        if documents.len() >= MAX_CACHED {
            documents.retain(|_, (until, _)| now < *until);
        }
        if documents.len() >= MAX_CACHED {
            // Still full of live entries: drop the half that expires soonest.
            let mut expiries: Vec<Instant> = documents.values().map(|(until, _)| *until).collect();
            expiries.sort_unstable();
            let cut = expiries[expiries.len() / 2];
            documents.retain(|_, (until, _)| *until > cut);
        }
        documents.insert(client_id.to_owned(), (now + lifetime, entry.clone()));
        entry.map_err(ClientError::Remembered)
    }

    /// The cached answer for `client_id`, if still fresh.
    fn cached(&self, client_id: &str) -> Option<Result<Arc<Client>, ClientError>> {
        let documents = lock(&self.documents);
        let (until, entry) = documents.get(client_id)?;
        (Instant::now() < *until).then(|| entry.clone().map_err(ClientError::Remembered))
    }
}

/// A metadata-document client id: https, a path beyond `/`, no fragment, no credentials.
fn document_url(client_id: &str) -> Result<url::Url, String> {
    let url = url::Url::parse(client_id).map_err(|e| format!("client_id: {e}"))?;
    if url.scheme() != "https"
        || url.path() == "/"
        || url.fragment().is_some()
        || !url.username().is_empty()
        || url.password().is_some()
        || url.as_str() != client_id
    {
        return Err(
            "a URL client_id is https, with a path, without fragment or credentials, in normal form"
                .into(),
        );
    }
    Ok(url)
}

/// What a registration or a metadata document says (unknown fields are ignored: clients send
/// many this server has no use for).
#[derive(Debug, Deserialize, serde::Serialize)]
struct Registration {
    redirect_uris: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    client_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    token_endpoint_auth_method: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    grant_types: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    response_types: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    scope: Option<String>,
}

impl Registration {
    /// Checks every field; the error is an RFC 7591 error code and a description.
    fn validate(&self) -> Result<(), (&'static str, String)> {
        let metadata = |why: String| ("invalid_client_metadata", why);
        if self.redirect_uris.is_empty() || self.redirect_uris.len() > MAX_REDIRECT_URIS {
            return Err((
                "invalid_redirect_uri",
                format!("1 to {MAX_REDIRECT_URIS} redirect_uris are required"),
            ));
        }
        for uri in &self.redirect_uris {
            valid_redirect_uri(uri).map_err(|why| ("invalid_redirect_uri", why))?;
        }
        if let Some(name) = &self.client_name
            && (name.chars().count() > MAX_NAME || name.chars().any(invisible))
        {
            return Err(metadata(format!(
                "client_name is at most {MAX_NAME} characters, without control or invisible formatting characters"
            )));
        }
        let method = self.token_endpoint_auth_method.as_deref().unwrap_or("none");
        if !matches!(
            method,
            "none" | "client_secret_basic" | "client_secret_post"
        ) {
            return Err(metadata(format!(
                "token_endpoint_auth_method {method:?} is not supported (none, client_secret_basic, client_secret_post)"
            )));
        }
        for grant in self.grant_types.iter().flatten() {
            if !matches!(grant.as_str(), "authorization_code" | "refresh_token") {
                return Err(metadata(format!("grant type {grant:?} is not supported")));
            }
        }
        for response in self.response_types.iter().flatten() {
            if response != "code" {
                return Err(metadata(format!(
                    "response type {response:?} is not supported"
                )));
            }
        }
        if let Some(scope) = &self.scope
            && parse_scope(scope).is_none()
        {
            return Err(metadata(
                "scope names a scope this server does not grant".into(),
            ));
        }
        Ok(())
    }
}

/// Control characters, and the formatting ones that make a name read as another on the
/// consent page (bidirectional overrides, zero-width characters, soft hyphens).
fn invisible(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{00AD}' | '\u{061C}' | '\u{180E}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{FEFF}')
}

/// Where a code may be sent: https anywhere; http only to this machine (a native client's
/// loopback listener, RFC 8252 §7.3); a private-use scheme (RFC 8252 §7.1) other than the ones
/// a browser would run or read locally. Never a fragment.
pub(super) fn valid_redirect_uri(uri: &str) -> Result<(), String> {
    const NEVER: [&str; 11] = [
        "javascript",
        "data",
        "file",
        "vbscript",
        "about",
        "blob",
        "filesystem",
        "view-source",
        "ws",
        "wss",
        "ftp",
    ];
    if uri.len() > 2000 {
        return Err("a redirect URI is at most 2000 bytes".into());
    }
    let url = url::Url::parse(uri).map_err(|e| format!("redirect URI {uri:?}: {e}"))?;
    if url.fragment().is_some() {
        return Err(format!("redirect URI {uri:?} has a fragment"));
    }
    match url.scheme() {
        "https" if url.host().is_some() => Ok(()),
        "http" if matches!(url.host_str(), Some("localhost" | "127.0.0.1" | "[::1]")) => Ok(()),
        "http" | "https" => Err(format!(
            "redirect URI {uri:?}: http only to localhost, 127.0.0.1 or [::1]"
        )),
        scheme if NEVER.contains(&scheme) => Err(format!(
            "redirect URI {uri:?}: scheme {scheme} is not allowed"
        )),
        _ => Ok(()),
    }
}

/// A fetched metadata document as a client: it must name itself by the URL it came from and
/// be a public client (this server does not take keys from documents).
fn parse_document(client_id: &str, document: Value) -> Result<Client, String> {
    if document.get("client_id").and_then(Value::as_str) != Some(client_id) {
        return Err("its client_id is not the URL it was fetched from".into());
    }
    if document.get("client_secret").is_some() {
        return Err("a metadata document cannot carry a client_secret".into());
    }
    let registration: Registration =
        serde_json::from_value(document).map_err(|e| format!("{e}"))?;
    if registration
        .token_endpoint_auth_method
        .as_deref()
        .is_some_and(|m| m != "none")
    {
        return Err("only public clients (token_endpoint_auth_method none) are supported".into());
    }
    registration.validate().map_err(|(_, why)| why)?;
    Ok(Client {
        id: client_id.to_owned(),
        name: registration.client_name,
        redirect_uris: registration.redirect_uris,
        kind: ClientKind::Document,
    })
}

fn registration_error(status: StatusCode, code: &str, description: &str) -> Response {
    (
        status,
        Json(json!({"error": code, "error_description": description})),
    )
        .into_response()
}

/// `POST /oauth/register` (RFC 7591): a public client by default, a confidential one when it
/// asks for a secret method (the secret is shown once and stored as its hash).
pub(super) async fn register(State(state): State<Arc<ApiState>>, body: Bytes) -> Response {
    let registration: Registration = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return registration_error(
                StatusCode::BAD_REQUEST,
                "invalid_client_metadata",
                &format!("the body is not a client registration: {e}"),
            );
        }
    };
    if let Err((code, why)) = registration.validate() {
        return registration_error(StatusCode::BAD_REQUEST, code, &why);
    }
    // Registration is open to anyone, so the table is capped; at the cap the oldest clients
    // no user ever granted make room (a flood evicts only other unused registrations).
    match state.store.count_oauth_clients().await {
        Ok(n) if n < MAX_REGISTERED => {}
        Ok(n) => match state
            .store
            .delete_oldest_unused_oauth_clients(n - MAX_REGISTERED + 1)
            .await
        {
            Ok(evicted) if evicted > 0 => {
                tracing::warn!(
                    evicted,
                    "client registrations at the cap: oldest unused evicted"
                );
            }
            Ok(_) => {
                return registration_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "temporarily_unavailable",
                    "too many registered clients; try again later",
                );
            }
            Err(e) => return crate::error::ApiError::from(e).into_response(),
        },
        Err(e) => return crate::error::ApiError::from(e).into_response(),
    }
    let method = registration
        .token_endpoint_auth_method
        .clone()
        .unwrap_or_else(|| "none".into());
    let secret = (method != "none").then(crate::session::random_token);
    let client_id = new_secret(CLIENT_PREFIX);
    let stored = Registration {
        token_endpoint_auth_method: Some(method),
        grant_types: Some(
            registration
                .grant_types
                .clone()
                .unwrap_or_else(|| vec!["authorization_code".into()]),
        ),
        response_types: Some(vec!["code".into()]),
        ..registration
    };
    let metadata = serde_json::to_value(&stored).unwrap_or_default();
    let secret_hash = secret.as_deref().map(token_hash);
    if let Err(e) = state
        .store
        .create_oauth_client(&client_id, secret_hash.as_deref(), &metadata)
        .await
    {
        return crate::error::ApiError::from(e).into_response();
    }
    tracing::info!(client_id, name = ?stored.client_name, "OAuth client registered");
    let mut answer = metadata;
    answer["client_id"] = json!(client_id);
    answer["client_id_issued_at"] = json!(time::OffsetDateTime::now_utc().unix_timestamp());
    if let Some(secret) = secret {
        answer["client_secret"] = json!(secret);
        answer["client_secret_expires_at"] = json!(0);
    }
    let mut response = (StatusCode::CREATED, Json(answer)).into_response();
    response.headers_mut().insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_uris_are_https_loopback_http_or_private_schemes() {
        for ok in [
            "https://claude.ai/api/mcp/auth_callback",
            "http://127.0.0.1:33418/callback",
            "http://localhost/cb",
            "http://[::1]:9/cb",
            "cursor://anysphere.cursor-retrieval/oauth/callback",
            "com.example.app:/oauth2redirect",
        ] {
            assert!(valid_redirect_uri(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://evil.example/cb",
            "http://127.0.0.1.evil.example/cb",
            "https://ok.example/cb#frag",
            "javascript:alert(1)",
            "data:text/html,hi",
            "file:///etc/passwd",
            "not a url",
        ] {
            assert!(valid_redirect_uri(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn documents_must_name_themselves_and_be_public() {
        let id = "https://client.example/meta.json";
        let doc = |extra: Value| {
            let mut d = json!({"client_id": id, "client_name": "C", "redirect_uris": ["https://client.example/cb"]});
            d.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            d
        };
        let client = parse_document(id, doc(json!({}))).unwrap();
        assert_eq!(client.vouching_host().as_deref(), Some("client.example"));
        assert!(parse_document("https://other.example/meta.json", doc(json!({}))).is_err());
        assert!(parse_document(id, doc(json!({"client_secret": "s"}))).is_err());
        assert!(
            parse_document(
                id,
                doc(json!({"token_endpoint_auth_method": "private_key_jwt"}))
            )
            .is_err()
        );
        assert!(
            parse_document(
                id,
                doc(json!({"redirect_uris": ["http://evil.example/cb"]}))
            )
            .is_err()
        );
        assert!(parse_document(id, doc(json!({"redirect_uris": []}))).is_err());
    }

    #[test]
    fn document_ids_are_plain_https_urls_with_a_path() {
        assert!(document_url("https://client.example/meta.json").is_ok());
        for bad in [
            "https://client.example/",
            "https://client.example",
            "http://client.example/meta.json",
            "https://user:pw@client.example/meta.json",
            "https://client.example/meta.json#x",
            "https://CLIENT.example/meta.json",
        ] {
            assert!(document_url(bad).is_err(), "{bad}");
        }
    }
}
