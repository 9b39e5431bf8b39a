//! The content-addressed cache:
//!
//! ```text
//! <root>/blobs/sha256/<hex>          verified manifests, configs and layers
//! <root>/images/<hex>.json           a finished pull of the image whose ref named <hex>
//! <root>/rootfs/<manifest-hex>/      an extracted root filesystem, complete iff …
//! <root>/rootfs/<manifest-hex>.done  … this marker exists
//! <root>/entry/<manifest-hex>-<path-hash>/<name>   one extracted entrypoint (renamed in whole;
//!                                    its directory exists only once it holds the file)
//! <root>/locks/<key>.lock            cross-process locks (flock)
//! <root>/tmp/<pid>.<pidns>-<random>/ this process's temp files; removed by the next user
//!                                    once its owner is gone (its lock free or never made,
//!                                    and its pid not running in its namespace) or the dir
//!                                    is a minute old and unlocked
//! ```
//! Nothing is renamed into place until it is verified or complete, so an interrupted pull or
//! extraction leaves only temp files, which the next `Cache::open` removes.

use std::collections::HashMap;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::extract::{self, Compression, LayerFile};
use crate::fetch::{BlobWriter, Fetcher, RegistryOptions};
use crate::model::{self, Parsed};
use crate::{Digest, ImageConfig, ImageRef, Limits, OciError, RegistryAuth};

/// Where an image comes from. Both name it by digest.
#[derive(Debug, Clone)]
pub enum ImageSource {
    Registry {
        image: ImageRef,
        options: RegistryOptions,
    },
    /// An OCI image-layout directory (air-gapped installs): `digest` names a manifest or index
    /// in it; see [`crate::fetch::layout_digest`] to look up a tag.
    Layout { dir: PathBuf, digest: Digest },
}

impl ImageSource {
    pub fn registry(image: ImageRef) -> Self {
        Self::Registry {
            image,
            options: RegistryOptions::default(),
        }
    }

    pub fn digest(&self) -> &Digest {
        match self {
            Self::Registry { image, .. } => image.digest(),
            Self::Layout { digest, .. } => digest,
        }
    }
}

/// Progress of one pull: `layer` of `layers` (1-based; 0 while fetching manifests and config),
/// and bytes of layer blobs done out of the total the manifest announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PullProgress {
    pub layer: usize,
    pub layers: usize,
    pub bytes_done: u64,
    pub bytes_total: u64,
    /// The whole image was already in the cache.
    pub cached: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerInfo {
    pub digest: Digest,
    pub media_type: String,
    pub size: u64,
    pub compression: Compression,
}

/// A verified image whose blobs are all in the cache.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PulledImage {
    /// The digest the source named (an index, for a multi-platform image).
    pub requested_digest: Digest,
    /// The linux/amd64 image manifest's digest: what the extracted trees are keyed by.
    pub manifest_digest: Digest,
    pub config_digest: Digest,
    pub config: ImageConfig,
    pub layers: Vec<LayerInfo>,
}

/// The cache. Cheap to clone; clones share in-process deduplication.
#[derive(Debug, Clone)]
pub struct Cache {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    root: PathBuf,
    limits: Limits,
    tmp: PathBuf,
    /// Held (flock) while this process lives, so others know `tmp` is in use.
    _tmp_lock: File,
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// Holds a per-key lock in this process and across processes.
struct KeyGuard {
    _file: File,
    _local: tokio::sync::OwnedMutexGuard<()>,
}

impl Cache {
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, OciError> {
        Self::open_with_limits(root, Limits::default())
    }

    pub fn open_with_limits(root: impl Into<PathBuf>, limits: Limits) -> Result<Self, OciError> {
        let root = root.into();
        for dir in ["blobs/sha256", "images", "rootfs", "entry", "locks", "tmp"] {
            let d = root.join(dir);
            fs::create_dir_all(&d).map_err(|e| OciError::io("creating cache dir", &d, e))?;
        }
        clean_stale_tmp(&root.join("tmp"))?;
        let tmp = tempfile::Builder::new()
            .prefix(&format!("{}-", temp_dir_owner()))
            .tempdir_in(root.join("tmp"))
            .map_err(|e| OciError::io("creating temp dir in", root.join("tmp"), e))?
            .keep();
        let lock_path = tmp.join(".lock");
        let tmp_lock =
            File::create(&lock_path).map_err(|e| OciError::io("creating", &lock_path, e))?;
        tmp_lock.try_lock().map_err(|e| {
            OciError::io("locking", &lock_path, std::io::Error::other(e.to_string()))
        })?;
        Ok(Self {
            inner: Arc::new(Inner {
                root,
                limits,
                tmp,
                _tmp_lock: tmp_lock,
                locks: Mutex::new(HashMap::new()),
            }),
        })
    }

    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    /// The path of a verified blob, if the cache has it.
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.inner.root.join("blobs/sha256").join(digest.hex())
    }

