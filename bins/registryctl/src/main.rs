//! `registryctl`: maintains a Gig'MCP server index and signs it.
//!
//! The working copy is an unsigned index JSON file (`add`, `import` edit it); `sign` turns it into
//! the signed envelope the gateway loads from `GIG_INDEX_URL`. Private keys only ever come from
//! files that no group or other user can read; registry passwords only from an environment
//! variable or a file — never from argv, where any local user can read them in /proc.

#![forbid(unsafe_code)]

mod registry;
mod remote;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Parser, Subcommand};
use gig_policy::{
    CredentialSpec, EgressRule, InstanceMode, InstancePolicy, RawInstances, ResourceLimits,
};
use gig_registry_schema::import::{ImportOptions, import_server_json};
use gig_registry_schema::{
    ExtractMode, ImageEntry, ImageRef, Index, IndexServerName, IndexSigningKey, MAX_INDEX_LIFETIME,
    ServerEntry, Transport, TrustedKeys, VersionEntry, sign_index, validate_version_label, verify,
};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use zeroize::Zeroizing;

#[derive(Parser, Debug)]
#[command(
    name = "registryctl",
    version,
    about = "Maintain and sign a Gig'MCP server index"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Generate an Ed25519 signing key (file mode 0600; never overwrites); prints the public key.
    Keygen {
        #[arg(long)]
        out: PathBuf,
    },
    /// Add a server version to an unsigned index file (created if missing): an image, pinned
    /// to its digest, or a remote server (`--remote URL`).
    Add(AddArgs),
    /// Add a server version from an MCP Registry server.json (its OCI stdio package, or one of
    /// its remotes).
    Import(ImportArgs),
    /// Sign an index file into the envelope the gateway loads.
    Sign(SignArgs),
    /// Verify a signed index against public keys (as the gateway does, minus rollback state).
    Verify(VerifyArgs),
    /// Print a human summary of a signed index (does not verify it).
    Show {
        #[arg(long)]
        signed: PathBuf,
    },
}

#[derive(Args, Debug)]
struct EntryArgs {
    /// Egress allowlist entry (`host`, `host:port[,port]`, `http://host[:port]`); repeatable.
    #[arg(long = "egress", value_name = "RULE")]
    egress: Vec<String>,
    /// A credential as JSON: {"env","hosts":[...],"inject":{...}[,"secret"]}; repeatable.
    #[arg(long = "credential", value_name = "JSON")]
    credentials: Vec<String>,
    /// A non-secret environment variable NAME=VALUE; repeatable.
    #[arg(long = "env", value_name = "NAME=VALUE")]
    env: Vec<String>,
    /// An argument for the entrypoint; repeatable (for import: replaces server.json's).
    #[arg(long = "arg", value_name = "ARG", allow_hyphen_values = true)]
    args: Vec<String>,
    /// What to extract from the image: `entrypoint` (static binary) or `rootfs`.
    #[arg(long, default_value = "entrypoint", value_parser = ["entrypoint", "rootfs"])]
    extract: String,
    /// Resource limits as JSON: {"memoryBytes","maxProcesses","cpuMillis"}.
    #[arg(long, value_name = "JSON")]
    limits: Option<String>,
    /// Instances as JSON: {"instances": "per-user"|"per-session", "maxInstances",
    /// "maxInstancesPerUser", "idleSeconds"} (default: one shared instance).
    #[arg(long, value_name = "JSON")]
    instances: Option<String>,
    /// Replace the version if the index already has it.
    #[arg(long)]
    replace: bool,
    /// Do not make this version the server's `latest`.
    #[arg(long)]
    no_latest: bool,
}

