//! The HTTP face of the gateway: `/mcp` (Streamable HTTP, both protocol eras) behind
//! authentication, plus `/healthz` and `/readyz`.
//!
//! Order on `/mcp`: draining check → bearer auth → admission (declared body size, session
//! ownership, session cap) → rmcp (Host/Origin validation, body limit, protocol). Nothing
//! reaches a backend before authentication succeeds.
//!
//! The session cap counts, besides open sessions, every request without a session in flight:
//! its slot is taken before its body is read (so bodies held back cannot pile up past the cap)
//! and held until its response has been sent (so 2026-07-28 `subscriptions/listen` streams
//! count for as long as they are open). A session answers only the principal that opened it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::StreamExt;
use gig_auth::{Rejection, StaticBearer};
use gig_config::GatewayConfig;
use http::{HeaderValue, Method, StatusCode, header};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use tokio_util::sync::CancellationToken;

use crate::aggregator::Aggregator;
use crate::audit::CallRecorder;
use crate::backend::BackendStatus;
use crate::hub::Hub;
use crate::profile::Principal;
use crate::trace::ContinueTrace;

const SESSION_HEADER: &str = "mcp-session-id";

/// Resolves a bearer token that is not the static one (a profile token, an OAuth access
/// token) to its principal. Called on every such request: implementations cache (and must
/// still see a revocation within seconds).
pub trait PrincipalResolver: Send + Sync + std::fmt::Debug {
    fn resolve<'a>(
        &'a self,
        token: &'a str,
    ) -> futures::future::BoxFuture<'a, Result<Principal, TokenRefusal>>;
}

/// Why a bearer token other than the static one was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenRefusal {
    /// Unknown, expired, revoked, for another audience: 401.
    Invalid,
    /// Valid, but not granted the scope `/mcp` needs: 403 `insufficient_scope` (RFC 6750 §3.1).
    InsufficientScope,
}

/// Told of every request `/mcp` refuses before anything else runs (metrics), with why:
/// `missing`, `invalid_token` or `insufficient_scope`. Never the token.
pub trait AuthObserver: Send + Sync + std::fmt::Debug {
    fn refused(&self, reason: &'static str);
}

/// What `/mcp` needs beyond the hub: other principals than the operator, the call audit,
/// where a client learns to sign in, and who counts refusals.
#[derive(Debug, Clone, Default)]
pub struct McpExtras {
    pub resolver: Option<Arc<dyn PrincipalResolver>>,
    pub recorder: Option<Arc<dyn CallRecorder>>,
    pub oauth: Option<OAuthChallenge>,
    pub auth_observer: Option<Arc<dyn AuthObserver>>,
    /// Continues clients' W3C trace context (when traces are exported).
    pub continuation: Option<Arc<dyn ContinueTrace>>,
}

/// With OAuth on, every refusal names the protected-resource metadata (RFC 9728 §5.1) and the
/// scope `/mcp` needs, so a client can discover the authorization server from a 401.
#[derive(Debug, Clone)]
pub struct OAuthChallenge {
    pub resource_metadata: String,
    pub scope: String,
}

impl OAuthChallenge {
    /// A `WWW-Authenticate` value; `error` as in RFC 6750 §3.1.
    fn header(&self, error: Option<&str>) -> Option<HeaderValue> {
        let error = error.map_or(String::new(), |e| format!(", error=\"{e}\""));
        HeaderValue::from_str(&format!(
            "Bearer realm=\"gigmcp\"{error}, resource_metadata=\"{}\", scope=\"{}\"",
            self.resource_metadata, self.scope
        ))
        .ok()
    }
}

/// State shared by the middleware and the health endpoints.
#[derive(Debug)]
pub struct HttpState {
    pub hub: Arc<Hub>,
    pub auth: StaticBearer,
    pub resolver: Option<Arc<dyn PrincipalResolver>>,
    oauth: Option<OAuthChallenge>,
    auth_observer: Option<Arc<dyn AuthObserver>>,
    continuation: Option<Arc<dyn ContinueTrace>>,
    pub sessions: Arc<LocalSessionManager>,
    pub draining: AtomicBool,
    pub max_sessions: usize,
    max_body_bytes: usize,
    /// `Host`s for which `/readyz` names the backends.
    allowed_hosts: Vec<String>,
    /// Requests without a session whose response has not been fully sent.
    sessionless_in_flight: Arc<AtomicUsize>,
    /// Who opened each session.
    owners: Mutex<HashMap<String, Owner>>,
    /// POSTs to `/mcp` whose response has not been fully sent (shutdown drains these).
    posts_in_flight: tokio::sync::watch::Sender<usize>,
}

impl HttpState {
    /// Sessions open now, when that can be read without waiting (for scrapes).
    pub fn open_sessions(&self) -> Option<usize> {
        self.sessions.sessions.try_read().ok().map(|s| s.len())
    }

