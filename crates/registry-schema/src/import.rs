//! Import from the official MCP Registry's `server.json` (schema 2025-09-29 through 2025-12-11).
//!
//! Two kinds of entry are taken: an OCI package with the stdio transport (run in a sandbox),
//! or a `remotes` entry (`streamable-http` or `sse`, reached over HTTP). A remote's secret
//! header becomes a vault reference (`"Bearer {token}"` → `"Bearer ${credential:token}"`), so
//! the index names where the key goes and the operator sets the key itself in the vault.
//!
//! For a package, the publisher's file says nothing about
//! where a secret may be sent, so every `isSecret` environment variable must be matched by an
//! operator-written [`CredentialSpec`] (hosts + injection); the import fails listing the missing
//! ones rather than inventing hosts or leaving a placeholder in an index that will be signed.
//! Non-secret variables take the operator's value, else the file's `value`, else its `default`;
//! a required one with none of these is an error. The file is parsed leniently (its format grows
//! new fields), but every value taken from it is validated like any index entry.

use std::collections::BTreeMap;

use gig_policy::{CredentialSpec, EgressRule, InstanceMode, ResourceLimits};
use serde::Deserialize;

use crate::{
    ExtractMode, ImageEntry, ImageRef, IndexServerName, RemoteEntry, Transport, VersionEntry,
    validate_entrypoint, validate_version_label,
};
use gig_policy::CredentialName;
use gig_policy::remote::{CREDENTIAL_REF, RawRemote};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImportError {
    #[error("server.json is malformed: {0}")]
    Malformed(String),
    #[error("server.json has no OCI package with the stdio transport and no remote{0}")]
    NoOciPackage(String),
    #[error("server.json has {0} OCI stdio packages; choose one with its position (0-based)")]
    Ambiguous(usize),
    #[error("server.json has {0} remotes; choose one with its position (0-based)")]
    AmbiguousRemote(usize),
    #[error(
        "server.json declares secret(s) {}; give each a credential with its hosts and injection, e.g. --credential '{{\"env\":\"{}\",\"hosts\":[\"api.example.com\"],\"inject\":{{\"type\":\"header\",\"name\":\"Authorization\",\"template\":\"Bearer {{}}\"}}}}'",
        .0.join(", "), .0[0]
    )]
    MissingCredentials(Vec<String>),
    #[error("{0} needs a value that server.json does not give: {1}")]
    MissingValue(String, &'static str),
    #[error("{0}")]
    Invalid(String),
}

/// What the operator adds to what the publisher declared.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// The index name; default: derived from the server.json name (`io.github.u/weather` →
    /// `weather`).
    pub name: Option<IndexServerName>,
    /// Absolute path of the server executable in the image (server.json does not carry it);
    /// needed for a package, not for a remote.
    pub entrypoint: Option<String>,
    /// Replaces the arguments derived from `packageArguments`.
    pub args: Option<Vec<String>>,
    /// Values for (or in addition to) the declared non-secret variables.
    pub env: BTreeMap<String, String>,
    pub credentials: Vec<CredentialSpec>,
    pub egress: Vec<EgressRule>,
    pub limits: ResourceLimits,
    pub extract: ExtractMode,
    /// Which OCI stdio package to take when there are several (0-based among them).
    pub package: Option<usize>,
    /// Take this entry of `remotes` (0-based) instead of a package.
    pub remote: Option<usize>,
    /// A remote's header values, replacing or adding to what server.json declares (a value may
    /// name a credential as `${credential:NAME}`).
    pub headers: BTreeMap<String, String>,
    /// A remote's URL, for one whose published URL has `{variables}`.
    pub url: Option<String>,
}

/// A server taken from server.json; a package's image may still need pinning.
#[derive(Debug, Clone)]
pub struct ImportedServer {
    pub name: IndexServerName,
    pub version: String,
    pub description: String,
    kind: ImportedKind,
}

#[derive(Debug, Clone)]
enum ImportedKind {
    /// The image as published, with an explicit registry (`ghcr.io/o/r:1.2.3`, maybe already
    /// `@sha256:…`), and the entry it goes into once pinned.
    Package {
        image: String,
        entry: ImageEntry,
    },
    Remote(RemoteEntry),
}

impl ImportedServer {
    /// The image as published, for a package.
    pub fn image(&self) -> Option<&str> {
        match &self.kind {
            ImportedKind::Package { image, .. } => Some(image),
            ImportedKind::Remote(_) => None,
        }
    }

    /// The image parsed as pinned, if server.json already gave a digest.
    pub fn pinned_image(&self) -> Option<ImageRef> {
        self.image().and_then(|image| image.parse().ok())
    }