    /// Pulls and verifies an image, or returns it from the cache without any network request.
    /// Concurrent pulls of the same digest (in this process or another) download it once.
    pub async fn pull(
        &self,
        source: &ImageSource,
        auth: &RegistryAuth,
        progress: &(dyn Fn(PullProgress) + Send + Sync),
    ) -> Result<PulledImage, OciError> {
        let requested = source.digest().clone();
        let _guard = self.lock(&format!("image-{}", requested.hex())).await?;
        if let Some(image) = self.cached_image(&requested)? {
            let total = image.layers.iter().map(|l| l.size).sum();
            progress(PullProgress {
                layer: image.layers.len(),
                layers: image.layers.len(),
                bytes_done: total,
                bytes_total: total,
                cached: true,
            });
            return Ok(image);
        }
        let fetcher = match source {
            ImageSource::Registry { image, options } => {
                Fetcher::registry(image, auth, options).await?
            }
            ImageSource::Layout { dir, .. } => Fetcher::Layout { dir: dir.clone() },
        };
        let image = self.fetch_image(&fetcher, &requested, progress).await?;
        let record = self.record_path(&requested);
        let json = serde_json::to_vec_pretty(&image).map_err(|e| OciError::Task(e.to_string()))?;
        self.write_atomically(&record, &json)?;
        Ok(image)
    }

    /// Returns an extracted copy of the regular file at `path_in_image` (in-image symlinks are
    /// followed, never above the image root), extracting it once per image and path.
    pub async fn entrypoint(
        &self,
        image: &PulledImage,
        path_in_image: &str,
    ) -> Result<PathBuf, OciError> {
        let path_hash = hex::encode(&Sha256::digest(path_in_image.as_bytes())[..8]);
        let key = format!("{}-{path_hash}", image.manifest_digest.hex());
        let name = Path::new(path_in_image)
            .file_name()
            .and_then(|n| n.to_str())
            .filter(|n| !n.is_empty() && *n != "..")
            .unwrap_or("entrypoint")
            .to_string();
        let dir = self.inner.root.join("entry").join(&key);
        let dest = dir.join(&name);
        let _guard = self.lock(&format!("entry-{key}")).await?;
        // The file is renamed in whole, so its presence means it is complete.
        if dest.is_file() {
            return Ok(dest);
        }
        // Staged in this process's temp dir and moved in only once complete: a refused
        // entrypoint leaves nothing under entry/, not even an empty directory.
        let layers = self.layer_files(image)?;
        let limits = self.inner.limits.clone();
        let path = path_in_image.to_string();
        let staged = self.inner.tmp.join(format!("entry-{key}"));
        let out = staged.clone();
        blocking(move || extract::extract_entrypoint(&layers, &path, &out, &limits)).await?;
        fs::create_dir_all(&dir).map_err(|e| OciError::io("creating dir", &dir, e))?;
        fs::rename(&staged, &dest).map_err(|e| OciError::io("renaming entrypoint to", &dest, e))?;
        Ok(dest)
    }

