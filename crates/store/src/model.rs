//! Plain data carried in and out of the [`crate::Store`]. Inputs borrow; outputs own.
//! Timestamps are UTC with microsecond precision (what both backends keep).

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;

/// Which database a [`crate::Store`] talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// Embedded SQLite file (WAL): one machine, one gateway.
    Sqlite,
    /// PostgreSQL (>= 15): shared by several gateway replicas.
    Postgres,
}

// ---------------------------------------------------------------------------------------------
// Servers

stored_enum! {
    /// Lifecycle of an installed server (`servers.state`).
    #[derive(Serialize, Deserialize)]
    #[serde(rename_all = "lowercase")]
    pub enum ServerState as "server state" {
        /// Being pulled, verified and extracted.
        Installing = "installing",
        /// Ready to start.
        Installed = "installed",
        /// The install failed; kept for inspection.
        Failed = "failed",
        /// Being removed.
        Removing = "removing",
    }
}

/// What [`crate::Store::upsert_server`] writes.
#[derive(Clone, Copy, Debug)]
pub struct NewServer<'a> {
    /// Unique server name.
    pub name: &'a str,
    /// OCI image reference the install resolved to.
    pub image_ref: &'a str,
    /// Version from the signed index.
    pub version: &'a str,
    /// Verified image manifest digest (`sha256:...`).
    pub image_digest: &'a str,
    /// Content-addressed extraction directory, once extracted.
    pub extracted_path: Option<&'a str>,
    /// The server's manifest from the index.
    pub manifest: &'a Value,
    /// Lifecycle state.
    pub state: ServerState,
    /// Version of the signed index the install was verified against (0: not from an index).
    pub index_version: i64,
}

/// An installed (or installing) server.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ServerRecord {
    /// Unique server name.
    pub name: String,
    /// OCI image reference.
    pub image_ref: String,
    /// Version from the signed index.
    pub version: String,
    /// Verified image manifest digest.
    pub image_digest: String,
    /// Extraction directory, once extracted.
    pub extracted_path: Option<String>,
    /// The server's manifest.
    pub manifest: Value,
    /// Lifecycle state.
    pub state: ServerState,
    /// First install; kept across upserts.
    #[serde(with = "time::serde::rfc3339")]
    pub installed_at: OffsetDateTime,
    /// Last change.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

// ---------------------------------------------------------------------------------------------
// Credentials and vault

/// Who a credential belongs to: a server, optionally narrowed to a user and/or a profile.
/// `None` members are part of the key (two global credentials with one name collide).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CredentialScope<'a> {
    /// Server name (the server need not be installed yet).
    pub server: &'a str,
    /// Owning user, or `None` for a gateway-wide credential.
    pub user_id: Option<i64>,
    /// Owning profile, or `None`.
    pub profile_id: Option<i64>,
}

/// What [`crate::Store::put_credential`] writes: vault output only, never plaintext.
#[derive(Clone, Copy)]
pub struct SealedCredential<'a> {
    /// Owner.
    pub scope: CredentialScope<'a>,
    /// Credential name (e.g. the environment variable it fills).
    pub name: &'a str,
    /// Id of the vault key that wrapped the data key.
    pub key_id: &'a str,
    /// The data key, wrapped by `key_id`.
    pub wrapped_dek: &'a [u8],
    /// The secret, sealed by the data key.
    pub ciphertext: &'a [u8],
}

impl fmt::Debug for SealedCredential<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealedCredential")
            .field("scope", &self.scope)
            .field("name", &self.name)
            .field("key_id", &self.key_id)
            .field(
                "wrapped_dek",
                &format_args!("<{} bytes>", self.wrapped_dek.len()),
            )
            .field(
                "ciphertext",
                &format_args!("<{} bytes>", self.ciphertext.len()),
            )
            .finish()
    }
}

/// Credential metadata: everything but the sealed bytes (for listings).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CredentialMeta {
    /// Row id.
    pub id: i64,
    /// Server name.
    pub server: String,
    /// Owning user.
    pub user_id: Option<i64>,
    /// Owning profile.
    pub profile_id: Option<i64>,
    /// Credential name.
    pub name: String,
    /// Id of the vault key that wraps the data key.
    pub key_id: String,
    /// Creation time.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Last write.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

/// A full credential row: metadata plus the sealed bytes (for the vault only).
#[derive(Clone, PartialEq, Eq)]
pub struct CredentialRow {
    /// Metadata.
    pub meta: CredentialMeta,
    /// The wrapped data key.
    pub wrapped_dek: Vec<u8>,
    /// The sealed secret.
    pub ciphertext: Vec<u8>,
}

