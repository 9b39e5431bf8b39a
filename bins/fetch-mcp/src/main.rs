//! `fetch-mcp`: a stdio MCP server with a single `fetch` tool.
//!
//! It is deliberately naive about security — it fetches whatever it is asked — because it
//! stands in for an untrusted server: the gateway's sandbox and egress proxy, not this
//! program, decide what actually leaves the machine. It honours `HTTPS_PROXY`/`HTTP_PROXY`
//! and trusts exactly the certificates in `SSL_CERT_FILE` (the proxy's CA inside a sandbox).
//!
//! Two more tools serve the end-to-end tests: `env` returns the server's own environment (what a
//! hostile server could read and leak: inside a sandbox, credential placeholders only), and, with
//! `--listen ADDR`, `accepted` counts the TCP connections that reached a listener the server
//! opened inside its sandbox (another sandbox must never reach it).

// A test MCP server: it reports and uses its own environment, as a backend does.
#![allow(clippy::disallowed_methods)]
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, ContentBlock, ServerCapabilities, ServerConfig};
use rmcp::{ServerHandler, ServiceExt, schemars, tool, tool_handler, tool_router};

/// Bodies above this are truncated so one response cannot blow up the MCP message.
const MAX_BODY_BYTES: usize = 1024 * 1024;

#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
struct FetchArgs {
    /// Absolute http(s) URL.
    url: String,
    /// HTTP method; GET when absent.
    method: Option<String>,
    /// Request headers.
    #[serde(default)]
    headers: BTreeMap<String, String>,
    /// Request body (UTF-8).
    body: Option<String>,
}

#[derive(Debug, Clone)]
struct Fetch {
    http: reqwest::Client,
    /// Connections accepted by the `--listen` listener.
    accepted: Arc<AtomicU64>,
    tool_router: ToolRouter<Self>,
}

#[tool_router]
impl Fetch {
    #[tool(description = "Performs an HTTP request and returns status, headers and body")]
    async fn fetch(&self, Parameters(args): Parameters<FetchArgs>) -> CallToolResult {
        match self.perform(args).await {
            Ok(value) => CallToolResult::structured(value),
            Err(message) => CallToolResult::error(vec![ContentBlock::text(message)]),
        }
    }

    #[tool(description = "Returns this server's environment variables")]
    async fn env(&self) -> CallToolResult {
        let vars: BTreeMap<String, String> = std::env::vars_os()
            .map(|(k, v)| (k.to_string_lossy().into(), v.to_string_lossy().into()))
            .collect();
        CallToolResult::structured(serde_json::json!({ "env": vars }))
    }

    #[tool(description = "Counts the connections the --listen listener accepted")]
    async fn accepted(&self) -> CallToolResult {
        CallToolResult::structured(
            serde_json::json!({ "accepted": self.accepted.load(Ordering::SeqCst) }),
        )
    }
}

impl Fetch {
    async fn perform(&self, args: FetchArgs) -> Result<serde_json::Value, String> {
        let method = args.method.as_deref().unwrap_or("GET");
        let method = reqwest::Method::from_bytes(method.as_bytes())
            .map_err(|_| format!("invalid method {method:?}"))?;
        let mut request = self.http.request(method, &args.url);
        for (name, value) in &args.headers {
            request = request.header(name, value);
        }
        if let Some(body) = args.body {
            request = request.body(body);
        }
        let mut response = request
            .send()
            .await
            .map_err(|e| format!("request failed: {}", error_chain(&e)))?;
        let status = response.status().as_u16();
        let headers: BTreeMap<String, String> = response
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v.as_bytes()).into()))
            .collect();
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| format!("reading body failed: {}", error_chain(&e)))?
        {
            let room = MAX_BODY_BYTES - body.len();
            body.extend_from_slice(&chunk[..chunk.len().min(room)]);
            if body.len() == MAX_BODY_BYTES {
                break;
            }
        }
        Ok(serde_json::json!({
            "status": status,
            "headers": headers,
            "body": String::from_utf8_lossy(&body),
        }))
    }
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Fetch {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }
}

/// Trusts `SSL_CERT_FILE` when set (the sandbox's only CA), else the system bundle.
fn http_client() -> anyhow::Result<reqwest::Client> {
    let bundle = std::env::var_os("SSL_CERT_FILE")
        .unwrap_or_else(|| "/etc/ssl/certs/ca-certificates.crt".into());
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(std::time::Duration::from_secs(30));
    match std::fs::read(&bundle) {
        Ok(pem) => {
            for cert in reqwest::Certificate::from_pem_bundle(&pem)? {
                builder = builder.add_root_certificate(cert);
            }
        }
        Err(e) => eprintln!("fetch-mcp: no CA bundle at {bundle:?} ({e}); https will fail"),
    }
    Ok(builder.build()?)
}

/// `--listen ADDR`: accepts TCP connections on ADDR and counts them (each is closed at once).
fn listen_from_args() -> anyhow::Result<Option<std::net::TcpListener>> {
    let mut args = std::env::args().skip(1);
    match (args.next().as_deref(), args.next(), args.next()) {
        (None, _, _) => Ok(None),
        (Some("--listen"), Some(addr), None) => Ok(Some(
            std::net::TcpListener::bind(&addr)
                .map_err(|e| anyhow::anyhow!("--listen {addr}: {e}"))?,
        )),
        _ => anyhow::bail!("usage: fetch-mcp [--listen ADDR]"),
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let listener = listen_from_args()?;
    let accepted = Arc::new(AtomicU64::new(0));
    let mut tool_router = Fetch::tool_router();
    match listener {
        Some(listener) => {
            let count = accepted.clone();
            std::thread::spawn(move || {
                for connection in listener.incoming() {
                    if connection.is_ok() {
                        count.fetch_add(1, Ordering::SeqCst);
                    }
                }
            });
        }
        None => tool_router.remove_route("accepted"),
    }
    let server = Fetch {
        http: http_client()?,
        accepted,
        tool_router,
    };
    let service = server.serve(rmcp::transport::stdio()).await?;
    service.waiting().await?;
    Ok(())
}
