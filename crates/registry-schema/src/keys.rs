//! Ed25519 keys: the public-key text format of `GIG_INDEX_PUBKEYS`, key ids, the set of trusted
//! keys with its threshold, and the private-key file format `registryctl` writes.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{SigningKey, VerifyingKey};
use rand::TryRngCore;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

const PUBLIC_PREFIX: &str = "ed25519:";
const SECRET_PREFIX: &str = "gig-index-secret-key ed25519:";
/// The entry of a key list that sets its threshold: `threshold=2`.
const THRESHOLD_PREFIX: &str = "threshold=";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("invalid public key {0:?}: {1}")]
    Public(String, &'static str),
    #[error("no public keys given (expected ed25519:<base64>[,ed25519:<base64>...])")]
    NoKeys,
    #[error("threshold {threshold} is impossible with {keys} trusted key(s)")]
    Threshold { threshold: usize, keys: usize },
    #[error("invalid threshold entry {0:?}: {1}")]
    ThresholdEntry(String, &'static str),
    #[error("invalid private key file: {0}")]
    Secret(&'static str),
    #[error("cannot draw randomness from the OS: {0}")]
    Random(String),
}

/// A trusted Ed25519 public key, written `ed25519:<base64 of the 32 key bytes>`.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    key: VerifyingKey,
    id: String,
}

impl PublicKey {
    fn new(key: VerifyingKey) -> Self {
        let id = hex::encode(&Sha256::digest(key.as_bytes())[..8]);
        PublicKey { key, id }
    }

    /// The first 16 hex digits of the SHA-256 of the raw key: what signatures name.
    pub fn key_id(&self) -> &str {
        &self.id
    }

    pub(crate) fn verifying_key(&self) -> &VerifyingKey {
        &self.key
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({} {self})", self.id)
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PUBLIC_PREFIX}{}", STANDARD.encode(self.key.as_bytes()))
    }
}

impl FromStr for PublicKey {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, KeyError> {
        let err = |why| KeyError::Public(s.to_owned(), why);
        let b64 = s
            .strip_prefix(PUBLIC_PREFIX)
            .ok_or_else(|| err("expected ed25519:<base64 of 32 bytes>"))?;
        let bytes = STANDARD.decode(b64).map_err(|_| err("not valid base64"))?;
        let bytes: [u8; 32] = bytes
            .try_into()
            .map_err(|_| err("an Ed25519 public key is 32 bytes"))?;
        let key = VerifyingKey::from_bytes(&bytes).map_err(|_| err("not a valid Ed25519 point"))?;
        if key.is_weak() {
            return Err(err("a small-order (weak) key"));
        }
        Ok(PublicKey::new(key))
    }
}

/// The keys an operator trusts to sign the index, and how many must sign (default 1).
#[derive(Debug, Clone)]
pub struct TrustedKeys {
    keys: BTreeMap<String, PublicKey>,
    threshold: usize,
}

impl TrustedKeys {
    pub fn new(keys: impl IntoIterator<Item = PublicKey>) -> Result<Self, KeyError> {
        let keys: BTreeMap<_, _> = keys
            .into_iter()
            .map(|k| (k.key_id().to_owned(), k))
            .collect();
        if keys.is_empty() {
            return Err(KeyError::NoKeys);
        }
        Ok(TrustedKeys { keys, threshold: 1 })
    }

    /// Parses `GIG_INDEX_PUBKEYS`: comma-separated `ed25519:<base64>` entries and at most one
    /// `threshold=N` entry (how many distinct listed keys must sign; default 1); spaces around
    /// entries are ignored, empty entries are an error. The same key listed twice counts once.
    pub fn parse_list(list: &str) -> Result<Self, KeyError> {
        if list.trim().is_empty() {
            return Err(KeyError::NoKeys);
        }
        let mut threshold = None;
        let mut keys = Vec::new();
        for entry in list.split(',').map(str::trim) {
            let Some(number) = entry.strip_prefix(THRESHOLD_PREFIX) else {
                keys.push(entry.parse::<PublicKey>()?);
                continue;
            };
            let bad = |why| KeyError::ThresholdEntry(entry.to_owned(), why);
            if threshold.is_some() {
                return Err(bad("given twice"));
            }
            let number = number
                .parse::<usize>()
                .map_err(|_| bad("expected threshold=<number of keys>"))?;
            threshold = Some(number);
        }
        let trusted = Self::new(keys)?;
        match threshold {
            Some(threshold) => trusted.with_threshold(threshold),
            None => Ok(trusted),
        }
    }

    /// Requires `threshold` distinct trusted keys to sign (1..=number of keys).
    pub fn with_threshold(mut self, threshold: usize) -> Result<Self, KeyError> {
        if threshold == 0 || threshold > self.keys.len() {
            return Err(KeyError::Threshold {
                threshold,
                keys: self.keys.len(),
            });
        }
        self.threshold = threshold;
        Ok(self)
    }

    pub fn threshold(&self) -> usize {
        self.threshold
    }

    pub fn get(&self, key_id: &str) -> Option<&PublicKey> {
        self.keys.get(key_id)
    }
}

/// A private signing key. Its `Debug` never shows the key; the key bytes are zeroized on drop.
pub struct IndexSigningKey(SigningKey);

impl fmt::Debug for IndexSigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IndexSigningKey({})", self.public().key_id())
    }
}

impl IndexSigningKey {
    pub fn generate() -> Result<Self, KeyError> {
        let mut seed = Zeroizing::new([0u8; 32]);
        rand::rngs::OsRng
            .try_fill_bytes(seed.as_mut())
            .map_err(|e| KeyError::Random(e.to_string()))?;
        Ok(IndexSigningKey(SigningKey::from_bytes(&seed)))
    }

    pub fn public(&self) -> PublicKey {
        PublicKey::new(self.0.verifying_key())
    }

    /// The key file's text: one line `gig-index-secret-key ed25519:<base64 of the 32-byte seed>`.
    pub fn to_file_text(&self) -> Zeroizing<String> {
        Zeroizing::new(format!(
            "{SECRET_PREFIX}{}\n",
            STANDARD.encode(self.0.to_bytes())
        ))
    }

    pub fn from_file_text(text: &str) -> Result<Self, KeyError> {
        let b64 = text
            .trim_end_matches(['\n', '\r'])
            .strip_prefix(SECRET_PREFIX)
            .ok_or(KeyError::Secret(
                "expected one line `gig-index-secret-key ed25519:<base64>` (made by registryctl keygen)",
            ))?;
        let bytes = Zeroizing::new(
            STANDARD
                .decode(b64)
                .map_err(|_| KeyError::Secret("the key is not valid base64"))?,
        );
        let seed: &[u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| KeyError::Secret("an Ed25519 seed is 32 bytes"))?;
        Ok(IndexSigningKey(SigningKey::from_bytes(seed)))
    }

    pub(crate) fn sign(&self, message: &[u8]) -> [u8; 64] {
        use ed25519_dalek::Signer;
        self.0.sign(message).to_bytes()
    }
}