impl fmt::Debug for CredentialRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CredentialRow")
            .field("meta", &self.meta)
            .field(
                "wrapped_dek",
                &format_args!("<{} bytes>", self.wrapped_dek.len()),
            )
            .field(
                "ciphertext",
                &format_args!("<{} bytes>", self.ciphertext.len()),
            )
            .finish()
    }
}

/// The vault's singleton metadata row.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct VaultMeta {
    /// Current master key id.
    pub key_id: String,
    /// A value sealed under `key_id`, to check the key at unlock.
    pub check_value: Vec<u8>,
    /// Set while a rotation to that key is in progress (resumable after a crash).
    pub rotating_to_key_id: Option<String>,
    /// Creation time.
    pub created_at: OffsetDateTime,
    /// Last change.
    pub updated_at: OffsetDateTime,
}

// ---------------------------------------------------------------------------------------------
// Users, sessions, profiles, tokens

stored_enum! {
    /// A user's role (`roles.role`, `api_tokens.role`), from least to most authority: the
    /// derived order is the order of authority. What each may do is the API's RBAC table; the
    /// store only keeps it. (`gig_config` maps identity-provider groups onto it.)
    #[derive(PartialOrd, Ord)]
    pub enum Role as "role" {
        Viewer = "viewer",
        Member = "member",
        Operator = "operator",
        Admin = "admin",
    }
}

/// What [`crate::Store::create_user`] writes.
#[derive(Clone, Copy, Debug)]
pub struct NewUser<'a> {
    /// Unique identity (OIDC `sub` or local login name).
    pub subject: &'a str,
    /// E-mail, if known.
    pub email: Option<&'a str>,
    /// Display name, if known.
    pub display_name: Option<&'a str>,
}

/// A user.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct User {
    /// Row id.
    pub id: i64,
    /// Unique identity.
    pub subject: String,
    /// E-mail.
    pub email: Option<String>,
    /// Display name.
    pub display_name: Option<String>,
    /// Creation time.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// What [`crate::Store::create_session`] writes. The cookie itself is never stored.
#[derive(Clone, Copy, Debug)]
pub struct NewSession<'a> {
    /// Hash of the session cookie.
    pub id_hash: &'a str,
    /// The logged-in user.
    pub user_id: i64,
    /// The user an administrator is acting as, if impersonating.
    pub impersonating_user_id: Option<i64>,
    /// When the session stops being valid.
    pub expires_at: OffsetDateTime,
}

/// A dashboard login session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoginSession {
    /// Hash of the session cookie.
    pub id_hash: String,
    /// The logged-in user.
    pub user_id: i64,
    /// The impersonated user, if any.
    pub impersonating_user_id: Option<i64>,
    /// Creation time.
    pub created_at: OffsetDateTime,
    /// Expiry (callers must check it; see [`crate::Store::delete_expired_sessions`]).
    pub expires_at: OffsetDateTime,
}

/// A named tool selection of one user.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Profile {
    /// Row id.
    pub id: i64,
    /// Owner.
    pub user_id: i64,
    /// Name, unique per user.
    pub name: String,
    /// Which tools the profile exposes (interpreted by the gateway).
    pub tool_filter: Value,
    /// Creation time.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Last change.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

/// What [`crate::Store::create_profile_token`] writes. The token itself is never stored.
#[derive(Clone, Copy, Debug)]
pub struct NewProfileToken<'a> {
    /// Hash of the token.
    pub token_hash: &'a str,
    /// The profile it opens.
    pub profile_id: i64,
    /// A label chosen by the owner (may be empty).
    pub name: &'a str,
    /// When the token stops authenticating; `None`: never.
    pub expires_at: Option<OffsetDateTime>,
}

/// A bearer token bound to a profile, stored only as its hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProfileToken {
    /// Hash of the token.
    pub token_hash: String,
    /// The profile it opens.
    pub profile_id: i64,
    /// Label chosen by the owner (empty for tokens made before labels existed).
    pub name: String,
    /// Creation time.
    pub created_at: OffsetDateTime,
    /// When it stops authenticating; `None`: never.
    pub expires_at: Option<OffsetDateTime>,
    /// Last successful use.
    pub last_used_at: Option<OffsetDateTime>,
    /// Set once revoked; a revoked token never authenticates again.
    pub revoked_at: Option<OffsetDateTime>,
}

impl ProfileToken {
    /// Not revoked and not expired at `now` (a token expires at `expires_at` exactly).
    pub fn is_active(&self, now: OffsetDateTime) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|at| now < at)
    }
}

