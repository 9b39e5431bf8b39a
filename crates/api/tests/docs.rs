//! docs/authentication.md shows the permission table and the route table exactly as the code
//! has them, and docs/api.md is the reference generated from the OpenAPI document.
//! `UPDATE_DOCS=1 cargo test -p gig-api --test docs` rewrites them.

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

/// Every operation of the OpenAPI document, grouped by tag: method, path, access, what it does,
/// and the request body and answers it documents.
fn api_reference() -> String {
    let doc = gig_api::openapi::openapi_json();
    let mut by_tag: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    let tags: Vec<(String, String)> = doc["tags"]
        .as_array()
        .map(|t| {
            t.iter()
                .map(|t| {
                    (
                        t["name"].as_str().unwrap_or_default().to_owned(),
                        t["description"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().unwrap() {
            if !["get", "post", "put", "delete", "patch"].contains(&method.as_str()) {
                continue;
            }
            let what = op["summary"]
                .as_str()
                .or_else(|| op["description"].as_str())
                .unwrap_or_default()
                .replace('\n', " ")
                .replace('|', "\\|");
            let body = op["requestBody"]["content"]["application/json"]["schema"]["$ref"]
                .as_str()
                .map(|r| format!("`{}`", r.rsplit('/').next().unwrap_or(r)))
                .unwrap_or_else(|| "—".into());
            let mut answers: Vec<&str> = op["responses"]
                .as_object()
                .map(|r| r.keys().map(String::as_str).collect())
                .unwrap_or_default();
            answers.sort_unstable();
            let tag = op["tags"][0].as_str().unwrap_or("other").to_owned();
            by_tag.entry(tag).or_default().push(format!(
                "| {} | `{path}` | {} | {what} | {body} | {} |\n",
                method.to_uppercase(),
                op["x-gig-access"].as_str().unwrap_or_default(),
                answers.join(", ")
            ));
        }
    }
    let mut out = String::new();
    for (tag, description) in tags {
        let Some(rows) = by_tag.remove(&tag) else {
            continue;
        };
        out.push_str(&format!("\n### {tag}\n\n{description}.\n\n"));
        out.push_str(
            "| Method | Path | Access | What | Body | Answers |\n|---|---|---|---|---|---|\n",
        );
        for row in rows {
            out.push_str(&row);
        }
    }
    out.push('\n');
    out
}

#[test]
fn api_reference_matches_the_openapi_document() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/api.md");
    let doc = std::fs::read_to_string(&path).unwrap();
    let want = replace_section(&doc, "api-reference", &api_reference());
    if std::env::var_os("UPDATE_DOCS").is_some() {
        std::fs::write(&path, &want).unwrap();
        return;
    }
    assert!(
        doc == want,
        "docs/api.md is out of date: run UPDATE_DOCS=1 cargo test -p gig-api --test docs"
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
