//! The web console at `/`: one static HTML shell per page and the assets they load (CSS, our
//! own JavaScript, an icon), all embedded in the binary and served by the gateway on its own
//! origin.
//!
//! It owns the pages' markup, the assets and the security headers every response carries
//! ([`headers`]). It must never hold authority: the router has no state, the crate depends on
//! no store, vault or API crate, and nothing a page shows is rendered here — each page's script
//! asks `/api` with the browser's own session cookie and `X-CSRF-Token`, so the console can do
//! exactly what the signed-in user can do through `/api` and nothing more.

#![forbid(unsafe_code)]

pub mod assets;
pub mod headers;
pub mod pages;

use axum::Router;
use axum::routing::get;

/// The console's routes: the pages of [`pages::PAGES`] (and `/servers/{name}`) and
/// `/assets/{file}`. No fallback, so it merges with routers that have one.
pub fn router() -> Router {
    let mut router = Router::new();
    for page in pages::PAGES {
        router = router.route(page.path, get(pages::serve));
    }
    router
        .route("/servers/{name}", get(pages::serve_server))
        .route("/assets/{file}", get(assets::serve))
}

#[cfg(test)]
mod tests;
