//! Initialize era: list changes reach every open session's standalone stream from one task.
//!
//! A task per session, each waiting on the hub's change broadcast and polling its own
//! transport every few seconds to notice the session ended, cost ~1.4 KiB per idle session and,
//! at 5,000 sessions, a thousand wake-ups a second doing nothing. Here each session's peer is
//! registered once; one task sends each change to all of them, and a peer whose session has
//! ended is dropped — at the next change, or when registrations have doubled the list since it
//! was last pruned, so ended sessions never pile up.

use std::sync::{Arc, Mutex, OnceLock};

use rmcp::Peer;
use rmcp::service::RoleServer;
use tokio::sync::broadcast;

use crate::hub::ListChange;

/// How long one session's notification may wait for room in its stream.
const NOTIFY_WITHIN: std::time::Duration = std::time::Duration::from_secs(10);

/// The open sessions' peers and the task that tells them about changes.
#[derive(Default)]
pub(crate) struct SessionRelay {
    peers: Arc<Mutex<Peers>>,
    started: OnceLock<()>,
}

#[derive(Default)]
struct Peers {
    open: Vec<Peer<RoleServer>>,
    /// How many there were after the last prune.
    pruned_len: usize,
}

impl std::fmt::Debug for SessionRelay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionRelay")
            .field("sessions", &lock(&self.peers).open.len())
            .finish()
    }
}

fn lock(peers: &Mutex<Peers>) -> std::sync::MutexGuard<'_, Peers> {
    peers.lock().unwrap_or_else(|e| e.into_inner())
}

impl SessionRelay {
    /// Sends the hub's future list changes to `peer`'s session, for as long as it is open.
    /// `changes` is subscribed only by the first registration, which starts the task.
    pub(crate) fn register(
        &self,
        peer: Peer<RoleServer>,
        changes: impl FnOnce() -> broadcast::Receiver<ListChange>,
    ) {
        self.started.get_or_init(|| {
            tokio::spawn(relay(changes(), self.peers.clone()));
        });
        let mut peers = lock(&self.peers);
        peers.open.push(peer);
        if peers.open.len() >= 2 * peers.pruned_len.max(32) {
            peers.open.retain(|p| !p.is_transport_closed());
            peers.pruned_len = peers.open.len();
        }
    }
}

/// Until the hub's broadcast closes: each change to every open session.
async fn relay(mut changes: broadcast::Receiver<ListChange>, peers: Arc<Mutex<Peers>>) {
    loop {
        let Some(change) = ListChange::next(changes.recv().await) else {
            return;
        };
        let open: Vec<Peer<RoleServer>> = {
            let mut peers = lock(&peers);
            peers.open.retain(|p| !p.is_transport_closed());
            peers.pruned_len = peers.open.len();
            peers.open.clone()
        };
        // Each session on its own task, bounded in time: one that does not read its stream
        // holds up neither the others nor the next change. A send fails when the session's
        // transport has closed; those go at the next prune.
        for peer in open {
            tokio::spawn(async move {
                let _ = tokio::time::timeout(NOTIFY_WITHIN, notify(&peer, change)).await;
            });
        }
    }
}

async fn notify(peer: &Peer<RoleServer>, change: ListChange) {
    // Each kind on its own: one refused does not keep the others from the client.
    if change.tools {
        let _ = peer.notify_tool_list_changed().await;
    }
    if change.prompts {
        let _ = peer.notify_prompt_list_changed().await;
    }
    if change.resources {
        let _ = peer.notify_resource_list_changed().await;
    }
}
