//! Fuzz targets: the signed index, its canonical form and its signature check.
//!
//! Properties: arbitrary bytes never panic the parser or the verifier; a generated index
//! signs and verifies back to itself, and its working-copy JSON round-trips; changing any
//! signed value, any bit of a signature, or any byte of the file never verifies as anything but
//! the index that was signed (only whitespace may change); the canonical form is a fixed point.

use std::sync::LazyLock;
use std::time::{Duration, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use gig_fuzz::fuzz;
use gig_registry_schema::canonical::{canonicalize, parse_strict};
use gig_registry_schema::{
    Index, IndexError, IndexSigningKey, PublicKey, TrustedKeys, sign_index, verify,
};
use proptest::prelude::*;
use serde_json::{Value, json};

fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

/// A fixed key, so a failure replays exactly. Signing and verifying cost ~25 ms each in a
/// debug build, which is what bounds the case counts below.
static KEY: LazyLock<IndexSigningKey> = LazyLock::new(|| {
    let text = format!(
        "gig-index-secret-key ed25519:{}",
        STANDARD.encode([7u8; 32])
    );
    IndexSigningKey::from_file_text(&text).unwrap()
});

fn key() -> &'static IndexSigningKey {
    &KEY
}

fn trusted() -> TrustedKeys {
    TrustedKeys::new([key().public()]).unwrap()
}

/// Text that stresses the canonical form: escapes, controls, astral characters, RTL marks.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9 ._-]{0,12}",
        "\\PC{0,8}",
        proptest::collection::vec(
            prop_oneof![
                Just('"'),
                Just('\\'),
                Just('\u{1}'),
                Just('\u{7f}'),
                Just('\u{2028}'),
                Just('\u{1F600}'),
                Just('/'),
                Just('é'),
                any::<char>().prop_filter("no NUL", |c| *c != '\0'),
            ],
            0..8
        )
        .prop_map(|cs| cs.into_iter().collect()),
    ]
}

fn version_entry(name: String, version: String) -> impl Strategy<Value = Value> {
    (
        proptest::collection::vec(text(), 0..3),
        proptest::collection::btree_map("[A-Z][A-Z0-9_]{0,6}", text(), 0..3),
        text(),
        "[0-9a-f]{64}",
        prop_oneof![Just("entrypoint"), Just("rootfs")],
        proptest::option::of(16u64 << 20..1u64 << 34),
    )
        .prop_map(move |(args, env, description, digest, extract, memory)| {
            let mut entry = json!({
                "image": format!("ghcr.io/gig/{name}:{version}@sha256:{digest}"),
                "entrypoint": format!("/usr/bin/{name}"),
                "args": args,
                "env": env,
                "extract": extract,
                "description": description,
            });
            if let Some(m) = memory {
                entry["limits"] = json!({"memoryBytes": m});
            }
            entry
        })
}

fn server() -> impl Strategy<Value = (String, Value)> {
    (
        "[a-z][a-z0-9-]{0,10}",
        proptest::collection::btree_set("[0-9]{1,2}\\.[0-9]\\.[0-9]", 1..3),
    )
        .prop_flat_map(|(name, versions)| {
            let versions: Vec<String> = versions.into_iter().collect();
            let entries: Vec<_> = versions
                .iter()
                .map(|v| version_entry(name.clone(), v.clone()))
                .collect();
            (
                Just(name),
                Just(versions.clone()),
                entries,
                text(),
                0..versions.len(),
            )
        })
        .prop_map(|(name, versions, entries, description, latest)| {
            let map: serde_json::Map<String, Value> =
                versions.iter().cloned().zip(entries).collect();
            let server = json!({
                "description": description,
                "latest": versions[latest],
                "versions": map,
            });
            (name, server)
        })
}

/// Valid indexes (anything the schema refuses, such as a reserved env name, is dropped).
fn index() -> impl Strategy<Value = Index> {
    (
        0u64..(1 << 53),
        proptest::collection::btree_map("[a-z][a-z0-9-]{0,10}", server(), 0..4),
    )
        .prop_filter_map("schema-valid", |(version, servers)| {
            let servers: serde_json::Map<String, Value> = servers.into_values().collect();
            let doc = json!({
                "schemaVersion": 1,
                "version": version,
                "expires": "2030-01-01T00:00:00Z",
                "servers": servers,
            });
            Index::from_json(doc.to_string().as_bytes()).ok()
        })
}

/// One change to a signed value: every path here is covered by the signature.
#[derive(Debug, Clone)]
enum Tamper {
    BumpVersion,
    Expires,
    AddField,
    AddServer,
    DropServer,
    EditString(prop::sample::Index, String),
}

fn tamper() -> impl Strategy<Value = Tamper> {
    prop_oneof![
        Just(Tamper::BumpVersion),
        Just(Tamper::Expires),
        Just(Tamper::AddField),
        Just(Tamper::AddServer),
        Just(Tamper::DropServer),
        (any::<prop::sample::Index>(), text()).prop_map(|(i, s)| Tamper::EditString(i, s)),
    ]
}

/// How many string leaves `value` has.
fn count_strings(value: &Value) -> usize {
    match value {
        Value::String(_) => 1,
        Value::Array(items) => items.iter().map(count_strings).sum(),
        Value::Object(map) => map.values().map(count_strings).sum(),
        _ => 0,
    }
}

/// The `n`th string leaf of `value` (depth first), counting down `n` as leaves go by.
fn nth_string<'v>(value: &'v mut Value, n: &mut usize) -> Option<&'v mut String> {
    match value {
        Value::String(s) => {
            if *n == 0 {
                return Some(s);
            }
            *n -= 1;
            None
        }
        Value::Array(items) => items.iter_mut().find_map(|v| nth_string(v, n)),
        Value::Object(map) => map.values_mut().find_map(|v| nth_string(v, n)),
        _ => None,
    }
}

