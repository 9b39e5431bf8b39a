//! Envelope encryption of secrets at rest for the Gig'MCP gateway.
//!
//! **Owns:** the cryptography only: deriving keys from the operator's master key, sealing a
//! secret into a [`Sealed`] record, opening it, re-wrapping records when the master key rotates,
//! and the key check value that tells a wrong master key from corrupt data.
//!
//! **Must never:** touch storage, the network, logs or the environment (the caller reads the
//! master key and persists [`Sealed`]); put plaintext or key bytes into an error, a `Debug`
//! string or a panic message; use one data key for two secrets.
//!
//! # Example
//!
//! ```
//! use gig_vault::{Aad, MasterKey, Sealed, Vault};
//!
//! let vault = Vault::new(&MasterKey::generate());
//! let row = Aad { secret_id: "sec_1", owner: "team-a", name: "GITHUB_TOKEN" };
//! let blob = vault.seal(&row, b"ghp_example").to_bytes(); // what the store keeps
//! let sealed = Sealed::from_bytes(&blob)?;
//! assert_eq!(vault.open(&row, &sealed)?.expose(), b"ghp_example");
//!
//! // Rotation: only the 72-byte wrap changes; run it again after a crash and nothing moves twice.
//! let next = Vault::new(&MasterKey::generate());
//! let rotated = next.rewrap(&vault, &row, &sealed)?;
//! assert_eq!(rotated.ciphertext, sealed.ciphertext);
//! assert_eq!(next.rewrap(&vault, &row, &rotated)?, rotated);
//! # Ok::<(), gig_vault::VaultError>(())
//! ```
//!
//! # Keys
//!
//! ```text
//! master key (32 bytes, from the operator)
//!   └─ HKDF-SHA256, salt "gigmcp/vault/v1"
//!        ├─ info "kek"    → 32-byte key-encryption key (KEK), never leaves the Vault
//!        └─ info "key-id" → first 8 bytes: the public KeyId stored on every record
//! per secret: a fresh random 256-bit data key (DEK)
//! ```
//!
//! # Format
//!
//! ```text
//! A           = "gigmcp/aad/v1" || u32be len || secret_id || u32be len || owner || u32be len || name
//! ciphertext  = nonce(24) || XChaCha20-Poly1305(DEK, nonce, aad = A, plaintext) || tag(16)
//! wrapped_dek = nonce(24) || XChaCha20-Poly1305(KEK, nonce, aad = A || "dek" || key_id, DEK) || tag(16)
//! blob        = 0x01 || key_id(8) || u32be len || wrapped_dek || u32be len || ciphertext
//! ```
//!
//! Both layers authenticate the row (`secret_id`, `owner`, `name`), so a record copied onto
//! another row fails to open, and the wrap also binds the key id it claims. Rotation only
//! re-wraps the 72-byte DEK: the value ciphertext stays byte-identical.
//!
//! # Why XChaCha20-Poly1305
//!
//! Its 192-bit nonce makes a random nonce per message safe: even 2^48 messages under one key
//! collide with probability about 2^-96. The KEK wraps every DEK for the life of the master
//! key, so 96-bit nonces (AES-GCM, ChaCha20-Poly1305) would cap it at around 2^32 random-nonce
//! messages, and counters would need state this crate refuses to keep. It is also constant-time
//! in software, with no dependence on AES hardware.

#![forbid(unsafe_code)]

mod aad;
mod keys;
mod sealed;
mod secret;
mod vault;
mod wire;

pub use aad::Aad;
pub use keys::{KEY_ID_LEN, KeyId, MASTER_KEY_LEN, MasterKey};
pub use sealed::Sealed;
pub use secret::SecretBytes;
pub use vault::{CHECK_VALUE_LEN, MIN_CIPHERTEXT_LEN, Vault, WRAPPED_DEK_LEN};

/// Everything that can go wrong, one variant per failing step. By construction no variant can
/// hold plaintext or key bytes: the only payloads are key ids, lengths and static strings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VaultError {
    /// [`MasterKey::from_hex`] got something other than 64 hex characters.
    #[error("invalid master key: {reason}")]
    InvalidMasterKey {
        /// What was wrong, never the input itself.
        reason: &'static str,
    },
    /// [`KeyId`]'s `FromStr` got something other than 16 hex characters.
    #[error("invalid key id: {reason}")]
    InvalidKeyId {
        /// What was wrong.
        reason: &'static str,
    },
    /// The record was wrapped under another master key (e.g. not yet rotated).
    #[error("record is wrapped under key {found}, but this vault holds key {expected}")]
    WrongKey {
        /// The key id of the vault asked to open the record.
        expected: KeyId,
        /// The key id recorded on the record.
        found: KeyId,
    },
    /// A field is too short to hold even its nonce, tag (and for the wrap, the DEK).
    #[error("{field} is {len} bytes, shorter than its minimum of {min}")]
    Truncated {
        /// `"wrapped_dek"` or `"ciphertext"`.
        field: &'static str,
        /// Its actual length.
        len: usize,
        /// The shortest length it could have.
        min: usize,
    },
    /// Authentication failed: the bytes were altered, belong to another row, or the AAD differs.
    #[error("{field} failed authentication: altered, moved from another row, or wrong AAD")]
    Corrupt {
        /// `"wrapped_dek"` or `"ciphertext"`.
        field: &'static str,
    },
    /// [`Sealed::from_bytes`] refused the blob.
    #[error("malformed sealed blob: {reason}")]
    Malformed {
        /// What was wrong.
        reason: &'static str,
    },
    /// A stored key check value was made by another master key.
    #[error("key check value does not match this master key")]
    WrongMasterKey,
    /// [`SecretBytes::expose_str`] found a secret that is not UTF-8.
    #[error("secret is not valid UTF-8")]
    NotUtf8,
}

/// Fills `buf` from the operating system's CSPRNG.
///
/// # Panics
/// If the OS cannot supply randomness. There is no safe fallback: a predictable DEK or nonce
/// would silently weaken every secret sealed afterwards, so stopping loudly is the lesser harm.
fn fill_random(buf: &mut [u8]) {
    use rand::TryRngCore;
    rand::rngs::OsRng
        .try_fill_bytes(buf)
        .expect("the operating system's random number generator failed");
}
