//! Durable deadlines: a reservation not confirmed by its expiry is released; a cart idle for
//! `cart_idle` (7 days by default) is abandoned.
//!
//! The `deadlines` projection keeps `purser.deadlines` in step with the log (a reservation
//! made adds its expiry; confirmed or released removes it; cart activity moves the cart's
//! deadline), so deadlines survive restarts. The worker sends the due ones. The commands
//! themselves check the clock against the state (`Expire` releases only a reservation that is
//! still active and really expired; `Abandon` only a cart really idle), so a deadline that
//! fires early, late or twice does no harm, and each fires once in effect.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use purser_domain::cart::{Cart, CartCommand, CartEvent};
use purser_domain::events::AnyEvent;
use purser_domain::inventory::{Inventory, InventoryCommand, InventoryEvent};
use purser_domain::{CartId, DomainError, ReservationId, Sku};
use purser_event_store::{EventFilter, RecordedEvent, StreamName};
use purser_projections::{Projection, ProjectionError, decode};
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, PgPool, Row};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::bus::{CommandBus, CommandError};
use crate::context::CommandContext;
use crate::polling::{due_in, run_rounds, sooner};

/// What a deadline does when it falls due.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DeadlinePayload {
    ReservationExpiry {
        sku: String,
        reservation_id: ReservationId,
    },
    CartAbandonment {
        cart_id: CartId,
    },
}

pub struct DeadlineProjection {
    pub cart_idle: chrono::Duration,
}

impl DeadlineProjection {
    pub const NAME: &'static str = "deadlines";
}

fn cart_deadline_id(cart_id: CartId) -> Uuid {
    purser_domain::derive_id(&["deadline", "cart", &cart_id.to_string()])
}

async fn upsert(
    tx: &mut PgConnection,
    id: Uuid,
    target: &str,
    due_at: DateTime<Utc>,
    payload: &DeadlinePayload,
) -> Result<(), sqlx::Error> {
    let kind = match payload {
        DeadlinePayload::ReservationExpiry { .. } => "reservation_expiry",
        DeadlinePayload::CartAbandonment { .. } => "cart_abandonment",
    };
    sqlx::query(
        "insert into purser.deadlines (id, kind, target, due_at, payload) values ($1, $2, $3, $4, $5)
         on conflict (id) do update set due_at = excluded.due_at, payload = excluded.payload,
             claimed_until = null, attempts = 0, last_error = null",
    )
    .bind(id)
    .bind(kind)
    .bind(target)
    .bind(due_at)
    .bind(serde_json::to_value(payload).expect("payload serialises"))
    .execute(tx)
    .await?;
    Ok(())
}

async fn remove(tx: &mut PgConnection, id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query("delete from purser.deadlines where id = $1")
        .bind(id)
        .execute(tx)
        .await?;
    Ok(())
}

#[async_trait]
impl Projection for DeadlineProjection {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn filter(&self) -> EventFilter {
        EventFilter::categories(["inventory", "cart"])
    }

