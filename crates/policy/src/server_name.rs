//! The one rule for a server's name, wherever a name comes from: a servers file, a signed
//! index, the `/api`, or a stored install record.

use std::fmt;

/// Longest server name.
const MAX_SERVER_NAME: usize = 128;

/// A server's name: 1 to 128 of `[A-Za-z0-9._-]`, not starting with `.`. It becomes a path
/// segment (`/api/servers/{name}`, the dashboard's pages), part of cgroup and log names, and the
/// prefix of the server's tools on `/mcp` (`<server>_<tool>`), so it holds nothing a path, a
/// shell or a client's tool-name rule would read differently. The vault's own scopes start with
/// `@`, which no server name can.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServerName(String);

impl ServerName {
    pub fn parse(name: &str) -> Result<Self, String> {
        let ok = !name.is_empty()
            && name.len() <= MAX_SERVER_NAME
            && !name.starts_with('.')
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if ok {
            Ok(Self(name.to_owned()))
        } else {
            Err(format!(
                "{name:?} is not a server name: use 1 to {MAX_SERVER_NAME} of [A-Za-z0-9._-], not starting with '.'"
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ServerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Read as the text it is; only [`ServerName::parse`] makes one.
impl std::ops::Deref for ServerName {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

/// Maps keyed by name are looked up by text (hash and order are the text's).
impl std::borrow::Borrow<str> for ServerName {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for ServerName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl From<ServerName> for String {
    fn from(name: ServerName) -> String {
        name.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_a_servers_file_an_index_or_the_api_may_use() {
        for ok in [
            "echo",
            "GitHub",
            "my-server",
            "svc.v2",
            "a_b",
            "x",
            &"s".repeat(128),
        ] {
            assert_eq!(ServerName::parse(ok).unwrap().as_str(), ok);
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
            "tab\there",
            "é",
            &"s".repeat(129),
        ] {
            let error = ServerName::parse(bad).unwrap_err();
            assert!(error.contains("[A-Za-z0-9._-]"), "{bad:?}: {error}");
        }
    }
}
