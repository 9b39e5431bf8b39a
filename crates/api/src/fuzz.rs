//! Fuzz targets: `/api` request bodies and the checks handlers run on them.
//!
//! - `api/bodies`: every JSON body type, fed mostly-valid objects with fields dropped, added,
//!   retyped or filled with hostile text, and raw bytes: the extractor never panics, and every
//!   refusal is the API's 400 with a bounded message.
//! - `api/profile_body`: a profile body the handler accepts has a trimmed name of 1 to 64
//!   characters without control characters, and what it stores reads back as the same filter
//!   (the profile view falls back to an empty filter on anything unreadable, so a lossy store
//!   would silently empty a profile).
//! - `api/names_roles_lifetimes`: token and profile names, roles and lifetimes are accepted
//!   only within their stated bounds.

use gig_fuzz::fuzz;
use gig_gateway::profile::ProfileFilter;
use http::StatusCode;
use proptest::prelude::*;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::api_tokens::{NewToken, lifetime, valid_name};
use crate::approvals::Approval;
use crate::profiles::{ProfileBody, TokenBody};
use crate::routes::read_json;
use crate::servers::{CredentialValue, InstallRequest};
use crate::users::{ImpersonationStart, RoleChange, parse_role};

/// Runs the JSON extractor and the handlers' `body` step on `bytes`.
fn extract<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, crate::error::ApiError> {
    read_json(bytes)
}

fn hostile_text() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => "[a-z0-9 _-]{0,12}".prop_map(Value::from),
        1 => "\\PC{0,10}".prop_map(Value::from),
        1 => Just(Value::from("a\u{0}b\r\n")),
        1 => Just(Value::from("x".repeat(5000))),
        1 => Just(Value::from("  padded  ")),
        1 => any::<i64>().prop_map(Value::from),
        1 => Just(Value::Null),
        1 => Just(json!([1, "a"])),
        1 => Just(json!({"nested": true})),
    ]
}

/// A body built from `fields` with each field's value drawn from hostile text, some fields
/// dropped and sometimes an unknown one added.
fn object(fields: &'static [&'static str]) -> impl Strategy<Value = Value> {
    (
        proptest::collection::vec((hostile_text(), prop::bool::weighted(0.85)), fields.len()),
        prop::bool::weighted(0.1),
    )
        .prop_map(move |(values, unknown)| {
            let mut map = serde_json::Map::new();
            for (field, (value, keep)) in fields.iter().zip(values) {
                if keep {
                    map.insert((*field).to_owned(), value);
                }
            }
            if unknown {
                map.insert("admin".into(), json!(true));
            }
            Value::Object(map)
        })
}

fn profile_value() -> impl Strategy<Value = Value> {
    let tool = prop_oneof![
        4 => "[a-z]{1,6}_[a-z]{1,6}".prop_map(Value::from),
        1 => "[a-z]{1,6}/\\*".prop_map(Value::from),
        1 => hostile_text(),
    ];
    (
        hostile_text(),
        prop_oneof![
            4 => proptest::collection::vec(tool, 0..4).prop_map(Value::from),
            1 => hostile_text(),
        ],
        proptest::collection::btree_map(
            "[a-z]{1,6}_[a-z]{1,6}",
            (
                proptest::option::of("[A-Za-z0-9_-]{1,10}|bad name"),
                proptest::option::of("\\PC{0,12}"),
            ),
            0..3,
        ),
        any::<bool>(),
    )
        .prop_map(|(name, tools, overrides, unprefixed)| {
            let overrides: serde_json::Map<String, Value> = overrides
                .into_iter()
                .map(|(k, (n, d))| {
                    let mut o = serde_json::Map::new();
                    if let Some(n) = n {
                        o.insert("name".into(), n.into());
                    }
                    if let Some(d) = d {
                        o.insert("description".into(), d.into());
                    }
                    (k, Value::Object(o))
                })
                .collect();
            json!({"name": name, "tools": tools, "overrides": overrides, "unprefixed": unprefixed})
        })
}

#[derive(Debug, Clone)]
enum Body {
    Json(usize, Value),
    Raw(usize, Vec<u8>),
}

const KINDS: usize = 8;

fn any_body() -> impl Strategy<Value = Body> {
    let json = prop_oneof![
        object(&["name", "role", "expires_in"]).prop_map(|v| Body::Json(0, v)),
        object(&["sha256"]).prop_map(|v| Body::Json(1, v)),
        object(&["name", "expires_in"]).prop_map(|v| Body::Json(2, v)),
        object(&["ref"]).prop_map(|v| Body::Json(3, v)),
        object(&["value"]).prop_map(|v| Body::Json(4, v)),
        object(&["role"]).prop_map(|v| Body::Json(5, v)),
        object(&["user"]).prop_map(|v| Body::Json(6, v)),
        profile_value().prop_map(|v| Body::Json(7, v)),
    ];
    prop_oneof![
        4 => json,
        1 => (0..KINDS, proptest::collection::vec(any::<u8>(), 0..64)).prop_map(|(k, b)| Body::Raw(k, b)),
    ]
}

