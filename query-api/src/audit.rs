//! The auditor's GraphQL: any stream's full history, and the state of an order, a cart or a
//! stock item as of a past log position or moment.
//!
//! These resolvers read the event log itself, not read models: an auditor asks what the log
//! says, so nothing derived may stand in between. Past states are folded from the stream's
//! events by the domain's own `Aggregate::evolve` (the very code the command side decides
//! with), stopping at the first event after the requested position or time; there is no
//! second implementation of the rules to drift from the first. Only auditors and admins may
//! ask (`Viewer::require(Role::Auditor)`).

use std::sync::Arc;

use async_graphql::{Context, ID, Json, Object, SimpleObject};
use chrono::{DateTime, Utc};
use purser_domain::cart::{Cart, CartStatus};
use purser_domain::customer::Role;
use purser_domain::inventory::Inventory;
use purser_domain::order::Order;
use purser_domain::{Aggregate, CartId, Event, OrderId, Sku};
use purser_event_store::{EventStore, Position, RecordedEvent, StreamName};
use serde_json::{Value, json};

use crate::orders::OrderStatus;
use purser_api_core::auth::Viewer;
use purser_api_core::errors::{api_error, bad_argument, bad_input, internal, store_error};
use purser_api_core::wire::{
    MoneyV2, PageInfo, decode_cursor, encode_cursor, page_size, parse_uuid_id, uuid_global_id,
};

/// The event log, as the auditor's resolvers read it. The binary puts one in the schema's
/// data; it is the same store the command side appends to.
#[derive(Clone)]
pub struct AuditLog {
    store: Arc<dyn EventStore>,
}

impl AuditLog {
    pub fn new(store: Arc<dyn EventStore>) -> AuditLog {
        AuditLog { store }
    }

    fn from_ctx<'a>(ctx: &Context<'a>) -> async_graphql::Result<&'a AuditLog> {
        ctx.data::<AuditLog>().map_err(|_| {
            internal(
                &"no AuditLog in the schema's data",
                "the schema was built without an AuditLog",
            )
        })
    }
}

/// Who did what and why, as recorded with an event.
#[derive(SimpleObject, Debug, Clone)]
pub struct EventMetadata {
    pub correlation_id: Option<String>,
    pub causation_id: Option<String>,
    /// `customer:<id>`, `admin:<id>`, `system:<component>`.
    pub actor: Option<String>,
    pub idempotency_key: Option<String>,
    pub trace_id: Option<String>,
}

/// One event exactly as stored: the whole envelope.
#[derive(SimpleObject, Debug, Clone)]
pub struct StreamEvent {
    /// The event's own id (a UUID).
    pub id: ID,
    pub stream: String,
    /// 0-based version within its stream.
    pub version: i64,
    /// Its place in the global log (`commit/prepare`).
    pub position: String,
    #[graphql(name = "type")]
    pub event_type: String,
    pub schema_version: i32,
    /// The event's data as stored (before any upcasting), less any secret an older version
    /// wrote into it (a password hash).
    pub data: Json<Value>,
    pub metadata: EventMetadata,
    pub recorded_at: DateTime<Utc>,
}

impl From<&RecordedEvent> for StreamEvent {
    fn from(e: &RecordedEvent) -> StreamEvent {
        StreamEvent {
            id: ID(e.id.to_string()),
            stream: e.stream.to_string(),
            version: e.version as i64,
            position: e.position.to_string(),
            event_type: e.event_type.clone(),
            schema_version: i32::from(e.schema_version),
            data: Json({
                let mut data = e.data.clone();
                purser_domain::events::redact_secrets(&e.event_type, &mut data);
                data
            }),
            metadata: EventMetadata {
                correlation_id: e.metadata.correlation_id.map(|u| u.to_string()),
                causation_id: e.metadata.causation_id.map(|u| u.to_string()),
                actor: e.metadata.actor.clone(),
                idempotency_key: e.metadata.idempotency_key.clone(),
                trace_id: e.metadata.trace_id.clone(),
            },
            recorded_at: e.recorded_at,
        }
    }
}

#[derive(SimpleObject, Debug, Clone)]
pub struct StreamEventEdge {
    pub cursor: String,
    pub node: StreamEvent,
}

/// A page of a stream's history, oldest first.
#[derive(SimpleObject, Debug, Clone)]
pub struct StreamEventConnection {
    pub edges: Vec<StreamEventEdge>,
    pub page_info: PageInfo,
}

/// Where a past state was taken: the last event folded into it.
#[derive(SimpleObject, Debug, Clone)]
pub struct HistoryPoint {
    pub stream: String,
    /// How many events were folded.
    pub events_applied: i32,
    /// The version, position, type and recording time of the last of them.
    pub version: i64,
    pub position: String,
    pub last_event: String,
    pub recorded_at: DateTime<Utc>,
}

