//! The gateway's MCP *client* role towards one backend.
//!
//! Routes what a backend sends unprompted back to the right client: progress to the call it
//! belongs to, sampling/elicitation/roots requests to a calling client that declared the
//! capability (or a clear refusal), resource updates to subscribed sessions, and list changes
//! to the backend's supervisor.

// Sampling, roots and logging are deprecated by the 2026-07-28 protocol (SEP-2577) but are
// live in every initialize-era version clients and servers speak today; relaying them is
// the point of this module.
#![allow(deprecated)]

use std::sync::Weak;

use rmcp::model::{
    ClientCapabilities, ClientConfig, ClientResult, CreateMessageRequest,
    CreateMessageRequestParams, CreateMessageResult, ElicitRequest, ElicitRequestParams,
    ElicitResult, ErrorCode, ErrorData, Implementation, ListRootsRequest, ListRootsResult,
    LoggingMessageNotification, LoggingMessageNotificationParam, ProgressNotification,
    ProgressNotificationParam, ResourceUpdatedNotificationParam, ServerNotification, ServerRequest,
};
use rmcp::service::{NotificationContext, RequestContext};
use rmcp::{ClientHandler, RoleClient};
use tokio::sync::oneshot;

use crate::backend::{Backend, NOTIFY_TIMEOUT};
use crate::call_relay::{ToCaller, queue_notification};
use crate::catalog::exposed_resource_uri;
use crate::subscriptions::ResourceSubscriptions;

#[derive(Debug, Clone)]
pub struct BackendClient {
    backend: Weak<Backend>,
    subscriptions: Weak<ResourceSubscriptions>,
}

impl BackendClient {
    pub fn new(backend: Weak<Backend>, subscriptions: Weak<ResourceSubscriptions>) -> Self {
        Self {
            backend,
            subscriptions,
        }
    }

    /// Sends a backend's server-to-client request to a calling client able to answer it.
    async fn relay(
        &self,
        feature: &'static str,
        capable: fn(&ClientCapabilities) -> bool,
        request: ServerRequest,
    ) -> Result<ClientResult, ErrorData> {
        let backend = self
            .backend
            .upgrade()
            .ok_or_else(|| refuse("gateway is shutting down"))?;
        let caller = backend.caller_for(capable).ok_or_else(|| {
            refuse(&format!(
                "no client with the {feature} capability has a call in flight on this server \
                 (clients on the stateless 2026-07-28 protocol cannot receive server requests \
                 through the gateway)"
            ))
        })?;
        let (reply, answer) = oneshot::channel();
        caller
            .queue
            .send(Box::new(ToCaller::Request { request, reply }))
            .await
            .map_err(|_| refuse("the calling client's request has ended"))?;
        answer
            .await
            .map_err(|_| refuse("the calling client's request has ended"))?
    }
}

fn refuse(reason: &str) -> ErrorData {
    ErrorData::new(ErrorCode::INVALID_REQUEST, reason.to_owned(), None)
}

fn unexpected() -> ErrorData {
    ErrorData::internal_error("client answered with an unexpected result type", None)
}

impl ClientHandler for BackendClient {
    fn get_info(&self) -> ClientConfig {
        let mut capabilities = ClientCapabilities::default();
        capabilities.sampling = Some(Default::default());
        capabilities.elicitation = Some(Default::default());
        capabilities.roots = Some(Default::default());
        ClientConfig::new(
            capabilities,
            Implementation::new("gigmcp", env!("CARGO_PKG_VERSION")),
        )
    }

    async fn create_message(
        &self,
        params: CreateMessageRequestParams,
        _context: RequestContext<RoleClient>,
    ) -> Result<CreateMessageResult, ErrorData> {
        let request = ServerRequest::CreateMessageRequest(CreateMessageRequest::new(params));
        match self
            .relay("sampling", |c| c.sampling.is_some(), request)
            .await?
        {
            ClientResult::CreateMessageResult(result) => Ok(*result),
            _ => Err(unexpected()),
        }
    }

    async fn create_elicitation(
        &self,
        params: ElicitRequestParams,
        _context: RequestContext<RoleClient>,
    ) -> Result<ElicitResult, ErrorData> {
        let request = ServerRequest::ElicitRequest(ElicitRequest::new(params));
        match self
            .relay("elicitation", |c| c.elicitation.is_some(), request)
            .await?
        {
            ClientResult::ElicitResult(result) => Ok(result),
            _ => Err(unexpected()),
        }
    }

    async fn list_roots(
        &self,
        _context: RequestContext<RoleClient>,
    ) -> Result<ListRootsResult, ErrorData> {
        let request = ServerRequest::ListRootsRequest(ListRootsRequest::default());
        match self.relay("roots", |c| c.roots.is_some(), request).await? {
            ClientResult::ListRootsResult(result) => Ok(result),
            _ => Err(unexpected()),
        }
    }

    async fn on_progress(
        &self,
        params: ProgressNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        let Some(backend) = self.backend.upgrade() else {
            return;
        };
        let Some(caller) = backend.caller_by_token(&params.progress_token) else {
            return;
        };
        if let Some(token) = caller.progress_token {
            let mut forwarded = params;
            forwarded.progress_token = token;
            queue_notification(
                &backend,
                &caller.queue,
                ServerNotification::ProgressNotification(ProgressNotification::new(forwarded)),
            );
        }
    }

    async fn on_logging_message(
        &self,
        params: LoggingMessageNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        let Some(backend) = self.backend.upgrade() else {
            return;
        };
        tracing::debug!(backend = %backend.name, level = ?params.level, logger = ?params.logger, "backend log message");
        // Stdio links a log message to no request: it goes to the calling session only when
        // all calls in flight on this backend are that session's.
        if let Some(caller) = backend.oldest_caller() {
            queue_notification(
                &backend,
                &caller.queue,
                ServerNotification::LoggingMessageNotification(LoggingMessageNotification::new(
                    params,
                )),
            );
        }
    }

    async fn on_resource_updated(
        &self,
        params: ResourceUpdatedNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        let (Some(backend), Some(subscriptions)) =
            (self.backend.upgrade(), self.subscriptions.upgrade())
        else {
            return;
        };
        let Some(permit) = backend.notification_permit() else {
            return;
        };
        let mut forwarded = params.clone();
        forwarded.uri = exposed_resource_uri(&backend.name, &params.uri);
        let subscribers = subscriptions.subscribers(&backend.name, &params.uri);
        // On a task of its own, to every subscriber at once: this backend's next notification
        // does not wait for a subscriber that is slow to read, nor does any other subscriber.
        tokio::spawn(async move {
            let _permit = permit;
            futures::future::join_all(subscribers.into_iter().map(|peer| {
                let forwarded = forwarded.clone();
                async move {
                    let _ = tokio::time::timeout(
                        NOTIFY_TIMEOUT,
                        peer.notify_resource_updated(forwarded),
                    )
                    .await;
                }
            }))
            .await;
        });
    }

    async fn on_tool_list_changed(&self, _context: NotificationContext<RoleClient>) {
        self.refresh();
    }

    async fn on_prompt_list_changed(&self, _context: NotificationContext<RoleClient>) {
        self.refresh();
    }

    async fn on_resource_list_changed(&self, _context: NotificationContext<RoleClient>) {
        self.refresh();
    }
}

impl BackendClient {
    fn refresh(&self) {
        if let Some(backend) = self.backend.upgrade() {
            backend.request_refresh();
        }
    }
}
