//! The hub: every backend's supervisor, the current catalog, and the calls in flight.
//!
//! Each backend has its own supervisor task, permit pool and in-flight table, so a backend
//! that crashes, hangs or floods only ever fails its own calls. The catalog lists live
//! backends only (fail-open): a backend that is down simply drops out until it is back.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use gig_config::Limits;
use rmcp::model::{
    ClientCapabilities, ClientRequest, ClientResult, ErrorCode, ErrorData, PaginatedRequestParams,
    ProgressToken, ProtocolVersion, RequestMetaObject, ServerRequest, ServerResult,
};
use rmcp::service::{Peer, PeerRequestOptions, RequestContext, RunningService, ServiceError};
use rmcp::transport::async_rw::AsyncRwTransport;
use rmcp::{RoleClient, RoleServer, ServiceExt};
use tokio::sync::{Notify, Semaphore, broadcast, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::backend::Launcher;
use crate::catalog::{BackendLists, Catalog};
use crate::client::BackendClient;
use crate::stdout_guard::StdoutGuard;

/// Which aggregated list changed; sessions turn this into `notifications/*/list_changed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListChange {
    pub tools: bool,
    pub prompts: bool,
    pub resources: bool,
}

/// A backend's health as shown on `/readyz`.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum BackendStatus {
    Starting,
    Up { tools: usize },
    Down { reason: String, restarts: u32 },
}

/// The client a backend-originated request or notification is routed to.
#[derive(Debug, Clone)]
pub struct Caller {
    pub peer: Peer<RoleServer>,
    /// The client's own progress token, when it asked for progress.
    pub progress_token: Option<ProgressToken>,
    /// `None` when the client cannot take server-to-client requests (the stateless
    /// 2026-07-28 protocol forbids them), so backends' requests are refused, not misrouted.
    pub capabilities: Option<ClientCapabilities>,
    /// Hands a backend's server-to-client request to the task serving the client's call, so
    /// rmcp sends it on that call's response stream.
    pub upstream: mpsc::Sender<UpstreamRequest>,
    /// The client's MCP session, when it has one.
    session: Option<String>,
    call_id: u64,
    started: Instant,
}

/// A backend's sampling/elicitation/roots request on its way to the calling client.
#[derive(Debug)]
pub struct UpstreamRequest {
    pub request: ServerRequest,
    pub reply: oneshot::Sender<Result<ClientResult, ErrorData>>,
}

/// One backend: its launcher, its live connection (if any) and its calls in flight.
pub struct Backend {
    pub name: String,
    launcher: Box<dyn Launcher>,
    live: RwLock<Option<Peer<RoleClient>>>,
    lists: RwLock<Option<BackendLists>>,
    status: RwLock<BackendStatus>,
    /// Keyed by the progress token rmcp put on the forwarded request (unique per connection).
    inflight: Mutex<HashMap<ProgressToken, Caller>>,
    permits: Semaphore,
    notify_permits: Semaphore,
    refresh: Notify,
    first_attempt_done: tokio::sync::watch::Sender<bool>,
    /// Cancelled when this backend is removed (a child of the hub's shutdown token).
    stop: CancellationToken,
    /// The live connection's tool-call hook (egress audit attribution).
    tool_call_hook: RwLock<Option<crate::backend::ToolCallHook>>,
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backend").field("name", &self.name).finish()
    }
}

/// Removes an in-flight entry however the call ends (answer, error, timeout, cancellation).
struct InflightGuard<'a> {
    backend: &'a Backend,
    token: ProgressToken,
    call_id: u64,
}

impl Drop for InflightGuard<'_> {
    fn drop(&mut self) {
        // rmcp restarts progress tokens with each connection, so a call outliving its
        // connection must not remove a newer call's entry under the same token.
        let mut inflight = lock(&self.backend.inflight);
        if inflight
            .get(&self.token)
            .is_some_and(|c| c.call_id == self.call_id)
        {
            inflight.remove(&self.token);
        }
    }
}

