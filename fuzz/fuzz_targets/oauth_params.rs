//! OAuth parameters as the authorization server reads them (`gig_api::fuzzing::oauth`): a
//! query string or form body, and the redirect URI, scope and PKCE values in it.
//!
//! Input: the query string or form body. Properties: it is accepted exactly when its decoded
//! keys are distinct and every value is bounded (2 048 bytes; `request` 16 KiB) and free of
//! control characters, and each value then comes back as decoded; a redirect URI that
//! registration accepts has no fragment, no scheme a browser runs or reads locally, and plain
//! http only to loopback; a code goes only to a registered URI, byte for byte; scopes granted
//! are known, each once, each requested; a PKCE value is 43 to 128 unreserved characters.

#![no_main]

use std::collections::BTreeMap;

use gig_api::fuzzing::oauth;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|raw: &[u8]| {
    // The rule, written plainly over the decoded pairs.
    let mut expected: BTreeMap<String, String> = BTreeMap::new();
    let mut ok = true;
    for (k, v) in url::form_urlencoded::parse(raw) {
        let max = if k == "request" { 16 * 1024 } else { 2048 };
        if v.len() > max || v.chars().any(char::is_control) {
            ok = false;
        }
        if expected.insert(k.into_owned(), v.into_owned()).is_some() {
            ok = false;
        }
    }
    let names: Vec<&str> = expected.keys().map(String::as_str).collect();
    let result = oauth::params(raw, &names);
    assert_eq!(result.is_ok(), ok, "{:?}", String::from_utf8_lossy(raw));
    let Ok(values) = result else {
        return;
    };
    for ((k, v), got) in expected.iter().zip(&values) {
        let wanted = (!v.is_empty()).then_some(v.as_str());
        assert_eq!(got.as_deref(), wanted, "{k}");
    }

    let registered: Vec<String> = expected.values().take(3).cloned().collect();
    for value in expected.values() {
        if oauth::valid_redirect_uri(value) {
            let url = url::Url::parse(value).expect("an accepted URI parses");
            assert!(url.fragment().is_none(), "{value}");
            assert!(
                !matches!(url.scheme(), "javascript" | "data" | "file"),
                "{value}"
            );
            if url.scheme() == "http" {
                assert!(
                    matches!(url.host_str(), Some("localhost" | "127.0.0.1" | "[::1]")),
                    "{value}"
                );
            }
        }
        match oauth::chosen_redirect_uri(&registered, Some(value)) {
            Some(chosen) => assert!(chosen == *value && registered.contains(&chosen)),
            None => assert!(!registered.contains(value)),
        }
        if let Some(granted) = oauth::parse_scope(value) {
            assert!(
                granted.iter().all(|s| oauth::SCOPES.contains(s)),
                "{granted:?}"
            );
            let once: std::collections::BTreeSet<_> = granted.iter().collect();
            assert_eq!(once.len(), granted.len(), "{granted:?}");
            for s in &granted {
                assert!(value.split(' ').any(|w| w == *s), "{s} was not requested");
            }
        }
        if oauth::pkce_shaped(value) {
            assert!((43..=128).contains(&value.len()));
            assert!(
                value
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
            );
        }
    }
    assert_eq!(
        oauth::chosen_redirect_uri(&registered, None).is_some(),
        registered.len() == 1,
        "with no URI requested, only a single registered one is used"
    );
});
