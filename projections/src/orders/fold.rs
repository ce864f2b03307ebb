//! Folding a batch's events per order, in log order, into the rows they leave behind.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use purser_domain::order::{OrderEvent, OrderLine, OrderStatus};
use purser_event_store::RecordedEvent;
use serde_json::{Value, json};
use sqlx::PgConnection;
use uuid::Uuid;

use super::Subject;
use super::progress::{PROGRESS_COLUMNS, Progress};
use crate::ProjectionError;

/// What an order placed in this batch inserts besides its [`Progress`] columns.
pub(super) struct Placed {
    pub(super) customer_id: Uuid,
    pub(super) email: String,
    pub(super) currency: String,
    pub(super) total_minor: i64,
    pub(super) item_count: i32,
    pub(super) cart_id: Option<Uuid>,
    pub(super) has_digital: bool,
    pub(super) shipping_address: Option<Value>,
    pub(super) placed_at: DateTime<Utc>,
    pub(super) lines: Vec<OrderLine>,
    /// Per line, the license attached in this batch.
    pub(super) licenses: Vec<Option<Uuid>>,
}

pub(super) struct Entry {
    /// Set when the order is placed in this batch (its row is inserted, not updated).
    pub(super) placed: Option<Placed>,
    pub(super) row: Progress,
}

/// A timeline step: the status after it and the row's length after it number it.
pub(super) struct Step<'a> {
    pub(super) order_id: Uuid,
    pub(super) seq: i32,
    pub(super) status: String,
    pub(super) event: &'a str,
    pub(super) at: DateTime<Utc>,
    pub(super) detail: Value,
}

/// A batch's rows as the batch leaves them, folded per order in log order. Applied one by one
/// the events would write the same rows: an event for an order the model has not seen placed
/// writes nothing, every step is numbered after the row's length and records its status.
#[derive(Default)]
pub(super) struct Batch<'a> {
    pub(super) orders: Vec<Entry>,
    index: HashMap<Uuid, usize>,
    pub(super) steps: Vec<Step<'a>>,
    /// Licenses attached to lines of orders placed before this batch: (order, sku) → license.
    pub(super) licenses: Vec<(Uuid, String, Uuid)>,
    license_index: HashMap<(Uuid, String), usize>,
}

impl<'a> Batch<'a> {
    /// The orders whose stored rows the batch moves: those with an event before (or without)
    /// their placing in the batch.
    pub(super) fn rows_to_read(events: &[(&RecordedEvent, Subject)]) -> Vec<Uuid> {
        let mut placed = HashSet::new();
        let mut read = Vec::new();
        let mut seen = HashSet::new();
        for (_, subject) in events {
            let id = subject.order_id();
            if let Subject::Order(OrderEvent::OrderPlaced { .. }) = subject {
                placed.insert(id);
            } else if !placed.contains(&id) && seen.insert(id) {
                read.push(id);
            }
        }
        read
    }

    pub(super) async fn load(
        &mut self,
        tx: &mut PgConnection,
        ids: &[Uuid],
    ) -> Result<(), sqlx::Error> {
        let rows: Vec<Progress> = sqlx::query_as(&format!(
            "select {PROGRESS_COLUMNS} from sales.orders where order_id = any($1)"
        ))
        .bind(ids)
        .fetch_all(tx)
        .await?;
        for row in rows {
            self.index.insert(row.order_id, self.orders.len());
            self.orders.push(Entry { placed: None, row });
        }
        Ok(())
    }

    pub(super) fn add(
        &mut self,
        event_type: &'a str,
        subject: &Subject,
    ) -> Result<(), ProjectionError> {
        let order_id = subject.order_id();
        if let Subject::Order(e @ OrderEvent::OrderPlaced { .. }) = subject {
            return self.place(order_id, event_type, e);
        }
        // An order this model never saw placed: nothing to write.
        let Some(&i) = self.index.get(&order_id) else {
            return Ok(());
        };
        let entry = &mut self.orders[i];
        let (at, detail) = match subject {
            Subject::Order(e) => {
                if let OrderEvent::OrderLicenseAttached {
                    sku, license_id, ..
                } = e
                {
                    attach(
                        entry,
                        &mut self.licenses,
                        &mut self.license_index,
                        sku.as_str(),
                        license_id.as_uuid(),
                    );
                }
                (e.at(), entry.row.order_event(e))
            }
            Subject::Payment(e) => match entry.row.payment_event(e) {
                Some(step) => step,
                None => return Ok(()),
            },
        };
        self.steps.push(Step {
            order_id,
            seq: entry.row.timeline_length,
            status: entry.row.status.clone(),
            event: event_type,
            at,
            detail,
        });
        Ok(())
    }

    fn place(
        &mut self,
        order_id: Uuid,
        event_type: &'a str,
        e: &OrderEvent,
    ) -> Result<(), ProjectionError> {
        let OrderEvent::OrderPlaced {
            customer_id,
            email,
            lines,
            total,
            cart_id,
            shipping_address,
            at,
            ..
        } = e
        else {
            return Ok(());
        };
        if self.index.contains_key(&order_id) {
            return Err(ProjectionError::Other(format!(
                "order {order_id} is placed twice"
            )));
        }
        let item_count: i64 = lines.iter().map(|l| i64::from(l.qty.get())).sum();
        let shipping_address = shipping_address
            .as_ref()
            .map(serde_json::to_value)
            .transpose()
            .map_err(|e| ProjectionError::Other(format!("shipping address: {e}")))?;
        let has_physical = lines.iter().any(|l| !l.is_digital());
        self.steps.push(Step {
            order_id,
            seq: 1,
            status: OrderStatus::Pending.as_str().to_owned(),
            event: event_type,
            at: *at,
            detail: json!({
                "total_minor": total.minor,
                "currency": total.currency.code(),
                "item_count": item_count,
            }),
        });
        self.index.insert(order_id, self.orders.len());
        self.orders.push(Entry {
            placed: Some(Placed {
                customer_id: customer_id.as_uuid(),
                email: email.as_str().to_owned(),
                currency: total.currency.code().to_owned(),
                total_minor: total.minor,
                item_count: i32::try_from(item_count)
                    .map_err(|_| ProjectionError::Other("item count out of range".into()))?,
                cart_id: cart_id.map(|c| c.as_uuid()),
                has_digital: lines.iter().any(OrderLine::is_digital),
                shipping_address,
                placed_at: *at,
                lines: lines.clone(),
                licenses: vec![None; lines.len()],
            }),
            row: Progress::placed(order_id, has_physical, *at),
        });
        Ok(())
    }
}

/// `OrderLicenseAttached`: the license goes on the order's digital lines of that SKU, in the
/// insert when the order was placed in this batch, else by an update (the batch's last
/// license per order and SKU).
fn attach(
    entry: &mut Entry,
    stored: &mut Vec<(Uuid, String, Uuid)>,
    stored_index: &mut HashMap<(Uuid, String), usize>,
    sku: &str,
    license_id: Uuid,
) {
    match &mut entry.placed {
        Some(p) => {
            for (line, lic) in p.lines.iter().zip(p.licenses.iter_mut()) {
                if line.sku.as_str() == sku && line.is_digital() {
                    *lic = Some(license_id);
                }
            }
        }
        None => {
            let key = (entry.row.order_id, sku.to_owned());
            match stored_index.get(&key) {
                Some(&i) => stored[i].2 = license_id,
                None => {
                    stored_index.insert(key.clone(), stored.len());
                    stored.push((key.0, key.1, license_id));
                }
            }
        }
    }
}
