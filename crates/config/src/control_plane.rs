//! The control plane's settings: OIDC sign-in for `/api`. Unset `GIG_OIDC_ISSUER` means the
//! control plane is off (every `/api` route says how to turn it on); set, every other required
//! variable must be valid or the gateway refuses to start.

use std::collections::BTreeMap;
use std::time::Duration;

use gig_store::Role;
use secrecy::SecretString;

use crate::{ConfigError, Env, invalid};

/// OIDC sign-in for `/api`.
#[derive(Debug, Clone)]
pub struct OidcConfig {
    /// Exactly as configured: it is compared with the `iss` the provider puts in its tokens.
    pub issuer: String,
    pub client_id: String,
    pub client_secret: SecretString,
    pub redirect_url: url::Url,
    pub scopes: Vec<String>,
    pub groups_claim: String,
    /// IdP group → role; a user in several mapped groups gets the highest of their roles.
    pub role_map: BTreeMap<String, Role>,
    pub discovery_timeout: Duration,
    /// Lifetime of an access token the gateway issues to an MCP client (OAuth on `/mcp`).
    pub oauth_access_ttl: Duration,
    /// Lifetime of a refresh token; each use replaces it with a fresh one.
    pub oauth_refresh_ttl: Duration,
}

impl OidcConfig {
    /// `None` when `GIG_OIDC_ISSUER` is unset: the control plane is off.
    pub fn from_env(env: &dyn Env, public_url: &url::Url) -> Result<Option<Self>, ConfigError> {
        let Some(issuer_raw) = env.var("GIG_OIDC_ISSUER").filter(|v| !v.is_empty()) else {
            return Ok(None);
        };
        http_url("GIG_OIDC_ISSUER", &issuer_raw)?;
        let issuer = issuer_raw;
        let required = |name: &'static str| {
            env.var(name)
                .filter(|v| !v.is_empty())
                .ok_or_else(|| invalid(name, "", "required when GIG_OIDC_ISSUER is set"))
        };
        let client_id = required("GIG_OIDC_CLIENT_ID")?;
        let client_secret = SecretString::from(required("GIG_OIDC_CLIENT_SECRET")?);
        let redirect_url = match env.var("GIG_OIDC_REDIRECT_URL").filter(|v| !v.is_empty()) {
            Some(raw) => http_url("GIG_OIDC_REDIRECT_URL", &raw)?,
            None => public_url
                .join("/api/auth/callback")
                .map_err(|e| invalid("GIG_PUBLIC_URL", public_url.as_str(), e))?,
        };
        let scopes_raw = env
            .var("GIG_OIDC_SCOPES")
            .unwrap_or_else(|| "openid email profile groups".into());
        let mut scopes: Vec<String> = scopes_raw
            .split([' ', ','])
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        if !scopes.iter().any(|s| s == "openid") {
            scopes.insert(0, "openid".into());
        }
        let groups_claim = env
            .var("GIG_OIDC_GROUPS_CLAIM")
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| "groups".into());
        let role_map = parse_role_map(&env.var("GIG_OIDC_ROLE_MAP").unwrap_or_default())?;
        let discovery_timeout = bounded_secs(env, "GIG_OIDC_DISCOVERY_TIMEOUT_SECS", 10, 1..=300)?;
        let oauth_access_ttl =
            bounded_secs(env, "GIG_OAUTH_ACCESS_TOKEN_TTL_SECS", 3600, 1..=86_400)?;
        let oauth_refresh_ttl = bounded_secs(
            env,
            "GIG_OAUTH_REFRESH_TOKEN_TTL_SECS",
            30 * 86_400,
            60..=365 * 86_400,
        )?;
        Ok(Some(OidcConfig {
            issuer,
            client_id,
            client_secret,
            redirect_url,
            scopes,
            groups_claim,
            role_map,
            discovery_timeout,
            oauth_access_ttl,
            oauth_refresh_ttl,
        }))
    }

    /// The role for a user in `groups`: the highest mapped one, else `Member`.
    pub fn role_for(&self, groups: &[String]) -> Role {
        groups
            .iter()
            .filter_map(|g| self.role_map.get(g).copied())
            .max()
            .unwrap_or(Role::Member)
    }
}