#[derive(Args, Debug)]
pub struct RegistryArgs {
    /// Talk plain HTTP to the image's registry (loopback test registries).
    #[arg(long)]
    insecure_registry: bool,
    /// Registry user for HTTP basic auth; the password comes from --password-env or --password-file.
    #[arg(long)]
    username: Option<String>,
    /// Name of the environment variable holding the registry password.
    #[arg(long, value_name = "VAR")]
    password_env: Option<String>,
    /// File holding the registry password (first line).
    #[arg(long, value_name = "FILE")]
    password_file: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct AddArgs {
    #[arg(long)]
    index: PathBuf,
    #[arg(long)]
    name: String,
    #[arg(long)]
    version: String,
    /// REGISTRY/REPO[:TAG] (resolved to its digest now) or REGISTRY/REPO[:TAG]@sha256:... (kept).
    #[arg(long, required_unless_present = "remote", conflicts_with = "remote")]
    image: Option<String>,
    /// Absolute path of the server executable in the image.
    #[arg(long, required_unless_present = "remote", conflicts_with = "remote")]
    entrypoint: Option<String>,
    #[command(flatten)]
    remote: remote::RemoteArgs,
    /// Description of this version.
    #[arg(long, default_value = "")]
    description: String,
    /// Description of the server (kept if omitted and the server exists).
    #[arg(long)]
    server_description: Option<String>,
    #[command(flatten)]
    entry: EntryArgs,
    #[command(flatten)]
    registry: RegistryArgs,
}

#[derive(Args, Debug)]
struct ImportArgs {
    #[arg(long)]
    index: PathBuf,
    #[arg(long)]
    server_json: PathBuf,
    /// Index name (default: derived from server.json's name).
    #[arg(long)]
    name: Option<String>,
    /// Absolute path of the server executable in the image (for a package).
    #[arg(long)]
    entrypoint: Option<String>,
    /// Which OCI stdio package to take if there are several (0-based).
    #[arg(long, conflicts_with = "take_remote")]
    package: Option<usize>,
    /// Take this entry of `remotes` (0-based) instead of a package; a file without packages
    /// takes its only remote by itself.
    #[arg(long = "remote", value_name = "N")]
    take_remote: Option<usize>,
    /// The remote's URL, when the published one has {variables}.
    #[arg(long, value_name = "URL")]
    url: Option<String>,
    /// A remote's header NAME=VALUE (the value may name a vault credential as
    /// `${credential:NAME}`), replacing server.json's; repeatable.
    #[arg(long = "header", value_name = "NAME=VALUE")]
    headers: Vec<String>,
    #[command(flatten)]
    entry: EntryArgs,
    #[command(flatten)]
    registry: RegistryArgs,
}

#[derive(Args, Debug)]
struct SignArgs {
    #[arg(long)]
    index: PathBuf,
    /// Private key file from `keygen` (must not be readable by group or other); repeat to
    /// sign with several keys, for gateways whose GIG_INDEX_PUBKEYS lists several keys and a
    /// `threshold=N` entry (N distinct listed keys must sign).
    #[arg(long = "key", required = true)]
    keys: Vec<PathBuf>,
    /// Index version (default: the larger of the file's version + 1 and the Unix time in seconds).
    #[arg(long)]
    version: Option<u64>,
    /// How long the signed index stays valid (`30d`, `12h`; at most 366 days: a leaked or
    /// withdrawn index stays valid until it expires).
    #[arg(long, value_parser = parse_expires_in)]
    expires_in: Duration,
    #[arg(long)]
    out: PathBuf,
}

#[derive(Args, Debug)]
struct VerifyArgs {
    #[arg(long)]
    signed: PathBuf,
    /// Trusted key `ed25519:<base64>` (or a comma-separated list, as in GIG_INDEX_PUBKEYS,
    /// which may hold a `threshold=N` entry); repeatable.
    #[arg(long = "pubkey", required = true, value_name = "LINE")]
    pubkeys: Vec<String>,
    /// How many distinct trusted keys must have signed (default: the list's `threshold=N`
    /// entry, else 1).
    #[arg(long)]
    threshold: Option<usize>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let msg = format!("{e:#}").replace('\n', " ");
            eprintln!("registryctl: error: {msg}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.cmd {
        Cmd::Keygen { out } => keygen(&out),
        Cmd::Add(a) => add(a),
        Cmd::Import(a) => import(a),
        Cmd::Sign(a) => sign(a),
        Cmd::Verify(a) => verify_cmd(a),
        Cmd::Show { signed } => show(&signed),
    }
}

fn keygen(out: &Path) -> Result<()> {
    let key = IndexSigningKey::generate()?;
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(out)
        .with_context(|| {
            format!(
                "cannot create key file {} (an existing key is never overwritten)",
                out.display()
            )
        })?;
    file.write_all(key.to_file_text().as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write key file {}", out.display()))?;
    println!("{}", key.public());
    eprintln!(
        "wrote private key {} (key id {}); give the line above to GIG_INDEX_PUBKEYS",
        out.display(),
        key.public().key_id()
    );
    Ok(())
}

fn read_signing_key(path: &Path) -> Result<IndexSigningKey> {
    let mut file =
        fs::File::open(path).with_context(|| format!("cannot open key file {}", path.display()))?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        bail!("key file {} is not a regular file", path.display());
    }
    let mode = meta.mode() & 0o777;
    if mode & 0o077 != 0 {
        bail!(
            "key file {} has mode {mode:04o}: it must not be readable by group or other (chmod 600 it)",
            path.display()
        );
    }
    let mut text = Zeroizing::new(String::new());
    std::io::Read::read_to_string(&mut file, &mut text)
        .with_context(|| format!("cannot read key file {}", path.display()))?;
    IndexSigningKey::from_file_text(&text).with_context(|| format!("key file {}", path.display()))
}

/// Writes via a temporary file in the same directory and a rename, so readers never see half.
/// The temporary file has a random name and is created exclusively (`O_EXCL`), so nothing
/// planted in the directory (a symlink to a victim file) is followed or overwritten. Index
/// files are public: the result is mode 0644.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| anyhow!("{} is not a file path", path.display()))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{}.", name.to_string_lossy()))
        .suffix(".tmp")
        .tempfile_in(dir)
        .with_context(|| format!("cannot create a temporary file in {}", dir.display()))?;
    tmp.write_all(bytes)
        .and_then(|()| {
            tmp.as_file()
                .set_permissions(fs::Permissions::from_mode(0o644))
        })
        .and_then(|()| tmp.as_file().sync_all())
        .with_context(|| format!("cannot write {}", path.display()))?;
    // On failure the temporary file is removed when `tmp` drops.
    tmp.persist(path)
        .map_err(|e| e.error)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// `--expires-in`: a humantime duration, at most [`MAX_INDEX_LIFETIME`].
fn parse_expires_in(text: &str) -> Result<Duration, String> {
    let duration = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    if duration > MAX_INDEX_LIFETIME {
        return Err(format!(
            "{text} is longer than the most an index may stay valid, {} days",
            MAX_INDEX_LIFETIME.as_secs() / 86_400
        ));
    }
    Ok(duration)
}

fn read_index(path: &Path, create: bool) -> Result<Index> {
    match fs::read(path) {
        Ok(bytes) => Index::from_json(&bytes).with_context(|| format!("index {}", path.display())),
        Err(e) if create && e.kind() == std::io::ErrorKind::NotFound => Ok(Index::empty()),
        Err(e) => Err(e).with_context(|| format!("cannot read index {}", path.display())),
    }
}

/// The policy parts of an entry shared by `add` and `import`.
struct Policy {
    egress: Vec<EgressRule>,
    credentials: Vec<CredentialSpec>,
    env: BTreeMap<String, String>,
    limits: ResourceLimits,
    extract: ExtractMode,
    instances: RawInstances,
}

/// Puts `--instances` into an entry (checked again with the whole entry).
fn set_instances(entry: &mut ImageEntry, raw: RawInstances) {
    entry.instances = raw.instances;
    entry.max_instances = raw.max_instances;
    entry.max_instances_per_user = raw.max_instances_per_user;
    entry.idle_seconds = raw.idle_seconds;
}

fn policy_of(e: &EntryArgs) -> Result<Policy> {
    let egress = e
        .egress
        .iter()
        .map(|r| r.parse().map_err(anyhow::Error::from))
        .collect::<Result<_>>()?;
    let credentials = e
        .credentials
        .iter()
        .map(|c| {
            let spec: CredentialSpec = serde_json::from_str(c)
                .with_context(|| format!("--credential {c}: not a credential JSON"))?;
            spec.validate()?;
            Ok(spec)
        })
        .collect::<Result<_>>()?;
    let mut env = BTreeMap::new();
    for kv in &e.env {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| anyhow!("--env {kv}: expected NAME=VALUE"))?;
        if env.insert(k.to_owned(), v.to_owned()).is_some() {
            bail!("--env {k} given twice");
        }
    }
    let limits = match &e.limits {
        Some(j) => serde_json::from_str(j).with_context(|| format!("--limits {j}"))?,
        None => ResourceLimits::default(),
    };
    let extract = if e.extract == "rootfs" {
        ExtractMode::Rootfs
    } else {
        ExtractMode::Entrypoint
    };
    let instances = match &e.instances {
        Some(j) => {
            let raw: RawInstances =
                serde_json::from_str(j).with_context(|| format!("--instances {j}"))?;
            InstancePolicy::from_raw(raw).map_err(|e| anyhow!("--instances {j}: {e}"))?;
            raw
        }
        None => RawInstances::default(),
    };
    Ok(Policy {
        egress,
        credentials,
        env,
        limits,
        extract,
        instances,
    })
}

