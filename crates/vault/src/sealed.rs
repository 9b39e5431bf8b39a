//! A sealed secret, as columns or as one blob.

use crate::wire::{put_len_prefixed, take_len_prefixed};
use crate::{KEY_ID_LEN, KeyId, VaultError};

/// Bumped on any change to the blob layout; older readers then refuse instead of misparsing.
const BLOB_VERSION: u8 = 1;

/// What a store persists for one secret. Public fields so a store can use one column each;
/// none of them is secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    /// Which master key wrapped `wrapped_dek`.
    pub key_id: KeyId,
    /// `nonce(24) || ct(32) || tag(16)`: the data key, encrypted under the KEK.
    pub wrapped_dek: Vec<u8>,
    /// `nonce(24) || ct || tag(16)`: the secret, encrypted under the data key.
    pub ciphertext: Vec<u8>,
}

impl Sealed {
    /// `0x01 || key_id(8) || u32be len || wrapped_dek || u32be len || ciphertext`.
    ///
    /// # Panics
    /// If a field is 4 GiB or longer, which [`crate::Vault::seal`] never produces in practice.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out =
            Vec::with_capacity(1 + KEY_ID_LEN + 8 + self.wrapped_dek.len() + self.ciphertext.len());
        out.push(BLOB_VERSION);
        out.extend_from_slice(self.key_id.as_bytes());
        put_len_prefixed(&mut out, &self.wrapped_dek);
        put_len_prefixed(&mut out, &self.ciphertext);
        out
    }

    /// Strict inverse of [`Sealed::to_bytes`]: any other version, a short blob or trailing bytes
    /// is [`VaultError::Malformed`]. Field contents are checked later, by [`crate::Vault::open`].
    pub fn from_bytes(blob: &[u8]) -> Result<Self, VaultError> {
        let malformed = |reason| VaultError::Malformed { reason };
        let (&version, rest) = blob.split_first().ok_or(malformed("empty"))?;
        if version != BLOB_VERSION {
            return Err(malformed("unsupported version"));
        }
        let (key_id, rest) = rest
            .split_first_chunk::<KEY_ID_LEN>()
            .ok_or(malformed("ends inside the key id"))?;
        let (wrapped_dek, rest) =
            take_len_prefixed(rest).ok_or(malformed("ends inside wrapped_dek"))?;
        let (ciphertext, rest) =
            take_len_prefixed(rest).ok_or(malformed("ends inside the ciphertext"))?;
        if !rest.is_empty() {
            return Err(malformed("trailing bytes after the ciphertext"));
        }
        Ok(Self {
            key_id: KeyId::from_bytes(*key_id),
            wrapped_dek: wrapped_dek.to_vec(),
            ciphertext: ciphertext.to_vec(),
        })
    }
}
