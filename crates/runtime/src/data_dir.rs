//! The data directory's layout and permissions. The directory itself is private (0711: nobody
//! else may list it, and every file holding state is 0600); only its `public` part — extracted
//! images and the egress proxy's CA certificate, which bubblewrap running as an unprivileged
//! user must read — is world-readable. Nothing secret ever goes there.

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
#[error("cannot prepare {path}: {source}")]
pub struct DataDirError {
    pub path: PathBuf,
    pub source: std::io::Error,
}

/// Creates the data directory with mode 0711 (tightening an existing one) and its 0755
/// public part.
pub fn prepare(path: &Path) -> Result<(), DataDirError> {
    let fail = |path: &Path| {
        let path = path.to_owned();
        move |source| DataDirError { path, source }
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o711)
        .create(path)
        .map_err(fail(path))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o711)).map_err(fail(path))?;
    let public = public_dir(path);
    std::fs::DirBuilder::new()
        .mode(0o755)
        .create(&public)
        .or_else(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => Ok(()),
            _ => Err(e),
        })
        .map_err(fail(&public))?;
    std::fs::set_permissions(&public, std::fs::Permissions::from_mode(0o755)).map_err(fail(&public))
}

/// The world-readable part of the data directory: nothing secret ever goes here.
pub fn public_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("public")
}

/// The first directory on the way to `path` that other users cannot traverse (or `path`
/// itself if they cannot read it). When the gateway runs as root, bubblewrap runs as `nobody`
/// and can bind only what `nobody` reaches; checking at start turns bubblewrap's failure deep
/// in a restart loop into one clear message.
pub fn blocked_for_others(path: &Path) -> Option<PathBuf> {
    let path = std::fs::canonicalize(path).ok()?;
    let readable = std::fs::metadata(&path).ok()?.permissions().mode() & 0o004 != 0;
    if !readable {
        return Some(path);
    }
    path.ancestors()
        .skip(1)
        .find(|dir| std::fs::metadata(dir).is_ok_and(|m| m.permissions().mode() & 0o001 == 0))
        .map(|dir| dir.to_path_buf())
}

/// Writes a world-readable file atomically (temp file + rename).
pub(crate) fn write_public_file(path: &Path, bytes: &[u8]) -> Result<(), DataDirError> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)
        .and_then(|()| std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o644)))
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|source| DataDirError {
            path: path.to_owned(),
            source,
        })
}
