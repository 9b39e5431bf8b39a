//! What `/api` asks of the running gateway: server status, the signed index, installs, and
//! the vault. Implemented by the composition crate (which holds the hub, the installer and the
//! secrets), so this crate depends on none of them and adds no authority of its own: every
//! call here has already passed the route's permission check.

use futures::future::BoxFuture;
pub use gig_policy::{CredentialName, ServerName};
use tokio::sync::mpsc;

/// A server as the control plane lists it.
#[derive(Debug, Clone)]
pub struct ServerStatus {
    pub name: String,
    /// `installed` (from the signed index) or `declared` (the servers file).
    pub source: &'static str,
    pub version: Option<String>,
    pub image_digest: Option<String>,
    /// `starting`, `up`, `down`, or `not_running`.
    pub state: &'static str,
    pub tools: Option<usize>,
    pub restarts: Option<u32>,
    /// Why it is down (the supervisor's words; the backend can influence them).
    pub reason: Option<String>,
    /// The credentials it declares, by vault name, with the hosts each may reach.
    pub credentials: Vec<DeclaredCredential>,
    /// Egress rules (`host[:port]` patterns).
    pub egress: Vec<String>,
    /// Its instances per user or per session; `None` for one shared instance.
    pub instances: Option<InstancesStatus>,
}

/// A per-user or per-session server's instance policy and how many run now.
#[derive(Debug, Clone)]
pub struct InstancesStatus {
    /// `per-user` or `per-session`.
    pub mode: &'static str,
    pub max_instances: usize,
    pub max_per_user: usize,
    pub idle_seconds: u64,
    pub running: usize,
}

#[derive(Debug, Clone)]
pub struct DeclaredCredential {
    pub name: String,
    pub env: String,
    pub hosts: Vec<String>,
}

/// A tool as a running server lists it (after the rug-pull check), with its exposed name.
#[derive(Debug, Clone)]
pub struct ToolDefinition {
    /// The name clients call it by (`<server>_<tool>`, or a hashed form).
    pub exposed: String,
    /// The server's own name for it.
    pub name: String,
    pub description: Option<String>,
    pub input_schema: serde_json::Value,
}

/// An entry of the signed index.
#[derive(Debug, Clone)]
pub struct CatalogEntry {
    pub name: String,
    pub description: String,
    pub latest: String,
    pub versions: Vec<String>,
    pub installed: Option<String>,
}

/// Whose credential: the server's own (used by its one shared instance), or one user's (used
/// by that user's own instances of a per-user or per-session server).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialOwner {
    Server,
    User(i64),
}

impl CredentialOwner {
    pub fn user_id(self) -> Option<i64> {
        match self {
            CredentialOwner::Server => None,
            CredentialOwner::User(id) => Some(id),
        }
    }
}

/// A stored credential, never its value.
#[derive(Debug, Clone)]
pub struct StoredCredential {
    pub name: String,
    pub key_id: String,
    pub updated_at: i64,
}

/// Why an operation failed, in words for the caller (causes are logged by the implementation).
#[derive(Debug, Clone, thiserror::Error)]
pub enum OpError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Failed(String),
}

pub trait Operations: Send + Sync + std::fmt::Debug {
    /// Installed and declared servers with their live state.
    fn servers(&self) -> BoxFuture<'_, Result<Vec<ServerStatus>, OpError>>;
    /// Whether a signed index is configured.
    fn installs_enabled(&self) -> bool;
    /// The signed index's entries (fetched and verified now); `None` when installs are off.
    fn catalog(&self) -> BoxFuture<'_, Result<Option<Vec<CatalogEntry>>, OpError>>;
    /// Installs `reference` (`name` or `name@version`), sending progress lines as it goes;
    /// returns the installed `(name, version)`.
    fn install(
        &self,
        reference: String,
        progress: mpsc::Sender<String>,
    ) -> BoxFuture<'_, Result<(String, String), OpError>>;
    /// The tools a running server shows clients; `None` if it is not running here.
    fn tools(&self, name: &ServerName) -> Option<Vec<ToolDefinition>>;
    /// The server's recent stderr lines (scrubbed); `None` if it is not running here.
    fn logs(&self, name: &ServerName) -> Option<Vec<String>>;
    /// Restarts a running server now; false if it is not running here.
    fn restart(&self, name: &ServerName) -> bool;
    /// Removes an installed server; false if it was not installed.
    fn uninstall(&self, name: ServerName) -> BoxFuture<'_, Result<bool, OpError>>;
    /// Stores a credential the server declares (never one it does not), as the server's own
    /// or as one user's (only for a server with per-user or per-session instances).
    fn set_credential(
        &self,
        server: ServerName,
        owner: CredentialOwner,
        name: CredentialName,
        value: zeroize::Zeroizing<Vec<u8>>,
    ) -> BoxFuture<'_, Result<(), OpError>>;
    fn delete_credential(
        &self,
        server: ServerName,
        owner: CredentialOwner,
        name: CredentialName,
    ) -> BoxFuture<'_, Result<bool, OpError>>;
    /// The credentials `owner` has stored for `server`.
    fn credentials(
        &self,
        server: ServerName,
        owner: CredentialOwner,
    ) -> BoxFuture<'_, Result<Vec<StoredCredential>, OpError>>;
}
