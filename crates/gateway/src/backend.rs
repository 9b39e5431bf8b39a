//! One backend: its launcher, its live connection, its calls in flight, and how a call is
//! forwarded to it (bounded in time and concurrency, progress and server-to-client requests
//! routed back to the calling client).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use rmcp::model::{
    ClientCapabilities, ClientRequest, ErrorCode, ErrorData, ProgressToken, ProtocolVersion,
    RequestMetaObject, ServerResult,
};
use rmcp::service::{Peer, PeerRequestOptions, RequestContext, ServiceError};
use rmcp::{RoleClient, RoleServer};
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::call_relay::{CallRelay, CallerQueue};
use crate::catalog::BackendLists;
use crate::launcher::{Launcher, ToolCallHook};
use gig_config::Limits;

use crate::sync::{lock, read};

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
    /// Hands a backend's requests and notifications to the task serving the client's call,
    /// so rmcp sends them on that call's response stream, in order.
    pub queue: CallerQueue,
    /// The client's MCP session, when it has one.
    session: Option<String>,
    call_id: u64,
    started: Instant,
}

/// One backend: its launcher, its live connection (if any) and its calls in flight.
pub struct Backend {
    pub name: String,
    pub(crate) launcher: Box<dyn Launcher>,
    pub(crate) live: RwLock<Option<Peer<RoleClient>>>,
    pub(crate) lists: RwLock<Option<BackendLists>>,
    pub(crate) status: RwLock<BackendStatus>,
    /// Keyed by the progress token rmcp put on the forwarded request (unique per connection).
    pub(crate) inflight: Mutex<HashMap<ProgressToken, Caller>>,
    pub(crate) permits: Semaphore,
    /// Bytes of requests on their way to this backend (one permit per byte): a backend that
    /// stops reading cannot make the gateway hold more than this of its calls' arguments.
    pub(crate) queued_bytes: Semaphore,
    queued_bytes_max: usize,
    pub(crate) notify_permits: Arc<Semaphore>,
    pub(crate) refresh: Notify,
    pub(crate) first_attempt_done: tokio::sync::watch::Sender<bool>,
    /// Cancelled when this backend is removed (a child of the hub's shutdown token).
    pub(crate) stop: CancellationToken,
    /// The live connection's tool-call hook (egress audit attribution).
    pub(crate) tool_call_hook: RwLock<Option<ToolCallHook>>,
    /// Recent stderr lines, scrubbed (for operators).
    pub(crate) stderr_tail: std::sync::Arc<crate::launcher::StderrTail>,
    /// Wakes the supervisor to restart the server now (an operator's request).
    pub(crate) restart: Notify,
    /// In the catalog (the server's own backend), or one caller's instance of it, which is not.
    pub(crate) listed: bool,
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
struct ClearOnDrop(ToolCallHook);

impl Drop for ClearOnDrop {
    fn drop(&mut self) {
        (self.0)(None);
    }
}

/// Distinguishes calls across backend connections.
static NEXT_CALL_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// Notifications from one backend held by the gateway at once (queued for a call's client or
/// being sent); more are dropped.
const MAX_NOTIFICATIONS_IN_FLIGHT: usize = 64;
/// How long forwarding one notification to a client may take before it is dropped.
pub const NOTIFY_TIMEOUT: Duration = Duration::from_secs(2);

/// How long after the call deadline a call is abandoned even though rmcp has not given up
/// (it waits to deliver its cancellation first).
const HARD_DEADLINE_MARGIN: Duration = Duration::from_secs(1);

/// Length of `value` as JSON, counted without building the text.
fn json_size(value: &impl serde::Serialize) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    match serde_json::to_writer(&mut count, value) {
        Ok(()) => count.0,
        Err(_) => usize::MAX,
    }
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
    /// A backend not yet started; `stop` is a child of the hub's shutdown token.
    pub(crate) fn new(
        name: String,
        launcher: Box<dyn Launcher>,
        max_inflight: usize,
        max_queued_bytes: usize,
        stop: CancellationToken,
    ) -> Self {
        // `acquire_many` counts in u32.
        let max_queued_bytes = max_queued_bytes.min(u32::MAX as usize);
        Backend {
            name,
            launcher,
            live: RwLock::new(None),
            lists: RwLock::new(None),
            status: RwLock::new(BackendStatus::Starting),
            inflight: Mutex::new(HashMap::new()),
            permits: Semaphore::new(max_inflight),
            queued_bytes: Semaphore::new(max_queued_bytes),
            queued_bytes_max: max_queued_bytes,
            notify_permits: Arc::new(Semaphore::new(MAX_NOTIFICATIONS_IN_FLIGHT)),
            refresh: Notify::new(),
            first_attempt_done: tokio::sync::watch::Sender::new(false),
            stop,
            tool_call_hook: RwLock::new(None),
            stderr_tail: Default::default(),
            restart: Notify::new(),
            listed: true,
        }
    }

