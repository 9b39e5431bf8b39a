//! Sealing, opening, re-wrapping and the key check value.

use std::fmt;

use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{Key, Tag, XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretBox};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::{Aad, KeyId, MasterKey, Sealed, SecretBytes, VaultError, fill_random};

const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
const DEK_LEN: usize = 32;
/// Length of every `wrapped_dek`: nonce, the 32-byte DEK, tag.
pub const WRAPPED_DEK_LEN: usize = NONCE_LEN + DEK_LEN + TAG_LEN;
/// Length of the ciphertext of an empty secret; every ciphertext is at least this long.
pub const MIN_CIPHERTEXT_LEN: usize = NONCE_LEN + TAG_LEN;
/// Length of [`Vault::check_value`].
pub const CHECK_VALUE_LEN: usize = 32;

/// Separates the DEK wrap's AAD from the value's, so one layer's bytes never verify as the other.
const DEK_AAD_LABEL: &[u8] = b"dek";
const CHECK_VALUE_LABEL: &[u8] = b"gigmcp/vault/kcv";

/// Seals and opens secrets under one master key. Holds only the derived KEK (zeroized on drop)
/// and its public [`KeyId`]; `Debug` shows the key id alone.
pub struct Vault {
    kek: SecretBox<[u8; 32]>,
    key_id: KeyId,
}

impl Vault {
    /// Derives the KEK and key id from `master`.
    pub fn new(master: &MasterKey) -> Self {
        let (kek, key_id) = master.derive();
        Self { kek, key_id }
    }

    /// The public id recorded on every record this vault wraps.
    pub fn key_id(&self) -> &KeyId {
        &self.key_id
    }

    /// Encrypts `plaintext` for the row `aad` under a fresh data key.
    ///
    /// # Panics
    /// If the OS cannot supply randomness, or a field or the plaintext is 4 GiB or longer.
    #[must_use = "the secret is lost unless the Sealed record is stored"]
    pub fn seal(&self, aad: &Aad<'_>, plaintext: &[u8]) -> Sealed {
        let aad = aad.canonical_bytes();
        let mut dek = Zeroizing::new([0u8; DEK_LEN]);
        fill_random(dek.as_mut_slice());
        Sealed {
            key_id: self.key_id,
            wrapped_dek: self.wrap_dek(&aad, &dek),
            ciphertext: encrypt(&dek, &aad, plaintext),
        }
    }

    /// Decrypts `sealed`, which must have been sealed for exactly the row `aad`.
    pub fn open(&self, aad: &Aad<'_>, sealed: &Sealed) -> Result<SecretBytes, VaultError> {
        let aad = aad.canonical_bytes();
        let dek = self.unwrap_dek(&aad, sealed)?;
        let plaintext = decrypt(
            &dek,
            &aad,
            &sealed.ciphertext,
            "ciphertext",
            MIN_CIPHERTEXT_LEN,
        )?;
        Ok(SecretBytes::new(plaintext))
    }

    /// Moves `sealed` from `old`'s master key to this one: the DEK is re-wrapped, the value
    /// ciphertext is kept byte-identical. A record already under this key is returned unchanged
    /// (after checking its wrap still authenticates), so an interrupted rotation can be re-run.
    /// Only the wrap is authenticated here; the value is not decrypted, so a damaged value is
    /// carried over as is and reported by [`Vault::open`].
    pub fn rewrap(
        &self,
        old: &Vault,
        aad: &Aad<'_>,
        sealed: &Sealed,
    ) -> Result<Sealed, VaultError> {
        let aad = aad.canonical_bytes();
        if sealed.key_id == self.key_id {
            self.unwrap_dek(&aad, sealed)?;
            return Ok(sealed.clone());
        }
        let dek = old.unwrap_dek(&aad, sealed)?;
        Ok(Sealed {
            key_id: self.key_id,
            wrapped_dek: self.wrap_dek(&aad, &dek),
            ciphertext: sealed.ciphertext.clone(),
        })
    }

