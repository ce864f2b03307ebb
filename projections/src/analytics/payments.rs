//! `analytics.fact_payments`: one fact per payment event.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use purser_domain::payment::PaymentEvent;
use sqlx::PgConnection;
use uuid::Uuid;

/// One payment fact. `amount` None means "the amount of the payment's intent".
struct PaymentFact<'a> {
    payment_id: Uuid,
    order_id: Uuid,
    kind: &'static str,
    amount: Option<(i64, &'a str)>,
    reason: Option<&'a str>,
    message: Option<&'a str>,
    gateway_reference: Option<&'a str>,
    refund_reference: Option<&'a str>,
    attempt: Option<i32>,
    at: DateTime<Utc>,
}

/// A batch's payment facts, one per event, in log order. A failure fact carries the amount of
/// the payment's intent: taken here from an intent earlier in the same batch, else looked up
/// by the insert among the facts already written. A payment has one intent (its stream's
/// first event), so the two ways agree with looking each one up as it comes.
#[derive(Default)]
pub(super) struct Payments {
    event_id: Vec<Uuid>,
    payment_id: Vec<Uuid>,
    order_id: Vec<Uuid>,
    kind: Vec<&'static str>,
    amount: Vec<Option<i64>>,
    currency: Vec<Option<String>>,
    reason: Vec<Option<String>>,
    message: Vec<Option<String>>,
    gateway_reference: Vec<Option<String>>,
    refund_reference: Vec<Option<String>>,
    attempt: Vec<Option<i32>>,
    at: Vec<DateTime<Utc>>,
    intents: HashMap<Uuid, (i64, String)>,
}

impl Payments {
    pub(super) fn add(&mut self, event_id: Uuid, e: PaymentEvent) {
        let fact = payment_fact(&e);
        let amount = match fact.amount {
            Some((minor, currency)) => {
                if fact.kind == "intent_created" {
                    self.intents
                        .entry(fact.payment_id)
                        .or_insert_with(|| (minor, currency.to_owned()));
                }
                Some((minor, currency.to_owned()))
            }
            None => self.intents.get(&fact.payment_id).cloned(),
        };
        let (amount, currency) = amount.unzip();
        self.event_id.push(event_id);
        self.payment_id.push(fact.payment_id);
        self.order_id.push(fact.order_id);
        self.kind.push(fact.kind);
        self.amount.push(amount);
        self.currency.push(currency);
        self.reason.push(fact.reason.map(str::to_owned));
        self.message.push(fact.message.map(str::to_owned));
        self.gateway_reference
            .push(fact.gateway_reference.map(str::to_owned));
        self.refund_reference
            .push(fact.refund_reference.map(str::to_owned));
        self.attempt.push(fact.attempt);
        self.at.push(fact.at);
    }

    pub(super) async fn write(self, tx: &mut PgConnection) -> Result<(), sqlx::Error> {
        if self.event_id.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "insert into analytics.fact_payments
                (event_id, payment_id, order_id, kind, amount_minor, currency, reason, message,
                 gateway_reference, refund_reference, attempt, at)
             select t.event_id, t.payment_id, t.order_id, t.kind,
                    coalesce(t.amount, i.amount_minor), coalesce(t.currency, i.currency),
                    t.reason, t.message, t.gateway_reference, t.refund_reference, t.attempt, t.at
             from unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::bigint[],
                         $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::int[],
                         $12::timestamptz[])
                  with ordinality as t(event_id, payment_id, order_id, kind, amount, currency,
                                       reason, message, gateway_reference, refund_reference,
                                       attempt, at, ord)
             left join lateral (
                 select amount_minor, currency from analytics.fact_payments f
                 where f.payment_id = t.payment_id and f.kind = 'intent_created'
                 order by f.at, f.event_id limit 1) i on t.amount is null
             order by t.ord",
        )
        .bind(self.event_id)
        .bind(self.payment_id)
        .bind(self.order_id)
        .bind(self.kind)
        .bind(self.amount)
        .bind(self.currency)
        .bind(self.reason)
        .bind(self.message)
        .bind(self.gateway_reference)
        .bind(self.refund_reference)
        .bind(self.attempt)
        .bind(self.at)
        .execute(tx)
        .await?;
        Ok(())
    }
}

fn payment_fact(e: &PaymentEvent) -> PaymentFact<'_> {
    match e {
        PaymentEvent::PaymentIntentCreated {
            payment_id,
            order_id,
            amount,
            at,
            ..
        } => PaymentFact {
            payment_id: payment_id.as_uuid(),
            order_id: order_id.as_uuid(),
            kind: "intent_created",
            amount: Some((amount.minor, amount.currency.code())),
            reason: None,
            message: None,
            gateway_reference: None,
            refund_reference: None,
            attempt: None,
            at: *at,
        },
        PaymentEvent::PaymentAttemptFailed {
            payment_id,
            order_id,
            attempt,
            error,
            at,
            ..
        } => PaymentFact {
            payment_id: payment_id.as_uuid(),
            order_id: order_id.as_uuid(),
            kind: "attempt_failed",
            amount: None,
            reason: Some(error),
            message: None,
            gateway_reference: None,
            refund_reference: None,
            attempt: Some(i32::try_from(*attempt).unwrap_or(i32::MAX)),
            at: *at,
        },
        PaymentEvent::PaymentCaptured {
            payment_id,
            order_id,
            amount,
            gateway_reference,
            at,
        } => PaymentFact {
            payment_id: payment_id.as_uuid(),
            order_id: order_id.as_uuid(),
            kind: "captured",
            amount: Some((amount.minor, amount.currency.code())),
            reason: None,
            message: None,
            gateway_reference: Some(gateway_reference),
            refund_reference: None,
            attempt: None,
            at: *at,
        },
        PaymentEvent::PaymentFailed {
            payment_id,
            order_id,
            reason,
            message,
            at,
        } => PaymentFact {
            payment_id: payment_id.as_uuid(),
            order_id: order_id.as_uuid(),
            kind: "failed",
            amount: None,
            reason: Some(reason.code()),
            message: Some(message),
            gateway_reference: None,
            refund_reference: None,
            attempt: None,
            at: *at,
        },
        PaymentEvent::PaymentRefunded {
            payment_id,
            order_id,
            amount,
            reason,
            refund_reference,
            at,
        } => PaymentFact {
            payment_id: payment_id.as_uuid(),
            order_id: order_id.as_uuid(),
            kind: "refunded",
            amount: Some((amount.minor, amount.currency.code())),
            reason: Some(reason),
            message: None,
            gateway_reference: None,
            refund_reference: Some(refund_reference),
            attempt: None,
            at: *at,
        },
    }
}
