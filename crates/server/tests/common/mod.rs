//! The gateway in-process for the server's integration tests: its config from test variables,
//! stdio backends from this workspace's fixture binaries, the gateway served on a loopback port
//! until stopped, and an MCP client connected to it.

// Each test binary uses the part it needs.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use gig_config::{GatewayConfig, ServerSpec, StdioCommand};
use gig_gateway::{Hub, NamedLauncher};
use gig_test_util::{eventually, workspace_bin};
use rmcp::service::{ClientInitializeError, RunningService};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{ClientHandler, RoleClient, ServiceExt};
use tokio::sync::oneshot;

/// The operator's bearer token.
pub const TOKEN: &str = "test-token-0123456789abcdef";

/// `RUST_LOG=debug cargo test ...` shows the gateway's logs when debugging a test.
pub fn init_logging() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// The gateway's config: [`TOKEN`], `data` and `addr`, with `env` over them.
pub fn config(env: &[(&str, &str)], addr: SocketAddr, data: &Path) -> GatewayConfig {
    let mut vars: BTreeMap<String, String> = BTreeMap::new();
    vars.insert("GIG_BEARER_TOKEN".into(), TOKEN.into());
    vars.insert("GIG_DATA_DIR".into(), data.display().to_string());
    vars.insert("GIG_LISTEN".into(), addr.to_string());
    for (k, v) in env {
        vars.insert(k.to_string(), v.to_string());
    }
    GatewayConfig::from_env(&vars).unwrap()
}

/// A plain stdio server running the workspace binary `bin`, named without its `-mcp`.
pub fn stdio_spec(bin: &str) -> ServerSpec {
    ServerSpec {
        name: gig_config::ServerName::parse(bin.trim_end_matches("-mcp")).unwrap(),
        sandbox: None,
        command: StdioCommand {
            program: workspace_bin(bin).display().to_string(),
            args: vec![],
            env: BTreeMap::new(),
            cwd: None,
        },
    }
}

/// Launchers for `specs`, each child given this process's environment.
pub fn stdio_backends(specs: Vec<ServerSpec>) -> Vec<NamedLauncher> {
    let parent_env: Vec<(String, String)> = std::env::vars().collect();
    gig_gateway::stdio_launchers(specs, &parent_env)
}

/// The gateway's store in its data directory.
pub async fn open_store(data: &Path) -> gig_store::Store {
    let url = format!("sqlite://{}", data.join("gig.db").display());
    gig_store::Store::open(&url).await.unwrap()
}

/// Connects an MCP client with `handler` to the gateway at `url`, as the operator.
pub async fn connect<H: ClientHandler>(
    url: &str,
    handler: H,
) -> Result<RunningService<RoleClient, H>, ClientInitializeError> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let transport = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(url).auth_header(TOKEN),
    );
    handler.serve(transport).await
}

/// A gateway served on loopback until [`Gateway::stop`].
pub struct Gateway {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
    _data: tempfile::TempDir,
}

impl Gateway {
    /// A gateway over `backends`, configured by `env` over [`config`]'s defaults, ready.
    pub async fn start(env: &[(&str, &str)], backends: Vec<NamedLauncher>) -> Self {
        init_logging();
        let data = tempfile::tempdir().unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let config = config(env, listener.local_addr().unwrap(), data.path());
        let hub = Hub::start(
            config.limits,
            backends,
            tokio_util::sync::CancellationToken::new(),
        );
        Self::serve(listener, config, hub, data).await
    }

    /// Serves `hub` on `listener`; returns once `/readyz` says ready with no backend starting
    /// or down. `data` (the config's data directory) lives as long as the gateway.
    pub async fn serve(
        listener: tokio::net::TcpListener,
        config: GatewayConfig,
        hub: Arc<Hub>,
        data: tempfile::TempDir,
    ) -> Self {
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            gig_server::serve(listener, config, hub, async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
        });
        let gateway = Gateway {
            addr,
            stop: Some(stop),
            task,
            _data: data,
        };
        gateway.wait_ready().await;
        gateway
    }

    async fn wait_ready(&self) {
        let readyz = format!("http://{}/readyz", self.addr);
        let ready = eventually(Duration::from_secs(20), async || {
            let body = reqwest::get(&readyz).await.ok()?.text().await.ok()?;
            (body.contains("\"ready\":true")
                && !body.contains("\"starting\"")
                && !body.contains("\"down\""))
            .then_some(())
        })
        .await;
        assert!(ready.is_some(), "gateway never became ready");
    }

    pub fn url(&self) -> String {
        format!("http://{}/mcp", self.addr)
    }

    /// Asks the gateway to shut down and waits until it has.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.await.unwrap();
    }
}
