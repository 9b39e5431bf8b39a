//! Getting verified bytes from a registry (through `oci-client`) or an OCI image-layout
//! directory. Every blob is hashed while it streams into a temporary file; the caller renames it
//! into the blob store only after [`BlobWriter::finish`] has matched its digest.

use std::io::{Read, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::StreamExt;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{DigestError, OciDistributionError};
use oci_client::manifest::OciDescriptor;
use oci_client::{Client, RegistryOperation};
use sha2::{Digest as _, Sha256};
use tempfile::NamedTempFile;

use crate::model::ALL_MANIFEST_TYPES;
use crate::reference::TagRef;
use crate::{Digest, ImageRef, OciError, RegistryAuth};

/// How to reach a registry.
#[derive(Debug, Clone, Default)]
pub struct RegistryOptions {
    /// Speak plain HTTP instead of HTTPS. Only honoured for loopback registries (tests, local
    /// mirrors); anything else is refused.
    pub plain_http: bool,
    /// Extra PEM root certificates to trust for this registry.
    pub extra_root_pems: Vec<Vec<u8>>,
}

/// Resolves a tag (`registry/repo:tag`) to the digest of the manifest or index it names now, for
/// tools that write an index (`registryctl add`). The digest is computed from the bytes received,
/// not taken from a header.
pub async fn resolve_digest(
    reference_with_tag: &str,
    auth: &RegistryAuth,
    options: &RegistryOptions,
) -> Result<Digest, OciError> {
    ensure_tls_provider();
    let tag = TagRef::parse(reference_with_tag)?;
    let client = new_client(&tag.registry, options)?;
    let reference = tag.to_client();
    let ctx = Ctx {
        registry: &tag.registry,
        repository: &tag.repository,
    };
    client
        .auth(&reference, &auth.to_client(), RegistryOperation::Pull)
        .await
        .map_err(|e| ctx.map(e, "authenticating", None))?;
    let (body, _) = client
        .pull_manifest_raw(&reference, &auth.to_client(), &ALL_MANIFEST_TYPES)
        .await
        .map_err(|e| ctx.map(e, &format!("manifest for tag {}", tag.tag), None))?;
    Ok(Digest::of(&body))
}

/// Reads the digest an OCI layout's `index.json` gives `tag` (`org.opencontainers.image.ref.name`).
pub fn layout_digest(dir: &Path, tag: &str) -> Result<Digest, OciError> {
    let index_path = dir.join("index.json");
    let bytes = std::fs::read(&index_path).map_err(|e| OciError::io("reading", &index_path, e))?;
    let layout_err = |reason: String| OciError::Layout {
        dir: dir.to_path_buf(),
        reason,
    };
    let index: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| layout_err(format!("index.json: {e}")))?;
    let manifests = index["manifests"]
        .as_array()
        .ok_or_else(|| layout_err("index.json has no manifests".into()))?;
    let entry = manifests
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"].as_str() == Some(tag))
        .ok_or_else(|| layout_err(format!("no image tagged {tag:?}")))?;
    Digest::parse(entry["digest"].as_str().unwrap_or_default())
}

/// Installs ring as rustls' process-wide provider unless one is already set: oci-client is built
/// without a provider of its own.
pub(crate) fn ensure_tls_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Losing a race to another installer is fine: some provider is then in place.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

fn is_loopback_host(registry: &str) -> bool {
    let host = match registry.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => registry,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn new_client(registry: &str, options: &RegistryOptions) -> Result<Client, OciError> {
    let protocol = if options.plain_http {
        if !is_loopback_host(registry) {
            return Err(OciError::PlainHttpNotLoopback(registry.to_string()));
        }
        ClientProtocol::HttpsExcept(vec![registry.to_string()])
    } else {
        ClientProtocol::Https
    };
    let config = ClientConfig {
        protocol,
        // Indexes are resolved here (linux/amd64), from verified bytes.
        platform_resolver: None,
        connect_timeout: Some(Duration::from_secs(15)),
        read_timeout: Some(Duration::from_secs(120)),
        extra_root_certificates: options
            .extra_root_pems
            .iter()
            .map(|pem| oci_client::client::Certificate {
                encoding: oci_client::client::CertificateEncoding::Pem,
                data: pem.clone(),
            })
            .collect(),
        ..ClientConfig::default()
    };
    Client::try_from(config).map_err(|e| OciError::Registry {
        registry: registry.to_string(),
        what: "building the HTTP client".into(),
        source: Box::new(e),
    })
}

struct Ctx<'a> {
    registry: &'a str,
    repository: &'a str,
}

