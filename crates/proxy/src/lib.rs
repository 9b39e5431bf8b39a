//! The egress proxy: the only way a sandboxed MCP server reaches the network.
//!
//! One listener per sandbox (bound by the gateway on the sandbox's host-side veth address, so the
//! listener *is* the sandbox's identity). It accepts `CONNECT host:port`, which it intercepts with
//! a leaf certificate from an in-memory [`RuntimeCa`], and absolute-form plain HTTP to rules
//! written `http://...`. Every request is checked against the sandbox's
//! [`gig_policy::EgressPolicy`] (default deny), on the *resolved* address, and sent to exactly that
//! address with upstream TLS verified. A credential's placeholder is replaced by the real secret
//! only on requests to that credential's hosts; a placeholder seen anywhere else is refused as an
//! exfiltration attempt; the real secret is scrubbed from responses. One [`AuditEvent`] per request.
//!
//! This crate must never log or audit a secret value, never follow a redirect, never connect to an
//! address it did not check, and never write the CA key anywhere.

#![forbid(unsafe_code)]

mod audit;
mod ca;
mod framing;
mod phases;
mod proxy;
mod resolve;
mod scan;
mod upstream;

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use rand::RngCore;

pub use audit::{AuditEvent, AuditSink, Decision, Scheme, TracingAudit, redact_query};
pub use ca::{CaError, RuntimeCa};
pub use gig_policy::address::non_public_reason;
pub use proxy::{
    EgressProxy, ProxyConfig, ProxyError, ProxyLimits, SandboxEgress, SecretError, SecretScope,
    SecretSource, StaticSecrets, ToolCall,
};
pub use resolve::{Resolver, StaticResolver, SystemResolver};
pub use rustls::pki_types::CertificateDer;
pub use upstream::UpstreamError;
pub use zeroize::Zeroizing;

/// Every placeholder starts with this, so logs and scanners can recognise one.
pub const PLACEHOLDER_PREFIX: &str = "gigph_";

/// A fresh placeholder: the prefix and 32 random bytes in hex. Unguessable, ASCII, and unchanged by
/// URL encoding, JSON escaping and header rules.
pub fn new_placeholder() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("{PLACEHOLDER_PREFIX}{}", hex::encode(bytes))
}

/// The environment a sandboxed server needs to use the proxy: `proxy_url` is the proxy's address
/// as the sandbox reaches it (`http://10.200.0.1:3128`), `ca_path` where the CA certificate file
/// is inside the sandbox. Both cases of the proxy variables are set because tools disagree.
pub fn sandbox_env(proxy_url: &str, ca_path: &str) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    for name in ["HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"] {
        env.insert(name.to_string(), proxy_url.to_string());
    }
    // Nothing bypasses the proxy (there is no other route anyway; this keeps errors clear).
    env.insert("NO_PROXY".into(), String::new());
    env.insert("no_proxy".into(), String::new());
    for name in [
        "SSL_CERT_FILE",
        "REQUESTS_CA_BUNDLE",
        "NODE_EXTRA_CA_CERTS",
        "CURL_CA_BUNDLE",
    ] {
        env.insert(name.to_string(), ca_path.to_string());
    }
    // Node's built-in fetch and https honour HTTPS_PROXY only with this (seen working on 22.23).
    env.insert("NODE_USE_ENV_PROXY".into(), "1".into());
    env
}

/// The one rustls crypto provider this crate uses (ring, like the rest of the workspace).
pub(crate) fn crypto_provider() -> Arc<rustls::crypto::CryptoProvider> {
    static PROVIDER: OnceLock<Arc<rustls::crypto::CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

#[cfg(test)]
mod fuzz;
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzz_fixture;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
#[cfg(test)]
mod tests;

/// Reads every certificate in a PEM file (for [`ProxyConfig::extra_roots`]).
pub fn load_pem_certificates(
    path: &std::path::Path,
) -> std::io::Result<Vec<CertificateDer<'static>>> {
    use rustls::pki_types::pem::PemObject;
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| std::io::Error::other(format!("{}: {e}", path.display())))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| std::io::Error::other(format!("{}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(std::io::Error::other(format!(
            "{}: no PEM certificate in it",
            path.display()
        )));
    }
    Ok(certs)
}
