//! The gateway's MCP *server* role: one aggregated server per client session.
//!
//! Every name a client sends is resolved through the current catalog's lookup table (never by
//! splitting it) to a backend and that backend's own name, then forwarded by the hub.

// Logging and resources/subscribe are deprecated by 2026-07-28 (SEP-2577) but are what
// initialize-era clients use today; the gateway serves both eras.
#![allow(deprecated)]

use std::future::Future;
use std::sync::Arc;

use rmcp::model::{
    CallToolRequest, CallToolRequestParams, CallToolResponse, ClientRequest, ErrorData,
    GetPromptRequest, GetPromptRequestParams, GetPromptResponse, Implementation, ListPromptsResult,
    ListResourceTemplatesResult, ListResourcesResult, ListToolsResult, PaginatedRequestParams,
    ReadResourceRequest, ReadResourceRequestParams, ReadResourceResponse, ResultType,
    ServerCapabilities, ServerConfig, ServerResult, SetLevelRequest, SetLevelRequestParams,
    SubscribeRequest, SubscribeRequestParams, SubscriptionFilter, UnsubscribeRequest,
    UnsubscribeRequestParams,
};
use rmcp::service::{NotificationContext, RequestContext, SubscriptionContext};
use rmcp::{RoleServer, ServerHandler};
use tokio::sync::broadcast;

use crate::audit::{CallRecord, CallRecorder};
use crate::backend::Backend;
use crate::catalog::{expose_contents_uri, resource_origin};
use crate::hub::{Hub, ListChange};
use crate::instances::Lease;
use crate::profile::Principal;
use crate::trace::{ContinueTrace, backend_span, operation_span};
use tracing::Instrument as _;

/// The handler rmcp instantiates per session (initialize era) or per request (2026-07-28).
/// Cheap to create: it is one `Arc`.
#[derive(Debug, Clone)]
pub struct Aggregator {
    hub: Arc<Hub>,
    /// Where every `tools/call` is recorded (principal, profile, tool, outcome, duration).
    recorder: Option<Arc<dyn CallRecorder>>,
    /// Continues a client's `_meta.traceparent` (when traces are exported).
    continuation: Option<Arc<dyn ContinueTrace>>,
    /// Set once this session's list-change relay runs: a client repeating
    /// `notifications/initialized` must not start another.
    relaying: Arc<std::sync::atomic::AtomicBool>,
}

impl Aggregator {
    pub fn new(
        hub: Arc<Hub>,
        recorder: Option<Arc<dyn CallRecorder>>,
        continuation: Option<Arc<dyn ContinueTrace>>,
    ) -> Self {
        Self {
            hub,
            recorder,
            continuation,
            relaying: Arc::default(),
        }
    }
}

/// The caller the HTTP layer authenticated. Missing means the request did not come through
/// the authenticating router: it sees nothing (fail closed).
fn principal(context: &RequestContext<RoleServer>) -> Result<Principal, ErrorData> {
    context
        .extensions
        .get::<http::request::Parts>()
        .and_then(|parts| parts.extensions.get::<Principal>())
        .cloned()
        .ok_or_else(|| ErrorData::invalid_request("unauthenticated request", None))
}

/// The caller's MCP session id (initialize era only; stateless requests have none).
fn session_id(context: &RequestContext<RoleServer>) -> Option<&str> {
    context
        .extensions
        .get::<http::request::Parts>()
        .and_then(|parts| parts.headers.get("mcp-session-id"))
        .and_then(|v| v.to_str().ok())
}

/// Whether the client declared URL-mode elicitation (in its initialize, or in a 2026-07-28
/// request's `_meta`).
fn takes_url_elicitation(context: &RequestContext<RoleServer>) -> bool {
    context
        .client_capabilities()
        .and_then(|c| c.elicitation)
        .is_some_and(|e| e.url.is_some())
}

fn not_in_profile(what: &str, name: &str) -> ErrorData {
    ErrorData::invalid_params(
        format!("{what} {name:?} is not in this profile"),
        Some(serde_json::json!({ "reason": "not_in_profile" })),
    )
}