/// What [`crate::Store::create_api_token`] writes. The token itself is never stored.
#[derive(Clone, Copy, Debug)]
pub struct NewApiToken<'a> {
    /// Hash of the token.
    pub token_hash: &'a str,
    /// The owner; the token acts as this user.
    pub user_id: i64,
    /// A label chosen by the owner.
    pub name: &'a str,
    /// The role the token acts with.
    pub role: Role,
    /// When the token stops authenticating (API tokens always expire).
    pub expires_at: OffsetDateTime,
}

/// A bearer token for `/api` automation, stored only as its hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiToken {
    /// Hash of the token.
    pub token_hash: String,
    /// The owner.
    pub user_id: i64,
    /// Label chosen by the owner.
    pub name: String,
    /// The role the token acts with.
    pub role: Role,
    /// Creation time.
    pub created_at: OffsetDateTime,
    /// When it stops authenticating.
    pub expires_at: OffsetDateTime,
    /// Last successful use.
    pub last_used_at: Option<OffsetDateTime>,
    /// Set once revoked; a revoked token never authenticates again.
    pub revoked_at: Option<OffsetDateTime>,
}

impl ApiToken {
    /// Not revoked and not expired at `now` (a token expires at `expires_at` exactly).
    pub fn is_active(&self, now: OffsetDateTime) -> bool {
        self.revoked_at.is_none() && now < self.expires_at
    }
}

// ---------------------------------------------------------------------------------------------
// Tool fingerprints

/// Outcome of [`crate::Store::record_or_compare_fingerprint`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FingerprintCheck {
    /// First sighting: recorded as the trusted definition.
    New,
    /// Matches the trusted definition (any stale pending change is cleared).
    Unchanged,
    /// Differs from the trusted definition; stored as pending until approved.
    Changed {
        /// The trusted fingerprint.
        trusted: String,
        /// The new, pending one.
        pending: String,
    },
}

/// A tool's recorded fingerprint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ToolFingerprint {
    /// Server name.
    pub server: String,
    /// Tool name as the server reports it.
    pub tool: String,
    /// Hex SHA-256 of the trusted tool definition.
    pub sha256: String,
    /// First sighting.
    pub first_seen: OffsetDateTime,
    /// When an administrator last approved a change (`None`: trusted on first use).
    pub approved_at: Option<OffsetDateTime>,
    /// A changed definition waiting for approval.
    pub pending_fingerprint: Option<String>,
    /// The trusted definition (canonical JSON), when recorded.
    pub definition: Option<String>,
    /// The pending definition (canonical JSON), when recorded.
    pub pending_definition: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Audit

/// What [`crate::Store::append_audit`] writes.
#[derive(Clone, Copy, Debug)]
pub struct AuditEntry<'a> {
    /// Who acted (user subject, token id, server name, `system`).
    pub actor: &'a str,
    /// What was done (`tool.call`, `egress.request`, `server.install`, ...).
    pub action: &'a str,
    /// What it was done to.
    pub target: &'a str,
    /// Outcome (`ok`, `denied`, `error`, ...).
    pub result: &'a str,
    /// Structured details; must not contain secrets.
    pub detail: &'a Value,
}

/// One audit record.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AuditRecord {
    /// Monotonic id.
    pub id: i64,
    /// When it was appended.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// Who acted.
    pub actor: String,
    /// What was done.
    pub action: String,
    /// What it was done to.
    pub target: String,
    /// Outcome.
    pub result: String,
    /// Structured details.
    pub detail: Value,
}

/// Filters for [`crate::Store::list_audit`]. Every `Some` filter must match; records come newest
/// first (by id), at most `limit` of them (`limit: 0` returns none).
///
/// Paging: pass the smallest id of one page as `before_id` to get the next (older) page.
#[derive(Clone, Copy, Debug, Default)]
pub struct AuditQuery<'a> {
    /// Exactly this actor.
    pub actor: Option<&'a str>,
    /// Targets starting with this text (case-sensitive; `%` and `_` are literal).
    pub target_prefix: Option<&'a str>,
    /// Actions starting with this text (case-sensitive; `%` and `_` are literal).
    pub action_prefix: Option<&'a str>,
    /// Records appended at or after this instant.
    pub since: Option<OffsetDateTime>,
    /// Records appended strictly before this instant.
    pub until: Option<OffsetDateTime>,
    /// Only records with an id below this one (the paging cursor).
    pub before_id: Option<i64>,
    /// The most records to return.
    pub limit: u32,
}