/// An order as it stood at a past point, folded from its events.
#[derive(SimpleObject, Debug, Clone)]
pub struct OrderAsOf {
    pub order_id: ID,
    pub as_of: HistoryPoint,
    pub status: Option<OrderStatus>,
    pub total: Option<MoneyV2>,
    /// The aggregate's whole state (`OrderState`), as JSON.
    pub state: Json<Value>,
}

/// A cart as it stood at a past point, folded from its events.
#[derive(SimpleObject, Debug, Clone)]
pub struct CartAsOf {
    pub cart_id: ID,
    pub as_of: HistoryPoint,
    /// `OPEN`, `CHECKED_OUT` or `ABANDONED`.
    pub status: String,
    pub item_count: i32,
    pub total: Option<MoneyV2>,
    /// The aggregate's whole state (`CartState`), as JSON.
    pub state: Json<Value>,
}

/// A stock item as it stood at a past point, folded from its events.
#[derive(SimpleObject, Debug, Clone)]
pub struct StockAsOf {
    pub sku: String,
    pub as_of: HistoryPoint,
    pub on_hand: i64,
    pub reserved: i64,
    pub available: i64,
    /// The aggregate's whole state (`InventoryState`), as JSON.
    pub state: Json<Value>,
}

/// The point a past state is taken at: every event at or before `position` and recorded at or
/// before `at` (either may be absent; with neither, the current state).
#[derive(Debug, Clone, Copy, Default)]
struct Cut {
    position: Option<Position>,
    at: Option<DateTime<Utc>>,
}

impl Cut {
    fn parse(position: Option<String>, at: Option<DateTime<Utc>>) -> async_graphql::Result<Cut> {
        let position = position
            .map(|raw| {
                raw.parse::<Position>()
                    .map_err(|e| bad_argument("position", e.to_string()))
            })
            .transpose()?;
        Ok(Cut { position, at })
    }

    /// True for the first event that lies after the point.
    fn is_after(&self, e: &RecordedEvent) -> bool {
        self.position.is_some_and(|p| e.position > p) || self.at.is_some_and(|t| e.recorded_at > t)
    }
}

/// Events read per round trip while folding.
const FOLD_PAGE: usize = 500;

/// Folds `stream` with `A::evolve` up to `cut`. `None` when no event lies before the point
/// (the thing did not exist yet).
async fn fold_as_of<A: Aggregate>(
    store: &dyn EventStore,
    stream: &StreamName,
    cut: Cut,
) -> async_graphql::Result<Option<(A::State, HistoryPoint)>> {
    let mut state = A::State::default();
    let mut point: Option<HistoryPoint> = None;
    let mut applied: i32 = 0;
    let mut next = 0;
    'pages: loop {
        let page = store
            .read_stream(stream, next, FOLD_PAGE)
            .await
            .map_err(store_error)?;
        for e in &page {
            // A stream's events are in log order, so the first one after the point ends it.
            if cut.is_after(e) {
                break 'pages;
            }
            let event = A::Event::decode(&e.event_type, e.schema_version, e.data.clone())
                .map_err(|err| {
                    tracing::error!(error = %err, stream = %e.stream, version = e.version, "stored event does not decode");
                    api_error(
                        "UNDECODABLE_EVENT",
                        format!(
                            "event {} ({} v{}) at position {} cannot be decoded: {err}",
                            e.id, e.event_type, e.schema_version, e.position
                        ),
                    )
                })?;
            state = A::evolve(state, &event);
            applied = applied.saturating_add(1);
            point = Some(HistoryPoint {
                stream: stream.to_string(),
                events_applied: applied,
                version: e.version as i64,
                position: e.position.to_string(),
                last_event: e.event_type.clone(),
                recorded_at: e.recorded_at,
            });
        }
        match page.last() {
            Some(last) if page.len() == FOLD_PAGE => next = last.version + 1,
            _ => break,
        }
    }
    Ok(point.map(|p| (state, p)))
}

fn to_json<T: serde::Serialize>(state: &T) -> Json<Value> {
    Json(serde_json::to_value(state).unwrap_or(Value::Null))
}

fn stream_name(raw: String, argument: &'static str) -> async_graphql::Result<StreamName> {
    StreamName::new(raw).map_err(|e| bad_argument(argument, e.to_string()))
}

#[derive(Default)]
pub struct AuditQuery;

