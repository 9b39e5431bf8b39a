//! Every `/api` route, each registered with the [`Access`] it requires; the guard in front of
//! each handler resolves the caller, enforces the access and CSRF, and only then runs it.

use std::sync::Arc;

use axum::extract::{Path, Query, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, delete, get, post, put};
use axum::{Extension, Json, Router};
use gig_config::Role;
use gig_store::{AuditEntry, NewSession, NewUser};
use http::{HeaderMap, Method, StatusCode, header};
use serde::Deserialize;

use crate::error::ApiError;
use crate::rbac::{Access, Permission, allows};
use crate::session::{
    Caller, LOGIN_COOKIE, SESSION_COOKIE, SESSION_TTL, caller, check_csrf, cookie, random_token,
    set_cookie, token_hash,
};
use crate::{ApiState, profiles};

type Handler = MethodRouter<Arc<ApiState>>;

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
            .with_state(state)
    }
}

pub(crate) fn routes() -> Routes {
    use Access::{Public, Requires, SignedIn};
    Routes(Vec::new())
        .add(Method::GET, "/api/auth/login", Public, get(login))
        .add(Method::GET, "/api/auth/callback", Public, get(callback))
        .add(Method::POST, "/api/auth/logout", SignedIn, post(logout))
        .add(Method::GET, "/api/me", SignedIn, get(me))
        .add(
            Method::GET,
            "/api/users",
            Requires(Permission::ViewUsers),
            get(users),
        )
        .add(
            Method::PUT,
            "/api/users/{id}/role",
            Requires(Permission::ManageUsers),
            put(set_role),
        )
        .add(
            Method::GET,
            "/api/servers",
            Requires(Permission::ViewServers),
            get(servers),
        )
        .add(
            Method::GET,
            "/api/audit",
            Requires(Permission::ViewAudit),
            get(audit_handler),
        )
        .add(
            Method::GET,
            "/api/profiles",
            Requires(Permission::UseProfiles),
            get(profiles::list),
        )
        .add(
            Method::POST,
            "/api/profiles",
            Requires(Permission::UseProfiles),
            post(profiles::create),
        )
        .add(
            Method::GET,
            "/api/profiles/{id}",
            Requires(Permission::UseProfiles),
            get(profiles::get_one),
        )
        .add(
            Method::PUT,
            "/api/profiles/{id}",
            Requires(Permission::UseProfiles),
            put(profiles::update),
        )
        .add(
            Method::DELETE,
            "/api/profiles/{id}",
            Requires(Permission::UseProfiles),
            delete(profiles::delete),
        )
        .add(
            Method::POST,
            "/api/profiles/{id}/tokens",
            Requires(Permission::UseProfiles),
            post(profiles::create_token),
        )
        .add(
            Method::GET,
            "/api/profiles/{id}/tokens",
            Requires(Permission::UseProfiles),
            get(profiles::list_tokens),
        )
        .add(
            Method::DELETE,
            "/api/profiles/{id}/tokens/{token_id}",
            Requires(Permission::UseProfiles),
            delete(profiles::revoke_token),
        )
}

/// Resolves the caller, enforces the route's access and, for changes, CSRF.
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
    if let Access::Requires(permission) = access
        && !allows(caller.role, permission)
    {
        return ApiError::forbidden().into_response();
    }
    let changes = !matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    if changes && let Err(e) = check_csrf(&state, &caller, request.headers()) {
        return e.into_response();
    }
    request.extensions_mut().insert(caller);
    next.run(request).await
}

