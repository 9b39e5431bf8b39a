//! Installs MCP servers from the signed index.
//!
//! `install("echo")`: fetch the index from `GIG_INDEX_URL` → verify it against the pinned keys
//! and the newest index accepted before (rollback/freeze) → resolve the ref → pull the image by
//! digest (every byte verified) → extract the entrypoint or root filesystem → record the index
//! (if it is newer) and the install. A failure at any step changes nothing in the store, not
//! even the accepted index's time: the store is written last, and the only other thing touched
//! is the content-addressed image cache, whose entries are immutable and complete or absent.

#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use gig_oci::{Cache, ImageSource, OciError, PullProgress, RegistryAuth, RegistryOptions};
use gig_policy::remote::RemoteSpec;
use gig_registry_schema::{
    AcceptedIndex, ExtractMode, ImageEntry, IndexError, ResolveError, TrustedKeys, VerifiedIndex,
    VersionEntry,
};
use gig_secrets::Secrets;
use gig_store::{AcceptedIndexState, CredentialScope, NewServer, ServerRecord, ServerState, Store};

/// The credential scope under which registry logins are kept in the vault, one secret per
/// registry host holding `user:password`.
/// `@` cannot start a server name (index names are `[a-z0-9-]`, and the servers file refuses it),
/// so no server's credentials can ever name a registry login.
pub const REGISTRY_SECRETS_SCOPE: &str = "@registry";

#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("GIG_INDEX_URL {0:?} must be https://… or file://…")]
    IndexUrl(String),
    #[error("fetching the index from {url}: {reason}")]
    Fetch { url: String, reason: String },
    #[error("the index was refused: {0}")]
    Index(#[from] IndexError),
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    #[error("{server}: {source}")]
    Image {
        server: String,
        #[source]
        source: OciError,
    },
    #[error("{server}: the entrypoint {entrypoint} is not a regular file in the image")]
    Entrypoint { server: String, entrypoint: String },
    #[error("store: {0}")]
    Store(#[from] gig_store::StoreError),
    #[error("vault: {0}")]
    Secrets(#[from] gig_secrets::SecretsError),
    #[error("registry login for {host} in the vault is not `user:password`")]
    RegistryLogin { host: String },
}

/// Where an install is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstallProgress {
    Index,
    Pull(PullProgress),
    Extract,
    Record,
}

/// One status line: `pulling layer 1/2  1.2 MiB / 5.0 MiB` (the CLI and `/api` show the same).
impl std::fmt::Display for InstallProgress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
        match self {
            InstallProgress::Index => f.write_str("verifying the signed index"),
            InstallProgress::Pull(p) if p.cached => f.write_str("image already in the cache"),
            InstallProgress::Pull(p) if p.layer == 0 => f.write_str("fetching manifest and config"),
            InstallProgress::Pull(p) => write!(
                f,
                "pulling layer {}/{}  {:.1} MiB / {:.1} MiB",
                p.layer,
                p.layers,
                mib(p.bytes_done),
                mib(p.bytes_total)
            ),
            InstallProgress::Extract => f.write_str("extracting"),
            InstallProgress::Record => f.write_str("recording the install"),
        }
    }
}

/// Everything an install needs, built once from the configuration.
#[derive(Debug, Clone)]
pub struct Installer {
    store: Store,
    secrets: Option<std::sync::Arc<Secrets>>,
    cache: Cache,
    index_url: String,
    keys: TrustedKeys,
    registry: RegistryOptions,
    /// An OCI image layout to take images from instead of their registries (air-gapped
    /// installs); images are still named, and verified, by the index's digests.
    layout: Option<PathBuf>,
}

/// An install that passed every check and is extracted, not yet recorded.
struct Prepared {
    name: String,
    /// The signed index's version this install was verified against.
    index_version: u64,
    version: String,
    /// The image and its verified digest; empty for a remote server.
    image_ref: String,
    digest: String,
    /// Where the image's files are; none for a remote server.
    path: Option<PathBuf>,
    manifest: serde_json::Value,
}

/// An installed server, read back from its store record.
#[derive(Debug, Clone)]
pub enum InstalledServer {
    /// Runs from its image, in a sandbox.
    Image(Installed),
    /// Reached over HTTP.
    Remote { version: String, spec: RemoteSpec },
}