#[Object]
impl AuditQuery {
    /// Every event of one stream (e.g. `order-<uuid>`, `inventory-<SKU>`), oldest first, with
    /// the whole envelope. Auditors and admins only.
    async fn stream_history(
        &self,
        ctx: &Context<'_>,
        stream: String,
        #[graphql(desc = "Page size, 1 to 500 (default 100).")] first: Option<i32>,
        #[graphql(desc = "A cursor from an earlier page's `pageInfo.endCursor`.")] after: Option<
            String,
        >,
    ) -> async_graphql::Result<StreamEventConnection> {
        Viewer::from_ctx(ctx).require(Role::Auditor)?;
        let log = AuditLog::from_ctx(ctx)?;
        let stream = stream_name(stream, "stream")?;
        let n = page_size(first, 100, 500)? as usize;
        let from = match after {
            None => 0,
            Some(c) => {
                let key = decode_cursor(&c)?;
                key.get(0)
                    .and_then(Value::as_u64)
                    .map(|v| v + 1)
                    .ok_or_else(|| bad_input("the cursor is not one this API returned"))?
            }
        };
        let mut events = log
            .store
            .read_stream(&stream, from, n + 1)
            .await
            .map_err(store_error)?;
        let has_next_page = events.len() > n;
        events.truncate(n);
        let edges: Vec<StreamEventEdge> = events
            .iter()
            .map(|e| StreamEventEdge {
                cursor: encode_cursor(&json!([e.version])),
                node: StreamEvent::from(e),
            })
            .collect();
        Ok(StreamEventConnection {
            page_info: PageInfo {
                has_next_page,
                has_previous_page: from > 0,
                start_cursor: edges.first().map(|e| e.cursor.clone()),
                end_cursor: edges.last().map(|e| e.cursor.clone()),
            },
            edges,
        })
    }

    /// An order as it stood at a log position (`commit/prepare`, as mutations return) and/or
    /// a moment, folded from its events by the domain's own rules; the current state when
    /// neither is given. Null when the order did not exist yet. Auditors and admins only.
    async fn order_as_of(
        &self,
        ctx: &Context<'_>,
        id: ID,
        position: Option<String>,
        at: Option<DateTime<Utc>>,
    ) -> async_graphql::Result<Option<OrderAsOf>> {
        Viewer::from_ctx(ctx).require(Role::Auditor)?;
        let log = AuditLog::from_ctx(ctx)?;
        let order_id = OrderId(parse_uuid_id("Order", &id)?);
        let cut = Cut::parse(position, at)?;
        let stream = stream_name(Order::stream(&order_id), "id")?;
        let Some((state, as_of)) = fold_as_of::<Order>(&*log.store, &stream, cut).await? else {
            return Ok(None);
        };
        Ok(Some(OrderAsOf {
            order_id: uuid_global_id("Order", order_id.as_uuid()),
            status: state
                .status
                .and_then(|s| OrderStatus::parse(s.as_str()).ok()),
            total: state.total.map(MoneyV2::from),
            state: to_json(&state),
            as_of,
        }))
    }

    /// A cart as it stood at a log position and/or a moment (see `orderAsOf`).
    async fn cart_as_of(
        &self,
        ctx: &Context<'_>,
        id: ID,
        position: Option<String>,
        at: Option<DateTime<Utc>>,
    ) -> async_graphql::Result<Option<CartAsOf>> {
        Viewer::from_ctx(ctx).require(Role::Auditor)?;
        let log = AuditLog::from_ctx(ctx)?;
        let cart_id = CartId(parse_uuid_id("Cart", &id)?);
        let cut = Cut::parse(position, at)?;
        let stream = stream_name(Cart::stream(&cart_id), "id")?;
        let Some((state, as_of)) = fold_as_of::<Cart>(&*log.store, &stream, cut).await? else {
            return Ok(None);
        };
        Ok(Some(CartAsOf {
            cart_id: uuid_global_id("Cart", cart_id.as_uuid()),
            status: match state.status {
                CartStatus::Open => "OPEN",
                CartStatus::CheckedOut { .. } => "CHECKED_OUT",
                CartStatus::Abandoned => "ABANDONED",
            }
            .to_owned(),
            item_count: i32::try_from(state.item_count()).unwrap_or(i32::MAX),
            total: state.total().ok().map(MoneyV2::from),
            state: to_json(&state),
            as_of,
        }))
    }

    /// A stock item (`inventory-<SKU>`) as it stood at a log position and/or a moment (see
    /// `orderAsOf`).
    async fn stock_as_of(
        &self,
        ctx: &Context<'_>,
        sku: String,
        position: Option<String>,
        at: Option<DateTime<Utc>>,
    ) -> async_graphql::Result<Option<StockAsOf>> {
        Viewer::from_ctx(ctx).require(Role::Auditor)?;
        let log = AuditLog::from_ctx(ctx)?;
        let sku = Sku::parse(&sku).map_err(|e| bad_argument("sku", e.to_string()))?;
        let cut = Cut::parse(position, at)?;
        let stream = stream_name(Inventory::stream(&sku), "sku")?;
        let Some((state, as_of)) = fold_as_of::<Inventory>(&*log.store, &stream, cut).await? else {
            return Ok(None);
        };
        let clamp = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        Ok(Some(StockAsOf {
            sku: sku.to_string(),
            on_hand: clamp(state.on_hand),
            reserved: clamp(state.reserved),
            available: clamp(state.available()),
            state: to_json(&state),
            as_of,
        }))
    }
}