    /// Resolves when every POST's response has been sent to the end.
    pub async fn posts_drained(&self) {
        let mut rx = self.posts_in_flight.subscribe();
        let _ = rx.wait_for(|n| *n == 0).await;
    }
}

/// Counts one POST until its response body is dropped (sent or abandoned).
struct PostGuard(tokio::sync::watch::Sender<usize>);

impl Drop for PostGuard {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}

/// One slot of the session cap held by a request without a session.
struct SlotGuard(Arc<AtomicUsize>);

impl Drop for SlotGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The principal a session belongs to; another principal presenting its id gets 404 (another
/// OAuth grant over the same profile is another principal).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owner {
    Operator,
    Profile {
        profile_id: i64,
        user_id: i64,
        grant_id: Option<i64>,
    },
}

impl Owner {
    fn of(principal: Option<&Principal>) -> Option<Owner> {
        match principal? {
            Principal::Operator => Some(Owner::Operator),
            Principal::Profile(view) => Some(Owner::Profile {
                profile_id: view.profile_id,
                user_id: view.user_id,
                grant_id: view.client.as_ref().map(|c| c.grant_id),
            }),
        }
    }
}

/// Keeps `guard` alive until `response`'s body has been sent or dropped.
fn hold_until_sent<G: Send + 'static>(response: Response, guard: G) -> Response {
    let (parts, body) = response.into_parts();
    let body = body.into_data_stream().map(move |chunk| {
        let _held = &guard;
        chunk
    });
    Response::from_parts(parts, axum::body::Body::from_stream(body))
}

/// Hosts accepted in `Host` (and origins in `Origin`): loopback plus the public URL's host.
fn allowed_hosts_and_origins(config: &GatewayConfig) -> (Vec<String>, Vec<String>) {
    let mut hosts = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    let mut origins = vec![
        "http://localhost:*".to_owned(),
        "http://127.0.0.1:*".to_owned(),
        "http://[::1]:*".to_owned(),
    ];
    if let Some(host) = config.public_url.host_str() {
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        if !hosts.contains(&host) {
            hosts.push(host);
        }
        let origin = config.public_url.origin().ascii_serialization();
        let port = config.public_url.port_or_known_default().unwrap_or(443);
        let origin = if origin
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        {
            origin
        } else {
            format!("{origin}:{port}")
        };
        if !origins.contains(&origin) {
            origins.push(origin);
        }
    }
    (hosts, origins)
}

