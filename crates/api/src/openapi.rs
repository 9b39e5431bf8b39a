//! `GET /api/openapi.json`: OpenAPI 3.1, generated from the handlers' annotations and the
//! response types in [`crate::schema`]. Each operation also carries `x-gig-access` (what the
//! route table requires), so clients and tests see the permission beside the shape; a test
//! fails when a route is missing from the document or the document names one that does not
//! exist.

use utoipa::OpenApi;
use utoipa::openapi::extensions::ExtensionsBuilder;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};

use crate::rbac::Access;
use crate::{
    api_tokens, approvals, audit_log, connections, installs, my_credentials, oauth, profiles,
    schema, server_events, servers, signin, users,
};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Gig'MCP control plane",
        description = "The gateway's REST API. Sign in with GET /api/auth/login (a browser) or use an API token (Authorization: Bearer giga_...). Changes made with the session cookie need X-CSRF-Token (from /api/me) and an Origin of the gateway."
    ),
    paths(
        signin::login, signin::callback, signin::logout, signin::me,
        users::users, users::set_role, users::start_impersonation, users::stop_impersonation,
        api_tokens::list, api_tokens::create, api_tokens::revoke,
        servers::list, server_events::events, servers::catalog, servers::install, servers::uninstall,
        servers::credentials, servers::set_credential, servers::delete_credential,
        my_credentials::list, my_credentials::set, my_credentials::delete,
        connections::list, connections::begin, connections::disconnect, connections::callback,
        connections::client_metadata,
        installs::status, installs::events, servers::logs, servers::restart, servers::tools,
        approvals::list, approvals::approve,
        audit_log::list, audit_log::export,
        profiles::list, profiles::create, profiles::get_one, profiles::update, profiles::delete,
        profiles::create_token, profiles::list_tokens, profiles::revoke_token,
        oauth::grants::list, oauth::grants::revoke,
        document,
    ),
    components(schemas(schema::ErrorBody)),
    tags(
        (name = "session", description = "Sign-in, sign-out, who am I"),
        (name = "users", description = "Users, roles, impersonation"),
        (name = "tokens", description = "API tokens for automation"),
        (name = "profiles", description = "Profiles of tools and their tokens for /mcp"),
        (name = "oauth", description = "Clients signed in to /mcp with OAuth, by user consent"),
        (name = "servers", description = "Servers, the signed index, installs"),
        (name = "credentials", description = "Servers' credentials (values never returned)"),
        (name = "audit", description = "The audit log"),
    )
)]
struct ApiDoc;

/// The document this gateway serves.
#[utoipa::path(get, path = "/api/openapi.json", tag = "session",
    responses((status = 200, description = "This document", content_type = "application/json", body = Object)))]
pub(crate) async fn document() -> axum::Json<serde_json::Value> {
    axum::Json(openapi_json())
}

/// The OpenAPI document as JSON, with every operation's `x-gig-access`.
pub fn openapi_json() -> serde_json::Value {
    let mut doc = ApiDoc::openapi();
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "session",
        SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new(
            crate::session::SESSION_COOKIE,
        ))),
    );
    components.add_security_scheme(
        "api_token",
        SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
    );
    for (method, path, access) in crate::route_table() {
        let Some(item) = doc.paths.paths.get_mut(path) else {
            continue;
        };
        let operation = match method.as_str() {
            "GET" => item.get.as_mut(),
            "POST" => item.post.as_mut(),
            "PUT" => item.put.as_mut(),
            "DELETE" => item.delete.as_mut(),
            _ => None,
        };
        if let Some(operation) = operation {
            let access = match access {
                Access::Public => "public".to_owned(),
                Access::SignedIn => "signed-in".to_owned(),
                Access::Requires(p) => format!("{p:?}"),
            };
            let extensions = ExtensionsBuilder::new().add("x-gig-access", access).build();
            operation
                .extensions
                .get_or_insert_with(Default::default)
                .merge(extensions);
        }
    }
    serde_json::to_value(&doc).unwrap_or_default()
}
