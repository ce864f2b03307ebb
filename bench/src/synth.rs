//! A realistic event log, made by encoding `purser_domain` events exactly as the command side
//! stores them: a catalog (products and their opening stock), then orders with one to four
//! lines, each with its stock reservations, payment intent, capture or failure, confirmation
//! and, for many, shipping and delivery.

use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};
use purser_domain::inventory::{AdjustmentReason, InventoryEvent, ReleaseReason};
use purser_domain::order::{CancelledBy, OrderEvent, OrderLine, ShippingAddress};
use purser_domain::payment::{PaymentEvent, PaymentFailureReason, PaymentMethod};
use purser_domain::product::{DigitalTerms, LicenseSource, ProductEvent, ProductKind};
use purser_domain::{
    CustomerId, Email, Event, Money, OrderId, PaymentId, Quantity, ReservationId, Sku,
};
use purser_event_store::{ExpectedVersion, Metadata, NewEvent, StreamName};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use uuid::Uuid;

/// Opening stock of every physical product: far more than any bench sells.
pub(crate) const OPENING_STOCK: i64 = 1_000_000;

pub(crate) struct ProductSpec {
    pub(crate) sku: Sku,
    pub(crate) name: String,
    pub(crate) description: String,
    pub(crate) brand: &'static str,
    pub(crate) category: &'static str,
    pub(crate) price: Money,
    pub(crate) digital: Option<DigitalTerms>,
}

/// A category: name, digital?, product nouns, price range in minor units.
type Category = (&'static str, bool, &'static [&'static str], (i64, i64));

const CATEGORIES: &[Category] = &[
    (
        "Laptops",
        false,
        &["Laptop", "Notebook", "Ultrabook"],
        (49_900, 289_900),
    ),
    ("Phones", false, &["Phone", "Smartphone"], (19_900, 149_900)),
    (
        "Headphones",
        false,
        &["Headphones", "Earbuds", "Headset"],
        (2_900, 44_900),
    ),
    (
        "Monitors",
        false,
        &["Monitor", "Display"],
        (12_900, 119_900),
    ),
    (
        "Keyboards",
        false,
        &["Keyboard", "Mechanical Keyboard"],
        (3_900, 24_900),
    ),
    (
        "Accessories",
        false,
        &["USB-C Hub", "Charger", "Laptop Sleeve", "Mouse"],
        (990, 8_900),
    ),
    (
        "Security Software",
        true,
        &["Antivirus", "Internet Security", "VPN"],
        (2_999, 14_999),
    ),
    (
        "Creative Software",
        true,
        &["Photo Studio", "Video Editor"],
        (4_999, 59_999),
    ),
];
const BRANDS: &[&str] = &[
    "Acme", "Globex", "Initech", "Umbrella", "Hooli", "Stark", "Wayne", "Sentinel", "Vandelay",
    "Soylent",
];
const ADJECTIVES: &[&str] = &[
    "Pro", "Air", "Max", "Lite", "Ultra", "Plus", "Studio", "Mini", "Prime", "Edge", "Nova", "Zen",
];

/// The `i`-th product; the same `i` always gives the same product.
pub(crate) fn product(i: usize) -> ProductSpec {
    let (category, digital, nouns, (lo, hi)) = CATEGORIES[i % CATEGORIES.len()];
    let brand = BRANDS[(i / CATEGORIES.len()) % BRANDS.len()];
    let noun = nouns[(i / 7) % nouns.len()];
    let adj = ADJECTIVES[(i * 5 + i / 3) % ADJECTIVES.len()];
    let generation = 1 + i / (CATEGORIES.len() * BRANDS.len());
    let name = format!("{brand} {noun} {adj} {generation}");
    let step = (hi - lo) / 37;
    let raw = lo + step * ((i as i64 * 13) % 37);
    let price = if digital {
        raw - raw % 100 + 99
    } else {
        raw - raw % 100
    };
    ProductSpec {
        sku: Sku::parse(&format!("{}-{i:05}", &category[..3].to_ascii_uppercase()))
            .expect("valid SKU"),
        description: format!("{name}: a {} {noun} from {brand}.", adj.to_lowercase()),
        name,
        brand,
        category,
        price: Money::new(price, purser_domain::Currency::USD),
        digital: digital.then_some(DigitalTerms {
            license: LicenseSource::Signed,
            seats: 1,
            validity_days: Some(365),
        }),
    }
}

pub(crate) fn catalog(n: usize) -> Arc<Vec<ProductSpec>> {
    Arc::new((0..n).map(product).collect())
}

/// One append: events for one stream.
pub(crate) struct Append {
    pub(crate) stream: StreamName,
    pub(crate) expected: ExpectedVersion,
    pub(crate) events: Vec<NewEvent>,
}

pub(crate) fn new_event<E: Event>(e: &E, correlation: Uuid, actor: &str) -> NewEvent {
    let (event_type, schema_version, data) = e.encode();
    NewEvent {
        id: Uuid::now_v7(),
        event_type: event_type.to_owned(),
        schema_version,
        data,
        metadata: Metadata {
            correlation_id: Some(correlation),
            actor: Some(actor.to_owned()),
            ..Metadata::default()
        },
    }
}

fn stream(name: String) -> StreamName {
    StreamName::new(name).expect("generated stream names are valid")
}

/// The first day of generated history.
pub(crate) fn epoch() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 1, 6, 9, 0, 0)
        .single()
        .expect("valid date")
}

