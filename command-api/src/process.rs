//! The checkout process manager's durable runner.
//!
//! It runs as a projection over the log (so it inherits the runtime's guarantees: one owner,
//! checkpoint in the same transaction, no skipped or repeated event). For each event that
//! belongs to an order it loads that checkout's state, asks the pure process manager
//! (`purser_domain::checkout::react`) which commands the event calls for, evolves the state,
//! and writes the state and the commands (into `purser.outbox`) in the projector's
//! transaction. The outbox dispatcher sends them.
//!
//! Replaying events the state has already seen emits nothing (the process manager reacts only
//! to milestones reached for the first time), and outbox ids are derived from the causing
//! event, so a replay cannot double anything either.

use async_trait::async_trait;
use purser_domain::checkout::{self, CheckoutConfig, CheckoutState};
use purser_event_store::{EventFilter, RecordedEvent};
use purser_projections::{Projection, ProjectionError, decode};
use sqlx::PgConnection;
use uuid::Uuid;

/// The process name in `purser.process_state` and `purser.outbox`.
pub const CHECKOUT: &str = "checkout";

pub struct CheckoutProcess {
    pub config: CheckoutConfig,
}

impl CheckoutProcess {
    pub const NAME: &'static str = "checkout_process";
}

/// The id of the `index`-th command an event caused.
pub fn outbox_id(event_id: Uuid, index: usize) -> Uuid {
    purser_domain::derive_id(&["outbox", &event_id.to_string(), &index.to_string()])
}

#[async_trait]
impl Projection for CheckoutProcess {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn filter(&self) -> EventFilter {
        EventFilter::categories([
            "order",
            "inventory",
            "payment",
            "customer",
            "license",
            "licensepool",
        ])
    }

    /// Process state is not a read model: it is never truncated. Resetting the checkpoint
    /// replays events into the existing state, which emits nothing new.
    fn tables(&self) -> &'static [&'static str] {
        &[]
    }

    async fn apply(
        &self,
        tx: &mut PgConnection,
        event: &RecordedEvent,
    ) -> Result<(), ProjectionError> {
        let any = decode(event)?;
        let Some(order_id) = checkout::order_of(&any) else {
            return Ok(());
        };
        let key = order_id.to_string();
        let stored: Option<serde_json::Value> = sqlx::query_scalar(
            "select state from purser.process_state where process = $1 and key = $2 for update",
        )
        .bind(CHECKOUT)
        .bind(&key)
        .fetch_optional(&mut *tx)
        .await?;
        let before: CheckoutState = match stored {
            Some(json) => serde_json::from_value(json).map_err(|e| {
                ProjectionError::Other(format!("checkout state of order {key} does not load: {e}"))
            })?,
            None => CheckoutState::default(),
        };
        let actions = checkout::react(&before, &any, &self.config);
        let after = checkout::evolve(before, &any);
        sqlx::query(
            "insert into purser.process_state (process, key, state, updated_at) values ($1, $2, $3, $4)
             on conflict (process, key) do update set state = excluded.state, updated_at = excluded.updated_at",
        )
        .bind(CHECKOUT)
        .bind(&key)
        .bind(serde_json::to_value(&after).expect("checkout state serialises"))
        .bind(event.recorded_at)
        .execute(&mut *tx)
        .await?;
        for (i, action) in actions.iter().enumerate() {
            sqlx::query(
                "insert into purser.outbox (id, process, key, command, causation_id, correlation_id)
                 values ($1, $2, $3, $4, $5, $6) on conflict (id) do nothing",
            )
            .bind(outbox_id(event.id, i))
            .bind(CHECKOUT)
            .bind(&key)
            .bind(serde_json::to_value(action).expect("actions serialise"))
            .bind(event.id)
            .bind(event.metadata.correlation_id)
            .execute(&mut *tx)
            .await?;
        }
        Ok(())
    }
}
