//! Trace spans of `/mcp`, named after the OpenTelemetry conventions: the HTTP request
//! (`POST /mcp`), inside it one span per MCP request (`tools/call echo_echo`, attributes
//! `mcp.method.name` and `gen_ai.tool.name`), inside that the call to the backend (a client
//! span named after the backend's own tool). rmcp serves a request in its own task, so the HTTP
//! layer hands its span down in the request's extensions ([`RequestSpan`]) rather than relying
//! on the current span.
//!
//! A client's W3C `traceparent` (the HTTP header, or `_meta.traceparent` from a 2026-07-28
//! client) is continued through [`ContinueTrace`], which the binary provides when it exports
//! traces; this crate stays free of any exporter. Without one these are ordinary `tracing`
//! spans in the logs.

use std::sync::Arc;

use rmcp::RoleServer;
use rmcp::service::RequestContext;

/// The span of the HTTP request an MCP request arrived in.
#[derive(Debug, Clone)]
pub struct RequestSpan(pub tracing::Span);

/// Makes a span continue the trace a W3C `traceparent` names (ignored when malformed).
pub trait ContinueTrace: Send + Sync + std::fmt::Debug {
    fn continue_from(&self, span: &tracing::Span, traceparent: &str);
}

/// A `traceparent` is 55 visible ASCII characters (version 00); anything else is not looked at.
pub(crate) fn plausible_traceparent(value: &str) -> bool {
    value.len() == 55 && value.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
}

/// The span of one MCP request: a child of its HTTP request's span, or of the trace its
/// `_meta.traceparent` names.
pub(crate) fn operation_span(
    context: &RequestContext<RoleServer>,
    method: &str,
    target: &str,
    meta_traceparent: Option<&str>,
    continuation: Option<&Arc<dyn ContinueTrace>>,
) -> tracing::Span {
    let parent = context
        .extensions
        .get::<http::request::Parts>()
        .and_then(|parts| parts.extensions.get::<RequestSpan>())
        .map(|s| s.0.clone())
        .unwrap_or_else(tracing::Span::none);
    // The target is the client's text: named only when it is a name the gateway could have
    // exposed (bounded, plain), never megabytes of whatever was sent.
    let target = if crate::naming::is_valid_name(target) {
        target
    } else {
        "(invalid)"
    };
    let span = tracing::info_span!(
        parent: &parent,
        "mcp.server",
        otel.name = %format!("{method} {target}"),
        otel.kind = "server",
        mcp.method.name = %method,
        gen_ai.tool.name = %target,
    );
    if let (Some(traceparent), Some(continuation)) = (meta_traceparent, continuation)
        && plausible_traceparent(traceparent)
    {
        continuation.continue_from(&span, traceparent);
    }
    span
}

/// The span of the call a backend answers.
pub(crate) fn backend_span(method: &str, backend: &str, item: &str) -> tracing::Span {
    tracing::info_span!(
        "mcp.client",
        otel.name = %format!("{method} {item}"),
        otel.kind = "client",
        mcp.method.name = %method,
        gen_ai.tool.name = %item,
        server = %backend,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_traceparent_shaped_values_are_continued() {
        assert!(plausible_traceparent(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        ));
        for bad in [
            "",
            "00-xyz",
            &"0".repeat(55),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\n",
        ] {
            let looks = bad.len() == 55 && bad.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-');
            assert_eq!(plausible_traceparent(bad), looks, "{bad:?}");
        }
    }
}