    /// The index entry: a package's with `image` (its published image resolved to a digest),
    /// a remote's as it is.
    pub fn into_entry(self, image: Option<ImageRef>) -> Result<VersionEntry, ImportError> {
        let entry = match self.kind {
            ImportedKind::Package { mut entry, .. } => {
                entry.image = image.ok_or_else(|| {
                    ImportError::Invalid("the package's image is not pinned by digest".into())
                })?;
                VersionEntry::Image(entry)
            }
            ImportedKind::Remote(remote) => VersionEntry::Remote(remote),
        };
        entry.validate().map_err(ImportError::Invalid)?;
        Ok(entry)
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ServerJson {
    name: String,
    #[serde(default)]
    description: String,
    version: String,
    #[serde(default)]
    packages: Vec<Package>,
    #[serde(default)]
    remotes: Vec<RemoteJson>,
}

#[derive(Deserialize)]
struct RemoteJson {
    #[serde(rename = "type")]
    kind: String,
    url: String,
    #[serde(default)]
    headers: Vec<KeyValueInput>,
}

impl RemoteJson {
    /// The servers-file spelling of its transport, for the two the gateway speaks.
    fn transport(&self) -> Option<&'static str> {
        match self.kind.as_str() {
            "streamable-http" => Some("http"),
            "sse" => Some("sse"),
            _ => None,
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Package {
    registry_type: String,
    #[serde(default)]
    registry_base_url: Option<String>,
    identifier: String,
    #[serde(default)]
    version: Option<String>,
    transport: TransportJson,
    #[serde(default)]
    package_arguments: Vec<Argument>,
    #[serde(default)]
    environment_variables: Vec<KeyValueInput>,
}

#[derive(Deserialize)]
struct TransportJson {
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Argument {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    value: Option<String>,
    #[serde(default)]
    default: Option<String>,
    #[serde(default)]
    is_required: bool,
    #[serde(default)]
    value_hint: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct KeyValueInput {
    name: String,
    #[serde(default)]
    value: Option<String>,
    #[serde(default)]
    default: Option<String>,
    #[serde(default)]
    is_required: bool,
    #[serde(default)]
    is_secret: bool,
}

/// A value with `{variable}` templates needs input the file does not have.
fn is_template(v: &str) -> bool {
    v.contains('{') && v.contains('}')
}

fn default_name(server_json_name: &str) -> Option<IndexServerName> {
    let last = server_json_name.rsplit('/').next()?;
    let name: String = last
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c == '_' || c == '.' { '-' } else { c })
        .collect();
    name.trim_matches('-').parse().ok()
}

/// The image reference with an explicit registry and the package version as its tag if the
/// identifier has neither tag nor digest (the pre-2025-10-11 layout).
fn image_of(p: &Package) -> Result<String, ImportError> {
    let id = p.identifier.trim();
    if id.is_empty() || id.contains(char::is_whitespace) {
        return Err(ImportError::Invalid(format!(
            "invalid OCI identifier {:?}",
            p.identifier
        )));
    }
    let first = id.split('/').next().unwrap_or_default();
    let has_registry =
        id.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
    let mut image = if has_registry {
        id.to_owned()
    } else {
        let host = p
            .registry_base_url
            .as_deref()
            .map(|u| {
                u.split_once("://")
                    .map_or(u, |(_, h)| h)
                    .trim_end_matches('/')
            })
            .filter(|h| !h.is_empty())
            .unwrap_or("docker.io");
        let host = if host == "index.docker.io" || host == "registry-1.docker.io" {
            "docker.io"
        } else {
            host
        };
        if host == "docker.io" && !id.contains('/') {
            format!("docker.io/library/{id}")
        } else {
            format!("{host}/{id}")
        }
    };
    let last = image.rsplit('/').next().unwrap_or_default();
    if !last.contains(':') && !image.contains('@') {
        match p.version.as_deref() {
            Some(v) if !v.is_empty() => image = format!("{image}:{v}"),
            _ => {
                return Err(ImportError::Invalid(format!(
                    "OCI package {id:?} has neither a tag nor a digest nor a version"
                )));
            }
        }
    }
    Ok(image)
}

fn args_of(p: &Package) -> Result<Vec<String>, ImportError> {
    let mut args = Vec::new();
    for a in &p.package_arguments {
        let value = a.value.as_ref().or(a.default.as_ref());
        let label = a
            .name
            .clone()
            .or_else(|| a.value_hint.clone())
            .unwrap_or_else(|| "a positional argument".into());
        if value.is_some_and(|v| is_template(v)) {
            return Err(ImportError::MissingValue(
                format!("argument {label}"),
                "its value is a template; pass the full argument list with --arg",
            ));
        }
        match (a.kind.as_str(), value) {
            ("positional", Some(v)) => args.push(v.clone()),
            ("named", Some(v)) => {
                args.push(a.name.clone().unwrap_or_default());
                args.push(v.clone());
            }
            (_, None) if a.is_required => {
                return Err(ImportError::MissingValue(
                    format!("required argument {label}"),
                    "pass the full argument list with --arg",
                ));
            }
            ("positional" | "named", None) => {}
            (other, _) => {
                return Err(ImportError::Invalid(format!(
                    "unknown argument type {other:?}"
                )));
            }
        }
    }
    Ok(args)
}

/// Takes a server.json's OCI stdio package, or one of its remotes, into an index entry (a
/// package's image still to pin). A file with no package takes its one remote by itself.
pub fn import_server_json(
    bytes: &[u8],
    opts: &ImportOptions,
) -> Result<ImportedServer, ImportError> {
    let sj: ServerJson =
        serde_json::from_slice(bytes).map_err(|e| ImportError::Malformed(e.to_string()))?;
    let others: Vec<String> = sj
        .packages
        .iter()
        .filter(|p| p.registry_type != "oci" || p.transport.kind != "stdio")
        .map(|p| format!("{} ({})", p.registry_type, p.transport.kind))
        .chain(
            sj.remotes
                .iter()
                .filter(|r| r.transport().is_none())
                .map(|r| format!("remote ({})", r.kind)),
        )
        .collect();
    let oci: Vec<&Package> = sj
        .packages
        .iter()
        .filter(|p| p.registry_type == "oci" && p.transport.kind == "stdio")
        .collect();
    let remotes: Vec<&RemoteJson> = sj
        .remotes
        .iter()
        .filter(|r| r.transport().is_some())
        .collect();
    let name = match &opts.name {
        Some(n) => n.clone(),
        None => default_name(&sj.name).ok_or_else(|| {
            ImportError::Invalid(format!(
                "cannot derive an index name from {:?}; give one with --name",
                sj.name
            ))
        })?,
    };
    validate_version_label(&sj.version).map_err(ImportError::Invalid)?;
    let remote = match (opts.remote, oci.len(), remotes.len()) {
        (Some(i), _, n) => Some(*remotes.get(i).ok_or(ImportError::AmbiguousRemote(n))?),
        (None, 0, 1) => Some(remotes[0]),
        (None, 0, 0) => {
            let note = if others.is_empty() {
                String::new()
            } else {
                format!(" (it has: {})", others.join(", "))
            };
            return Err(ImportError::NoOciPackage(note));
        }
        (None, 0, n) => return Err(ImportError::AmbiguousRemote(n)),
        (None, _, _) => None,
    };
    let kind = match remote {
        Some(remote) => ImportedKind::Remote(remote_entry(remote, &sj.description, opts)?),
        None => {
            let package = match (oci.len(), opts.package) {
                (_, Some(i)) => *oci.get(i).ok_or(ImportError::Ambiguous(oci.len()))?,
                (1, None) => oci[0],
                (n, None) => return Err(ImportError::Ambiguous(n)),
            };
            package_entry(package, &sj.description, opts)?
        }
    };
    Ok(ImportedServer {
        name,
        version: sj.version,
        description: sj.description,
        kind,
    })
}

/// A remote: its transport and URL, its headers with every secret turned into a vault
/// reference. The operator's `headers` win over what the publisher declared.
fn remote_entry(
    remote: &RemoteJson,
    description: &str,
    opts: &ImportOptions,
) -> Result<RemoteEntry, ImportError> {
    let url = opts.url.clone().unwrap_or_else(|| remote.url.clone());
    if is_template(&url) {
        return Err(ImportError::MissingValue(
            "the remote's url".into(),
            "it has {variables}; give the url with --url",
        ));
    }
    let mut headers = BTreeMap::new();
    for header in &remote.headers {
        if opts.headers.contains_key(&header.name) {
            continue;
        }
        if let Some(value) = header_value(header)? {
            headers.insert(header.name.clone(), value);
        }
    }
    headers.extend(opts.headers.clone());
    let entry = RemoteEntry {
        remote: RawRemote {
            url,
            transport: remote.transport().map(str::to_owned),
            headers,
            allow_addresses: Vec::new(),
            oauth: None,
        },
        description: description.to_owned(),
    };
    entry.spec("imported").map_err(ImportError::Invalid)?;
    Ok(entry)
}

/// A declared header's value: a secret one as vault references (each `{variable}` in its value
/// a credential of that name, or the whole value the credential named after the header); a
/// plain one as given. `None` for an optional header with no value.
fn header_value(header: &KeyValueInput) -> Result<Option<String>, ImportError> {
    let value = header.value.as_ref().or(header.default.as_ref());
    if !header.is_secret {
        return match value {
            Some(v) if is_template(v) => Err(ImportError::MissingValue(
                format!("header {}", header.name),
                "its value is a template; give it with --header NAME=VALUE",
            )),
            Some(v) => Ok(Some(v.clone())),
            None if header.is_required => Err(ImportError::MissingValue(
                format!("required header {}", header.name),
                "give it with --header NAME=VALUE",
            )),
            None => Ok(None),
        };
    }
    let reference = |name: &str| match CredentialName::parse(name) {
        Ok(name) => Ok(format!("{CREDENTIAL_REF}{name}}}")),
        Err(why) => Err(ImportError::Invalid(format!(
            "secret header {}: {why}; give the header with --header NAME=VALUE",
            header.name
        ))),
    };
    match value.filter(|v| is_template(v)) {
        None => reference(&header.name.to_ascii_lowercase()).map(Some),
        Some(template) => {
            let mut out = String::new();
            let mut rest = template.as_str();
            while let Some((before, after)) = rest.split_once('{') {
                let (variable, tail) = after.split_once('}').ok_or_else(|| {
                    ImportError::Invalid(format!("header {}: an unclosed {{", header.name))
                })?;
                out.push_str(before);
                out.push_str(&reference(variable)?);
                rest = tail;
            }
            out.push_str(rest);
            Ok(Some(out))
        }
    }
}

/// An OCI package: its image (still to pin), arguments, environment and the operator's policy.
fn package_entry(
    package: &Package,
    description: &str,
    opts: &ImportOptions,
) -> Result<ImportedKind, ImportError> {
    let entrypoint = opts.entrypoint.clone().ok_or_else(|| {
        ImportError::MissingValue(
            "the package".into(),
            "server.json does not say where the executable is; give it with --entrypoint",
        )
    })?;
    validate_entrypoint(&entrypoint).map_err(ImportError::Invalid)?;
    let mut env = BTreeMap::new();
    let mut missing_credentials = Vec::new();
    for var in &package.environment_variables {
        if var.is_secret {
            if opts.env.contains_key(&var.name) {
                return Err(ImportError::Invalid(format!(
                    "{} is a secret: declare it as a credential, never as a plain env value",
                    var.name
                )));
            }
            if !opts.credentials.iter().any(|c| c.env == var.name) {
                missing_credentials.push(var.name.clone());
            }
            continue;
        }
        let value = opts
            .env
            .get(&var.name)
            .or(var.value.as_ref())
            .or(var.default.as_ref());
        match value {
            Some(v) if is_template(v) && !opts.env.contains_key(&var.name) => {
                return Err(ImportError::MissingValue(
                    format!("env {}", var.name),
                    "its value is a template; give it with --env NAME=VALUE",
                ));
            }
            Some(v) => {
                env.insert(var.name.clone(), v.clone());
            }
            None if var.is_required => {
                return Err(ImportError::MissingValue(
                    format!("required env {}", var.name),
                    "give it with --env NAME=VALUE",
                ));
            }
            None => {}
        }
    }
    if !missing_credentials.is_empty() {
        return Err(ImportError::MissingCredentials(missing_credentials));
    }
    for (k, v) in &opts.env {
        env.entry(k.clone()).or_insert_with(|| v.clone());
    }

    let args = match &opts.args {
        Some(a) => a.clone(),
        None => args_of(package)?,
    };
    let image = image_of(package)?;
    // A placeholder until pinned; `into_entry` replaces it and validates the whole entry.
    let placeholder: ImageRef = format!("localhost/unpinned@sha256:{}", "0".repeat(64))
        .parse()
        .map_err(ImportError::Invalid)?;
    Ok(ImportedKind::Package {
        image,
        entry: ImageEntry {
            image: placeholder,
            entrypoint,
            args,
            transport: Transport::Stdio,
            env,
            credentials: opts.credentials.clone(),
            egress: opts.egress.clone(),
            limits: opts.limits,
            extract: opts.extract,
            description: description.to_owned(),
            // An imported server runs shared until its index entry says otherwise.
            instances: InstanceMode::Shared,
            max_instances: None,
            max_instances_per_user: None,
            idle_seconds: None,
        },
    })
}
