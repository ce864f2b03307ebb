//! Every event the domain accepts can be projected by every projection: generated command
//! sequences, with amounts and quantities from zero to far past every bound, go through the
//! pure domain; whatever it accepts is appended to a real event store, and every read model
//! must then catch up without a single failure.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use purser_domain::cart::{Cart, CartCommand};
use purser_domain::inventory::{AdjustmentReason, Inventory, InventoryCommand};
use purser_domain::order::{Order, OrderCommand, OrderLine};
use purser_domain::payment::{Payment, PaymentCommand, PaymentMethod};
use purser_domain::product::{Product, ProductCommand, ProductKind};
use purser_domain::{
    Aggregate, CartId, Currency, CustomerId, Email, Event, Money, OrderId, PaymentId, Quantity, Sku,
};
use purser_event_store::{
    EventStore, ExpectedVersion, Metadata, NewEvent, PgEventStore, StreamName,
};
use purser_projections::{Checkpoints, Projector};
use purser_testkit::TestDb;

/// An amount from the whole range a client could send: ordinary prices, the bound and just
/// past it, and the far end of `i64`.
fn amount() -> impl Strategy<Value = i64> {
    prop_oneof![
        4 => 0i64..100_000,
        2 => (Money::MAX_MINOR - 1_000)..=(Money::MAX_MINOR + 1_000),
        1 => (Money::MAX_MINOR / 3)..(Money::MAX_MINOR),
        1 => Just(i64::MAX),
        1 => (i64::MAX / 4)..i64::MAX,
    ]
}

fn quantity() -> impl Strategy<Value = i64> {
    prop_oneof![3 => 1i64..20, 1 => 1i64..=i64::from(Quantity::MAX), 1 => Just(i64::from(Quantity::MAX))]
}

#[derive(Debug, Clone)]
enum Step {
    Product {
        sku: u8,
        price: i64,
    },
    Reprice {
        sku: u8,
        price: i64,
    },
    Receive {
        sku: u8,
        qty: i64,
    },
    Adjust {
        sku: u8,
        delta: i64,
    },
    CartAdd {
        cart: u8,
        sku: u8,
        qty: i64,
        price: i64,
    },
    CartChange {
        cart: u8,
        sku: u8,
        qty: i64,
    },
    Place {
        order: u8,
        lines: Vec<(u8, i64, i64)>,
    },
    Pay {
        order: u8,
        amount: i64,
        refund: i64,
    },
}

fn step() -> impl Strategy<Value = Step> {
    let sku = 0u8..4;
    prop_oneof![
        (sku.clone(), amount()).prop_map(|(sku, price)| Step::Product { sku, price }),
        (sku.clone(), amount()).prop_map(|(sku, price)| Step::Reprice { sku, price }),
        (sku.clone(), quantity()).prop_map(|(sku, qty)| Step::Receive { sku, qty }),
        (sku.clone(), -2_000_000i64..2_000_000)
            .prop_map(|(sku, delta)| Step::Adjust { sku, delta }),
        (0u8..3, sku.clone(), quantity(), amount()).prop_map(|(cart, sku, qty, price)| {
            Step::CartAdd {
                cart,
                sku,
                qty,
                price,
            }
        }),
        (0u8..3, sku.clone(), quantity()).prop_map(|(cart, sku, qty)| Step::CartChange {
            cart,
            sku,
            qty
        }),
        (
            0u8..3,
            prop::collection::vec((sku.clone(), quantity(), amount()), 1..4)
        )
            .prop_map(|(order, lines)| Step::Place { order, lines }),
        (0u8..3, amount(), amount()).prop_map(|(order, amount, refund)| Step::Pay {
            order,
            amount,
            refund
        }),
    ]
}