/// Clears the sandbox's current tool call when the call ends, however it ends.
struct ClearOnDrop(crate::backend::ToolCallHook);

impl Drop for ClearOnDrop {
    fn drop(&mut self) {
        (self.0)(None);
    }
}

/// Distinguishes calls across backend connections.
static NEXT_CALL_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// Server-to-client requests a backend may relay during one call.
const MAX_RELAYED_PER_CALL: usize = 16;
/// Notifications from one backend being forwarded at once; more are dropped.
const MAX_NOTIFICATIONS_IN_FLIGHT: usize = 64;
/// How long forwarding one notification to a client may take before it is dropped.
pub const NOTIFY_TIMEOUT: Duration = Duration::from_secs(2);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// `_meta` keys the gateway owns on each hop and therefore never forwards.
fn forwardable_meta(meta: &RequestMetaObject) -> RequestMetaObject {
    let mut forwarded = RequestMetaObject::new();
    for (key, value) in meta.iter() {
        if key != "progressToken" && !key.starts_with("io.modelcontextprotocol/") {
            forwarded.insert(key.clone(), value.clone());
        }
    }
    forwarded
}

impl Backend {
    pub fn status(&self) -> BackendStatus {
        read(&self.status).clone()
    }

    pub fn lists(&self) -> Option<BackendLists> {
        read(&self.lists).clone()
    }

    /// The caller a backend-originated request belongs to. Stdio carries no link from a
    /// server-to-client request to the call that caused it, so the oldest call in flight whose
    /// client declared the needed capability is chosen (exact whenever one call is in flight).
    ///
    /// Only when every call in flight on this backend belongs to the same client session:
    /// otherwise one session's roots, sampling or logs could reach another's backend work, so
    /// the request is refused (or the log dropped) instead.
    pub fn caller_for(&self, capable: impl Fn(&ClientCapabilities) -> bool) -> Option<Caller> {
        let inflight = lock(&self.inflight);
        let mut callers = inflight.values();
        let first = callers.next()?;
        let one_session = first.session.is_some() && callers.all(|c| c.session == first.session);
        if inflight.len() > 1 && !one_session {
            return None;
        }
        inflight
            .values()
            .filter(|c| c.capabilities.as_ref().is_some_and(&capable))
            .min_by_key(|c| c.started)
            .cloned()
    }