/// Builds the router. `mcp_shutdown` ends every MCP stream and session when cancelled.
pub fn router(
    config: &GatewayConfig,
    hub: Arc<Hub>,
    extras: McpExtras,
    mcp_shutdown: CancellationToken,
) -> (Router, Arc<HttpState>) {
    let mut sessions = LocalSessionManager::default();
    sessions.session_config.keep_alive = Some(config.limits.session_idle);
    let sessions = Arc::new(sessions);
    let probed = Arc::downgrade(&sessions);
    hub.set_session_probe(Arc::new(move |id: &str| {
        // Busy or gone: say open, and let the idle time stop the instance.
        probed.upgrade().is_none_or(|sessions| {
            sessions
                .sessions
                .try_read()
                .map_or(true, |open| open.contains_key(id))
        })
    }));

    let (hosts, origins) = allowed_hosts_and_origins(config);
    let mcp_config = StreamableHttpServerConfig::default()
        .with_allowed_hosts(hosts.clone())
        .with_allowed_origins(origins)
        .enforce_origin_validation()
        .with_max_request_body_bytes(config.limits.max_message_bytes)
        // Plain JSON for a request whose only message is its result; rmcp falls back to SSE
        // as soon as the handler emits anything before it (progress, server requests).
        .with_json_response(true)
        .with_cancellation_token(mcp_shutdown);
    let factory_hub = hub.clone();
    let recorder = extras.recorder.clone();
    let continuation = extras.continuation.clone();
    let mcp = StreamableHttpService::new(
        move || {
            Ok(Aggregator::new(
                factory_hub.clone(),
                recorder.clone(),
                continuation.clone(),
            ))
        },
        sessions.clone(),
        mcp_config,
    );

    let state = Arc::new(HttpState {
        hub,
        auth: StaticBearer::new(&config.bearer_token),
        resolver: extras.resolver.clone(),
        oauth: extras.oauth.clone(),
        auth_observer: extras.auth_observer.clone(),
        continuation: extras.continuation.clone(),
        sessions,
        draining: AtomicBool::new(false),
        max_sessions: config.limits.max_sessions,
        max_body_bytes: config.limits.max_message_bytes,
        allowed_hosts: hosts,
        sessionless_in_flight: Arc::new(AtomicUsize::new(0)),
        owners: Mutex::new(HashMap::new()),
        posts_in_flight: tokio::sync::watch::Sender::new(0),
    });

    let mcp_routes = Router::new()
        .route_service("/mcp", mcp)
        .layer(middleware::from_fn(parse_errors))
        .layer(middleware::from_fn_with_state(state.clone(), session_cap))
        .layer(middleware::from_fn_with_state(state.clone(), authenticate))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            refuse_when_draining,
        ));

    let router = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(state.clone())
        .merge(mcp_routes);
    (router, state)
}

/// Refuses new work while shutting down, and tracks every POST until its response (an SSE
/// stream carrying the result) has been sent in full, so draining never cuts a result off.
async fn refuse_when_draining(
    State(state): State<Arc<HttpState>>,
    request: Request,
    next: Next,
) -> Response {
    if state.draining.load(Ordering::Acquire) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "gateway is shutting down\n",
        )
            .into_response();
    }
    if request.method() != Method::POST {
        return next.run(request).await;
    }
    state.posts_in_flight.send_modify(|n| *n += 1);
    let guard = PostGuard(state.posts_in_flight.clone());
    hold_until_sent(next.run(request).await, guard)
}

