//! The signed server index: what may run in Gig'MCP, pinned byte for byte.
//!
//! This crate owns the index's schema (every field validated at parse time, unknown fields
//! refused), its canonical encoding ([`canonical`], RFC 8785), Ed25519 signing and verification
//! against operator-pinned keys with expiry, rollback and equivocation checks ([`verify`]), ref
//! resolution (`echo`, `echo@1.2.0`), and import from the MCP Registry's `server.json`
//! ([`import`]). It does no I/O of its own: it never fetches an index or an image, and it never
//! trusts index content before its signature has been checked against the canonical bytes.

#![forbid(unsafe_code)]

pub mod canonical;
pub mod import;
mod keys;
mod verify;

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use gig_policy::remote::{RawRemote, RemoteSpec};
use gig_policy::{
    CredentialSpec, EgressRule, InstanceMode, InstancePolicy, RawInstances, ResourceLimits,
    ServerName,
};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

pub use keys::{IndexSigningKey, KeyError, PublicKey, TrustedKeys};
pub use verify::{AcceptedIndex, MAX_INDEX_BYTES, VerifiedIndex, sign_index, verify};

/// The only `schemaVersion` this build reads.
pub const SCHEMA_VERSION: u32 = 1;

/// The longest an index may stay valid when `registryctl sign` signs it: one leaked or
/// withdrawn index stays acceptable (to a gateway that has not seen a newer one) until it
/// expires, so "never" is not an option.
pub const MAX_INDEX_LIFETIME: std::time::Duration = std::time::Duration::from_secs(366 * 24 * 3600);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IndexError {
    #[error("index is {size} bytes, more than the {max}-byte limit")]
    TooLarge { size: usize, max: usize },
    #[error("index is malformed: {0}")]
    Malformed(String),
    #[error("index violates the schema: {0}")]
    Schema(String),
    #[error("index carries no signature")]
    NoSignature,
    #[error("index is signed only by unknown keys ({})", .0.join(", "))]
    UnknownKeys(Vec<String>),
    #[error("bad signature by trusted key {0}: the index was modified after signing")]
    BadSignature(String),
    #[error("index has valid signatures from {valid} trusted key(s); {needed} required")]
    Threshold { valid: usize, needed: usize },
    #[error("index expired at {expires} (now {now})")]
    Expired { expires: String, now: String },
    #[error("index version {version} is older than version {newest} already accepted (rollback)")]
    RolledBack { version: u64, newest: u64 },
    #[error(
        "index version {version} was already accepted with different content (a signer reused a version number, or someone is equivocating)"
    )]
    Equivocation { version: u64 },
}

/// A server's name in the index: `[a-z0-9][a-z0-9-]{0,31}`, stricter than the gateway's
/// [`ServerName`] (which every index name also is). It prefixes the server's tools on `/mcp` as
/// `<server>_<tool>`, so it never contains `_`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IndexServerName(ServerName);

impl IndexServerName {
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// The same name as the rest of the gateway holds it.
    pub fn server_name(&self) -> &ServerName {
        &self.0
    }
}

impl FromStr for IndexServerName {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let ok = !s.is_empty()
            && s.len() <= 32
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !s.starts_with('-');
        if ok {
            ServerName::parse(s).map(IndexServerName)
        } else {
            Err(format!(
                "invalid server name {s:?}: use 1 to 32 of a-z, 0-9 and '-', not starting with '-'"
            ))
        }
    }
}

impl fmt::Display for IndexServerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.as_str())
    }
}

/// Validates a version label: `[0-9A-Za-z][0-9A-Za-z._+-]{0,63}` (no `@`, `/` or spaces, so
/// `name@version` refs are unambiguous).
pub fn validate_version_label(v: &str) -> Result<(), String> {
    let ok = !v.is_empty()
        && v.len() <= 64
        && v.as_bytes()[0].is_ascii_alphanumeric()
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'+' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid version {v:?}: use 1 to 64 of A-Z, a-z, 0-9, '.', '_', '+' and '-', starting with a letter or digit"
        ))
    }
}

/// An OCI image reference pinned by digest: `registry/repo/path[:tag]@sha256:<64 hex>`.
///
/// The registry must be explicit (a host with a `.` or a port, or `localhost`): an index never
/// relies on a client's default registry. The tag, if present, is informational; the digest is
/// what gets pulled and verified. The text is kept exactly as written.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImageRef {
    text: String,
    /// Byte offsets into `text`: end of the registry, end of the repository, start of the digest.
    registry_end: usize,
    repository_end: usize,
    digest_start: usize,
}

