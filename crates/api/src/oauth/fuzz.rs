//! Fuzz targets: OAuth parameters and redirect URIs.
//!
//! - `oauth/params`: a query string or form body never panics the reader; it accepts exactly
//!   the inputs whose decoded keys are all distinct and whose values are bounded and free of
//!   control characters, and then returns each value as decoded.
//! - `oauth/redirect_uri`: a code goes only to a URI the client registered, byte for byte
//!   (changed case, a trailing slash, an added query or fragment, percent-encoding, a userinfo
//!   trick or a longer URI with the same prefix all miss); with none requested, only to the
//!   client's single URI. A URI the registration check accepts has no fragment, no scheme a
//!   browser runs or reads locally, and plain http only to loopback.
//! - `oauth/scope_pkce`: scope lists grant only known scopes, once each; PKCE values are
//!   43 to 128 unreserved characters.

use std::collections::BTreeMap;

use gig_fuzz::fuzz;
use proptest::prelude::*;

use super::authorize::{chosen_redirect_uri, pkce_shaped};
use super::clients::valid_redirect_uri;
use super::form::Params;
use super::{SCOPES, parse_scope};

fn form_text() -> impl Strategy<Value = String> {
    let key = prop_oneof![
        Just("client_id"),
        Just("redirect_uri"),
        Just("state"),
        Just("request"),
        Just("scope"),
        Just("code%5Fchallenge"),
        Just("a+b"),
    ];
    let value = prop_oneof![
        4 => "[A-Za-z0-9._~-]{0,20}",
        1 => Just("%0d%0aSet-Cookie:%20x".to_owned()),
        1 => Just("%00".to_owned()),
        1 => Just("a+b%20c%2Bd".to_owned()),
        1 => Just("%zz%".to_owned()),
        1 => (2040usize..2060).prop_map(|n| "v".repeat(n)),
        1 => "\\PC{0,6}",
    ];
    proptest::collection::vec((key, value), 0..6).prop_map(|pairs| {
        pairs
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&")
    })
}

#[test]
fn fuzz_oauth_params() {
    let input = prop_oneof![
        form_text().prop_map(String::into_bytes),
        proptest::collection::vec(any::<u8>(), 0..100),
    ];
    fuzz("api/oauth_params", file!(), 4000, input, |raw| {
        let result = Params::parse(&raw);
        // The rule, written plainly over the decoded pairs.
        let mut expected: BTreeMap<String, String> = BTreeMap::new();
        let mut ok = true;
        for (k, v) in url::form_urlencoded::parse(&raw) {
            let max = if k == "request" { 16 * 1024 } else { 2048 };
            if v.len() > max || v.chars().any(char::is_control) {
                ok = false;
            }
            if expected.insert(k.into_owned(), v.into_owned()).is_some() {
                ok = false;
            }
        }
        prop_assert_eq!(result.is_ok(), ok, "{:?}", String::from_utf8_lossy(&raw));
        if let Ok(params) = result {
            for (k, v) in &expected {
                let wanted = (!v.is_empty()).then_some(v.as_str());
                prop_assert_eq!(params.get(k), wanted);
            }
        }
        Ok(())
    });
}

fn registered_uri() -> impl Strategy<Value = String> {
    prop_oneof![
        "https://[a-z]{1,8}\\.example/(cb|callback)(\\?x=[0-9])?",
        "http://(127\\.0\\.0\\.1|localhost|\\[::1\\]):[0-9]{4}/cb",
        "(cursor|vscode|com\\.example\\.app)://[a-z]{1,6}/cb",
    ]
}

/// A near miss of `uri`.
fn mutate(uri: &str, how: u8) -> String {
    match how {
        0 => uri.to_owned(),
        1 => uri.to_ascii_uppercase(),
        2 => format!("{uri}/"),
        3 => format!("{uri}x"),
        4 => format!("{uri}?x=1"),
        5 => format!("{uri}#frag"),
        6 => uri.replacen("://", "://evil.example@", 1),
        7 => uri.replacen('/', "%2F", 1),
        8 => uri.trim_end_matches('/').trim_end_matches("cb").to_owned(),
        9 => format!(" {uri}"),
        _ => uri.replacen("cb", "c\u{0430}", 1),
    }
}

#[test]
fn fuzz_oauth_redirect_uri() {
    let strategy = (
        proptest::collection::vec(registered_uri(), 1..4),
        any::<prop::sample::Index>(),
        0u8..11,
        any::<bool>(),
    );
    fuzz(
        "api/oauth_redirect_uri",
        file!(),
        3000,
        strategy,
        |(registered, pick, how, none)| {
            for uri in &registered {
                prop_assert!(valid_redirect_uri(uri).is_ok(), "{}", uri);
            }
            let base = &registered[pick.index(registered.len())];
            let requested = mutate(base, how);
            match chosen_redirect_uri(&registered, Some(&requested)) {
                Some(chosen) => {
                    prop_assert_eq!(&chosen, &requested);
                    prop_assert!(registered.contains(&chosen));
                }
                None => prop_assert!(!registered.contains(&requested)),
            }
            if none {
                let chosen = chosen_redirect_uri(&registered, None);
                prop_assert_eq!(chosen.is_some(), registered.len() == 1);
            }
            // What registration accepts.
            if valid_redirect_uri(&requested).is_ok() {
                let url = url::Url::parse(&requested).unwrap();
                prop_assert!(url.fragment().is_none());
                prop_assert!(!matches!(url.scheme(), "javascript" | "data" | "file"));
                if url.scheme() == "http" {
                    prop_assert!(matches!(
                        url.host_str(),
                        Some("localhost" | "127.0.0.1" | "[::1]")
                    ));
                }
            }
            Ok(())
        },
    );
}

#[test]
fn fuzz_oauth_scope_and_pkce() {
    let text = prop_oneof![
        proptest::collection::vec(
            prop_oneof![
                Just("mcp"),
                Just("offline_access"),
                Just("MCP"),
                Just("admin"),
                Just(""),
                Just("mcp\u{0}")
            ],
            0..5
        )
        .prop_map(|s| s.join(" ")),
        "[A-Za-z0-9._~+/=-]{0,140}",
        "\\PC{0,60}",
    ];
    fuzz("api/oauth_scope_pkce", file!(), 4000, text, |text| {
        if let Some(granted) = parse_scope(&text) {
            prop_assert!(granted.iter().all(|s| SCOPES.contains(s)));
            let mut dedup = granted.clone();
            dedup.dedup();
            prop_assert_eq!(dedup.len(), granted.len());
            for s in &granted {
                prop_assert!(text.split(' ').any(|w| w == *s));
            }
        }
        if pkce_shaped(&text) {
            prop_assert!((43..=128).contains(&text.len()));
            prop_assert!(
                text.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
            );
        }
        Ok(())
    });
}