impl Ctx<'_> {
    fn map(&self, e: OciDistributionError, what: &str, expected: Option<&Digest>) -> OciError {
        match e {
            OciDistributionError::UnauthorizedError { .. }
            | OciDistributionError::AuthenticationFailure(_) => OciError::Unauthorized {
                registry: self.registry.to_string(),
                repository: self.repository.to_string(),
            },
            OciDistributionError::DigestError(DigestError::VerificationError {
                actual, ..
            }) if expected.is_some() => OciError::DigestMismatch {
                what: what.to_string(),
                expected: expected.cloned().unwrap_or_else(|| Digest::of(b"")),
                actual,
            },
            other => OciError::Registry {
                registry: self.registry.to_string(),
                what: what.to_string(),
                source: Box::new(other),
            },
        }
    }
}

/// Where blobs come from.
pub(crate) enum Fetcher {
    Registry {
        client: Client,
        image: ImageRef,
        auth: oci_client::secrets::RegistryAuth,
    },
    Layout {
        dir: PathBuf,
    },
}

impl std::fmt::Debug for Fetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Registry { image, .. } => write!(f, "Registry({image})"),
            Self::Layout { dir } => write!(f, "Layout({})", dir.display()),
        }
    }
}

impl Fetcher {
    pub async fn registry(
        image: &ImageRef,
        auth: &RegistryAuth,
        options: &RegistryOptions,
    ) -> Result<Self, OciError> {
        ensure_tls_provider();
        let client = new_client(image.registry(), options)?;
        let auth = auth.to_client();
        let ctx = Ctx {
            registry: image.registry(),
            repository: image.repository(),
        };
        // Authenticate up front: oci-client would otherwise swallow a failed token negotiation
        // and go on anonymously, turning "wrong password" into a confusing later error.
        client
            .auth(&image.to_client(), &auth, RegistryOperation::Pull)
            .await
            .map_err(|e| ctx.map(e, "authenticating", None))?;
        Ok(Self::Registry {
            client,
            image: image.clone(),
            auth,
        })
    }

    fn ctx(&self) -> Ctx<'_> {
        match self {
            Self::Registry { image, .. } => Ctx {
                registry: image.registry(),
                repository: image.repository(),
            },
            Self::Layout { .. } => Ctx {
                registry: "layout",
                repository: "",
            },
        }
    }

    /// Fetches a manifest or index by digest into `writer`.
    pub async fn manifest(&self, digest: &Digest, writer: &mut BlobWriter) -> Result<(), OciError> {
        match self {
            Self::Registry {
                client,
                image,
                auth,
            } => {
                let what = format!("manifest {digest}");
                let (body, _) = client
                    .pull_manifest_raw(
                        &image.with_digest(digest.clone()).to_client(),
                        auth,
                        &ALL_MANIFEST_TYPES,
                    )
                    .await
                    .map_err(|e| self.ctx().map(e, &what, Some(digest)))?;
                writer.write(&body)
            }
            Self::Layout { dir } => read_layout_blob(dir, digest, writer),
        }
    }

    /// Streams a blob (config or layer) by digest into `writer`, calling `on_chunk` with each
    /// chunk's length.
    pub async fn blob(
        &self,
        digest: &Digest,
        media_type: &str,
        writer: &mut BlobWriter,
        on_chunk: &mut (dyn FnMut(u64) + Send),
    ) -> Result<(), OciError> {
        match self {
            Self::Registry { client, image, .. } => {
                // Our own descriptor: a manifest's `urls` must never send us to another host.
                let descriptor = OciDescriptor {
                    media_type: media_type.to_string(),
                    digest: digest.to_string(),
                    size: writer.expected_size.unwrap_or(0) as i64,
                    urls: None,
                    annotations: None,
                    artifact_type: None,
                };
                let what = format!("blob {digest}");
                let mut stream = client
                    .pull_blob_stream(&image.to_client(), &descriptor)
                    .await
                    .map_err(|e| self.ctx().map(e, &what, Some(digest)))?;
                while let Some(chunk) = stream.next().await {
                    match chunk {
                        Ok(bytes) => {
                            writer.write(&bytes)?;
                            on_chunk(bytes.len() as u64);
                        }
                        // oci-client checks the digest too and fails the stream's last item;
                        // report that as the mismatch it is.
                        Err(e) if writer.is_complete() => {
                            let actual = writer.current_digest();
                            if actual != *digest {
                                return Err(OciError::DigestMismatch {
                                    what: writer.what.clone(),
                                    expected: digest.clone(),
                                    actual: actual.to_string(),
                                });
                            }
                            return Err(self.ctx().map(e.into(), &what, Some(digest)));
                        }
                        Err(e) => return Err(self.ctx().map(e.into(), &what, Some(digest))),
                    }
                }
                Ok(())
            }
            Self::Layout { dir } => {
                read_layout_blob(dir, digest, writer)?;
                on_chunk(writer.written);
                Ok(())
            }
        }
    }
}

