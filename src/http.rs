//! HTTP: health, readiness, and GraphQL over HTTP.
//!
//! GraphQL over HTTP follows the GraphQL-over-HTTP spec: POST with `application/json`; GET for
//! queries only (a mutation over GET is 405); the response is `application/graphql-response+json`
//! when the client accepts it (then a request that cannot be executed at all is a 400) and
//! `application/json` otherwise (always 200). Every error body is JSON with a code; nothing here
//! panics or answers 500 for bad input.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use purser_api_core::auth::{ClientAddr, Tokens, Viewer};
use purser_api_core::read::WaitDeadline;
use purser_api_core::sessions::{AuthError, SessionCheck};
use purser_command_api::CommandContext;
use purser_event_store::EventStore;
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

use crate::admission::{self, Refusal, Transport};
use crate::config::Limits;
use crate::reply::error_response;
use crate::schema::PurserSchema;

/// The largest request body accepted.
pub const MAX_BODY_BYTES: usize = 256 * 1024;

#[derive(Clone)]
pub struct HttpState {
    pub schema: PurserSchema,
    pub pool: PgPool,
    pub store: Arc<dyn EventStore>,
    pub tokens: Tokens,
    /// Whether a token's session is live, and the account's current roles.
    pub sessions: Arc<SessionCheck>,
    pub bus: purser_command_api::CommandBus,
    /// What one GraphQL request may be (admission).
    pub limits: Limits,
    /// GraphQL over WebSocket.
    pub ws: crate::websocket::WsState,
    /// Requests per client address on /graphql (every transport).
    pub limiter: crate::ratelimit::RateLimiter,
    /// Set when the Stripe gateway is configured; the webhook endpoint answers 404 otherwise.
    pub stripe_webhook_secret: Option<String>,
    /// Origins browsers may call from (`PURSER_CORS_ORIGINS`); empty: no CORS headers at all.
    pub cors_origins: Vec<String>,
    /// Automatic persisted queries, shared by POST and GET.
    pub apq: crate::admission::persisted::PersistedQueries,
}

/// The viewer a request speaks for: anonymous without an `Authorization` header, the token's
/// customer with a valid bearer token, and a 401 for anything else (expired, forged, wrong
/// scheme), so a client never silently runs as a guest by mistake.
async fn viewer(state: &HttpState, headers: &HeaderMap) -> Result<Viewer, Box<Response>> {
    let Some(raw) = headers.get(header::AUTHORIZATION) else {
        return Ok(Viewer::anonymous());
    };
    let unauthorized = |message: &str| {
        let mut r = error_response(StatusCode::UNAUTHORIZED, "UNAUTHENTICATED", message);
        r.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        Box::new(r)
    };
    let raw = raw
        .to_str()
        .map_err(|_| unauthorized("the Authorization header is not valid text"))?;
    let Some(token) = raw
        .strip_prefix("Bearer ")
        .or_else(|| raw.strip_prefix("bearer "))
    else {
        return Err(unauthorized("use `Authorization: Bearer <token>`"));
    };
    match state
        .sessions
        .authenticate(&state.tokens, token.trim())
        .await
    {
        Ok(viewer) => Ok(viewer),
        Err(AuthError::Unavailable(e)) => {
            tracing::warn!(error = %e, "cannot check a session");
            Err(Box::new(error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                "UNAVAILABLE",
                "sign-in cannot be checked right now; try again shortly",
            )))
        }
        Err(e) => Err(unauthorized(&e.to_string())),
    }
}

pub fn router(state: HttpState) -> Router {
    let cors = cors(&state.cors_origins);
    let router = Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route(
            "/graphql",
            get(graphql_get)
                .post(graphql_post)
                .layer(axum::middleware::from_fn_with_state(
                    state.limiter.clone(),
                    crate::ratelimit::limit,
                )),
        )
        .route("/graphiql", get(graphiql))
        .route("/webhooks/stripe", axum::routing::post(stripe_webhook))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn(
            crate::observability::http_metrics,
        ))
        .layer(tower_http::trace::TraceLayer::new_for_http().make_span_with(request_span))
        .with_state(state);
    match cors {
        Some(cors) => router.layer(cors),
        None => router,
    }
}

