//! The signed index as a gateway receives it (`gig_registry_schema::verify`).
//!
//! Input: the signed file, checked against one trusted key (`common::KEY`; the corpus holds
//! indexes it signed, so mutations reach past the signature only where nothing signed
//! changed). Properties: the verdict is the same twice; an index that verifies is accepted
//! again against its own record (what a restart does), its working copy round-trips, and
//! signing it again verifies back to the same index. Whatever the bytes, the canonical form of
//! any JSON they hold is a fixed point, and an unsigned document that parses round-trips.

#![no_main]

#[path = "common/index.rs"]
mod common;

use gig_registry_schema::canonical::{canonicalize, parse_strict};
use gig_registry_schema::{Index, verify};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let keys = common::trusted();
    let first = verify(data, &keys, common::now(), None);
    let second = verify(data, &keys, common::now(), None);
    match (&first, &second) {
        (Ok(a), Ok(b)) => {
            assert_eq!(a.index(), b.index());
            assert_eq!(a.accepted(), b.accepted());
        }
        (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string()),
        _ => panic!("two verdicts for one file"),
    }
    if let Ok(verified) = first {
        let again = verify(data, &keys, common::now(), Some(verified.accepted()))
            .expect("the same document is accepted again");
        assert_eq!(again.index(), verified.index());
        common::round_trips(verified.index());
    }
    if let Ok(value) = parse_strict(data)
        && let Ok(canonical) = canonicalize(&value)
    {
        let again = parse_strict(&canonical).expect("canonical output parses");
        assert_eq!(
            canonicalize(&again).unwrap(),
            canonical,
            "canonical form is a fixed point"
        );
    }
    if let Ok(index) = Index::from_json(data) {
        common::round_trips(&index);
    }
});
