//! Per-user and per-session instances of a server (its `instances` policy).
//!
//! The server's own backend (the one in the catalog) lists its tools; calls go to the caller's
//! own instance, started at their first call with a launcher the server's [`Launcher`] makes for
//! that owner (a sandbox whose egress proxy injects that user's credentials). Instances are
//! supervised like any backend but never listed, bounded per server and per user, and stopped
//! once idle (per-session ones also when their session has ended).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gig_config::{InstanceMode, InstancePolicy};
use rmcp::model::{ErrorCode, ErrorData};

use crate::backend::{Backend, BackendStatus};
use crate::hub::{Hub, QUEUED_MESSAGES_PER_BACKEND};
use crate::launcher::OwnerRefusal;
use crate::profile::Principal;
use crate::sync::lock;

/// Whose instance: a user's, or one of their MCP sessions'.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct InstanceOwner {
    pub user_id: i64,
    /// Set for per-session instances only.
    pub session: Option<String>,
}

impl std::fmt::Display for InstanceOwner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.session {
            None => write!(f, "user {}", self.user_id),
            // Session ids are bearer-like: never printed whole.
            Some(s) => write!(
                f,
                "user {} session {}…",
                self.user_id,
                s.get(..6).unwrap_or("")
            ),
        }
    }
}

/// One running instance and the calls using it now.
struct Instance {
    backend: Arc<Backend>,
    supervisor: tokio::task::JoinHandle<()>,
    /// Calls holding a [`Lease`] on it: never reaped while one runs.
    active: Arc<AtomicUsize>,
    last_used: Arc<Mutex<Instant>>,
}

/// The instances of one server.
pub(crate) struct InstancePool {
    server: Arc<Backend>,
    policy: InstancePolicy,
    instances: Mutex<HashMap<InstanceOwner, Instance>>,
}

/// The backend a call goes to, and for an instance the call's hold on it: counted as active
/// until dropped, then idle from that moment.
pub struct Lease {
    pub backend: Arc<Backend>,
    hold: Option<(Arc<AtomicUsize>, Arc<Mutex<Instant>>)>,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease")
            .field("backend", &self.backend.name)
            .field("instance", &self.hold.is_some())
            .finish()
    }
}