/// The catalog's appends: each product created, and each physical one stocked.
pub(crate) fn catalog_appends(catalog: &[ProductSpec]) -> Vec<Append> {
    let at = epoch() - Duration::days(30);
    let mut out = Vec::new();
    for p in catalog {
        let created = ProductEvent::ProductCreated {
            sku: p.sku.clone(),
            name: p.name.clone(),
            description: p.description.clone(),
            brand: p.brand.to_owned(),
            category: p.category.to_owned(),
            kind: p.digital.map(ProductKind::digital).unwrap_or_default(),
            price: p.price,
            at,
        };
        out.push(Append {
            stream: stream(p.sku.product_stream()),
            expected: ExpectedVersion::NoStream,
            events: vec![new_event(&created, Uuid::now_v7(), "admin:bench")],
        });
        if p.digital.is_none() {
            let received = InventoryEvent::StockReceived {
                sku: p.sku.clone(),
                qty: Quantity::new(OPENING_STOCK).expect("valid quantity"),
                at,
            };
            out.push(Append {
                stream: stream(p.sku.inventory_stream()),
                expected: ExpectedVersion::NoStream,
                events: vec![new_event(&received, Uuid::now_v7(), "admin:bench")],
            });
        }
    }
    out
}

/// One order's events: its own stream, its payment's, and per line the stock reservation and
/// how it ended (confirmed, or released when the payment failed), in that order.
pub(crate) struct OrderFlow {
    pub(crate) order: Append,
    pub(crate) payment: Append,
    pub(crate) inventory: Vec<(Sku, Vec<NewEvent>)>,
}

impl OrderFlow {
    pub(crate) fn events(&self) -> usize {
        self.order.events.len()
            + self.payment.events.len()
            + self.inventory.iter().map(|(_, e)| e.len()).sum::<usize>()
    }
}

/// Makes orders, deterministically per seed.
pub(crate) struct OrderGen {
    rng: StdRng,
    catalog: Arc<Vec<ProductSpec>>,
    physical: Vec<usize>,
    clock: DateTime<Utc>,
    method: PaymentMethod,
    address: ShippingAddress,
}

impl OrderGen {
    pub(crate) fn new(catalog: Arc<Vec<ProductSpec>>, seed: u64) -> OrderGen {
        let physical = (0..catalog.len())
            .filter(|i| catalog[*i].digital.is_none())
            .collect();
        OrderGen {
            rng: StdRng::seed_from_u64(seed),
            catalog,
            physical,
            clock: epoch() + Duration::seconds(seed as i64),
            method: PaymentMethod::parse("pm_card_visa").expect("valid token"),
            address: ShippingAddress::parse(
                "Ann Buyer",
                "1 Main St",
                None,
                "Springfield",
                "12345",
                "US",
            )
            .expect("valid address"),
        }
    }

    /// A stock movement outside any order (a recount or a delivery from a supplier).
    pub(crate) fn movement(&mut self) -> (Sku, NewEvent) {
        let p = &self.catalog[self.physical[self.rng.random_range(0..self.physical.len())]];
        let at = self.clock;
        let e = if self.rng.random_bool(0.5) {
            InventoryEvent::StockReceived {
                sku: p.sku.clone(),
                qty: Quantity::new(self.rng.random_range(1..=20)).expect("valid quantity"),
                at,
            }
        } else {
            InventoryEvent::StockAdjusted {
                sku: p.sku.clone(),
                delta: self.rng.random_range(-2..=3),
                reason: AdjustmentReason::Recount,
                note: "cycle count".into(),
                at,
            }
        };
        (p.sku.clone(), new_event(&e, Uuid::now_v7(), "admin:bench"))
    }