/// CORS for the listed origins: preflights answered, GET and POST with the headers a GraphQL
/// client sends. No credentials mode: the API authenticates with a bearer token in
/// `Authorization`, never a cookie, so a browser needs no `credentials: 'include'`, and a
/// page on an unlisted origin gets no CORS headers and cannot read any answer.
fn cors(origins: &[String]) -> Option<tower_http::cors::CorsLayer> {
    use axum::http::{HeaderName, Method};
    use tower_http::cors::{AllowOrigin, CorsLayer};
    if origins.is_empty() {
        return None;
    }
    let origins: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins))
            .allow_methods([Method::GET, Method::POST])
            .allow_headers([
                header::CONTENT_TYPE,
                header::AUTHORIZATION,
                header::IF_NONE_MATCH,
                HeaderName::from_static("x-correlation-id"),
                HeaderName::from_static("traceparent"),
            ])
            .expose_headers([header::ETAG, header::CACHE_CONTROL, header::RETRY_AFTER])
            .max_age(std::time::Duration::from_secs(600)),
    )
}

/// One span per HTTP request. It carries the caller's `x-correlation-id` when that is a UUID
/// (exported traces then use it as their trace id) and continues a caller's W3C `traceparent`.
/// The query string is left out: GraphQL GET requests carry variables there.
fn request_span(request: &axum::extract::Request) -> tracing::Span {
    let headers = request.headers();
    let path = request.uri().path();
    // Probes and scrapes are debug spans: the default export filter leaves them out.
    let span = if matches!(path, "/health" | "/ready" | "/metrics") {
        tracing::debug_span!("request", method = %request.method(), path)
    } else {
        tracing::info_span!(
            "request",
            method = %request.method(),
            path,
            correlation_id = header_correlation_id(headers).map(tracing::field::display),
        )
    };
    if let Some(traceparent) = headers.get("traceparent").and_then(|v| v.to_str().ok()) {
        crate::telemetry::continue_remote_trace(&span, traceparent);
    }
    span
}

fn header_correlation_id(headers: &HeaderMap) -> Option<Uuid> {
    headers
        .get("x-correlation-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| Uuid::parse_str(v.trim()).ok())
        .filter(|id| !id.is_nil())
}

async fn not_found() -> Response {
    error_response(
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
        "no such endpoint; GraphQL is served at /graphql",
    )
}

async fn health() -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        r#"{"status":"ok"}"#,
    )
        .into_response()
}

/// Ready when the database answers, every migration this build knows is applied, and the
/// event store answers; the body also names projections that are failing.
/// Prometheus metrics. The state cache's figures are read now, so a scrape sees them current
/// (the sampler also publishes them every few seconds).
async fn metrics(State(state): State<HttpState>) -> Response {
    purser_command_api::state_cache::publish(&state.bus.cache_stats());
    crate::observability::metrics_endpoint().await
}

