//! The signed envelope `{"signed": <index>, "signatures": [{"keyid", "sig"}]}` and its checks.
//!
//! Signatures are Ed25519 (`verify_strict`) over the RFC 8785 encoding of `signed` exactly as
//! received, so whitespace or member order in the file does not matter and nothing that was not
//! signed is ever read. Order of checks: size, JSON, envelope shape, signatures, schema, expiry,
//! rollback/equivocation. An index is accepted when at least `threshold` distinct trusted keys
//! (default 1) signed it; extra signatures by unknown keys, or bad ones once the threshold is met,
//! are ignored, because the signature list itself is not signed and anyone can append to it.

use std::collections::BTreeSet;
use std::time::SystemTime;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::Signature;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::canonical::{canonicalize, parse_strict};
use crate::{Index, IndexError, IndexSigningKey, TrustedKeys};

/// Larger indexes are refused before parsing (thousands of servers fit in far less).
pub const MAX_INDEX_BYTES: usize = 16 << 20;

/// What a gateway persists about the newest index it accepted, to refuse rollbacks and two
/// different documents under one version number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AcceptedIndex {
    pub version: u64,
    /// Lowercase hex SHA-256 of the canonical encoding of `signed`.
    pub content_sha256: String,
}

/// An index whose signatures, schema, expiry and version have all been checked. Only
/// [`verify`] makes one.
#[derive(Debug, Clone)]
pub struct VerifiedIndex {
    index: Index,
    accepted: AcceptedIndex,
    signed_by: Vec<String>,
}

impl VerifiedIndex {
    pub fn index(&self) -> &Index {
        &self.index
    }
    /// What to persist as the new `newest_accepted`.
    pub fn accepted(&self) -> &AcceptedIndex {
        &self.accepted
    }
    /// Key ids of the trusted keys whose signatures verified.
    pub fn signed_by(&self) -> &[String] {
        &self.signed_by
    }
    pub fn resolve(&self, reference: &str) -> Result<crate::Resolved<'_>, crate::ResolveError> {
        self.index.resolve(reference)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Envelope {
    signed: Value,
    signatures: Vec<SignatureEntry>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SignatureEntry {
    keyid: String,
    sig: String,
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_else(|_| t.to_string())
}

/// Verifies a signed index. `newest_accepted` is what an earlier successful call returned in
/// [`VerifiedIndex::accepted`] (persisted by the caller), or `None` on first use.
pub fn verify(
    bytes: &[u8],
    keys: &TrustedKeys,
    now: SystemTime,
    newest_accepted: Option<&AcceptedIndex>,
) -> Result<VerifiedIndex, IndexError> {
    if bytes.len() > MAX_INDEX_BYTES {
        return Err(IndexError::TooLarge {
            size: bytes.len(),
            max: MAX_INDEX_BYTES,
        });
    }
    let malformed = |e: String| IndexError::Malformed(e);
    let value = parse_strict(bytes).map_err(|e| malformed(e.to_string()))?;
    let envelope: Envelope = serde_json::from_value(value)
        .map_err(|e| malformed(format!("not a signed index envelope: {e}")))?;
    if !envelope.signed.is_object() {
        return Err(malformed("`signed` must be an object".into()));
    }
    let canonical = canonicalize(&envelope.signed).map_err(malformed)?;

    if envelope.signatures.is_empty() {
        return Err(IndexError::NoSignature);
    }
    let mut valid = BTreeSet::new();
    let mut bad = None;
    let mut any_trusted = false;
    for entry in &envelope.signatures {
        let Some(key) = keys.get(&entry.keyid) else {
            continue;
        };
        any_trusted = true;
        let ok = STANDARD
            .decode(&entry.sig)
            .ok()
            .and_then(|b| <[u8; 64]>::try_from(b).ok())
            .map(|b| Signature::from_bytes(&b))
            .is_some_and(|sig| key.verifying_key().verify_strict(&canonical, &sig).is_ok());
        if ok {
            valid.insert(entry.keyid.clone());
        } else {
            bad.get_or_insert_with(|| entry.keyid.clone());
        }
    }
    if valid.len() < keys.threshold() {
        return Err(if let Some(keyid) = bad {
            IndexError::BadSignature(keyid)
        } else if !any_trusted {
            let mut ids: Vec<String> = envelope
                .signatures
                .iter()
                .map(|s| s.keyid.clone())
                .collect();
            ids.sort();
            ids.dedup();
            IndexError::UnknownKeys(ids)
        } else {
            IndexError::Threshold {
                valid: valid.len(),
                needed: keys.threshold(),
            }
        });
    }

    let index = Index::from_value(envelope.signed)?;
    let now = OffsetDateTime::from(now);
    if now >= index.expires {
        return Err(IndexError::Expired {
            expires: rfc3339(index.expires),
            now: rfc3339(now),
        });
    }
    let content_sha256 = hex::encode(Sha256::digest(&canonical));
    if let Some(newest) = newest_accepted {
        if index.version < newest.version {
            return Err(IndexError::RolledBack {
                version: index.version,
                newest: newest.version,
            });
        }
        if index.version == newest.version && content_sha256 != newest.content_sha256 {
            return Err(IndexError::Equivocation {
                version: index.version,
            });
        }
    }
    Ok(VerifiedIndex {
        accepted: AcceptedIndex {
            version: index.version,
            content_sha256,
        },
        index,
        signed_by: valid.into_iter().collect(),
    })
}

/// Signs `index` (after validating it) with every key given; returns the envelope as pretty JSON.
pub fn sign_index(index: &Index, keys: &[&IndexSigningKey]) -> Result<Vec<u8>, IndexError> {
    index.validate()?;
    let signed = serde_json::to_value(index).map_err(|e| IndexError::Schema(e.to_string()))?;
    let canonical = canonicalize(&signed).map_err(IndexError::Schema)?;
    if keys.is_empty() {
        return Err(IndexError::NoSignature);
    }
    let signatures: Vec<SignatureEntry> = keys
        .iter()
        .map(|k| SignatureEntry {
            keyid: k.public().key_id().to_owned(),
            sig: STANDARD.encode(k.sign(&canonical)),
        })
        .collect();
    let envelope = json!({ "signed": signed, "signatures": signatures });
    let mut out =
        serde_json::to_vec_pretty(&envelope).map_err(|e| IndexError::Schema(e.to_string()))?;
    out.push(b'\n');
    Ok(out)
}
