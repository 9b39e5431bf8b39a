//! A remote MCP server as the gateway reaches it: its URL, transport, headers (with vault
//! references instead of secrets) and OAuth settings. The same raw form is written in a
//! servers file's `url` entry and in a signed index's `remote` entry, and both are checked by
//! [`RemoteSpec::from_raw`], so a remote server from either source is held to the same rules.

pub mod oauth;

use std::collections::BTreeMap;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::{CredentialName, ServerName};

pub use oauth::{OAuthGrant, RawOAuth, RemoteOAuth};

/// A remote MCP server the gateway connects to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteSpec {
    pub name: ServerName,
    pub url: url::Url,
    pub transport: RemoteTransport,
    /// Sent with every request. A value may name vault credentials of this server as
    /// `${credential:NAME}`, so no secret needs to sit in the file.
    pub headers: BTreeMap<String, HeaderTemplate>,
    /// Non-public addresses this server may resolve to (an internal service), beside
    /// `GIG_EGRESS_ALLOW_ADDRESSES`. Plain `http://` is allowed only to these.
    pub allow_addresses: Vec<IpNet>,
    /// OAuth toward the server: per-user accounts or the gateway's own client credentials.
    pub oauth: Option<RemoteOAuth>,
}

/// A remote entry as written: `{"type": "http", "url": "https://…", "headers": {…},
/// "allowAddresses": [...], "oauth": {…}}`. Absent keys stay absent when written back, so a
/// signed entry keeps its exact form.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawRemote {
    pub url: String,
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub transport: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_addresses: Vec<IpNet>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oauth: Option<RawOAuth>,
}

impl RemoteSpec {
    /// Checks a raw entry: http(s) with a host, no credentials in the URL; plain http only to
    /// addresses it is allowed (an internal service), never across the internet with its
    /// headers in clear; header names valid and none the gateway sets itself.
    pub fn from_raw(name: &ServerName, raw: &RawRemote) -> Result<RemoteSpec, String> {
        let transport = match raw.transport.as_deref() {
            None | Some("http" | "streamable-http" | "streamableHttp") => {
                RemoteTransport::StreamableHttp
            }
            Some("sse") => RemoteTransport::Sse,
            Some(other) => {
                return Err(format!(
                    "type {other:?} with a url: use \"http\" (Streamable HTTP) or \"sse\""
                ));
            }
        };
        let raw_url = &raw.url;
        let url = url::Url::parse(raw_url).map_err(|e| format!("url {raw_url:?}: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(format!("url {raw_url:?} must be http(s) with a host"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err("put credentials in headers (from the vault), not in the url".into());
        }
        if url.scheme() == "http" && raw.allow_addresses.is_empty() {
            return Err(
                "plain http only to an internal address named in allowAddresses; use https".into(),
            );
        }
        let mut headers = BTreeMap::new();
        for (key, value) in &raw.headers {
            check_header_name(key)?;
            let template =
                HeaderTemplate::parse(value).map_err(|e| format!("header {key}: {e}"))?;
            headers.insert(key.clone(), template);
        }
        let oauth = match raw.oauth.clone() {
            None => None,
            Some(raw) => {
                if transport != RemoteTransport::StreamableHttp {
                    return Err("oauth needs a Streamable HTTP server (type \"http\")".into());
                }
                if headers
                    .keys()
                    .any(|k| k.eq_ignore_ascii_case("authorization"))
                {
                    return Err(
                        "with oauth the gateway sets the Authorization header itself".into(),
                    );
                }
                Some(RemoteOAuth::from_raw(raw)?)
            }
        };
        Ok(RemoteSpec {
            name: name.clone(),
            url,
            transport,
            headers,
            allow_addresses: raw.allow_addresses.clone(),
            oauth,
        })
    }

    /// The vault credentials (of this server's scope) its headers and its OAuth client secret
    /// name, sorted, once each.
    pub fn credentials(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .headers
            .values()
            .flat_map(|h| h.credentials().map(str::to_owned))
            .chain(self.oauth.iter().flat_map(|o| o.client_secret.clone()))
            .collect();
        names.sort();
        names.dedup();
        names
    }
}

/// A token name (RFC 9110) that is not one of the headers the gateway writes itself.
fn check_header_name(key: &str) -> Result<(), String> {
    let valid_name = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if !valid_name {
        return Err(format!("{key:?} is not a header name"));
    }
    let lower = key.to_ascii_lowercase();
    // What HTTP or the MCP transport itself sets (rmcp refuses a custom one of these on every
    // request, so a server declaring one would never connect).
    if matches!(
        lower.as_str(),
        "host"
            | "content-length"
            | "content-type"
            | "transfer-encoding"
            | "connection"
            | "accept"
            | "last-event-id"
            | "mcp-session-id"
            | "mcp-protocol-version"
    ) {
        return Err(format!("header {key} is set by the gateway"));
    }
    Ok(())
}

/// How the gateway talks to a remote server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoteTransport {
    /// Streamable HTTP (2025-03-26 and later).
    StreamableHttp,
    /// The legacy HTTP+SSE transport (2024-11-05): a GET event stream plus POSTs.
    Sse,
}

/// A header value with `${credential:NAME}` references. Its `Debug` shows only the references:
/// a value written out in the file may itself be a secret.
#[derive(Clone, PartialEq, Eq)]
pub struct HeaderTemplate(String);

impl std::fmt::Debug for HeaderTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeaderTemplate")
            .field("credentials", &self.credentials().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// How a value names a vault credential: `${credential:NAME}`.
pub const CREDENTIAL_REF: &str = "${credential:";

impl HeaderTemplate {
    /// Checks the references (each closed, each a valid credential name) and the characters
    /// (no control characters: a header value cannot hold them).
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.chars().any(|c| c.is_control() && c != '\t') {
            return Err("a header value cannot hold control characters".into());
        }
        let template = HeaderTemplate(text.to_owned());
        let mut rest = text;
        while let Some(start) = rest.find(CREDENTIAL_REF) {
            let after = &rest[start + CREDENTIAL_REF.len()..];
            let end = after
                .find('}')
                .ok_or("an unclosed ${credential:...} reference")?;
            CredentialName::parse(&after[..end])?;
            rest = &after[end + 1..];
        }
        Ok(template)
    }

    /// The credential names referenced.
    pub fn credentials(&self) -> impl Iterator<Item = &str> {
        self.0
            .split(CREDENTIAL_REF)
            .skip(1)
            .filter_map(|part| part.split_once('}').map(|(n, _)| n))
    }

    /// The value with every reference replaced by `lookup(name)`.
    pub fn render<E>(
        &self,
        mut lookup: impl FnMut(&str) -> Result<String, E>,
    ) -> Result<String, E> {
        let mut out = String::with_capacity(self.0.len());
        let mut rest = self.0.as_str();
        while let Some(start) = rest.find(CREDENTIAL_REF) {
            out.push_str(&rest[..start]);
            let after = &rest[start + CREDENTIAL_REF.len()..];
            let Some((name, tail)) = after.split_once('}') else {
                break;
            };
            out.push_str(&lookup(name)?);
            rest = tail;
        }
        out.push_str(rest);
        Ok(out)
    }

    /// Whether the value is written out in the file (no reference): it is then a secret of
    /// the file's, scrubbed like a declared environment value.
    pub fn literal(&self) -> &str {
        &self.0
    }
}