impl Aggregator {
    /// A lease on `backend` for this caller (and session): the shared instance, or theirs.
    async fn lease_for(
        &self,
        backend: &str,
        caller: &Principal,
        context: &RequestContext<RoleServer>,
    ) -> Result<Lease, ErrorData> {
        self.hub
            .lease(
                backend,
                caller,
                session_id(context),
                takes_url_elicitation(context),
            )
            .await
    }

    /// `tools/call`, inside its span.
    async fn call_tool_in(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let caller = principal(&context)?;
        let catalog = self.hub.catalog();
        let routed = match &caller {
            Principal::Operator => catalog.tools.get(request.name.as_ref()).ok_or_else(|| {
                ErrorData::invalid_params(format!("unknown tool {:?}", request.name), None)
            })?,
            Principal::Profile(view) => view
                .resolve_tool(&catalog, &request.name)
                .map_err(|_| not_in_profile("tool", &request.name))?,
        };
        let lease = self
            .lease_for(&routed.origin.backend, &caller, &context)
            .await?;
        let backend = &lease.backend;
        let shown = request.name.to_string();
        let mut forwarded = request;
        forwarded.name = routed.origin.item.clone().into();
        forwarded.meta = None;
        let request = ClientRequest::CallToolRequest(CallToolRequest::new(forwarded));
        let started = std::time::Instant::now();
        let answer = backend
            .forward(request, &context, &self.hub.limits)
            .instrument(backend_span(
                "tools/call",
                &routed.origin.backend,
                &routed.origin.item,
            ))
            .await;
        if let Some(recorder) = &self.recorder {
            recorder.record(CallRecord::new(
                &caller,
                shown,
                &routed.origin,
                &answer,
                started.elapsed(),
            ));
        }
        match answer? {
            ServerResult::CallToolResult(mut result) => {
                result.result_type = Some(complete(result.result_type));
                Ok(CallToolResponse::Complete(result))
            }
            ServerResult::InputRequiredResult(result) => {
                Ok(CallToolResponse::InputRequired(result))
            }
            ServerResult::CreateTaskResult(result) => Ok(CallToolResponse::Task(result)),
            _ => Err(unexpected("tools/call")),
        }
    }

    /// Resolves a subscription's exposed URI to its backend, the backend's URI, and the
    /// session asking (subscriptions exist only in initialize-era sessions).
    fn subscription_target(
        &self,
        exposed: &str,
        context: &RequestContext<RoleServer>,
    ) -> Result<(Arc<Backend>, String, String), ErrorData> {
        if let Principal::Profile(view) = principal(context)?
            && !view.admits_resource(exposed)
        {
            return Err(not_in_profile("resource", exposed));
        }
        let unknown =
            || ErrorData::resource_not_found(format!("unknown resource {exposed:?}"), None);
        let (backend_name, uri) = resource_origin(exposed).ok_or_else(unknown)?;
        let backend = self.hub.backend(&backend_name).ok_or_else(unknown)?;
        // The listed backend of a server with instances per user or session is not the
        // caller's: a subscription there would watch (and speak as) the wrong identity.
        if self.hub.has_instances(&backend_name) {
            return Err(ErrorData::invalid_request(
                format!(
                    "{backend_name:?} runs an instance per user or session: its resources cannot be subscribed to"
                ),
                None,
            ));
        }
        let session = session_id(context)
            .ok_or_else(|| {
                ErrorData::invalid_request("resource subscriptions need an MCP session", None)
            })?
            .to_owned();
        Ok((backend, uri, session))
    }
}

/// A backend on an initialize-era protocol leaves `resultType` out; a 2026-07-28 client
/// requires it. rmcp strips it again for clients on older versions.
fn complete(result_type: Option<ResultType>) -> ResultType {
    result_type.unwrap_or(ResultType::COMPLETE)
}

fn unexpected(what: &str) -> ErrorData {
    ErrorData::internal_error(
        format!("backend answered {what} with the wrong result type"),
        None,
    )
}

/// Forwards catalog changes to one client until it goes away.
async fn relay_changes<F, Fut>(
    mut changes: broadcast::Receiver<ListChange>,
    closed: impl Future<Output = ()>,
    mut send: F,
) where
    F: FnMut(ListChange) -> Fut,
    Fut: Future<Output = bool>,
{
    let mut closed = std::pin::pin!(closed);
    loop {
        let change = tokio::select! {
            change = changes.recv() => change,
            () = &mut closed => return,
        };
        let Some(change) = ListChange::next(change) else {
            return;
        };
        if !send(change).await {
            return;
        }
    }
}

