//! The hub: every backend's supervisor, the current catalog, and the calls in flight.
//!
//! Each backend has its own supervisor task, permit pool and in-flight table, so a backend
//! that crashes, hangs or floods only ever fails its own calls. The catalog lists live
//! backends only (fail-open): a backend that is down simply drops out until it is back.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, RwLock};

use gig_config::{InstanceMode, Limits, ServerName};
use rmcp::model::ErrorData;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::backend::Backend;
use crate::catalog::{BackendLists, Catalog};
use crate::instances::{InstanceOwner, InstancePool, Lease};
use crate::launcher::Launcher;
use crate::profile::Principal;
use crate::subscriptions::ResourceSubscriptions;
use crate::sync::{lock, read, write};

/// A backend's calls in flight may together carry this many maximum-size messages of
/// arguments; more are refused at once (see `Backend::forward`).
pub const QUEUED_MESSAGES_PER_BACKEND: usize = 4;

/// Which aggregated list changed; sessions turn this into `notifications/*/list_changed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListChange {
    pub tools: bool,
    pub prompts: bool,
    pub resources: bool,
}

impl ListChange {
    /// The next change a subscriber hears of; `None` once the hub is gone. A subscriber that
    /// fell behind hears that everything changed, which is always correct.
    pub(crate) fn next(
        received: Result<ListChange, tokio::sync::broadcast::error::RecvError>,
    ) -> Option<ListChange> {
        match received {
            Ok(change) => Some(change),
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => Some(ListChange {
                tools: true,
                prompts: true,
                resources: true,
            }),
            Err(tokio::sync::broadcast::error::RecvError::Closed) => None,
        }
    }
}

/// Everything shared by the gateway's sessions.
pub struct Hub {
    pub limits: Limits,
    backends: RwLock<BTreeMap<String, Arc<Backend>>>,
    pub(crate) gate: Option<Arc<dyn ToolGate>>,
    catalog: RwLock<Arc<Catalog>>,
    changes: broadcast::Sender<ListChange>,
    shutdown: CancellationToken,
    /// `resources/subscribe` registrations, shared with each backend's client role.
    pub(crate) subscriptions: Arc<ResourceSubscriptions>,
    supervisors: Mutex<HashMap<String, tokio::task::JoinHandle<()>>>,
    /// Per-user and per-session instances, by server (servers whose policy is not shared).
    pools: RwLock<BTreeMap<String, Arc<InstancePool>>>,
    /// Whether an MCP session is still open (set by the HTTP layer): per-session instances
    /// stop when theirs has ended.
    session_open: RwLock<Option<SessionProbe>>,
    /// Initialize-era sessions told of list changes on their standalone streams.
    pub(crate) session_relay: crate::session_relay::SessionRelay,
}

