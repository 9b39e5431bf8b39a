//! Supervision: keeps one backend running for the life of the gateway — start, initialize,
//! fetch its lists (bounded), serve it until it ends, restart with backoff. A backend that
//! stops reading its stdin for the call timeout is ended like one that crashed. Local and
//! remote backends are supervised alike: only the channel differs.

mod stdin_guard;

use std::sync::Arc;
use std::time::{Duration, Instant};

use rmcp::RoleClient;
use rmcp::ServiceExt;
use rmcp::model::{ClientRequest, PaginatedRequestParams, PingRequest};
use rmcp::service::{Peer, RunningService};
use rmcp::transport::async_rw::AsyncRwTransport;
use tokio_util::sync::CancellationToken;

use crate::backend::{Backend, BackendStatus};
use crate::backend_client::BackendClient;
use crate::catalog::BackendLists;
use crate::hub::Hub;
use crate::launcher::Channel;
use crate::stdout_guard::StdoutGuard;
use crate::sync::write;
use stdin_guard::StdinGuard;

/// Restart delays: 250 ms doubling to 30 s; a backend that stayed up a minute starts over.
const BACKOFF_START: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
const STABLE_AFTER: Duration = Duration::from_secs(60);
/// Most items accepted from one backend per list kind, and most pages followed.
const MAX_LIST_ITEMS: usize = 10_000;
const MAX_LIST_PAGES: usize = 100;
/// Least time between two fetches of a backend's lists: a backend flooding `list_changed`
/// gets its lists read (and its tools fingerprinted) at most this often.
const MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(1);