async fn ready(State(state): State<HttpState>) -> Response {
    let database = sqlx::query("select 1").execute(&state.pool).await.is_ok();
    let migrations = purser_migrations::applied(&state.pool)
        .await
        .unwrap_or(false);
    let event_store = state.store.head().await.is_ok();
    let ok = database && migrations && event_store;
    // A failing projection does not make the process unready (its other read models and the
    // command side still serve), but it is named here so a probe's log shows it.
    let failing: Vec<String> = if migrations {
        sqlx::query_scalar(
            "select name from purser.projection_status where status = 'failing' order by name",
        )
        .fetch_all(&state.pool)
        .await
        .unwrap_or_default()
    } else {
        vec![]
    };
    let body = json!({
        "status": if ok { "ready" } else { "not_ready" },
        "checks": { "database": database, "migrations": migrations, "event_store": event_store },
        "failing_projections": failing,
    });
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

async fn graphiql() -> Html<String> {
    Html(
        async_graphql::http::GraphiQLSource::build()
            .endpoint("/graphql")
            .title("Purser GraphQL")
            .finish(),
    )
}

/// The per-request context commands carry: a correlation id and the trace id of a
/// `traceparent` header. The correlation id is the `x-correlation-id` header when it is a UUID;
/// otherwise the request's trace id (the caller's `traceparent`, or the trace of the exported
/// request span), so that what the request causes later joins its trace; otherwise a new one.
fn command_context(headers: &HeaderMap) -> CommandContext {
    let mut ctx = CommandContext::new("anonymous");
    ctx.trace_id = headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .and_then(crate::telemetry::remote_trace_id);
    if let Some(id) = header_correlation_id(headers)
        .or_else(|| {
            ctx.trace_id
                .as_deref()
                .and_then(|t| Uuid::try_parse(t).ok())
        })
        .or_else(crate::telemetry::current_trace_uuid)
    {
        ctx.correlation_id = id;
    }
    ctx
}

/// Which response media type the client gets.
#[derive(Clone, Copy, PartialEq, Eq)]
enum MediaType {
    GraphQlResponseJson,
    Json,
}

fn negotiate(headers: &HeaderMap) -> Result<MediaType, Box<Response>> {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if accept.trim().is_empty() {
        return Ok(MediaType::Json);
    }
    let types: Vec<&str> = accept
        .split(',')
        .map(|t| t.split(';').next().unwrap_or("").trim())
        .collect();
    if types.contains(&"application/graphql-response+json") {
        Ok(MediaType::GraphQlResponseJson)
    } else if types
        .iter()
        .any(|t| matches!(*t, "application/json" | "application/*" | "*/*"))
    {
        Ok(MediaType::Json)
    } else {
        Err(Box::new(error_response(
            StatusCode::NOT_ACCEPTABLE,
            "NOT_ACCEPTABLE",
            "this endpoint answers application/graphql-response+json or application/json",
        )))
    }
}

async fn execute(
    state: &HttpState,
    headers: &HeaderMap,
    mut request: async_graphql::Request,
    media: MediaType,
    transport: Transport,
    client: Option<ClientAddr>,
) -> Response {
    // A persisted query becomes its document before admission sees it, and is registered
    // only once admitted.
    let persisted = match persisted_hash(&mut request) {
        Ok(p) => p,
        Err(e) => return graphql_error(media, e.code(), e.message().into()),
    };
    if let Some(hash) = &persisted {
        match state.apq.resolve(hash, &request.query) {
            Ok(query) => request.query = query,
            Err(e) => return graphql_error(media, e.code(), e.message().into()),
        }
    }
    if let Err(refusal) = admission::admit(&mut request, transport, &state.limits) {
        return refused(media, transport, &refusal);
    }
    if let Some(hash) = &persisted {
        state.apq.register(hash, &request.query);
    }
    let tag = match transport == Transport::Get
        && crate::catalog_cache::is_anonymous_catalog_read(headers, &mut request)
    {
        true => crate::catalog_cache::etag(&state.pool).await,
        false => None,
    };
    if let Some(tag) = &tag
        && crate::catalog_cache::not_modified(headers, tag)
    {
        let mut r = StatusCode::NOT_MODIFIED.into_response();
        crate::catalog_cache::public(r.headers_mut(), tag.clone());
        return r;
    }
    let viewer = match viewer(state, headers).await {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let mut request = request
        .data(command_context(headers))
        .data(viewer)
        .data(WaitDeadline::default());
    if let Some(client) = client {
        request = request.data(client);
    }
    let response = state.schema.execute(request).await;
    // A request error (it could not be parsed, validated or started) produced no data and
    // its errors point at no field.
    let response_ok = response.errors.is_empty();
    let request_error = response.data == async_graphql::Value::Null
        && !response.errors.is_empty()
        && response.errors.iter().all(|e| e.path.is_empty());
    let mut body = serde_json::to_value(&response)
        .unwrap_or_else(|_| json!({ "errors": [{ "message": "response could not be encoded" }] }));
    let (status, content_type) = match media {
        MediaType::GraphQlResponseJson if request_error => {
            // The GraphQL-over-HTTP spec: a request that never executed has no `data` entry.
            if let Some(map) = body.as_object_mut() {
                map.remove("data");
            }
            (StatusCode::BAD_REQUEST, "application/graphql-response+json")
        }
        MediaType::GraphQlResponseJson => (StatusCode::OK, "application/graphql-response+json"),
        MediaType::Json => (StatusCode::OK, "application/json"),
    };
    let mut r = (
        status,
        [(header::CONTENT_TYPE, content_type)],
        body.to_string(),
    )
        .into_response();
    match tag {
        // An answer with errors (a timeout, say) is not the catalog as of the tag.
        Some(tag) if response_ok => crate::catalog_cache::public(r.headers_mut(), tag),
        _ if transport == Transport::Get => {
            r.headers_mut().insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static(crate::catalog_cache::PRIVATE),
            );
        }
        _ => {}
    }
    r
}

/// The APQ hash a request names (taking the extension out, so nothing else reads it).
fn persisted_hash(
    request: &mut async_graphql::Request,
) -> Result<Option<String>, crate::admission::persisted::ApqError> {
    let ext = request
        .extensions
        .0
        .remove("persistedQuery")
        .map(|v| v.into_json().unwrap_or_default());
    crate::admission::persisted::requested_hash(ext)
}

/// A request admission turned away: a 405 for a write sent with GET, otherwise a GraphQL
/// error with the refusal's code.
fn refused(media: MediaType, transport: Transport, refusal: &Refusal) -> Response {
    if transport == Transport::Get && matches!(refusal, Refusal::WrongTransport { .. }) {
        let mut r = error_response(
            StatusCode::METHOD_NOT_ALLOWED,
            refusal.code(),
            refusal.to_string(),
        );
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, POST"));
        return r;
    }
    graphql_error(media, refusal.code(), refusal.to_string())
}

fn graphql_error(media: MediaType, code: &str, message: String) -> Response {
    let status = if media == MediaType::GraphQlResponseJson {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    let mut r = error_response(status, code, message);
    if media == MediaType::GraphQlResponseJson {
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/graphql-response+json"),
        );
    }
    r
}

async fn graphql_post(
    State(state): State<HttpState>,
    client: Option<axum::Extension<ClientAddr>>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return error_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                "PAYLOAD_TOO_LARGE",
                format!("request bodies are limited to {MAX_BODY_BYTES} bytes"),
            );
        }
        Err(e) => return error_response(e.status(), "BAD_REQUEST", e.body_text()),
    };
    let media = match negotiate(&headers) {
        Ok(m) => m,
        Err(r) => return *r,
    };
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mime = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if mime != "application/json" && mime != "application/graphql-response+json" {
        return error_response(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UNSUPPORTED_MEDIA_TYPE",
            "send GraphQL requests as application/json",
        );
    }
    if body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
        return error_response(
            StatusCode::BAD_REQUEST,
            "BATCH_NOT_SUPPORTED",
            "send one operation per request",
        );
    }
    let request: async_graphql::Request = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                "BAD_REQUEST",
                format!("the body is not a GraphQL request in JSON: {e}"),
            );
        }
    };
    let client = client.map(|c| c.0);
    execute(&state, &headers, request, media, Transport::Post, client).await
}

