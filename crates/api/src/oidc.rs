//! Sign-in with the identity provider: authorization code + PKCE (S256) + state + nonce, the ID
//! token verified (issuer, audience, signature against the provider's published keys, expiry,
//! nonce) by the `openidconnect` crate. A pending sign-in (state, PKCE verifier, nonce, expiry)
//! lives only in the login cookie of the browser that started it, sealed with XChaCha20-Poly1305
//! under a key that exists only in this process's memory: there is no server-side table for an
//! unauthenticated flood to fill or evict from, and no other browser can finish it.

use std::time::Duration;

use gig_config::OidcConfig;
use gig_outbound::error_chain;
use gig_store::Role;
use openidconnect::core::{
    CoreAuthDisplay, CoreAuthPrompt, CoreAuthenticationFlow, CoreClaimName, CoreClaimType,
    CoreClientAuthMethod, CoreErrorResponseType, CoreGenderClaim, CoreGrantType, CoreJsonWebKey,
    CoreJweContentEncryptionAlgorithm, CoreJweKeyManagementAlgorithm, CoreJwsSigningAlgorithm,
    CoreResponseMode, CoreResponseType, CoreRevocableToken, CoreRevocationErrorResponse,
    CoreSubjectIdentifierType, CoreTokenIntrospectionResponse, CoreTokenType,
};
use openidconnect::{
    AdditionalClaims, AdditionalProviderMetadata, AuthorizationCode, Client, ClientId,
    ClientSecret, CsrfToken, EmptyExtraTokenFields, EndpointMaybeSet, EndpointNotSet, EndpointSet,
    IdTokenFields, IssuerUrl, Nonce, PkceCodeChallenge, PkceCodeVerifier, ProviderMetadata,
    RedirectUrl, Scope, StandardErrorResponse, StandardTokenResponse, TokenResponse as _,
};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};

/// How long a started sign-in may take.
const PENDING_TTL: Duration = Duration::from_secs(600);

/// Claims beyond the standard ones (the groups claim is configurable, so it is read by name).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExtraClaims {
    #[serde(flatten)]
    other: serde_json::Map<String, serde_json::Value>,
}
impl AdditionalClaims for ExtraClaims {}

/// `end_session_endpoint` (RP-initiated logout), when the provider has one.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LogoutMetadata {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    end_session_endpoint: Option<String>,
}
impl AdditionalProviderMetadata for LogoutMetadata {}

type Metadata = ProviderMetadata<
    LogoutMetadata,
    CoreAuthDisplay,
    CoreClientAuthMethod,
    CoreClaimName,
    CoreClaimType,
    CoreGrantType,
    CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm,
    CoreJsonWebKey,
    CoreResponseMode,
    CoreResponseType,
    CoreSubjectIdentifierType,
>;
type IdFields = IdTokenFields<
    ExtraClaims,
    EmptyExtraTokenFields,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm,
>;
type GigClient = Client<
    ExtraClaims,
    CoreAuthDisplay,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJsonWebKey,
    CoreAuthPrompt,
    StandardErrorResponse<CoreErrorResponseType>,
    StandardTokenResponse<IdFields, CoreTokenType>,
    CoreTokenIntrospectionResponse,
    CoreRevocableToken,
    CoreRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    #[error("GIG_OIDC_ISSUER {issuer}: no discovery document within {secs} s")]
    DiscoveryTimeout { issuer: String, secs: u64 },
    #[error("GIG_OIDC_ISSUER {issuer}: discovery failed: {reason}")]
    Discovery { issuer: String, reason: String },
    #[error("invalid OIDC setting: {0}")]
    Setting(String),
    #[error("building the OIDC HTTP client: {0}")]
    Http(#[from] reqwest::Error),
    /// The callback was not one this gateway is waiting for (unknown, expired or reused state,
    /// or another browser's sign-in).
    #[error("unknown or expired sign-in")]
    UnknownState,
    #[error("the identity provider refused the sign-in: {0}")]
    Refused(String),
    #[error("the authorization response names another issuer")]
    WrongIssuer,
    #[error("exchanging the code: {0}")]
    Exchange(String),
    #[error("the ID token failed verification: {0}")]
    IdToken(String),
}

/// What the gateway learned about the user from a verified ID token.
#[derive(Debug, Clone)]
pub struct SignedIn {
    /// `issuer#subject`: users are keyed by both, so two providers never share an account.
    pub identity: String,
    pub email: Option<String>,
    pub name: Option<String>,
    pub groups: Vec<String>,
    pub role: Role,
    /// Where the browser asked to go once signed in.
    pub return_to: Option<String>,
}

/// What the login cookie carries, sealed.
#[derive(Debug, Serialize, Deserialize)]
struct Pending {
    state: String,
    verifier: String,
    nonce: String,
    /// Unix seconds after which the sign-in is refused.
    expires: u64,
    /// Where the browser goes once signed in (a path on this gateway, checked by the caller).
    #[serde(default)]
    return_to: Option<String>,
}

/// The relying party: one per gateway, created at start from the provider's discovery document.
pub struct Oidc {
    client: GigClient,
    http: reqwest::Client,
    config: OidcConfig,
    end_session: Option<String>,
    /// Seals pending sign-ins into their cookie.
    sealer: crate::sealed::Sealer,
}

