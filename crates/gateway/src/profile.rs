//! Who calls `/mcp`, and what a profile shows them.
//!
//! The HTTP layer turns every request into one [`Principal`] before rmcp runs. The static
//! token sees the whole catalog. A profile token sees only its profile's tools and prompts,
//! under the profile's names; a name outside the profile is refused as "not in this profile"
//! (never "unknown": the caller should learn why, not probe the catalog). Resources are shown
//! for servers the profile takes whole (`server/*`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use rmcp::model::{Prompt, Resource, Tool};
use serde::Deserialize;

use crate::catalog::{Catalog, Routed, resource_origin};
use crate::naming::{Origin, is_valid_name};

/// The caller of one `/mcp` request.
#[derive(Debug, Clone)]
pub enum Principal {
    /// The static bearer token: the operator, who sees everything.
    Operator,
    /// A user through one of their profiles.
    Profile(Arc<ProfileView>),
}

/// A profile as `/mcp` applies it. Built from the profile's stored filter (see
/// [`ProfileFilter`]); rebuilt whenever the profile changes.
#[derive(Debug, Clone)]
pub struct ProfileView {
    pub profile_id: i64,
    pub user_id: i64,
    /// Names the profile in audit records.
    pub label: String,
    /// The OAuth client acting through this profile, when the caller signed in with OAuth.
    pub client: Option<OAuthClientRef>,
    filter: ProfileFilter,
}

/// The OAuth grant behind a caller: which client, under which consent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthClientRef {
    pub grant_id: i64,
    pub client_id: String,
}

/// A profile's stored definition (the `tool_filter` column), validated by [`ProfileFilter::parse`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileFilter {
    /// Exposed gateway names (`echo_echo`), or `server/*` for every tool of a server.
    pub tools: Vec<String>,
    /// Per exposed name: a new name and/or description shown to clients.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub overrides: BTreeMap<String, ToolOverride>,
    /// Show tools under their servers' own names (no prefix). Only for a profile over one
    /// server, so it can stand in for the server itself.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unprefixed: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct ToolOverride {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// Most entries and overrides one profile may hold.
pub const MAX_PROFILE_ENTRIES: usize = 1000;
/// Longest description override accepted.
const MAX_DESCRIPTION: usize = 4096;

impl ProfileFilter {
    /// Parses and validates a stored or submitted filter.
    pub fn parse(value: &serde_json::Value) -> Result<Self, String> {
        let filter: ProfileFilter =
            serde_json::from_value(value.clone()).map_err(|e| format!("invalid profile: {e}"))?;
        filter.validate()?;
        Ok(filter)
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.tools.len() > MAX_PROFILE_ENTRIES || self.overrides.len() > MAX_PROFILE_ENTRIES {
            return Err(format!("at most {MAX_PROFILE_ENTRIES} tools per profile"));
        }
        let controlled = |text: &str| {
            text.chars()
                .any(|c| c.is_control() && c != '\n' && c != '\t')
        };
        for entry in &self.tools {
            if controlled(entry) {
                return Err(format!("{entry:?} holds control characters"));
            }
            let valid = match entry.strip_suffix("/*") {
                Some(server) => gig_config::ServerName::parse(server).is_ok(),
                // Only names the gateway can expose: anything else would never match.
                None => is_valid_name(entry),
            };
            if !valid {
                return Err(format!(
                    "{entry:?} is neither an exposed name (^[a-zA-Z0-9_-]{{1,64}}$) nor server/*"
                ));
            }
        }
        let mut shown = BTreeSet::new();
        for (exposed, o) in &self.overrides {
            if controlled(exposed) || o.description.as_deref().is_some_and(controlled) {
                return Err(format!(
                    "the override for {exposed:?} holds control characters"
                ));
            }
            if !is_valid_name(exposed) {
                return Err(format!(
                    "an override is for an exposed name (^[a-zA-Z0-9_-]{{1,64}}$), not {exposed:?}"
                ));
            }
            if let Some(name) = &o.name {
                if !is_valid_name(name) {
                    return Err(format!(
                        "new name {name:?} for {exposed:?} must match ^[a-zA-Z0-9_-]{{1,64}}$"
                    ));
                }
                if !shown.insert(name) {
                    return Err(format!("two tools renamed to {name:?}"));
                }
            }
            if o.description
                .as_ref()
                .is_some_and(|d| d.len() > MAX_DESCRIPTION)
            {
                return Err(format!(
                    "description for {exposed:?} is over {MAX_DESCRIPTION} bytes"
                ));
            }
        }
        if self.unprefixed {
            let servers: BTreeSet<&str> = self
                .tools
                .iter()
                .filter_map(|e| e.strip_suffix("/*"))
                .collect();
            if servers.len() != 1 || self.tools.len() != 1 {
                return Err(
                    "unprefixed names need a profile of exactly one server, as [\"server/*\"]"
                        .into(),
                );
            }
        }
        Ok(())
    }