    /// A permit to forward one notification; `None` (drop it) when this backend already has
    /// the maximum in flight, so a flood cannot pile up tasks and payloads in the gateway.
    pub fn notification_permit(&self) -> Option<tokio::sync::SemaphorePermit<'_>> {
        self.notify_permits.try_acquire().ok()
    }

    pub fn caller_by_token(&self, token: &ProgressToken) -> Option<Caller> {
        lock(&self.inflight).get(token).cloned()
    }

    /// Whether the live connection declared the logging capability.
    pub fn supports_logging(&self) -> bool {
        read(&self.live)
            .as_ref()
            .and_then(|peer| peer.peer_info())
            .is_some_and(|info| info.capabilities.logging.is_some())
    }

    /// The oldest call in flight on this backend, if any.
    pub fn oldest_caller(&self) -> Option<Caller> {
        self.caller_for(|_| true)
    }

    pub fn request_refresh(&self) {
        self.refresh.notify_one();
    }

    fn unavailable(&self) -> ErrorData {
        ErrorData::new(
            ErrorCode::INTERNAL_ERROR,
            format!("backend {:?} is unavailable (restarting)", self.name),
            Some(serde_json::json!({ "backend": self.name })),
        )
    }

    /// Forwards one request to this backend on behalf of a client, passing progress and
    /// cancellation through, under the per-call deadline.
    pub async fn forward(
        &self,
        request: ClientRequest,
        caller: &RequestContext<RoleServer>,
        limits: &Limits,
    ) -> Result<ServerResult, ErrorData> {
        let deadline = tokio::time::Instant::now() + limits.call_timeout;
        let _permit = tokio::time::timeout_at(deadline, self.permits.acquire())
            .await
            .map_err(|_| {
                ErrorData::new(
                    ErrorCode::INTERNAL_ERROR,
                    format!(
                        "backend {:?} is saturated: no call slot freed in time",
                        self.name
                    ),
                    Some(serde_json::json!({ "backend": self.name })),
                )
            })?
            .map_err(|_| self.unavailable())?;
        let peer = read(&self.live).clone().ok_or_else(|| self.unavailable())?;
        // Egress audit records name the tool call that caused them. Calls in flight at once
        // share one sandbox, so the most recent call is named (documented as approximate).
        let hook = read(&self.tool_call_hook).clone();
        let _attribution = match (&request, hook) {
            (ClientRequest::CallToolRequest(call), Some(hook)) => {
                hook(Some(format!("{}/{}", self.name, call.params.name)));
                Some(ClearOnDrop(hook))
            }
            _ => None,
        };

        let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
        let options = PeerRequestOptions::with_timeout(remaining.max(Duration::from_millis(1)))
            .with_meta(forwardable_meta(&caller.meta));
        let handle = peer
            .send_request_with_option(request, options)
            .await
            .map_err(|_| self.unavailable())?;
        let call_id = NEXT_CALL_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let _guard = InflightGuard {
            backend: self,
            token: handle.progress_token.clone(),
            call_id,
        };
        let (upstream, mut upstream_requests) = mpsc::channel(4);
        let stateless = caller
            .protocol_version()
            .is_some_and(|v| v.as_str() >= ProtocolVersion::V_2026_07_28.as_str());
        lock(&self.inflight).insert(
            handle.progress_token.clone(),
            Caller {
                peer: caller.peer.clone(),
                progress_token: caller.meta.get_progress_token(),
                capabilities: if stateless {
                    None
                } else {
                    caller.client_capabilities()
                },
                upstream,
                session: caller
                    .extensions
                    .get::<http::request::Parts>()
                    .and_then(|parts| parts.headers.get("mcp-session-id"))
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned),
                call_id,
                started: Instant::now(),
            },
        );

        let request_id = handle.id.clone();
        let backend_peer = handle.peer.clone();
        let mut response = std::pin::pin!(handle.await_response());
        // Server-to-client requests run here, inside the client's request task, so rmcp
        // associates them with the client's call (its SSE stream in the legacy protocol).
        let mut relayed = FuturesUnordered::new();
        let mut relayed_total = 0;
        loop {
            tokio::select! {
                result = &mut response => return result.map_err(|e| self.call_error(e)),
                Some(UpstreamRequest { request, reply }) = upstream_requests.recv() => {
                    if relayed_total == MAX_RELAYED_PER_CALL {
                        let _ = reply.send(Err(ErrorData::invalid_request(
                            format!("a backend may make at most {MAX_RELAYED_PER_CALL} requests to the client per call"),
                            None,
                        )));
                        continue;
                    }
                    relayed_total += 1;
                    let client = caller.peer.clone();
                    relayed.push(async move {
                        let answer = client.send_request(request).await.map_err(|e| match e {
                            ServiceError::McpError(error) => error,
                            other => ErrorData::internal_error(format!("client did not answer: {other}"), None),
                        });
                        let _ = reply.send(answer);
                    });
                }
                Some(()) = relayed.next(), if !relayed.is_empty() => {}
                () = caller.ct.cancelled() => {
                    // The client cancelled: tell the backend, so it can stop working too.
                    let _ = backend_peer
                        .notify_cancelled(rmcp::model::CancelledNotificationParam::new(
                            Some(request_id),
                            Some("cancelled by the client".into()),
                        ))
                        .await;
                    return Err(ErrorData::new(ErrorCode::INTERNAL_ERROR, "request cancelled", None));
                }
            }
        }
    }

    fn call_error(&self, error: ServiceError) -> ErrorData {
        match error {
            // The backend's own JSON-RPC error goes back to the client unchanged.
            ServiceError::McpError(error) => error,
            ServiceError::Timeout { timeout } => ErrorData::new(
                ErrorCode::INTERNAL_ERROR,
                format!(
                    "backend {:?} did not answer within {}s",
                    self.name,
                    timeout.as_secs_f32().ceil()
                ),
                Some(serde_json::json!({ "backend": self.name })),
            ),
            ServiceError::TransportClosed | ServiceError::TransportSend(_) => ErrorData::new(
                ErrorCode::INTERNAL_ERROR,
                format!("backend {:?} stopped while handling the call", self.name),
                Some(serde_json::json!({ "backend": self.name })),
            ),
            other => ErrorData::new(
                ErrorCode::INTERNAL_ERROR,
                format!("backend {:?} failed: {other}", self.name),
                Some(serde_json::json!({ "backend": self.name })),
            ),
        }
    }
}

