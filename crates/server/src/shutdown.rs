//! Shutdown order, and why it is an order. [`crate::serve::serve`] returns once HTTP has
//! drained and the hub has told every backend to die; only then may the host's confinement go:
//!
//! 1. wait until every sandbox's processes are dead and reaped (killing is asynchronous);
//! 2. remove the sandbox firewall — a sandbox still alive at this point would keep its veth
//!    route and lose its filter, so this step never runs before step 1 has finished or timed
//!    out (and the timeout is logged);
//! 3. close the store, after the last audit record of the egress proxy was written.

use std::time::Duration;

use futures::future::BoxFuture;
use gig_runtime::SandboxRuntime;
use gig_store::Store;

/// How long shutdown waits for the last sandbox to die before removing the firewall anyway.
pub const SANDBOX_STOP_LIMIT: Duration = Duration::from_secs(10);

/// The host confinement's part in shutdown (the sandbox runtime; a fake in tests).
pub trait Confinement: Send + Sync {
    /// Waits up to `limit` for every sandbox to be dead; false on timeout.
    fn wait_all_stopped(&self, limit: Duration) -> BoxFuture<'_, bool>;
    /// Removes the sandbox firewall (no-op without sandbox networking).
    fn remove_firewall(&self) -> BoxFuture<'_, ()>;
}

impl Confinement for SandboxRuntime {
    fn wait_all_stopped(&self, limit: Duration) -> BoxFuture<'_, bool> {
        Box::pin(SandboxRuntime::wait_all_stopped(self, limit))
    }

    fn remove_firewall(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            if let Some(network) = self.network() {
                network.stop().await;
            }
        })
    }
}

/// Steps 1–3 above, after `serve` returned.
pub async fn after_serve(confinement: Option<&dyn Confinement>, store: &Store) {
    if let Some(confinement) = confinement {
        if !confinement.wait_all_stopped(SANDBOX_STOP_LIMIT).await {
            tracing::warn!(
                limit_secs = SANDBOX_STOP_LIMIT.as_secs(),
                "sandboxes still alive after the limit; removing the firewall anyway"
            );
        }
        confinement.remove_firewall().await;
    }
    store.close().await;
    tracing::info!("gateway stopped");
}