/// See [`Hub::set_session_probe`].
pub type SessionProbe = Arc<dyn Fn(&str) -> bool + Send + Sync>;

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
            subscriptions: Arc::default(),
            supervisors: Mutex::new(HashMap::new()),
            pools: RwLock::default(),
            session_open: RwLock::default(),
            session_relay: Default::default(),
        });
        for (name, launcher) in backends {
            hub.add_backend(name, launcher);
        }
        hub
    }

    /// Adds a backend and starts supervising it; false if the name is taken. Clients see its
    /// tools (and a `list_changed`) once it is up.
    pub fn add_backend(self: &Arc<Self>, name: ServerName, launcher: Box<dyn Launcher>) -> bool {
        let name = String::from(name);
        let backend = {
            let mut backends = write(&self.backends);
            if backends.contains_key(&name) {
                return false;
            }
            let backend = Arc::new(Backend::new(
                name.clone(),
                launcher,
                self.limits.max_inflight_per_backend,
                QUEUED_MESSAGES_PER_BACKEND.saturating_mul(self.limits.max_message_bytes),
                self.shutdown.child_token(),
            ));
            backends.insert(name.clone(), backend.clone());
            backend
        };
        let policy = backend.launcher.instances();
        let task = if policy.mode == InstanceMode::Shared {
            tokio::spawn(crate::supervisor::supervise(self.clone(), backend))
        } else {
            let pool = Arc::new(InstancePool::new(backend.clone(), policy));
            write(&self.pools).insert(name.clone(), pool.clone());
            let supervised = crate::supervisor::supervise(self.clone(), backend);
            let reaped = self.clone().reap_until_stopped(pool);
            tokio::spawn(async move {
                tokio::join!(supervised, reaped);
            })
        };
        lock(&self.supervisors).insert(name, task);
        true
    }

    /// Stops a pooled server's idle instances until the server is removed or the gateway
    /// stops, then stops them all: they are awaited like any backend before shutdown goes on.
    async fn reap_until_stopped(self: Arc<Self>, pool: Arc<InstancePool>) {
        let stopped = pool.server_stopped();
        loop {
            tokio::select! {
                () = tokio::time::sleep(pool.reap_interval()) => {
                    let probe = read(&self.session_open).clone();
                    pool.reap(&|session| probe.as_ref().is_none_or(|open| open(session))).await;
                }
                () = stopped.cancelled() => break,
            }
        }
        pool.stop_all().await;
    }

    /// The backend that serves `caller`'s call to server `name`: the server's own backend, or
    /// for a per-user or per-session server the caller's own instance (started if needed).
    /// `url_elicitation`: the client takes URL-mode elicitation (see `InstancePool::not_ready`).
    pub async fn lease(
        self: &Arc<Self>,
        name: &str,
        caller: &Principal,
        session: Option<&str>,
        url_elicitation: bool,
    ) -> Result<Lease, ErrorData> {
        let pool = read(&self.pools).get(name).cloned();
        match pool {
            None => {
                let backend = self.backend(name).ok_or_else(|| {
                    ErrorData::internal_error(format!("backend {name:?} is gone"), None)
                })?;
                Ok(Lease::shared(backend))
            }
            Some(pool) => {
                let owner = pool.owner(caller, session)?;
                pool.lease(self, owner, url_elicitation).await
            }
        }
    }

    /// Whether server `name` runs instances per user or per session.
    pub fn has_instances(&self, name: &str) -> bool {
        read(&self.pools).contains_key(name)
    }

    /// The owners of server `name`'s running instances (empty for a shared server).
    pub fn instances(&self, name: &str) -> Vec<InstanceOwner> {
        read(&self.pools)
            .get(name)
            .map(|p| p.running())
            .unwrap_or_default()
    }

    /// Stops `user_id`'s instances of server `name` (a disconnected account): their next call
    /// starts afresh, or is refused.
    pub async fn stop_instances_of(&self, name: &str, user_id: i64) {
        let pool = read(&self.pools).get(name).cloned();
        if let Some(pool) = pool {
            pool.stop_user(user_id).await;
        }
    }

    /// Tells the hub how to see whether an MCP session is still open.
    pub fn set_session_probe(&self, probe: SessionProbe) {
        *write(&self.session_open) = Some(probe);
    }

    /// Restarts a backend now (its process is killed and started again at once, without
    /// backoff); false if there is no such backend.
    pub fn restart_backend(&self, name: &str) -> bool {
        match self.backend(name) {
            Some(backend) => {
                backend.restart.notify_one();
                true
            }
            None => false,
        }
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
        write(&self.pools).remove(name);
        let task = lock(&self.supervisors).remove(name);
        if let Some(task) = task {
            let _ = task.await;
        }
        self.rebuild_catalog();
        true
    }

    /// The clients subscribed to backend resources (`resources/subscribe`).
    pub fn subscriptions(&self) -> &ResourceSubscriptions {
        &self.subscriptions
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
    pub(crate) fn rebuild_catalog(&self) {
        let (configured, lists): (BTreeSet<String>, BTreeMap<String, BackendLists>) = {
            let backends = read(&self.backends);
            let lists = backends
                .iter()
                .filter_map(|(name, b)| b.lists().map(|l| (name.clone(), l)))
                .collect();
            (backends.keys().cloned().collect(), lists)
        };
        let lists = fit_in_one_message(lists, self.limits.max_message_bytes);
        let new = Arc::new(Catalog::build_among(&lists, &configured));
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

/// Leaves out the backends with the largest lists until all together fit in one message
/// (every client's list response carries them): a backend with a huge list can only push
/// itself out, never the small ones.
fn fit_in_one_message(
    mut lists: BTreeMap<String, BackendLists>,
    max_bytes: usize,
) -> BTreeMap<String, BackendLists> {
    let mut by_size: Vec<(usize, String)> = lists
        .iter()
        .map(|(name, l)| (l.json_bytes, name.clone()))
        .collect();
    by_size.sort();
    let mut total = 0usize;
    for (bytes, name) in by_size {
        total = total.saturating_add(bytes);
        if total > max_bytes {
            tracing::warn!(backend = %name, bytes, max_bytes, "backend left out of the catalog: all lists together would exceed the message size limit");
            lists.remove(&name);
        }
    }
    lists
}

fn same_items<'a, T: PartialEq + 'a>(
    a: impl ExactSizeIterator<Item = &'a T>,
    b: impl ExactSizeIterator<Item = &'a T>,
) -> bool {
    a.len() == b.len() && a.zip(b).all(|(x, y)| x == y)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_largest_lists_are_left_out_until_all_fit_in_one_message() {
        let lists = |bytes| BackendLists {
            json_bytes: bytes,
            ..Default::default()
        };
        let all = BTreeMap::from([
            ("a_huge".to_owned(), lists(4000)),
            ("b".to_owned(), lists(300)),
            ("c".to_owned(), lists(600)),
            ("d".to_owned(), lists(50)),
        ]);
        let kept = fit_in_one_message(all, 1000);
        assert_eq!(
            kept.keys().map(String::as_str).collect::<Vec<_>>(),
            ["b", "c", "d"]
        );
    }
}