/// Subscribed clients of one resource, by MCP session id.
type SessionPeers = HashMap<String, Peer<RoleServer>>;

/// Everything shared by the gateway's sessions.
pub struct Hub {
    pub limits: Limits,
    backends: RwLock<BTreeMap<String, Arc<Backend>>>,
    gate: Option<Arc<dyn ToolGate>>,
    catalog: RwLock<Arc<Catalog>>,
    changes: broadcast::Sender<ListChange>,
    shutdown: CancellationToken,
    /// `resources/subscribe` registrations: (backend, backend URI) -> session id -> client.
    subscriptions: Mutex<HashMap<(String, String), SessionPeers>>,
    supervisors: Mutex<HashMap<String, tokio::task::JoinHandle<()>>>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("backends", &read(&self.backends).keys())
            .finish()
    }
}

/// Decides which of a backend's tools clients may see: the rug-pull check. A tool whose
/// definition changed since it was first recorded stays hidden until an operator approves it.
pub trait ToolGate: Send + Sync {
    fn admit<'a>(
        &'a self,
        backend: &'a str,
        tools: Vec<rmcp::model::Tool>,
    ) -> futures::future::BoxFuture<'a, Vec<rmcp::model::Tool>>;
}

/// Restart delays: 250 ms doubling to 30 s; a backend that stayed up a minute starts over.
const BACKOFF_START: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
const STABLE_AFTER: Duration = Duration::from_secs(60);
/// Most items accepted from one backend per list kind, and most pages followed.
const MAX_LIST_ITEMS: usize = 10_000;
const MAX_LIST_PAGES: usize = 100;

impl Hub {
    /// Creates the hub and starts one supervisor per backend.
    pub fn start(
        limits: Limits,
        backends: Vec<crate::NamedLauncher>,
        shutdown: CancellationToken,
    ) -> Arc<Self> {
        Self::start_gated(limits, backends, shutdown, None)
    }

    /// Like [`Hub::start`], with every backend's tools passed through `gate`.
    pub fn start_gated(
        limits: Limits,
        backends: Vec<crate::NamedLauncher>,
        shutdown: CancellationToken,
        gate: Option<Arc<dyn ToolGate>>,
    ) -> Arc<Self> {
        let (changes, _) = broadcast::channel(64);
        let hub = Arc::new(Hub {
            limits,
            backends: RwLock::new(BTreeMap::new()),
            gate,
            catalog: RwLock::new(Arc::new(Catalog::default())),
            changes,
            shutdown,
            subscriptions: Mutex::new(HashMap::new()),
            supervisors: Mutex::new(HashMap::new()),
        });
        for (name, launcher) in backends {
            hub.add_backend(name, launcher);
        }
        hub
    }