impl InstalledServer {
    /// Reads an install back from its store record; an error (the reason) for a record that is
    /// not (or no longer) runnable.
    pub fn from_record(record: &ServerRecord) -> Result<Self, String> {
        if record.state != ServerState::Installed {
            return Err(format!("state is {}", record.state.as_str()));
        }
        let entry: VersionEntry = serde_json::from_value(record.manifest.clone())
            .map_err(|e| format!("stored manifest does not parse: {e}"))?;
        entry
            .validate()
            .map_err(|e| format!("stored manifest is invalid: {e}"))?;
        match entry {
            VersionEntry::Image(entry) => {
                let path = record
                    .extracted_path
                    .as_deref()
                    .map(PathBuf::from)
                    .ok_or("no extracted path recorded")?;
                Ok(InstalledServer::Image(Installed {
                    name: record.name.clone(),
                    version: record.version.clone(),
                    entry,
                    path,
                }))
            }
            VersionEntry::Remote(remote) => Ok(InstalledServer::Remote {
                version: record.version.clone(),
                spec: remote.spec(&record.name)?,
            }),
        }
    }
}

/// A server installed from its image, ready to run: its index entry and where its files are.
#[derive(Debug, Clone)]
pub struct Installed {
    pub name: String,
    pub version: String,
    pub entry: ImageEntry,
    /// The entrypoint file (extract = entrypoint) or the root filesystem (extract = rootfs).
    pub path: PathBuf,
}

impl Installed {
    /// The program's path inside its sandbox and the host path to bind there.
    pub fn program(&self) -> (String, PathBuf) {
        match self.entry.extract {
            ExtractMode::Entrypoint => {
                let file = self
                    .path
                    .file_name()
                    .map(Path::new)
                    .unwrap_or(Path::new("server"));
                (
                    format!("/srv/{}/{}", self.name, file.display()),
                    self.path.clone(),
                )
            }
            ExtractMode::Rootfs => (self.entry.entrypoint.clone(), self.path.clone()),
        }
    }
}

impl Installer {
    /// `cache_dir` holds pulled blobs and extracted trees (public image content: bubblewrap,
    /// running as an unprivileged user, must be able to read it).
    pub fn new(
        store: Store,
        secrets: Option<std::sync::Arc<Secrets>>,
        cache_dir: &Path,
        index_url: &str,
        keys: TrustedKeys,
        registry: RegistryOptions,
    ) -> Result<Self, InstallError> {
        if !(index_url.starts_with("https://") || index_url.starts_with("file://")) {
            return Err(InstallError::IndexUrl(index_url.to_owned()));
        }
        let cache = Cache::open(cache_dir).map_err(|source| InstallError::Image {
            server: "cache".into(),
            source,
        })?;
        Ok(Installer {
            store,
            secrets,
            cache,
            index_url: index_url.to_owned(),
            keys,
            registry,
            layout: None,
        })
    }

    /// Takes images from the OCI layout at `dir` instead of their registries.
    pub fn with_layout(mut self, dir: PathBuf) -> Self {
        self.layout = Some(dir);
        self
    }

    /// Fetches and verifies the index against the pinned keys and the newest accepted one,
    /// recording nothing. Refused: a bad or missing signature, unknown keys, an expired index,
    /// one older than the newest accepted, or a different document under the same version.
    pub async fn verify_index(&self) -> Result<VerifiedIndex, InstallError> {
        let bytes = fetch_index(&self.index_url).await?;
        let newest = self.store.accepted_index().await?.map(|s| AcceptedIndex {
            version: s.version,
            content_sha256: s.content_sha256,
        });
        Ok(gig_registry_schema::verify(
            &bytes,
            &self.keys,
            SystemTime::now(),
            newest.as_ref(),
        )?)
    }

    /// Records `index` as the newest accepted one. The very index already recorded is not
    /// written again, so re-reading an unchanged index changes nothing, not even its time.
    pub async fn record_index(&self, index: &VerifiedIndex) -> Result<(), InstallError> {
        let accepted = index.accepted();
        let state = AcceptedIndexState {
            version: accepted.version,
            content_sha256: accepted.content_sha256.clone(),
        };
        if self.store.accepted_index().await?.as_ref() != Some(&state) {
            self.store.accept_index(&state).await?;
        }
        Ok(())
    }

    /// [`Installer::verify_index`] then [`Installer::record_index`]: for callers that install
    /// several servers from one index (start-up's `GIG_INSTALL`).
    pub async fn load_index(&self) -> Result<VerifiedIndex, InstallError> {
        let verified = self.verify_index().await?;
        self.record_index(&verified).await?;
        Ok(verified)
    }