impl Lease {
    /// The server's one shared backend: nothing to hold.
    pub(crate) fn shared(backend: Arc<Backend>) -> Self {
        Lease {
            backend,
            hold: None,
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some((active, last_used)) = &self.hold {
            *lock(last_used) = Instant::now();
            active.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// MCP's URLElicitationRequiredError: the request can proceed once the user has been to a URL.
const URL_ELICITATION_REQUIRED: ErrorCode = ErrorCode(-32042);

/// Numbers the URL elicitations handed out (their ids need only be unique).
static ELICITATIONS: AtomicU64 = AtomicU64::new(1);

fn refused(server: &str, message: String, reason: &str) -> ErrorData {
    ErrorData::new(
        ErrorCode::INVALID_REQUEST,
        message,
        Some(serde_json::json!({ "backend": server, "reason": reason })),
    )
}

impl InstancePool {
    pub(crate) fn new(server: Arc<Backend>, policy: InstancePolicy) -> Self {
        InstancePool {
            server,
            policy,
            instances: Mutex::new(HashMap::new()),
        }
    }

    /// Who owns `caller`'s instance, or why the caller cannot have one.
    pub(crate) fn owner(
        &self,
        caller: &Principal,
        session: Option<&str>,
    ) -> Result<InstanceOwner, ErrorData> {
        let name = &self.server.name;
        let Principal::Profile(view) = caller else {
            return Err(refused(
                name,
                format!(
                    "server {name:?} runs one instance per user, with that user's credentials: call it with a user's token (a profile token or an OAuth sign-in), not the operator's"
                ),
                "needs_user",
            ));
        };
        let session = match (self.policy.mode, session) {
            (InstanceMode::PerSession, None) => {
                return Err(refused(
                    name,
                    format!(
                        "server {name:?} runs one instance per MCP session: open a session (initialize) first; stateless requests have none"
                    ),
                    "needs_session",
                ));
            }
            (InstanceMode::PerSession, Some(id)) => Some(id.to_owned()),
            _ => None,
        };
        Ok(InstanceOwner {
            user_id: view.user_id,
            session,
        })
    }

    /// `owner`'s instance, started (and waited for, up to the call timeout) if it has none.
    pub(crate) async fn lease(
        &self,
        hub: &Arc<Hub>,
        owner: InstanceOwner,
        url_elicitation: bool,
    ) -> Result<Lease, ErrorData> {
        let backend = match self.existing(&owner) {
            Some(lease) => lease.backend.clone(),
            None => {
                // Asked outside the lock: it reads the vault.
                let launcher = self
                    .server
                    .launcher
                    .launcher_for(&owner)
                    .await
                    .map_err(|why| self.not_ready(why, url_elicitation))?;
                self.start(hub, &owner, launcher)?
            }
        };
        let lease = self
            .existing(&owner)
            .ok_or_else(|| self.unavailable(&owner, "stopped as it started"))?;
        let mut started = backend.first_attempt_done.subscribe();
        let waited = tokio::time::timeout(hub.limits.call_timeout, started.wait_for(|d| *d)).await;
        match backend.status() {
            BackendStatus::Up { .. } => Ok(lease),
            BackendStatus::Down { reason, .. } => Err(self.unavailable(&owner, &reason)),
            BackendStatus::Starting if waited.is_err() => Err(self.unavailable(
                &owner,
                &format!("not up within {}s", hub.limits.call_timeout.as_secs()),
            )),
            BackendStatus::Starting => Err(self.unavailable(&owner, "starting")),
        }
    }

    /// The caller must do something first. A client that takes URL-mode elicitation is handed
    /// the page where they can (MCP's URLElicitationRequiredError); any other gets the page in
    /// the message and in `data.url`.
    fn not_ready(&self, refusal: OwnerRefusal, url_elicitation: bool) -> ErrorData {
        let name = &self.server.name;
        let Some(url) = refusal.fix_url else {
            return refused(name, refusal.message, "not_ready");
        };
        if !url_elicitation {
            let mut error = refused(name, refusal.message, "not_ready");
            if let Some(data) = error.data.as_mut() {
                data["url"] = url.into();
            }
            return error;
        }
        let id = format!("connect-{}", ELICITATIONS.fetch_add(1, Ordering::Relaxed));
        ErrorData::new(
            URL_ELICITATION_REQUIRED,
            refusal.message.clone(),
            Some(serde_json::json!({
                "elicitations": [{
                    "mode": "url",
                    "elicitationId": id,
                    "url": url,
                    "message": refusal.message,
                }],
                "backend": name,
                "reason": "not_ready",
            })),
        )
    }

    fn unavailable(&self, owner: &InstanceOwner, why: &str) -> ErrorData {
        ErrorData::new(
            ErrorCode::INTERNAL_ERROR,
            format!(
                "your instance of {:?} is unavailable: {why}",
                self.server.name
            ),
            Some(serde_json::json!({ "backend": self.server.name, "owner": owner.user_id })),
        )
    }

    fn existing(&self, owner: &InstanceOwner) -> Option<Lease> {
        let instances = lock(&self.instances);
        let instance = instances.get(owner)?;
        instance.active.fetch_add(1, Ordering::AcqRel);
        Some(Lease {
            backend: instance.backend.clone(),
            hold: Some((instance.active.clone(), instance.last_used.clone())),
        })
    }

    /// Starts `owner`'s instance unless one appeared meanwhile; refuses past the caps.
    fn start(
        &self,
        hub: &Arc<Hub>,
        owner: &InstanceOwner,
        launcher: Box<dyn crate::Launcher>,
    ) -> Result<Arc<Backend>, ErrorData> {
        let name = &self.server.name;
        let mut instances = lock(&self.instances);
        if let Some(instance) = instances.get(owner) {
            return Ok(instance.backend.clone());
        }
        if instances.len() >= self.policy.max_instances {
            return Err(refused(
                name,
                format!(
                    "server {name:?} already runs its maximum of {} instances; retry when one has been idle for {}s",
                    self.policy.max_instances,
                    self.policy.idle.as_secs()
                ),
                "instance_limit",
            ));
        }
        let of_user = instances
            .keys()
            .filter(|o| o.user_id == owner.user_id)
            .count();
        if of_user >= self.policy.max_per_user {
            return Err(refused(
                name,
                format!(
                    "you already run {of_user} instances of {name:?}, the most one user may; end a session or wait until one has been idle for {}s",
                    self.policy.idle.as_secs()
                ),
                "user_instance_limit",
            ));
        }
        let backend = Arc::new(
            Backend::new(
                name.clone(),
                launcher,
                hub.limits.max_inflight_per_backend,
                QUEUED_MESSAGES_PER_BACKEND.saturating_mul(hub.limits.max_message_bytes),
                self.server.stop.child_token(),
            )
            .unlisted(),
        );
        let supervisor = tokio::spawn(crate::supervisor::supervise(hub.clone(), backend.clone()));
        tracing::info!(backend = %name, owner = %owner, running = instances.len() + 1, "instance starting");
        instances.insert(
            owner.clone(),
            Instance {
                backend: backend.clone(),
                supervisor,
                active: Arc::default(),
                last_used: Arc::new(Mutex::new(Instant::now())),
            },
        );
        Ok(backend)
    }

    /// Stops the instances idle for the policy's time, and per-session ones whose session
    /// `session_open` says has ended.
    pub(crate) async fn reap(&self, session_open: &(dyn Fn(&str) -> bool + Send + Sync)) {
        let idle = self.policy.idle;
        let gone: Vec<(InstanceOwner, Instance)> = {
            let mut instances = lock(&self.instances);
            let ended: Vec<InstanceOwner> = instances
                .iter()
                .filter(|(owner, i)| {
                    i.active.load(Ordering::Acquire) == 0
                        && (lock(&i.last_used).elapsed() >= idle
                            || owner.session.as_deref().is_some_and(|s| !session_open(s)))
                })
                .map(|(owner, _)| owner.clone())
                .collect();
            ended
                .into_iter()
                .filter_map(|owner| instances.remove_entry(&owner))
                .collect()
        };
        for (owner, instance) in gone {
            tracing::info!(backend = %self.server.name, owner = %owner, "instance stopped: idle or its session ended");
            stop(instance).await;
        }
    }

    /// Stops `user_id`'s instances (their credential or connection is gone).
    pub(crate) async fn stop_user(&self, user_id: i64) {
        let theirs: Vec<Instance> = {
            let mut instances = lock(&self.instances);
            let owners: Vec<InstanceOwner> = instances
                .keys()
                .filter(|o| o.user_id == user_id)
                .cloned()
                .collect();
            owners.iter().filter_map(|o| instances.remove(o)).collect()
        };
        for instance in theirs {
            stop(instance).await;
        }
    }

    /// Stops every instance (the server is removed, or the gateway stops).
    pub(crate) async fn stop_all(&self) {
        let all: Vec<Instance> = lock(&self.instances).drain().map(|(_, i)| i).collect();
        for instance in all {
            stop(instance).await;
        }
    }

    /// Instances running now, by owner.
    pub(crate) fn running(&self) -> Vec<InstanceOwner> {
        lock(&self.instances).keys().cloned().collect()
    }

    /// Cancelled when the server is removed or the gateway stops.
    pub(crate) fn server_stopped(&self) -> tokio_util::sync::CancellationToken {
        self.server.stop.clone()
    }

    /// How often idle instances are looked for: a quarter of the idle time, 1-30 s.
    pub(crate) fn reap_interval(&self) -> Duration {
        (self.policy.idle / 4).clamp(Duration::from_secs(1), Duration::from_secs(30))
    }
}

/// Ends an instance and waits until its process is gone.
async fn stop(instance: Instance) {
    instance.backend.stop.cancel();
    let _ = instance.supervisor.await;
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use gig_config::{InstanceMode, InstancePolicy, Limits};
    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::Launcher;
    use crate::launcher::{LaunchError, LaunchFuture, OwnerLaunch};
    use crate::profile::{ProfileFilter, ProfileView};

    /// A server that never starts; its owners' launchers exist for users 1-9 only.
    struct Pooled(InstancePolicy);

    impl Launcher for Pooled {
        fn launch(&self) -> LaunchFuture<'_> {
            Box::pin(async { Err(LaunchError::Other("never starts".into())) })
        }
        fn instances(&self) -> InstancePolicy {
            self.0
        }
        fn launcher_for<'a>(&'a self, owner: &'a InstanceOwner) -> OwnerLaunch<'a> {
            let policy = self.0;
            Box::pin(async move {
                if owner.user_id >= 20 {
                    return Err(OwnerRefusal {
                        message: "connect your account first".into(),
                        fix_url: Some("https://gw.example.test/servers/srv".into()),
                    });
                }
                if owner.user_id >= 10 {
                    return Err(format!("user {} has not set their key", owner.user_id).into());
                }
                Ok(Box::new(Pooled(policy)) as Box<dyn Launcher>)
            })
        }
    }

    fn user(id: i64) -> Principal {
        Principal::Profile(Arc::new(ProfileView::new(
            id,
            id,
            format!("p{id}"),
            ProfileFilter::default(),
        )))
    }

    fn reason(error: &ErrorData) -> &str {
        error
            .data
            .as_ref()
            .and_then(|d| d["reason"].as_str())
            .unwrap_or("")
    }

    fn hub(mode: InstanceMode, idle: Duration) -> Arc<Hub> {
        let limits = Limits {
            call_timeout: Duration::from_millis(200),
            ..Limits::default()
        };
        // Per-user: 2 users at most. Per-session: 2 sessions of one user, 3 in all.
        let per_session = mode == InstanceMode::PerSession;
        let policy = InstancePolicy {
            mode,
            max_instances: if per_session { 3 } else { 2 },
            max_per_user: if per_session { 2 } else { 1 },
            idle,
        };
        let hub = Hub::start(limits, Vec::new(), CancellationToken::new());
        assert!(hub.add_backend(
            gig_config::ServerName::parse("srv").unwrap(),
            Box::new(Pooled(policy))
        ));
        hub
    }

    #[tokio::test]
    async fn callers_are_refused_with_reasons_and_caps_hold() {
        let hub = hub(InstanceMode::PerUser, Duration::from_secs(600));
        let refused = |r: Result<Lease, ErrorData>| r.expect_err("should be refused");
        let e = refused(hub.lease("srv", &Principal::Operator, None, false).await);
        assert_eq!(reason(&e), "needs_user");
        let e = refused(hub.lease("srv", &user(10), None, false).await);
        assert_eq!(reason(&e), "not_ready");
        assert!(e.message.contains("has not set their key"), "{e:?}");
        assert!(
            hub.instances("srv").is_empty(),
            "a refused caller started an instance"
        );
        // Users 1 and 2 get instances (which never come up: an error naming it, not a hang).
        for id in [1, 2] {
            let e = refused(hub.lease("srv", &user(id), None, false).await);
            assert!(e.message.contains("your instance of \"srv\""), "{e:?}");
        }
        assert_eq!(hub.instances("srv").len(), 2);
        let e = refused(hub.lease("srv", &user(3), None, false).await);
        assert_eq!(reason(&e), "instance_limit");
        hub.stop().await;
        assert!(hub.instances("srv").is_empty());
    }

    /// A refusal with a page to fix it: a URLElicitationRequiredError for a client that takes
    /// URL elicitation, the page in `data.url` for any other.
    #[tokio::test]
    async fn a_caller_who_must_connect_first_is_handed_the_page() {
        let hub = hub(InstanceMode::PerUser, Duration::from_secs(600));
        let e = hub.lease("srv", &user(20), None, true).await.unwrap_err();
        assert_eq!(e.code, URL_ELICITATION_REQUIRED);
        let data = e.data.clone().unwrap();
        let elicitation = &data["elicitations"][0];
        assert_eq!(elicitation["mode"], "url");
        assert_eq!(elicitation["url"], "https://gw.example.test/servers/srv");
        assert!(
            elicitation["elicitationId"]
                .as_str()
                .is_some_and(|id| !id.is_empty())
        );
        let e = hub.lease("srv", &user(20), None, false).await.unwrap_err();
        assert_eq!(e.code, ErrorCode::INVALID_REQUEST);
        assert_eq!(reason(&e), "not_ready");
        assert_eq!(
            e.data.unwrap()["url"],
            "https://gw.example.test/servers/srv"
        );
        assert!(hub.instances("srv").is_empty());
        hub.stop().await;
    }

    #[tokio::test]
    async fn per_session_needs_a_session_and_idle_instances_stop() {
        let hub = hub(InstanceMode::PerSession, Duration::from_secs(1));
        let e = hub.lease("srv", &user(1), None, false).await.unwrap_err();
        assert_eq!(reason(&e), "needs_session");
        for session in ["a", "b"] {
            let _ = hub.lease("srv", &user(1), Some(session), false).await;
        }
        let e = hub
            .lease("srv", &user(1), Some("c"), false)
            .await
            .unwrap_err();
        assert_eq!(reason(&e), "user_instance_limit");
        assert_eq!(hub.instances("srv").len(), 2);
        // Idle for its 1 s: reaped at the next look (every 1 s).
        tokio::time::timeout(Duration::from_secs(10), async {
            while !hub.instances("srv").is_empty() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await
        .expect("idle instances were not stopped");
        hub.stop().await;
    }
}
