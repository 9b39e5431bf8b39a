//! The aggregated view clients see: every live backend's tools, prompts and resources under
//! gateway names, plus the table that routes each name back to its backend.
//!
//! A catalog is immutable; the hub builds a new one whenever a backend's lists change or a
//! backend comes up or goes down, and swaps it in atomically.

use std::collections::{BTreeMap, BTreeSet};

use percent_encoding::{AsciiSet, CONTROLS, percent_decode_str, utf8_percent_encode};
use rmcp::model::{Prompt, Resource, ResourceContents, ResourceTemplate, Tool};

use crate::naming::{Origin, assign_names_among};

/// What one live backend offers, as it reported it.
#[derive(Debug, Clone, Default)]
pub struct BackendLists {
    pub tools: Vec<Tool>,
    pub prompts: Vec<Prompt>,
    pub resources: Vec<Resource>,
    pub resource_templates: Vec<ResourceTemplate>,
    /// Size of the lists above as JSON (0 when not measured), for the cap on what all
    /// backends together may put in one list response.
    pub json_bytes: usize,
}

impl BackendLists {
    /// Measures [`BackendLists::json_bytes`].
    pub fn measure(&mut self) {
        fn size<T: serde::Serialize>(items: &[T]) -> usize {
            serde_json::to_vec(items).map_or(usize::MAX, |bytes| bytes.len())
        }
        self.json_bytes = size(&self.tools)
            .saturating_add(size(&self.prompts))
            .saturating_add(size(&self.resources))
            .saturating_add(size(&self.resource_templates));
    }
}

/// An aggregated item and where it leads.
#[derive(Debug, Clone)]
pub struct Routed<T> {
    pub origin: Origin,
    /// The item with its exposed name/URI.
    pub exposed: T,
}

#[derive(Debug, Default)]
pub struct Catalog {
    pub tools: BTreeMap<String, Routed<Tool>>,
    pub prompts: BTreeMap<String, Routed<Prompt>>,
    pub resources: Vec<Resource>,
    pub resource_templates: Vec<ResourceTemplate>,
}

/// Scheme of the gateway's resource URIs: `gig://<backend>/<original URI, verbatim>`.
const RESOURCE_SCHEME: &str = "gig://";

/// Characters escaped in the backend part of a resource URI: everything that could end or
/// confuse the authority component.
const AUTHORITY: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'/')
    .add(b'?')
    .add(b'#')
    .add(b'@')
    .add(b':')
    .add(b'%')
    .add(b'[')
    .add(b']')
    .add(b'"')
    .add(b'<')
    .add(b'>')
    .add(b'\\')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}');

/// The URI a client sees for a backend's resource. Reversible by [`resource_origin`].
pub fn exposed_resource_uri(backend: &str, uri: &str) -> String {
    format!(
        "{RESOURCE_SCHEME}{}/{uri}",
        utf8_percent_encode(backend, AUTHORITY)
    )
}

/// Splits an exposed resource URI back into `(backend, original URI)`.
pub fn resource_origin(exposed: &str) -> Option<(String, String)> {
    let rest = exposed.strip_prefix(RESOURCE_SCHEME)?;
    let (backend, uri) = rest.split_once('/')?;
    let backend = percent_decode_str(backend).decode_utf8().ok()?.into_owned();
    Some((backend, uri.to_owned()))
}

/// Rewrites the URI inside read contents so every URI a client sees is a gateway URI.
pub fn expose_contents_uri(contents: &mut ResourceContents, backend: &str) {
    match contents {
        ResourceContents::TextResourceContents { uri, .. }
        | ResourceContents::BlobResourceContents { uri, .. } => {
            *uri = exposed_resource_uri(backend, uri);
        }
        // A future kind of contents keeps whatever it carries.
        _ => {}
    }
}

impl Catalog {
    /// Builds the catalog from every live backend's lists, taking those to be all backends.
    pub fn build(backends: &BTreeMap<String, BackendLists>) -> Self {
        Self::build_among(backends, &backends.keys().cloned().collect())
    }