    fn admits(&self, exposed: &str, origin: &Origin) -> bool {
        self.tools
            .iter()
            .any(|entry| match entry.strip_suffix("/*") {
                Some(server) => origin.backend == server,
                None => entry == exposed,
            })
    }

    fn takes_whole(&self, backend: &str) -> bool {
        self.tools
            .iter()
            .any(|e| e.strip_suffix("/*") == Some(backend))
    }
}

/// Why a profile caller cannot use a name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not in this profile")]
pub struct NotInProfile(pub String);

impl ProfileView {
    pub fn new(profile_id: i64, user_id: i64, label: String, filter: ProfileFilter) -> Self {
        ProfileView {
            profile_id,
            user_id,
            label,
            client: None,
            filter,
        }
    }

    /// The same profile used by an OAuth client under grant `client.grant_id`.
    pub fn through_client(mut self, client: OAuthClientRef) -> Self {
        self.client = Some(client);
        self
    }

    /// The name this profile shows for a catalog tool.
    fn shown_name<'a>(&'a self, exposed: &'a str, origin: &'a Origin) -> &'a str {
        if let Some(name) = self
            .filter
            .overrides
            .get(exposed)
            .and_then(|o| o.name.as_deref())
        {
            return name;
        }
        if self.filter.unprefixed {
            return &origin.item;
        }
        exposed
    }

    /// The profile's tools in catalog order, renamed; a later tool whose shown name is
    /// already taken is left out, so every shown name routes to exactly one tool.
    pub fn tools(&self, catalog: &Catalog) -> Vec<Tool> {
        self.visible(catalog)
            .map(|(shown, routed)| {
                let mut tool = routed.exposed.clone();
                tool.name = shown.to_owned().into();
                let exposed = routed.exposed.name.as_ref();
                if let Some(d) = self
                    .filter
                    .overrides
                    .get(exposed)
                    .and_then(|o| o.description.clone())
                {
                    tool.description = Some(d.into());
                }
                tool
            })
            .collect()
    }

    /// The catalog tool a shown name refers to.
    pub fn resolve_tool<'c>(
        &'c self,
        catalog: &'c Catalog,
        shown: &str,
    ) -> Result<&'c Routed<Tool>, NotInProfile> {
        self.visible(catalog)
            .find(|(name, _)| *name == shown)
            .map(|(_, routed)| routed)
            .ok_or_else(|| NotInProfile(shown.to_owned()))
    }

    fn visible<'c>(
        &'c self,
        catalog: &'c Catalog,
    ) -> impl Iterator<Item = (&'c str, &'c Routed<Tool>)> {
        let mut seen = BTreeSet::new();
        catalog
            .tools
            .iter()
            .filter(|(exposed, routed)| self.filter.admits(exposed, &routed.origin))
            .map(|(exposed, routed)| (self.shown_name(exposed, &routed.origin), routed))
            .filter(move |(shown, _)| seen.insert(*shown))
    }

    /// Prompts of the servers or names the profile admits, under their gateway names.
    pub fn prompts(&self, catalog: &Catalog) -> Vec<Prompt> {
        catalog
            .prompts
            .iter()
            .filter(|(exposed, routed)| self.filter.admits(exposed, &routed.origin))
            .map(|(_, routed)| routed.exposed.clone())
            .collect()
    }

    pub fn admits_prompt(&self, catalog: &Catalog, exposed: &str) -> bool {
        catalog
            .prompts
            .get(exposed)
            .is_some_and(|routed| self.filter.admits(exposed, &routed.origin))
    }

    /// Resources of the servers the profile takes whole.
    pub fn resources(&self, catalog: &Catalog) -> Vec<Resource> {
        catalog
            .resources
            .iter()
            .filter(|r| self.admits_resource(&r.uri))
            .cloned()
            .collect()
    }

    pub fn admits_resource(&self, exposed_uri: &str) -> bool {
        resource_origin(exposed_uri).is_some_and(|(backend, _)| self.filter.takes_whole(&backend))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::BackendLists;
    use serde_json::json;

    fn tool(name: &str) -> Tool {
        Tool::new(name.to_owned(), "d", Arc::new(serde_json::Map::new()))
    }

    fn catalog() -> Catalog {
        let lists = |names: &[&str]| BackendLists {
            tools: names.iter().map(|n| tool(n)).collect(),
            ..Default::default()
        };
        Catalog::build(&BTreeMap::from([
            ("echo".to_owned(), lists(&["echo", "shout"])),
            ("time".to_owned(), lists(&["now", "echo"])),
        ]))
    }

    fn view(filter: serde_json::Value) -> ProfileView {
        ProfileView::new(1, 1, "p".into(), ProfileFilter::parse(&filter).unwrap())
    }

    fn names(tools: Vec<Tool>) -> Vec<String> {
        tools.into_iter().map(|t| t.name.to_string()).collect()
    }

    #[test]
    fn a_profile_shows_only_its_tools_and_refuses_the_rest_by_name() {
        let c = catalog();
        let v = view(json!({"tools": ["echo_echo", "time/*"]}));
        assert_eq!(names(v.tools(&c)), ["echo_echo", "time_echo", "time_now"]);
        assert!(v.resolve_tool(&c, "time_now").is_ok());
        assert_eq!(
            v.resolve_tool(&c, "echo_shout").unwrap_err(),
            NotInProfile("echo_shout".into())
        );
    }

    #[test]
    fn renamed_tools_route_by_their_new_name_only() {
        let c = catalog();
        let v = view(json!({
            "tools": ["echo_echo"],
            "overrides": {"echo_echo": {"name": "say", "description": "Say it back"}}
        }));
        let tools = v.tools(&c);
        assert_eq!(names(tools.clone()), ["say"]);
        assert_eq!(tools[0].description.as_deref(), Some("Say it back"));
        assert_eq!(v.resolve_tool(&c, "say").unwrap().origin.item, "echo");
        assert!(v.resolve_tool(&c, "echo_echo").is_err());
    }

    #[test]
    fn an_unprefixed_profile_stands_in_for_its_server() {
        let c = catalog();
        let v = view(json!({"tools": ["time/*"], "unprefixed": true}));
        assert_eq!(names(v.tools(&c)), ["echo", "now"]);
        let routed = v.resolve_tool(&c, "echo").unwrap();
        assert_eq!(
            (routed.origin.backend.as_str(), routed.origin.item.as_str()),
            ("time", "echo")
        );
    }

    #[test]
    fn invalid_filters_are_refused() {
        for bad in [
            json!({"tools": ["a/b/*"]}),
            json!({"tools": ["../x/*"]}),
            json!({"tools": ["my server/*"]}),
            json!({"tools": ["echo.echo"]}),
            json!({"tools": ["x".repeat(65)]}),
            json!({"tools": ["x"], "overrides": {"a b": {"description": "d"}}}),
            json!({"tools": ["/*"]}),
            json!({"tools": ["*"]}),
            json!({"tools": ["echo/*", "time/*"], "unprefixed": true}),
            json!({"tools": ["x"], "overrides": {"x": {"name": "bad name"}}}),
            json!({"tools": ["x", "y"], "overrides": {"x": {"name": "z"}, "y": {"name": "z"}}}),
            json!({"tools": ["x"], "extra": 1}),
            json!({"tools": "x"}),
            json!({"tools": ["echo\u{0}"]}),
            json!({"tools": ["x"], "overrides": {"x": {"description": "a\u{0}b"}}}),
        ] {
            assert!(ProfileFilter::parse(&bad).is_err(), "{bad}");
        }
    }
}
