//! The control plane's installs, uninstalls and credential writes, timed and counted on their
//! way to the gateway's real [`Operations`] (which it wraps; nothing else changes).

use std::sync::Arc;
use std::time::Instant;

use futures::future::BoxFuture;
use gig_api::operations::{
    CatalogEntry, CredentialName, CredentialOwner, OpError, Operations, ServerName, ServerStatus,
    StoredCredential,
};
use tokio::sync::mpsc;

use crate::families::{InstallVia, Metrics, Outcome};

#[derive(Debug)]
pub struct MeteredOperations {
    inner: Arc<dyn Operations>,
    metrics: Arc<Metrics>,
}

impl MeteredOperations {
    pub fn new(inner: Arc<dyn Operations>, metrics: Arc<Metrics>) -> Self {
        MeteredOperations { inner, metrics }
    }
}

impl Operations for MeteredOperations {
    fn servers(&self) -> BoxFuture<'_, Result<Vec<ServerStatus>, OpError>> {
        self.inner.servers()
    }

    fn installs_enabled(&self) -> bool {
        self.inner.installs_enabled()
    }

    fn catalog(&self) -> BoxFuture<'_, Result<Option<Vec<CatalogEntry>>, OpError>> {
        self.inner.catalog()
    }

    fn install(
        &self,
        reference: String,
        progress: mpsc::Sender<String>,
    ) -> BoxFuture<'_, Result<(String, String), OpError>> {
        Box::pin(async move {
            let started = Instant::now();
            let installed = self.inner.install(reference, progress).await;
            self.metrics.install_finished(
                InstallVia::Api,
                Outcome::from(&installed),
                started.elapsed(),
            );
            installed
        })
    }

    fn tools(&self, name: &ServerName) -> Option<Vec<gig_api::operations::ToolDefinition>> {
        self.inner.tools(name)
    }

    fn logs(&self, name: &ServerName) -> Option<Vec<String>> {
        self.inner.logs(name)
    }

    fn restart(&self, name: &ServerName) -> bool {
        self.inner.restart(name)
    }

    fn uninstall(&self, name: ServerName) -> BoxFuture<'_, Result<bool, OpError>> {
        Box::pin(async move {
            let removed = self.inner.uninstall(name).await;
            self.metrics
                .uninstall_finished(InstallVia::Api, Outcome::from(&removed));
            removed
        })
    }

    fn set_credential(
        &self,
        server: ServerName,
        owner: CredentialOwner,
        name: CredentialName,
        value: zeroize::Zeroizing<Vec<u8>>,
    ) -> BoxFuture<'_, Result<(), OpError>> {
        Box::pin(async move {
            let stored = self.inner.set_credential(server, owner, name, value).await;
            self.metrics
                .vault_operation("write", Outcome::from(&stored));
            stored
        })
    }

    fn delete_credential(
        &self,
        server: ServerName,
        owner: CredentialOwner,
        name: CredentialName,
    ) -> BoxFuture<'_, Result<bool, OpError>> {
        Box::pin(async move {
            let deleted = self.inner.delete_credential(server, owner, name).await;
            self.metrics
                .vault_operation("delete", Outcome::from(&deleted));
            deleted
        })
    }

    fn credentials(
        &self,
        server: ServerName,
        owner: CredentialOwner,
    ) -> BoxFuture<'_, Result<Vec<StoredCredential>, OpError>> {
        self.inner.credentials(server, owner)
    }
}
