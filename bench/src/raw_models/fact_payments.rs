//! `analytics.fact_payments` by hand: one fact per payment event, inserted once per page.

use std::collections::HashMap;

use anyhow::bail;
use chrono::{DateTime, Utc};
use purser_domain::payment::PaymentEvent;
use sqlx::PgConnection;
use uuid::Uuid;

/// One payment fact (the generator makes no attempts or refunds, so those columns stay null).
struct PaymentFact {
    event_id: Uuid,
    payment_id: Uuid,
    order_id: Uuid,
    kind: &'static str,
    amount: Option<i64>,
    currency: Option<String>,
    reason: Option<&'static str>,
    message: Option<String>,
    gateway_reference: Option<String>,
    at: DateTime<Utc>,
}

/// A page's payment facts, in log order.
#[derive(Default)]
pub(super) struct Payments {
    rows: Vec<PaymentFact>,
    /// The first intent's amount and currency per payment seen in the page.
    intents: HashMap<Uuid, (i64, String)>,
}

impl Payments {
    pub(super) fn add(&mut self, event_id: Uuid, e: &PaymentEvent) -> anyhow::Result<()> {
        let mut fact = payment_fact(event_id, e)?;
        // A failure carries its payment's intent amount: from an intent earlier in the page,
        // else looked up by the insert (as the projection does).
        match (fact.amount, &fact.currency) {
            (Some(a), Some(c)) => {
                if fact.kind == "intent_created" {
                    self.intents
                        .entry(fact.payment_id)
                        .or_insert_with(|| (a, c.clone()));
                }
            }
            _ => {
                (fact.amount, fact.currency) = self.intents.get(&fact.payment_id).cloned().unzip();
            }
        }
        self.rows.push(fact);
        Ok(())
    }

    pub(super) async fn finish(self, tx: &mut PgConnection) -> anyhow::Result<()> {
        if self.rows.is_empty() {
            return Ok(());
        }
        let n = self.rows.len();
        let mut cols = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        for p in self.rows {
            cols.0.push(p.event_id);
            cols.1.push(p.payment_id);
            cols.2.push(p.order_id);
            cols.3.push(p.kind);
            cols.4.push(p.amount);
            cols.5.push(p.currency);
            cols.6.push(p.reason);
            cols.7.push(p.message);
            cols.8.push(p.gateway_reference);
            cols.9.push(p.at);
        }
        sqlx::query(
            "insert into analytics.fact_payments
                (event_id, payment_id, order_id, kind, amount_minor, currency, reason,
                 message, gateway_reference, refund_reference, attempt, at)
             select t.event_id, t.payment_id, t.order_id, t.kind,
                    coalesce(t.amount, i.amount_minor), coalesce(t.currency, i.currency),
                    t.reason, t.message, t.gateway_reference, null, null, t.at
             from unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::bigint[],
                         $6::text[], $7::text[], $8::text[], $9::text[],
                         $10::timestamptz[])
                  with ordinality as t(event_id, payment_id, order_id, kind, amount,
                                       currency, reason, message, gateway_reference, at,
                                       ord)
             left join lateral (
                 select amount_minor, currency from analytics.fact_payments f
                 where f.payment_id = t.payment_id and f.kind = 'intent_created'
                 order by f.at, f.event_id limit 1) i on t.amount is null
             order by t.ord",
        )
        .bind(cols.0)
        .bind(cols.1)
        .bind(cols.2)
        .bind(cols.3)
        .bind(cols.4)
        .bind(cols.5)
        .bind(cols.6)
        .bind(cols.7)
        .bind(cols.8)
        .bind(cols.9)
        .execute(&mut *tx)
        .await?;
        Ok(())
    }
}

/// The event's fact, with the amount and currency the event itself carries.
fn payment_fact(event_id: Uuid, e: &PaymentEvent) -> anyhow::Result<PaymentFact> {
    let fact = |payment_id: Uuid, order_id: Uuid, kind, at: &DateTime<Utc>| PaymentFact {
        event_id,
        payment_id,
        order_id,
        kind,
        amount: None,
        currency: None,
        reason: None,
        message: None,
        gateway_reference: None,
        at: *at,
    };
    Ok(match e {
        PaymentEvent::PaymentIntentCreated {
            payment_id,
            order_id,
            amount,
            at,
            ..
        } => PaymentFact {
            amount: Some(amount.minor),
            currency: Some(amount.currency.code().to_owned()),
            ..fact(
                payment_id.as_uuid(),
                order_id.as_uuid(),
                "intent_created",
                at,
            )
        },
        PaymentEvent::PaymentCaptured {
            payment_id,
            order_id,
            amount,
            gateway_reference,
            at,
        } => PaymentFact {
            amount: Some(amount.minor),
            currency: Some(amount.currency.code().to_owned()),
            gateway_reference: Some(gateway_reference.clone()),
            ..fact(payment_id.as_uuid(), order_id.as_uuid(), "captured", at)
        },
        PaymentEvent::PaymentFailed {
            payment_id,
            order_id,
            reason,
            message,
            at,
        } => PaymentFact {
            reason: Some(reason.code()),
            message: Some(message.clone()),
            ..fact(payment_id.as_uuid(), order_id.as_uuid(), "failed", at)
        },
        other => bail!(
            "the raw baseline does not handle {}",
            purser_domain::Event::event_type(other)
        ),
    })
}