    /// Adds a backend and starts supervising it; false if the name is taken. Clients see its
    /// tools (and a `list_changed`) once it is up.
    pub fn add_backend(self: &Arc<Self>, name: String, launcher: Box<dyn Launcher>) -> bool {
        let backend = {
            let mut backends = write(&self.backends);
            if backends.contains_key(&name) {
                return false;
            }
            let backend = Arc::new(Backend {
                name: name.clone(),
                launcher,
                live: RwLock::new(None),
                lists: RwLock::new(None),
                status: RwLock::new(BackendStatus::Starting),
                inflight: Mutex::new(HashMap::new()),
                permits: Semaphore::new(self.limits.max_inflight_per_backend),
                notify_permits: Semaphore::new(MAX_NOTIFICATIONS_IN_FLIGHT),
                refresh: Notify::new(),
                first_attempt_done: tokio::sync::watch::Sender::new(false),
                stop: self.shutdown.child_token(),
                tool_call_hook: RwLock::new(None),
            });
            backends.insert(name.clone(), backend.clone());
            backend
        };
        let task = tokio::spawn(supervise(self.clone(), backend));
        lock(&self.supervisors).insert(name, task);
        true
    }

    /// Fetches a backend's lists again (after an operator approved a changed tool, say).
    pub fn refresh_backend(&self, name: &str) {
        if let Some(backend) = self.backend(name) {
            backend.refresh.notify_one();
        }
    }

    /// Stops and forgets a backend (its process is killed); clients get a `list_changed`.
    /// False if there was no such backend.
    pub async fn remove_backend(&self, name: &str) -> bool {
        let Some(backend) = write(&self.backends).remove(name) else {
            return false;
        };
        backend.stop.cancel();
        let task = lock(&self.supervisors).remove(name);
        if let Some(task) = task {
            let _ = task.await;
        }
        self.rebuild_catalog();
        true
    }

    /// Records that a session wants `notifications/resources/updated` for a backend resource.
    pub fn subscribe_resource(
        &self,
        backend: &str,
        uri: &str,
        session: &str,
        peer: Peer<RoleServer>,
    ) {
        let mut subscriptions = lock(&self.subscriptions);
        let sessions = subscriptions
            .entry((backend.to_owned(), uri.to_owned()))
            .or_default();
        sessions.retain(|_, p| !p.is_transport_closed());
        sessions.insert(session.to_owned(), peer);
    }

    /// Forgets a session's subscription; true when no session is subscribed any more.
    pub fn unsubscribe_resource(&self, backend: &str, uri: &str, session: &str) -> bool {
        let mut subscriptions = lock(&self.subscriptions);
        let key = (backend.to_owned(), uri.to_owned());
        let Some(sessions) = subscriptions.get_mut(&key) else {
            return true;
        };
        sessions.remove(session);
        sessions.retain(|_, p| !p.is_transport_closed());
        let empty = sessions.is_empty();
        if empty {
            subscriptions.remove(&key);
        }
        empty
    }

