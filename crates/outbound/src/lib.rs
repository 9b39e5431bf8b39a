//! The gateway's own outbound HTTP: fetching an OAuth client's metadata document today, remote
//! MCP servers next. Whoever names the URL (a client registering itself, a servers file) is not
//! trusted to choose where the gateway connects, so:
//!
//! - every address a name resolves to is checked against the egress address policy
//!   ([`gig_policy::address::AddressPolicy`]: no loopback, private, link-local or metadata
//!   address, nor the host's own, unless allowed) and one refused answer refuses the name (mixed
//!   answers are a DNS-rebinding trick); the connection goes to exactly the checked addresses;
//! - an IP literal in the URL gets the same check (it never reaches the resolver);
//! - https only, TLS verified against the system roots plus `GIG_EGRESS_EXTRA_ROOTS`;
//! - redirects are never followed (a redirect could point anywhere the check did not see), and
//!   proxies from the environment are ignored (a proxy would connect past the check);
//! - every fetch is bounded in time and in bytes.

#![forbid(unsafe_code)]

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use gig_policy::IpNet;
use gig_policy::address::AddressPolicy;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

#[derive(Debug, thiserror::Error)]
pub enum OutboundError {
    #[error("only https URLs are fetched")]
    NotHttps,
    #[error("{host} resolves to a {why}, which the gateway may not reach")]
    Refused { host: String, why: &'static str },
    #[error("{0} did not answer in time")]
    Timeout(String),
    #[error("the answer is larger than {0} bytes")]
    TooLarge(usize),
    #[error("the answer was HTTP {0}")]
    Status(u16),
    #[error("the answer is not a JSON document: {0}")]
    NotJson(String),
    #[error("cannot reach {host}: {reason}")]
    Unreachable { host: String, reason: String },
    #[error("extra roots {path}: {reason}")]
    Roots { path: String, reason: String },
    #[error("building the HTTP client: {0}")]
    Client(String),
}

/// A JSON document fetched from outside, with how long its sender lets it be cached.
#[derive(Debug)]
pub struct FetchedJson {
    pub value: serde_json::Value,
    /// `Cache-Control: max-age`, when given (and no `no-store`/`no-cache`).
    pub max_age: Option<Duration>,
}

/// An HTTP client for the gateway's own requests under the address policy.
#[derive(Debug, Clone)]
pub struct Outbound {
    client: reqwest::Client,
    policy: Arc<AddressPolicy>,
}

impl Outbound {
    /// `allow`: the non-public addresses that may be reached (`GIG_EGRESS_ALLOW_ADDRESSES`);
    /// `extra_roots`: a PEM bundle trusted besides the system's roots. https only.
    pub fn new(allow: Vec<IpNet>, extra_roots: Option<&Path>) -> Result<Self, OutboundError> {
        Self::build(AddressPolicy::new(allow), extra_roots, false)
    }

    /// For plain-http remote servers: http is allowed, but only to `allow`ed addresses (an
    /// internal service), never to a public one, so headers never cross the internet in clear.
    pub fn plain_http(
        allow: Vec<IpNet>,
        extra_roots: Option<&Path>,
    ) -> Result<Self, OutboundError> {
        Self::build(AddressPolicy::allowed_only(allow), extra_roots, true)
    }

    /// The client itself, for transports that make their own requests (rmcp's Streamable
    /// HTTP client): every connection it opens still goes through the address check.
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    fn build(
        policy: AddressPolicy,
        extra_roots: Option<&Path>,
        plain_http: bool,
    ) -> Result<Self, OutboundError> {
        // reqwest 0.13 is built without a bundled provider in this workspace (as in gig-oci):
        // ring, installed once per process; a provider someone installed first is kept.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let policy = Arc::new(policy);
        let mut roots = Vec::new();
        let mut builder = reqwest::Client::builder()
            .https_only(!plain_http)
            .redirect(reqwest::redirect::Policy::none())
            // Never through a proxy from HTTPS_PROXY/ALL_PROXY: the proxy would resolve and
            // connect in our place, past the address check.
            .no_proxy()
            .dns_resolver(Arc::new(PolicyResolver(policy.clone())))
            .connect_timeout(Duration::from_secs(5))
            // A pooled connection is dropped after 3 s idle, before the common servers' own
            // keep-alive timeouts (Node and uvicorn 5 s, nginx 75 s) close it: reusing one the
            // server is closing at that moment fails the request with "connection closed
            // before message completed", and a POST cannot be safely retried.
            .pool_idle_timeout(Duration::from_secs(3))
            .user_agent(concat!("gigmcp/", env!("CARGO_PKG_VERSION")));
        for cert in rustls_native_certs::load_native_certs().certs {
            if let Ok(cert) = reqwest::Certificate::from_der(&cert) {
                roots.push(cert);
            }
        }
        if let Some(path) = extra_roots {
            let roots_error = |reason: String| OutboundError::Roots {
                path: path.display().to_string(),
                reason,
            };
            let pem = std::fs::read(path).map_err(|e| roots_error(e.to_string()))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| roots_error(e.to_string()))?;
            if certs.is_empty() {
                return Err(roots_error("no certificate in the file".into()));
            }
            roots.extend(certs);
        }
        builder = builder.tls_certs_only(roots);
        let client = builder
            .build()
            .map_err(|e| OutboundError::Client(e.to_string()))?;
        Ok(Outbound { client, policy })
    }