    /// Builds the catalog from every live backend's lists; `configured` names every backend,
    /// up or not, since names depend on them (see [`crate::naming`]).
    pub fn build_among(
        backends: &BTreeMap<String, BackendLists>,
        configured: &BTreeSet<String>,
    ) -> Self {
        let mut catalog = Catalog {
            tools: aggregate(
                backends,
                configured,
                |lists| &lists.tools,
                |tool| tool.name.to_string(),
                |tool, name| tool.name = name.into(),
            ),
            prompts: aggregate(
                backends,
                configured,
                |lists| &lists.prompts,
                |prompt| prompt.name.clone(),
                |prompt, name| prompt.name = name,
            ),
            ..Catalog::default()
        };
        for (backend, lists) in backends {
            catalog
                .resources
                .extend(lists.resources.iter().map(|resource| {
                    let mut resource = resource.clone();
                    resource.uri = exposed_resource_uri(backend, &resource.uri);
                    resource
                }));
            catalog
                .resource_templates
                .extend(lists.resource_templates.iter().map(|template| {
                    let mut template = template.clone();
                    template.uri_template = exposed_resource_uri(backend, &template.uri_template);
                    template
                }));
        }
        catalog
    }
}

/// Names one kind of item across all backends and indexes it by exposed name.
fn aggregate<T: Clone>(
    backends: &BTreeMap<String, BackendLists>,
    configured: &BTreeSet<String>,
    items: impl Fn(&BackendLists) -> &Vec<T>,
    name_of: impl Fn(&T) -> String,
    rename: impl Fn(&mut T, String),
) -> BTreeMap<String, Routed<T>> {
    // A backend listing the same name twice keeps its first definition.
    let mut by_origin: BTreeMap<Origin, &T> = BTreeMap::new();
    for (backend, lists) in backends {
        for item in items(lists) {
            let origin = Origin {
                backend: backend.clone(),
                item: name_of(item),
            };
            by_origin.entry(origin).or_insert(item);
        }
    }
    assign_names_among(by_origin.keys().cloned(), configured)
        .into_iter()
        .map(|(exposed, origin)| {
            let mut item = by_origin[&origin].clone();
            rename(&mut item, exposed.clone());
            (
                exposed,
                Routed {
                    origin,
                    exposed: item,
                },
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn tool(name: &str) -> Tool {
        Tool::new(name.to_owned(), "d", Arc::new(serde_json::Map::new()))
    }

    #[test]
    fn resource_uris_round_trip_exactly() {
        for (backend, uri) in [
            ("echo", "echo://readme"),
            ("my server/2", "file:///tmp/a b?x=1#frag"),
            ("a%b:c@d", "test://{id}/x"),
            ("ünï", ""),
        ] {
            let exposed = exposed_resource_uri(backend, uri);
            assert!(exposed.starts_with("gig://"));
            assert_eq!(
                resource_origin(&exposed),
                Some((backend.to_owned(), uri.to_owned()))
            );
        }
        assert_eq!(resource_origin("file:///etc/passwd"), None);
        assert_eq!(resource_origin("gig://no-slash"), None);
    }

    #[test]
    fn build_routes_every_tool_back_to_its_origin() {
        let mut backends = BTreeMap::new();
        backends.insert(
            "a_b".to_owned(),
            BackendLists {
                tools: vec![tool("c"), tool("x")],
                ..Default::default()
            },
        );
        backends.insert(
            "a".to_owned(),
            BackendLists {
                tools: vec![tool("b_c")],
                ..Default::default()
            },
        );
        let catalog = Catalog::build(&backends);
        assert_eq!(catalog.tools.len(), 3);
        for (name, routed) in &catalog.tools {
            assert_eq!(routed.exposed.name, name.as_str());
            let original = &backends[&routed.origin.backend].tools;
            assert!(
                original
                    .iter()
                    .any(|t| t.name == routed.origin.item.as_str())
            );
        }
        assert_eq!(catalog.tools["a_b_x"].origin.item, "x");
    }
}
