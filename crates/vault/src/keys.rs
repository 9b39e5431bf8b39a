//! The master key and what is derived from it.

use std::fmt::{self, Write as _};
use std::str::FromStr;

use hkdf::Hkdf;
use secrecy::{ExposeSecret, ExposeSecretMut, SecretBox, SecretString};
use sha2::Sha256;

use crate::{VaultError, fill_random};

/// Length of a master key in bytes (64 hex characters).
pub const MASTER_KEY_LEN: usize = 32;
/// Length of a [`KeyId`] in bytes (16 hex characters).
pub const KEY_ID_LEN: usize = 8;

/// Domain-separates these derivations from any other use of the same master key.
const HKDF_SALT: &[u8] = b"gigmcp/vault/v1";

/// The operator's 256-bit root secret. Zeroized on drop; `Debug` prints `MasterKey([REDACTED])`.
pub struct MasterKey(SecretBox<[u8; MASTER_KEY_LEN]>);

impl MasterKey {
    /// Parses exactly 64 hex characters (either case). The error never contains the input.
    ///
    /// A key whose 32 bytes are all the same (all zero, `1111…`) is refused: no generator
    /// produces one, so it is a placeholder or a typo, and it is the first key an attacker tries.
    pub fn from_hex(hex_key: &str) -> Result<Self, VaultError> {
        if hex_key.len() != 2 * MASTER_KEY_LEN {
            return Err(VaultError::InvalidMasterKey {
                reason: "expected exactly 64 hex characters",
            });
        }
        // Decode straight into the zeroizing box so no stray copy of the key is left behind.
        let mut key = SecretBox::new(Box::new([0u8; MASTER_KEY_LEN]));
        // hex's own error names the offending character, which is part of the key: drop it.
        hex::decode_to_slice(hex_key, key.expose_secret_mut()).map_err(|_| {
            VaultError::InvalidMasterKey {
                reason: "contains a character that is not hex",
            }
        })?;
        let bytes = key.expose_secret();
        if bytes.iter().all(|b| *b == bytes[0]) {
            return Err(VaultError::InvalidMasterKey {
                reason: "all 32 bytes are the same (such as all zero): not a random key; \
                         generate one with `openssl rand -hex 32`",
            });
        }
        Ok(Self(key))
    }

    /// A fresh key from the OS CSPRNG.
    ///
    /// # Panics
    /// If the OS cannot supply randomness.
    pub fn generate() -> Self {
        Self(SecretBox::init_with_mut(
            |key: &mut [u8; MASTER_KEY_LEN]| fill_random(key),
        ))
    }

    /// The key as 64 lowercase hex characters, for an operator to store (e.g. after `generate`).
    pub fn to_hex(&self) -> SecretString {
        // Sized up front so the String never reallocates and strands an unzeroized copy.
        let mut out = String::with_capacity(2 * MASTER_KEY_LEN);
        for byte in self.0.expose_secret() {
            // Writing to a String cannot fail.
            let _ = write!(out, "{byte:02x}");
        }
        SecretString::from(out)
    }

    /// HKDF-SHA256 → (KEK, key id). hkdf 0.12 cannot zeroize its PRK; it lives only on this
    /// stack frame.
    pub(crate) fn derive(&self) -> (SecretBox<[u8; 32]>, KeyId) {
        let hkdf = Hkdf::<Sha256>::new(Some(HKDF_SALT), self.0.expose_secret());
        // HKDF-SHA256 only refuses outputs longer than 8160 bytes.
        let kek = SecretBox::init_with_mut(|kek: &mut [u8; 32]| {
            hkdf.expand(b"kek", kek)
                .expect("32 bytes is a valid HKDF length")
        });
        let mut id = [0u8; KEY_ID_LEN];
        hkdf.expand(b"key-id", &mut id)
            .expect("8 bytes is a valid HKDF length");
        (kek, KeyId(id))
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey([REDACTED])")
    }
}

/// Public fingerprint of a master key: names which key wrapped a record without revealing it.
/// Displays as 16 lowercase hex characters.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyId([u8; KEY_ID_LEN]);

impl KeyId {
    /// Rebuilds a key id read back from storage.
    pub const fn from_bytes(bytes: [u8; KEY_ID_LEN]) -> Self {
        Self(bytes)
    }

    /// The raw bytes, e.g. for a binary column.
    pub const fn as_bytes(&self) -> &[u8; KEY_ID_LEN] {
        &self.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

impl FromStr for KeyId {
    type Err = VaultError;

    /// Parses the 16 hex characters that `Display` prints.
    fn from_str(s: &str) -> Result<Self, VaultError> {
        let mut id = [0u8; KEY_ID_LEN];
        hex::decode_to_slice(s, &mut id).map_err(|_| VaultError::InvalidKeyId {
            reason: "expected exactly 16 hex characters",
        })?;
        Ok(Self(id))
    }
}