    /// The sessions subscribed to a backend resource.
    pub fn resource_subscribers(&self, backend: &str, uri: &str) -> Vec<Peer<RoleServer>> {
        lock(&self.subscriptions)
            .get(&(backend.to_owned(), uri.to_owned()))
            .map(|sessions| {
                sessions
                    .values()
                    .filter(|p| !p.is_transport_closed())
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Stops every backend (killing its processes) and waits for the supervisors to finish.
    pub async fn stop(&self) {
        self.shutdown.cancel();
        let tasks = std::mem::take(&mut *lock(&self.supervisors));
        for (_, task) in tasks {
            let _ = task.await;
        }
    }

    pub fn catalog(&self) -> Arc<Catalog> {
        read(&self.catalog).clone()
    }

    pub fn backend(&self, name: &str) -> Option<Arc<Backend>> {
        read(&self.backends).get(name).cloned()
    }

    /// A snapshot of the backends.
    pub fn backends(&self) -> Vec<Arc<Backend>> {
        read(&self.backends).values().cloned().collect()
    }

    pub fn subscribe(&self) -> broadcast::Receiver<ListChange> {
        self.changes.subscribe()
    }

    pub fn shutdown_token(&self) -> &CancellationToken {
        &self.shutdown
    }

    /// Resolves once every backend has had its first start attempt (up or failed).
    pub async fn first_attempts_done(&self) {
        for backend in self.backends() {
            let mut rx = backend.first_attempt_done.subscribe();
            let _ = rx.wait_for(|done| *done).await;
        }
    }

    /// True once every backend has had its first start attempt.
    pub fn ready(&self) -> bool {
        read(&self.backends)
            .values()
            .all(|b| *b.first_attempt_done.borrow())
    }

    /// Rebuilds the catalog from the live backends and tells sessions what changed.
    fn rebuild_catalog(&self) {
        let lists: BTreeMap<String, BackendLists> = read(&self.backends)
            .iter()
            .filter_map(|(name, b)| b.lists().map(|l| (name.clone(), l)))
            .collect();
        let new = Arc::new(Catalog::build(&lists));
        let old = std::mem::replace(&mut *write(&self.catalog), new.clone());
        let change = ListChange {
            tools: !same_items(
                old.tools.values().map(|r| &r.exposed),
                new.tools.values().map(|r| &r.exposed),
            ),
            prompts: !same_items(
                old.prompts.values().map(|r| &r.exposed),
                new.prompts.values().map(|r| &r.exposed),
            ),
            resources: old.resources != new.resources
                || old.resource_templates != new.resource_templates,
        };
        if change.tools || change.prompts || change.resources {
            // No receivers is fine: nobody is connected.
            let _ = self.changes.send(change);
        }
    }
}

fn same_items<'a, T: PartialEq + 'a>(
    a: impl ExactSizeIterator<Item = &'a T>,
    b: impl ExactSizeIterator<Item = &'a T>,
) -> bool {
    a.len() == b.len() && a.zip(b).all(|(x, y)| x == y)
}

/// Fetches every list a backend declared, bounded in pages and items.
async fn fetch_lists(peer: &Peer<RoleClient>, max_bytes: usize) -> Result<BackendLists, String> {
    let capabilities = peer
        .peer_info()
        .map(|info| info.capabilities.clone())
        .unwrap_or_default();
    let mut lists = BackendLists::default();

    macro_rules! all_pages {
        ($method:ident, $field:ident) => {{
            let mut cursor = None;
            for _page in 0..MAX_LIST_PAGES {
                let page = peer
                    .$method(Some(PaginatedRequestParams::default().with_cursor(cursor)))
                    .await
                    .map_err(|e| format!("{} failed: {e}", stringify!($method)))?;
                lists.$field.extend(page.$field);
                if lists.$field.len() > MAX_LIST_ITEMS {
                    return Err(format!(
                        "{} returned more than {MAX_LIST_ITEMS} items",
                        stringify!($method)
                    ));
                }
                cursor = page.next_cursor;
                if cursor.is_none() {
                    break;
                }
            }
            if cursor.is_some() {
                return Err(format!(
                    "{} paginated past {MAX_LIST_PAGES} pages",
                    stringify!($method)
                ));
            }
        }};
    }

    if capabilities.tools.is_some() {
        all_pages!(list_tools, tools);
    }
    if capabilities.prompts.is_some() {
        all_pages!(list_prompts, prompts);
    }
    if capabilities.resources.is_some() {
        all_pages!(list_resources, resources);
        all_pages!(list_resource_templates, resource_templates);
    }
    // Every client's list response carries all of this, so one backend's lists together must
    // fit in one message.
    let size = json_size(&lists.tools)
        + json_size(&lists.prompts)
        + json_size(&lists.resources)
        + json_size(&lists.resource_templates);
    if size > max_bytes {
        return Err(format!(
            "its lists total {size} bytes, more than the {max_bytes}-byte message limit"
        ));
    }
    Ok(lists)
}

fn json_size<T: serde::Serialize>(items: &[T]) -> usize {
    serde_json::to_vec(items).map_or(usize::MAX, |bytes| bytes.len())
}

/// Keeps one backend running for the life of the gateway.
async fn supervise(hub: Arc<Hub>, backend: Arc<Backend>) {
    let mut attempt: u32 = 0;
    let mut restarts: u32 = 0;
    loop {
        *write(&backend.status) = BackendStatus::Starting;
        let started = Instant::now();
        let outcome = run_once(&hub, &backend).await;
        // Whatever happened, this connection is gone: drop out of the catalog.
        *write(&backend.live) = None;
        *write(&backend.lists) = None;
        hub.rebuild_catalog();
        backend.first_attempt_done.send_replace(true);
        if backend.stop.is_cancelled() {
            return;
        }
        if started.elapsed() >= STABLE_AFTER {
            attempt = 0;
        }
        let delay = BACKOFF_START
            .saturating_mul(2u32.saturating_pow(attempt))
            .min(BACKOFF_MAX);
        attempt = attempt.saturating_add(1);
        restarts = restarts.saturating_add(1);
        tracing::warn!(backend = %backend.name, reason = %outcome, retry_in_ms = delay.as_millis() as u64, "backend down");
        *write(&backend.status) = BackendStatus::Down {
            reason: outcome,
            restarts,
        };
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = backend.stop.cancelled() => return,
        }
    }
}

/// Starts the backend once and serves it until it ends; returns why it ended.
async fn run_once(hub: &Arc<Hub>, backend: &Arc<Backend>) -> String {
    let limits = &hub.limits;
    let connection = match backend.launcher.launch().await {
        Ok(connection) => connection,
        Err(e) => return e.to_string(),
    };
    *write(&backend.tool_call_hook) = connection.on_tool_call.clone();
    let reader = StdoutGuard::new(connection.reader, limits.max_message_bytes);
    let transport = AsyncRwTransport::new_client(reader, connection.writer)
        .with_max_line_length(limits.max_message_bytes);
    let handler = BackendClient::new(Arc::downgrade(backend), Arc::downgrade(hub));

    let init = tokio::time::timeout(limits.call_timeout, handler.serve(transport));
    let running: RunningService<RoleClient, BackendClient> = tokio::select! {
        result = init => match result {
            Ok(Ok(running)) => running,
            Ok(Err(e)) => return format!("initialize failed: {e}"),
            Err(_) => return format!("no initialize answer within {}s", limits.call_timeout.as_secs()),
        },
        () = backend.stop.cancelled() => return "shutting down".into(),
    };
    let peer = running.peer().clone();
    let closed = running.cancellation_token();
    let mut waiting = std::pin::pin!(running.waiting());

    let mut first = true;
    let reason = loop {
        let refreshed = tokio::time::timeout(
            limits.call_timeout,
            fetch_lists(&peer, limits.max_message_bytes),
        )
        .await;
        match refreshed {
            Ok(Ok(mut lists)) => {
                if let Some(gate) = &hub.gate {
                    lists.tools = gate.admit(&backend.name, lists.tools).await;
                }
                let tools = lists.tools.len();
                *write(&backend.lists) = Some(lists);
                *write(&backend.live) = Some(peer.clone());
                *write(&backend.status) = BackendStatus::Up { tools };
                hub.rebuild_catalog();
                if first {
                    tracing::info!(backend = %backend.name, tools, "backend up");
                    backend.first_attempt_done.send_replace(true);
                    first = false;
                }
            }
            Ok(Err(e)) => break format!("listing failed: {e}"),
            Err(_) => break "listing timed out".to_owned(),
        }
        tokio::select! {
            quit = &mut waiting => break match quit {
                Ok(reason) => format!("connection ended ({reason:?})"),
                Err(e) => format!("connection task failed: {e}"),
            },
            () = backend.refresh.notified() => continue,
            () = backend.stop.cancelled() => break "shutting down".to_owned(),
        }
    };
    closed.cancel();
    // Dropping the guard kills the process group.
    drop(connection.guard);
    reason
}
