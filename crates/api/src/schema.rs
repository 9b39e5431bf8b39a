//! The JSON bodies `/api` answers with, as types: handlers return them and the OpenAPI
//! document (`/api/openapi.json`) describes them from the same definitions, so the two cannot
//! drift. Times are Unix seconds.

use std::collections::BTreeMap;

use serde::Serialize;
use utoipa::ToSchema;

/// Every error: a stable code, a message for people, and the id under which the cause was
/// logged.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
    pub request_id: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UserInfo {
    pub id: i64,
    pub email: Option<String>,
    pub name: Option<String>,
    /// `admin`, `operator`, `member` or `viewer`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
}

impl UserInfo {
    pub fn of(user: &gig_store::User, role: Option<gig_store::Role>) -> Self {
        UserInfo {
            id: user.id,
            email: user.email.clone(),
            name: user.display_name.clone(),
            role: role.map(|r| r.as_str().to_owned()),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Impersonation {
    /// The administrator acting as `user`.
    pub real_user: UserInfo,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Me {
    /// Whose permissions apply (the impersonated user while impersonating).
    pub user: UserInfo,
    pub role: String,
    pub impersonating: Option<Impersonation>,
    /// Send it as `X-CSRF-Token` on every change made with the session cookie (absent for
    /// API tokens, which need none).
    pub csrf_token: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SignedOut {
    pub signed_out: bool,
    /// The identity provider's logout page, to end the sign-in there too.
    pub end_session_url: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Users {
    pub users: Vec<UserInfo>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RoleSet {
    pub id: i64,
    pub role: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ImpersonationStarted {
    pub impersonating: i64,
}

/// A token as listed: never its value.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenInfo {
    pub id: String,
    pub name: String,
    /// API tokens only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    pub expires_at: Option<i64>,
    pub active: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Tokens {
    pub tokens: Vec<TokenInfo>,
}

/// A client a user let act for them on `/mcp`.
#[derive(Debug, Serialize, ToSchema)]
pub struct OAuthGrantInfo {
    pub id: i64,
    /// A metadata-document URL, or the id of a registered client.
    pub client_id: String,
    /// As shown at consent (a registered client's own claim).
    pub client_name: String,
    pub profile_id: i64,
    pub scope: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OAuthGrants {
    pub grants: Vec<OAuthGrantInfo>,
}

/// A new token: the only response that ever carries its value.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenCreated {
    pub id: String,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    pub token: String,
    pub expires_at: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeclaredCredentialInfo {
    /// The vault name to set it under.
    pub name: String,
    /// The variable the server reads (it holds a placeholder, never the value).
    pub env: String,
    /// The only hosts the real value is sent to.
    pub hosts: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ServerInfo {
    pub name: String,
    /// `installed` (signed index) or `declared` (servers file).
    pub source: String,
    pub version: Option<String>,
    pub image_digest: Option<String>,
    /// `starting`, `up`, `down` or `not_running`.
    pub state: String,
    pub tools: Option<usize>,
    pub restarts: Option<u32>,
    pub reason: Option<String>,
    pub credentials: Vec<DeclaredCredentialInfo>,
    pub egress: Vec<String>,
    /// Instances per user or per session (each with that user's own credentials); absent for
    /// one shared instance.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instances: Option<InstancesInfo>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct InstancesInfo {
    /// `per-user` or `per-session`.
    pub mode: String,
    pub max_instances: usize,
    /// Most instances of one user (per-session: their sessions).
    pub max_per_user: usize,
    /// An instance without a call for this long is stopped.
    pub idle_seconds: u64,
    /// Running now.
    pub running: usize,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Servers {
    pub servers: Vec<ServerInfo>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CatalogItem {
    pub name: String,
    pub description: String,
    pub latest: String,
    pub versions: Vec<String>,
    /// The installed version, if any.
    pub installed: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Catalog {
    /// False when the gateway has no signed index configured (no installs).
    pub enabled: bool,
    pub entries: Vec<CatalogItem>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct InstallStarted {
    pub job: String,
    pub status_url: String,
    /// `text/event-stream`: `progress` events, then `done` or `failed`.
    pub events_url: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct InstallJob {
    pub job: String,
    pub reference: String,
    /// `running`, `done` or `failed`.
    pub state: String,
    /// Progress lines so far (the most recent ones).
    pub progress: Vec<String>,
    pub server: Option<String>,
    pub version: Option<String>,
    pub error: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CredentialInfo {
    pub name: String,
    pub key_id: String,
    pub updated_at: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Credentials {
    pub credentials: Vec<CredentialInfo>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditRecord {
    pub id: i64,
    /// RFC 3339.
    pub at: String,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub result: String,
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditPage {
    pub records: Vec<AuditRecord>,
    /// Pass as `cursor` for the next (older) page; `null` on the last page.
    pub next_cursor: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ToolOverrideInfo {
    pub name: Option<String>,
    pub description: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Profile {
    pub id: i64,
    pub name: String,
    pub tools: Vec<String>,
    pub overrides: BTreeMap<String, ToolOverrideInfo>,
    pub unprefixed: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Profiles {
    pub profiles: Vec<Profile>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PendingChange {
    pub server: String,
    pub tool: String,
    pub current_sha256: String,
    /// Send this back to approve exactly this definition.
    pub proposed_sha256: String,
    /// The trusted definition, pretty JSON (absent when it was recorded before definitions were kept).
    pub current: Option<String>,
    pub proposed: Option<String>,
    /// Unified diff, trusted → changed.
    pub diff: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Approvals {
    pub pending: Vec<PendingChange>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Logs {
    /// Recent stderr lines, oldest first, with the secrets the server was given scrubbed.
    pub lines: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ToolInfo {
    /// What clients call it (`<server>_<tool>`, or a hashed form when that is taken).
    pub exposed: String,
    /// The server's own name.
    pub name: String,
    pub description: Option<String>,
    #[schema(value_type = Object)]
    pub input_schema: serde_json::Value,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Tools {
    pub tools: Vec<ToolInfo>,
}
