//! An index document before signing (`Index::from_json`: what `registryctl` reads and what a
//! signed index's `signed` member must satisfy), so the schema checks get the mutations that a
//! signature would otherwise stop.
//!
//! Input: index JSON. Properties: a document that parses resolves every server by name and
//! every `name@version`, round-trips through its working copy, signs and verifies back to
//! itself, and a signature with one bit flipped is refused as `BadSignature`.

#![no_main]

#[path = "common/index.rs"]
mod common;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use gig_registry_schema::{Index, IndexError, verify};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(index) = Index::from_json(data) else {
        return;
    };
    assert_eq!(
        Index::from_json(data).ok().as_ref(),
        Some(&index),
        "parses the same twice"
    );
    for (name, server) in &index.servers {
        let latest = index.resolve(name.as_str()).expect("every server resolves");
        assert_eq!(latest.version, server.latest);
        for version in server.versions.keys() {
            let r = index
                .resolve(&format!("{}@{version}", name.as_str()))
                .expect("every version resolves");
            assert_eq!(r.version, version.as_str());
        }
    }
    let signed = common::round_trips(&index);

    let mut envelope: serde_json::Value = serde_json::from_slice(&signed).unwrap();
    let sig = envelope["signatures"][0]["sig"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut raw = STANDARD.decode(sig).unwrap();
    let bit = data.len() % (raw.len() * 8);
    raw[bit / 8] ^= 1 << (bit % 8);
    envelope["signatures"][0]["sig"] = STANDARD.encode(raw).into();
    let flipped = serde_json::to_vec(&envelope).unwrap();
    let result = verify(&flipped, &common::trusted(), common::now(), None);
    assert!(
        matches!(result, Err(IndexError::BadSignature(_))),
        "{result:?}"
    );
});
