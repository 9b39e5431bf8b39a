//! An OAuth access token on `/mcp`: live, for this gateway's `/mcp` (its audience), granted the
//! `mcp` scope, and its user still allowed the profile it was granted with. It then acts as that
//! profile does, and names the client in every audit row.

use std::sync::Arc;

use gig_gateway::http::TokenRefusal;
use gig_gateway::profile::{OAuthClientRef, Principal};
use gig_store::Store;

use super::SCOPE_MCP;

pub(crate) async fn load(
    store: &Store,
    hash: &str,
    resource: &str,
) -> Result<Principal, TokenRefusal> {
    let grant = match store.get_oauth_access(hash).await {
        Ok(Some(grant)) => grant,
        Ok(None) => return Err(TokenRefusal::Invalid),
        Err(e) => {
            tracing::warn!(error = %e, "cannot check an OAuth access token; refusing it");
            return Err(TokenRefusal::Invalid);
        }
    };
    if grant.resource != resource {
        return Err(TokenRefusal::Invalid);
    }
    if !grant.scope.split(' ').any(|s| s == SCOPE_MCP) {
        return Err(TokenRefusal::InsufficientScope);
    }
    let view = crate::mcp_tokens::profile_view(store, grant.profile_id, grant.user_id)
        .await
        .ok_or(TokenRefusal::Invalid)?;
    if let Err(e) = store.touch_oauth_grant(grant.id).await {
        tracing::warn!(error = %e, grant = grant.id, "cannot note an OAuth grant's use");
    }
    let mut view = view.through_client(OAuthClientRef {
        grant_id: grant.id,
        client_id: grant.client_id.clone(),
    });
    view.label = format!("{} client:{}", view.label, grant.client_id);
    Ok(Principal::Profile(Arc::new(view)))
}