    /// Returns the extracted root filesystem of `image`, extracting it once.
    pub async fn rootfs(&self, image: &PulledImage) -> Result<PathBuf, OciError> {
        let hex = image.manifest_digest.hex().to_string();
        let dest = self.inner.root.join("rootfs").join(&hex);
        let marker = self.inner.root.join("rootfs").join(format!("{hex}.done"));
        let _guard = self.lock(&format!("rootfs-{hex}")).await?;
        if marker.exists() && dest.is_dir() {
            return Ok(dest);
        }
        // A tree without its marker is what a crash between rename and marker leaves.
        remove_tree_if_exists(&dest)?;
        let staging = self.inner.tmp.join(format!("rootfs-{hex}"));
        remove_tree_if_exists(&staging)?;
        let layers = self.layer_files(image)?;
        let limits = self.inner.limits.clone();
        let staged = staging.clone();
        let result = blocking(move || extract::extract_rootfs(&layers, &staged, &limits)).await;
        if let Err(e) = result {
            remove_tree_if_exists(&staging)?;
            return Err(e);
        }
        fs::rename(&staging, &dest).map_err(|e| OciError::io("renaming rootfs to", &dest, e))?;
        self.write_atomically(&marker, b"")?;
        Ok(dest)
    }

    fn record_path(&self, digest: &Digest) -> PathBuf {
        self.inner
            .root
            .join("images")
            .join(format!("{}.json", digest.hex()))
    }

    fn cached_image(&self, requested: &Digest) -> Result<Option<PulledImage>, OciError> {
        let record = self.record_path(requested);
        let Ok(bytes) = fs::read(&record) else {
            return Ok(None);
        };
        let Ok(image) = serde_json::from_slice::<PulledImage>(&bytes) else {
            // Records are written atomically; an unreadable one is stale: pull again.
            return Ok(None);
        };
        let complete = image.requested_digest == *requested
            && self.blob_path(&image.manifest_digest).is_file()
            && self.blob_path(&image.config_digest).is_file()
            && image
                .layers
                .iter()
                .all(|l| self.blob_path(&l.digest).is_file());
        Ok(complete.then_some(image))
    }

    fn layer_files(&self, image: &PulledImage) -> Result<Vec<LayerFile>, OciError> {
        image
            .layers
            .iter()
            .map(|l| {
                let path = self.blob_path(&l.digest);
                if !path.is_file() {
                    return Err(OciError::io(
                        "missing layer blob (pull the image first)",
                        path,
                        std::io::ErrorKind::NotFound.into(),
                    ));
                }
                Ok(LayerFile {
                    path,
                    compression: l.compression,
                })
            })
            .collect()
    }

