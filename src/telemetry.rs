//! Logging and tracing: structured `tracing` output (text for people or JSON for machines),
//! and, when an OTLP endpoint is configured, the same spans exported as OpenTelemetry traces.
//!
//! Trace ids follow the correlation id. A root span that carries a `correlation_id` field (a
//! process-manager step, a projection write, a command run outside a request, an HTTP request
//! with an `x-correlation-id` header) takes that UUID as its trace id, and a request without
//! one lends its trace id to the correlation id of what it starts (see `http::command_context`).
//! So one checkout is one trace, from the mutation through every process-manager step to the
//! last read-model row, even though those run later, in other tasks or other processes.

use std::time::Duration;

use opentelemetry::trace::{TraceContextExt, TraceId, TracerProvider as _};
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing_opentelemetry::{OpenTelemetrySpanExt, OtelData};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// What `init` needs; read from the environment by `Config`.
#[derive(Debug, Clone, Default)]
pub struct TelemetryConfig {
    /// `PURSER_LOG`, an `EnvFilter` directive.
    pub log_filter: String,
    /// `PURSER_LOG_FORMAT=json`.
    pub log_json: bool,
    /// Export spans over OTLP/HTTP (protobuf). On when `OTEL_EXPORTER_OTLP_ENDPOINT` or
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is set, off otherwise; the exporter reads those
    /// variables (and `OTEL_BSP_*`) itself.
    pub otlp: bool,
    /// `PURSER_OTLP_FILTER`: which spans are exported. By default every info span plus the
    /// per-event `project` spans of the projections (debug level, so not in the logs).
    pub otlp_filter: String,
    /// `OTEL_SERVICE_NAME`, default `purser`.
    pub service_name: String,
}

/// Flushes exported spans when dropped (at the end of `main`, outside the async runtime).
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(e) = provider.shutdown_with_timeout(Duration::from_secs(5))
        {
            eprintln!("could not flush the last traces to the OTLP endpoint: {e}");
        }
    }
}

/// Installs the global subscriber. A second call (tests starting several apps in one process)
/// keeps the first subscriber.
pub fn init(config: &TelemetryConfig) -> anyhow::Result<Telemetry> {
    let filter = EnvFilter::try_new(&config.log_filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt = if config.log_json {
        fmt.json().flatten_event(true).boxed()
    } else {
        fmt.compact().boxed()
    };
    let logs = fmt.with_filter(filter);
    if !config.otlp {
        let _ = tracing_subscriber::registry().with(logs).try_init();
        return Ok(Telemetry { provider: None });
    }
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .build()
        .map_err(|e| anyhow::anyhow!("cannot set up the OTLP exporter: {e}"))?;
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        // Every span: trace ids made from correlation UUIDs would defeat a ratio sampler (its
        // decision reads bits a UUID fixes), so sampling belongs in the collector.
        .with_sampler(opentelemetry_sdk::trace::Sampler::AlwaysOn)
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name(config.service_name.clone())
                .build(),
        )
        .build();
    let tracer = provider.tracer("purser");
    let mut otlp_filter = EnvFilter::try_new(&config.otlp_filter)
        .map_err(|e| anyhow::anyhow!("PURSER_OTLP_FILTER: {e}"))?;
    // The exporter's own HTTP client must not export spans about exporting spans.
    for quiet in [
        "hyper=off",
        "hyper_util=off",
        "reqwest=off",
        "h2=off",
        "opentelemetry=off",
    ] {
        otlp_filter = otlp_filter.add_directive(quiet.parse().expect("a valid directive"));
    }
    let traces = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .and_then(CorrelatedTraces)
        .with_filter(otlp_filter);
    let _ = tracing_subscriber::registry()
        .with(logs)
        .with(traces)
        .try_init();
    Ok(Telemetry {
        provider: Some(provider),
    })
}

/// The trace id of the current span as a UUID, when spans are exported and one is open: a
/// request without an `x-correlation-id` uses it as its correlation id, so what it causes
/// later joins its trace.
pub fn current_trace_uuid() -> Option<uuid::Uuid> {
    let context = tracing::Span::current().context();
    let span = context.span();
    let trace = span.span_context();
    trace
        .is_valid()
        .then(|| uuid::Uuid::from_bytes(trace.trace_id().to_bytes()))
}

/// A caller's W3C `traceparent`, when it is valid by the W3C rules (the same parser that
/// continues the trace decides, so the two never disagree).
pub fn remote_trace(traceparent: &str) -> Option<opentelemetry::Context> {
    use opentelemetry::propagation::TextMapPropagator;
    let carrier =
        std::collections::HashMap::from([("traceparent".to_owned(), traceparent.to_owned())]);
    let context = opentelemetry_sdk::propagation::TraceContextPropagator::new().extract(&carrier);
    let valid = context.span().span_context().is_valid();
    valid.then_some(context)
}

/// The trace id of a valid `traceparent`, as 32 lower-case hex digits.
pub fn remote_trace_id(traceparent: &str) -> Option<String> {
    remote_trace(traceparent).map(|c| c.span().span_context().trace_id().to_string())
}

/// Sets the parent of `span` from a W3C `traceparent` header value, so a caller's trace
/// continues through Purser. A no-op when spans are not exported or the header is invalid.
pub fn continue_remote_trace(span: &tracing::Span, traceparent: &str) {
    if let Some(context) = remote_trace(traceparent) {
        span.set_parent(context);
    }
}

/// Gives a root span with a `correlation_id` field the trace id of that correlation id. Runs
/// after the OpenTelemetry layer has set the span up, and before any child can copy its trace
/// id (children are created later).
struct CorrelatedTraces;

impl<S> Layer<S> for CorrelatedTraces
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut extensions = span.extensions_mut();
        // Most spans are children: settle that before looking at any field.
        let Some(data) = extensions
            .get_mut::<OtelData>()
            .filter(|d| !d.parent_cx.has_active_span())
        else {
            return;
        };
        let mut found = CorrelationField(None);
        attrs.record(&mut found);
        let Some(correlation) = found.0 else { return };
        let trace_id = TraceId::from_bytes(correlation.into_bytes());
        // The nil UUID is no trace id: the span keeps the random one it has.
        if trace_id != TraceId::INVALID {
            data.builder.trace_id = Some(trace_id);
        }
    }
}

struct CorrelationField(Option<uuid::Uuid>);

impl Visit for CorrelationField {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "correlation_id" {
            self.0 = uuid::Uuid::parse_str(&format!("{value:?}")).ok();
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "correlation_id" {
            self.0 = uuid::Uuid::parse_str(value).ok();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_valid_traceparent_gives_a_trace_id() {
        let id = "4bf92f3577b34da6a3ce929d0e0e4736";
        assert_eq!(
            remote_trace_id(&format!("00-{id}-00f067aa0ba902b7-01")).as_deref(),
            Some(id)
        );
        for bad in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736",
            "",
        ] {
            assert_eq!(remote_trace_id(bad), None, "{bad}");
        }
    }
}