async fn graphql_get(State(state): State<HttpState>, request: axum::extract::Request) -> Response {
    use axum::extract::FromRequestParts;
    let (mut parts, _) = request.into_parts();
    let client = parts.extensions.get::<ClientAddr>().copied();
    let upgrade = parts
        .headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok());
    if upgrade.is_some_and(|u| u.eq_ignore_ascii_case("websocket")) {
        let Ok(protocol) =
            async_graphql_axum::GraphQLProtocol::from_request_parts(&mut parts, &state).await
        else {
            return error_response(
                StatusCode::BAD_REQUEST,
                "BAD_REQUEST",
                "use the graphql-transport-ws (or graphql-ws) WebSocket subprotocol",
            );
        };
        return match axum::extract::ws::WebSocketUpgrade::from_request_parts(&mut parts, &state)
            .await
        {
            Ok(ws) => crate::websocket::upgrade(state.ws.clone(), protocol, ws, client),
            Err(e) => e.into_response(),
        };
    }
    let headers = parts.headers;
    let params: std::collections::HashMap<String, String> =
        match Query::<std::collections::HashMap<String, String>>::try_from_uri(&parts.uri) {
            Ok(Query(p)) => p,
            Err(_) => {
                return error_response(
                    StatusCode::BAD_REQUEST,
                    "BAD_REQUEST",
                    "the query string is not valid",
                );
            }
        };
    let media = match negotiate(&headers) {
        Ok(m) => m,
        Err(r) => return *r,
    };
    let extensions = match params.get("extensions").map(|e| serde_json::from_str(e)) {
        None => None,
        Some(Ok(e)) => Some(e),
        Some(Err(_)) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                "BAD_REQUEST",
                "`extensions` is not a JSON object",
            );
        }
    };
    // A persisted query's GET may carry the hash alone.
    let empty = String::new();
    let query = params
        .get("query")
        .or_else(|| extensions.as_ref().map(|_| &empty));
    let Some(query) = query else {
        // A browser opening /graphql gets GraphiQL.
        if headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("text/html"))
        {
            return graphiql().await.into_response();
        }
        return error_response(
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
            "a GET request needs a `query` parameter",
        );
    };
    let mut request = async_graphql::Request::new(query.clone());
    if let Some(extensions) = extensions {
        request.extensions = extensions;
    }
    if let Some(name) = params.get("operationName") {
        request = request.operation_name(name.clone());
    }
    if let Some(vars) = params.get("variables") {
        match serde_json::from_str::<serde_json::Value>(vars) {
            Ok(v) => request = request.variables(async_graphql::Variables::from_json(v)),
            Err(_) => {
                return error_response(
                    StatusCode::BAD_REQUEST,
                    "BAD_REQUEST",
                    "`variables` is not JSON",
                );
            }
        }
    }
    execute(&state, &headers, request, media, Transport::Get, client).await
}

