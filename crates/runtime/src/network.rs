//! The host side of sandbox egress: per-sandbox networking (netmgr) and the egress proxy,
//! started once per gateway. A sandbox whose policy allows egress gets a veth pair whose only
//! reachable address is its own proxy listener; the rest of the way out is the proxy's decision.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use gig_config::EgressConfig;
pub use gig_netmgr::NetConfig;
use gig_netmgr::{NetError, NetManager};
use gig_proxy::{
    AuditSink, CaError, EgressProxy, ProxyConfig, ProxyError, RuntimeCa, SecretSource,
    StaticResolver, SystemResolver,
};

use crate::data_dir::{DataDirError, write_public_file};

/// Where every sandbox finds the proxy's CA certificate.
pub const CA_PATH_IN_SANDBOX: &str = "/run/gig/egress-ca.pem";

/// Why sandbox networking could not start; one variant per step.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error("sandbox networking: {0}")]
    Net(#[from] NetError),
    #[error("generating the egress proxy's CA: {0}")]
    Ca(#[from] CaError),
    #[error("writing the egress proxy's CA certificate: {0}")]
    CaFile(#[from] DataDirError),
    #[error("reading GIG_EGRESS_EXTRA_ROOTS {path}: {source}")]
    ExtraRoots {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("configuring the egress proxy: {0}")]
    Proxy(#[from] ProxyError),
}

impl NetworkError {
    /// True when another process (a gateway, or another `sandbox exec`) already uses addresses
    /// of the requested pool: a caller with a choice of pools may try the next one.
    pub fn is_pool_in_use(&self) -> bool {
        matches!(self, NetworkError::Net(NetError::PoolInUse { .. }))
    }
}

/// Per-sandbox networking and the egress proxy: the only way out of a sandbox.
pub struct SandboxNetwork {
    pub(crate) net: NetManager,
    pub(crate) proxy: EgressProxy,
    pub(crate) ca_file: PathBuf,
    pub(crate) port: u16,
    pub(crate) allow_addresses: Vec<gig_policy::IpNet>,
    /// This gateway's claim on its share of the host's sandbox networking, held while it runs.
    instance: Option<crate::instance::NetInstance>,
}

impl std::fmt::Debug for SandboxNetwork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SandboxNetwork")
            .field("pool", &self.net.config().pool)
            .field("port", &self.port)
            .finish()
    }
}

impl SandboxNetwork {
    /// Sets up the host side (reclaiming what a crashed gateway left: links, firewall table),
    /// generates the runtime CA and writes its certificate to `public_dir` for sandboxes.
    /// `net` names the links, table and pool this process owns (the gateway's defaults, or a
    /// private set for `gigmcp sandbox exec` so it never reclaims a running gateway's links).
    pub async fn start(
        config: &EgressConfig,
        net: NetConfig,
        public_dir: &Path,
        secrets: Arc<dyn SecretSource>,
        audit: Arc<dyn AuditSink>,
    ) -> Result<Self, NetworkError> {
        let net = NetManager::new(net).await?;
        let reclaimed = net.reclaimed();
        if !reclaimed.removed_links.is_empty() || reclaimed.removed_table {
            tracing::info!(links = ?reclaimed.removed_links, table = reclaimed.removed_table, "reclaimed sandbox networking left by an earlier run");
        }
        let ca = RuntimeCa::generate()?;
        let ca_file = public_dir.join("egress-ca.pem");
        write_public_file(&ca_file, ca.cert_pem().as_bytes())?;
        let extra_roots = match &config.extra_roots {
            Some(path) => gig_proxy::load_pem_certificates(path).map_err(|source| {
                NetworkError::ExtraRoots {
                    path: path.clone(),
                    source,
                }
            })?,
            None => Vec::new(),
        };
        let mut resolver = StaticResolver::new().with_fallback(Arc::new(SystemResolver));
        for (name, ips) in &config.hosts {
            resolver = resolver.insert(name, ips.iter().copied());
        }
        let proxy = EgressProxy::new(
            ca,
            ProxyConfig {
                extra_roots,
                public_roots: true,
                resolver: Arc::new(resolver),
                limits: Default::default(),
            },
            secrets,
            audit,
        )?;
        Ok(SandboxNetwork {
            net,
            proxy,
            ca_file,
            port: config.proxy_port,
            allow_addresses: config.allow_addresses.clone(),
            instance: None,
        })
    }

    /// Keeps `instance` claimed for as long as this network lives.
    pub fn holding(mut self, instance: crate::instance::NetInstance) -> Self {
        self.instance = Some(instance);
        self
    }

    /// The names and pool this network owns.
    pub fn config(&self) -> &NetConfig {
        self.net.config()
    }

    /// Removes the firewall table at a clean shutdown (a crash is reclaimed at the next start).
    /// Call it only after every sandbox is dead ([`crate::SandboxRuntime::wait_all_stopped`]):
    /// a sandbox still alive would keep its route and lose its filter.
    pub async fn stop(&self) {
        if let Err(e) = self.net.remove_firewall().await {
            tracing::warn!(error = %e, "removing the sandbox firewall table");
        }
    }
}
