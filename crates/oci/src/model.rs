//! The few fields of manifests, indexes and image configs we read, parsed from verified bytes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::extract::Compression;
use crate::{Digest, OciError};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const ALL_MANIFEST_TYPES: [&str; 4] = [OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST];

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: String,
    pub size: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

/// A manifest or an index: both are read from the same bytes, told apart by their fields.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AnyManifest {
    schema_version: Option<i64>,
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Option<Vec<Descriptor>>,
    #[serde(default)]
    manifests: Option<Vec<Descriptor>>,
}

#[derive(Debug)]
pub enum Parsed {
    Image {
        config: Descriptor,
        layers: Vec<Descriptor>,
    },
    Index(Vec<Descriptor>),
}

pub fn parse_manifest(bytes: &[u8], digest: &Digest) -> Result<Parsed, OciError> {
    let malformed = |reason: String| OciError::Malformed {
        what: "manifest".into(),
        digest: digest.clone(),
        reason,
    };
    let m: AnyManifest = serde_json::from_slice(bytes).map_err(|e| malformed(e.to_string()))?;
    if m.schema_version != Some(2) {
        return Err(malformed(format!(
            "schemaVersion {:?}, expected 2",
            m.schema_version
        )));
    }
    match (m.manifests, m.config, m.layers) {
        (Some(manifests), None, None) => {
            if let Some(mt) = &m.media_type
                && mt != OCI_INDEX
                && mt != DOCKER_LIST
            {
                return Err(OciError::UnsupportedMediaType {
                    digest: digest.clone(),
                    media_type: mt.clone(),
                });
            }
            Ok(Parsed::Index(manifests))
        }
        (None, Some(config), Some(layers)) => {
            if let Some(mt) = &m.media_type
                && mt != OCI_MANIFEST
                && mt != DOCKER_MANIFEST
            {
                return Err(OciError::UnsupportedMediaType {
                    digest: digest.clone(),
                    media_type: mt.clone(),
                });
            }
            Ok(Parsed::Image { config, layers })
        }
        _ => Err(malformed(
            "neither an image manifest (config + layers) nor an index (manifests)".into(),
        )),
    }
}

/// The linux/amd64 entry of an index (the platform the sandbox runs).
pub fn pick_linux_amd64(entries: &[Descriptor]) -> Option<&Descriptor> {
    entries.iter().find(|d| {
        d.platform
            .as_ref()
            .is_some_and(|p| p.os == "linux" && p.architecture == "amd64")
    })
}

pub fn layer_compression(media_type: &str) -> Option<Compression> {
    match media_type {
        "application/vnd.oci.image.layer.v1.tar"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar" => Some(Compression::None),
        "application/vnd.oci.image.layer.v1.tar+gzip"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
        | "application/vnd.docker.image.rootfs.diff.tar.gzip" => Some(Compression::Gzip),
        "application/vnd.oci.image.layer.v1.tar+zstd"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd" => Some(Compression::Zstd),
        _ => None,
    }
}

/// What the runtime needs from an image config.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageConfig {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub workdir: Option<String>,
    pub user: Option<String>,
}

#[derive(Deserialize)]
struct RawConfigFile {
    #[serde(default)]
    config: Option<RawConfig>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawConfig {
    #[serde(default)]
    entrypoint: Option<Vec<String>>,
    #[serde(default)]
    cmd: Option<Vec<String>>,
    #[serde(default)]
    env: Option<Vec<String>>,
    #[serde(default)]
    working_dir: Option<String>,
    #[serde(default)]
    user: Option<String>,
}

pub fn parse_config(bytes: &[u8], digest: &Digest) -> Result<ImageConfig, OciError> {
    let raw: RawConfigFile = serde_json::from_slice(bytes).map_err(|e| OciError::Malformed {
        what: "image config".into(),
        digest: digest.clone(),
        reason: e.to_string(),
    })?;
    let c = raw.config.unwrap_or(RawConfig {
        entrypoint: None,
        cmd: None,
        env: None,
        working_dir: None,
        user: None,
    });
    let nonempty = |s: Option<String>| s.filter(|s| !s.is_empty());
    Ok(ImageConfig {
        entrypoint: c.entrypoint.unwrap_or_default(),
        cmd: c.cmd.unwrap_or_default(),
        env: c.env.unwrap_or_default(),
        workdir: nonempty(c.working_dir),
        user: nonempty(c.user),
    })
}