/// Stripe's webhook endpoint. 200 once processed (or deliberately ignored), 400 for a forged,
/// stale or unreadable delivery (Stripe does not retry those), 503 when we cannot record it
/// now (Stripe retries).
async fn stripe_webhook(
    State(state): State<HttpState>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    use purser_command_api::webhooks::{WebhookFailure, WebhookOutcome, handle_stripe};
    let Some(secret) = &state.stripe_webhook_secret else {
        return error_response(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "the Stripe gateway is not configured",
        );
    };
    let Ok(body) = body else {
        return error_response(
            StatusCode::PAYLOAD_TOO_LARGE,
            "PAYLOAD_TOO_LARGE",
            "the webhook body is too large",
        );
    };
    let signature = headers
        .get("stripe-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    match handle_stripe(&state.bus, &body, signature, secret, chrono::Utc::now()).await {
        Ok(WebhookOutcome::Applied { payment_id }) => {
            let body = json!({ "received": true, "payment_id": payment_id.to_string() });
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                body.to_string(),
            )
                .into_response()
        }
        Ok(WebhookOutcome::Ignored { reason }) => {
            let body = json!({ "received": true, "ignored": reason });
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                body.to_string(),
            )
                .into_response()
        }
        Err(WebhookFailure::Refused(e)) => {
            tracing::warn!(error = %e, "refused a Stripe webhook");
            error_response(StatusCode::BAD_REQUEST, "BAD_WEBHOOK", e.to_string())
        }
        Err(WebhookFailure::Unavailable(e)) => {
            tracing::warn!(error = %e, "could not record a Stripe webhook; Stripe will retry");
            error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                "UNAVAILABLE",
                "try again later",
            )
        }
    }
}
