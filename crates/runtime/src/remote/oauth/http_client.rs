//! rmcp's OAuth state machine sends its requests (metadata discovery, registration, token,
//! refresh) through the gateway's own outbound client: the address policy decides where it
//! may connect, TLS is verified against the configured roots, and no redirect is followed.

use std::time::Duration;

use gig_outbound::Outbound;
use rmcp::transport::auth::{OAuthHttpClient, OAuthHttpClientFuture, OAuthHttpRequest};

/// Largest answer an authorization server may send (metadata, tokens).
const MAX_ANSWER_BYTES: usize = 256 << 10;
/// Longest one OAuth exchange may take.
const MAX_EXCHANGE: Duration = Duration::from_secs(15);

#[derive(Debug, Clone)]
pub(crate) struct OutboundOAuthHttp(pub(crate) Outbound);

impl OAuthHttpClient for OutboundOAuthHttp {
    fn execute(&self, request: OAuthHttpRequest) -> OAuthHttpClientFuture<'_> {
        let timeout = request.timeout.unwrap_or(MAX_EXCHANGE).min(MAX_EXCHANGE);
        Box::pin(async move {
            self.0
                .execute(request.request, MAX_ANSWER_BYTES, timeout)
                .await
                .map_err(|e| Box::new(e) as _)
        })
    }
}
