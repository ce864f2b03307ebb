//! From internal events to public ones.
//!
//! Each internal event gives at most one integration event. The payloads are minimal on
//! purpose: ids, amounts, statuses; never an email address, a postal address, a payment
//! reference or a license key, so the contract carries no personal data or secrets that a
//! broker or a receiver would have to protect (and erasing a customer stays a matter of
//! Purser's own log).

use chrono::{DateTime, Utc};
use purser_domain::events::AnyEvent;
use purser_domain::inventory::InventoryEvent;
use purser_domain::license::LicenseEvent;
use purser_domain::order::{CancelledBy, OrderEvent};
use purser_domain::payment::PaymentEvent;
use purser_domain::product::{ProductEvent, ProductKind};
use purser_domain::{Money, OrderId, Sku};
use purser_event_store::{EventFilter, RecordedEvent};
use serde_json::{Value, json};

use crate::contract::{EventType, IntegrationEvent};
use crate::stock::{StockLevels, fell_below};

/// The default threshold of `inventory.low`: fewer units available than this.
pub const DEFAULT_LOW_STOCK: i64 = 5;

/// Maps internal events to integration events.
#[derive(Debug, Clone, Copy)]
pub struct Mapper {
    /// `inventory.low` fires when a SKU's available units fall below this.
    pub low_stock: i64,
}

impl Default for Mapper {
    fn default() -> Self {
        Mapper {
            low_stock: DEFAULT_LOW_STOCK,
        }
    }
}

/// What a carrier subscribes to: the categories that have public events.
pub fn filter() -> EventFilter {
    EventFilter::categories(["order", "payment", "product", "inventory", "license"])
}

/// The SKUs of a batch's inventory events, whose stock levels mapping the batch needs.
pub fn skus_of<'a>(events: impl IntoIterator<Item = &'a AnyEvent>) -> Vec<String> {
    let mut skus: Vec<String> = events
        .into_iter()
        .filter_map(|e| match e {
            AnyEvent::Inventory(i) => Some(inventory_sku(i).to_string()),
            _ => None,
        })
        .collect();
    skus.sort();
    skus.dedup();
    skus
}

impl Mapper {
    /// The public event `decoded` (the decoded form of `source`) gives, if any. Inventory
    /// events move `stock`, which must hold the levels of their SKUs.
    pub fn map(
        &self,
        source: &RecordedEvent,
        decoded: &AnyEvent,
        stock: &mut StockLevels,
    ) -> Option<IntegrationEvent> {
        let (event_type, at, key, data) = match decoded {
            AnyEvent::Order(e) => order(e)?,
            AnyEvent::Payment(e) => payment(e)?,
            AnyEvent::Product(e) => product(e),
            AnyEvent::License(e) => license(e)?,
            AnyEvent::Inventory(e) => self.inventory(e, stock)?,
            _ => return None,
        };
        Some(IntegrationEvent::new(
            source.id,
            event_type,
            at,
            source.metadata.correlation_id,
            key,
            data,
        ))
    }

    fn inventory(&self, e: &InventoryEvent, stock: &mut StockLevels) -> Option<Mapped> {
        let sku = inventory_sku(e);
        let before = stock.get(sku.as_str());
        let after = before.after(e);
        stock.set(sku.as_str(), after);
        if !fell_below(before, after, self.low_stock) {
            return None;
        }
        Some((
            EventType::InventoryLow,
            inventory_at(e),
            product_key(sku),
            json!({"sku": sku, "available": after.available().max(0), "threshold": self.low_stock}),
        ))
    }
}

type Mapped = (EventType, DateTime<Utc>, String, Value);

fn money(m: &Money) -> Value {
    json!({"amount": m.minor, "currency": m.currency.code()})
}

fn order_key(id: &OrderId) -> String {
    format!("order-{id}")
}

fn product_key(sku: &Sku) -> String {
    format!("product-{sku}")
}

