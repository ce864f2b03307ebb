//! The catalog model by hand: products inserted one by one, stock moves summed per SKU and
//! written once per page (as the catalog projection does for a batch).

use std::collections::HashMap;

use anyhow::bail;
use chrono::{DateTime, Utc};
use purser_domain::Quantity;
use purser_domain::inventory::InventoryEvent;
use purser_domain::product::{LicenseSource, ProductEvent, ProductKind};
use sqlx::PgConnection;

pub(super) async fn insert_product(tx: &mut PgConnection, e: &ProductEvent) -> anyhow::Result<()> {
    let ProductEvent::ProductCreated {
        sku,
        name,
        description,
        brand,
        category,
        kind,
        price,
        at,
    } = e
    else {
        bail!("the raw baseline only handles ProductCreated");
    };
    let (kind, license_source) = match kind {
        ProductKind::Physical => ("physical", None),
        ProductKind::Digital { license, .. } => (
            "digital",
            Some(match license {
                LicenseSource::Pool => "pool",
                LicenseSource::Signed => "signed",
            }),
        ),
    };
    sqlx::query(
        "insert into catalog.products
            (sku, name, description, brand, category, kind, license_source, price_minor,
             currency, created_at, updated_at)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10)",
    )
    .bind(sku.as_str())
    .bind(name)
    .bind(description)
    .bind(brand)
    .bind(category)
    .bind(kind)
    .bind(license_source)
    .bind(price.minor)
    .bind(price.currency.code())
    .bind(at)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// A page's stock deltas, summed per SKU: (sku, on hand, reserved, time of the last).
#[derive(Default)]
pub(super) struct StockDeltas {
    rows: Vec<(String, i64, i64, DateTime<Utc>)>,
    index: HashMap<String, usize>,
}

impl StockDeltas {
    pub(super) fn add(&mut self, e: &InventoryEvent) -> anyhow::Result<()> {
        let q = |q: &Quantity| i64::from(q.get());
        let (sku, on_hand, reserved, at) = match e {
            InventoryEvent::StockReceived { sku, qty, at } => (sku, q(qty), 0, at),
            InventoryEvent::StockAdjusted { sku, delta, at, .. } => (sku, *delta, 0, at),
            InventoryEvent::StockReserved { sku, qty, at, .. } => (sku, 0, q(qty), at),
            InventoryEvent::ReservationConfirmed { sku, qty, at, .. } => {
                (sku, -q(qty), -q(qty), at)
            }
            InventoryEvent::ReservationReleased { sku, qty, at, .. } => (sku, 0, -q(qty), at),
            InventoryEvent::ReservationRejected { .. } => return Ok(()),
        };
        match self.index.get(sku.as_str()) {
            Some(&i) => {
                let row = &mut self.rows[i];
                row.1 += on_hand;
                row.2 += reserved;
                row.3 = *at;
            }
            None => {
                self.index.insert(sku.as_str().to_owned(), self.rows.len());
                self.rows
                    .push((sku.as_str().to_owned(), on_hand, reserved, *at));
            }
        }
        Ok(())
    }

    pub(super) async fn finish(self, tx: &mut PgConnection) -> anyhow::Result<()> {
        if self.rows.is_empty() {
            return Ok(());
        }
        let mut cols = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (sku, on_hand, reserved, at) in self.rows {
            cols.0.push(sku);
            cols.1.push(on_hand);
            cols.2.push(reserved);
            cols.3.push(at);
        }
        sqlx::query(
            "with d as (
                 select * from unnest($1::text[], $2::bigint[], $3::bigint[],
                                      $4::timestamptz[])
                     as d(sku, on_hand, reserved, at)),
             moved as (
                 update catalog.stock s
                 set on_hand = s.on_hand + d.on_hand, reserved = s.reserved + d.reserved,
                     updated_at = d.at
                 from d where s.sku = d.sku
                 returning s.sku)
             insert into catalog.stock (sku, on_hand, reserved, updated_at)
             select d.sku, d.on_hand, d.reserved, d.at from d
             where d.sku not in (select sku from moved)",
        )
        .bind(cols.0)
        .bind(cols.1)
        .bind(cols.2)
        .bind(cols.3)
        .execute(&mut *tx)
        .await?;
        Ok(())
    }
}
