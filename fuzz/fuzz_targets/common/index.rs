//! The index targets' fixed key and clock, and the round trip both check.

use std::sync::LazyLock;
use std::time::{Duration, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use gig_registry_schema::{Index, IndexError, IndexSigningKey, TrustedKeys, sign_index, verify};

/// The key the corpus was signed with (the property-based targets' key too).
pub static KEY: LazyLock<IndexSigningKey> = LazyLock::new(|| {
    let text = format!(
        "gig-index-secret-key ed25519:{}",
        STANDARD.encode([7u8; 32])
    );
    IndexSigningKey::from_file_text(&text).unwrap()
});

pub fn trusted() -> TrustedKeys {
    TrustedKeys::new([KEY.public()]).unwrap()
}

/// A fixed "now" (2027-01-15), before the corpus indexes expire.
pub fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

/// `index`'s working copy parses back to it, and it signs and verifies back to itself (or is
/// refused only for its expiry). Returns the signed file.
pub fn round_trips(index: &Index) -> Vec<u8> {
    let working_copy = Index::from_json(&index.to_json_pretty()).expect("working copy parses");
    assert_eq!(&working_copy, index, "working copy round-trips");
    let key: &IndexSigningKey = &KEY;
    let signed = sign_index(index, &[key]).expect("a valid index signs");
    match verify(&signed, &trusted(), now(), None) {
        Ok(verified) => assert_eq!(verified.index(), index, "signs and verifies to itself"),
        Err(IndexError::Expired { .. }) => {}
        Err(e) => panic!("a freshly signed index is refused: {e}"),
    }
    signed
}
