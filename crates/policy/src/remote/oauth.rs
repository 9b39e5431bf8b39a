//! A remote server's OAuth: the servers file's `"oauth"` key on a `url` entry.
//!
//! ```json
//! "oauth": {"grant": "authorization_code", "scopes": ["mcp"]}
//! "oauth": {"grant": "client_credentials", "clientId": "svc",
//!           "clientSecret": "${credential:svc-secret}", "scopes": ["mcp"],
//!           "issuer": "https://login.example.com"}
//! ```
//!
//! `authorization_code`: each user connects their own account (over `/api`) and their calls run
//! on a connection of their own carrying their token. `client_credentials`: one token for the
//! gateway itself, fetched and renewed before it expires. The authorization server is found
//! from the upstream's protected-resource metadata; `issuer` pins it (recommended with a client
//! secret: the secret goes to the token endpoint the metadata names). A client secret is only
//! ever a vault reference, never a literal in the file.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::CREDENTIAL_REF;
use crate::CredentialName;
use crate::instances::{InstanceMode, InstancePolicy};

/// Which OAuth grant the gateway uses toward a remote server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OAuthGrant {
    /// Per user: each user connects their account; their calls carry their token.
    AuthorizationCode,
    /// Server to server: one token for the gateway.
    ClientCredentials,
}

/// A remote server's OAuth settings, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteOAuth {
    pub grant: OAuthGrant,
    /// Scopes to ask for; empty lets the upstream's metadata decide.
    pub scopes: Vec<String>,
    /// A client registered in advance; without one (authorization code only) the gateway
    /// registers itself dynamically, once per server.
    pub client_id: Option<String>,
    /// The vault name (this server's scope) of the client secret.
    pub client_secret: Option<String>,
    /// The authorization server the upstream must name (its metadata's `issuer`); without it,
    /// whichever the upstream's protected-resource metadata names is used.
    pub issuer: Option<url::Url>,
}

/// Most users connected to one per-user OAuth server at once.
pub const DEFAULT_MAX_CONNECTED: usize = 256;

impl RemoteOAuth {
    /// One connection per user for the authorization-code grant; `None` (one shared
    /// connection) otherwise.
    pub fn instances(&self) -> Option<InstancePolicy> {
        (self.grant == OAuthGrant::AuthorizationCode).then_some(InstancePolicy {
            mode: InstanceMode::PerUser,
            max_instances: DEFAULT_MAX_CONNECTED,
            max_per_user: 1,
            idle: Duration::from_secs(600),
        })
    }
}

/// The `"oauth"` object as written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawOAuth {
    grant: OAuthGrant,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    scopes: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    client_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    client_secret: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    issuer: Option<String>,
}

impl RemoteOAuth {
    pub fn from_raw(raw: RawOAuth) -> Result<Self, String> {
        let token = |s: &str| {
            !s.is_empty()
                && s.len() <= 256
                && s.bytes()
                    .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
        };
        if let Some(scope) = raw.scopes.iter().find(|s| !token(s)) {
            return Err(format!("oauth: {scope:?} is not a scope"));
        }
        if let Some(id) = raw.client_id.as_deref().filter(|id| !token(id)) {
            return Err(format!("oauth: {id:?} is not a client id"));
        }
        let client_secret = match raw.client_secret.as_deref() {
            None => None,
            Some(text) => Some(secret_reference(text)?),
        };
        if client_secret.is_some() && raw.client_id.is_none() {
            return Err("oauth: a clientSecret needs the clientId it belongs to".into());
        }
        if raw.grant == OAuthGrant::ClientCredentials && client_secret.is_none() {
            return Err(
                "oauth: client_credentials needs clientId and clientSecret (\"${credential:NAME}\")"
                    .into(),
            );
        }
        let issuer = match raw.issuer.as_deref() {
            None => None,
            Some(text) => {
                let url =
                    url::Url::parse(text).map_err(|e| format!("oauth: issuer {text:?}: {e}"))?;
                if url.scheme() != "https" || url.host_str().is_none() {
                    return Err(format!("oauth: issuer {text:?} must be an https URL"));
                }
                Some(url)
            }
        };
        Ok(RemoteOAuth {
            grant: raw.grant,
            scopes: raw.scopes,
            client_id: raw.client_id,
            client_secret,
            issuer,
        })
    }
}

/// The vault name in `${credential:NAME}`; a literal secret is refused.
fn secret_reference(text: &str) -> Result<String, String> {
    let name = text
        .strip_prefix(CREDENTIAL_REF)
        .and_then(|rest| rest.strip_suffix('}'))
        .ok_or("oauth: clientSecret must be a vault reference \"${credential:NAME}\", never the secret itself")?;
    let name = CredentialName::parse(name).map_err(|why| format!("oauth: {why}"))?;
    Ok(name.as_str().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<RemoteOAuth, String> {
        RemoteOAuth::from_raw(serde_json::from_str(json).map_err(|e| e.to_string())?)
    }

    #[test]
    fn both_grants_are_read() {
        let user = parse(r#"{"grant": "authorization_code", "scopes": ["mcp", "offline_access"]}"#)
            .unwrap();
        assert_eq!(user.grant, OAuthGrant::AuthorizationCode);
        assert_eq!(user.instances().unwrap().mode, InstanceMode::PerUser);
        let service = parse(
            r#"{"grant": "client_credentials", "clientId": "svc", "clientSecret": "${credential:svc-secret}"}"#,
        )
        .unwrap();
        assert_eq!(service.client_secret.as_deref(), Some("svc-secret"));
        assert_eq!(service.instances(), None);
    }

    #[test]
    fn bad_settings_are_refused_with_a_reason() {
        for (json, why) in [
            (r#"{"grant": "implicit"}"#, "unknown variant"),
            (
                r#"{"grant": "client_credentials", "clientId": "svc"}"#,
                "needs clientId and clientSecret",
            ),
            (
                r#"{"grant": "client_credentials", "clientId": "svc", "clientSecret": "hunter2"}"#,
                "never the secret itself",
            ),
            (
                r#"{"grant": "authorization_code", "clientSecret": "${credential:s}"}"#,
                "needs the clientId",
            ),
            (
                r#"{"grant": "authorization_code", "scopes": ["a b"]}"#,
                "is not a scope",
            ),
            (
                r#"{"grant": "authorization_code", "clientId": ""}"#,
                "is not a client id",
            ),
            (
                r#"{"grant": "client_credentials", "clientId": "s", "clientSecret": "${credential:a b}"}"#,
                "is not a credential name",
            ),
            (
                r#"{"grant": "authorization_code", "tokenUrl": "x"}"#,
                "unknown field",
            ),
        ] {
            let err = parse(json).unwrap_err();
            assert!(err.contains(why), "{json}: {err}");
        }
    }
}
