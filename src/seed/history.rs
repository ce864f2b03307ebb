//! Demo history: customers, carts and a few thousand orders spread over past weeks, in every
//! outcome (delivered, shipped, fulfilled, payment failed, out of stock, refunded, cancelled
//! by an admin), so every read model and analytics view has something to show.
//!
//! Every order goes through the real aggregates (the same commands the checkout process
//! manager and an admin would send, with the same deterministic ids), dated in the past. The
//! checkout process manager's state for each order is folded with the same pure function the
//! runner uses, and the runner (and the notification queue) are then marked as caught up, so
//! nobody acts on history twice or emails thousands of demo addresses; later admin actions on
//! a seeded order (a cancel, say) compensate exactly as for a live one. While it writes, the
//! seed holds those projections' claims, so a server started meanwhile cannot act on it.

use std::collections::BTreeSet;

use anyhow::{Context, anyhow};
use chrono::{DateTime, Duration, Utc};
use futures::StreamExt;
use purser_command_api::accounts::{Password, hash_password};
use purser_command_api::licensing::LicenseSigner;
use purser_command_api::{CommandBus, CommandContext, Executed};
use purser_domain::cart::{Cart, CartCommand};
use purser_domain::checkout::{self, CheckoutState};
use purser_domain::customer::{Customer, CustomerCommand};
use purser_domain::events::AnyEvent;
use purser_domain::inventory::{
    AdjustmentReason, Inventory, InventoryCommand, InventoryEvent, ReleaseReason,
};
use purser_domain::license::{
    License, LicenseCommand, LicensePayload, LicensePool, LicensePoolCommand, LicensePoolEvent,
};
use purser_domain::order::{CancelledBy, Order, OrderCommand, OrderLine, ShippingAddress};
use purser_domain::payment::{Payment, PaymentCommand, PaymentFailureReason, PaymentMethod};
use purser_domain::product::{LicenseSource, ProductKind};
use purser_domain::{Aggregate, CartId, CustomerId, Email, Money, OrderId, Quantity, Sku};
use purser_event_store::{EventFilter, Position, StreamName};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::app::Services;
use crate::seed::demo_product;

