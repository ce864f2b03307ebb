//! The order read model: `sales.orders`, `sales.order_lines` and `sales.order_timeline`.
//!
//! Order events give the summary, the lines and one timeline step each. Payment events (they
//! carry the order id) fill in what the order's own events do not say: the payment id as soon
//! as the intent exists, the gateway reference, the failure code and message, and a timeline
//! step for each retried attempt (`PaymentAttemptFailed`, which does not change the status).
//!
//! Every value written comes from the events (never the clock), so a rebuild from zero gives
//! the same rows.
//!
//! A batch is read and folded per order in `fold`, each event moving an order's `progress`
//! columns, and written in one statement by `write`.

use async_trait::async_trait;
use purser_domain::events::AnyEvent;
use purser_domain::order::{CancelledBy, OrderEvent, OrderLine, OrderStatus};
use purser_domain::payment::PaymentEvent;
use purser_event_store::{EventFilter, RecordedEvent};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::{Projection, ProjectionError, decode};

mod fold;
mod progress;
mod write;

use fold::Batch;

/// A statement being bound, as the `bind_*` functions of `write` and `progress` take it.
type PgQuery<'q> = sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>;

pub struct OrdersProjection;

impl OrdersProjection {
    pub const NAME: &'static str = "orders";
}

/// How an order event moves the order's status. Shared with the analytics projection so the
/// two can never disagree about an order's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StatusChange {
    To(OrderStatus),
    Keep,
    /// `OrderFulfilled` completes a digital-only order; a mixed order records it and carries on
    /// along its physical path (the domain's `evolve` does the same).
    FulfilledIfDigitalOnly,
}

pub(crate) fn status_change(e: &OrderEvent) -> StatusChange {
    use OrderStatus as S;
    use StatusChange::{Keep, To};
    match e {
        OrderEvent::OrderPlaced { .. } => To(S::Pending),
        OrderEvent::OrderPaymentStarted { .. } => To(S::PaymentProcessing),
        OrderEvent::OrderPaid { .. } => To(S::Paid),
        OrderEvent::OrderPaymentFailed { .. } => To(S::PaymentFailed),
        OrderEvent::OrderInventoryUnavailable { .. } => To(S::InventoryUnavailable),
        OrderEvent::OrderConfirmed { .. } => To(S::Confirmed),
        OrderEvent::OrderLicenseAttached { .. } => Keep,
        OrderEvent::OrderFulfilled { .. } => StatusChange::FulfilledIfDigitalOnly,
        OrderEvent::OrderProcessingStarted { .. } => To(S::Processing),
        OrderEvent::OrderShipped { .. } => To(S::Shipped),
        OrderEvent::OrderDelivered { .. } => To(S::Delivered),
        OrderEvent::OrderCancelled { .. } => To(S::Cancelled),
        OrderEvent::OrderRefunded { .. } => To(S::Refunded),
        OrderEvent::OrderClaimed { .. } => Keep,
    }
}

pub(crate) fn cancelled_by(by: CancelledBy) -> &'static str {
    match by {
        CancelledBy::Customer => "customer",
        CancelledBy::Admin => "admin",
        CancelledBy::System => "system",
    }
}

pub(crate) fn line_kind(line: &OrderLine) -> &'static str {
    if line.is_digital() {
        "digital"
    } else {
        "physical"
    }
}

#[async_trait]
impl Projection for OrdersProjection {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn filter(&self) -> EventFilter {
        EventFilter::categories(["order", "payment"])
    }

    fn tables(&self) -> &'static [&'static str] {
        &["sales.orders", "sales.order_lines", "sales.order_timeline"]
    }

    async fn apply(
        &self,
        tx: &mut PgConnection,
        event: &RecordedEvent,
    ) -> Result<(), ProjectionError> {
        self.apply_batch(tx, &[event]).await
    }

    /// The batch's events fold, per order and in log order, into the order rows they leave
    /// behind; then one statement inserts the orders placed in the batch (with their lines),
    /// updates the others, and appends every timeline step. The rows already in the table that
    /// the batch moves are read first, in one query, because a step records the status and
    /// position the row had after it.
    async fn apply_batch(
        &self,
        tx: &mut PgConnection,
        events: &[&RecordedEvent],
    ) -> Result<(), ProjectionError> {
        let mut decoded = Vec::with_capacity(events.len());
        for event in events {
            match decode(event).map_err(|err| crate::failed_at(Self::NAME, event, err))? {
                AnyEvent::Order(e) => decoded.push((*event, Subject::Order(e))),
                AnyEvent::Payment(e) => decoded.push((*event, Subject::Payment(e))),
                _ => {}
            }
        }
        let located = |err| crate::failed_in(Self::NAME, events, err);
        let mut batch = Batch::default();
        let stored = Batch::rows_to_read(&decoded);
        if !stored.is_empty() {
            batch
                .load(tx, &stored)
                .await
                .map_err(|err| located(err.into()))?;
        }
        for (event, subject) in &decoded {
            let _entered = crate::project_span(Self::NAME, event).entered();
            batch
                .add(event.event_type.as_str(), subject)
                .map_err(|err| crate::failed_at(Self::NAME, event, err))?;
        }
        batch.write(tx).await.map_err(located)?;
        // Claims are rare; each moves its row after the batch (which may have placed it).
        for (_, subject) in &decoded {
            if let Subject::Order(OrderEvent::OrderClaimed {
                order_id,
                customer_id,
                ..
            }) = subject
            {
                sqlx::query("update sales.orders set customer_id = $2 where order_id = $1")
                    .bind(order_id.as_uuid())
                    .bind(customer_id.as_uuid())
                    .execute(&mut *tx)
                    .await
                    .map_err(|err| located(err.into()))?;
            }
        }
        Ok(())
    }
}

/// An event this model reads, decoded.
enum Subject {
    Order(OrderEvent),
    Payment(PaymentEvent),
}

impl Subject {
    fn order_id(&self) -> Uuid {
        match self {
            Subject::Order(e) => e.order_id().as_uuid(),
            Subject::Payment(e) => e.order_id().as_uuid(),
        }
    }
}
