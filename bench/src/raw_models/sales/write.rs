//! The page's one statement: placed orders with their lines, moved orders, timeline steps.

use purser_domain::order::OrderLine;
use sqlx::PgConnection;
use sqlx::postgres::{PgArguments, Postgres};
use sqlx::query::Query;
use uuid::Uuid;

use super::{New, Row, Step};

type PgQuery<'q> = Query<'q, Postgres, PgArguments>;

fn col<T, U>(v: &[T], f: impl Fn(&T) -> U) -> Vec<U> {
    v.iter().map(f).collect()
}

pub(super) async fn write(
    tx: &mut PgConnection,
    rows: Vec<(Row, Option<New>)>,
    steps: Vec<Step>,
) -> anyhow::Result<()> {
    let new: Vec<(Uuid, &New)> = rows
        .iter()
        .filter_map(|(r, n)| n.as_ref().map(|n| (r.order_id, n)))
        .collect();
    let lines: Vec<(Uuid, i32, &OrderLine)> = new
        .iter()
        .flat_map(|(id, n)| {
            n.lines
                .iter()
                .enumerate()
                .map(move |(k, l)| (*id, k as i32 + 1, l))
        })
        .collect();
    let r: Vec<&Row> = rows.iter().map(|(r, _)| r).collect();
    let query = bind_rows(sqlx::query(STATEMENT), &r);
    let query = bind_new(query, &new);
    let query = bind_lines(query, &lines);
    bind_steps(query, &steps).execute(&mut *tx).await?;
    Ok(())
}

/// Bound in order by the `bind_*` functions below.
const STATEMENT: &str = "with p as (
             select * from unnest($1::uuid[], $2::bool[], $3::text[], $4::uuid[], $5::text[],
                 $6::bigint[], $7::timestamptz[], $8::text[], $9::text[], $10::text[],
                 $11::text[], $12::timestamptz[], $13::bigint[], $14::text[], $15::text[],
                 $16::timestamptz[], $17::timestamptz[], $18::timestamptz[],
                 $19::timestamptz[], $20::timestamptz[], $21::int[])
                 as p(order_id, has_physical, status, payment_id, payment_reference,
                      captured_minor, paid_at, failure_reason, failure_message, cancel_reason,
                      cancelled_by, cancelled_at, refunded_minor, tracking_number, carrier,
                      estimated_delivery, shipped_at, delivered_at, fulfilled_at, updated_at,
                      timeline_length)),
         placed as (
             insert into sales.orders
                (order_id, customer_id, email, currency, total_minor, item_count, line_count,
                 cart_id, has_digital, shipping_address, placed_at, status, payment_id,
                 payment_reference, captured_minor, paid_at, failure_reason, failure_message,
                 cancel_reason, cancelled_by, cancelled_at, refunded_minor, tracking_number,
                 carrier, estimated_delivery, shipped_at, delivered_at, fulfilled_at,
                 updated_at, timeline_length, has_physical)
             select n.order_id, n.customer_id, n.email, n.currency, n.total_minor,
                    n.item_count, n.line_count, n.cart_id, n.has_digital, n.shipping_address,
                    n.placed_at, p.status, p.payment_id, p.payment_reference, p.captured_minor,
                    p.paid_at, p.failure_reason, p.failure_message, p.cancel_reason,
                    p.cancelled_by, p.cancelled_at, p.refunded_minor, p.tracking_number,
                    p.carrier, p.estimated_delivery, p.shipped_at, p.delivered_at,
                    p.fulfilled_at, p.updated_at, p.timeline_length, p.has_physical
             from unnest($22::uuid[], $23::uuid[], $24::text[], $25::text[], $26::bigint[],
                         $27::int[], $28::int[], $29::uuid[], $30::bool[], $31::jsonb[],
                         $32::timestamptz[])
                  as n(order_id, customer_id, email, currency, total_minor, item_count,
                       line_count, cart_id, has_digital, shipping_address, placed_at)
             join p using (order_id)),
         moved as (
             update sales.orders o
             set status = p.status, payment_id = p.payment_id,
                 payment_reference = p.payment_reference, captured_minor = p.captured_minor,
                 paid_at = p.paid_at, failure_reason = p.failure_reason,
                 failure_message = p.failure_message, cancel_reason = p.cancel_reason,
                 cancelled_by = p.cancelled_by, cancelled_at = p.cancelled_at,
                 refunded_minor = p.refunded_minor, tracking_number = p.tracking_number,
                 carrier = p.carrier, estimated_delivery = p.estimated_delivery,
                 shipped_at = p.shipped_at, delivered_at = p.delivered_at,
                 fulfilled_at = p.fulfilled_at, updated_at = p.updated_at,
                 timeline_length = p.timeline_length
             from p where o.order_id = p.order_id),
         lines as (
             insert into sales.order_lines
                (order_id, line_no, sku, name, kind, qty, unit_price_minor, line_total_minor,
                 currency)
             select * from unnest($33::uuid[], $34::int[], $35::text[], $36::text[],
                                  $37::text[], $38::int[], $39::bigint[], $40::bigint[],
                                  $41::text[]))
         insert into sales.order_timeline (order_id, seq, status, event, at, detail)
         select * from unnest($42::uuid[], $43::int[], $44::text[], $45::text[],
                              $46::timestamptz[], $47::jsonb[])";

