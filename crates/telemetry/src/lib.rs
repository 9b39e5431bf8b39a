//! Logs and traces of the `gigmcp` process: one `tracing` subscriber with the log layer (text,
//! or JSON for collectors) and, when `OTEL_EXPORTER_OTLP_*` names a collector, an OpenTelemetry
//! layer that exports spans over OTLP/HTTP (protobuf) in batches from a thread of its own, so a
//! slow or absent collector never holds up a request.
//!
//! Owns: which spans leave the process (those the log filter keeps; the gateway's are at
//! `info`) and the W3C trace-context propagation clients use ([`W3cTraceContext`]). Must never:
//! put a credential into a span (the gateway's spans carry request ids, methods, tool and
//! server names, never arguments, tokens or principals' secrets), nor make exporting a
//! condition of serving.

#![forbid(unsafe_code)]

mod peer_gone;

use std::collections::HashMap;

use gig_config::{LogConfig, LogFormat, TracesConfig};
use opentelemetry::propagation::TextMapPropagator as _;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("GIG_LOG={filter:?} is not a valid log filter: {reason}")]
    Filter { filter: String, reason: String },
    #[error("the OTLP exporter for {endpoint}: {reason}")]
    Exporter { endpoint: String, reason: String },
    #[error("installing the log subscriber: {0}")]
    Install(String),
}

/// Keeps exporting until dropped; dropping flushes the spans not yet sent.
#[derive(Debug)]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Whether spans are exported.
    pub fn exporting(&self) -> bool {
        self.provider.is_some()
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(e) = provider.shutdown()
        {
            eprintln!("gigmcp: flushing traces at exit: {e}");
        }
    }
}

/// Added to every log filter (see [`init`]).
const NO_OAUTH_DEBUG: &str = "rmcp::transport::auth=info";

/// Installs the process's subscriber: logs on stderr (colour only at a terminal) and, with an
/// endpoint, spans exported to it.
pub fn init(log: &LogConfig, traces: &TracesConfig) -> Result<Telemetry, TelemetryError> {
    let filter = tracing_subscriber::EnvFilter::try_new(&log.filter)
        .map_err(|e| TelemetryError::Filter {
            filter: log.filter.clone(),
            reason: e.to_string(),
        })?
        // rmcp's OAuth code logs authorization codes and token responses (vendor fields, an
        // ID token among them, unredacted) at debug: never below info, whatever GIG_LOG says.
        .add_directive(NO_OAUTH_DEBUG.parse().map_err(
            |e: tracing_subscriber::filter::ParseError| TelemetryError::Filter {
                filter: NO_OAUTH_DEBUG.to_owned(),
                reason: e.to_string(),
            },
        )?);
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let (text, json) = match log.format {
        LogFormat::Text => (
            Some(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_ansi(ansi),
            ),
            None,
        ),
        LogFormat::Json => (
            None,
            Some(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_writer(std::io::stderr)
                    .with_ansi(false),
            ),
        ),
    };
    let provider = traces
        .endpoint
        .as_ref()
        .map(|e| provider(e, traces))
        .transpose()?;
    let otel = provider
        .as_ref()
        .map(|p| tracing_opentelemetry::layer().with_tracer(p.tracer("gigmcp")));
    tracing_subscriber::registry()
        .with(filter)
        .with(peer_gone::DropPeerGone)
        .with(text)
        .with(json)
        .with(otel)
        .try_init()
        .map_err(|e| TelemetryError::Install(e.to_string()))?;
    if let Some(endpoint) = &traces.endpoint {
        tracing::info!(%endpoint, service = %traces.service_name, "exporting traces over OTLP/HTTP");
    }
    Ok(Telemetry { provider })
}

fn provider(
    endpoint: &url::Url,
    traces: &TracesConfig,
) -> Result<SdkTracerProvider, TelemetryError> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(endpoint.as_str())
        .build()
        .map_err(|e| TelemetryError::Exporter {
            endpoint: endpoint.to_string(),
            reason: e.to_string(),
        })?;
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(traces.service_name.clone())
        .build();
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        // Every request is recorded: a client's `traceparent` can continue a trace, not switch
        // the gateway's own spans off (its sampled flag is not ours to obey).
        .with_sampler(opentelemetry_sdk::trace::Sampler::AlwaysOn)
        .build())
}

/// W3C trace context (`traceparent`): a span continues the trace a client started.
#[derive(Debug, Default, Clone, Copy)]
pub struct W3cTraceContext;

impl gig_gateway::trace::ContinueTrace for W3cTraceContext {
    fn continue_from(&self, span: &tracing::Span, traceparent: &str) {
        let carrier = HashMap::from([("traceparent".to_owned(), traceparent.to_owned())]);
        let context = TraceContextPropagator::new().extract(&carrier);
        // A malformed value yields an empty context; the span then keeps its own parent.
        if let Err(e) = span.set_parent(context) {
            tracing::warn!(error = %e, "cannot continue a client's trace");
        }
    }
}