/// Decides `command` on `id`'s state in `states`; accepted events are folded in and kept.
fn run<A>(
    states: &mut HashMap<A::Id, A::State>,
    accepted: &mut Vec<(StreamName, NewEvent)>,
    id: &A::Id,
    command: A::Command,
) where
    A: Aggregate,
    A::Id: Hash + Eq + Clone,
{
    let state = states.get(id).cloned().unwrap_or_default();
    let Ok(events) = A::decide(&state, command) else {
        return;
    };
    states.insert(id.clone(), events.iter().fold(state, A::evolve));
    for e in events {
        let (t, v, data) = e.encode();
        accepted.push((
            StreamName::new(A::stream(id)).unwrap(),
            NewEvent {
                id: uuid::Uuid::now_v7(),
                event_type: t.into(),
                schema_version: v,
                data,
                metadata: Metadata::default(),
            },
        ));
    }
}

/// The pure domain's states of one generated case, and the events it accepted, in order.
#[derive(Default)]
struct World {
    case: usize,
    products: HashMap<Sku, <Product as Aggregate>::State>,
    stock: HashMap<Sku, <Inventory as Aggregate>::State>,
    carts: HashMap<CartId, <Cart as Aggregate>::State>,
    orders: HashMap<OrderId, <Order as Aggregate>::State>,
    payments: HashMap<PaymentId, <Payment as Aggregate>::State>,
    accepted: Vec<(StreamName, NewEvent)>,
}

fn now() -> DateTime<Utc> {
    DateTime::from_timestamp(1_767_225_600, 0).unwrap()
}

fn usd(minor: i64) -> Money {
    Money::new(minor, Currency::USD)
}

impl World {
    fn sku(&self, n: u8) -> Sku {
        Sku::parse(&format!("P{}-{n}", self.case)).unwrap()
    }

    fn id(&self, kind: &str, n: u8) -> uuid::Uuid {
        purser_domain::derive_id(&[kind, &self.case.to_string(), &n.to_string()])
    }

    fn apply(&mut self, step: Step) {
        match step {
            Step::Product { sku, price } => {
                let sku = self.sku(sku);
                let cmd = ProductCommand::Create {
                    sku: sku.clone(),
                    name: format!("Product {sku}"),
                    description: String::new(),
                    brand: "Acme".into(),
                    category: "Tests".into(),
                    kind: ProductKind::Physical,
                    price: usd(price),
                    now: now(),
                };
                run::<Product>(&mut self.products, &mut self.accepted, &sku, cmd);
            }
            Step::Reprice { sku, price } => {
                let sku = self.sku(sku);
                let cmd = ProductCommand::ChangePrice {
                    price: usd(price),
                    now: now(),
                };
                run::<Product>(&mut self.products, &mut self.accepted, &sku, cmd);
            }
            Step::Receive { sku, qty } => {
                let sku = self.sku(sku);
                let cmd = InventoryCommand::Receive {
                    sku: sku.clone(),
                    qty: Quantity::new(qty).unwrap(),
                    now: now(),
                };
                run::<Inventory>(&mut self.stock, &mut self.accepted, &sku, cmd);
            }
            Step::Adjust { sku, delta } => {
                let sku = self.sku(sku);
                let cmd = InventoryCommand::Adjust {
                    sku: sku.clone(),
                    delta,
                    reason: AdjustmentReason::Correction,
                    note: String::new(),
                    now: now(),
                };
                run::<Inventory>(&mut self.stock, &mut self.accepted, &sku, cmd);
            }
            Step::CartAdd {
                cart,
                sku,
                qty,
                price,
            } => self.cart_add(cart, sku, qty, price),
            Step::CartChange { cart, sku, qty } => {
                let id = CartId::from(self.id("cart", cart));
                let cmd = CartCommand::ChangeQuantity {
                    sku: self.sku(sku),
                    qty: Quantity::new(qty).unwrap(),
                    available: None,
                    now: now(),
                };
                run::<Cart>(&mut self.carts, &mut self.accepted, &id, cmd);
            }
            Step::Place { order, lines } => self.place(order, lines),
            Step::Pay {
                order,
                amount,
                refund,
            } => self.pay(order, amount, refund),
        }
    }

