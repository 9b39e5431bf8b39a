use std::io;
use std::path::PathBuf;

use crate::Digest;

/// Everything that can go wrong, one variant per failing step, each carrying its context.
#[derive(Debug, thiserror::Error)]
pub enum OciError {
    #[error("invalid digest {0:?}: expected sha256:<64 lowercase hex>")]
    InvalidDigest(String),
    #[error("invalid image reference {reference:?}: {reason}")]
    InvalidReference { reference: String, reason: String },
    #[error("plain HTTP is only allowed to a loopback registry, not {0:?}")]
    PlainHttpNotLoopback(String),
    #[error(
        "registry {registry} refused the credentials for {repository} (wrong user or password?)"
    )]
    Unauthorized {
        registry: String,
        repository: String,
    },
    #[error("registry {registry}: {what}: {source}")]
    Registry {
        registry: String,
        what: String,
        #[source]
        source: Box<oci_client::errors::OciDistributionError>,
    },
    #[error("{what} digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch {
        what: String,
        expected: Digest,
        actual: String,
    },
    #[error("{what} {digest}: size mismatch: descriptor says {expected} bytes, got {actual}")]
    SizeMismatch {
        what: String,
        digest: Digest,
        expected: u64,
        actual: u64,
    },
    #[error("{what} {digest} is {size} bytes, over the limit of {limit}")]
    TooLarge {
        what: String,
        digest: Digest,
        size: u64,
        limit: u64,
    },
    #[error("{digest}: unsupported media type {media_type:?}")]
    UnsupportedMediaType { digest: Digest, media_type: String },
    #[error("image index {0} has no linux/amd64 manifest")]
    NoPlatform(Digest),
    #[error("malformed {what} {digest}: {reason}")]
    Malformed {
        what: String,
        digest: Digest,
        reason: String,
    },
    #[error("OCI layout {dir}: {reason}")]
    Layout { dir: PathBuf, reason: String },
    #[error("{context} {path}: {source}")]
    Io {
        context: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// `path` is [`shown_name`]'s rendering: escaped, and cut short if long, because it comes
    /// from the layer.
    #[error("layer {layer}: refused entry \"{path}\": {reason}")]
    HostileEntry {
        layer: usize,
        path: String,
        reason: String,
    },
    #[error("layer {layer}: unreadable archive: {source}")]
    BadArchive {
        layer: usize,
        #[source]
        source: io::Error,
    },
    #[error("image exceeds the {what} limit of {limit}")]
    LimitExceeded { what: &'static str, limit: u64 },
    #[error("entrypoint {0:?} is not in the image")]
    EntrypointNotFound(String),
    /// `link` is [`shown_name`]'s rendering of the in-image symlink.
    #[error("entrypoint {path:?} resolves outside the image root (via symlink \"{link}\")")]
    EntrypointEscapes { path: String, link: String },
    #[error("entrypoint {path:?} is not a regular file ({kind})")]
    EntrypointNotRegular { path: String, kind: &'static str },
    #[error("entrypoint {0:?}: too many levels of symlinks")]
    SymlinkLoop(String),
    #[error("background task failed: {0}")]
    Task(String),
}

impl OciError {
    pub(crate) fn io(context: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Self::Io {
            context,
            path: path.into(),
            source,
        }
    }
}

/// Most characters of a name from an image that go into an error or a log line.
const SHOWN_NAME_CHARS: usize = 64;

/// A name from an image as errors and logs show it: escaped (no NULs or control characters
/// reach a terminal) and cut to [`SHOWN_NAME_CHARS`] characters, with the full length noted, so
/// a hostile multi-megabyte name costs a line, not megabytes of stderr.
pub(crate) fn shown_name(raw: &[u8]) -> String {
    // A character is at most 4 bytes and escapes to at least one character: enough input.
    let prefix = &raw[..raw.len().min(4 * SHOWN_NAME_CHARS)];
    let lossy = String::from_utf8_lossy(prefix);
    let mut escaped = lossy.escape_debug();
    let mut out: String = escaped.by_ref().take(SHOWN_NAME_CHARS).collect();
    if escaped.next().is_some() || prefix.len() < raw.len() {
        out.push_str(&format!("… ({} bytes)", raw.len()));
    }
    out
}