    /// Deadlines are command-side state: never truncated by a rebuild. Replaying events
    /// re-derives the same rows (upserts and deletes by deterministic id).
    fn tables(&self) -> &'static [&'static str] {
        &[]
    }

    async fn apply(
        &self,
        tx: &mut PgConnection,
        event: &RecordedEvent,
    ) -> Result<(), ProjectionError> {
        match decode(event)? {
            AnyEvent::Inventory(InventoryEvent::StockReserved {
                sku,
                reservation_id,
                expires_at,
                ..
            }) => {
                let payload = DeadlinePayload::ReservationExpiry {
                    sku: sku.to_string(),
                    reservation_id,
                };
                upsert(
                    tx,
                    reservation_id.as_uuid(),
                    &sku.inventory_stream(),
                    expires_at,
                    &payload,
                )
                .await?;
            }
            AnyEvent::Inventory(
                InventoryEvent::ReservationConfirmed { reservation_id, .. }
                | InventoryEvent::ReservationReleased { reservation_id, .. },
            ) => remove(tx, reservation_id.as_uuid()).await?,
            AnyEvent::Cart(e) => {
                let cart_id = cart_id_of(&event.stream)?;
                match e {
                    CartEvent::CartCheckedOut { .. } | CartEvent::CartAbandoned { .. } => {
                        remove(tx, cart_deadline_id(cart_id)).await?
                    }
                    other => {
                        let at = cart_event_time(&other).unwrap_or(event.recorded_at);
                        let payload = DeadlinePayload::CartAbandonment { cart_id };
                        upsert(
                            tx,
                            cart_deadline_id(cart_id),
                            event.stream.as_str(),
                            at + self.cart_idle,
                            &payload,
                        )
                        .await?;
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }
}

fn cart_id_of(stream: &StreamName) -> Result<CartId, ProjectionError> {
    stream
        .id()
        .parse()
        .map_err(|e| ProjectionError::Other(format!("cart stream {stream}: {e}")))
}

/// When a cart event says the cart was last touched.
fn cart_event_time(e: &CartEvent) -> Option<DateTime<Utc>> {
    match e {
        CartEvent::CartCreated { at, .. }
        | CartEvent::CartItemAdded { at, .. }
        | CartEvent::CartItemQuantityChanged { at, .. }
        | CartEvent::CartItemRemoved { at, .. }
        | CartEvent::CartCustomerAssigned { at, .. }
        | CartEvent::CartCheckedOut { at, .. }
        | CartEvent::CartAbandoned { at, .. } => Some(*at),
    }
}

/// Sends due deadlines.
pub struct DeadlineWorker {
    pool: PgPool,
    bus: CommandBus,
    cart_idle: chrono::Duration,
    wake: watch::Receiver<u64>,
    /// Longest sleep between looks (deadlines added by other processes are seen by then).
    poll: Duration,
}

impl DeadlineWorker {
    pub fn new(
        pool: PgPool,
        bus: CommandBus,
        cart_idle: chrono::Duration,
        wake: watch::Receiver<u64>,
    ) -> DeadlineWorker {
        DeadlineWorker {
            pool,
            bus,
            cart_idle,
            wake,
            poll: Duration::from_secs(5),
        }
    }

    pub async fn run(self, shutdown: CancellationToken) {
        let errors = (Duration::from_secs(1), Duration::from_secs(1));
        run_rounds(
            "deadline worker",
            self.wake.clone(),
            self.poll,
            errors,
            &shutdown,
            || self.round(),
        )
        .await;
    }

    /// Sends what is due. Returns how many deadlines it claimed and how long until the next
    /// one not claimed by this round falls due (zero if one already has; None if there is
    /// none), learnt in the same statement as the claim.
    pub async fn round(&self) -> Result<(usize, Option<Duration>), sqlx::Error> {
        // Both parts read one snapshot, so the rows just claimed are left out of the second by
        // id; the last row carries only the next due time (NULL when there is none).
        let rows = sqlx::query(
            "with claimed as (
                 update purser.deadlines d set claimed_until = now() + interval '60 seconds', attempts = d.attempts + 1
                 from (select id from purser.deadlines
                       where due_at <= now() and (claimed_until is null or claimed_until < now())
                       order by due_at limit 100 for update skip locked) c
                 where d.id = c.id
                 returning d.id, d.due_at, d.payload, d.attempts
             )
             select id, due_at, payload, attempts, null::float8 as next_due from claimed
             union all
             select null, null, null, null,
                    (select extract(epoch from
                                min(greatest(due_at, coalesce(claimed_until, due_at))) - now())::float8
                     from purser.deadlines where id not in (select id from claimed))",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut next_due = None;
        let mut claimed = Vec::with_capacity(rows.len());
        for row in rows {
            if row.get::<Option<Uuid>, _>("id").is_some() {
                claimed.push(row);
            } else {
                next_due = due_in(row.get("next_due"));
            }
        }
        let n = claimed.len();
        for row in claimed {
            let id: Uuid = row.get("id");
            let due_at: DateTime<Utc> = row.get("due_at");
            let attempts: i32 = row.get("attempts");
            let payload: DeadlinePayload = match serde_json::from_value(row.get("payload")) {
                Ok(p) => p,
                Err(e) => {
                    tracing::error!(deadline = %id, error = %e, "unreadable deadline; dropping it");
                    self.done(id, due_at).await?;
                    continue;
                }
            };
            match self.fire(id, &payload).await {
                Ok(()) => self.done(id, due_at).await?,
                Err(error) => {
                    let backoff = 2f64.powi(attempts.clamp(1, 8)).min(300.0);
                    tracing::warn!(deadline = %id, error = %error, "deadline failed; will retry");
                    let retry = Duration::from_secs_f64(backoff);
                    next_due = sooner(next_due, retry);
                    sqlx::query(
                        "update purser.deadlines set claimed_until = now() + make_interval(secs => $2), last_error = $3 where id = $1",
                    )
                    .bind(id)
                    .bind(backoff)
                    .bind(&error)
                    .execute(&self.pool)
                    .await?;
                }
            }
        }
        Ok((n, next_due))
    }

    /// Removes a deadline that has fired, unless cart activity moved it meanwhile.
    async fn done(&self, id: Uuid, due_at: DateTime<Utc>) -> Result<(), sqlx::Error> {
        sqlx::query("delete from purser.deadlines where id = $1 and due_at = $2")
            .bind(id)
            .bind(due_at)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Sends the deadline's command. A domain refusal means there is nothing left to do.
    async fn fire(&self, id: Uuid, payload: &DeadlinePayload) -> Result<(), String> {
        let mut ctx = CommandContext::system("deadlines");
        ctx.command_id = Some(id);
        let now = Utc::now();
        match payload {
            DeadlinePayload::ReservationExpiry {
                sku,
                reservation_id,
            } => {
                // The SKU comes back from the deadline's stored payload, so it is parsed again.
                let sku = Sku::parse(sku).map_err(|e| e.to_string())?;
                let cmd = InventoryCommand::Expire {
                    reservation_id: *reservation_id,
                    now,
                };
                ignore_refusal(self.bus.execute::<Inventory>(&sku, &ctx, cmd).await)
            }
            DeadlinePayload::CartAbandonment { cart_id } => {
                let cmd = CartCommand::Abandon {
                    now,
                    idle_after: self.cart_idle,
                };
                ignore_refusal(self.bus.execute::<Cart>(cart_id, &ctx, cmd).await)
            }
        }
    }
}

fn ignore_refusal<T, E: DomainError>(r: Result<T, CommandError<E>>) -> Result<(), String> {
    match r {
        Ok(_) => Ok(()),
        Err(CommandError::Domain(e)) => {
            tracing::info!(code = e.code(), "deadline found nothing to do");
            Ok(())
        }
        Err(e) => Err(e.to_string()),
    }
}
