//! OAuth parameters (a query string or a form body) read strictly: each at most once (RFC 6749
//! §3.1), bounded, and without control characters, so nothing odd reaches a check, a page or
//! the store.

use std::collections::BTreeMap;

/// Longest single parameter value (a metadata-document client id or redirect URI fits).
const MAX_VALUE: usize = 2048;
/// The consent form's sealed request is longer (its own opener bounds it again).
const MAX_SEALED: usize = 16 * 1024;

/// Parsed parameters.
#[derive(Debug, Default)]
pub(super) struct Params(BTreeMap<String, String>);

impl Params {
    /// Parses `application/x-www-form-urlencoded` text; an error names what is wrong.
    pub(super) fn parse(raw: &[u8]) -> Result<Self, String> {
        let mut map = BTreeMap::new();
        for (key, value) in url::form_urlencoded::parse(raw) {
            let max = if key == "request" {
                MAX_SEALED
            } else {
                MAX_VALUE
            };
            if value.len() > max || value.chars().any(char::is_control) {
                return Err(format!(
                    "{key} is over {max} bytes or holds control characters"
                ));
            }
            if map.insert(key.to_string(), value.into_owned()).is_some() {
                return Err(format!("{key} is given more than once"));
            }
        }
        Ok(Params(map))
    }

    /// The non-empty value of `name`.
    pub(super) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// The value of `name`, or an error naming it.
    pub(super) fn require(&self, name: &str) -> Result<&str, String> {
        self.get(name).ok_or_else(|| format!("{name} is required"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_oversized_or_controlled_values_are_refused() {
        let p = Params::parse(b"a=1&b=x%20y&c=").unwrap();
        assert_eq!(
            (p.get("a"), p.get("b"), p.get("c")),
            (Some("1"), Some("x y"), None)
        );
        assert!(p.require("c").unwrap_err().contains("c is required"));
        assert!(
            Params::parse(b"a=1&a=2")
                .unwrap_err()
                .contains("more than once")
        );
        assert!(Params::parse(b"a=%0d%0aSet-Cookie").is_err());
        assert!(Params::parse(format!("a={}", "x".repeat(3000)).as_bytes()).is_err());
    }
}
