//! Demo data, loaded through the real command path (the same commands an admin sends), so the
//! event log, process managers and read models are exercised exactly as in production.
//!
//! Deterministic and safe to run again: products that exist are left alone, and stock receipts
//! carry idempotency keys, so a second run appends nothing.

use std::fmt;

use chrono::Utc;
use futures::StreamExt;
use purser_command_api::catalog::{self, NewProduct};
use purser_command_api::{CommandContext, CommandError};
use purser_domain::inventory::Inventory;
use purser_domain::product::{DigitalTerms, LicenseSource};
use purser_domain::{Aggregate, Currency, Money, Quantity};

use crate::services::Services;

mod history;

pub use history::{HistoryOptions, HistoryReport};

/// What `purser seed` loads.
#[derive(Debug, Clone, Copy)]
pub struct SeedOptions {
    pub products: usize,
    pub history: HistoryOptions,
}

impl Default for SeedOptions {
    fn default() -> Self {
        SeedOptions {
            products: 300,
            history: HistoryOptions {
                customers: 250,
                orders: 2000,
                days: 42,
            },
        }
    }
}

/// Demo staff accounts (development only; documented in the README).
pub const DEMO_USERS: &[(&str, &str, purser_domain::customer::Role)] = &[
    (
        "admin@purser.local",
        "purser-admin",
        purser_domain::customer::Role::Admin,
    ),
    (
        "analyst@purser.local",
        "purser-analyst",
        purser_domain::customer::Role::Analyst,
    ),
    (
        "auditor@purser.local",
        "purser-auditor",
        purser_domain::customer::Role::Auditor,
    ),
];

/// Loads the demo catalog, the demo staff accounts and (once) the demo history.
pub async fn seed_all(services: &Services, opts: SeedOptions) -> anyhow::Result<String> {
    let catalog = seed(services, opts.products).await?;
    for (email, password, role) in DEMO_USERS {
        crate::users::ensure_user(services, email, password, "Demo staff", &[*role]).await?;
    }
    let history = history::seed_history(services, opts.products, opts.history).await?;
    let history = match history.skipped {
        Some(why) => format!("demo history: skipped ({why})"),
        None => format!(
            "demo history: {} orders from {} customers over {} days, {} abandoned carts",
            history.orders, history.customers, opts.history.days, history.abandoned_carts
        ),
    };
    Ok(format!(
        "{catalog}\ndemo staff: {}\n{history}",
        DEMO_USERS
            .iter()
            .map(|(e, _, _)| *e)
            .collect::<Vec<_>>()
            .join(", ")
    ))
}

/// What a seed run did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SeedReport {
    pub products_created: usize,
    pub products_existing: usize,
    pub stock_receipts: usize,
}

impl fmt::Display for SeedReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "demo catalog: {} products created ({} already there), {} stock receipts",
            self.products_created, self.products_existing, self.stock_receipts
        )
    }
}

struct Category {
    name: &'static str,
    digital: bool,
    nouns: &'static [&'static str],
    price_range: (i64, i64),
}

const CATEGORIES: &[Category] = &[
    Category {
        name: "Laptops",
        digital: false,
        nouns: &["Laptop", "Notebook", "Ultrabook"],
        price_range: (49_900, 289_900),
    },
    Category {
        name: "Phones",
        digital: false,
        nouns: &["Phone", "Smartphone"],
        price_range: (19_900, 149_900),
    },
    Category {
        name: "Headphones",
        digital: false,
        nouns: &["Headphones", "Earbuds", "Headset"],
        price_range: (2_900, 44_900),
    },
    Category {
        name: "Monitors",
        digital: false,
        nouns: &["Monitor", "Display"],
        price_range: (12_900, 119_900),
    },
    Category {
        name: "Keyboards",
        digital: false,
        nouns: &["Keyboard", "Mechanical Keyboard"],
        price_range: (3_900, 24_900),
    },
    Category {
        name: "Accessories",
        digital: false,
        nouns: &["USB-C Hub", "Charger", "Laptop Sleeve", "Mouse"],
        price_range: (990, 8_900),
    },
    Category {
        name: "Security Software",
        digital: true,
        nouns: &["Antivirus", "Internet Security", "VPN"],
        price_range: (2_999, 14_999),
    },
    Category {
        name: "Productivity Software",
        digital: true,
        nouns: &["Office Suite", "PDF Editor", "Notes Pro"],
        price_range: (1_999, 24_999),
    },
    Category {
        name: "Creative Software",
        digital: true,
        nouns: &["Photo Studio", "Video Editor", "Audio Workstation"],
        price_range: (4_999, 59_999),
    },
];