fn refused_cleanly<T: DeserializeOwned>(bytes: &[u8]) -> Result<(), TestCaseError> {
    if let Err(e) = extract::<T>(bytes) {
        prop_assert_eq!(e.status, StatusCode::BAD_REQUEST);
        prop_assert!(
            e.message.len() < 1024,
            "{} bytes of message",
            e.message.len()
        );
    }
    Ok(())
}

#[test]
fn fuzz_api_bodies() {
    fuzz("api/bodies", file!(), 3000, any_body(), |b| {
        let (kind, bytes) = match b {
            Body::Json(k, v) => (k, serde_json::to_vec(&v).unwrap()),
            Body::Raw(k, bytes) => (k, bytes),
        };
        match kind {
            0 => refused_cleanly::<NewToken>(&bytes),
            1 => refused_cleanly::<Approval>(&bytes),
            2 => refused_cleanly::<TokenBody>(&bytes),
            3 => refused_cleanly::<InstallRequest>(&bytes),
            4 => refused_cleanly::<CredentialValue>(&bytes),
            5 => refused_cleanly::<RoleChange>(&bytes),
            6 => refused_cleanly::<ImpersonationStart>(&bytes),
            _ => refused_cleanly::<ProfileBody>(&bytes),
        }
    });
}

#[test]
fn fuzz_api_profile_body() {
    fuzz(
        "api/profile_body",
        file!(),
        2000,
        profile_value(),
        |value| {
            let bytes = serde_json::to_vec(&value).unwrap();
            let Ok(profile) = extract::<ProfileBody>(&bytes) else {
                return Ok(());
            };
            let Ok((name, stored)) = profile.validated() else {
                return Ok(());
            };
            prop_assert_eq!(name.trim(), name.as_str());
            prop_assert!((1..=64).contains(&name.chars().count()));
            prop_assert!(!name.chars().any(char::is_control));
            let read_back: ProfileFilter = serde_json::from_value(stored.clone())
                .map_err(|e| TestCaseError::fail(format!("stored filter unreadable: {e}")))?;
            prop_assert!(read_back.validate().is_ok());
            prop_assert_eq!(serde_json::to_value(&read_back).unwrap(), stored);
            let sent: Vec<Value> = value["tools"].as_array().cloned().unwrap_or_default();
            prop_assert_eq!(read_back.tools.len(), sent.len());
            Ok(())
        },
    );
}

#[test]
fn fuzz_api_names_roles_lifetimes() {
    let strategy = (
        prop_oneof!["\\PC{0,70}", Just(" \t name \n".to_owned()), "[a-z]{60,70}"],
        prop_oneof![
            Just("viewer".to_owned()),
            Just("admin".to_owned()),
            Just("Admin".to_owned()),
            "\\PC{0,8}"
        ],
        proptest::option::of(prop_oneof![any::<i64>(), 0i64..100_000_000]),
    );
    fuzz(
        "api/names_roles_lifetimes",
        file!(),
        4000,
        strategy,
        |(name, role, secs)| {
            match valid_name(&name, "token") {
                Ok(n) => {
                    prop_assert_eq!(n.as_str(), name.trim());
                    prop_assert!((1..=64).contains(&n.chars().count()));
                    prop_assert!(!n.chars().any(char::is_control));
                }
                Err(e) => prop_assert_eq!(e.status, StatusCode::BAD_REQUEST),
            }
            if let Ok(parsed) = parse_role(&role) {
                prop_assert_eq!(parsed.as_str(), role.as_str());
            }
            let max = 365 * 24 * 3600;
            match lifetime(secs, 30 * 24 * 3600, max) {
                Ok(d) => prop_assert!((60..=max).contains(&d.whole_seconds())),
                Err(e) => {
                    prop_assert_eq!(e.status, StatusCode::BAD_REQUEST);
                    prop_assert!(secs.is_some());
                }
            }
            Ok(())
        },
    );
}

/// Found by `fuzz_api_bodies` (its shrunk input is in `fuzz.proptest-regressions`): a JSON
/// body whose value has the wrong type was refused with serde's message, which quotes the
/// value whole, so a 1 MB string came back (and went to any log of the answer) in full.
#[test]
fn a_hostile_body_value_is_not_echoed_at_length() {
    let tools = "x".repeat(1 << 20);
    let bytes = serde_json::to_vec(&json!({"name": "p", "tools": tools})).unwrap();
    let err = extract::<ProfileBody>(&bytes).unwrap_err();
    assert_eq!(err.status, StatusCode::BAD_REQUEST);
    assert!(err.message.len() < 1024, "{} bytes", err.message.len());
    assert!(err.message.contains("invalid type"), "{}", err.message);
}