    /// HMAC-SHA256(KEK, "gigmcp/vault/kcv"): store it once, and at start-up
    /// [`Vault::verify_check_value`] tells a wrong master key apart from corrupt records.
    /// Deterministic, and reveals nothing about the KEK.
    pub fn check_value(&self) -> Vec<u8> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(self.kek.expose_secret())
            .expect("HMAC accepts keys of any length");
        mac.update(CHECK_VALUE_LABEL);
        mac.finalize().into_bytes().to_vec()
    }

    /// Constant-time comparison of a stored check value with this vault's.
    pub fn verify_check_value(&self, stored: &[u8]) -> Result<(), VaultError> {
        if bool::from(self.check_value().as_slice().ct_eq(stored)) {
            Ok(())
        } else {
            Err(VaultError::WrongMasterKey)
        }
    }

    /// The wrap's AAD also binds the key id, so a record cannot claim a different wrapping key.
    fn dek_aad(&self, aad: &[u8]) -> Vec<u8> {
        [aad, DEK_AAD_LABEL, self.key_id.as_bytes()].concat()
    }

    fn wrap_dek(&self, aad: &[u8], dek: &[u8; DEK_LEN]) -> Vec<u8> {
        encrypt(self.kek.expose_secret(), &self.dek_aad(aad), dek)
    }

    fn unwrap_dek(
        &self,
        aad: &[u8],
        sealed: &Sealed,
    ) -> Result<Zeroizing<[u8; DEK_LEN]>, VaultError> {
        if sealed.key_id != self.key_id {
            return Err(VaultError::WrongKey {
                expected: self.key_id,
                found: sealed.key_id,
            });
        }
        // Check the value's length too, before any crypto, so a short record is reported as
        // Truncated whichever field was cut.
        truncation_check(&sealed.ciphertext, "ciphertext", MIN_CIPHERTEXT_LEN)?;
        let field = "wrapped_dek";
        let unwrapped = decrypt(
            self.kek.expose_secret(),
            &self.dek_aad(aad),
            &sealed.wrapped_dek,
            field,
            WRAPPED_DEK_LEN,
        )?;
        // Only a wrap longer than WRAPPED_DEK_LEN made with this KEK could fail here.
        let bytes = <&[u8; DEK_LEN]>::try_from(unwrapped.as_slice())
            .map_err(|_| VaultError::Corrupt { field })?;
        Ok(Zeroizing::new(*bytes))
    }
}

impl fmt::Debug for Vault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Vault")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

fn truncation_check(sealed: &[u8], field: &'static str, min: usize) -> Result<(), VaultError> {
    if sealed.len() < min {
        return Err(VaultError::Truncated {
            field,
            len: sealed.len(),
            min,
        });
    }
    Ok(())
}

/// `nonce || ct || tag` with a fresh random nonce.
fn encrypt(key: &[u8; 32], aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
    let mut nonce = XNonce::default();
    fill_random(&mut nonce);
    let mut out = Vec::with_capacity(NONCE_LEN + plaintext.len() + TAG_LEN);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(plaintext);
    let tag = XChaCha20Poly1305::new(Key::from_slice(key))
        .encrypt_in_place_detached(&nonce, aad, &mut out[NONCE_LEN..])
        .expect("XChaCha20-Poly1305 only refuses messages over 256 GiB");
    out.extend_from_slice(&tag);
    out
}

/// Inverse of [`encrypt`]; refuses anything shorter than `min` before touching the cipher.
fn decrypt(
    key: &[u8; 32],
    aad: &[u8],
    sealed: &[u8],
    field: &'static str,
    min: usize,
) -> Result<Zeroizing<Vec<u8>>, VaultError> {
    truncation_check(sealed, field, min.max(NONCE_LEN + TAG_LEN))?;
    let (nonce, rest) = sealed.split_at(NONCE_LEN);
    let (body, tag) = rest.split_at(rest.len() - TAG_LEN);
    let mut plaintext = Zeroizing::new(body.to_vec());
    // The tag is verified before any byte is decrypted, so a failure leaves only ciphertext.
    XChaCha20Poly1305::new(Key::from_slice(key))
        .decrypt_in_place_detached(
            XNonce::from_slice(nonce),
            aad,
            &mut plaintext,
            Tag::from_slice(tag),
        )
        .map_err(|_| VaultError::Corrupt { field })?;
    Ok(plaintext)
}
