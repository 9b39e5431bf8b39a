//! docs/authentication.md shows the permission table and the route table exactly as the code
//! has them. `UPDATE_DOCS=1 cargo test -p gig-api --test docs` rewrites both sections.

// UPDATE_DOCS is this test's own switch.
#![allow(clippy::disallowed_methods)]

use std::path::PathBuf;

use gig_api::rbac::{Access, rules};

fn permission_table() -> String {
    let mut out = String::from("| Permission | Least role | Why |\n|---|---|---|\n");
    for (permission, least, reason) in rules() {
        out.push_str(&format!(
            "| `{permission:?}` | {} | {reason} |\n",
            least.as_str()
        ));
    }
    out
}

fn route_table() -> String {
    let mut out = String::from("| Method | Path | Access |\n|---|---|---|\n");
    for (method, path, access) in gig_api::route_table() {
        let access = match access {
            Access::Public => "public".to_owned(),
            Access::SignedIn => "signed in".to_owned(),
            Access::Requires(p) => format!("`{p:?}`"),
        };
        out.push_str(&format!("| {method} | `{path}` | {access} |\n"));
    }
    out
}

fn replace_section(doc: &str, name: &str, body: &str) -> String {
    let start = format!("<!-- {name}:start -->\n");
    let end = format!("<!-- {name}:end -->");
    let (head, rest) = doc.split_once(&start).expect("start marker");
    let (_, tail) = rest.split_once(&end).expect("end marker");
    format!("{head}{start}{body}{end}{tail}")
}

#[test]
fn authentication_doc_matches_the_code() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/authentication.md");
    let doc = std::fs::read_to_string(&path).unwrap();
    let want = replace_section(&doc, "permission-table", &permission_table());
    let want = replace_section(&want, "route-table", &route_table());
    if std::env::var_os("UPDATE_DOCS").is_some() {
        std::fs::write(&path, &want).unwrap();
        return;
    }
    assert!(
        doc == want,
        "docs/authentication.md is out of date: run UPDATE_DOCS=1 cargo test -p gig-api --test docs"
    );
}

/// The OpenAPI document names every route the router serves, and nothing else, each with the
/// access the route table requires.
#[test]
fn openapi_documents_exactly_the_routes() {
    let doc = gig_api::openapi::openapi_json();
    assert_eq!(doc["openapi"].as_str().map(|v| &v[..3]), Some("3.1"));
    let mut documented = std::collections::BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().unwrap() {
            if ["get", "post", "put", "delete", "patch"].contains(&method.as_str()) {
                documented.insert((method.to_uppercase(), path.clone()));
                assert!(
                    operation["x-gig-access"].is_string(),
                    "{method} {path} has no x-gig-access"
                );
            }
        }
    }
    let routed: std::collections::BTreeSet<_> = gig_api::route_table()
        .into_iter()
        .map(|(m, p, _)| (m.to_string(), p.to_owned()))
        .collect();
    let missing: Vec<_> = routed.difference(&documented).collect();
    let extra: Vec<_> = documented.difference(&routed).collect();
    assert!(
        missing.is_empty(),
        "routes missing from the OpenAPI document: {missing:?}"
    );
    assert!(
        extra.is_empty(),
        "documented routes that do not exist: {extra:?}"
    );
}
