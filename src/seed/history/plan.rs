//! What each seeded order will be: when it is placed, what is in it, and how it goes. Plans
//! come from a random generator seeded per order, so the same history comes out every time.

use std::collections::BTreeSet;

use chrono::{DateTime, Duration, Utc};
use purser_domain::payment::PaymentFailureReason;
use purser_domain::product::{DigitalTerms, ProductKind};
use purser_domain::{Money, Quantity, Sku};
use rand::Rng;
use rand::rngs::StdRng;

use crate::seed::demo_product;

/// The demo catalog, split into what ships and what is downloaded.
pub(super) struct Catalog {
    /// (sku, name, price, stocked)
    pub(super) physical: Vec<(Sku, String, Money, bool)>,
    /// (sku, name, price, kind)
    pub(super) digital: Vec<(Sku, String, Money, ProductKind)>,
}

pub(super) fn catalog(size: usize) -> Catalog {
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

/// How the order's payment goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PaymentPlan {
    Ok,
    Fails(PaymentFailureReason),
}

/// What happens to a paid order later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum After {
    Nothing,
    Refund,
    AdminCancel,
}

/// One line of a planned order.
#[derive(Debug, Clone)]
pub(super) struct PlannedLine {
    pub(super) sku: Sku,
    pub(super) name: String,
    pub(super) price: Money,
    /// The license terms of a digital line.
    pub(super) terms: Option<DigitalTerms>,
    pub(super) qty: Quantity,
}

pub(super) struct Plan {
    pub(super) at: DateTime<Utc>,
    pub(super) lines: Vec<PlannedLine>,
    pub(super) payment: PaymentPlan,
    pub(super) after: After,
    pub(super) abandoned_cart: bool,
}

/// A deterministic plan for the `i`-th order: when, what, and how it goes.
pub(super) fn plan(
    rng: &mut StdRng,
    cat: &Catalog,
    start: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Plan {
    let at = placed_at(rng, start, now);
    let lines = lines(rng, cat);
    let payment = match rng.random_range(0..100) {
        0..5 => PaymentPlan::Fails(PaymentFailureReason::InsufficientFunds),
        5..9 => PaymentPlan::Fails(PaymentFailureReason::Declined),
        9..12 => PaymentPlan::Fails(PaymentFailureReason::InvalidPaymentDetails),
        _ => PaymentPlan::Ok,
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

/// When the order is placed: more orders in recent weeks and in the afternoon and evening.
fn placed_at(rng: &mut StdRng, start: DateTime<Utc>, now: DateTime<Utc>) -> DateTime<Utc> {
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
    at
}

/// Mostly one to three physical lines, some software alone, a few of both; never empty.
fn lines(rng: &mut StdRng, cat: &Catalog) -> Vec<PlannedLine> {
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
            lines.push(PlannedLine {
                sku: sku.clone(),
                name: name.clone(),
                price: *price,
                terms: None,
                qty,
            });
        }
    }
    for _ in 0..digital {
        let (sku, name, price, kind) = &cat.digital[rng.random_range(0..cat.digital.len())];
        if used.insert(sku.clone()) {
            lines.push(PlannedLine {
                sku: sku.clone(),
                name: name.clone(),
                price: *price,
                terms: kind.digital_terms(),
                qty: Quantity::new(1).expect("valid"),
            });
        }
    }
    if lines.is_empty() {
        let (sku, name, price, _) = cat
            .physical
            .iter()
            .find(|p| p.3)
            .expect("a stocked product");
        lines.push(PlannedLine {
            sku: sku.clone(),
            name: name.clone(),
            price: *price,
            terms: None,
            qty: Quantity::new(1).expect("valid"),
        });
    }
    lines
}

/// The simulated gateway's test card that gives the planned payment outcome.
pub(super) fn card(p: PaymentPlan) -> &'static str {
    match p {
        PaymentPlan::Ok => "pm_card_visa",
        PaymentPlan::Fails(PaymentFailureReason::InsufficientFunds) => {
            "pm_card_chargeDeclinedInsufficientFunds"
        }
        PaymentPlan::Fails(PaymentFailureReason::InvalidPaymentDetails) => {
            "pm_card_chargeDeclinedIncorrectCvc"
        }
        PaymentPlan::Fails(_) => "pm_card_chargeDeclined",
    }
}
