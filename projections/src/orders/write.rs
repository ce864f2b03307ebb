//! The batch's one statement: placed orders with their lines, moved orders, licenses on
//! stored lines, and timeline steps.

use purser_domain::order::OrderLine;
use sqlx::PgConnection;
use uuid::Uuid;

use super::PgQuery;
use super::fold::{Batch, Placed, Step};
use super::line_kind;
use super::progress::{PROGRESS_COLUMNS, Progress, bind_progress, progress_tail};
use crate::ProjectionError;
use crate::column as col;

/// A line of an order placed in the batch: order, line number, line, license attached.
type Line<'a> = (Uuid, i32, &'a OrderLine, Option<Uuid>);

impl Batch<'_> {
    /// One statement: the orders placed in the batch with their lines, the other orders'
    /// new column values, licenses attached to lines already stored, and every timeline step.
    /// Its parts run on one snapshot and touch different rows; the foreign keys of the new
    /// lines and steps are checked at the end of the statement, when their orders exist.
    pub(super) async fn write(self, tx: &mut PgConnection) -> Result<(), ProjectionError> {
        if self.steps.is_empty() && self.orders.is_empty() {
            return Ok(());
        }
        let rows: Vec<&Progress> = self.orders.iter().map(|e| &e.row).collect();
        let placed: Vec<(Uuid, &Placed)> = self
            .orders
            .iter()
            .filter_map(|e| e.placed.as_ref().map(|p| (e.row.order_id, p)))
            .collect();
        let lines: Vec<Line<'_>> = placed
            .iter()
            .flat_map(|(id, p)| {
                p.lines
                    .iter()
                    .zip(&p.licenses)
                    .enumerate()
                    .map(move |(n, (l, lic))| (*id, n as i32 + 1, l, *lic))
            })
            .collect();
        let sql = statement();
        let query = bind_progress(sqlx::query(&sql), &rows);
        let query = bind_placed(query, &placed);
        let query = bind_lines(query, &lines);
        let query = bind_licenses(query, &self.licenses);
        bind_steps(query, &self.steps).execute(&mut *tx).await?;
        Ok(())
    }
}

/// The statement [`Batch::write`] runs; its parameters are bound in order by the `bind_*`
/// functions below.
fn statement() -> String {
    format!(
        "with p as (
             select * from unnest($1::uuid[], $2::bool[], $3::text[], $4::uuid[], $5::text[],
                 $6::bigint[], $7::timestamptz[], $8::text[], $9::text[], $10::text[],
                 $11::text[], $12::timestamptz[], $13::bigint[], $14::text[], $15::text[],
                 $16::timestamptz[], $17::timestamptz[], $18::timestamptz[],
                 $19::timestamptz[], $20::timestamptz[], $21::int[])
                 as p({PROGRESS_COLUMNS})),
         placed as (
             insert into sales.orders
                (order_id, customer_id, email, currency, total_minor, item_count, line_count,
                 cart_id, has_digital, shipping_address, placed_at, has_physical,
                 {PROGRESS_COLUMNS_TAIL})
             select n.order_id, n.customer_id, n.email, n.currency, n.total_minor,
                    n.item_count, n.line_count, n.cart_id, n.has_digital,
                    n.shipping_address, n.placed_at, p.has_physical, {PROGRESS_TAIL_FROM_P}
             from unnest($22::uuid[], $23::uuid[], $24::text[], $25::text[], $26::bigint[],
                         $27::int[], $28::int[], $29::uuid[], $30::bool[], $31::jsonb[],
                         $32::timestamptz[])
                  as n(order_id, customer_id, email, currency, total_minor, item_count,
                       line_count, cart_id, has_digital, shipping_address, placed_at)
             join p using (order_id)),
         moved as (
             update sales.orders o set {PROGRESS_SET_FROM_P}
             from p where o.order_id = p.order_id),
         lines as (
             insert into sales.order_lines
                (order_id, line_no, sku, name, kind, qty, unit_price_minor,
                 line_total_minor, currency, license_id)
             select * from unnest($33::uuid[], $34::int[], $35::text[], $36::text[],
                                  $37::text[], $38::int[], $39::bigint[], $40::bigint[],
                                  $41::text[], $42::uuid[])),
         licensed as (
             update sales.order_lines ol set license_id = x.license_id
             from unnest($43::uuid[], $44::text[], $45::uuid[]) as x(order_id, sku, license_id)
             where ol.order_id = x.order_id and ol.sku = x.sku and ol.kind = 'digital')
         insert into sales.order_timeline (order_id, seq, status, event, at, detail)
         select * from unnest($46::uuid[], $47::int[], $48::text[], $49::text[],
                              $50::timestamptz[], $51::jsonb[])",
        PROGRESS_COLUMNS_TAIL = progress_tail(""),
        PROGRESS_TAIL_FROM_P = progress_tail("p."),
        PROGRESS_SET_FROM_P = progress_tail("")
            .split(", ")
            .map(|c| format!("{c} = p.{c}"))
            .collect::<Vec<_>>()
            .join(", "),
    )
}

