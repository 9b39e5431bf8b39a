//! `resources/subscribe` registrations: which client sessions want
//! `notifications/resources/updated` for which backend resource. Shared by the hub (sessions
//! subscribe through it) and each backend's client role (which fans updates out), so neither
//! needs the other.

use std::collections::HashMap;
use std::sync::Mutex;

use rmcp::RoleServer;
use rmcp::service::Peer;

use crate::sync::lock;

/// Subscribed clients of one resource, by MCP session id.
type SessionPeers = HashMap<String, Peer<RoleServer>>;

/// (backend, backend URI) -> session id -> client.
#[derive(Debug, Default)]
pub struct ResourceSubscriptions(Mutex<HashMap<(String, String), SessionPeers>>);

impl ResourceSubscriptions {
    /// Records that a session wants `notifications/resources/updated` for a backend resource.
    pub fn subscribe(&self, backend: &str, uri: &str, session: &str, peer: Peer<RoleServer>) {
        let mut subscriptions = lock(&self.0);
        let sessions = subscriptions
            .entry((backend.to_owned(), uri.to_owned()))
            .or_default();
        sessions.retain(|_, p| !p.is_transport_closed());
        sessions.insert(session.to_owned(), peer);
    }

    /// Forgets a session's subscription; true when no session is subscribed any more.
    pub fn unsubscribe(&self, backend: &str, uri: &str, session: &str) -> bool {
        let mut subscriptions = lock(&self.0);
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
    pub fn subscribers(&self, backend: &str, uri: &str) -> Vec<Peer<RoleServer>> {
        lock(&self.0)
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
}