impl ImageRef {
    pub fn registry(&self) -> &str {
        &self.text[..self.registry_end]
    }
    /// The repository path without the registry (`library/echo`).
    pub fn repository(&self) -> &str {
        &self.text[self.registry_end + 1..self.repository_end]
    }
    pub fn tag(&self) -> Option<&str> {
        let rest = &self.text[self.repository_end..self.digest_start - 1];
        rest.strip_prefix(':')
    }
    /// `sha256:<64 lowercase hex>`.
    pub fn digest(&self) -> &str {
        &self.text[self.digest_start..]
    }
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

fn is_sha256_digest(d: &str) -> bool {
    d.strip_prefix("sha256:").is_some_and(|h| {
        h.len() == 64
            && h.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

fn valid_registry(host: &str) -> bool {
    let (name, port) = match host.rsplit_once(':') {
        Some((n, p)) => (n, Some(p)),
        None => (host, None),
    };
    if let Some(p) = port
        && !matches!(p.parse::<u16>(), Ok(1..))
    {
        return false;
    }
    let labels_ok = !name.is_empty()
        && name.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        });
    labels_ok && (name.contains('.') || port.is_some() || name == "localhost")
}

/// One path component of a repository: `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`.
fn valid_path_component(c: &str) -> bool {
    let b = c.as_bytes();
    if b.is_empty() || !b[0].is_ascii_alphanumeric() || !b[b.len() - 1].is_ascii_alphanumeric() {
        return false;
    }
    if !c
        .bytes()
        .all(|x| x.is_ascii_lowercase() || x.is_ascii_digit() || matches!(x, b'.' | b'_' | b'-'))
    {
        return false;
    }
    // Separators: one '.', one or two '_', or any run of '-'; never mixed or '...'.
    let mut i = 0;
    while i < b.len() {
        if b[i].is_ascii_alphanumeric() {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !b[i].is_ascii_alphanumeric() {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

fn valid_tag(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 128
        && (t.as_bytes()[0].is_ascii_alphanumeric() || t.as_bytes()[0] == b'_')
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

impl FromStr for ImageRef {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let err = |why: &str| format!("invalid image reference {s:?}: {why}");
        let Some((name_tag, digest)) = s.rsplit_once('@') else {
            return Err(err(
                "it must be pinned by digest (REGISTRY/REPO[:TAG]@sha256:<64 hex>)",
            ));
        };
        if !is_sha256_digest(digest) {
            return Err(err("the digest must be sha256:<64 lowercase hex>"));
        }
        let (name, tag) = match name_tag.rsplit_once(':') {
            Some((n, t)) if !t.contains('/') => (n, Some(t)),
            _ => (name_tag, None),
        };
        if let Some(t) = tag
            && !valid_tag(t)
        {
            return Err(err("invalid tag"));
        }
        let Some((registry, repository)) = name.split_once('/') else {
            return Err(err("it must name its registry (REGISTRY/REPO)"));
        };
        if !valid_registry(registry) {
            return Err(err(
                "the registry must be a host with a '.' or a port, or localhost",
            ));
        }
        if name.len() > 255 || !repository.split('/').all(valid_path_component) {
            return Err(err(
                "repository path components are lowercase letters and digits joined by '.', '_', '__' or '-'",
            ));
        }
        Ok(ImageRef {
            text: s.to_owned(),
            registry_end: registry.len(),
            repository_end: name.len(),
            digest_start: s.len() - digest.len(),
        })
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

use gig_policy::serde_via_str;
serde_via_str!(IndexServerName);
serde_via_str!(ImageRef);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// MCP over the server process's stdin/stdout.
    #[default]
    Stdio,
}

/// What the installer takes out of the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExtractMode {
    /// Only the entrypoint file (static servers).
    #[default]
    Entrypoint,
    /// The whole root filesystem, mounted read-only as the sandbox root (Python, Node...).
    Rootfs,
}

/// One installable version of a server: an image the gateway runs in a sandbox, or a remote
/// server it reaches over HTTP. An entry with a `remote` key is remote; any other is an image
/// entry, so an index written before remote entries keeps its exact form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum VersionEntry {
    Image(ImageEntry),
    Remote(RemoteEntry),
}

impl<'de> Deserialize<'de> for VersionEntry {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let value = serde_json::Value::deserialize(deserializer)?;
        let inner = |e: serde_path_to_error::Error<serde_json::Error>| {
            let path = e.path().to_string();
            D::Error::custom(if path == "." {
                e.into_inner().to_string()
            } else {
                format!("{path}: {}", e.into_inner())
            })
        };
        if value.get("remote").is_some() {
            serde_path_to_error::deserialize(value)
                .map(VersionEntry::Remote)
                .map_err(inner)
        } else {
            serde_path_to_error::deserialize(value)
                .map(VersionEntry::Image)
                .map_err(inner)
        }
    }
}

/// A remote server in the index: where the gateway reaches it and how (the servers file's
/// `url` entry, without `allowAddresses`: which internal addresses the gateway may reach is the
/// operator's to say, in `GIG_EGRESS_ALLOW_ADDRESSES`, never an index publisher's).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RemoteEntry {
    pub remote: RawRemote,
    #[serde(default)]
    pub description: String,
}

impl RemoteEntry {
    /// The checked remote server this entry declares, named `name`.
    pub fn spec(&self, name: &str) -> Result<RemoteSpec, String> {
        if !self.remote.allow_addresses.is_empty() {
            return Err("remote.allowAddresses cannot come from an index: the operator allows internal addresses with GIG_EGRESS_ALLOW_ADDRESSES".into());
        }
        let name = ServerName::parse(name)?;
        RemoteSpec::from_raw(&name, &self.remote).map_err(|e| format!("remote: {e}"))
    }
}

impl VersionEntry {
    pub fn validate(&self) -> Result<(), String> {
        match self {
            VersionEntry::Image(image) => image.validate(),
            VersionEntry::Remote(remote) => remote.spec("index-entry").map(drop),
        }
    }

    pub fn description(&self) -> &str {
        match self {
            VersionEntry::Image(image) => &image.description,
            VersionEntry::Remote(remote) => &remote.description,
        }
    }

    /// The image entry, for what only an image has (a pull, a sandbox).
    pub fn image(&self) -> Option<&ImageEntry> {
        match self {
            VersionEntry::Image(image) => Some(image),
            VersionEntry::Remote(_) => None,
        }
    }
}

/// A version run from an OCI image, in a sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ImageEntry {
    pub image: ImageRef,
    /// Absolute path of the executable inside the image.
    pub entrypoint: String,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub transport: Transport,
    /// Declared non-secret environment. Secrets are `credentials`, never values here.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub credentials: Vec<CredentialSpec>,
    #[serde(default)]
    pub egress: Vec<EgressRule>,
    #[serde(default)]
    pub limits: ResourceLimits,
    #[serde(default)]
    pub extract: ExtractMode,
    #[serde(default)]
    pub description: String,
    /// Whose instance a call runs in: one shared (the default), or one per user or per MCP
    /// session, each sandbox given its user's own credentials. Left out when shared, so an
    /// index written before these keys keeps its exact form.
    #[serde(default, skip_serializing_if = "InstanceMode::is_shared")]
    pub instances: InstanceMode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_instances: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_instances_per_user: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_seconds: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServerEntry {
    #[serde(default)]
    pub description: String,
    /// The version `name` (without `@version`) resolves to.
    pub latest: String,
    pub versions: BTreeMap<String, VersionEntry>,
}

/// The index document (the `signed` part of the envelope).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Index {
    pub schema_version: u32,
    /// Increases with every signed release; the gateway refuses anything older than it has seen.
    pub version: u64,
    #[serde(with = "time::serde::rfc3339")]
    pub expires: OffsetDateTime,
    pub servers: BTreeMap<IndexServerName, ServerEntry>,
}

/// Variables the gateway sets for the sandbox itself; an index may not override them (a
/// `NO_PROXY` from an index would route around the egress proxy).
const RESERVED_ENV: &[&str] = &[
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "all_proxy",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
];

fn is_env_name(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with(|c: char| c.is_ascii_digit())
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Validates an in-image absolute path: `/a/b`, no empty, `.` or `..` components, no NUL.
pub fn validate_entrypoint(p: &str) -> Result<(), String> {
    let Some(rest) = p.strip_prefix('/') else {
        return Err(format!("entrypoint {p:?} must be an absolute path"));
    };
    if p.len() > 4096 || p.contains('\0') {
        return Err(format!("entrypoint {p:?} is too long or contains NUL"));
    }
    if rest
        .split('/')
        .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return Err(format!(
            "entrypoint {p:?} must be a normalized path (no empty, '.' or '..' components)"
        ));
    }
    Ok(())
}

impl ImageEntry {
    pub fn validate(&self) -> Result<(), String> {
        validate_entrypoint(&self.entrypoint)?;
        if let Some(a) = self.args.iter().find(|a| a.contains('\0')) {
            return Err(format!("argument {a:?} contains NUL"));
        }
        for (k, v) in &self.env {
            if !is_env_name(k) {
                return Err(format!(
                    "env name {k:?} is not a variable name ([A-Za-z_][A-Za-z0-9_]*)"
                ));
            }
            if RESERVED_ENV.contains(&k.as_str()) {
                return Err(format!(
                    "env {k} is set by the gateway and cannot be declared"
                ));
            }
            if v.contains('\0') {
                return Err(format!("env {k} contains NUL"));
            }
        }
        let mut seen = std::collections::BTreeSet::new();
        for c in &self.credentials {
            c.validate().map_err(|e| e.to_string())?;
            if !seen.insert(c.env.as_str()) {
                return Err(format!("credential {} is declared twice", c.env));
            }
            if self.env.contains_key(&c.env) {
                return Err(format!(
                    "{} is both a plain env variable and a credential",
                    c.env
                ));
            }
            if RESERVED_ENV.contains(&c.env.as_str()) {
                return Err(format!("credential env {} is reserved", c.env));
            }
        }
        self.instance_policy()?;
        Ok(())
    }

    /// The instance policy its keys describe (checked with the index).
    pub fn instance_policy(&self) -> Result<InstancePolicy, String> {
        InstancePolicy::from_raw(RawInstances {
            instances: self.instances,
            max_instances: self.max_instances,
            max_instances_per_user: self.max_instances_per_user,
            idle_seconds: self.idle_seconds,
        })
    }
}

impl Index {
    /// An empty index at version 0 that has already expired (a working copy before `sign`).
    pub fn empty() -> Self {
        Index {
            schema_version: SCHEMA_VERSION,
            version: 0,
            expires: OffsetDateTime::UNIX_EPOCH,
            servers: BTreeMap::new(),
        }
    }

    /// Cross-field checks serde cannot express. Every way of obtaining an `Index` from bytes
    /// calls this.
    pub fn validate(&self) -> Result<(), IndexError> {
        let schema = IndexError::Schema;
        if self.schema_version != SCHEMA_VERSION {
            return Err(schema(format!(
                "schemaVersion {} is not supported (this build reads {SCHEMA_VERSION})",
                self.schema_version
            )));
        }
        if self.version > canonical::MAX_SAFE_INTEGER {
            return Err(schema("version is larger than 2^53-1".into()));
        }
        for (name, server) in &self.servers {
            if server.versions.is_empty() {
                return Err(schema(format!("servers.{name}: no versions")));
            }
            if !server.versions.contains_key(&server.latest) {
                return Err(schema(format!(
                    "servers.{name}.latest: {:?} is not one of its versions",
                    server.latest
                )));
            }
            for (v, entry) in &server.versions {
                validate_version_label(v)
                    .and_then(|()| entry.validate())
                    .map_err(|e| schema(format!("servers.{name}.versions.{v}: {e}")))?;
            }
        }
        Ok(())
    }

    /// Parses an unsigned index document (a working copy), with the same checks as a signed one.
    pub fn from_json(bytes: &[u8]) -> Result<Self, IndexError> {
        let value =
            canonical::parse_strict(bytes).map_err(|e| IndexError::Malformed(e.to_string()))?;
        Self::from_value(value)
    }

    pub(crate) fn from_value(value: serde_json::Value) -> Result<Self, IndexError> {
        let index: Index = serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            IndexError::Schema(format!("{path}: {}", e.into_inner()))
        })?;
        index.validate()?;
        Ok(index)
    }

