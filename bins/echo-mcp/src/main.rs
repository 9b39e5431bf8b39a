//! `echo-mcp`: the trivial stdio MCP server behind the walking skeleton.
//!
//! One tool (`echo`), one resource (`echo://readme`) and one prompt (`repeat`): enough to show
//! every kind of aggregated item end to end. It must stay static and dependency-light so it
//! can run inside the sandbox from a bare image.
//!
//! With `--fault-tools` it also lists `allocate`, which touches the given number of MiB (the
//! fault tests use it to have a sandboxed server killed by its memory limit mid-call), and
//! `sleep`, a slow call the load test cancels.

#![forbid(unsafe_code)]

use rmcp::handler::server::router::prompt::PromptRouter;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{
    GetPromptResult, ListResourcesResult, PaginatedRequestParams, PromptMessage,
    ReadResourceRequestParams, ReadResourceResponse, ReadResourceResult, Resource,
    ResourceContents, Role, ServerCapabilities, ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::{
    ErrorData, RoleServer, ServerHandler, ServiceExt, prompt, prompt_handler, prompt_router,
    schemars, tool, tool_handler, tool_router,
};

const README_URI: &str = "echo://readme";
const README_TEXT: &str = "echo-mcp repeats what it is given. Call the `echo` tool.";

#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
struct EchoArgs {
    /// The text to send back.
    message: String,
}

#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
struct RepeatArgs {
    /// The text the prompt asks the model to repeat.
    text: String,
}

#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
struct AllocateArgs {
    /// How many MiB to allocate and touch.
    megabytes: usize,
}

#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
struct SleepArgs {
    /// How long to take, in milliseconds (at most a minute).
    milliseconds: u64,
}

#[derive(Debug, Clone)]
struct Echo {
    tool_router: ToolRouter<Self>,
    prompt_router: PromptRouter<Self>,
}

#[tool_router]
impl Echo {
    #[tool(description = "Returns the given message unchanged")]
    fn echo(&self, Parameters(EchoArgs { message }): Parameters<EchoArgs>) -> String {
        message
    }
}

#[tool_router(router = fault_tool_router)]
impl Echo {
    #[tool(description = "Allocates and touches the given number of MiB (a fault-test aid)")]
    fn allocate(&self, Parameters(AllocateArgs { megabytes }): Parameters<AllocateArgs>) -> String {
        // Touch every page, so the memory is resident and counts against the cgroup's limit.
        let held = vec![1u8; megabytes.saturating_mul(1 << 20)];
        format!(
            "held {} MiB",
            held.iter().map(|&b| usize::from(b)).sum::<usize>() >> 20
        )
    }

    #[tool(
        description = "Answers after the given number of milliseconds (a slow call; cancellable)"
    )]
    async fn sleep(&self, Parameters(SleepArgs { milliseconds }): Parameters<SleepArgs>) -> String {
        let milliseconds = milliseconds.min(60_000);
        tokio::time::sleep(std::time::Duration::from_millis(milliseconds)).await;
        format!("slept {milliseconds} ms")
    }
}

#[prompt_router]
impl Echo {
    #[prompt(description = "Asks the model to repeat a text verbatim")]
    fn repeat(&self, Parameters(RepeatArgs { text }): Parameters<RepeatArgs>) -> GetPromptResult {
        GetPromptResult::new(vec![PromptMessage::new_text(
            Role::User,
            format!("Repeat exactly: {text}"),
        )])
    }
}

#[tool_handler(router = self.tool_router)]
#[prompt_handler(router = self.prompt_router)]
impl ServerHandler for Echo {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_resources()
                .enable_prompts()
                .build(),
        )
        .with_instructions("Echoes messages back; used to check a gateway end to end.")
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        let readme = Resource::new(README_URI, "readme").with_mime_type("text/plain");
        Ok(ListResourcesResult::with_all_items(vec![readme]))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        if request.uri != README_URI {
            return Err(ErrorData::resource_not_found(
                format!("no resource {}", request.uri),
                None,
            ));
        }
        Ok(ReadResourceResult::new(vec![ResourceContents::text(README_TEXT, README_URI)]).into())
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let mut tool_router = Echo::tool_router();
    if std::env::args().any(|arg| arg == "--fault-tools") {
        tool_router += Echo::fault_tool_router();
    }
    let server = Echo {
        tool_router,
        prompt_router: Echo::prompt_router(),
    };
    let service = server.serve(rmcp::transport::stdio()).await?;
    service.waiting().await?;
    Ok(())
}