/// `$1..$21`: every moved or placed order's changing columns.
fn bind_rows<'q>(q: PgQuery<'q>, r: &[&Row]) -> PgQuery<'q> {
    q.bind(col(r, |r| r.order_id))
        .bind(col(r, |r| r.has_physical))
        .bind(col(r, |r| r.status.clone()))
        .bind(col(r, |r| r.payment_id))
        .bind(col(r, |r| r.payment_reference.clone()))
        .bind(col(r, |r| r.captured_minor))
        .bind(col(r, |r| r.paid_at))
        .bind(col(r, |r| r.failure_reason.clone()))
        .bind(col(r, |r| r.failure_message.clone()))
        .bind(col(r, |r| r.cancel_reason.clone()))
        .bind(col(r, |r| r.cancelled_by.clone()))
        .bind(col(r, |r| r.cancelled_at))
        .bind(col(r, |r| r.refunded_minor))
        .bind(col(r, |r| r.tracking_number.clone()))
        .bind(col(r, |r| r.carrier.clone()))
        .bind(col(r, |r| r.estimated_delivery))
        .bind(col(r, |r| r.shipped_at))
        .bind(col(r, |r| r.delivered_at))
        .bind(col(r, |r| r.fulfilled_at))
        .bind(col(r, |r| r.updated_at))
        .bind(col(r, |r| r.timeline_length))
}

/// `$22..$32`: what the placed orders insert besides.
fn bind_new<'q>(q: PgQuery<'q>, new: &[(Uuid, &New)]) -> PgQuery<'q> {
    q.bind(col(new, |(id, _)| *id))
        .bind(col(new, |(_, n)| n.customer_id))
        .bind(col(new, |(_, n)| n.email.clone()))
        .bind(col(new, |(_, n)| n.currency.clone()))
        .bind(col(new, |(_, n)| n.total_minor))
        .bind(col(new, |(_, n)| n.item_count))
        .bind(col(new, |(_, n)| n.lines.len() as i32))
        .bind(col(new, |(_, n)| n.cart_id))
        .bind(col(new, |(_, n)| n.has_digital))
        .bind(col(new, |(_, n)| n.shipping_address.clone()))
        .bind(col(new, |(_, n)| n.placed_at))
}

/// `$33..$41`: the placed orders' lines.
fn bind_lines<'q>(q: PgQuery<'q>, lines: &'q [(Uuid, i32, &'q OrderLine)]) -> PgQuery<'q> {
    q.bind(col(lines, |(id, ..)| *id))
        .bind(col(lines, |(_, k, _)| *k))
        .bind(col(lines, |(.., l)| l.sku.as_str().to_owned()))
        .bind(col(lines, |(.., l)| l.name.clone()))
        .bind(col(lines, |(.., l)| {
            if l.is_digital() {
                "digital"
            } else {
                "physical"
            }
        }))
        .bind(col(lines, |(.., l)| l.qty.get() as i32))
        .bind(col(lines, |(.., l)| l.unit_price.minor))
        .bind(col(lines, |(.., l)| l.line_total.minor))
        .bind(col(lines, |(.., l)| l.unit_price.currency.code()))
}

/// `$42..$47`: every timeline step.
fn bind_steps<'q>(q: PgQuery<'q>, steps: &[Step]) -> PgQuery<'q> {
    q.bind(col(steps, |s| s.0))
        .bind(col(steps, |s| s.1))
        .bind(col(steps, |s| s.2.clone()))
        .bind(col(steps, |s| s.3.clone()))
        .bind(col(steps, |s| s.4))
        .bind(col(steps, |s| s.5.clone()))
}
