//! The proxy's response scrubber: the real secrets injected into a request, taken out of the
//! answer before the sandbox sees it.
//!
//! Input: knobs (one to three secrets and whether each was sent as Basic, chunk sizes), then
//! the response body, where a byte `0xF0..=0xFE` stands for a secret in one of its forms (raw,
//! percent-encoded, JSON-escaped, the injected Basic value, base64 at each alignment) and any
//! other byte is itself. Properties: the streaming scrubber gives the same bytes as scrubbing
//! the whole body, whatever the chunking, and no secret survives raw or percent-encoded.
//! Secrets use lowercase letters and punctuation, and the replacements begin and end with
//! characters no secret has, so a secret can only survive the scrubber, never be made by it.

#![no_main]

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use gig_fuzz_cov::{Knobs, contains, percent_encoded};
use libfuzzer_sys::fuzz_target;

const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz!\"\\%& ._-~*()";
/// 15 characters: with `Svc:` the Basic replacement is 19 bytes, so its base64 ends in `==`.
const PLACEHOLDERS: [&str; 3] = ["PHAPLACEHOLDERX", "PHBPLACEHOLDERX", "PHCPLACEHOLDERX"];
const USER: &str = "Svc";

/// Form `which` (0..7) of `secret`: raw, percent-encoded, JSON-escaped, the injected Basic
/// value, base64 after 0, 1 or 2 other bytes.
fn form(secret: &str, which: u8) -> String {
    match which {
        0 => secret.to_owned(),
        1 => percent_encoded(secret),
        2 => serde_json::to_string(secret)
            .unwrap()
            .trim_matches('"')
            .to_owned(),
        3 => STANDARD.encode(format!("{USER}:{secret}")),
        n => STANDARD.encode(format!("{}{secret}", &"ab"[..usize::from(n - 4)])),
    }
}

fuzz_target!(|data: &[u8]| {
    let mut knobs = Knobs::new(data);
    let count = knobs.in_range(1, 3);
    let mut secrets = Vec::new();
    for _ in 0..count {
        let len = knobs.in_range(8, 24);
        let s: String = (0..len)
            .map(|_| char::from(ALPHABET[usize::from(knobs.byte()) % ALPHABET.len()]))
            .collect();
        let basic = knobs.byte() & 1 == 1;
        secrets.push((s, basic));
    }
    let splits = knobs.in_range(1, 6);
    let chunks: Vec<usize> = (0..splits).map(|_| knobs.in_range(1, 40)).collect();
    let mut body = Vec::new();
    for &b in knobs.rest() {
        if (0xF0..0xFF).contains(&b) {
            let n = b - 0xF0;
            let (s, _) = &secrets[usize::from(n / 7) % secrets.len()];
            body.extend_from_slice(form(s, n % 7).as_bytes());
        } else {
            body.push(b);
        }
    }
    let entries: Vec<(&str, &str, Option<&str>)> = secrets
        .iter()
        .zip(PLACEHOLDERS)
        .map(|((s, basic), ph)| (s.as_str(), ph, basic.then_some(USER)))
        .collect();
    let (whole, streamed) = gig_proxy::fuzzing::scrub(&entries, &body, &chunks);
    assert!(streamed == whole, "chunking changed the output");
    for (s, _) in &secrets {
        assert!(!contains(&whole, s.as_bytes()), "secret {s:?} survived");
        assert!(
            !contains(&whole, percent_encoded(s).as_bytes()),
            "secret {s:?} survived percent-encoded"
        );
    }
});
