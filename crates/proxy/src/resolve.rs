//! Name resolution, behind a trait so a hosts override (and tests) can replace DNS.
//!
//! The proxy resolves a name exactly once per tunnel or plain request, checks every answer, and
//! connects only to an address it checked: a second lookup could answer differently (rebinding).

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::sync::Arc;

use futures::future::BoxFuture;

pub trait Resolver: Send + Sync + 'static {
    /// All addresses `host` (a DNS name, never an IP literal) resolves to.
    fn resolve<'a>(&'a self, host: &'a str) -> BoxFuture<'a, io::Result<Vec<IpAddr>>>;
}

/// The operating system's resolver (`getaddrinfo` on a blocking thread, via tokio).
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemResolver;

impl Resolver for SystemResolver {
    fn resolve<'a>(&'a self, host: &'a str) -> BoxFuture<'a, io::Result<Vec<IpAddr>>> {
        Box::pin(async move {
            let addrs = tokio::net::lookup_host((host, 0)).await?;
            Ok(addrs.map(|a| a.ip()).collect())
        })
    }
}

/// A fixed name → addresses map, consulted first; names it does not know go to `fallback`, or
/// fail to resolve when there is none (what tests want: no query ever leaves the machine).
#[derive(Clone, Default)]
pub struct StaticResolver {
    map: HashMap<String, Vec<IpAddr>>,
    fallback: Option<Arc<dyn Resolver>>,
}

impl std::fmt::Debug for StaticResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaticResolver")
            .field("map", &self.map)
            .field("fallback", &self.fallback.is_some())
            .finish()
    }
}

impl StaticResolver {
    pub fn new() -> Self {
        Self::default()
    }

    /// Consult `fallback` for names not in the map (a hosts override in front of DNS).
    pub fn with_fallback(mut self, fallback: Arc<dyn Resolver>) -> Self {
        self.fallback = Some(fallback);
        self
    }

    pub fn insert(mut self, host: &str, addrs: impl IntoIterator<Item = IpAddr>) -> Self {
        self.map
            .insert(host.to_ascii_lowercase(), addrs.into_iter().collect());
        self
    }
}

impl Resolver for StaticResolver {
    fn resolve<'a>(&'a self, host: &'a str) -> BoxFuture<'a, io::Result<Vec<IpAddr>>> {
        Box::pin(async move {
            if let Some(addrs) = self.map.get(&host.to_ascii_lowercase()) {
                return Ok(addrs.clone());
            }
            match &self.fallback {
                Some(fallback) => fallback.resolve(host).await,
                None => Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("{host} is not in the static host map"),
                )),
            }
        })
    }
}