    /// GETs `url` as JSON: at most `max_bytes`, within `timeout` for the whole exchange.
    pub async fn get_json(
        &self,
        url: &url::Url,
        max_bytes: usize,
        timeout: Duration,
    ) -> Result<FetchedJson, OutboundError> {
        let host = self.check_url(url)?;
        let exchange = async {
            let mut response = self
                .client
                .get(url.clone())
                .header(reqwest::header::ACCEPT, "application/json")
                .send()
                .await
                .map_err(|e| send_error(&host, &e))?;
            if !response.status().is_success() {
                return Err(OutboundError::Status(response.status().as_u16()));
            }
            if response
                .content_length()
                .is_some_and(|n| n > max_bytes as u64)
            {
                return Err(OutboundError::TooLarge(max_bytes));
            }
            let max_age = max_age(response.headers());
            let mut body = Vec::new();
            while let Some(chunk) = response.chunk().await.map_err(|e| send_error(&host, &e))? {
                if body.len() + chunk.len() > max_bytes {
                    return Err(OutboundError::TooLarge(max_bytes));
                }
                body.extend_from_slice(&chunk);
            }
            let value =
                serde_json::from_slice(&body).map_err(|e| OutboundError::NotJson(e.to_string()))?;
            Ok(FetchedJson { value, max_age })
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| OutboundError::Timeout(host.clone()))?
    }

    /// Sends one request built elsewhere (an OAuth client's token or registration request):
    /// host checked, no redirect followed (a 3xx comes back as it is), the answer read whole
    /// up to `max_bytes`, all within `timeout`.
    pub async fn execute(
        &self,
        request: http::Request<Vec<u8>>,
        max_bytes: usize,
        timeout: Duration,
    ) -> Result<http::Response<Vec<u8>>, OutboundError> {
        let url =
            url::Url::parse(&request.uri().to_string()).map_err(|_| OutboundError::NotHttps)?;
        let host = self.check_host(&url)?;
        let request = reqwest::Request::try_from(request)
            .map_err(|e| OutboundError::Client(e.to_string()))?;
        let exchange = async {
            let mut response = self
                .client
                .execute(request)
                .await
                .map_err(|e| send_error(&host, &e))?;
            let mut answer = http::Response::builder().status(response.status());
            if let Some(headers) = answer.headers_mut() {
                *headers = std::mem::take(response.headers_mut());
            }
            let mut body = Vec::new();
            while let Some(chunk) = response.chunk().await.map_err(|e| send_error(&host, &e))? {
                if body.len() + chunk.len() > max_bytes {
                    return Err(OutboundError::TooLarge(max_bytes));
                }
                body.extend_from_slice(&chunk);
            }
            answer
                .body(body)
                .map_err(|e| OutboundError::Client(e.to_string()))
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| OutboundError::Timeout(host.clone()))?
    }

    /// https, and an IP literal host (which reqwest connects to without resolving) allowed.
    fn check_url(&self, url: &url::Url) -> Result<String, OutboundError> {
        if url.scheme() != "https" {
            return Err(OutboundError::NotHttps);
        }
        self.check_host(url)
    }

    /// An IP literal host (which reqwest connects to without resolving) must be allowed: call
    /// before handing a URL to a transport that uses [`Self::client`].
    pub fn check_host(&self, url: &url::Url) -> Result<String, OutboundError> {
        let host = match url.host() {
            Some(url::Host::Domain(d)) => return Ok(d.to_owned()),
            Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip),
            Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip),
            None => return Err(OutboundError::NotHttps),
        };
        match self.policy.refusal(host) {
            Some(why) => Err(OutboundError::Refused {
                host: host.to_string(),
                why,
            }),
            None => Ok(host.to_string()),
        }
    }
}

/// The reason the address check gave, when it is what stopped the request.
fn send_error(host: &str, e: &reqwest::Error) -> OutboundError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(cause) = source {
        if let Some(refused) = cause.downcast_ref::<RefusedAddress>() {
            return OutboundError::Refused {
                host: host.to_owned(),
                why: refused.0,
            };
        }
        source = cause.source();
    }
    if e.is_timeout() {
        return OutboundError::Timeout(host.to_owned());
    }
    OutboundError::Unreachable {
        host: host.to_owned(),
        reason: error_chain(e),
    }
}

/// An error with its sources, `: `-separated: what an HTTP client's nested errors really say
/// (for logs and operator messages, never for a response to a client).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn max_age(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let value = headers.get(reqwest::header::CACHE_CONTROL)?.to_str().ok()?;
    let mut max_age = None;
    for directive in value.split(',').map(str::trim) {
        let lower = directive.to_ascii_lowercase();
        if lower == "no-store" || lower == "no-cache" {
            return None;
        }
        if let Some(secs) = lower.strip_prefix("max-age=") {
            max_age = secs.parse().ok().map(Duration::from_secs);
        }
    }
    max_age
}

#[derive(Debug)]
struct RefusedAddress(&'static str);

impl std::fmt::Display for RefusedAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "resolves to a {}", self.0)
    }
}

impl std::error::Error for RefusedAddress {}

/// Resolves with the system resolver, then refuses the name if any answer is refused.
struct PolicyResolver(Arc<AddressPolicy>);

impl Resolve for PolicyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.0.clone();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((name.as_str(), 0)).await?.collect();
            for addr in &addrs {
                if let Some(why) = policy.refusal(addr.ip()) {
                    return Err(Box::new(RefusedAddress(why)) as Box<_>);
                }
            }
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests;