fn order(e: &OrderEvent) -> Option<Mapped> {
    use OrderEvent as O;
    let id = e.order_id();
    let (t, data) = match e {
        O::OrderPlaced {
            customer_id,
            lines,
            total,
            ..
        } => {
            let lines: Vec<Value> = lines
                .iter()
                .map(|l| {
                    json!({"sku": l.sku, "quantity": l.qty.get(), "unit_price": money(&l.unit_price),
                           "line_total": money(&l.line_total), "digital": l.digital.is_some()})
                })
                .collect();
            let data = json!({"order_id": id, "customer_id": customer_id, "total": money(total), "lines": lines});
            (EventType::OrderPlaced, data)
        }
        O::OrderPaid {
            payment_id, amount, ..
        } => (
            EventType::OrderPaid,
            json!({"order_id": id, "payment_id": payment_id, "amount": money(amount)}),
        ),
        O::OrderConfirmed { .. } => (EventType::OrderConfirmed, json!({"order_id": id})),
        O::OrderFulfilled { licenses, .. } => {
            let ids: Vec<_> = licenses.values().collect();
            (
                EventType::OrderFulfilled,
                json!({"order_id": id, "license_ids": ids}),
            )
        }
        O::OrderShipped {
            tracking_number,
            carrier,
            estimated_delivery,
            ..
        } => (
            EventType::OrderShipped,
            json!({"order_id": id, "carrier": carrier, "tracking_number": tracking_number,
                   "estimated_delivery": estimated_delivery}),
        ),
        O::OrderDelivered { .. } => (EventType::OrderDelivered, json!({"order_id": id})),
        O::OrderCancelled {
            reason,
            by,
            was_paid,
            ..
        } => {
            let by = match by {
                CancelledBy::Customer => "customer",
                CancelledBy::Admin => "admin",
                CancelledBy::System => "system",
            };
            (
                EventType::OrderCancelled,
                json!({"order_id": id, "reason": reason, "cancelled_by": by, "was_paid": was_paid}),
            )
        }
        O::OrderRefunded { amount, reason, .. } => (
            EventType::OrderRefunded,
            json!({"order_id": id, "amount": money(amount), "reason": reason}),
        ),
        // Steps integrators do not need: the payment started, licenses attached one by one
        // (order.fulfilled lists them), processing started, the failures that
        // order.cancelled and payment.failed already tell, and a guest's order moving to the
        // account that claimed it (customer ids are not in the public contract).
        O::OrderClaimed { .. }
        | O::OrderPaymentStarted { .. }
        | O::OrderPaymentFailed { .. }
        | O::OrderInventoryUnavailable { .. }
        | O::OrderLicenseAttached { .. }
        | O::OrderProcessingStarted { .. } => return None,
    };
    Some((t, e.at(), order_key(&id), data))
}

fn payment(e: &PaymentEvent) -> Option<Mapped> {
    let PaymentEvent::PaymentFailed {
        payment_id,
        order_id,
        reason,
        at,
        ..
    } = e
    else {
        return None;
    };
    // The gateway's message stays inside: it may quote card details.
    let data = json!({"order_id": order_id, "payment_id": payment_id, "reason": reason.code()});
    Some((EventType::PaymentFailed, *at, order_key(order_id), data))
}

fn product(e: &ProductEvent) -> Mapped {
    use ProductEvent as P;
    let (t, sku, at, data) = match e {
        P::ProductCreated {
            sku,
            name,
            brand,
            category,
            kind,
            price,
            at,
            ..
        } => (
            EventType::ProductCreated,
            sku,
            at,
            json!({"sku": sku, "name": name, "brand": brand, "category": category,
                   "price": money(price), "digital": matches!(kind, ProductKind::Digital { .. })}),
        ),
        P::ProductDetailsUpdated {
            sku,
            name,
            description,
            brand,
            category,
            at,
        } => {
            let mut changes = serde_json::Map::new();
            for (field, value) in [
                ("name", name),
                ("description", description),
                ("brand", brand),
                ("category", category),
            ] {
                if let Some(v) = value {
                    changes.insert(field.into(), json!(v));
                }
            }
            (
                EventType::ProductUpdated,
                sku,
                at,
                json!({"sku": sku, "changes": changes}),
            )
        }
        P::ProductPriceChanged { sku, new, at, .. } => (
            EventType::ProductUpdated,
            sku,
            at,
            json!({"sku": sku, "changes": {"price": money(new)}}),
        ),
        P::ProductDiscontinued { sku, at, .. } => (
            EventType::ProductUpdated,
            sku,
            at,
            json!({"sku": sku, "changes": {"active": false}}),
        ),
        P::ProductReactivated { sku, at } => (
            EventType::ProductUpdated,
            sku,
            at,
            json!({"sku": sku, "changes": {"active": true}}),
        ),
    };
    (t, *at, product_key(sku), data)
}

fn license(e: &LicenseEvent) -> Option<Mapped> {
    match e {
        // Never the key: it is the customer's secret, delivered to them alone.
        LicenseEvent::LicenseIssued {
            license_id,
            sku,
            order_id,
            customer_id,
            seats,
            expires_at,
            at,
            ..
        } => Some((
            EventType::LicenseIssued,
            *at,
            order_key(order_id),
            json!({"license_id": license_id, "order_id": order_id, "customer_id": customer_id,
                   "sku": sku, "seats": seats, "expires_at": expires_at}),
        )),
        LicenseEvent::LicenseRevoked {
            license_id,
            order_id,
            reason,
            at,
        } => Some((
            EventType::LicenseRevoked,
            *at,
            order_key(order_id),
            json!({"license_id": license_id, "order_id": order_id, "reason": reason}),
        )),
        LicenseEvent::LicenseAttached { .. } | LicenseEvent::LicenseIssueFailed { .. } => None,
    }
}

fn inventory_sku(e: &InventoryEvent) -> &Sku {
    use InventoryEvent as I;
    match e {
        I::StockReceived { sku, .. }
        | I::StockAdjusted { sku, .. }
        | I::StockReserved { sku, .. }
        | I::ReservationRejected { sku, .. }
        | I::ReservationConfirmed { sku, .. }
        | I::ReservationReleased { sku, .. } => sku,
    }
}

fn inventory_at(e: &InventoryEvent) -> DateTime<Utc> {
    use InventoryEvent as I;
    match e {
        I::StockReceived { at, .. }
        | I::StockAdjusted { at, .. }
        | I::StockReserved { at, .. }
        | I::ReservationRejected { at, .. }
        | I::ReservationConfirmed { at, .. }
        | I::ReservationReleased { at, .. } => *at,
    }
}