/// `$22..$32`: what the orders placed in the batch insert besides their progress.
fn bind_placed<'q>(q: PgQuery<'q>, placed: &'q [(Uuid, &'q Placed)]) -> PgQuery<'q> {
    q.bind(col(placed, |(id, _)| *id))
        .bind(col(placed, |(_, p)| p.customer_id))
        .bind(col(placed, |(_, p)| p.email.as_str()))
        .bind(col(placed, |(_, p)| p.currency.as_str()))
        .bind(col(placed, |(_, p)| p.total_minor))
        .bind(col(placed, |(_, p)| p.item_count))
        .bind(col(placed, |(_, p)| p.lines.len() as i32))
        .bind(col(placed, |(_, p)| p.cart_id))
        .bind(col(placed, |(_, p)| p.has_digital))
        .bind(col(placed, |(_, p)| p.shipping_address.as_ref()))
        .bind(col(placed, |(_, p)| p.placed_at))
}

/// `$33..$42`: the lines of the orders placed in the batch.
fn bind_lines<'q>(q: PgQuery<'q>, l: &'q [Line<'q>]) -> PgQuery<'q> {
    q.bind(col(l, |(id, ..)| *id))
        .bind(col(l, |(_, n, ..)| *n))
        .bind(col(l, |(_, _, line, _)| line.sku.as_str()))
        .bind(col(l, |(_, _, line, _)| line.name.as_str()))
        .bind(col(l, |(_, _, line, _)| line_kind(line)))
        .bind(col(l, |(_, _, line, _)| line.qty.get() as i32))
        .bind(col(l, |(_, _, line, _)| line.unit_price.minor))
        .bind(col(l, |(_, _, line, _)| line.line_total.minor))
        .bind(col(l, |(_, _, line, _)| line.unit_price.currency.code()))
        .bind(col(l, |(.., lic)| *lic))
}

/// `$43..$45`: licenses attached to lines of orders placed before the batch.
fn bind_licenses<'q>(q: PgQuery<'q>, x: &'q [(Uuid, String, Uuid)]) -> PgQuery<'q> {
    q.bind(col(x, |(id, ..)| *id))
        .bind(col(x, |(_, sku, _)| sku.as_str()))
        .bind(col(x, |(.., lic)| *lic))
}

/// `$46..$51`: every timeline step.
fn bind_steps<'q>(q: PgQuery<'q>, s: &'q [Step<'q>]) -> PgQuery<'q> {
    q.bind(col(s, |st| st.order_id))
        .bind(col(s, |st| st.seq))
        .bind(col(s, |st| st.status.as_str()))
        .bind(col(s, |st| st.event))
        .bind(col(s, |st| st.at))
        .bind(col(s, |st| &st.detail))
}
