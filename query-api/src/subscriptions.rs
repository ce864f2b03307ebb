//! `orderStatusChanged`: an order's status changes, live, fed from the event log.
//!
//! One subscription to the log per process (order streams only) feeds a broadcast channel;
//! each GraphQL subscription folds its order's events with the domain's own `Order::evolve`
//! and emits when the status changes. A subscriber first gets the current status (folded from
//! the order's stream), then every change after it, in order. It never misses one: events are
//! matched by stream version, and any gap (a slow subscriber overrun by the broadcast, or an
//! event that arrived while the history was being read) is filled by reading the stream.

use std::sync::Arc;

use async_graphql::{Context, ID, SimpleObject, Subscription};
use chrono::{DateTime, Utc};
use futures::Stream;
use purser_domain::customer::Role;
use purser_domain::order::{Order, OrderEvent, OrderState};
use purser_domain::{Aggregate, Event, OrderId};
use purser_event_store::{
    EventFilter, EventStore, Position, RecordedEvent, StreamName, SubscriptionItem,
    read_stream_to_end,
};
use tokio::sync::{OnceCell, broadcast};

use crate::orders::OrderStatus;
use purser_api_core::auth::{Tokens, Viewer};
use purser_api_core::errors::{bad_input, not_found, store_error};
use purser_api_core::wire::{global_id, parse_global_id};

/// The per-process feed of order events.
#[derive(Clone)]
pub struct OrderFeed {
    store: Arc<dyn EventStore>,
    tx: broadcast::Sender<Arc<RecordedEvent>>,
    started: Arc<OnceCell<()>>,
}

impl OrderFeed {
    pub fn new(store: Arc<dyn EventStore>) -> OrderFeed {
        let (tx, _) = broadcast::channel(4096);
        OrderFeed {
            store,
            tx,
            started: Arc::new(OnceCell::new()),
        }
    }

    /// Starts (once) the task that reads order events from the log's head onwards.
    async fn ensure_started(&self) -> Result<(), purser_event_store::StoreError> {
        let store = self.store.clone();
        let tx = self.tx.clone();
        self.started
            .get_or_try_init(|| async move {
                let mut from = store.head().await?.map(|h| h.position).unwrap_or(Position::START);
                tokio::spawn(async move {
                    use futures::StreamExt;
                    loop {
                        let mut sub = store.subscribe(from, EventFilter::categories(["order"]));
                        while let Some(item) = sub.next().await {
                            match item {
                                Ok(SubscriptionItem::Event(e)) => {
                                    from = e.position;
                                    // Nobody listening is fine; subscribers fill gaps anyway.
                                    let _ = tx.send(Arc::new(*e));
                                }
                                Ok(SubscriptionItem::Checkpoint(p)) => from = p,
                                Err(e) => {
                                    tracing::warn!(error = %e, "order feed lost the log; resubscribing");
                                    break;
                                }
                            }
                        }
                        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                    }
                });
                Ok(())
            })
            .await
            .map(|_| ())
    }
}

/// One status change of an order.
#[derive(SimpleObject, Debug, Clone)]
pub struct OrderStatusUpdate {
    pub order_id: ID,
    pub status: OrderStatus,
    /// The status before this change; null for the first update of a subscription when the
    /// order was just placed.
    pub previous_status: Option<OrderStatus>,
    /// The event that changed it, e.g. `OrderShipped`.
    pub event: String,
    pub at: DateTime<Utc>,
    /// The log position of that event (usable as `minPosition`).
    pub position: String,
    /// The order's stream version after the event.
    pub version: i64,
}

fn status_of(state: &OrderState) -> Option<OrderStatus> {
    state
        .status
        .and_then(|s| OrderStatus::parse(s.as_str()).ok())
}

fn decode(e: &RecordedEvent) -> Option<OrderEvent> {
    OrderEvent::decode(&e.event_type, e.schema_version, e.data.clone()).ok()
}

#[derive(Default)]
pub struct SubscriptionRoot;

#[Subscription]
impl SubscriptionRoot {
    /// Every status change of one order, starting with its current status. Allowed to the
    /// order's customer, to admins and auditors, and to whoever holds the order's status token
    /// (from `cartCheckout`).
    async fn order_status_changed(
        &self,
        ctx: &Context<'_>,
        order_id: ID,
        status_token: Option<String>,
    ) -> async_graphql::Result<impl Stream<Item = OrderStatusUpdate> + use<>> {
        let feed = ctx.data_unchecked::<OrderFeed>().clone();
        let viewer = Viewer::from_ctx(ctx);
        let tokens = ctx.data_unchecked::<Tokens>();
        let key = parse_global_id("Order", &order_id).unwrap_or_else(|_| order_id.to_string());
        let order_id: OrderId = key
            .parse()
            .map_err(|_| bad_input("orderId is not a valid Order id"))?;
        let missing = || not_found("no such order");
        let stream_name = StreamName::new(Order::stream(&order_id)).map_err(|_| missing())?;

        // Listen before reading the history, so nothing can fall between the two.
        feed.ensure_started().await.map_err(store_error)?;
        let mut rx = feed.tx.subscribe();
        let history = read_stream_to_end(&*feed.store, &stream_name, 0)
            .await
            .map_err(store_error)?;
        let mut state = OrderState::default();
        let mut last: Option<&RecordedEvent> = None;
        for e in &history {
            if let Some(ev) = decode(e) {
                state = Order::evolve(state, &ev);
            }
            last = Some(e);
        }
        let (Some(first), Some(last)) = (status_of(&state), last) else {
            return Err(missing());
        };
        let permitted = viewer.is(Role::Admin)
            || viewer.is(Role::Auditor)
            || viewer.customer_id == Some(state.customer_id)
            || status_token.is_some_and(|t| tokens.verify_order_status(&t, order_id).is_ok());
        if !permitted {
            // Exactly what an unknown order looks like.
            return Err(missing());
        }
        let initial = OrderStatusUpdate {
            order_id: global_id("Order", &order_id.to_string()),
            status: first,
            previous_status: None,
            event: last.event_type.clone(),
            at: last.recorded_at,
            position: last.position.to_string(),
            version: last.version as i64,
        };
        let mut version = last.version;
        let store = feed.store.clone();
        Ok(async_stream::stream! {
            yield initial;
            loop {
                // Take the next event of this order: from the broadcast, or, after a gap, by
                // reading the stream from where we are.
                let next: Vec<RecordedEvent> = match rx.recv().await {
                    Ok(e) if e.stream == stream_name => {
                        if e.version <= version {
                            continue;
                        }
                        if e.version == version + 1 {
                            vec![(*e).clone()]
                        } else {
                            match read_stream_to_end(&*store, &stream_name, version + 1).await {
                                Ok(events) => events,
                                Err(_) => break,
                            }
                        }
                    }
                    Ok(_) => continue,
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        match read_stream_to_end(&*store, &stream_name, version + 1).await {
                            Ok(events) => events,
                            Err(_) => break,
                        }
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                };
                for e in next {
                    if e.version <= version {
                        continue;
                    }
                    version = e.version;
                    let before = status_of(&state);
                    if let Some(ev) = decode(&e) {
                        state = Order::evolve(state, &ev);
                    }
                    let after = status_of(&state);
                    if let Some(status) = after && after != before {
                        yield OrderStatusUpdate {
                            order_id: global_id("Order", &order_id.to_string()),
                            status,
                            previous_status: before,
                            event: e.event_type.clone(),
                            at: e.recorded_at,
                            position: e.position.to_string(),
                            version: e.version as i64,
                        };
                    }
                }
            }
        })
    }
}