/// The static token is the operator; any other bearer token goes to the resolver (profile
/// tokens, OAuth access tokens). Cookies are never read here.
async fn authenticate(
    State(state): State<Arc<HttpState>>,
    mut request: Request,
    next: Next,
) -> Response {
    let principal = match state.auth.check(request.headers()) {
        Ok(()) => Ok(Principal::Operator),
        Err(rejection) => match (&state.resolver, bearer(request.headers())) {
            (Some(resolver), Some(token)) => resolver.resolve(token).await.map_err(Refused::Token),
            _ if rejection == Rejection::Missing => Err(Refused::Missing),
            _ => Err(Refused::Token(TokenRefusal::Invalid)),
        },
    };
    let request_id = request_id(request.headers());
    let principal = match principal {
        Ok(principal) => principal,
        Err(refused) => {
            tracing::debug!(%request_id, ?refused, "mcp request refused");
            if let Some(observer) = &state.auth_observer {
                observer.refused(refused.reason());
            }
            return refused.response(state.oauth.as_ref());
        }
    };
    let label = match &principal {
        Principal::Operator => "operator".to_owned(),
        Principal::Profile(view) => format!("{} profile:{}", view.label, view.profile_id),
    };
    request.extensions_mut().insert(principal);
    // Everything logged while this request is handled names it and its caller; the span is
    // also the trace's HTTP server span, continuing the client's `traceparent`.
    let method = request.method().clone();
    // A static name: no allocation on the request path for it.
    let name = match method {
        Method::POST => "POST /mcp",
        Method::GET => "GET /mcp",
        Method::DELETE => "DELETE /mcp",
        _ => "/mcp",
    };
    let span = tracing::info_span!(
        "mcp_request",
        otel.name = name,
        otel.kind = "server",
        request_id = %request_id,
        principal = %label,
    );
    if let (Some(continuation), Some(traceparent)) = (
        &state.continuation,
        request
            .headers()
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .filter(|v| crate::trace::plausible_traceparent(v)),
    ) {
        continuation.continue_from(&span, traceparent);
    }
    request
        .extensions_mut()
        .insert(crate::trace::RequestSpan(span.clone()));
    let mut response = tracing::Instrument::instrument(
        async move {
            tracing::debug!(%method, "mcp request");
            next.run(request).await
        },
        span,
    )
    .await;
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    response
}

/// Why `/mcp` refused a request before anything else ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refused {
    /// No bearer token at all.
    Missing,
    Token(TokenRefusal),
}

impl Refused {
    fn reason(self) -> &'static str {
        match self {
            Refused::Missing => "missing",
            Refused::Token(TokenRefusal::Invalid) => "invalid_token",
            Refused::Token(TokenRefusal::InsufficientScope) => "insufficient_scope",
        }
    }

    fn response(self, oauth: Option<&OAuthChallenge>) -> Response {
        let (status, body, error) = match self {
            Refused::Missing => (
                StatusCode::UNAUTHORIZED,
                "missing or invalid bearer token\n",
                None,
            ),
            Refused::Token(TokenRefusal::Invalid) => (
                StatusCode::UNAUTHORIZED,
                "missing or invalid bearer token\n",
                Some("invalid_token"),
            ),
            Refused::Token(TokenRefusal::InsufficientScope) => (
                StatusCode::FORBIDDEN,
                "the token was not granted the scope /mcp needs\n",
                Some("insufficient_scope"),
            ),
        };
        let challenge = match oauth {
            Some(oauth) => oauth.header(error),
            None => Some(HeaderValue::from_static(match error {
                None => Rejection::Missing.challenge(),
                Some(_) => Rejection::Invalid.challenge(),
            })),
        };
        let mut response = (status, body).into_response();
        if let Some(challenge) = challenge {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, challenge);
        }
        response
    }
}

/// Names one request in logs and in its response; a client's own `X-Request-Id` is kept when
/// it is short and plain (so it can be traced end to end), else a fresh one is made.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

pub fn request_id(headers: &http::HeaderMap) -> String {
    headers
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 64
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
        .map(str::to_owned)
        .unwrap_or_else(fresh_request_id)
}

/// A process-unique id without hashing or system calls on the request path: a prefix drawn
/// once per process, then a counter.
fn fresh_request_id() -> String {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU32, Ordering};
    static PREFIX: OnceLock<u32> = OnceLock::new();
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let prefix = PREFIX.get_or_init(|| {
        use sha2::Digest;
        let seed = format!("{}:{:?}", std::process::id(), std::time::SystemTime::now());
        let digest = sha2::Sha256::digest(seed.as_bytes());
        u32::from_le_bytes([digest[0], digest[1], digest[2], digest[3]])
    });
    format!("{prefix:08x}{:08x}", NEXT.fetch_add(1, Ordering::Relaxed))
}

fn bearer(headers: &http::HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
        .filter(|t| !t.is_empty() && t.len() <= 256)
}

fn refusal(status: StatusCode, message: &'static str) -> Response {
    (status, message).into_response()
}

