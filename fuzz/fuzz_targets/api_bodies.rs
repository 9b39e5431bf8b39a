//! `/api` request bodies as their handlers read them (`gig_api::fuzzing`), and the names,
//! roles and lifetimes they carry.
//!
//! Input: one knob (which body type), then the body. Properties: every refusal is a 400 whose
//! message stays under 1 KiB whatever the body holds; an accepted profile has a trimmed name of
//! 1 to 64 characters without control characters, and the filter it stores reads back as a
//! valid filter, identical; a string value that is a name, a role or a lifetime is accepted
//! only within its stated bounds.

#![no_main]

use gig_api::fuzzing::{BODY_KINDS, api_body, lifetime_secs, name, profile_body, role};
use gig_fuzz_cov::Knobs;
use gig_gateway::profile::ProfileFilter;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fn check_name(text: &str) {
    match name(text) {
        Ok(n) => {
            assert_eq!(n.as_str(), text.trim());
            assert!((1..=64).contains(&n.chars().count()), "{n:?}");
            assert!(!n.chars().any(char::is_control), "{n:?}");
        }
        Err(status) => assert_eq!(status, 400),
    }
}

fuzz_target!(|data: &[u8]| {
    let mut knobs = Knobs::new(data);
    let kind = knobs.byte() % BODY_KINDS;
    let body = knobs.rest();
    if let Err((status, message)) = api_body(kind, body) {
        assert_eq!(status, 400, "{message}");
        assert!(message.len() < 1024, "{} bytes of message", message.len());
    }
    if kind == BODY_KINDS - 1
        && let Some((name, stored)) = profile_body(body)
    {
        assert_eq!(name.trim(), name.as_str());
        assert!((1..=64).contains(&name.chars().count()), "{name:?}");
        assert!(!name.chars().any(char::is_control), "{name:?}");
        let read_back: ProfileFilter =
            serde_json::from_value(stored.clone()).expect("stored filter reads back");
        assert!(read_back.validate().is_ok());
        assert_eq!(serde_json::to_value(&read_back).unwrap(), stored);
    }
    // The body's own strings and numbers as names, roles and lifetimes.
    let Ok(Value::Object(fields)) = serde_json::from_slice::<Value>(body) else {
        return;
    };
    for value in fields.values() {
        match value {
            Value::String(text) => {
                check_name(text);
                if let Some(parsed) = role(text) {
                    assert_eq!(&parsed, text);
                }
            }
            Value::Number(n) => match lifetime_secs(n.as_i64()) {
                Ok(secs) => assert!((60..=365 * 24 * 3600).contains(&secs), "{secs}"),
                Err(status) => assert_eq!(status, 400),
            },
            _ => {}
        }
    }
});
