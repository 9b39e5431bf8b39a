//! Reading a master key from a file an operator names (`gigmcp vault rotate --new-key-file`).
//!
//! A master key opens every stored secret, so its file must be the operator's alone: a regular
//! file, reached without a symlink as its last component, that no group or other user can read,
//! and short. Each refusal names the path and the reason, never a byte of the content.

use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use gig_vault::{MasterKey, VaultError};
use zeroize::Zeroizing;

/// Longest key file read: 64 hex characters and room for whitespace around them.
const MAX_KEY_FILE_BYTES: u64 = 256;

#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("cannot read key file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("key file {path} is a symlink: name the key file itself")]
    Symlink { path: PathBuf },
    #[error("key file {path} was replaced while it was being opened")]
    Replaced { path: PathBuf },
    #[error("key file {path} is not a regular file")]
    NotRegular { path: PathBuf },
    #[error(
        "key file {path} has mode {mode:04o}: it must not be readable or writable by group or \
         other (chmod 600 it)"
    )]
    Permissions { path: PathBuf, mode: u32 },
    #[error("key file {path} is {len} bytes; a master key file holds 64 hex characters")]
    TooLarge { path: PathBuf, len: u64 },
    #[error("key file {path}: {source}")]
    Key {
        path: PathBuf,
        #[source]
        source: VaultError,
    },
}

/// Reads the master key (64 hex characters, surrounding whitespace ignored) from `path`,
/// refusing a symlink, anything but a regular file, a file group or other may access, and a
/// file longer than a key needs. The key is parsed by [`MasterKey::from_hex`], so weak keys are
/// refused as they are everywhere else.
pub fn read_master_key_file(path: &Path) -> Result<MasterKey, KeyFileError> {
    let read_err = |source| KeyFileError::Read {
        path: path.to_owned(),
        source,
    };
    let named = fs::symlink_metadata(path).map_err(read_err)?;
    if named.file_type().is_symlink() {
        return Err(KeyFileError::Symlink {
            path: path.to_owned(),
        });
    }
    let file = File::open(path).map_err(read_err)?;
    let opened = file.metadata().map_err(read_err)?;
    // What was opened is what was checked: not swapped for a symlink or another file since.
    if (opened.dev(), opened.ino()) != (named.dev(), named.ino()) {
        return Err(KeyFileError::Replaced {
            path: path.to_owned(),
        });
    }
    if !opened.is_file() {
        return Err(KeyFileError::NotRegular {
            path: path.to_owned(),
        });
    }
    let mode = opened.mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(KeyFileError::Permissions {
            path: path.to_owned(),
            mode,
        });
    }
    if opened.len() > MAX_KEY_FILE_BYTES {
        return Err(KeyFileError::TooLarge {
            path: path.to_owned(),
            len: opened.len(),
        });
    }
    // Sized up front and read under a cap, so the buffer never reallocates and strands a copy.
    let mut text = Zeroizing::new(String::with_capacity(MAX_KEY_FILE_BYTES as usize + 1));
    file.take(MAX_KEY_FILE_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(read_err)?;
    if text.len() as u64 > MAX_KEY_FILE_BYTES {
        return Err(KeyFileError::TooLarge {
            path: path.to_owned(),
            len: text.len() as u64,
        });
    }
    MasterKey::from_hex(text.trim()).map_err(|source| KeyFileError::Key {
        path: path.to_owned(),
        source,
    })
}
