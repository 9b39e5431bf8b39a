//! Every `/api` route, each registered with the [`Access`] it requires; the guard in front of
//! each handler resolves the caller, enforces the access and CSRF, and only then runs it.

use std::sync::Arc;

use axum::Router;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, delete, get, post, put};
use gig_store::AuditEntry;
use http::{HeaderValue, Method, StatusCode, header};

use crate::error::ApiError;
use crate::rbac::{Access, Permission, allows};
use crate::session::{caller, check_csrf};
use crate::{
    ApiState, api_tokens, approvals, audit_log, installs, openapi, profiles, servers, signin, users,
};

type Handler = MethodRouter<Arc<ApiState>>;

/// Every response to an impersonating caller carries this header (the target's user id).
pub const IMPERSONATING_HEADER: &str = "x-gig-impersonating";

/// Largest request body `/api` reads.
const MAX_API_BODY: usize = 512 * 1024;

/// The route table under construction.
pub(crate) struct Routes(Vec<(Method, &'static str, Access, Handler)>);

impl Routes {
    fn add(mut self, method: Method, path: &'static str, access: Access, handler: Handler) -> Self {
        self.0.push((method, path, access, handler));
        self
    }

    pub(crate) fn table(&self) -> Vec<(Method, &'static str, Access)> {
        self.0
            .iter()
            .map(|(m, p, a, _)| (m.clone(), *p, *a))
            .collect()
    }

    pub(crate) fn into_router(self, state: Arc<ApiState>) -> Router {
        let mut router = Router::new();
        for (_, path, access, handler) in self.0 {
            let guarded = handler.route_layer(middleware::from_fn_with_state(
                (state.clone(), access),
                guard,
            ));
            router = router.route(path, guarded);
        }
        router
            .fallback(|| async { ApiError::not_found("API route") })
            // No /api body needs more (a profile with a thousand renamed tools fits).
            .layer(axum::extract::DefaultBodyLimit::max(MAX_API_BODY))
            .with_state(state)
    }
}

/// Long on purpose: every `/api` route with its method and the permission it needs, one table
/// read whole (the RBAC contract test walks the same table).
pub(crate) fn routes() -> Routes {
    use Access::{Public, Requires, SignedIn};
    use Method as M;
    use Permission::{
        ApproveTools, Impersonate, ManageCredentials, ManageServers, ManageUsers, UseProfiles,
        ViewAudit, ViewServers, ViewUsers,
    };
    Routes(Vec::new())
        .add(M::GET, "/api/auth/login", Public, get(signin::login))
        .add(M::GET, "/api/auth/callback", Public, get(signin::callback))
        .add(M::POST, "/api/auth/logout", SignedIn, post(signin::logout))
        .add(M::GET, "/api/me", SignedIn, get(signin::me))
        .add(M::GET, "/api/openapi.json", Public, get(openapi::document))
        .add(M::GET, "/api/users", Requires(ViewUsers), get(users::users))
        .add(
            M::PUT,
            "/api/users/{id}/role",
            Requires(ManageUsers),
            put(users::set_role),
        )
        .add(
            M::POST,
            "/api/impersonation",
            Requires(Impersonate),
            post(users::start_impersonation),
        )
        .add(
            M::DELETE,
            "/api/impersonation",
            SignedIn,
            delete(users::stop_impersonation),
        )
        .add(
            M::GET,
            "/api/me/credentials/{name}",
            Requires(UseProfiles),
            get(crate::my_credentials::list),
        )
        .add(
            M::PUT,
            "/api/me/credentials/{name}/{credential}",
            Requires(UseProfiles),
            put(crate::my_credentials::set),
        )
        .add(
            M::DELETE,
            "/api/me/credentials/{name}/{credential}",
            Requires(UseProfiles),
            delete(crate::my_credentials::delete),
        )
        .add(
            M::GET,
            "/api/me/connections",
            Requires(UseProfiles),
            get(crate::connections::list),
        )
        .add(
            M::POST,
            "/api/me/connections/{name}",
            Requires(UseProfiles),
            post(crate::connections::begin),
        )
        .add(
            M::DELETE,
            "/api/me/connections/{name}",
            Requires(UseProfiles),
            delete(crate::connections::disconnect),
        )
        .add(
            M::GET,
            "/api/connections/client-metadata.json",
            Public,
            get(crate::connections::client_metadata),
        )
        .add(
            M::GET,
            "/api/connections/callback",
            Requires(UseProfiles),
            get(crate::connections::callback),
        )
        .add(M::GET, "/api/tokens", SignedIn, get(api_tokens::list))
        .add(
            M::GET,
            "/api/oauth/grants",
            SignedIn,
            get(crate::oauth::grants::list),
        )
        .add(
            M::DELETE,
            "/api/oauth/grants/{id}",
            SignedIn,
            delete(crate::oauth::grants::revoke),
        )
        .add(M::POST, "/api/tokens", SignedIn, post(api_tokens::create))
        .add(
            M::DELETE,
            "/api/tokens/{id}",
            SignedIn,
            delete(api_tokens::revoke),
        )
        .add(
            M::GET,
            "/api/servers",
            Requires(ViewServers),
            get(servers::list),
        )
        .add(
            M::GET,
            "/api/events/servers",
            Requires(ViewServers),
            get(crate::server_events::events),
        )
        .add(
            M::POST,
            "/api/servers",
            Requires(ManageServers),
            post(servers::install),
        )
        .add(
            M::DELETE,
            "/api/servers/{name}",
            Requires(ManageServers),
            delete(servers::uninstall),
        )
        .add(
            M::GET,
            "/api/catalog",
            Requires(ViewServers),
            get(servers::catalog),
        )
        .add(
            M::GET,
            "/api/servers/{name}/tools",
            Requires(ViewServers),
            get(servers::tools),
        )
        .add(
            M::GET,
            "/api/servers/{name}/logs",
            Requires(ApproveTools),
            get(servers::logs),
        )
        .add(
            M::POST,
            "/api/servers/{name}/restart",
            Requires(ManageServers),
            post(servers::restart),
        )
        .add(
            M::GET,
            "/api/approvals",
            Requires(ApproveTools),
            get(approvals::list),
        )
        .add(
            M::POST,
            "/api/approvals/{server}/{tool}",
            Requires(ApproveTools),
            post(approvals::approve),
        )
        .add(
            M::GET,
            "/api/installs/{job}",
            Requires(ManageServers),
            get(installs::status),
        )
        .add(
            M::GET,
            "/api/installs/{job}/events",
            Requires(ManageServers),
            get(installs::events),
        )
        .add(
            M::GET,
            "/api/servers/{name}/credentials",
            Requires(ViewServers),
            get(servers::credentials),
        )
        .add(
            M::PUT,
            "/api/servers/{name}/credentials/{credential}",
            Requires(ManageCredentials),
            put(servers::set_credential),
        )
        .add(
            M::DELETE,
            "/api/servers/{name}/credentials/{credential}",
            Requires(ManageCredentials),
            delete(servers::delete_credential),
        )
        .add(
            M::GET,
            "/api/audit",
            Requires(ViewAudit),
            get(audit_log::list),
        )
        .add(
            M::GET,
            "/api/audit/export",
            Requires(ViewAudit),
            get(audit_log::export),
        )
        .add(
            M::GET,
            "/api/profiles",
            Requires(UseProfiles),
            get(profiles::list),
        )
        .add(
            M::POST,
            "/api/profiles",
            Requires(UseProfiles),
            post(profiles::create),
        )
        .add(
            M::GET,
            "/api/profiles/{id}",
            Requires(UseProfiles),
            get(profiles::get_one),
        )
        .add(
            M::PUT,
            "/api/profiles/{id}",
            Requires(UseProfiles),
            put(profiles::update),
        )
        .add(
            M::DELETE,
            "/api/profiles/{id}",
            Requires(UseProfiles),
            delete(profiles::delete),
        )
        .add(
            M::POST,
            "/api/profiles/{id}/tokens",
            Requires(UseProfiles),
            post(profiles::create_token),
        )
        .add(
            M::GET,
            "/api/profiles/{id}/tokens",
            Requires(UseProfiles),
            get(profiles::list_tokens),
        )
        .add(
            M::DELETE,
            "/api/profiles/{id}/tokens/{token_id}",
            Requires(UseProfiles),
            delete(profiles::revoke_token),
        )
}

/// Resolves the caller, enforces the route's access and, for changes, CSRF; marks every
/// response to an impersonating caller.
async fn guard(
    State((state, access)): State<(Arc<ApiState>, Access)>,
    mut request: Request,
    next: Next,
) -> Response {
    if access == Access::Public {
        return next.run(request).await;
    }
    let caller = match caller(&state, request.headers()).await {
        Ok(Some(caller)) => caller,
        Ok(None) => return ApiError::unauthenticated().into_response(),
        Err(e) => return e.into_response(),
    };
    let impersonating = caller.real.as_ref().map(|_| caller.user.id);
    let request_id = gig_gateway::http::request_id(request.headers());
    let span =
        tracing::info_span!("api_request", request_id = %request_id, principal = %caller.actor());
    let mut response = if let Access::Requires(permission) = access
        && !allows(caller.role, permission)
    {
        ApiError::forbidden().into_response()
    } else if !matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    ) && let Err(e) = check_csrf(&state, &caller, request.headers())
    {
        e.into_response()
    } else {
        request.extensions_mut().insert(caller);
        let method = request.method().clone();
        let path = request.uri().path().to_owned();
        tracing::Instrument::instrument(
            async move {
                tracing::debug!(%method, %path, "api request");
                next.run(request).await
            },
            span,
        )
        .await
    };
    if let Some(target) = impersonating {
        response
            .headers_mut()
            .insert(IMPERSONATING_HEADER, HeaderValue::from(target));
    }
    response
}

/// A JSON body, or a 400 that says what is wrong with it. serde's message quotes the offending
/// value, so it is cut short like a path's or query's (a 1 MB string was echoed whole, found by
/// the `api/bodies` fuzz target).
pub(crate) fn body<T>(body: Result<axum::Json<T>, JsonRejection>) -> Result<T, ApiError> {
    body.map(|axum::Json(b)| b)
        .map_err(|e| ApiError::bad_request(crate::extract::bounded(e.body_text())))
}

/// A JSON body read from `bytes` as a handler reads it: axum's extractor, then [`body`]. For
/// the fuzz targets (`src/fuzz.rs` and the coverage-guided harness).
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn read_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    use axum::extract::FromRequest;
    let request = http::Request::builder()
        .method("POST")
        .header(header::CONTENT_TYPE, "application/json")
        .body(axum::body::Body::from(bytes.to_vec()))
        .expect("a fixed request");
    body(futures::executor::block_on(axum::Json::<T>::from_request(
        request,
        &(),
    )))
}

pub(crate) fn redirect(to: &str, cookies: &[String]) -> Response {
    let mut response = (StatusCode::FOUND, [(header::LOCATION, to)]).into_response();
    for c in cookies {
        if let Ok(value) = c.parse() {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
    }
    response
}

pub(crate) async fn audit(
    state: &ApiState,
    actor: &str,
    action: &str,
    target: &str,
    detail: serde_json::Value,
) -> Result<(), ApiError> {
    state
        .store
        .append_audit(&AuditEntry {
            actor,
            action,
            target,
            result: "ok",
            detail: &detail,
        })
        .await?;
    Ok(())
}
