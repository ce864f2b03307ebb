//! GraphQL over WebSocket (`graphql-transport-ws`, and the older `graphql-ws`), for
//! subscriptions and queries. The bearer token goes in `connection_init`'s payload as
//! `{"Authorization": "Bearer <token>"}` (or `{"token": "<token>"}`); a bad one ends the
//! connection.
//!
//! Every `subscribe` goes through the same admission as an HTTP request (mutations are refused:
//! they go over HTTP POST), and a connection is bounded: its message size, the operations it
//! runs at once, how long it may sit idle, and how many connections a process holds.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_graphql::{Data, Executor, Request, Response};
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response as HttpResponse};
use futures::stream::{self, BoxStream, SplitStream};
use futures::{Stream, StreamExt};
use purser_api_core::auth::{ClientAddr, Tokens, Viewer};
use purser_api_core::read::WaitDeadline;
use purser_api_core::sessions::SessionCheck;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::admission::{self, Transport};
use crate::config::{Limits, WsLimits};
use crate::reply::error_response;
use crate::schema::PurserSchema;

/// What the WebSocket endpoint needs; one per process, cloned into each request.
#[derive(Clone)]
pub struct WsState {
    pub schema: PurserSchema,
    pub tokens: Tokens,
    pub sessions: Arc<SessionCheck>,
    pub admission: Limits,
    pub limits: WsLimits,
    slots: Arc<Semaphore>,
}

impl WsState {
    pub fn new(
        schema: PurserSchema,
        tokens: Tokens,
        sessions: Arc<SessionCheck>,
        admission: Limits,
        limits: WsLimits,
    ) -> Self {
        let slots = Arc::new(Semaphore::new(limits.max_connections));
        WsState {
            schema,
            tokens,
            sessions,
            admission,
            limits,
            slots,
        }
    }
}

/// Upgrades to a GraphQL WebSocket, or answers 503 when the process holds as many
/// connections as it may.
pub fn upgrade(
    state: WsState,
    protocol: async_graphql_axum::GraphQLProtocol,
    ws: WebSocketUpgrade,
    client: Option<ClientAddr>,
) -> HttpResponse {
    let Ok(slot) = state.slots.clone().try_acquire_owned() else {
        let mut r = error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "TOO_MANY_CONNECTIONS",
            "this server holds as many WebSocket connections as it may; try again later",
        );
        r.headers_mut().insert(
            axum::http::header::RETRY_AFTER,
            "30".parse().expect("a header value"),
        );
        return r;
    };
    let bytes = state.limits.max_message_bytes;
    ws.max_message_size(bytes)
        .max_frame_size(bytes)
        .protocols(async_graphql::http::ALL_WEBSOCKET_PROTOCOLS)
        .on_upgrade(move |socket| serve(state, protocol, socket, slot, client))
        .into_response()
}

async fn serve(
    state: WsState,
    protocol: async_graphql_axum::GraphQLProtocol,
    socket: WebSocket,
    _slot: OwnedSemaphorePermit,
    client: Option<ClientAddr>,
) {
    let _open = OpenWebSocket::count();
    let executor = AdmittedExecutor {
        schema: state.schema.clone(),
        limits: state.admission.clone(),
        max_in_flight: state.limits.max_operations,
        in_flight: Arc::new(AtomicUsize::new(0)),
    };
    let (sink, input) = socket.split();
    let input = idle_timeout(input, state.limits.idle_timeout, executor.in_flight.clone());
    let (tokens, sessions) = (state.tokens.clone(), state.sessions.clone());
    async_graphql_axum::GraphQLWebSocket::new_with_pair(sink, input, executor, protocol)
        .on_connection_init(move |payload| async move {
            let mut data = Data::default();
            data.insert(connection_viewer(&tokens, &sessions, &payload).await?);
            if let Some(client) = client {
                data.insert(client);
            }
            Ok(data)
        })
        .serve()
        .await
}