    fn cart_add(&mut self, cart: u8, sku: u8, qty: i64, price: i64) {
        let id = CartId::from(self.id("cart", cart));
        let create = CartCommand::Create {
            cart_id: id,
            customer_id: None,
            currency: Currency::USD,
            now: now(),
        };
        if !self.carts.contains_key(&id) {
            run::<Cart>(&mut self.carts, &mut self.accepted, &id, create);
        }
        let cmd = CartCommand::AddItem {
            sku: self.sku(sku),
            name: "Item".into(),
            digital: false,
            qty: Quantity::new(qty).unwrap(),
            unit_price: usd(price),
            available: None,
            now: now(),
        };
        run::<Cart>(&mut self.carts, &mut self.accepted, &id, cmd);
    }

    fn place(&mut self, order: u8, lines: Vec<(u8, i64, i64)>) {
        let order_id = OrderId::from(self.id("order", order));
        let mut unique = HashMap::new();
        for (sku, qty, price) in lines {
            unique.insert(sku, (qty, price));
        }
        let lines: Result<Vec<OrderLine>, _> = unique
            .into_iter()
            .map(|(sku, (qty, price))| {
                OrderLine::new(
                    self.sku(sku),
                    "Item",
                    Quantity::new(qty).unwrap(),
                    usd(price),
                    None,
                )
            })
            .collect();
        let Ok(lines) = lines else {
            return;
        };
        let cmd = OrderCommand::Place {
            order_id,
            customer_id: CustomerId::from(self.id("customer", order)),
            email: Email::parse("buyer@example.com").unwrap(),
            lines,
            cart_id: None,
            payment_method: PaymentMethod::parse("pm_card_visa").unwrap(),
            shipping_address: None,
            now: now(),
        };
        run::<Order>(&mut self.orders, &mut self.accepted, &order_id, cmd);
    }

    fn pay(&mut self, order: u8, amount: i64, refund: i64) {
        let order_id = OrderId::from(self.id("order", order));
        let payment_id = PaymentId::from(self.id("payment", order));
        let steps = [
            PaymentCommand::CreateIntent {
                payment_id,
                order_id,
                amount: usd(amount),
                payment_method: PaymentMethod::parse("pm_card_visa").unwrap(),
                idempotency_key: format!("k-{}", self.case),
                now: now(),
            },
            PaymentCommand::Capture {
                gateway_reference: "ch_1".into(),
                now: now(),
            },
            PaymentCommand::Refund {
                amount: usd(refund),
                reason: "test".into(),
                refund_reference: format!("re_{refund}"),
                now: now(),
            },
        ];
        for cmd in steps {
            run::<Payment>(&mut self.payments, &mut self.accepted, &payment_id, cmd);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_the_domain_accepts_is_projectable() {
    let db = TestDb::new().await;
    let pool = db.pool().await;
    let store: Arc<dyn EventStore> = Arc::new(PgEventStore::new(pool.clone()));
    let mut runner = TestRunner::deterministic();
    let steps = prop::collection::vec(step(), 1..40);
    let mut appended = 0;
    for case in 0..60 {
        let mut world = World {
            case,
            ..World::default()
        };
        for s in steps.new_tree(&mut runner).unwrap().current() {
            world.apply(s);
        }
        for (stream, event) in world.accepted {
            store
                .append(&stream, ExpectedVersion::Any, vec![event])
                .await
                .unwrap();
            appended += 1;
        }
    }
    assert!(
        appended > 200,
        "the generator produced too little: {appended} events"
    );
    let projector = Projector::new(
        store,
        pool.clone(),
        purser_projections::all(),
        Checkpoints::new(pool.clone()),
    );
    for name in projector.names() {
        let applied = projector.catch_up(name).await;
        assert!(
            applied.is_ok(),
            "{name} failed on an accepted event: {applied:?}"
        );
    }
}
