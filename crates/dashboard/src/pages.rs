//! The page table and the one layout every page shares. A page is a static shell — landmarks,
//! headings, labelled forms, empty and error states — that its scripts fill from `/api`; the
//! shell holds no data, so serving it needs no authority and reveals nothing.

use std::sync::OnceLock;

use axum::extract::Path;
use axum::response::{Html, IntoResponse, Response};
use http::header::CACHE_CONTROL;
use http::{HeaderValue, StatusCode, Uri};

use crate::assets;
use crate::headers::secure;

/// One page of the console.
#[derive(Debug)]
pub struct Page {
    pub path: &'static str,
    /// `data-page` on `<body>`: which page script runs.
    pub id: &'static str,
    pub title: &'static str,
    /// The navigation entry marked current on this page.
    pub section: &'static str,
    /// The `<main>` content after the heading.
    pub body: &'static str,
    /// Assets loaded after `core.js`, in order.
    pub scripts: &'static [&'static str],
}

macro_rules! page {
    ($path:literal, $id:literal, $title:literal, $section:literal, [$($script:literal),*]) => {
        Page {
            path: $path,
            id: $id,
            title: $title,
            section: $section,
            body: include_str!(concat!("../templates/", $id, ".html")),
            scripts: &[$($script),*],
        }
    };
}

/// The pages in navigation order.
pub static PAGES: &[Page] = &[
    page!(
        "/",
        "overview",
        "Overview",
        "/",
        ["charts.js", "overview.js"]
    ),
    page!("/catalog", "catalog", "Catalog", "/catalog", ["catalog.js"]),
    page!("/servers", "servers", "Servers", "/servers", ["servers.js"]),
    page!(
        "/credentials",
        "credentials",
        "Credentials",
        "/credentials",
        ["credentials.js"]
    ),
    page!(
        "/profiles",
        "profiles",
        "Profiles and tokens",
        "/profiles",
        ["profiles.js"]
    ),
    page!("/users", "users", "Users and roles", "/users", ["users.js"]),
    page!("/audit", "audit", "Audit log", "/audit", ["audit.js"]),
];

/// `/servers/{name}`: one shell for every name (the script reads the name from the URL).
pub static SERVER: Page = page!(
    "/servers/{name}",
    "server",
    "Server",
    "/servers",
    ["charts.js", "credentials.js", "server.js"]
);

const LAYOUT: &str = include_str!("../templates/layout.html");

/// The navigation, in page order; `minimum` is only a hint to hide links a role cannot use
/// (the API decides).
const NAV: &[(&str, &str, &str)] = &[
    ("/", "Overview", "viewer"),
    ("/catalog", "Catalog", "viewer"),
    ("/servers", "Servers", "viewer"),
    ("/credentials", "Credentials", "viewer"),
    ("/profiles", "Profiles & tokens", "member"),
    ("/users", "Users", "operator"),
    ("/audit", "Audit log", "operator"),
];

/// The full HTML of `page`.
pub fn render(page: &Page) -> String {
    let nav: String = NAV
        .iter()
        .map(|(href, label, minimum)| {
            let current = if *href == page.section {
                " aria-current=\"page\""
            } else {
                ""
            };
            format!("<li data-minimum=\"{minimum}\"><a href=\"{href}\"{current}>{label}</a></li>")
        })
        .collect();
    let scripts: String = std::iter::once("core.js")
        .chain(page.scripts.iter().copied())
        .map(|s| format!("<script src=\"{}\" defer></script>\n", assets::url(s)))
        .collect();
    LAYOUT
        .replace("{{title}}", page.title)
        .replace("{{id}}", page.id)
        .replace("{{style}}", assets::url("style.css"))
        .replace("{{icon}}", assets::url("icon.svg"))
        .replace("{{scripts}}", &scripts)
        .replace("{{nav}}", &nav)
        .replace("{{body}}", page.body)
}

fn rendered() -> &'static [(&'static str, String)] {
    static ALL: OnceLock<Vec<(&'static str, String)>> = OnceLock::new();
    ALL.get_or_init(|| {
        PAGES
            .iter()
            .chain(std::iter::once(&SERVER))
            .map(|p| (p.path, render(p)))
            .collect()
    })
}

fn respond(path: &str) -> Response {
    let html = rendered()
        .iter()
        .find(|(p, _)| *p == path)
        .map(|(_, html)| html.as_str());
    let mut response = match html {
        Some(html) => Html(html).into_response(),
        None => (StatusCode::NOT_FOUND, "no such page").into_response(),
    };
    let headers = response.headers_mut();
    // The shell is public and data-free, but always revalidated so a new build's asset URLs
    // are picked up at once.
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    secure(headers);
    response
}

/// A page of [`PAGES`], by the request's path.
pub async fn serve(uri: Uri) -> Response {
    respond(uri.path())
}

/// `/servers/{name}`; names the gateway would never accept get a 404 page-less answer.
pub async fn serve_server(Path(name): Path<String>) -> Response {
    if gig_policy::ServerName::parse(&name).is_ok() {
        respond(SERVER.path)
    } else {
        let mut response = (StatusCode::NOT_FOUND, "no such server").into_response();
        secure(response.headers_mut());
        response
    }
}