    pub fn to_json_pretty(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec_pretty(self).unwrap_or_default();
        out.push(b'\n');
        out
    }

    /// Resolves `name` (its latest version) or `name@version`.
    pub fn resolve(&self, reference: &str) -> Result<Resolved<'_>, ResolveError> {
        let (name, version) = match reference.split_once('@') {
            Some((n, v)) => (n, Some(v)),
            None => (reference, None),
        };
        let name: IndexServerName = name
            .parse()
            .map_err(|e: String| ResolveError::Malformed(reference.to_owned(), e))?;
        if let Some(v) = version {
            validate_version_label(v)
                .map_err(|e| ResolveError::Malformed(reference.to_owned(), e))?;
        }
        let Some((name, server)) = self.servers.get_key_value(&name) else {
            return Err(ResolveError::UnknownServer {
                name: name.to_string(),
                known: self.servers.keys().map(ToString::to_string).collect(),
            });
        };
        let version = version.unwrap_or(&server.latest);
        match server.versions.get_key_value(version) {
            Some((version, entry)) => Ok(Resolved {
                name,
                version,
                server,
                entry,
            }),
            None => Err(ResolveError::UnknownVersion {
                name: name.to_string(),
                version: version.to_owned(),
                available: server.versions.keys().cloned().collect(),
            }),
        }
    }
}

/// A ref resolved against an index.
#[derive(Debug, Clone, Copy)]
pub struct Resolved<'a> {
    pub name: &'a IndexServerName,
    pub version: &'a str,
    pub server: &'a ServerEntry,
    pub entry: &'a VersionEntry,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    #[error("invalid server ref {0:?}: {1} (write NAME or NAME@VERSION)")]
    Malformed(String, String),
    #[error("no server {name:?} in the index (it has: {})", list(.known))]
    UnknownServer { name: String, known: Vec<String> },
    #[error("server {name:?} has no version {version:?} (it has: {})", list(.available))]
    UnknownVersion {
        name: String,
        version: String,
        available: Vec<String>,
    },
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "nothing".into()
    } else {
        items.join(", ")
    }
}

#[cfg(test)]
mod tests;