/// How much history to make.
#[derive(Debug, Clone, Copy)]
pub struct HistoryOptions {
    pub customers: usize,
    pub orders: usize,
    /// How far back the history goes.
    pub days: i64,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct HistoryReport {
    pub customers: usize,
    pub orders: usize,
    pub abandoned_carts: usize,
    pub skipped: Option<String>,
}

/// Projections that must not act on seeded history.
const QUIET: &[&str] = &["checkout_process", "notification_queue"];

struct Catalog {
    /// (sku, name, price, stocked)
    physical: Vec<(Sku, String, Money, bool)>,
    /// (sku, name, price, kind)
    digital: Vec<(Sku, String, Money, ProductKind)>,
}

fn catalog(size: usize) -> Catalog {
    let mut c = Catalog {
        physical: vec![],
        digital: vec![],
    };
    for i in 0..size {
        let (p, stock) = demo_product(i);
        match p.kind {
            ProductKind::Physical => {
                c.physical
                    .push((p.sku, p.details.name, p.price, stock.is_some()))
            }
            kind => c.digital.push((p.sku, p.details.name, p.price, kind)),
        }
    }
    c
}

fn stream(name: String) -> StreamName {
    StreamName::new(name).expect("seed ids make valid stream names")
}

/// Runs one command and keeps its events (for folding the process manager's state).
async fn run<A>(
    bus: &CommandBus,
    stream_name: String,
    cmd: A::Command,
    out: &mut Vec<AnyEvent>,
) -> anyhow::Result<Executed<A>>
where
    A: Aggregate,
    A::State: Send + Sync + 'static,
    A::Command: Clone,
    A::Event: Into<AnyEvent>,
{
    let done = bus
        .execute::<A>(
            &stream(stream_name.clone()),
            &CommandContext::system("seed"),
            cmd,
        )
        .await
        .map_err(|e| anyhow!("seeding {stream_name}: {e}"))?;
    out.extend(done.events.iter().cloned().map(Into::into));
    Ok(done)
}

/// Whether any order exists already.
async fn history_exists(services: &Services) -> anyhow::Result<bool> {
    let found = services
        .store
        .read_all(Position::START, 1, &EventFilter::categories(["order"]))
        .await?;
    Ok(!found.is_empty())
}

pub(super) async fn seed_history(
    services: &Services,
    catalog_size: usize,
    opts: HistoryOptions,
) -> anyhow::Result<HistoryReport> {
    if opts.orders == 0 {
        return Ok(HistoryReport {
            skipped: Some("no history asked for".into()),
            ..Default::default()
        });
    }
    if history_exists(services).await? {
        return Ok(HistoryReport {
            skipped: Some("orders exist already".into()),
            ..Default::default()
        });
    }
    let mut claims = Vec::new();
    for name in QUIET {
        match purser_projections::claim(&services.pool, name).await? {
            Some(c) => claims.push((name, c)),
            None => {
                return Err(anyhow!(
                    "a running server holds the {name} projection; stop it before loading demo history (scripts/up.sh seeds first)"
                ));
            }
        }
    }
    let signer = crate::app::load_license_signer(&services.config)?;
    let report = write_history(services, catalog_size, opts, signer.as_ref()).await?;
    let head = services
        .store
        .last_committed()
        .await?
        .map(|h| h.position)
        .unwrap_or(Position::START);
    for (name, mut claim) in claims {
        purser_projections::fast_forward(&mut claim, name, head).await?;
        claim.release(name).await;
    }
    Ok(report)
}

async fn write_history(
    services: &Services,
    catalog_size: usize,
    opts: HistoryOptions,
    signer: Option<&LicenseSigner>,
) -> anyhow::Result<HistoryReport> {
    let bus = &services.bus;
    let now = Utc::now();
    let start = now - Duration::days(opts.days);
    let cat = catalog(catalog_size);
    let mut sink = Vec::new();

    // Stock and license keys on hand since the start of the history.
    for (sku, _, _, stocked) in &cat.physical {
        if *stocked {
            let cmd = InventoryCommand::Receive {
                sku: sku.clone(),
                qty: Quantity::new(800).expect("valid"),
                now: start,
            };
            run::<Inventory>(bus, sku.inventory_stream(), cmd, &mut sink).await?;
        }
    }
    for (sku, _, _, kind) in &cat.digital {
        if matches!(
            kind,
            ProductKind::Digital {
                license: LicenseSource::Pool,
                ..
            }
        ) {
            let keys = (0..400)
                .map(|n| format!("DEMO-{}-{n:05}", sku.as_str()))
                .collect();
            let cmd = LicensePoolCommand::LoadKeys {
                sku: sku.clone(),
                keys,
                now: start,
            };
            run::<LicensePool>(bus, sku.license_pool_stream(), cmd, &mut sink).await?;
        }
    }

    // Customers: some signed up (all with one demo password, hashed once), the rest appear as
    // guests when they first buy software.
    let hash = hash_password(Password::parse("demo-customer".into()).map_err(|e| anyhow!("{e}"))?)
        .await
        .map_err(|e| anyhow!("{e}"))?;
    let mut registered = BTreeSet::new();
    for i in 0..opts.customers {
        if i % 7 == 0 {
            let email = customer_email(i);
            let at = start + Duration::minutes((i as i64 * 97) % (opts.days * 24 * 60).max(1));
            let cmd = CustomerCommand::Register {
                email: email.clone(),
                name: customer_name(i),
                password_hash: hash.clone(),
                now: at,
            };
            run::<Customer>(bus, CustomerId::for_email(&email).stream(), cmd, &mut sink).await?;
            registered.insert(i);
        }
    }

    let cat = &cat;
    let registered = &registered;
    let results: Vec<anyhow::Result<(OrderId, Vec<AnyEvent>, bool)>> =
        futures::stream::iter(0..opts.orders)
            .map(|i| async move {
                let mut rng = StdRng::seed_from_u64(0x5eed_0000 + i as u64);
                let plan = plan(&mut rng, cat, start, now);
                let customer = i * 31 % opts.customers.max(1);
                seed_order(
                    bus,
                    signer,
                    i,
                    plan,
                    customer,
                    registered.contains(&customer),
                    now,
                )
                .await
            })
            .buffer_unordered(8)
            .collect()
            .await;

    // The checkout process manager's state for every seeded order, folded by the same pure
    // function the runner uses.
    let mut report = HistoryReport {
        customers: opts.customers,
        ..Default::default()
    };
    let mut tx = services.pool.begin().await?;
    for r in results {
        let (order_id, events, abandoned) = r?;
        report.orders += 1;
        report.abandoned_carts += usize::from(abandoned);
        let state = events
            .iter()
            .filter(|e| checkout::order_of(e) == Some(order_id))
            .fold(CheckoutState::default(), checkout::evolve);
        sqlx::query(
            "insert into purser.process_state (process, key, state, updated_at) values ('checkout', $1, $2, now())
             on conflict (process, key) do update set state = excluded.state",
        )
        .bind(order_id.to_string())
        .bind(serde_json::to_value(&state).context("checkout state serialises")?)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(report)
}

fn customer_email(i: usize) -> Email {
    Email::parse(&format!("customer{i:04}@example.com")).expect("valid demo email")
}

fn customer_name(i: usize) -> String {
    const FIRST: &[&str] = &[
        "Ada", "Ben", "Chloe", "Dev", "Elif", "Femi", "Greta", "Hiro", "Ines", "Jon", "Kemal",
        "Lena",
    ];
    const LAST: &[&str] = &[
        "Okafor",
        "Lindqvist",
        "Moreau",
        "Tanaka",
        "Silva",
        "Novak",
        "Haddad",
        "Kowalski",
        "Byrne",
    ];
    format!(
        "{} {}",
        FIRST[i % FIRST.len()],
        LAST[(i / FIRST.len()) % LAST.len()]
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Payment_ {
    Ok,
    Fails(PaymentFailureReason),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum After {
    Nothing,
    Refund,
    AdminCancel,
}

struct Plan {
    at: DateTime<Utc>,
    lines: Vec<(
        Sku,
        String,
        Money,
        Option<purser_domain::product::DigitalTerms>,
        Quantity,
        bool,
    )>,
    payment: Payment_,
    after: After,
    abandoned_cart: bool,
}

/// A deterministic plan for the `i`-th order: when, what, and how it goes.
fn plan(rng: &mut StdRng, cat: &Catalog, start: DateTime<Utc>, now: DateTime<Utc>) -> Plan {
    // More orders in recent weeks and in the afternoon and evening.
    let span = (now - start).num_minutes().max(60) - 60;
    let skew: f64 = rng.random::<f64>().powf(0.7);
    let mut at = start + Duration::minutes((skew * span as f64) as i64);
    let hour = [9, 11, 13, 14, 16, 18, 19, 20, 21, 22][rng.random_range(0..10)];
    at = at
        .date_naive()
        .and_hms_opt(hour, rng.random_range(0..60), rng.random_range(0..60))
        .expect("valid time")
        .and_utc();
    if at > now - Duration::hours(1) {
        at = now - Duration::hours(1) - Duration::minutes(rng.random_range(0..600));
    }
    let mix = rng.random_range(0..100);
    let (physical, digital) = match mix {
        0..70 => (rng.random_range(1..=3), 0),
        70..90 => (0, 1),
        _ => (1, 1),
    };
    let mut lines = Vec::new();
    let mut used = BTreeSet::new();
    for _ in 0..physical {
        let (sku, name, price, stocked) = &cat.physical[rng.random_range(0..cat.physical.len())];
        // Sold-out products rarely make it into carts, but some do: those orders fail for
        // want of stock.
        if !*stocked && rng.random_range(0..4) != 0 {
            continue;
        }
        if used.insert(sku.clone()) {
            let qty = Quantity::new(rng.random_range(1..=3)).expect("valid");
            lines.push((sku.clone(), name.clone(), *price, None, qty, *stocked));
        }
    }
    for _ in 0..digital {
        let (sku, name, price, kind) = &cat.digital[rng.random_range(0..cat.digital.len())];
        if used.insert(sku.clone()) {
            lines.push((
                sku.clone(),
                name.clone(),
                *price,
                kind.digital_terms(),
                Quantity::new(1).expect("valid"),
                true,
            ));
        }
    }
    if lines.is_empty() {
        let (sku, name, price, _) = cat
            .physical
            .iter()
            .find(|p| p.3)
            .expect("a stocked product");
        lines.push((
            sku.clone(),
            name.clone(),
            *price,
            None,
            Quantity::new(1).expect("valid"),
            true,
        ));
    }
    let payment = match rng.random_range(0..100) {
        0..5 => Payment_::Fails(PaymentFailureReason::InsufficientFunds),
        5..9 => Payment_::Fails(PaymentFailureReason::Declined),
        9..12 => Payment_::Fails(PaymentFailureReason::InvalidPaymentDetails),
        _ => Payment_::Ok,
    };
    let after = match rng.random_range(0..100) {
        0..4 => After::Refund,
        4..6 => After::AdminCancel,
        _ => After::Nothing,
    };
    Plan {
        at,
        lines,
        payment,
        after,
        abandoned_cart: rng.random_range(0..100) < 35,
    }
}

fn card(p: Payment_) -> &'static str {
    match p {
        Payment_::Ok => "pm_card_visa",
        Payment_::Fails(PaymentFailureReason::InsufficientFunds) => {
            "pm_card_chargeDeclinedInsufficientFunds"
        }
        Payment_::Fails(PaymentFailureReason::InvalidPaymentDetails) => {
            "pm_card_chargeDeclinedIncorrectCvc"
        }
        Payment_::Fails(_) => "pm_card_chargeDeclined",
    }
}

/// Writes one order's whole life. Returns its id, every event it appended, and whether an
/// abandoned cart came with it.
#[allow(clippy::too_many_arguments)]
async fn seed_order(
    bus: &CommandBus,
    signer: Option<&LicenseSigner>,
    i: usize,
    plan: Plan,
    customer: usize,
    registered: bool,
    now: DateTime<Utc>,
) -> anyhow::Result<(OrderId, Vec<AnyEvent>, bool)> {
    let mut ev = Vec::new();
    let t = plan.at;
    let s = |secs: i64| t + Duration::seconds(secs);
    let email = customer_email(customer);
    let customer_id = CustomerId::for_email(&email);
    let order_id = OrderId::derived(&["seed-order", &i.to_string()]);
    let cart_id = CartId::derived(&["seed-cart", &i.to_string()]);
    let owner = registered.then_some(customer_id);
    let ccy = plan.lines[0].2.currency;

    // The cart that became this order.
    run::<Cart>(
        bus,
        cart_id.stream(),
        CartCommand::Create {
            cart_id,
            customer_id: owner,
            currency: ccy,
            now: s(-600),
        },
        &mut ev,
    )
    .await?;
    for (sku, name, price, terms, qty, _) in &plan.lines {
        let cmd = CartCommand::AddItem {
            sku: sku.clone(),
            name: name.clone(),
            digital: terms.is_some(),
            qty: *qty,
            unit_price: *price,
            available: None,
            now: s(-540),
        };
        run::<Cart>(bus, cart_id.stream(), cmd, &mut ev).await?;
    }
    run::<Cart>(
        bus,
        cart_id.stream(),
        CartCommand::CheckOut { order_id, now: t },
        &mut ev,
    )
    .await?;

    // Another shopper's cart, left behind.
    let mut abandoned = false;
    if plan.abandoned_cart {
        let other = CartId::derived(&["seed-abandoned-cart", &i.to_string()]);
        let (sku, name, price, terms, qty, _) = &plan.lines[0];
        run::<Cart>(
            bus,
            other.stream(),
            CartCommand::Create {
                cart_id: other,
                customer_id: None,
                currency: ccy,
                now: s(-3000),
            },
            &mut ev,
        )
        .await?;
        let add = CartCommand::AddItem {
            sku: sku.clone(),
            name: name.clone(),
            digital: terms.is_some(),
            qty: *qty,
            unit_price: *price,
            available: None,
            now: s(-2900),
        };
        run::<Cart>(bus, other.stream(), add, &mut ev).await?;
        let idle = Duration::days(7);
        if s(-2900) + idle < now {
            let cmd = CartCommand::Abandon {
                now: s(-2900) + idle + Duration::minutes(5),
                idle_after: idle,
            };
            run::<Cart>(bus, other.stream(), cmd, &mut ev).await?;
            abandoned = true;
        }
    }

    let lines: Vec<OrderLine> = plan
        .lines
        .iter()
        .map(|(sku, name, price, terms, qty, _)| {
            OrderLine::new(sku.clone(), name, *qty, *price, *terms)
        })
        .collect::<Result<_, _>>()
        .map_err(|e| anyhow!("{e}"))?;
    let physical: Vec<_> = plan.lines.iter().filter(|l| l.3.is_none()).collect();
    let has_physical = !physical.is_empty();
    let shipping_address = has_physical.then(|| {
        ShippingAddress::parse(
            &customer_name(customer),
            "1 Demo Street",
            None,
            "Springfield",
            "12345",
            "US",
        )
        .expect("valid")
    });
    let total = lines
        .iter()
        .try_fold(Money::zero(ccy), |acc, l| acc.checked_add(l.line_total))
        .map_err(|e| anyhow!("{e}"))?;
    let place = OrderCommand::Place {
        order_id,
        customer_id,
        email: email.clone(),
        lines: lines.clone(),
        cart_id: Some(cart_id),
        payment_method: PaymentMethod::parse(card(plan.payment)).expect("valid token"),
        shipping_address,
        now: t,
    };
    let o = order_id.stream();
    run::<Order>(bus, o.clone(), place, &mut ev).await?;
    let has_digital = plan.lines.iter().any(|l| l.3.is_some());
    if has_digital {
        let cmd = CustomerCommand::ProvisionAccount {
            email: email.clone(),
            order_id,
            guest: !registered,
            now: s(1),
        };
        run::<Customer>(bus, customer_id.stream(), cmd, &mut ev).await?;
    }

    // Reserve every physical line; a sold-out one aborts the order.
    let mut reserved = Vec::new();
    let mut rejected = Vec::new();
    for (sku, _, _, _, qty, _) in &physical {
        let reservation_id = CheckoutState::reservation_id(order_id, sku);
        let cmd = InventoryCommand::Reserve {
            sku: sku.clone(),
            reservation_id,
            order_id,
            qty: *qty,
            expires_at: s(600),
            now: s(1),
        };
        let done = run::<Inventory>(bus, sku.inventory_stream(), cmd, &mut ev).await?;
        match done.events.first() {
            Some(InventoryEvent::StockReserved { .. }) => {
                reserved.push((sku.clone(), reservation_id, *qty))
            }
            _ => rejected.push(sku.clone()),
        }
    }
    let release_all = |reason| {
        let reserved = reserved.clone();
        async move {
            let mut out = Vec::new();
            for (sku, reservation_id, _) in reserved {
                let cmd = InventoryCommand::Release {
                    reservation_id,
                    reason,
                    now: s(3),
                };
                run::<Inventory>(bus, sku.inventory_stream(), cmd, &mut out).await?;
            }
            anyhow::Ok(out)
        }
    };
    if !rejected.is_empty() {
        ev.extend(release_all(ReleaseReason::OrderUnfulfillable).await?);
        run::<Order>(
            bus,
            o.clone(),
            OrderCommand::MarkInventoryUnavailable {
                skus: rejected.clone(),
                now: s(3),
            },
            &mut ev,
        )
        .await?;
        let reason = format!(
            "inventory unavailable: {}",
            rejected
                .iter()
                .map(Sku::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        );
        run::<Order>(
            bus,
            o,
            OrderCommand::Cancel {
                reason,
                by: CancelledBy::System,
                now: s(4),
            },
            &mut ev,
        )
        .await?;
        return Ok((order_id, ev, abandoned));
    }

    // Pay.
    let payment_id = CheckoutState::payment_id(order_id);
    let p = payment_id.stream();
    let intent = PaymentCommand::CreateIntent {
        payment_id,
        order_id,
        amount: total,
        payment_method: PaymentMethod::parse(card(plan.payment)).expect("valid token"),
        idempotency_key: payment_id.to_string(),
        now: s(2),
    };
    run::<Payment>(bus, p.clone(), intent, &mut ev).await?;
    run::<Order>(
        bus,
        o.clone(),
        OrderCommand::StartPayment {
            payment_id,
            now: s(2),
        },
        &mut ev,
    )
    .await?;
    if let Payment_::Fails(reason) = plan.payment {
        let message = "the card was declined (demo data)".to_string();
        run::<Payment>(
            bus,
            p,
            PaymentCommand::Fail {
                reason,
                message: message.clone(),
                now: s(4),
            },
            &mut ev,
        )
        .await?;
        ev.extend(release_all(ReleaseReason::PaymentFailed).await?);
        let cmd = OrderCommand::MarkPaymentFailed {
            reason: reason.code().to_owned(),
            message,
            now: s(5),
        };
        run::<Order>(bus, o.clone(), cmd, &mut ev).await?;
        let cancel = OrderCommand::Cancel {
            reason: format!("payment failed: {}", reason.code()),
            by: CancelledBy::System,
            now: s(6),
        };
        run::<Order>(bus, o, cancel, &mut ev).await?;
        return Ok((order_id, ev, abandoned));
    }
    let reference = format!("sim_ch_seed_{i:06}");
    run::<Payment>(
        bus,
        p.clone(),
        PaymentCommand::Capture {
            gateway_reference: reference.clone(),
            now: s(4),
        },
        &mut ev,
    )
    .await?;
    for (sku, reservation_id, _) in &reserved {
        let cmd = InventoryCommand::Confirm {
            reservation_id: *reservation_id,
            now: s(5),
        };
        run::<Inventory>(bus, sku.inventory_stream(), cmd, &mut ev).await?;
    }
    let paid = OrderCommand::MarkPaid {
        payment_id,
        gateway_reference: reference,
        amount: total,
        now: s(5),
    };
    run::<Order>(bus, o.clone(), paid, &mut ev).await?;
    if has_physical {
        run::<Order>(bus, o.clone(), OrderCommand::Confirm { now: s(6) }, &mut ev).await?;
    }

    // Deliver the software.
    let mut licenses = Vec::new();
    for (sku, _, _, terms, _, _) in plan.lines.iter().filter(|l| l.3.is_some()) {
        let terms = terms.expect("digital");
        let license_id = CheckoutState::license_id(order_id, sku);
        let expires_at = terms
            .validity_days
            .map(|d| s(6) + Duration::days(i64::from(d)));
        let key = match terms.license {
            LicenseSource::Pool => {
                let cmd = LicensePoolCommand::Allocate {
                    sku: sku.clone(),
                    license_id,
                    order_id,
                    now: s(6),
                };
                let done = run::<LicensePool>(bus, sku.license_pool_stream(), cmd, &mut ev).await?;
                match done.events.first() {
                    Some(LicensePoolEvent::LicenseKeyAllocated { key, .. }) => key.clone(),
                    _ => {
                        return Err(anyhow!(
                            "the demo key pool of {sku} ran dry; load more keys"
                        ));
                    }
                }
            }
            LicenseSource::Signed => match signer {
                Some(signer) => signer.sign(&LicensePayload {
                    license_id,
                    sku: sku.clone(),
                    customer_id,
                    seats: terms.seats,
                    expires_at,
                }),
                None => {
                    return Err(anyhow!(
                        "demo history needs a license signing key (PURSER_LICENSE_SIGNING_KEY)"
                    ));
                }
            },
        };
        let issue = LicenseCommand::Issue {
            license_id,
            sku: sku.clone(),
            order_id,
            customer_id,
            seats: terms.seats,
            key,
            expires_at,
            now: s(7),
        };
        run::<License>(bus, license_id.stream(), issue, &mut ev).await?;
        run::<License>(
            bus,
            license_id.stream(),
            LicenseCommand::Attach {
                customer_id,
                now: s(7),
            },
            &mut ev,
        )
        .await?;
        let attach = OrderCommand::AttachLicense {
            sku: sku.clone(),
            license_id,
            now: s(8),
        };
        run::<Order>(bus, o.clone(), attach, &mut ev).await?;
        licenses.push(license_id);
    }
    if has_digital {
        run::<Order>(bus, o.clone(), OrderCommand::Fulfill { now: s(9) }, &mut ev).await?;
    }

    // An admin cancels some confirmed orders before they ship: stock goes back, money too.
    let age = now - t;
    if plan.after == After::AdminCancel && has_physical {
        let at = s(3600);
        let cancel = OrderCommand::Cancel {
            reason: "the customer asked to cancel".into(),
            by: CancelledBy::Admin,
            now: at,
        };
        run::<Order>(bus, o.clone(), cancel, &mut ev).await?;
        for (sku, _, qty) in &reserved {
            let cmd = InventoryCommand::Adjust {
                sku: sku.clone(),
                delta: i64::from(qty.get()),
                reason: AdjustmentReason::OrderCancelled,
                note: format!("order {order_id} cancelled after its stock left the shelf"),
                now: at + Duration::seconds(1),
            };
            run::<Inventory>(bus, sku.inventory_stream(), cmd, &mut ev).await?;
        }
        let reference = CheckoutState::compensation_reference(order_id);
        let reason = "order cancelled: the customer asked to cancel".to_string();
        let refund = PaymentCommand::Refund {
            amount: total,
            reason: reason.clone(),
            refund_reference: reference.clone(),
            now: at + Duration::seconds(2),
        };
        run::<Payment>(bus, p.clone(), refund, &mut ev).await?;
        let cmd = OrderCommand::Refund {
            amount: total,
            reason,
            refund_reference: reference,
            now: at + Duration::seconds(3),
        };
        run::<Order>(bus, o.clone(), cmd, &mut ev).await?;
        for license_id in &licenses {
            let cmd = LicenseCommand::Revoke {
                reason: "order refunded".into(),
                now: at + Duration::seconds(4),
            };
            run::<License>(bus, license_id.stream(), cmd, &mut ev).await?;
        }
        return Ok((order_id, ev, abandoned));
    }

    // Ship what is physical, as far as the order's age allows.
    if has_physical && age > Duration::hours(6) {
        run::<Order>(
            bus,
            o.clone(),
            OrderCommand::StartProcessing { now: s(4 * 3600) },
            &mut ev,
        )
        .await?;
        if age > Duration::days(1) {
            let carrier = ["UPS", "DHL", "FedEx", "USPS"][i % 4];
            let ship = OrderCommand::Ship {
                tracking_number: format!("1Z{:010}", i * 7919),
                carrier: carrier.into(),
                estimated_delivery: Some(s(4 * 86_400)),
                now: s(86_400),
            };
            run::<Order>(bus, o.clone(), ship, &mut ev).await?;
            if age > Duration::days(4) {
                run::<Order>(
                    bus,
                    o.clone(),
                    OrderCommand::Deliver {
                        now: s(3 * 86_400 + 7200),
                    },
                    &mut ev,
                )
                .await?;
            }
        }
    }

    // A few are refunded afterwards, in full or in part.
    if plan.after == After::Refund && age > Duration::days(2) {
        let amount = if i.is_multiple_of(2) {
            total
        } else {
            Money::new(total.minor / 2, total.currency)
        };
        let reference = format!("admin-refund-{order_id}-seed");
        let at = s(2 * 86_400);
        let reason = "refunded on request (demo data)".to_string();
        let refund = PaymentCommand::Refund {
            amount,
            reason: reason.clone(),
            refund_reference: reference.clone(),
            now: at,
        };
        run::<Payment>(bus, p, refund, &mut ev).await?;
        run::<Order>(
            bus,
            o,
            OrderCommand::Refund {
                amount,
                reason,
                refund_reference: reference,
                now: at + Duration::seconds(1),
            },
            &mut ev,
        )
        .await?;
        if amount == total {
            for license_id in &licenses {
                let cmd = LicenseCommand::Revoke {
                    reason: "order refunded".into(),
                    now: at + Duration::seconds(2),
                };
                run::<License>(bus, license_id.stream(), cmd, &mut ev).await?;
            }
        }
    }
    Ok((order_id, ev, abandoned))
}