/// Inserts `entry` as `name@version`, then validates and writes the whole index.
fn insert_and_write(
    path: &Path,
    mut index: Index,
    name: IndexServerName,
    version: String,
    entry: VersionEntry,
    server_description: Option<String>,
    e: &EntryArgs,
) -> Result<()> {
    let source = match &entry {
        VersionEntry::Image(image) => image.image.to_string(),
        VersionEntry::Remote(remote) => remote.remote.url.clone(),
    };
    let server = index
        .servers
        .entry(name.clone())
        .or_insert_with(|| ServerEntry {
            description: String::new(),
            latest: version.clone(),
            versions: BTreeMap::new(),
        });
    if server.versions.contains_key(&version) && !e.replace {
        bail!(
            "{name}@{version} is already in the index; publish a new version (or pass --replace)"
        );
    }
    server.versions.insert(version.clone(), entry);
    if !e.no_latest {
        server.latest = version.clone();
    }
    if let Some(d) = server_description {
        server.description = d;
    }
    index.validate()?;
    write_atomically(path, &index.to_json_pretty())?;
    println!("{name}@{version} = {source}");
    Ok(())
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn add(a: AddArgs) -> Result<()> {
    let name: IndexServerName = a.name.parse().map_err(|e: String| anyhow!(e))?;
    validate_version_label(&a.version).map_err(|e| anyhow!(e))?;
    let index = read_index(&a.index, true)?;
    let (Some(image), Some(entrypoint)) = (&a.image, a.entrypoint) else {
        let entry = remote::entry(&a.remote, &a.entry, a.description)?;
        return insert_and_write(
            &a.index,
            index,
            name,
            a.version,
            VersionEntry::Remote(entry),
            a.server_description,
            &a.entry,
        );
    };
    let policy = policy_of(&a.entry)?;
    let image = runtime()?.block_on(registry::pin(image, &a.registry))?;
    let mut entry = ImageEntry {
        image,
        entrypoint,
        args: a.entry.args.clone(),
        transport: Transport::Stdio,
        env: policy.env,
        credentials: policy.credentials,
        egress: policy.egress,
        limits: policy.limits,
        extract: policy.extract,
        description: a.description,
        instances: InstanceMode::Shared,
        max_instances: None,
        max_instances_per_user: None,
        idle_seconds: None,
    };
    set_instances(&mut entry, policy.instances);
    entry.validate().map_err(|e| anyhow!(e))?;
    insert_and_write(
        &a.index,
        index,
        name,
        a.version,
        VersionEntry::Image(entry),
        a.server_description,
        &a.entry,
    )
}

fn import(a: ImportArgs) -> Result<()> {
    let policy = policy_of(&a.entry)?;
    let name = a
        .name
        .as_deref()
        .map(|n| n.parse::<IndexServerName>().map_err(|e| anyhow!(e)))
        .transpose()?;
    let bytes = fs::read(&a.server_json)
        .with_context(|| format!("cannot read {}", a.server_json.display()))?;
    let opts = ImportOptions {
        name,
        entrypoint: a.entrypoint.clone(),
        args: (!a.entry.args.is_empty()).then(|| a.entry.args.clone()),
        env: policy.env,
        credentials: policy.credentials,
        egress: policy.egress,
        limits: policy.limits,
        extract: policy.extract,
        package: a.package,
        remote: a.take_remote,
        headers: remote::headers(&a.headers)?,
        url: a.url.clone(),
    };
    let imported = import_server_json(&bytes, &opts)
        .with_context(|| format!("{}", a.server_json.display()))?;
    let index = read_index(&a.index, true)?;
    let image: Option<ImageRef> = match (imported.image(), imported.pinned_image()) {
        (_, Some(pinned)) => Some(pinned),
        (Some(published), None) => {
            Some(runtime()?.block_on(registry::pin(published, &a.registry))?)
        }
        (None, None) => None,
    };
    let (name, version, description) = (
        imported.name.clone(),
        imported.version.clone(),
        imported.description.clone(),
    );
    let mut entry = imported.into_entry(image)?;
    match &mut entry {
        VersionEntry::Image(image) => set_instances(image, policy.instances),
        VersionEntry::Remote(_) => remote::refuse_image_options(&a.entry)?,
    }
    entry.validate().map_err(|e| anyhow!(e))?;
    insert_and_write(
        &a.index,
        index,
        name,
        version,
        entry,
        Some(description),
        &a.entry,
    )
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn sign(a: SignArgs) -> Result<()> {
    let keys = a
        .keys
        .iter()
        .map(|k| read_signing_key(k))
        .collect::<Result<Vec<_>>>()?;
    let mut index = read_index(&a.index, false)?;
    index.version = a
        .version
        .unwrap_or_else(|| index.version.saturating_add(1).max(unix_now()));
    let expires_in =
        time::Duration::try_from(a.expires_in).map_err(|_| anyhow!("--expires-in is too large"))?;
    index.expires = OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .ok()
        .and_then(|t| t.checked_add(expires_in))
        .ok_or_else(|| anyhow!("--expires-in is too large"))?;
    let signed = sign_index(&index, &keys.iter().collect::<Vec<_>>())?;
    write_atomically(&a.out, &signed)?;
    let ids: Vec<String> = keys
        .iter()
        .map(|k| k.public().key_id().to_owned())
        .collect();
    println!(
        "signed index version {} (expires {}) with key(s) {} -> {}",
        index.version,
        rfc3339(index.expires),
        ids.join(", "),
        a.out.display()
    );
    Ok(())
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_else(|_| t.to_string())
}

fn verify_cmd(a: VerifyArgs) -> Result<()> {
    let mut keys = TrustedKeys::parse_list(&a.pubkeys.join(","))?;
    if let Some(threshold) = a.threshold {
        keys = keys.with_threshold(threshold)?;
    }
    let bytes =
        fs::read(&a.signed).with_context(|| format!("cannot read {}", a.signed.display()))?;
    let v = verify(&bytes, &keys, SystemTime::now(), None)
        .with_context(|| format!("{}", a.signed.display()))?;
    println!(
        "OK: index version {}, expires {}, {} server(s), signed by {}",
        v.index().version,
        rfc3339(v.index().expires),
        v.index().servers.len(),
        v.signed_by().join(", ")
    );
    Ok(())
}

fn show(path: &Path) -> Result<()> {
    let bytes = fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let envelope = gig_registry_schema::canonical::parse_strict(&bytes)
        .with_context(|| format!("{} is not JSON", path.display()))?;
    let signed = envelope
        .get("signed")
        .ok_or_else(|| anyhow!("{} is not a signed index (no `signed`)", path.display()))?;
    let index = Index::from_json(&serde_json::to_vec(signed)?)?;
    let keyids: Vec<&str> = envelope
        .get("signatures")
        .and_then(|s| s.as_array())
        .map(|a| a.iter().filter_map(|s| s.get("keyid")?.as_str()).collect())
        .unwrap_or_default();
    // Written whole at the end: a reader that stops early (`| grep -q`) is not an error.
    let mut out = String::new();
    let expired = if OffsetDateTime::now_utc() >= index.expires {
        " EXPIRED"
    } else {
        ""
    };
    writeln!(
        out,
        "index version {}, expires {}{expired}, {} server(s)",
        index.version,
        rfc3339(index.expires),
        index.servers.len()
    )?;
    writeln!(
        out,
        "signatures by: {} (NOT verified here; use `registryctl verify`)",
        if keyids.is_empty() {
            "nobody".into()
        } else {
            keyids.join(", ")
        }
    )?;
    for (name, server) in &index.servers {
        writeln!(out)?;
        writeln!(out, "{name} - {}", server.description)?;
        for (version, e) in &server.versions {
            let latest = if *version == server.latest {
                " (latest)"
            } else {
                ""
            };
            let e = match e {
                VersionEntry::Image(e) => e,
                VersionEntry::Remote(remote) => {
                    remote::show(&mut out, version, latest, remote)?;
                    continue;
                }
            };
            writeln!(out, "  {version}{latest}: {}", e.image)?;
            let extract = match e.extract {
                ExtractMode::Entrypoint => "entrypoint",
                ExtractMode::Rootfs => "rootfs",
            };
            writeln!(
                out,
                "    run      {} {}  [stdio, extract {extract}]",
                e.entrypoint,
                e.args.join(" ")
            )?;
            if !e.description.is_empty() {
                writeln!(out, "    about    {}", e.description)?;
            }
            if !e.env.is_empty() {
                let env: Vec<String> = e.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
                writeln!(out, "    env      {}", env.join(" "))?;
            }
            let egress: Vec<String> = e.egress.iter().map(ToString::to_string).collect();
            writeln!(
                out,
                "    egress   {}",
                if egress.is_empty() {
                    "none".into()
                } else {
                    egress.join(", ")
                }
            )?;
            for c in &e.credentials {
                let hosts: Vec<String> = c.hosts.iter().map(ToString::to_string).collect();
                writeln!(
                    out,
                    "    secret   {} (vault {}) only to {}",
                    c.env,
                    c.secret_name(),
                    hosts.join(", ")
                )?;
            }
            let l = &e.limits;
            if l.memory_bytes.is_some() || l.max_processes.is_some() || l.cpu_millis.is_some() {
                writeln!(
                    out,
                    "    limits   memory {} bytes, processes {}, cpu {} millis",
                    l.memory_bytes.map_or("-".into(), |v| v.to_string()),
                    l.max_processes.map_or("-".into(), |v| v.to_string()),
                    l.cpu_millis.map_or("-".into(), |v| v.to_string()),
                )?;
            }
        }
    }
    write_stdout(&out)
}

/// Writes `text` to stdout; a reader that has gone away (a closed pipe) is not a failure.
fn write_stdout(text: &str) -> Result<()> {
    use std::io::Write as _;
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}