const BRANDS: &[&str] = &[
    "Acme", "Globex", "Initech", "Umbrella", "Hooli", "Stark", "Wayne", "Sentinel", "Vandelay",
    "Soylent",
];
const ADJECTIVES: &[&str] = &[
    "Pro", "Air", "Max", "Lite", "Ultra", "Plus", "Studio", "Mini", "Prime", "Edge", "Nova", "Zen",
];

/// The `i`-th demo product; the same `i` always gives the same product.
pub(crate) fn demo_product(i: usize) -> (NewProduct, Option<i64>) {
    let c = &CATEGORIES[i % CATEGORIES.len()];
    let brand = BRANDS[(i / CATEGORIES.len()) % BRANDS.len()];
    let noun = c.nouns[(i / 7) % c.nouns.len()];
    let adj = ADJECTIVES[(i * 5 + i / 3) % ADJECTIVES.len()];
    let generation = 1 + i / (CATEGORIES.len() * BRANDS.len());
    let name = format!("{brand} {noun} {adj} {generation}");
    let sku = format!("{}-{:04}", &c.name[..3].to_ascii_uppercase(), i);
    let (lo, hi) = c.price_range;
    // A deterministic spread of prices ending in 99 or 00 cents, as shops price things.
    let step = (hi - lo) / 37;
    let raw = lo + step * ((i as i64 * 13) % 37);
    let price = if c.digital {
        raw - raw % 100 + 99
    } else {
        raw - raw % 100
    };
    let description = if c.digital {
        format!(
            "{name}: {noun} for Windows, macOS and Linux. Delivered instantly as a license key."
        )
    } else {
        format!(
            "{name}: a {} {noun} from {brand}, built to last.",
            adj.to_lowercase()
        )
    };
    let digital = c.digital.then(|| DigitalTerms {
        license: if i.is_multiple_of(4) {
            LicenseSource::Pool
        } else {
            LicenseSource::Signed
        },
        seats: [1, 1, 3, 5][i % 4],
        validity_days: Some(365),
    });
    let product = NewProduct::parse(
        &sku,
        &name,
        &description,
        brand,
        c.name,
        digital,
        Money::new(price, Currency::USD),
    )
    .expect("demo products are valid");
    // Most physical products are stocked; a few are sold out, so "in stock" filters show.
    let stock = (!c.digital && !i.is_multiple_of(11)).then_some(((i * 37) % 200 + 5) as i64);
    (product, stock)
}

/// Loads the demo catalog: `count` products with stock.
pub async fn seed(services: &Services, count: usize) -> anyhow::Result<SeedReport> {
    let bus = &services.bus;
    let outcomes: Vec<anyhow::Result<(bool, bool)>> = futures::stream::iter(0..count)
        .map(|i| async move {
            let (product, stock) = demo_product(i);
            let sku = product.sku.clone();
            let ctx = CommandContext::system("seed");
            let created = match catalog::create_product(bus, &ctx, product, Utc::now()).await {
                Ok(e) => !e.events.is_empty(),
                Err(CommandError::Domain(purser_domain::product::ProductError::AlreadyExists)) => {
                    false
                }
                Err(e) => return Err(anyhow::anyhow!("cannot create demo product {sku}: {e}")),
            };
            let mut received = false;
            if let Some(qty) = stock {
                let ctx = CommandContext::system("seed").idempotent(
                    &format!("seed-initial-stock-{sku}"),
                    &Inventory::stream(&sku),
                );
                let qty = Quantity::new(qty).expect("demo quantities are positive");
                let done = catalog::receive_stock(bus, &ctx, sku.clone(), qty, Utc::now())
                    .await
                    .map_err(|e| anyhow::anyhow!("cannot stock demo product {sku}: {e}"))?;
                received = !done.events.is_empty();
            }
            Ok((created, received))
        })
        .buffer_unordered(8)
        .collect()
        .await;
    let mut report = SeedReport::default();
    for o in outcomes {
        let (created, received) = o?;
        if created {
            report.products_created += 1;
        } else {
            report.products_existing += 1;
        }
        report.stock_receipts += usize::from(received);
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_products_are_valid_varied_and_stable() {
        let all: Vec<_> = (0..300).map(demo_product).collect();
        let skus: std::collections::HashSet<_> = all.iter().map(|(p, _)| p.sku.clone()).collect();
        assert_eq!(skus.len(), 300, "SKUs are unique");
        assert_eq!(demo_product(42).0.sku, demo_product(42).0.sku);
        assert!(
            all.iter().any(|(p, _)| matches!(
                p.kind,
                purser_domain::product::ProductKind::Digital { .. }
            ))
        );
        assert!(all.iter().any(|(_, s)| s.is_none()));
    }
}
