//! Metrics in Prometheus text format at `GET /metrics`, and the instrumentation that only the
//! binary can do: HTTP and GraphQL request metrics, and gauges sampled from the database.
//!
//! Library crates record through the `metrics` facade (commands, projections, process-manager
//! actions, business counters); this module installs the one recorder per process that turns
//! all of it into Prometheus text.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use async_graphql::extensions::{Extension, ExtensionContext, ExtensionFactory, NextExecute};
use async_graphql::parser::types::{ExecutableDocument, OperationType, Selection};
use async_graphql::{Response as GqlResponse, ServerResult, Variables};
use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use purser_command_api::bus::CommandBus;
use purser_command_api::trace::{TraceKind, TraceLog};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

/// Projection batch-size buckets, in events.
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0];

/// Latency buckets in seconds: from sub-millisecond database-bound work to slow gateways.
const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The process's Prometheus handle, installed on first use. Several apps in one process (in
/// tests) share it, as they share the process.
pub fn prometheus() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets(BUCKETS)
            .expect("the bucket list is not empty")
            // Batch sizes are counts of events, not seconds.
            .set_buckets_for_metric(
                metrics_exporter_prometheus::Matcher::Full("purser_projection_batch_size".into()),
                BATCH_BUCKETS,
            )
            .expect("the bucket list is not empty")
            .build_recorder();
        let handle = recorder.handle();
        // Another recorder may already be installed (a test harness); then this handle
        // renders an empty page rather than failing the process.
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
}

/// `GET /metrics`.
pub async fn metrics_endpoint() -> Response {
    let body = prometheus().render();
    Response::builder()
        .header(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )
        .body(body.into())
        .expect("a valid response")
}

/// Request count and latency per route and status.
pub async fn http_metrics(request: Request, next: Next) -> Response {
    let path = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = request.method().to_string();
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    let elapsed = started.elapsed().as_secs_f64();
    metrics::counter!("purser_http_requests_total", "method" => method.clone(), "path" => path.clone(), "status" => status.clone())
        .increment(1);
    metrics::histogram!("purser_http_request_duration_seconds", "method" => method, "path" => path)
        .record(elapsed);
    if response.status().is_server_error() {
        metrics::counter!("purser_http_errors_total", "status" => status).increment(1);
    }
    response
}

/// GraphQL metrics per operation and a `data_lookup` trace event per query.
///
/// The operation label is the first root field the operation selects (`products`,
/// `cartCheckout`, `introspection`), never the client's `operationName`: root fields are a
/// fixed set of the schema, and the label is only used after validation has passed, so no
/// client can create series.
pub struct GraphqlMetrics {
    pub trace: Option<TraceLog>,
}

impl ExtensionFactory for GraphqlMetrics {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(GraphqlMetricsExtension {
            trace: self.trace.clone(),
            shapes: std::sync::Mutex::new(Vec::new()),
        })
    }
}

struct GraphqlMetricsExtension {
    trace: Option<TraceLog>,
    /// (operation name, type, label) of each operation of the request's document, found
    /// when it is parsed.
    shapes: std::sync::Mutex<Vec<(Option<String>, &'static str, String)>>,
}

/// (name, type, label) of each operation of a document (see [`GraphqlMetrics`]).
fn operation_shapes(doc: &ExecutableDocument) -> Vec<(Option<String>, &'static str, String)> {
    doc.operations
        .iter()
        .map(|(name, op)| {
            let op = &op.node;
            let kind = match op.ty {
                OperationType::Mutation => "mutation",
                OperationType::Subscription => "subscription",
                OperationType::Query => "query",
            };
            let fields: Vec<&str> = op
                .selection_set
                .node
                .items
                .iter()
                .filter_map(|s| match &s.node {
                    Selection::Field(f) => Some(f.node.name.node.as_str()),
                    _ => None,
                })
                .collect();
            let label = match fields.iter().find(|f| !f.starts_with("__")) {
                Some(f) => (*f).to_owned(),
                None if !fields.is_empty() => "introspection".to_owned(),
                None => "other".to_owned(),
            };
            (name.map(|n| n.to_string()), kind, label)
        })
        .collect()
}

#[async_trait::async_trait]
impl Extension for GraphqlMetricsExtension {
    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: async_graphql::extensions::NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let doc = next.run(ctx, query, variables).await?;
        *self.shapes.lock().expect("lock") = operation_shapes(&doc);
        Ok(doc)
    }