impl ServerHandler for Aggregator {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_tool_list_changed()
                .enable_prompts()
                .enable_prompts_list_changed()
                .enable_resources()
                .enable_resources_list_changed()
                .enable_resources_subscribe()
                .enable_logging()
                .build(),
        )
        .with_server_info(Implementation::new("gigmcp", env!("CARGO_PKG_VERSION")))
        .with_instructions(
            "Gig'MCP gateway: every backend server's tools appear here as <backend>_<tool>.",
        )
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let catalog = self.hub.catalog();
        let tools = match principal(&context)? {
            Principal::Operator => catalog.tools.values().map(|r| r.exposed.clone()).collect(),
            Principal::Profile(view) => view.tools(&catalog),
        };
        Ok(ListToolsResult::with_all_items(tools))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        // rmcp moves a request's `_meta` into its context.
        let traceparent = context
            .meta
            .0
            .get("traceparent")
            .or_else(|| request.meta.as_ref().and_then(|m| m.get("traceparent")))
            .and_then(|v| v.as_str())
            .map(str::to_owned);
        let span = operation_span(
            &context,
            "tools/call",
            &request.name,
            traceparent.as_deref(),
            self.continuation.as_ref(),
        );
        self.call_tool_in(request, context).instrument(span).await
    }

    async fn list_prompts(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, ErrorData> {
        let catalog = self.hub.catalog();
        let prompts = match principal(&context)? {
            Principal::Operator => catalog
                .prompts
                .values()
                .map(|r| r.exposed.clone())
                .collect(),
            Principal::Profile(view) => view.prompts(&catalog),
        };
        Ok(ListPromptsResult::with_all_items(prompts))
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, ErrorData> {
        let catalog = self.hub.catalog();
        let caller = principal(&context)?;
        if let Principal::Profile(view) = &caller
            && !view.admits_prompt(&catalog, &request.name)
        {
            return Err(not_in_profile("prompt", &request.name));
        }
        let routed = catalog.prompts.get(&request.name).ok_or_else(|| {
            ErrorData::invalid_params(format!("unknown prompt {:?}", request.name), None)
        })?;
        let lease = self
            .lease_for(&routed.origin.backend, &caller, &context)
            .await?;
        let backend = &lease.backend;
        let mut forwarded = request;
        forwarded.name = routed.origin.item.clone();
        forwarded.meta = None;
        let request = ClientRequest::GetPromptRequest(GetPromptRequest::new(forwarded));
        match backend.forward(request, &context, &self.hub.limits).await? {
            ServerResult::GetPromptResult(mut result) => {
                result.result_type = Some(complete(result.result_type));
                Ok(GetPromptResponse::Complete(result))
            }
            ServerResult::InputRequiredResult(result) => {
                Ok(GetPromptResponse::InputRequired(result))
            }
            _ => Err(unexpected("prompts/get")),
        }
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        let catalog = self.hub.catalog();
        let resources = match principal(&context)? {
            Principal::Operator => catalog.resources.clone(),
            Principal::Profile(view) => view.resources(&catalog),
        };
        Ok(ListResourcesResult::with_all_items(resources))
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        let templates = match principal(&context)? {
            Principal::Operator => self.hub.catalog().resource_templates.clone(),
            Principal::Profile(view) => self
                .hub
                .catalog()
                .resource_templates
                .iter()
                .filter(|t| view.admits_resource(&t.uri_template))
                .cloned()
                .collect(),
        };
        Ok(ListResourceTemplatesResult::with_all_items(templates))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        let caller = principal(&context)?;
        if let Principal::Profile(view) = &caller
            && !view.admits_resource(&request.uri)
        {
            return Err(not_in_profile("resource", &request.uri));
        }
        let (backend_name, uri) = resource_origin(&request.uri).ok_or_else(|| {
            ErrorData::resource_not_found(format!("unknown resource {:?}", request.uri), None)
        })?;
        if self.hub.backend(&backend_name).is_none() {
            return Err(ErrorData::resource_not_found(
                format!("unknown resource {:?}", request.uri),
                None,
            ));
        }
        let lease = self.lease_for(&backend_name, &caller, &context).await?;
        let backend = &lease.backend;
        let mut forwarded = request;
        forwarded.uri = uri;
        forwarded.meta = None;
        let request = ClientRequest::ReadResourceRequest(ReadResourceRequest::new(forwarded));
        match backend.forward(request, &context, &self.hub.limits).await? {
            ServerResult::ReadResourceResult(mut result) => {
                result.result_type = Some(complete(result.result_type));
                // Contents name the backend's URI; give the client back the one it asked for.
                for contents in &mut result.contents {
                    expose_contents_uri(contents, &backend_name);
                }
                Ok(ReadResourceResponse::Complete(result))
            }
            ServerResult::InputRequiredResult(result) => {
                Ok(ReadResourceResponse::InputRequired(result))
            }
            _ => Err(unexpected("resources/read")),
        }
    }

    /// Applies the level to every live backend that supports logging (best effort: a backend
    /// that refuses keeps its own level) and accepts it for the gateway.
    async fn set_level(
        &self,
        request: SetLevelRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        // A backend's log level is shared by every client of it: only the operator sets it.
        if let Principal::Profile(_) = principal(&context)? {
            return Ok(());
        }
        for backend in self
            .hub
            .backends()
            .into_iter()
            .filter(|b| b.supports_logging())
        {
            let mut forwarded = request.clone();
            forwarded.meta = None;
            let request = ClientRequest::SetLevelRequest(SetLevelRequest::new(forwarded));
            if let Err(error) = backend.forward(request, &context, &self.hub.limits).await {
                tracing::debug!(backend = %backend.name, %error, "backend refused logging/setLevel");
            }
        }
        Ok(())
    }

    async fn subscribe(
        &self,
        request: SubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        let (backend, uri, session) = self.subscription_target(&request.uri, &context)?;
        let forwarded = SubscribeRequestParams::new(uri.clone());
        let request = ClientRequest::SubscribeRequest(SubscribeRequest::new(forwarded));
        backend.forward(request, &context, &self.hub.limits).await?;
        self.hub
            .subscriptions()
            .subscribe(&backend.name, &uri, &session, context.peer.clone());
        Ok(())
    }

    async fn unsubscribe(
        &self,
        request: UnsubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        let (backend, uri, session) = self.subscription_target(&request.uri, &context)?;
        // The backend keeps its subscription while any other session still wants it.
        if self
            .hub
            .subscriptions()
            .unsubscribe(&backend.name, &uri, &session)
        {
            let forwarded = UnsubscribeRequestParams::new(uri);
            let request = ClientRequest::UnsubscribeRequest(UnsubscribeRequest::new(forwarded));
            backend.forward(request, &context, &self.hub.limits).await?;
        }
        Ok(())
    }

    /// Initialize era: push list changes on the session's standalone stream.
    async fn on_initialized(&self, context: NotificationContext<RoleServer>) {
        if self
            .relaying
            .swap(true, std::sync::atomic::Ordering::AcqRel)
        {
            return;
        }
        let hub = &self.hub;
        hub.session_relay.register(context.peer, || hub.subscribe());
    }

    /// 2026-07-28: list changes travel on `subscriptions/listen` streams.
    fn accepted_subscription_filter(
        &self,
        requested: &SubscriptionFilter,
    ) -> Option<SubscriptionFilter> {
        let mut accepted = requested.clone();
        // Per-resource update subscriptions are not aggregated (yet).
        accepted.resource_subscriptions = None;
        Some(accepted)
    }

    async fn listen(&self, context: SubscriptionContext) -> Result<(), ErrorData> {
        let sink = context.sink().clone();
        relay_changes(self.hub.subscribe(), context.cancelled(), move |change| {
            let sink = sink.clone();
            async move {
                let accepted = sink.accepted().clone();
                let mut ok = true;
                if change.tools && accepted.tools_list_changed == Some(true) {
                    ok &= sink.notify_tool_list_changed().await.is_ok();
                }
                if change.prompts && accepted.prompts_list_changed == Some(true) {
                    ok &= sink.notify_prompt_list_changed().await.is_ok();
                }
                if change.resources && accepted.resources_list_changed == Some(true) {
                    ok &= sink.notify_resource_list_changed().await.is_ok();
                }
                ok
            }
        })
        .await;
        Ok(())
    }
}
