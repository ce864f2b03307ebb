//! Stock levels for `inventory.low`.
//!
//! No single inventory event says how much stock is left, so each consumer keeps, per SKU,
//! the on-hand and reserved units folded from the log, in a table of its own written in the
//! same transaction as its checkpoint (a rebuild starts them from zero with the log). The
//! fold here is pure; [`StockTable`] loads and stores a batch's SKUs.

use std::collections::HashMap;

use purser_domain::inventory::InventoryEvent;
use sqlx::PgConnection;

/// One SKU's stock as the inventory events tell it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StockLevel {
    pub on_hand: i64,
    pub reserved: i64,
}

impl StockLevel {
    pub fn available(&self) -> i64 {
        self.on_hand - self.reserved
    }

    /// The level after `event`.
    pub fn after(self, event: &InventoryEvent) -> StockLevel {
        let qty = |q: &purser_domain::Quantity| i64::from(q.get());
        let StockLevel { on_hand, reserved } = self;
        match event {
            InventoryEvent::StockReceived { qty: q, .. } => StockLevel {
                on_hand: on_hand + qty(q),
                reserved,
            },
            InventoryEvent::StockAdjusted { delta, .. } => StockLevel {
                on_hand: on_hand + delta,
                reserved,
            },
            InventoryEvent::StockReserved { qty: q, .. } => StockLevel {
                on_hand,
                reserved: reserved + qty(q),
            },
            InventoryEvent::ReservationConfirmed { qty: q, .. } => StockLevel {
                on_hand: on_hand - qty(q),
                reserved: reserved - qty(q),
            },
            InventoryEvent::ReservationReleased { qty: q, .. } => StockLevel {
                on_hand,
                reserved: reserved - qty(q),
            },
            InventoryEvent::ReservationRejected { .. } => self,
        }
    }
}

/// Whether going from `before` to `after` is news for `inventory.low`: availability fell
/// below the threshold. Staying low, or starting low, is not news again.
pub fn fell_below(before: StockLevel, after: StockLevel, threshold: i64) -> bool {
    before.available() >= threshold && after.available() < threshold
}

/// The stock levels of one consumer, for the SKUs of one batch.
#[derive(Debug, Default)]
pub struct StockLevels {
    levels: HashMap<String, StockLevel>,
    changed: Vec<String>,
}

impl StockLevels {
    pub fn get(&self, sku: &str) -> StockLevel {
        self.levels.get(sku).copied().unwrap_or_default()
    }

    pub fn set(&mut self, sku: &str, level: StockLevel) {
        self.levels.insert(sku.to_owned(), level);
        if !self.changed.iter().any(|s| s == sku) {
            self.changed.push(sku.to_owned());
        }
    }
}

/// A consumer's stock table (`sku text primary key, on_hand bigint, reserved bigint`).
pub struct StockTable(pub &'static str);

impl StockTable {
    /// Loads the levels of `skus`.
    pub async fn load(
        &self,
        tx: &mut PgConnection,
        skus: &[String],
    ) -> Result<StockLevels, sqlx::Error> {
        let rows: Vec<(String, i64, i64)> = sqlx::query_as(&format!(
            "select sku, on_hand, reserved from {} where sku = any($1)",
            self.0
        ))
        .bind(skus)
        .fetch_all(&mut *tx)
        .await?;
        let levels = rows
            .into_iter()
            .map(|(sku, on_hand, reserved)| (sku, StockLevel { on_hand, reserved }))
            .collect();
        Ok(StockLevels {
            levels,
            changed: Vec::new(),
        })
    }

    /// Writes back the levels that changed.
    pub async fn store(
        &self,
        tx: &mut PgConnection,
        levels: &StockLevels,
    ) -> Result<(), sqlx::Error> {
        if levels.changed.is_empty() {
            return Ok(());
        }
        let (on_hand, reserved): (Vec<i64>, Vec<i64>) = levels
            .changed
            .iter()
            .map(|s| {
                let l = levels.get(s);
                (l.on_hand, l.reserved)
            })
            .unzip();
        sqlx::query(&format!(
            "insert into {} (sku, on_hand, reserved)
             select * from unnest($1::text[], $2::bigint[], $3::bigint[])
             on conflict (sku) do update set on_hand = excluded.on_hand, reserved = excluded.reserved",
            self.0
        ))
        .bind(&levels.changed)
        .bind(on_hand)
        .bind(reserved)
        .execute(&mut *tx)
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use purser_domain::inventory::ReleaseReason;
    use purser_domain::{OrderId, Quantity, ReservationId, Sku};

    fn sku() -> Sku {
        Sku::parse("SKU-1").unwrap()
    }

    fn q(n: i64) -> Quantity {
        Quantity::new(n).unwrap()
    }

    #[test]
    fn the_fold_follows_on_hand_and_reserved() {
        let (r, o, at) = (ReservationId::new(), OrderId::new(), Utc::now());
        let events = [
            InventoryEvent::StockReceived {
                sku: sku(),
                qty: q(10),
                at,
            },
            InventoryEvent::StockReserved {
                sku: sku(),
                reservation_id: r,
                order_id: o,
                qty: q(4),
                expires_at: at,
                at,
            },
            InventoryEvent::ReservationConfirmed {
                sku: sku(),
                reservation_id: r,
                order_id: o,
                qty: q(4),
                at,
            },
            InventoryEvent::StockReserved {
                sku: sku(),
                reservation_id: r,
                order_id: o,
                qty: q(2),
                expires_at: at,
                at,
            },
            InventoryEvent::ReservationReleased {
                sku: sku(),
                reservation_id: r,
                order_id: o,
                qty: q(2),
                reason: ReleaseReason::Expired,
                at,
            },
        ];
        let levels: Vec<i64> = events
            .iter()
            .scan(StockLevel::default(), |l, e| {
                *l = l.after(e);
                Some(l.available())
            })
            .collect();
        assert_eq!(levels, [10, 6, 6, 4, 6]);
    }

    #[test]
    fn low_is_news_only_when_crossing_down() {
        let l = |on_hand, reserved| StockLevel { on_hand, reserved };
        assert!(fell_below(l(5, 0), l(5, 1), 5));
        assert!(!fell_below(l(5, 1), l(5, 2), 5), "already low");
        assert!(
            !fell_below(l(0, 0), l(3, 0), 5),
            "a first delivery of 3 is not a fall"
        );
        assert!(!fell_below(l(9, 0), l(9, 4), 5), "still at the threshold");
    }
}