/// The viewer a `connection_init` payload speaks for.
async fn connection_viewer(
    tokens: &Tokens,
    sessions: &SessionCheck,
    payload: &serde_json::Value,
) -> async_graphql::Result<Viewer> {
    let token = payload
        .get("Authorization")
        .or_else(|| payload.get("authorization"))
        .and_then(|v| v.as_str())
        .map(|v| {
            v.trim_start_matches("Bearer ")
                .trim_start_matches("bearer ")
                .to_owned()
        })
        .or_else(|| {
            payload
                .get("token")
                .and_then(|v| v.as_str())
                .map(str::to_owned)
        });
    match token {
        None => Ok(Viewer::anonymous()),
        Some(t) => sessions
            .authenticate(tokens, &t)
            .await
            .map_err(|e| async_graphql::Error::new(e.to_string())),
    }
}

/// Ends the client's message stream once it has been silent for `timeout` while nothing runs
/// on the connection; the library then closes the connection.
fn idle_timeout(
    input: SplitStream<WebSocket>,
    timeout: Duration,
    in_flight: Arc<AtomicUsize>,
) -> impl Stream<Item = Result<Message, axum::Error>> + Send + Unpin {
    Box::pin(stream::unfold(input, move |mut input| {
        let in_flight = in_flight.clone();
        async move {
            loop {
                match tokio::time::timeout(timeout, input.next()).await {
                    Ok(Some(item)) => return Some((item, input)),
                    Ok(None) => return None,
                    Err(_) if in_flight.load(Ordering::Acquire) == 0 => {
                        tracing::debug!("closing an idle GraphQL WebSocket");
                        return None;
                    }
                    Err(_) => continue,
                }
            }
        }
    }))
}

/// The schema as one connection sees it: admission first, and at most `max_in_flight`
/// operations at once.
#[derive(Clone)]
struct AdmittedExecutor {
    schema: PurserSchema,
    limits: Limits,
    max_in_flight: usize,
    in_flight: Arc<AtomicUsize>,
}

impl Executor for AdmittedExecutor {
    async fn execute(&self, request: Request) -> Response {
        self.execute_stream(request, None)
            .next()
            .await
            .unwrap_or_default()
    }

    fn execute_stream(
        &self,
        mut request: Request,
        session_data: Option<Arc<Data>>,
    ) -> BoxStream<'static, Response> {
        if let Err(refusal) = admission::admit(&mut request, Transport::WebSocket, &self.limits) {
            return refusal_stream(refusal.to_server_error());
        }
        let running = self.in_flight.fetch_add(1, Ordering::AcqRel);
        let guard = InFlight(self.in_flight.clone());
        if running >= self.max_in_flight {
            let mut e = async_graphql::ServerError::new(
                format!(
                    "a connection may run at most {} operations at once; complete one first",
                    self.max_in_flight
                ),
                None,
            );
            e.extensions = async_graphql::ErrorExtensions::extend_with(
                async_graphql::Error::new(""),
                |_, x| x.set("code", "TOO_MANY_OPERATIONS"),
            )
            .extensions;
            return refusal_stream(e);
        }
        let request = request.data(WaitDeadline::default());
        Executor::execute_stream(&self.schema, request, session_data)
            .map(move |response| {
                let _held = &guard;
                response
            })
            .boxed()
    }
}

fn refusal_stream(error: async_graphql::ServerError) -> BoxStream<'static, Response> {
    stream::once(async move { Response::from_errors(vec![error]) }).boxed()
}

/// One running operation of a connection, counted until its stream is dropped.
struct InFlight(Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Counts an open GraphQL WebSocket in `purser_websocket_connections` until dropped, however
/// the connection ends.
struct OpenWebSocket;

impl OpenWebSocket {
    fn count() -> OpenWebSocket {
        metrics::gauge!("purser_websocket_connections").increment(1.0);
        OpenWebSocket
    }
}

impl Drop for OpenWebSocket {
    fn drop(&mut self) {
        metrics::gauge!("purser_websocket_connections").decrement(1.0);
    }
}
