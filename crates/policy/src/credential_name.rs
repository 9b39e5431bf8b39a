//! The one rule for a vault credential's name, wherever a name comes from: a servers file, a
//! signed index, an imported `server.json`, or the `/api`.

use std::fmt;

/// Longest credential name.
const MAX_CREDENTIAL_NAME: usize = 128;

/// A vault credential's name: 1 to 128 of `[A-Za-z0-9._-]`, not starting with `.`. Names the
/// gateway keeps for itself (an upstream OAuth token is `oauth:token`) hold a `:`, so no name
/// a user or an index writes can be one of them.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CredentialName(String);

impl CredentialName {
    pub fn parse(name: &str) -> Result<Self, String> {
        let ok = !name.is_empty()
            && name.len() <= MAX_CREDENTIAL_NAME
            && !name.starts_with('.')
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if ok {
            Ok(Self(name.to_owned()))
        } else {
            Err(format!(
                "{name:?} is not a credential name: use 1 to {MAX_CREDENTIAL_NAME} of [A-Za-z0-9._-], not starting with '.'"
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CredentialName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for CredentialName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_a_user_or_an_index_may_write() {
        for ok in [
            "TOKEN",
            "gh-token",
            "svc.secret",
            "a_b",
            "x",
            &"k".repeat(128),
        ] {
            assert_eq!(CredentialName::parse(ok).unwrap().as_str(), ok);
        }
    }

    #[test]
    fn everything_else_is_refused_with_the_rule() {
        for bad in [
            "",
            ".hidden",
            "..",
            "../etc",
            "a/b",
            "a b",
            "oauth:token",
            "tab\there",
            "é",
            &"k".repeat(129),
        ] {
            let error = CredentialName::parse(bad).unwrap_err();
            assert!(error.contains("[A-Za-z0-9._-]"), "{bad:?}: {error}");
        }
    }
}