/// Admits a request past authentication: refuses a declared body over the message limit at
/// once (413, before any of it is read), a session id opened by another principal (404, as if
/// it did not exist), and a request without a session beyond the session cap (503).
async fn session_cap(
    State(state): State<Arc<HttpState>>,
    request: Request,
    next: Next,
) -> Response {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > state.max_body_bytes as u64) {
        return refusal(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request body exceeds the message size limit\n",
        );
    }
    let owner = Owner::of(request.extensions().get::<Principal>());
    if let Some(session) = request.headers().get(SESSION_HEADER) {
        let known = session
            .to_str()
            .ok()
            .and_then(|id| lock_owners(&state).get(id).copied());
        if owner.is_none() || known != owner {
            return refusal(StatusCode::NOT_FOUND, "session not found\n");
        }
        let ending = request.method() == Method::DELETE;
        let mut response = next.run(request).await;
        // rmcp confirms a session's end with 202; the SDKs read anything but 200/204 as a
        // failure to end it (the specification names no code), so it is said as 204.
        if ending && response.status() == StatusCode::ACCEPTED {
            *response.status_mut() = StatusCode::NO_CONTENT;
            *response.body_mut() = axum::body::Body::empty();
        }
        return response;
    }
    if request.method() != Method::POST {
        return next.run(request).await;
    }

    // The slot is taken before the body is read and checked against the sessions that exist
    // plus every other request holding a slot, so any number of requests arriving together
    // admit at most the free slots.
    let position = state.sessionless_in_flight.fetch_add(1, Ordering::AcqRel) + 1;
    let slot = SlotGuard(state.sessionless_in_flight.clone());
    let open = state.sessions.sessions.read().await.len();
    if open + position > state.max_sessions {
        drop(slot);
        let mut response = refusal(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many MCP sessions; retry later\n",
        );
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        return response;
    }
    let response = next.run(request).await;
    if let (Some(owner), Some(id)) = (
        owner,
        response
            .headers()
            .get(SESSION_HEADER)
            .and_then(|v| v.to_str().ok()),
    ) {
        record_owner(&state, id, owner).await;
    }
    hold_until_sent(response, slot)
}

/// rmcp answers a JSON body that is not a JSON-RPC message with 415, as if the media type were
/// wrong; the specification and the SDKs expect 400 with a JSON-RPC error: -32700 for text that
/// is not JSON, -32600 for JSON that is not a request. A wrong media type keeps its 415.
async fn parse_errors(request: Request, next: Next) -> Response {
    let json = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    let response = next.run(request).await;
    if !json || response.status() != StatusCode::UNSUPPORTED_MEDIA_TYPE {
        return response;
    }
    // rmcp's own short message: bounded, read only to tell the two cases apart.
    let detail = axum::body::to_bytes(response.into_body(), 4096)
        .await
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    // rmcp parses with serde_json: JSON of the wrong shape is its "unrecognized JSON-RPC
    // message" (or a field error); anything else is a syntax error.
    let not_a_request = [
        "unrecognized JSON-RPC message",
        "missing field",
        "unknown variant",
        "invalid type",
    ]
    .iter()
    .any(|m| detail.contains(m));
    let (code, message) = if not_a_request {
        (
            -32600,
            "Invalid Request: the body is not a JSON-RPC message",
        )
    } else {
        (-32700, "Parse error: the body is not JSON")
    };
    let body = serde_json::json!({
        "jsonrpc": "2.0",
        "id": null,
        "error": {"code": code, "message": message},
    });
    (StatusCode::BAD_REQUEST, axum::Json(body)).into_response()
}

fn lock_owners(state: &HttpState) -> std::sync::MutexGuard<'_, HashMap<String, Owner>> {
    state.owners.lock().unwrap_or_else(|p| p.into_inner())
}

