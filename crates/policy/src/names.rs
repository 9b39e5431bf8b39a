//! The one rule for the names a user or an index writes for a server or a credential,
//! wherever a name comes from: a servers file, a signed index, an imported `server.json`, the
//! `/api`, or a stored record.

use std::fmt;

/// Longest name of either kind.
const MAX_NAME: usize = 128;

/// 1 to 128 of `[A-Za-z0-9._-]`, not starting with `.`: nothing a path, a shell, a log reader
/// or a client's tool-name rule would read differently.
fn is_plain_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// A name type whose only constructor checks [`is_plain_name`].
macro_rules! plain_name {
    ($(#[$doc:meta])* $type:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $type(String);

        /// As the text, quoted: messages that show a name with `{:?}` read the same as
        /// they did when names were strings.
        impl fmt::Debug for $type {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&self.0, f)
            }
        }

        impl $type {
            pub fn parse(name: &str) -> Result<Self, String> {
                if is_plain_name(name) {
                    Ok(Self(name.to_owned()))
                } else {
                    Err(format!(
                        "{name:?} is not a {}: use 1 to {MAX_NAME} of [A-Za-z0-9._-], not starting with '.'",
                        $what
                    ))
                }
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $type {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        /// Read as the text it is; only `parse` makes one.
        impl std::ops::Deref for $type {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        /// Maps keyed by name are looked up by text (hash and order are the text's).
        impl std::borrow::Borrow<str> for $type {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $type {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl From<$type> for String {
            fn from(name: $type) -> String {
                name.0
            }
        }
    };
}

plain_name!(
    /// A server's name. It becomes a path segment (`/api/servers/{name}`, the dashboard's
    /// pages), part of cgroup and log names, and the prefix of the server's tools on `/mcp`
    /// (`<server>_<tool>`). The vault's own scopes start with `@`, which no server name can.
    ServerName,
    "server name"
);

plain_name!(
    /// A vault credential's name. Names the gateway keeps for itself (an upstream OAuth token
    /// is `oauth:token`) hold a `:`, so no name a user or an index writes can be one of them.
    CredentialName,
    "credential name"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_a_user_or_an_index_may_write() {
        for ok in [
            "echo",
            "GitHub",
            "gh-token",
            "svc.v2",
            "a_b",
            "x",
            &"k".repeat(128),
        ] {
            assert_eq!(ServerName::parse(ok).unwrap().as_str(), ok);
            assert_eq!(CredentialName::parse(ok).unwrap().as_str(), ok);
            assert_eq!(
                format!("{:?}", ServerName::parse(ok).unwrap()),
                format!("{ok:?}")
            );
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
            "my server",
            "@registry",
            "oauth:token",
            "tab\there",
            "é",
            &"k".repeat(129),
        ] {
            let error = ServerName::parse(bad).unwrap_err();
            assert!(
                error.contains("not a server name: use 1 to 128 of [A-Za-z0-9._-]"),
                "{bad:?}: {error}"
            );
            let error = CredentialName::parse(bad).unwrap_err();
            assert!(error.contains("not a credential name"), "{bad:?}: {error}");
        }
    }
}