    /// One caller's instance of a server: supervised alike, but its lists stay out of the
    /// catalog and the rug-pull check (the server's own backend is what clients are shown).
    pub(crate) fn unlisted(mut self) -> Self {
        self.listed = false;
        self
    }

    /// The server's recent stderr lines, oldest first, scrubbed.
    pub fn recent_stderr(&self) -> Vec<String> {
        self.stderr_tail.lines()
    }

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

    /// A permit to hold one notification from this backend until it has been forwarded;
    /// `None` (drop it) when the maximum is held, so a flood cannot pile up tasks and payloads
    /// in the gateway.
    pub fn notification_permit(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        self.notify_permits.clone().try_acquire_owned().ok()
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

    /// Reserves `request`'s size in this backend's queued-bytes budget, or refuses it at once:
    /// calls do not wait in memory for a backend that is not taking them.
    fn reserve_bytes(
        &self,
        request: &ClientRequest,
    ) -> Result<tokio::sync::SemaphorePermit<'_>, ErrorData> {
        let size = json_size(request);
        let refused = || {
            ErrorData::new(
                ErrorCode::INTERNAL_ERROR,
                format!(
                    "backend {:?} is saturated: more than {} bytes of calls queued",
                    self.name, self.queued_bytes_max
                ),
                Some(serde_json::json!({ "backend": self.name })),
            )
        };
        let size = u32::try_from(size.max(1)).map_err(|_| refused())?;
        if size as usize > self.queued_bytes_max {
            return Err(refused());
        }
        self.queued_bytes
            .try_acquire_many(size)
            .map_err(|_| refused())
    }

    /// Forwards one request to this backend on behalf of a client, passing progress and
    /// cancellation through, under the per-call deadline (which also covers writing the
    /// request to a backend that is slow to read it).
    pub async fn forward(
        &self,
        request: ClientRequest,
        caller: &RequestContext<RoleServer>,
        limits: &Limits,
    ) -> Result<ServerResult, ErrorData> {
        let deadline = tokio::time::Instant::now() + limits.call_timeout;
        let _bytes = self.reserve_bytes(&request)?;
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
                // Called inside the backend call's span (see `Aggregator::call_tool_in`).
                hook(Some((
                    format!("{}/{}", self.name, call.params.name),
                    tracing::Span::current(),
                )));
                Some(ClearOnDrop(hook))
            }
            _ => None,
        };

        let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
        let options = PeerRequestOptions::with_timeout(remaining.max(Duration::from_millis(1)))
            .with_meta(forwardable_meta(&caller.meta));
        let handle =
            tokio::time::timeout_at(deadline, peer.send_request_with_option(request, options))
                .await
                .map_err(|_| self.timed_out(limits.call_timeout))?
                .map_err(|_| self.unavailable())?;
        let call_id = NEXT_CALL_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let _guard = InflightGuard {
            backend: self,
            token: handle.progress_token.clone(),
            call_id,
        };
        let (queue, mut relay) = CallRelay::new(caller.peer.clone());
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
                queue,
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
        // rmcp's own timeout fires at the deadline but then waits to send its cancellation,
        // which a backend that stopped reading never takes: this one does not wait.
        let hard_deadline = deadline + HARD_DEADLINE_MARGIN;
        loop {
            tokio::select! {
                result = &mut response => {
                    // The backend is done: its call slot and bytes are free while the client
                    // is given what is left.
                    drop((_guard, _permit, _bytes));
                    relay.flush(hard_deadline).await;
                    return result.map_err(|e| self.call_error(e));
                }
                () = tokio::time::sleep_until(hard_deadline) => {
                    return Err(self.timed_out(limits.call_timeout));
                }
                () = relay.step() => {}
                () = caller.ct.cancelled() => {
                    // The client cancelled: tell the backend, so it can stop working too.
                    let _ = tokio::time::timeout(
                        NOTIFY_TIMEOUT,
                        backend_peer.notify_cancelled(rmcp::model::CancelledNotificationParam::new(
                            Some(request_id),
                            Some("cancelled by the client".into()),
                        )),
                    )
                    .await;
                    return Err(ErrorData::new(ErrorCode::INTERNAL_ERROR, "request cancelled", None));
                }
            }
        }
    }

    fn timed_out(&self, timeout: Duration) -> ErrorData {
        ErrorData::new(
            ErrorCode::INTERNAL_ERROR,
            format!(
                "backend {:?} did not answer within {}s",
                self.name,
                timeout.as_secs_f32().ceil()
            ),
            Some(serde_json::json!({ "backend": self.name })),
        )
    }

    fn call_error(&self, error: ServiceError) -> ErrorData {
        match error {
            // The backend's own JSON-RPC error goes back to the client unchanged.
            ServiceError::McpError(error) => error,
            ServiceError::Timeout { timeout } => self.timed_out(timeout),
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