impl std::fmt::Debug for Oidc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Oidc")
            .field("issuer", &self.config.issuer)
            .finish()
    }
}

impl Oidc {
    /// Fetches the provider's discovery document and keys; gives up after
    /// `GIG_OIDC_DISCOVERY_TIMEOUT_SECS` with an error that names the issuer.
    pub async fn discover(config: &OidcConfig) -> Result<Self, OidcError> {
        // Never follow redirects: a token endpoint that redirects is not trusted with the code.
        // Each request is bounded; discovery as a whole by the (shorter) timeout below, so an
        // issuer that never answers is reported as exactly that.
        // No pooled connections: an idle one the provider has closed (Node's oidc-provider
        // after 5 s) can be picked for the token request, which then fails with "connection
        // closed before message completed" and costs the user a spent code. Sign-ins are rare
        // enough that a fresh connection each time costs nothing worth keeping.
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .pool_max_idle_per_host(0)
            .timeout(config.discovery_timeout + Duration::from_secs(5))
            .build()?;
        let issuer = IssuerUrl::new(config.issuer.clone())
            .map_err(|e| OidcError::Setting(format!("GIG_OIDC_ISSUER: {e}")))?;
        let metadata = tokio::time::timeout(
            config.discovery_timeout,
            Metadata::discover_async(issuer, &http),
        )
        .await
        .map_err(|_| OidcError::DiscoveryTimeout {
            issuer: config.issuer.clone(),
            secs: config.discovery_timeout.as_secs(),
        })?
        .map_err(|e| OidcError::Discovery {
            issuer: config.issuer.clone(),
            reason: error_chain(&e),
        })?;
        let end_session = metadata.additional_metadata().end_session_endpoint.clone();
        let redirect = RedirectUrl::new(config.redirect_url.to_string())
            .map_err(|e| OidcError::Setting(format!("GIG_OIDC_REDIRECT_URL: {e}")))?;
        let client = GigClient::from_provider_metadata(
            metadata,
            ClientId::new(config.client_id.clone()),
            Some(ClientSecret::new(
                config.client_secret.expose_secret().to_owned(),
            )),
        )
        .set_redirect_uri(redirect);
        Ok(Oidc {
            client,
            http,
            config: config.clone(),
            end_session,
            sealer: crate::sealed::Sealer::new(),
        })
    }

    /// The provider's end-session URL, for logout.
    pub fn end_session_url(&self) -> Option<&str> {
        self.end_session.as_deref()
    }

    /// Starts a sign-in: the provider URL to send the browser to, and the sealed value for its
    /// login cookie, which also carries where to go once signed in.
    pub fn begin(&self, return_to: Option<String>) -> (String, String) {
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = self.client.authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        );
        for scope in self.config.scopes.iter().filter(|s| *s != "openid") {
            request = request.add_scope(Scope::new(scope.clone()));
        }
        let (url, state, nonce) = request.set_pkce_challenge(challenge).url();
        let pending = Pending {
            state: state.secret().clone(),
            verifier: verifier.secret().clone(),
            nonce: nonce.secret().clone(),
            expires: unix_now() + PENDING_TTL.as_secs(),
            return_to,
        };
        (url.to_string(), self.sealer.seal(&pending))
    }

    /// Finishes a sign-in: the login cookie must open under this process's key, be unexpired
    /// and name this `state`; `iss` must be the issuer when given (RFC 9207); the code is
    /// exchanged with the PKCE verifier (a replayed code is refused by the provider), and the
    /// ID token verified.
    pub async fn finish(
        &self,
        login_cookie: &str,
        state: &str,
        code: &str,
        iss: Option<&str>,
    ) -> Result<SignedIn, OidcError> {
        let pending = self
            .sealer
            .open::<Pending>(login_cookie, 4096)
            .filter(|p| p.expires >= unix_now())
            .ok_or(OidcError::UnknownState)?;
        if !bool::from(subtle::ConstantTimeEq::ct_eq(
            pending.state.as_bytes(),
            state.as_bytes(),
        )) {
            return Err(OidcError::UnknownState);
        }
        if iss.is_some_and(|iss| iss != self.config.issuer) {
            return Err(OidcError::WrongIssuer);
        }
        let response = self
            .client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|e| OidcError::Exchange(e.to_string()))?
            .set_pkce_verifier(PkceCodeVerifier::new(pending.verifier))
            .request_async(&self.http)
            .await
            .map_err(|e| OidcError::Exchange(error_chain(&e)))?;
        let id_token = response
            .id_token()
            .ok_or_else(|| OidcError::IdToken("the token response has no ID token".into()))?;
        let claims = id_token
            .claims(&self.client.id_token_verifier(), &Nonce::new(pending.nonce))
            .map_err(|e| OidcError::IdToken(error_chain(&e)))?;
        let groups: Vec<String> = claims
            .additional_claims()
            .other
            .get(&self.config.groups_claim)
            .and_then(|v| v.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|g| g.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        Ok(SignedIn {
            identity: format!("{}#{}", self.config.issuer, claims.subject().as_str()),
            email: claims.email().map(|e| e.as_str().to_owned()),
            name: claims
                .name()
                .and_then(|n| n.get(None))
                .map(|n| n.as_str().to_owned()),
            role: self.config.role_for(&groups),
            groups,
            return_to: pending.return_to,
        })
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
