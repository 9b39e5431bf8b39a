//! Client authentication: the gateway is the only auth authority, and every request to `/mcp`
//! passes through here before it reaches anything else.
//!
//! This crate decides *whether* a credential is valid; it never logs, stores or returns a
//! credential, and it holds the static token only as a SHA-256 digest.

#![forbid(unsafe_code)]

use http::HeaderMap;
use http::header::AUTHORIZATION;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The static bearer token from `GIG_BEARER_TOKEN`.
///
/// Comparison hashes both sides first, so the time taken depends on neither the presented
/// token's content nor its length.
pub struct StaticBearer {
    digest: [u8; 32],
}

impl std::fmt::Debug for StaticBearer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StaticBearer([REDACTED])")
    }
}

/// Why a request was not authenticated. Deliberately coarse: the response must not help an
/// attacker tell a near miss from a wild guess.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// No `Authorization: Bearer ...` header at all.
    Missing,
    /// A bearer credential was presented and is wrong (or the header is malformed).
    Invalid,
}

impl Rejection {
    /// The `WWW-Authenticate` challenge (RFC 6750 §3) for a 401 response.
    pub fn challenge(self) -> &'static str {
        match self {
            Rejection::Missing => r#"Bearer realm="gigmcp""#,
            Rejection::Invalid => r#"Bearer realm="gigmcp", error="invalid_token""#,
        }
    }
}

impl StaticBearer {
    pub fn new(token: &SecretString) -> Self {
        Self {
            digest: Sha256::digest(token.expose_secret().as_bytes()).into(),
        }
    }

    /// Checks the `Authorization` header(s) of a request.
    pub fn check(&self, headers: &HeaderMap) -> Result<(), Rejection> {
        let mut values = headers.get_all(AUTHORIZATION).iter();
        let value = values.next().ok_or(Rejection::Missing)?;
        if values.next().is_some() {
            // Two Authorization headers: ambiguous, and a classic way to confuse proxies.
            return Err(Rejection::Invalid);
        }
        let value = value.as_bytes();
        // RFC 7235: the scheme is case-insensitive.
        let (scheme, token) = match value.iter().position(|&b| b == b' ') {
            Some(i) => (&value[..i], &value[i + 1..]),
            None => return Err(Rejection::Invalid),
        };
        if !scheme.eq_ignore_ascii_case(b"bearer") {
            return Err(Rejection::Missing);
        }
        // RFC 7235 allows one or more spaces after the scheme.
        let token = &token[token.iter().take_while(|&&b| b == b' ').count()..];
        let presented: [u8; 32] = Sha256::digest(token).into();
        if bool::from(presented.ct_eq(&self.digest)) {
            Ok(())
        } else {
            Err(Rejection::Invalid)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for v in values {
            map.append(AUTHORIZATION, HeaderValue::from_str(v).unwrap());
        }
        map
    }

    fn bearer() -> StaticBearer {
        StaticBearer::new(&SecretString::from("s3cret-token-0123456789"))
    }

    #[test]
    fn accepts_exact_token_case_insensitive_scheme() {
        assert_eq!(
            bearer().check(&headers(&["Bearer s3cret-token-0123456789"])),
            Ok(())
        );
        assert_eq!(
            bearer().check(&headers(&["bearer s3cret-token-0123456789"])),
            Ok(())
        );
        assert_eq!(
            bearer().check(&headers(&["Bearer   s3cret-token-0123456789"])),
            Ok(())
        );
    }

    #[test]
    fn rejects_everything_else() {
        let b = bearer();
        assert_eq!(b.check(&headers(&[])), Err(Rejection::Missing));
        assert_eq!(
            b.check(&headers(&["Basic czNjcmV0"])),
            Err(Rejection::Missing)
        );
        for bad in [
            "Bearer",
            "Bearer ",
            "Bearer s3cret-token-012345678",
            "Bearer s3cret-token-01234567890",
            "Bearer S3CRET-TOKEN-0123456789",
            "Bearers3cret-token-0123456789",
        ] {
            assert_eq!(b.check(&headers(&[bad])), Err(Rejection::Invalid), "{bad}");
        }
        assert_eq!(
            b.check(&headers(&[
                "Bearer s3cret-token-0123456789",
                "Bearer s3cret-token-0123456789"
            ])),
            Err(Rejection::Invalid)
        );
    }

    #[test]
    fn debug_never_shows_the_token() {
        assert!(!format!("{:?}", bearer()).contains("s3cret"));
    }
}
