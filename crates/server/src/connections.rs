//! `/api/me/connections` as the running gateway answers it: the runtime's upstream OAuth,
//! and the hub (a disconnected user's own connection to the server is stopped at once).

use std::sync::Arc;

use futures::future::BoxFuture;
use gig_api::connections::{Connections, UpstreamConnection};
use gig_api::operations::OpError;
use gig_gateway::Hub;
use gig_gateway::backend::BackendStatus;
use gig_runtime::{ConnectionState, OAuthError, UpstreamOAuth};

#[derive(Debug)]
pub struct GatewayConnections {
    pub oauth: Arc<UpstreamOAuth>,
    pub hub: Arc<Hub>,
}

fn op_error(e: OAuthError) -> OpError {
    match e {
        OAuthError::NotPerUser(_) => OpError::NotFound(e.to_string()),
        OAuthError::Invalid(_) => OpError::Invalid(e.to_string()),
        OAuthError::Upstream { .. } => OpError::Failed(e.to_string()),
        OAuthError::Vault(_) => {
            tracing::error!(error = %e, "upstream connection: the vault failed");
            OpError::Failed("the vault failed; see the gateway's log".into())
        }
    }
}

impl Connections for GatewayConnections {
    fn list(&self, user_id: i64) -> BoxFuture<'_, Result<Vec<UpstreamConnection>, OpError>> {
        Box::pin(async move {
            let mut list = Vec::new();
            for server in self.oauth.servers() {
                let (state, reason) =
                    match self.oauth.state(&server, user_id).await.map_err(op_error)? {
                        ConnectionState::NotConnected => ("not_connected", None),
                        ConnectionState::Connected => ("connected", None),
                        ConnectionState::Broken(why) => ("broken", Some(why)),
                    };
                list.push(UpstreamConnection {
                    server,
                    state,
                    reason,
                });
            }
            Ok(list)
        })
    }

    fn begin(&self, server: String, user_id: i64) -> BoxFuture<'_, Result<String, OpError>> {
        Box::pin(async move { self.oauth.begin(&server, user_id).await.map_err(op_error) })
    }

    fn finish(
        &self,
        user_id: i64,
        code: String,
        state: String,
        issuer: Option<String>,
    ) -> BoxFuture<'_, Result<String, OpError>> {
        Box::pin(async move {
            let server = self
                .oauth
                .finish(user_id, &code, &state, issuer.as_deref())
                .await
                .map_err(op_error)?;
            // A broken connection's instance may still be up with the old token.
            self.hub.stop_instances_of(&server, user_id).await;
            // The connection listing the server's tools waited for a first connected account:
            // try it now rather than at its next backoff.
            if self
                .hub
                .backend(&server)
                .is_some_and(|b| !matches!(b.status(), BackendStatus::Up { .. }))
            {
                self.hub.restart_backend(&server);
            }
            Ok(server)
        })
    }

    fn disconnect(&self, server: String, user_id: i64) -> BoxFuture<'_, Result<bool, OpError>> {
        Box::pin(async move {
            let removed = self
                .oauth
                .disconnect(&server, user_id)
                .await
                .map_err(op_error)?;
            self.hub.stop_instances_of(&server, user_id).await;
            Ok(removed)
        })
    }

    fn client_metadata(&self) -> Option<serde_json::Value> {
        self.oauth.client_metadata()
    }
}