fn redirect(to: &str, cookies: &[String]) -> Response {
    let mut response = (StatusCode::FOUND, [(header::LOCATION, to)]).into_response();
    for c in cookies {
        if let Ok(value) = c.parse() {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
    }
    response
}

async fn login(State(state): State<Arc<ApiState>>) -> Response {
    let browser = random_token();
    let url = state.oidc.begin(&browser);
    redirect(
        &url,
        &[set_cookie(&state, LOGIN_COOKIE, &browser, "/api/auth", 600)],
    )
}

#[derive(Debug, Deserialize)]
struct CallbackParams {
    code: Option<String>,
    state: Option<String>,
    iss: Option<String>,
    error: Option<String>,
}

async fn callback(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    Query(params): Query<CallbackParams>,
) -> Result<Response, ApiError> {
    let refused = |why: &str| ApiError::new(StatusCode::BAD_REQUEST, "sign_in_failed", why);
    if let Some(error) = &params.error {
        tracing::info!(%error, "the identity provider refused a sign-in");
        return Err(refused("the identity provider refused the sign-in"));
    }
    let (Some(code), Some(oauth_state)) = (&params.code, &params.state) else {
        return Err(refused("the callback needs code and state"));
    };
    let browser = cookie(&headers, LOGIN_COOKIE)
        .ok_or_else(|| refused("no sign-in in progress in this browser"))?;
    let signed_in = state
        .oidc
        .finish(browser, oauth_state, code, params.iss.as_deref())
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "sign-in refused");
            refused("the sign-in could not be verified; start again at /api/auth/login")
        })?;
    let user = state
        .store
        .upsert_user(&NewUser {
            subject: &signed_in.identity,
            email: signed_in.email.as_deref(),
            display_name: signed_in.name.as_deref(),
        })
        .await?;
    state
        .store
        .set_only_role(user.id, signed_in.role.as_str())
        .await?;
    // A session cookie the browser already had is ended: the new session replaces it.
    if let Some(old) = cookie(&headers, SESSION_COOKIE) {
        state.store.revoke_session(&token_hash(old)).await?;
    }
    let session = random_token();
    state
        .store
        .create_session(&NewSession {
            id_hash: &token_hash(&session),
            user_id: user.id,
            impersonating_user_id: None,
            expires_at: time::OffsetDateTime::now_utc() + SESSION_TTL,
        })
        .await?;
    audit(
        &state,
        &user_label(&user),
        "auth.login",
        &user_label(&user),
        serde_json::json!({"role": signed_in.role.as_str()}),
    )
    .await?;
    Ok(redirect(
        "/",
        &[
            set_cookie(
                &state,
                SESSION_COOKIE,
                &session,
                "/",
                SESSION_TTL.whole_seconds(),
            ),
            set_cookie(&state, LOGIN_COOKIE, "", "/api/auth", 0),
        ],
    ))
}

async fn logout(
    State(state): State<Arc<ApiState>>,
    Extension(caller): Extension<Caller>,
) -> Result<Response, ApiError> {
    state.store.revoke_session(&caller.session_hash).await?;
    audit(
        &state,
        &user_label(&caller.user),
        "auth.logout",
        &user_label(&caller.user),
        serde_json::json!({}),
    )
    .await?;
    let mut response = Json(serde_json::json!({
        "signed_out": true,
        "end_session_url": state.oidc.end_session_url(),
    }))
    .into_response();
    if let Ok(value) = set_cookie(&state, SESSION_COOKIE, "", "/", 0).parse() {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    Ok(response)
}

async fn me(Extension(caller): Extension<Caller>) -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "user": {
            "id": caller.user.id,
            "email": caller.user.email,
            "name": caller.user.display_name,
        },
        "role": caller.role.as_str(),
        "impersonating": null,
        "csrf_token": caller.csrf_token,
    }))
}

async fn users(State(state): State<Arc<ApiState>>) -> Result<Json<serde_json::Value>, ApiError> {
    let mut out = Vec::new();
    for user in state.store.list_users().await? {
        let role = state.store.list_roles(user.id).await?.into_iter().next();
        out.push(serde_json::json!({
            "id": user.id,
            "email": user.email,
            "name": user.display_name,
            "role": role,
        }));
    }
    Ok(Json(serde_json::json!({ "users": out })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RoleChange {
    role: String,
}

async fn set_role(
    State(state): State<Arc<ApiState>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<i64>,
    body: Result<Json<RoleChange>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Json(change) = body.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let role: Role = change.role.parse().map_err(ApiError::bad_request)?;
    let user = state
        .store
        .get_user(id)
        .await?
        .ok_or_else(|| ApiError::not_found("user"))?;
    state.store.set_only_role(user.id, role.as_str()).await?;
    audit(
        &state,
        &user_label(&caller.user),
        "user.role_changed",
        &user_label(&user),
        serde_json::json!({ "role": role.as_str() }),
    )
    .await?;
    Ok(Json(
        serde_json::json!({ "id": user.id, "role": role.as_str() }),
    ))
}

async fn servers(State(state): State<Arc<ApiState>>) -> Result<Json<serde_json::Value>, ApiError> {
    let servers: Vec<_> = state
        .store
        .list_servers()
        .await?
        .into_iter()
        .map(|s| {
            serde_json::json!({
                "name": s.name,
                "version": s.version,
                "state": s.state.as_str(),
                "image_digest": s.image_digest,
            })
        })
        .collect();
    Ok(Json(serde_json::json!({ "servers": servers })))
}

#[derive(Debug, Deserialize)]
struct AuditQuery {
    limit: Option<u32>,
}

async fn audit_list(
    State(state): State<Arc<ApiState>>,
    Query(query): Query<AuditQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let limit = query.limit.unwrap_or(100).clamp(1, 1000);
    let records = state.store.list_recent_audit(limit).await?;
    Ok(Json(serde_json::json!({ "records": records })))
}

use audit_list as audit_handler;

pub(crate) fn user_label(user: &gig_store::User) -> String {
    match &user.email {
        Some(email) => format!("user:{}:{email}", user.id),
        None => format!("user:{}", user.id),
    }
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