    /// Installs (or upgrades to) `reference` (`echo` or `echo@1.2.0`) from `index`, which the
    /// caller has recorded ([`Installer::load_index`]).
    pub async fn install_from(
        &self,
        index: &VerifiedIndex,
        reference: &str,
        progress: &(dyn Fn(InstallProgress) + Send + Sync),
    ) -> Result<ServerRecord, InstallError> {
        let prepared = self.prepare(index, reference, progress).await?;
        self.record_server(prepared, progress).await
    }

    /// Verifies the index, installs `reference` from it, and only then records the index and
    /// the server: a refused install (bad index, unknown server, hostile image, missing
    /// entrypoint) writes nothing to the store.
    pub async fn install(
        &self,
        reference: &str,
        progress: &(dyn Fn(InstallProgress) + Send + Sync),
    ) -> Result<ServerRecord, InstallError> {
        progress(InstallProgress::Index);
        let index = self.verify_index().await?;
        let prepared = self.prepare(&index, reference, progress).await?;
        self.record_index(&index).await?;
        self.record_server(prepared, progress).await
    }

    /// Resolve → pull → verify → extract: everything but the store write, which changes
    /// nothing but the content-addressed cache.
    async fn prepare(
        &self,
        index: &VerifiedIndex,
        reference: &str,
        progress: &(dyn Fn(InstallProgress) + Send + Sync),
    ) -> Result<Prepared, InstallError> {
        let resolved = index.resolve(reference)?;
        let name = resolved.name.to_string();
        let version = resolved.version.to_owned();
        let manifest = serde_json::to_value(resolved.entry).map_err(|e| InstallError::Fetch {
            url: self.index_url.clone(),
            reason: format!("re-encoding the entry: {e}"),
        })?;
        let entry = match resolved.entry {
            VersionEntry::Image(entry) => entry.clone(),
            // Nothing to pull: the record is the install.
            VersionEntry::Remote(_) => {
                return Ok(Prepared {
                    name,
                    index_version: index.accepted().version,
                    version,
                    image_ref: String::new(),
                    digest: String::new(),
                    path: None,
                    manifest,
                });
            }
        };
        let image_err = |source| InstallError::Image {
            server: name.clone(),
            source,
        };
        let image = gig_oci::ImageRef::parse(entry.image.as_str()).map_err(image_err)?;
        let (source, auth) = match &self.layout {
            Some(dir) => (
                ImageSource::Layout {
                    dir: dir.clone(),
                    digest: image.digest().clone(),
                },
                RegistryAuth::Anonymous,
            ),
            None => {
                let auth = self.registry_auth(image.registry()).await?;
                let source = ImageSource::Registry {
                    image,
                    options: self.registry.clone(),
                };
                (source, auth)
            }
        };
        let pulled = self
            .cache
            .pull(&source, &auth, &|p| progress(InstallProgress::Pull(p)))
            .await
            .map_err(image_err)?;
        progress(InstallProgress::Extract);
        let path = match entry.extract {
            ExtractMode::Entrypoint => self
                .cache
                .entrypoint(&pulled, &entry.entrypoint)
                .await
                .map_err(image_err)?,
            ExtractMode::Rootfs => {
                let root = self.cache.rootfs(&pulled).await.map_err(image_err)?;
                check_rootfs_entrypoint(&root, &name, &entry.entrypoint, 0)?;
                root
            }
        };
        Ok(Prepared {
            name,
            index_version: index.accepted().version,
            version,
            image_ref: entry.image.as_str().to_owned(),
            digest: pulled.manifest_digest.to_string(),
            path: Some(path),
            manifest,
        })
    }

    /// The one store write that makes an install real.
    async fn record_server(
        &self,
        prepared: Prepared,
        progress: &(dyn Fn(InstallProgress) + Send + Sync),
    ) -> Result<ServerRecord, InstallError> {
        progress(InstallProgress::Record);
        let path_text = prepared.path.as_ref().map(|p| p.display().to_string());
        let record = self
            .store
            .upsert_server(&NewServer {
                name: &prepared.name,
                image_ref: &prepared.image_ref,
                version: &prepared.version,
                image_digest: &prepared.digest,
                extracted_path: path_text.as_deref(),
                manifest: &prepared.manifest,
                state: ServerState::Installed,
                index_version: i64::try_from(prepared.index_version).unwrap_or(i64::MAX),
            })
            .await?;
        tracing::info!(
            server = %prepared.name,
            version = %prepared.version,
            digest = %prepared.digest,
            "installed"
        );
        Ok(record)
    }