/// Whole seconds within `range`, `default` when unset.
fn bounded_secs(
    env: &dyn Env,
    name: &'static str,
    default: u64,
    range: std::ops::RangeInclusive<u64>,
) -> Result<Duration, ConfigError> {
    let Some(raw) = env.var(name).filter(|v| !v.is_empty()) else {
        return Ok(Duration::from_secs(default));
    };
    raw.parse()
        .ok()
        .filter(|s| range.contains(s))
        .map(Duration::from_secs)
        .ok_or_else(|| {
            invalid(
                name,
                &raw,
                format!("whole seconds, {} to {}", range.start(), range.end()),
            )
        })
}

fn http_url(name: &'static str, raw: &str) -> Result<url::Url, ConfigError> {
    let url = url::Url::parse(raw).map_err(|e| invalid(name, raw, e))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(invalid(name, raw, "must be an http(s) URL with a host"));
    }
    Ok(url)
}

/// `gig-admins=admin,gig-ops=operator`: every entry `group=role`, roles checked.
fn parse_role_map(raw: &str) -> Result<BTreeMap<String, Role>, ConfigError> {
    let mut map = BTreeMap::new();
    for entry in raw.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (group, role) = entry
            .split_once('=')
            .ok_or_else(|| invalid("GIG_OIDC_ROLE_MAP", raw, "entries are group=role"))?;
        let role: Role = role
            .trim()
            .parse()
            .map_err(|e| invalid("GIG_OIDC_ROLE_MAP", raw, e))?;
        let group = group.trim();
        if group.is_empty() {
            return Err(invalid("GIG_OIDC_ROLE_MAP", raw, "empty group name"));
        }
        if map.insert(group.to_owned(), role).is_some() {
            return Err(invalid(
                "GIG_OIDC_ROLE_MAP",
                raw,
                format!("group {group:?} is mapped twice"),
            ));
        }
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn public() -> url::Url {
        url::Url::parse("https://gw.example.com").unwrap()
    }

    const BASE: &[(&str, &str)] = &[
        ("GIG_OIDC_ISSUER", "https://idp.example.com"),
        ("GIG_OIDC_CLIENT_ID", "gig"),
        ("GIG_OIDC_CLIENT_SECRET", "s3cret"),
    ];

    #[test]
    fn unset_issuer_turns_the_control_plane_off() {
        assert!(
            OidcConfig::from_env(&env(&[]), &public())
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn defaults_follow_the_public_url() {
        let c = OidcConfig::from_env(&env(BASE), &public())
            .unwrap()
            .unwrap();
        assert_eq!(
            c.redirect_url.as_str(),
            "https://gw.example.com/api/auth/callback"
        );
        assert_eq!(c.scopes, ["openid", "email", "profile", "groups"]);
        assert_eq!(c.groups_claim, "groups");
        assert_eq!(c.discovery_timeout, Duration::from_secs(10));
        assert_eq!(c.role_for(&["anything".into()]), Role::Member);
    }

    #[test]
    fn the_highest_mapped_role_wins() {
        let mut vars = BASE.to_vec();
        vars.push((
            "GIG_OIDC_ROLE_MAP",
            "gig-admins=admin, gig-ops=operator,gig-viewers=viewer",
        ));
        let c = OidcConfig::from_env(&env(&vars), &public())
            .unwrap()
            .unwrap();
        assert_eq!(c.role_for(&["gig-viewers".into()]), Role::Viewer);
        assert_eq!(
            c.role_for(&["gig-viewers".into(), "gig-admins".into()]),
            Role::Admin
        );
        assert_eq!(c.role_for(&[]), Role::Member);
    }

    #[test]
    fn bad_values_are_refused_with_the_variable_named() {
        for (name, value) in [
            ("GIG_OIDC_ROLE_MAP", "gig-admins=root"),
            ("GIG_OIDC_ROLE_MAP", "gig-admins"),
            ("GIG_OIDC_ROLE_MAP", "a=admin,a=viewer"),
            ("GIG_OIDC_DISCOVERY_TIMEOUT_SECS", "0"),
            ("GIG_OIDC_DISCOVERY_TIMEOUT_SECS", "ten"),
            ("GIG_OIDC_ISSUER", "ftp://idp"),
            ("GIG_OIDC_REDIRECT_URL", "not a url"),
            ("GIG_OIDC_CLIENT_SECRET", ""),
        ] {
            let mut vars = env(BASE);
            vars.insert(name.into(), value.into());
            let err = OidcConfig::from_env(&vars, &public()).unwrap_err();
            assert!(err.to_string().contains(name), "{name}={value}: {err}");
        }
    }
}