/// Records who opened session `id`, forgetting sessions that have since ended once the table
/// has grown past twice the open sessions.
async fn record_owner(state: &HttpState, id: &str, owner: Owner) {
    let recorded = {
        let mut owners = lock_owners(state);
        owners.insert(id.to_owned(), owner);
        owners.len()
    };
    let live = state.sessions.sessions.read().await;
    if recorded > 2 * live.len() + 16 {
        let live: std::collections::HashSet<&str> = live.keys().map(|k| k.as_ref()).collect();
        lock_owners(state).retain(|id, _| live.contains(id.as_str()));
    }
}

/// Whether `host` (a `Host` header value) may see backend names on `/readyz`: an allowed host
/// or an IP literal. A DNS-rebinding page always sends its own domain name.
fn host_may_see_details(host: Option<&str>, allowed: &[String]) -> bool {
    let Some(host) = host else {
        return false;
    };
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split_once(']').map_or(rest, |(name, _)| name)
    } else {
        host.rsplit_once(':')
            .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
            .map_or(host, |(name, _)| name)
    };
    allowed.iter().any(|a| a.eq_ignore_ascii_case(name)) || name.parse::<std::net::IpAddr>().is_ok()
}

/// Unauthenticated, so it says only whether each backend is up: no failure reasons (which a
/// backend can choose) and no counts; and backend names only to a `Host` that is allowed or
/// an address (probes), never to a page that reached it by DNS rebinding.
async fn readyz(State(state): State<Arc<HttpState>>, headers: http::HeaderMap) -> Response {
    let ready = state.hub.ready() && !state.draining.load(Ordering::Acquire);
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    if !host_may_see_details(host, &state.allowed_hosts) {
        return (status, axum::Json(serde_json::json!({ "ready": ready }))).into_response();
    }
    let backends: serde_json::Map<String, serde_json::Value> = state
        .hub
        .backends()
        .into_iter()
        .map(|b| {
            let up = match b.status() {
                BackendStatus::Starting => "starting",
                BackendStatus::Up { .. } => "up",
                BackendStatus::Down { .. } => "down",
            };
            (b.name.clone(), serde_json::json!({ "state": up }))
        })
        .collect();
    (
        status,
        axum::Json(serde_json::json!({ "ready": ready, "backends": backends })),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn config(public: Option<&str>) -> GatewayConfig {
        let mut env = BTreeMap::new();
        env.insert("GIG_BEARER_TOKEN".to_owned(), "0123456789abcdef".to_owned());
        if let Some(p) = public {
            env.insert("GIG_PUBLIC_URL".to_owned(), p.to_owned());
        }
        GatewayConfig::from_env(&env).unwrap()
    }

    #[test]
    fn public_url_host_and_origin_are_allowed_besides_loopback() {
        let (hosts, origins) = allowed_hosts_and_origins(&config(Some("https://mcp.example.com")));
        assert!(hosts.contains(&"mcp.example.com".to_owned()));
        assert!(hosts.contains(&"localhost".to_owned()));
        assert!(origins.contains(&"https://mcp.example.com:443".to_owned()));
        let (hosts, origins) = allowed_hosts_and_origins(&config(Some("http://gw.internal:8080")));
        assert!(hosts.contains(&"gw.internal".to_owned()));
        assert!(origins.contains(&"http://gw.internal:8080".to_owned()));
    }

    #[test]
    fn readyz_details_only_for_allowed_hosts_and_addresses() {
        let allowed = vec!["localhost".to_owned(), "mcp.example.com".to_owned()];
        for ok in [
            "localhost:8080",
            "MCP.example.com",
            "127.0.0.1:1",
            "[::1]:80",
            "10.1.2.3",
        ] {
            assert!(host_may_see_details(Some(ok), &allowed), "{ok}");
        }
        for refused in ["evil.example:8080", "localhost.evil.com", "[evil]:80"] {
            assert!(!host_may_see_details(Some(refused), &allowed), "{refused}");
        }
        assert!(!host_may_see_details(None, &allowed));
    }

    #[test]
    fn default_allows_only_loopback() {
        let (hosts, _) = allowed_hosts_and_origins(&config(None));
        assert_eq!(hosts, ["localhost", "127.0.0.1", "::1"]);
    }
}