/// Fetches every list a backend declared, bounded in pages and items; only its tools when
/// `tools_only` (see [`crate::Launcher::lists_as_a_user`]).
async fn fetch_lists(
    peer: &Peer<RoleClient>,
    max_bytes: usize,
    tools_only: bool,
) -> Result<BackendLists, String> {
    let mut capabilities = peer
        .peer_info()
        .map(|info| info.capabilities.clone())
        .unwrap_or_default();
    if tools_only {
        capabilities.prompts = None;
        capabilities.resources = None;
    }
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
pub(crate) async fn supervise(hub: Arc<Hub>, backend: Arc<Backend>) {
    let mut attempt: u32 = 0;
    let mut restarts: u32 = 0;
    loop {
        *write(&backend.status) = BackendStatus::Starting;
        let started = Instant::now();
        let outcome = run_once(&hub, &backend).await;
        let operator_restart = outcome == RESTARTED;
        // Whatever happened, this connection is gone: drop out of the catalog.
        *write(&backend.live) = None;
        *write(&backend.lists) = None;
        if backend.listed {
            hub.rebuild_catalog();
        }
        backend.first_attempt_done.send_replace(true);
        if backend.stop.is_cancelled() {
            return;
        }
        if started.elapsed() >= STABLE_AFTER || operator_restart {
            attempt = 0;
        }
        let delay = if operator_restart {
            Duration::ZERO
        } else {
            BACKOFF_START
                .saturating_mul(2u32.saturating_pow(attempt))
                .min(BACKOFF_MAX)
        };
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

/// Why a connection ended when an operator asked for a restart.
const RESTARTED: &str = "restarted by an operator";

/// Starts the backend once and serves it until it ends; returns why it ended.
async fn run_once(hub: &Arc<Hub>, backend: &Arc<Backend>) -> String {
    let limits = &hub.limits;
    // A launch is bounded like a call: a remote server that accepts the connection and never
    // answers must not hold readiness, a restart or shutdown forever.
    let launched = tokio::select! {
        launched = tokio::time::timeout(limits.call_timeout, backend.launcher.launch()) => launched,
        () = backend.restart.notified() => return RESTARTED.to_owned(),
        () = backend.stop.cancelled() => return "shutting down".into(),
    };
    let connection = match launched {
        Ok(Ok(connection)) => connection,
        Ok(Err(e)) => return e.to_string(),
        Err(_) => {
            return format!("did not start within {}s", limits.call_timeout.as_secs());
        }
    };
    *write(&backend.tool_call_hook) = connection.on_tool_call.clone();
    let mut connection = connection;
    if let Some(stderr) = connection.stderr.take() {
        tokio::spawn(crate::launcher::log_stderr(
            backend.name.clone(),
            stderr,
            backend.stderr_tail.clone(),
        ));
    }
    let handler = BackendClient::new(Arc::downgrade(backend), Arc::downgrade(&hub.subscriptions));
    // A byte channel gets its lines bounded and a stalled reader noticed; a transport that
    // speaks for itself bounds its own messages (rmcp's HTTP client: SSE event size).
    // A remote server has no process whose end the gateway would see: it is pinged instead.
    let remote = matches!(connection.channel, Channel::Serve(_));
    let (serving, stalled) = match connection.channel {
        Channel::Lines { reader, writer } => {
            let reader = StdoutGuard::new(reader, limits.max_message_bytes);
            let (writer, stalled) = StdinGuard::new(writer, limits.call_timeout);
            let transport = AsyncRwTransport::new_client(reader, writer)
                .with_max_line_length(limits.max_message_bytes);
            (Box::pin(handler.serve(transport)) as ServeFuture, stalled)
        }
        Channel::Serve(serve) => (serve(handler), CancellationToken::new()),
    };
    let init = tokio::time::timeout(limits.call_timeout, serving);
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
    let mut listed_at;
    let reason = 'listing: loop {
        listed_at = Instant::now();
        let refreshed = tokio::time::timeout(
            limits.call_timeout,
            fetch_lists(
                &peer,
                limits.max_message_bytes,
                backend.launcher.lists_as_a_user(),
            ),
        )
        .await;
        match refreshed {
            Ok(Ok(mut lists)) => {
                if let Some(gate) = hub.gate.as_ref().filter(|_| backend.listed) {
                    lists.tools = gate.admit(&backend.name, lists.tools).await;
                }
                lists.measure();
                let tools = lists.tools.len();
                *write(&backend.lists) = Some(lists);
                *write(&backend.live) = Some(peer.clone());
                *write(&backend.status) = BackendStatus::Up { tools };
                if backend.listed {
                    hub.rebuild_catalog();
                }
                if first {
                    tracing::info!(backend = %backend.name, tools, "backend up");
                    backend.first_attempt_done.send_replace(true);
                    first = false;
                }
            }
            Ok(Err(e)) => break format!("listing failed: {e}"),
            Err(_) => break "listing timed out".to_owned(),
        }
        // Until the lists must be read again (`continue 'listing`) or the connection ends.
        let ended = loop {
            tokio::select! {
                quit = &mut waiting => break match quit {
                    Ok(reason) => format!("connection ended ({reason:?})"),
                    Err(e) => format!("connection task failed: {e}"),
                },
                () = backend.refresh.notified() => {
                    let wait = MIN_REFRESH_INTERVAL.saturating_sub(listed_at.elapsed());
                    tokio::select! {
                        () = tokio::time::sleep(wait) => continue 'listing,
                        () = backend.stop.cancelled() => break "shutting down".to_owned(),
                    }
                }
                () = tokio::time::sleep(limits.call_timeout), if remote => {
                    if !answers_ping(&peer, limits.call_timeout).await {
                        break format!(
                            "did not answer a ping within {}s",
                            limits.call_timeout.as_secs()
                        );
                    }
                }
                () = backend.restart.notified() => break RESTARTED.to_owned(),
                () = stalled.cancelled() => break format!(
                    "stopped reading its stdin for {}s",
                    limits.call_timeout.as_secs()
                ),
                () = backend.stop.cancelled() => break "shutting down".to_owned(),
            }
        };
        break ended;
    };
    closed.cancel();
    // Dropping the guard kills the process group (or closes the bridge).
    drop(connection.guard);
    reason
}

/// Whether the server answers a `ping` within `timeout`. A remote server that accepts
/// connections but has stopped answering would otherwise stay listed with every call timing
/// out, and never be reconnected.
async fn answers_ping(peer: &Peer<RoleClient>, timeout: Duration) -> bool {
    let ping = ClientRequest::PingRequest(PingRequest {
        method: Default::default(),
        extensions: Default::default(),
    });
    // An error answer (a server without `ping`) is still an answer.
    matches!(
        tokio::time::timeout(timeout, peer.send_request(ping)).await,
        Ok(Ok(_) | Err(rmcp::service::ServiceError::McpError(_)))
    )
}

type ServeFuture = std::pin::Pin<
    Box<
        dyn std::future::Future<
                Output = Result<
                    RunningService<RoleClient, BackendClient>,
                    rmcp::service::ClientInitializeError,
                >,
            > + Send,
    >,
>;
