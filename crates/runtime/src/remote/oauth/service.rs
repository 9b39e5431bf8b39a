//! The client-credentials grant: one token for the gateway itself, fetched at connection and
//! renewed before it expires (renewal happens when the token is read, ahead of the point where
//! rmcp would consider it stale: this grant has no refresh token to fall back on).

use std::time::{SystemTime, UNIX_EPOCH};

use oauth2::TokenResponse as _;
use rmcp::transport::auth::{
    AuthError, AuthorizationManager, ClientCredentialsConfig, CredentialStore, StoredCredentials,
};

/// Seconds before expiry at which rmcp itself would try to refresh (its 30 s buffer, or half
/// a short lifetime); renewal here starts half that buffer earlier.
const RMCP_REFRESH_BUFFER: u64 = 30;

pub(crate) struct ServiceTokens {
    /// Configured for the client-credentials exchange against the discovered token endpoint.
    pub(crate) exchanger: AuthorizationManager,
    pub(crate) config: ClientCredentialsConfig,
    pub(crate) client_id: String,
    pub(crate) current: tokio::sync::Mutex<Option<StoredCredentials>>,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// Whether a token should be replaced now.
pub(crate) fn needs_renewal(credentials: &StoredCredentials, now: u64) -> bool {
    let Some(token) = credentials.token_response.as_ref() else {
        return true;
    };
    let (Some(lifetime), Some(received)) = (token.expires_in(), credentials.token_received_at)
    else {
        return false;
    };
    let lifetime = lifetime.as_secs();
    let remaining = lifetime.saturating_sub(now.saturating_sub(received));
    let rmcp_buffer = RMCP_REFRESH_BUFFER.min(lifetime / 2).max(1);
    remaining < rmcp_buffer + rmcp_buffer.div_ceil(2)
}

#[async_trait::async_trait]
impl CredentialStore for ServiceTokens {
    async fn load(&self) -> Result<Option<StoredCredentials>, AuthError> {
        let mut current = self.current.lock().await;
        let stale = current.as_ref().is_none_or(|c| needs_renewal(c, now()));
        if stale {
            let token = self
                .exchanger
                .exchange_client_credentials(&self.config)
                .await?;
            *current = Some(StoredCredentials::new(
                self.client_id.clone(),
                Some(token),
                Vec::new(),
                Some(now()),
            ));
        }
        Ok(current.clone())
    }

    async fn save(&self, credentials: StoredCredentials) -> Result<(), AuthError> {
        *self.current.lock().await = Some(credentials);
        Ok(())
    }

    async fn clear(&self) -> Result<(), AuthError> {
        *self.current.lock().await = None;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(expires_in: Option<u64>, received: Option<u64>) -> StoredCredentials {
        let mut json = serde_json::json!({"access_token": "t", "token_type": "bearer"});
        if let Some(secs) = expires_in {
            json["expires_in"] = secs.into();
        }
        StoredCredentials::new(
            "c".into(),
            Some(serde_json::from_value(json).unwrap()),
            vec![],
            received,
        )
    }

    #[test]
    fn a_token_is_renewed_before_rmcp_would_find_it_stale() {
        // One hour: rmcp refreshes in its last 30 s; renewed here in its last 45 s.
        assert!(!needs_renewal(
            &token(Some(3600), Some(1000)),
            1000 + 3600 - 46
        ));
        assert!(needs_renewal(
            &token(Some(3600), Some(1000)),
            1000 + 3600 - 44
        ));
        // Forty seconds: rmcp's buffer is half of it (20 s); renewed with 30 s left.
        assert!(!needs_renewal(&token(Some(40), Some(1000)), 1000 + 9));
        assert!(needs_renewal(&token(Some(40), Some(1000)), 1000 + 11));
        // No token yet; a token without a lifetime is kept.
        assert!(needs_renewal(
            &StoredCredentials::new("c".into(), None, vec![], None),
            0
        ));
        assert!(!needs_renewal(&token(None, Some(1000)), 999_999));
    }
}