    async fn execute(
        &self,
        ctx: &ExtensionContext<'_>,
        operation_name: Option<&str>,
        next: NextExecute<'_>,
    ) -> GqlResponse {
        let started = Instant::now();
        let response = next.run(ctx, operation_name).await;
        let (kind, operation) = self
            .shapes
            .lock()
            .expect("lock")
            .iter()
            .find(|(name, _, _)| operation_name.is_none() || name.as_deref() == operation_name)
            .map(|(_, kind, label)| (*kind, label.clone()))
            .unwrap_or(("query", "other".to_owned()));
        let outcome = if response.errors.is_empty() {
            "ok"
        } else {
            "error"
        };
        metrics::counter!("purser_graphql_requests_total", "operation" => operation.clone(), "type" => kind, "outcome" => outcome)
            .increment(1);
        metrics::histogram!("purser_graphql_request_duration_seconds", "operation" => operation.clone(), "type" => kind)
            .record(started.elapsed().as_secs_f64());
        if kind == "query"
            && let Some(trace) = &self.trace
        {
            let correlation = ctx
                .data_opt::<purser_command_api::CommandContext>()
                .map(|c| c.correlation_id);
            let actor = ctx
                .data_opt::<purser_api_core::auth::Viewer>()
                .map(|v| v.actor());
            let result = match response.errors.first() {
                None => Ok(()),
                Some(e) => Err(e.message.clone()),
            };
            trace.record(purser_command_api::trace::TraceEvent {
                kind: TraceKind::DataLookup,
                outcome: result,
                correlation_id: correlation,
                actor,
                subject: Some(operation),
                duration: Some(started.elapsed()),
            });
        }
        response
    }
}

/// Samples gauges that live in the database, the pools or the command bus's state cache,
/// every `every`, until `stop`. `read_pool` is the `DATABASE_READ_URL` pool when it is a
/// separate one; `bus` is the command side's.
pub async fn sample_gauges(
    pool: PgPool,
    read_pool: Option<PgPool>,
    bus: Option<CommandBus>,
    every: Duration,
    stop: CancellationToken,
) {
    loop {
        sample_pool("primary", &pool);
        if let Some(read_pool) = &read_pool {
            sample_pool("read", read_pool);
        }
        if let Some(bus) = &bus {
            purser_command_api::state_cache::publish(&bus.cache_stats());
            let counts: Result<(i64, i64, i64, i64), sqlx::Error> = sqlx::query_as(
                "select (select count(*) from purser.outbox),
                        d.pending, d.overdue,
                        (select count(*) from purser.notification_queue)
                 from (select count(*) as pending,
                              count(*) filter (where due_at < now()) as overdue
                       from purser.deadlines) d",
            )
            .fetch_one(&pool)
            .await;
            if let Ok((outbox, deadlines, overdue, notifications)) = counts {
                metrics::gauge!("purser_outbox_backlog").set(outbox as f64);
                metrics::gauge!("purser_deadlines_pending").set(deadlines as f64);
                metrics::gauge!("purser_deadlines_overdue").set(overdue as f64);
                metrics::gauge!("purser_notification_queue_depth").set(notifications as f64);
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}

fn sample_pool(name: &'static str, pool: &PgPool) {
    metrics::gauge!("purser_db_pool_connections", "pool" => name, "state" => "open")
        .set(f64::from(pool.size()));
    metrics::gauge!("purser_db_pool_connections", "pool" => name, "state" => "idle")
        .set(pool.num_idle() as f64);
    metrics::gauge!("purser_db_pool_max_connections", "pool" => name)
        .set(f64::from(pool.options().get_max_connections()));
}
