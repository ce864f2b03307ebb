//! What the runtime needs of the dead letters: the positions a projection passes over, and
//! recording each the first time it does (see `dead_letters` for asking and listing).

use std::collections::HashMap;

use purser_event_store::{Position, RecordedEvent};
use sqlx::{PgConnection, PgPool, Row};

/// The positions one projection passes over, and whether each has been recorded yet.
#[derive(Debug, Clone, Default)]
pub(crate) struct SkipSet(HashMap<Position, bool>);

impl SkipSet {
    pub(crate) async fn load(pool: &PgPool, projection: &str) -> Result<SkipSet, sqlx::Error> {
        let rows = sqlx::query(
            "select commit_position, prepare_position, skipped_at is not null as done
             from purser.dead_letters where projection = $1",
        )
        .bind(projection)
        .fetch_all(pool)
        .await?;
        Ok(SkipSet(
            rows.into_iter()
                .map(|r| {
                    let at = Position::from_db(r.get("commit_position"), r.get("prepare_position"));
                    (at, r.get("done"))
                })
                .collect(),
        ))
    }

    pub(crate) fn contains(&self, at: Position) -> bool {
        self.0.contains_key(&at)
    }

    /// Records, in the batch's transaction, the events of `skipped` that had not been
    /// recorded yet (the first time the projector reaches them).
    pub(crate) async fn record(
        &self,
        tx: &mut PgConnection,
        projection: &str,
        skipped: &[&RecordedEvent],
    ) -> Result<(), sqlx::Error> {
        for e in skipped
            .iter()
            .filter(|e| self.0.get(&e.position) == Some(&false))
        {
            let (commit, prepare) = e.position.to_db();
            sqlx::query(
                "update purser.dead_letters d
                 set event_id = $4, stream = $5, stream_version = $6, event_type = $7,
                     error = (select last_error from purser.projection_checkpoints
                              where name = d.projection),
                     skipped_at = now()
                 where projection = $1 and commit_position = $2 and prepare_position = $3",
            )
            .bind(projection)
            .bind(commit)
            .bind(prepare)
            .bind(e.id)
            .bind(e.stream.as_str())
            .bind(e.version as i64)
            .bind(&e.event_type)
            .execute(&mut *tx)
            .await?;
        }
        Ok(())
    }
}