    /// Long on purpose: the steps of a pull in the order their digests are verified (manifest,
    /// platform, config, layers), so nothing unverified is used by a later step.
    async fn fetch_image(
        &self,
        fetcher: &Fetcher,
        requested: &Digest,
        progress: &(dyn Fn(PullProgress) + Send + Sync),
    ) -> Result<PulledImage, OciError> {
        let limits = &self.inner.limits;
        let mut manifest_digest = requested.clone();
        let mut bytes = self.fetch_manifest(fetcher, &manifest_digest).await?;
        let (config, layers) = match model::parse_manifest(&bytes, &manifest_digest)? {
            Parsed::Image { config, layers } => (config, layers),
            Parsed::Index(entries) => {
                let entry = model::pick_linux_amd64(&entries)
                    .ok_or_else(|| OciError::NoPlatform(requested.clone()))?;
                manifest_digest = Digest::parse(&entry.digest)?;
                bytes = self.fetch_manifest(fetcher, &manifest_digest).await?;
                match model::parse_manifest(&bytes, &manifest_digest)? {
                    Parsed::Image { config, layers } => (config, layers),
                    Parsed::Index(_) => {
                        return Err(OciError::Malformed {
                            what: "manifest".into(),
                            digest: manifest_digest,
                            reason: "an index inside an index".into(),
                        });
                    }
                }
            }
        };
        if layers.len() > limits.max_layers {
            return Err(OciError::LimitExceeded {
                what: "layer count",
                limit: limits.max_layers as u64,
            });
        }
        let config_digest = Digest::parse(&config.digest)?;
        if config.media_type != model::OCI_CONFIG && config.media_type != model::DOCKER_CONFIG {
            return Err(OciError::UnsupportedMediaType {
                digest: config_digest,
                media_type: config.media_type,
            });
        }
        let mut infos = Vec::with_capacity(layers.len());
        for layer in &layers {
            let digest = Digest::parse(&layer.digest)?;
            let compression = model::layer_compression(&layer.media_type).ok_or_else(|| {
                OciError::UnsupportedMediaType {
                    digest: digest.clone(),
                    media_type: layer.media_type.clone(),
                }
            })?;
            let size = u64::try_from(layer.size).unwrap_or(u64::MAX);
            if size > limits.max_layer_bytes {
                return Err(OciError::TooLarge {
                    what: "layer".into(),
                    digest,
                    size,
                    limit: limits.max_layer_bytes,
                });
            }
            infos.push(LayerInfo {
                digest,
                media_type: layer.media_type.clone(),
                size,
                compression,
            });
        }
        let bytes_total: u64 = infos.iter().map(|l| l.size).sum();
        let n = infos.len();
        progress(PullProgress {
            layer: 0,
            layers: n,
            bytes_done: 0,
            bytes_total,
            cached: false,
        });
        let config_size = u64::try_from(config.size).unwrap_or(u64::MAX);
        if config_size > limits.max_metadata_bytes {
            return Err(OciError::TooLarge {
                what: "image config".into(),
                digest: config_digest,
                size: config_size,
                limit: limits.max_metadata_bytes,
            });
        }
        self.fetch_blob(
            fetcher,
            "image config",
            &config_digest,
            &config.media_type,
            config_size,
            limits.max_metadata_bytes,
            &mut |_| {},
        )
        .await?;
        let config_path = self.blob_path(&config_digest);
        let config_bytes =
            fs::read(&config_path).map_err(|e| OciError::io("reading", &config_path, e))?;
        let image_config = model::parse_config(&config_bytes, &config_digest)?;

        let mut done = 0u64;
        for (i, layer) in infos.iter().enumerate() {
            let mut on_chunk = |len: u64| {
                done += len;
                progress(PullProgress {
                    layer: i + 1,
                    layers: n,
                    bytes_done: done,
                    bytes_total,
                    cached: false,
                });
            };
            let before = self.blob_path(&layer.digest).is_file();
            self.fetch_blob(
                fetcher,
                "layer",
                &layer.digest,
                &layer.media_type,
                layer.size,
                limits.max_layer_bytes,
                &mut on_chunk,
            )
            .await?;
            if before {
                on_chunk(layer.size);
            }
        }
        Ok(PulledImage {
            requested_digest: requested.clone(),
            manifest_digest,
            config_digest,
            config: image_config,
            layers: infos,
        })
    }

    /// Returns a verified manifest's bytes, from the store or fetched into it.
    async fn fetch_manifest(
        &self,
        fetcher: &Fetcher,
        digest: &Digest,
    ) -> Result<Vec<u8>, OciError> {
        let path = self.blob_path(digest);
        if !path.is_file() {
            let _guard = self.lock(&format!("blob-{}", digest.hex())).await?;
            if !path.is_file() {
                let mut writer = BlobWriter::new(
                    "manifest",
                    digest,
                    None,
                    self.inner.limits.max_metadata_bytes,
                    &self.inner.tmp,
                )?;
                fetcher.manifest(digest, &mut writer).await?;
                self.persist(writer, digest)?;
            }
        }
        fs::read(&path).map_err(|e| OciError::io("reading", &path, e))
    }

    #[allow(clippy::too_many_arguments)]
    async fn fetch_blob(
        &self,
        fetcher: &Fetcher,
        what: &str,
        digest: &Digest,
        media_type: &str,
        size: u64,
        cap: u64,
        on_chunk: &mut (dyn FnMut(u64) + Send),
    ) -> Result<(), OciError> {
        let path = self.blob_path(digest);
        if path.is_file() {
            return Ok(());
        }
        // Layers are shared between images: lock the blob, not just the image.
        let _guard = self.lock(&format!("blob-{}", digest.hex())).await?;
        if path.is_file() {
            return Ok(());
        }
        let mut writer = BlobWriter::new(what, digest, Some(size), cap, &self.inner.tmp)?;
        fetcher
            .blob(digest, media_type, &mut writer, on_chunk)
            .await?;
        self.persist(writer, digest)
    }

    fn persist(&self, writer: BlobWriter, digest: &Digest) -> Result<(), OciError> {
        let file = writer.finish()?;
        let path = self.blob_path(digest);
        file.persist(&path)
            .map_err(|e| OciError::io("storing blob", &path, e.error))?;
        Ok(())
    }