    pub(crate) fn next_order(&mut self) -> OrderFlow {
        let d = self.draw();
        let (order_id, payment_id, total) = (d.order_id, d.payment_id, d.total);
        let mut order = vec![
            d.event(&OrderEvent::OrderPlaced {
                order_id,
                customer_id: d.customer_id,
                email: d.email.clone(),
                lines: d.lines.clone(),
                total,
                cart_id: None,
                payment_method: self.method.clone(),
                shipping_address: Some(self.address.clone()),
                at: d.t,
            }),
            d.event(&OrderEvent::OrderPaymentStarted {
                order_id,
                payment_id,
                at: d.s(1),
            }),
        ];
        let mut payment = vec![d.event(&PaymentEvent::PaymentIntentCreated {
            payment_id,
            order_id,
            amount: total,
            payment_method: self.method.clone(),
            idempotency_key: format!("checkout-{order_id}"),
            at: d.s(1),
        })];
        if d.paid {
            d.paid_events(&mut order, &mut payment);
        } else {
            d.failed_events(&mut order, &mut payment);
        }
        OrderFlow {
            inventory: d.inventory_events(),
            order: Append {
                stream: stream(order_id.stream()),
                expected: ExpectedVersion::NoStream,
                events: order,
            },
            payment: Append {
                stream: stream(payment_id.stream()),
                expected: ExpectedVersion::NoStream,
                events: payment,
            },
        }
    }

    /// Everything random about the next order, drawn in a fixed order (so a seed always gives
    /// the same orders).
    fn draw(&mut self) -> Draw {
        let rng = &mut self.rng;
        self.clock += Duration::seconds(rng.random_range(5..60));
        let t = self.clock;
        let order_id = OrderId::new();
        let payment_id = PaymentId::derived(&["payment", &order_id.to_string()]);
        let email = Email::parse(&format!(
            "customer{}@example.com",
            rng.random_range(0..20_000)
        ))
        .expect("valid email");
        let customer_id = CustomerId::for_email(&email);
        let n_lines = match rng.random_range(0..100) {
            0..50 => 1,
            50..80 => 2,
            80..95 => 3,
            _ => 4,
        };
        let mut picked: Vec<usize> = Vec::with_capacity(n_lines);
        while picked.len() < n_lines.min(self.physical.len()) {
            let i = self.physical[rng.random_range(0..self.physical.len())];
            if !picked.contains(&i) {
                picked.push(i);
            }
        }
        let lines: Vec<OrderLine> = picked
            .iter()
            .map(|i| {
                let p = &self.catalog[*i];
                let qty = Quantity::new(rng.random_range(1..=3)).expect("valid quantity");
                OrderLine::new(p.sku.clone(), &p.name, qty, p.price, None).expect("valid line")
            })
            .collect();
        let total = lines
            .iter()
            .try_fold(Money::zero(purser_domain::Currency::USD), |acc, l| {
                acc.checked_add(l.line_total)
            })
            .expect("total in range");
        let paid = rng.random_range(0..100) < 92;
        let shipped = paid && rng.random_range(0..100) < 60;
        let delivered = shipped && rng.random_range(0..100) < 70;
        Draw {
            t,
            oid: order_id.as_uuid(),
            order_id,
            payment_id,
            email,
            customer_id,
            lines,
            total,
            paid,
            shipped,
            delivered,
        }
    }
}

/// One generated order, before its events are made.
struct Draw {
    /// When it is placed; its later events are seconds to days after.
    t: DateTime<Utc>,
    oid: Uuid,
    order_id: OrderId,
    payment_id: PaymentId,
    email: Email,
    customer_id: CustomerId,
    lines: Vec<OrderLine>,
    total: Money,
    paid: bool,
    shipped: bool,
    delivered: bool,
}

impl Draw {
    /// `secs` seconds after the placing.
    fn s(&self, secs: i64) -> DateTime<Utc> {
        self.t + Duration::seconds(secs)
    }

    fn event<E: Event>(&self, e: &E) -> NewEvent {
        new_event(e, self.oid, "system:checkout")
    }