/// Applies `t` to `signed`; false if it changed nothing (an edit to the same text).
fn apply(signed: &mut Value, t: &Tamper) -> bool {
    match t {
        Tamper::BumpVersion => {
            let v = signed["version"].as_u64().unwrap();
            signed["version"] = json!(v ^ 1);
        }
        Tamper::Expires => signed["expires"] = json!("2031-01-01T00:00:00Z"),
        Tamper::AddField => signed["note"] = json!("unsigned"),
        Tamper::AddServer => {
            signed["servers"]["zz-injected"] = json!({"latest": "1.0.0", "versions": {}})
        }
        Tamper::DropServer => {
            let servers = signed["servers"].as_object_mut().unwrap();
            let Some(first) = servers.keys().next().cloned() else {
                return false;
            };
            servers.remove(&first);
        }
        Tamper::EditString(at, new) => {
            let leaves = count_strings(signed);
            if leaves == 0 {
                return false;
            }
            let mut n = at.index(leaves);
            let leaf = nth_string(signed, &mut n).expect("counted");
            if leaf == new {
                return false;
            }
            *leaf = new.clone();
        }
    }
    true
}

#[test]
fn fuzz_index_arbitrary_bytes() {
    let keys = trusted();
    let bytes = prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..256),
        "\\PC{0,200}".prop_map(String::into_bytes),
        Just(br#"{"signed":{},"signatures":[{"keyid":"x","sig":"AA=="}]}"#.to_vec()),
    ];
    fuzz(
        "registry-schema/arbitrary_bytes",
        file!(),
        3000,
        bytes,
        |bytes| {
            prop_assert!(verify(&bytes, &keys, now(), None).is_err());
            let _ = Index::from_json(&bytes);
            if let Ok(text) = std::str::from_utf8(&bytes) {
                let _ = TrustedKeys::parse_list(text);
                let _ = text.parse::<PublicKey>();
                let _ = IndexSigningKey::from_file_text(text);
            }
            if let Ok(value) = parse_strict(&bytes) {
                // The canonical form is a fixed point.
                if let Ok(canonical) = canonicalize(&value) {
                    let again = parse_strict(&canonical).expect("canonical output parses");
                    prop_assert_eq!(canonicalize(&again).unwrap(), canonical);
                }
            }
            Ok(())
        },
    );
}

#[test]
fn fuzz_index_sign_verify_round_trip() {
    let keys = trusted();
    fuzz(
        "registry-schema/sign_verify_round_trip",
        file!(),
        60,
        index(),
        |index| {
            let signed = sign_index(&index, &[key()]).unwrap();
            let verified = verify(&signed, &keys, now(), None).unwrap();
            prop_assert_eq!(verified.index(), &index);
            prop_assert_eq!(
                verified.signed_by(),
                &[key().public().key_id().to_owned()][..]
            );
            // The same document again is accepted (what a restart does).
            prop_assert!(verify(&signed, &keys, now(), Some(verified.accepted())).is_ok());
            let working_copy = Index::from_json(&index.to_json_pretty()).unwrap();
            prop_assert_eq!(&working_copy, &index);
            Ok(())
        },
    );
}

#[test]
fn fuzz_index_tampered_never_verifies() {
    let keys = trusted();
    let strategy = (index(), tamper(), any::<prop::sample::Index>(), 0u8..8);
    fuzz(
        "registry-schema/tampered_index",
        file!(),
        60,
        strategy,
        |(index, t, sig_byte, bit)| {
            let signed = sign_index(&index, &[key()]).unwrap();
            let envelope: Value = serde_json::from_slice(&signed).unwrap();

            // A changed signed value, with the original signature.
            let mut changed = envelope.clone();
            if apply(&mut changed["signed"], &t) {
                let bytes = serde_json::to_vec(&changed).unwrap();
                let result = verify(&bytes, &keys, now(), None);
                prop_assert!(
                    matches!(result, Err(IndexError::BadSignature(_))),
                    "{:?} gave {:?}",
                    t,
                    result.map(|v| v.accepted().clone())
                );
            }

            // One bit of the signature flipped.
            let mut flipped = envelope.clone();
            let sig = flipped["signatures"][0]["sig"].as_str().unwrap().to_owned();
            let mut raw = STANDARD.decode(sig).unwrap();
            let i = sig_byte.index(raw.len());
            raw[i] ^= 1 << bit;
            flipped["signatures"][0]["sig"] = json!(STANDARD.encode(raw));
            let bytes = serde_json::to_vec(&flipped).unwrap();
            prop_assert!(matches!(
                verify(&bytes, &keys, now(), None),
                Err(IndexError::BadSignature(_))
            ));
            Ok(())
        },
    );
}

#[test]
fn fuzz_index_mutated_file_verifies_only_as_itself() {
    let keys = trusted();
    let strategy = (
        index(),
        proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    );
    fuzz(
        "registry-schema/mutated_file",
        file!(),
        80,
        strategy,
        |(index, edits)| {
            let mut bytes = sign_index(&index, &[key()]).unwrap();
            let original = verify(&bytes, &keys, now(), None).unwrap();
            for (at, byte) in edits {
                let i = at.index(bytes.len());
                bytes[i] = byte;
            }
            if let Ok(v) = verify(&bytes, &keys, now(), None) {
                // Only a change outside what was signed (whitespace) can keep a signature.
                prop_assert_eq!(v.index(), &index);
                prop_assert_eq!(v.accepted(), original.accepted());
            }
            Ok(())
        },
    );
}