    /// Forgets an install (and its tool fingerprints). Its cached image stays for a reinstall.
    pub async fn uninstall(&self, name: &str) -> Result<bool, InstallError> {
        Ok(self.store.delete_server(name).await?)
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    async fn registry_auth(&self, host: &str) -> Result<RegistryAuth, InstallError> {
        let Some(secrets) = &self.secrets else {
            return Ok(RegistryAuth::Anonymous);
        };
        let scope = CredentialScope {
            server: REGISTRY_SECRETS_SCOPE,
            user_id: None,
            profile_id: None,
        };
        let Some(login) = secrets.get(&scope, host).await? else {
            return Ok(RegistryAuth::Anonymous);
        };
        let text = std::str::from_utf8(login.expose())
            .ok()
            .and_then(|t| t.split_once(':'))
            .ok_or_else(|| InstallError::RegistryLogin {
                host: host.to_owned(),
            })?;
        Ok(RegistryAuth::basic(text.0, text.1))
    }
}

/// The entrypoint must be a regular file inside the extracted root, reached without leaving it.
fn check_rootfs_entrypoint(
    root: &Path,
    server: &str,
    entrypoint: &str,
    hops: u32,
) -> Result<(), InstallError> {
    /// Symlinks followed before giving up (the kernel's own limit): a loop is an error.
    const MAX_HOPS: u32 = 40;
    let bad = || InstallError::Entrypoint {
        server: server.to_owned(),
        entrypoint: entrypoint.to_owned(),
    };
    if hops > MAX_HOPS {
        return Err(bad());
    }
    let relative = entrypoint.trim_start_matches('/');
    let mut path = root.to_path_buf();
    // Walk component by component without following symlinks: the sandbox resolves links
    // inside its own root, but here a link would resolve against the host's.
    for part in Path::new(relative).components() {
        let std::path::Component::Normal(part) = part else {
            return Err(bad());
        };
        path.push(part);
        let meta = std::fs::symlink_metadata(&path).map_err(|_| bad())?;
        if meta.file_type().is_symlink() {
            // A symlinked entrypoint is legal in images; resolve it within the root.
            let target = std::fs::read_link(&path).map_err(|_| bad())?;
            let target = target.to_string_lossy().into_owned();
            let next = if target.starts_with('/') {
                target
            } else {
                let parent = path
                    .parent()
                    .and_then(|p| p.strip_prefix(root).ok())
                    .ok_or_else(bad)?;
                format!("/{}/{}", parent.display(), target)
            };
            return check_rootfs_entrypoint(
                root,
                server,
                &normalize(&next).ok_or_else(bad)?,
                hops + 1,
            );
        }
    }
    if std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_file()) {
        Ok(())
    } else {
        Err(bad())
    }
}

/// Resolves `.` and `..` lexically, refusing to climb above `/`.
fn normalize(path: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            p => parts.push(p),
        }
    }
    Some(format!("/{}", parts.join("/")))
}

/// Most bytes read from an index source before giving up.
const MAX_INDEX_BYTES: usize = gig_registry_schema::MAX_INDEX_BYTES;

async fn fetch_index(url: &str) -> Result<Vec<u8>, InstallError> {
    let fail = |reason: String| InstallError::Fetch {
        url: url.to_owned(),
        reason,
    };
    if let Some(rest) = url.strip_prefix("file://") {
        let path = url::Url::parse(url)
            .ok()
            .and_then(|u| u.to_file_path().ok())
            .unwrap_or_else(|| PathBuf::from(rest));
        let bytes = tokio::fs::read(&path)
            .await
            .map_err(|e| fail(format!("{}: {e}", path.display())))?;
        if bytes.len() > MAX_INDEX_BYTES {
            return Err(fail(format!("larger than {MAX_INDEX_BYTES} bytes")));
        }
        return Ok(bytes);
    }
    let mut builder = reqwest::Client::builder()
        .https_only(true)
        .timeout(std::time::Duration::from_secs(30));
    for cert in rustls_native_certs::load_native_certs().certs {
        if let Ok(cert) = reqwest::Certificate::from_der(&cert) {
            builder = builder.add_root_certificate(cert);
        }
    }
    let client = builder.build().map_err(|e| fail(e.to_string()))?;
    let mut response = client
        .get(url)
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .map_err(|e| fail(e.to_string()))?;
    let mut bytes = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| fail(e.to_string()))? {
        if bytes.len() + chunk.len() > MAX_INDEX_BYTES {
            return Err(fail(format!("larger than {MAX_INDEX_BYTES} bytes")));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::normalize;

    #[test]
    fn normalize_never_climbs_above_root() {
        assert_eq!(normalize("/a/./b/../c").as_deref(), Some("/a/c"));
        assert_eq!(normalize("/a/../../etc/passwd"), None);
        assert_eq!(normalize("/").as_deref(), Some("/"));
    }
}
