//! The runtime certificate authority that signs the leaf certificates sandboxes see.
//!
//! Its key is generated in memory at start and never serialised to disk: a restart makes a new CA
//! and the gateway hands the new certificate to every sandbox it starts.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, SanType,
};
use rustls::ServerConfig;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use time::OffsetDateTime;

/// How long a minted leaf is valid; it is re-minted well before that (see [`LEAF_REUSE`]).
const LEAF_VALIDITY: Duration = Duration::from_secs(24 * 3600);
/// A cached leaf is used for at most this long, so a served leaf always has hours left.
const LEAF_REUSE: Duration = Duration::from_secs(12 * 3600);
/// Clock-skew allowance at the start of every certificate's validity.
const BACKDATE: Duration = Duration::from_secs(3600);

#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error("generating the CA key failed: {0}")]
    Key(rcgen::Error),
    #[error("signing a certificate for {0:?} failed: {1}")]
    Sign(String, rcgen::Error),
    #[error("building the TLS configuration for {0:?} failed: {1}")]
    Tls(String, rustls::Error),
}

/// An ECDSA P-256 CA that exists only in this process's memory.
pub struct RuntimeCa {
    issuer: Issuer<'static, KeyPair>,
    cert_der: CertificateDer<'static>,
    cert_pem: String,
}

impl std::fmt::Debug for RuntimeCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuntimeCa").finish_non_exhaustive()
    }
}

impl RuntimeCa {
    pub fn generate() -> Result<Self, CaError> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(CaError::Key)?;
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, "Gig'MCP egress proxy runtime CA");
        params
            .distinguished_name
            .push(DnType::OrganizationName, "Gig'MCP");
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - BACKDATE;
        // The CA lives as long as the process; a year covers any realistic uptime.
        params.not_after = now + Duration::from_secs(365 * 24 * 3600);
        let cert = params
            .self_signed(&key)
            .map_err(|e| CaError::Sign("runtime CA".into(), e))?;
        Ok(RuntimeCa {
            cert_der: cert.der().clone(),
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        })
    }

    /// The CA certificate to install as the sandbox's only trust anchor.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    /// Signs a fresh leaf for `host` (a DNS name or an IP literal) with its own new key.
    pub fn mint_leaf(
        &self,
        host: &str,
    ) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), CaError> {
        let sign_err = |e| CaError::Sign(host.to_string(), e);
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(sign_err)?;
        let mut params = CertificateParams::default();
        params.subject_alt_names = vec![match host.parse::<IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(host.to_string().try_into().map_err(sign_err)?),
        }];
        params.distinguished_name.push(DnType::CommonName, host);
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        // Strict verifiers (Python 3.13's VERIFY_X509_STRICT) require the AKI.
        params.use_authority_key_identifier_extension = true;
        let now = OffsetDateTime::now_utc();
        params.not_before = now - BACKDATE;
        params.not_after = now + LEAF_VALIDITY;
        let cert = params.signed_by(&key, &self.issuer).map_err(sign_err)?;
        let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        Ok((vec![cert.der().clone(), self.cert_der.clone()], key_der))
    }
}

/// A bounded LRU of per-host TLS server configurations (leaf certificate and key inside).
#[derive(Debug)]
pub(crate) struct LeafCache {
    capacity: usize,
    inner: Mutex<LeafMap>,
}

#[derive(Debug, Default)]
struct LeafMap {
    tick: u64,
    map: HashMap<String, (Arc<ServerConfig>, Instant, u64)>,
}

impl LeafCache {
    pub(crate) fn new(capacity: usize) -> Self {
        LeafCache {
            capacity: capacity.max(1),
            inner: Mutex::new(LeafMap::default()),
        }
    }

    /// The server configuration for `host`, minting a leaf if none is cached or it is old.
    pub(crate) fn get(&self, ca: &RuntimeCa, host: &str) -> Result<Arc<ServerConfig>, CaError> {
        {
            let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            let inner = &mut *guard;
            inner.tick += 1;
            let tick = inner.tick;
            if let Some((config, minted, used)) = inner.map.get_mut(host)
                && minted.elapsed() < LEAF_REUSE
            {
                *used = tick;
                return Ok(config.clone());
            }
        }
        // Minting happens outside the lock; two racing handshakes may both mint, which is harmless.
        let (chain, key) = ca.mint_leaf(host)?;
        let mut config = ServerConfig::builder_with_provider(crate::crypto_provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| CaError::Tls(host.to_string(), e))?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|e| CaError::Tls(host.to_string(), e))?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let config = Arc::new(config);
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if inner.map.len() >= self.capacity && !inner.map.contains_key(host) {
            // O(capacity) eviction; capacities are in the thousands and minting dominates anyway.
            if let Some(oldest) = inner
                .map
                .iter()
                .min_by_key(|(_, (_, _, used))| *used)
                .map(|(k, _)| k.clone())
            {
                inner.map.remove(&oldest);
            }
        }
        inner.tick += 1;
        let tick = inner.tick;
        inner
            .map
            .insert(host.to_string(), (config.clone(), Instant::now(), tick));
        Ok(config)
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .map
            .len()
    }
}