    fn write_atomically(&self, path: &Path, bytes: &[u8]) -> Result<(), OciError> {
        use std::io::Write;
        let mut tmp = tempfile::NamedTempFile::new_in(&self.inner.tmp)
            .map_err(|e| OciError::io("creating temp file in", &self.inner.tmp, e))?;
        tmp.write_all(bytes)
            .and_then(|()| tmp.as_file().sync_all())
            .map_err(|e| OciError::io("writing", tmp.path(), e))?;
        tmp.persist(path)
            .map_err(|e| OciError::io("renaming into", path, e.error))?;
        Ok(())
    }

    /// Takes the in-process async lock for `key`, then the cross-process file lock.
    async fn lock(&self, key: &str) -> Result<KeyGuard, OciError> {
        let local = {
            let mut locks = self.inner.locks.lock().unwrap_or_else(|p| p.into_inner());
            locks.entry(key.to_string()).or_default().clone()
        };
        let local = local.lock_owned().await;
        let path = self.inner.root.join("locks").join(format!("{key}.lock"));
        let file = blocking(move || {
            let file = File::options()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .map_err(|e| OciError::io("opening lock", &path, e))?;
            file.lock().map_err(|e| OciError::io("locking", &path, e))?;
            Ok(file)
        })
        .await?;
        Ok(KeyGuard {
            _file: file,
            _local: local,
        })
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, OciError> + Send + 'static,
) -> Result<T, OciError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| OciError::Task(e.to_string()))?
}

fn remove_tree_if_exists(path: &Path) -> Result<(), OciError> {
    match fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(OciError::io("removing", path, e)),
    }
}

/// Removes temp dirs whose owning process is gone (its flock on `.lock` is free).
fn clean_stale_tmp(tmp_root: &Path) -> Result<(), OciError> {
    let entries = fs::read_dir(tmp_root).map_err(|e| OciError::io("reading", tmp_root, e))?;
    let namespace = pid_namespace();
    for entry in entries.flatten() {
        let path = entry.path();
        let lock = path.join(".lock");
        // A free lock is not enough: its owner may have created the file and not locked it yet.
        // Nor is a missing one: the owner may be between making the dir and the lock. The owner
        // named in the dir tells whether it still runs; an old dir is stale either way (its pid
        // may have been reused).
        let unlocked = File::open(&lock).map_or(true, |f| f.try_lock().is_ok());
        let stale = unlocked
            && (owner_is_gone(&entry.file_name(), namespace) || older_than_a_minute(&entry));
        if stale {
            tracing::debug!(path = %path.display(), "removing stale temp dir");
            remove_tree_if_exists(&path)?;
        }
    }
    Ok(())
}

/// `<pid>.<pid namespace>` of this process, which names its temp dir: a pid means nothing
/// outside its namespace, and a cache may be shared with a gateway in another (a container).
pub(crate) fn temp_dir_owner() -> String {
    match pid_namespace() {
        Some(namespace) => format!("{}.{namespace}", std::process::id()),
        None => std::process::id().to_string(),
    }
}

/// The inode of this process's pid namespace (`/proc/self/ns/pid` reads `pid:[<inode>]`).
fn pid_namespace() -> Option<u64> {
    let link = fs::read_link("/proc/self/ns/pid").ok()?;
    let link = link.to_str()?;
    link.strip_prefix("pid:[")?.strip_suffix(']')?.parse().ok()
}

/// Whether the process that named a `<pid>.<namespace>-<random>` temp dir is no longer
/// running, asked from pid namespace `ours`. Answers "no" when it cannot tell (another
/// namespace, no `/proc`, a name of another form), leaving the age rule to decide.
fn owner_is_gone(dir_name: &std::ffi::OsStr, ours: Option<u64>) -> bool {
    let Some((pid, namespace)) = dir_name
        .to_str()
        .and_then(|name| name.split_once('-'))
        .and_then(|(owner, _)| owner.split_once('.'))
    else {
        return false;
    };
    let (Ok(pid), Ok(namespace)) = (pid.parse::<u32>(), namespace.parse::<u64>()) else {
        return false;
    };
    ours == Some(namespace) && !Path::new("/proc").join(pid.to_string()).exists()
}

fn older_than_a_minute(entry: &fs::DirEntry) -> bool {
    entry
        .metadata()
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|age| age.as_secs() > 60)
}