    /// The capture, confirmation and, for some, shipping and delivery.
    fn paid_events(&self, order: &mut Vec<NewEvent>, payment: &mut Vec<NewEvent>) {
        let (order_id, payment_id) = (self.order_id, self.payment_id);
        let reference = format!("sim_{}", Uuid::now_v7().simple());
        payment.push(self.event(&PaymentEvent::PaymentCaptured {
            payment_id,
            order_id,
            amount: self.total,
            gateway_reference: reference.clone(),
            at: self.s(2),
        }));
        order.push(self.event(&OrderEvent::OrderPaid {
            order_id,
            payment_id,
            gateway_reference: reference,
            amount: self.total,
            at: self.s(2),
        }));
        order.push(self.event(&OrderEvent::OrderConfirmed {
            order_id,
            at: self.s(2),
        }));
        if self.shipped {
            order.push(self.event(&OrderEvent::OrderProcessingStarted {
                order_id,
                at: self.s(3_600),
            }));
            order.push(self.event(&OrderEvent::OrderShipped {
                order_id,
                tracking_number: format!("1Z{}", &self.oid.simple().to_string()[..16]),
                carrier: "UPS".into(),
                estimated_delivery: Some(self.s(3 * 86_400)),
                at: self.s(86_400),
            }));
        }
        if self.delivered {
            order.push(self.event(&OrderEvent::OrderDelivered {
                order_id,
                at: self.s(3 * 86_400),
            }));
        }
    }

    /// The declined payment and the order's cancellation.
    fn failed_events(&self, order: &mut Vec<NewEvent>, payment: &mut Vec<NewEvent>) {
        let (order_id, payment_id) = (self.order_id, self.payment_id);
        payment.push(self.event(&PaymentEvent::PaymentFailed {
            payment_id,
            order_id,
            reason: PaymentFailureReason::Declined,
            message: "The card was declined.".into(),
            at: self.s(2),
        }));
        order.push(self.event(&OrderEvent::OrderPaymentFailed {
            order_id,
            reason: "declined".into(),
            message: "The card was declined.".into(),
            at: self.s(2),
        }));
        order.push(self.event(&OrderEvent::OrderCancelled {
            order_id,
            reason: "payment failed".into(),
            by: CancelledBy::System,
            was_paid: false,
            at: self.s(2),
        }));
    }

    /// Per line, the stock reservation and how it ended: confirmed, or released when the
    /// payment failed.
    fn inventory_events(&self) -> Vec<(Sku, Vec<NewEvent>)> {
        let order_id = self.order_id;
        self.lines
            .iter()
            .map(|l| {
                let reservation_id =
                    ReservationId::derived(&["reservation", &order_id.to_string(), l.sku.as_str()]);
                let reserved = self.event(&InventoryEvent::StockReserved {
                    sku: l.sku.clone(),
                    reservation_id,
                    order_id,
                    qty: l.qty,
                    expires_at: self.s(600),
                    at: self.t,
                });
                let settled = if self.paid {
                    self.event(&InventoryEvent::ReservationConfirmed {
                        sku: l.sku.clone(),
                        reservation_id,
                        order_id,
                        qty: l.qty,
                        at: self.s(2),
                    })
                } else {
                    self.event(&InventoryEvent::ReservationReleased {
                        sku: l.sku.clone(),
                        reservation_id,
                        order_id,
                        qty: l.qty,
                        reason: ReleaseReason::PaymentFailed,
                        at: self.s(2),
                    })
                };
                (l.sku.clone(), vec![reserved, settled])
            })
            .collect()
    }
}

/// A pool of encoded events, for the append rows' payloads: (type, schema version, data).
pub(crate) fn sample_payloads(n: usize) -> Vec<(String, u16, serde_json::Value)> {
    let mut g = OrderGen::new(catalog(50), 7);
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let flow = g.next_order();
        let all = flow
            .order
            .events
            .into_iter()
            .chain(flow.payment.events)
            .chain(flow.inventory.into_iter().flat_map(|(_, e)| e));
        out.extend(all.map(|e| (e.event_type, e.schema_version, e.data)));
    }
    out.truncate(n);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_events_decode_as_the_domain_reads_them() {
        let mut g = OrderGen::new(catalog(30), 1);
        let mut n = 0;
        for _ in 0..200 {
            let f = g.next_order();
            assert!(f.events() >= 6);
            let appends = [&f.order, &f.payment];
            for a in appends {
                for e in &a.events {
                    purser_domain::events::AnyEvent::decode(
                        a.stream.category(),
                        &e.event_type,
                        e.schema_version,
                        e.data.clone(),
                    )
                    .unwrap();
                    n += 1;
                }
            }
            for (_, evs) in &f.inventory {
                for e in evs {
                    purser_domain::events::AnyEvent::decode(
                        "inventory",
                        &e.event_type,
                        e.schema_version,
                        e.data.clone(),
                    )
                    .unwrap();
                }
            }
        }
        assert!(n > 1000);
        assert_eq!(catalog_appends(&catalog(8)).len(), 8 + 6);
    }
}