fn read_layout_blob(dir: &Path, digest: &Digest, writer: &mut BlobWriter) -> Result<(), OciError> {
    let path = dir.join("blobs").join("sha256").join(digest.hex());
    // symlink_metadata: a layout is untrusted input; a blob must be a plain file in it.
    let meta =
        std::fs::symlink_metadata(&path).map_err(|e| OciError::io("reading blob", &path, e))?;
    if !meta.is_file() {
        return Err(OciError::Layout {
            dir: dir.to_path_buf(),
            reason: format!("blob {digest} is not a regular file"),
        });
    }
    let file = std::fs::File::open(&path).map_err(|e| OciError::io("reading blob", &path, e))?;
    let mut limited = file.take(writer.cap.saturating_add(1));
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = limited
            .read(&mut buf)
            .map_err(|e| OciError::io("reading blob", &path, e))?;
        if n == 0 {
            return Ok(());
        }
        writer.write(&buf[..n])?;
    }
}

/// A temporary file that hashes and bounds everything written to it.
#[derive(Debug)]
pub(crate) struct BlobWriter {
    pub what: String,
    digest: Digest,
    file: NamedTempFile,
    hasher: Sha256,
    pub written: u64,
    pub expected_size: Option<u64>,
    cap: u64,
}

impl BlobWriter {
    pub fn new(
        what: &str,
        digest: &Digest,
        expected_size: Option<u64>,
        cap: u64,
        tmp_dir: &Path,
    ) -> Result<Self, OciError> {
        let file = tempfile::Builder::new()
            .prefix(&format!("{}.", digest.hex()))
            .suffix(".part")
            .tempfile_in(tmp_dir)
            .map_err(|e| OciError::io("creating temp file in", tmp_dir, e))?;
        Ok(Self {
            what: what.to_string(),
            digest: digest.clone(),
            file,
            hasher: Sha256::new(),
            written: 0,
            expected_size,
            cap,
        })
    }

    pub fn write(&mut self, bytes: &[u8]) -> Result<(), OciError> {
        self.written += bytes.len() as u64;
        if let Some(expected) = self.expected_size
            && self.written > expected
        {
            return Err(OciError::SizeMismatch {
                what: self.what.clone(),
                digest: self.digest.clone(),
                expected,
                actual: self.written,
            });
        }
        if self.written > self.cap {
            return Err(OciError::TooLarge {
                what: self.what.clone(),
                digest: self.digest.clone(),
                size: self.written,
                limit: self.cap,
            });
        }
        self.hasher.update(bytes);
        self.file
            .write_all(bytes)
            .map_err(|e| OciError::io("writing", self.file.path(), e))
    }

    fn is_complete(&self) -> bool {
        self.expected_size.is_none_or(|s| s == self.written)
    }

    fn current_digest(&self) -> Digest {
        Digest::from_hasher(self.hasher.clone())
    }

    /// Checks size and digest; only then hands back the file for renaming into the store.
    pub fn finish(mut self) -> Result<NamedTempFile, OciError> {
        if let Some(expected) = self.expected_size
            && expected != self.written
        {
            return Err(OciError::SizeMismatch {
                what: self.what,
                digest: self.digest,
                expected,
                actual: self.written,
            });
        }
        let actual = Digest::from_hasher(self.hasher);
        if actual != self.digest {
            return Err(OciError::DigestMismatch {
                what: self.what,
                expected: self.digest,
                actual: actual.to_string(),
            });
        }
        self.file
            .as_file_mut()
            .sync_all()
            .map_err(|e| OciError::io("syncing", self.file.path(), e))?;
        Ok(self.file)
    }
}
