//! Appending to several streams in one transaction: every stream's `es.append_events` runs in
//! it, and the transaction commits only when every expectation held.
//!
//! Streams are appended in name order whatever order the caller gave, so two calls touching
//! the same streams take their index entries in the same order and never deadlock each other.

use sqlx::Connection;

use super::PgEventStore;
use super::append::Attempt;
use super::rows::map_db_error;
use crate::{AppendOutcome, ExpectedVersion, StoreError, StreamAppend, validate_append};

/// SQLSTATE of a deadlock Postgres broke by aborting us: safe to try again.
const DEADLOCK: &str = "40P01";

impl PgEventStore {
    pub(super) async fn append_many_events(
        &self,
        appends: Vec<StreamAppend>,
    ) -> Result<Vec<AppendOutcome>, StoreError> {
        check(&appends)?;
        let mut order: Vec<usize> = (0..appends.len()).collect();
        order.sort_by(|&a, &b| appends[a].stream.as_str().cmp(appends[b].stream.as_str()));
        // As for one stream: "Any" and "Exists" cannot be wrong about a version, so losing a
        // race for the next version number (or a deadlock) means trying again.
        const MAX_RACES: usize = 50;
        for _ in 0..MAX_RACES {
            match self.attempt(&appends, &order).await? {
                Ok(outcomes) => {
                    self.announce().await;
                    return Ok(outcomes);
                }
                Err(Refused::Race) => continue,
                Err(Refused::Version { index, actual }) => {
                    if let Some(original) = self.find_duplicates(&appends).await? {
                        return Ok(original);
                    }
                    let a = &appends[index];
                    return Err(StoreError::WrongExpectedVersion {
                        stream: a.stream.to_string(),
                        expected: a.expected.to_string(),
                        actual,
                    });
                }
            }
        }
        Err(StoreError::Backend(
            "a multi-stream append kept racing; gave up".into(),
        ))
    }

    /// One transaction over every stream, in `order`.
    async fn attempt(
        &self,
        appends: &[StreamAppend],
        order: &[usize],
    ) -> Result<Result<Vec<AppendOutcome>, Refused>, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(map_db_error)?;
        let mut tx = conn.begin().await.map_err(map_db_error)?;
        let mut outcomes: Vec<Option<AppendOutcome>> = vec![None; appends.len()];
        for &i in order {
            let a = &appends[i];
            match self
                .try_append(&mut tx, &a.stream, a.expected, &a.events)
                .await
            {
                Ok(Attempt::Appended(outcome)) => outcomes[i] = Some(outcome),
                Ok(Attempt::WrongVersion { actual }) => {
                    return Ok(Err(Refused::Version { index: i, actual }));
                }
                Ok(Attempt::UniqueViolation { constraint }) => {
                    let racing = constraint == "events_stream_version_key"
                        && matches!(a.expected, ExpectedVersion::Any | ExpectedVersion::Exists);
                    if racing {
                        return Ok(Err(Refused::Race));
                    }
                    let actual = self.current_version(&a.stream).await?;
                    return Ok(Err(Refused::Version { index: i, actual }));
                }
                Err(StoreError::Backend(m)) if m.contains(DEADLOCK) || m.contains("deadlock") => {
                    return Ok(Err(Refused::Race));
                }
                Err(e) => return Err(e),
            }
        }
        match tx.commit().await {
            Ok(()) => Ok(Ok(outcomes
                .into_iter()
                .map(|o| o.expect("every stream appended"))
                .collect())),
            Err(sqlx::Error::Database(db)) if db.code().as_deref() == Some(DEADLOCK) => {
                Ok(Err(Refused::Race))
            }
            Err(e) => Err(map_db_error(e)),
        }
    }

    /// Whether a refused call repeats one that went through: every stream's events already
    /// stored as they were sent. Some stored and some not is a mismatch, as for one stream.
    async fn find_duplicates(
        &self,
        appends: &[StreamAppend],
    ) -> Result<Option<Vec<AppendOutcome>>, StoreError> {
        let mut found = Vec::with_capacity(appends.len());
        for a in appends {
            found.push(self.find_duplicate(&a.stream, &a.events).await?);
        }
        if found.iter().all(Option::is_none) {
            return Ok(None);
        }
        if let Some(missing) = found.iter().position(Option::is_none) {
            let event_id = appends[missing].events[0].id;
            return Err(StoreError::IdempotencyMismatch {
                event_id,
                detail: format!(
                    "part of this multi-stream append is stored, but not the events of {}",
                    appends[missing].stream
                ),
            });
        }
        Ok(Some(found.into_iter().flatten().collect()))
    }
}

/// Why one attempt of a multi-stream append did not commit.
enum Refused {
    /// Lost a race that trying again resolves.
    Race,
    /// The stream at `index` is not at the expected version.
    Version { index: usize, actual: Option<u64> },
}

/// Every stream at most once, and every part a valid append.
fn check(appends: &[StreamAppend]) -> Result<(), StoreError> {
    if appends.is_empty() {
        return Err(StoreError::InvalidInput(
            "a multi-stream append needs at least one stream".into(),
        ));
    }
    let mut streams = std::collections::HashSet::new();
    let mut ids = std::collections::HashSet::new();
    for a in appends {
        validate_append(&a.events)?;
        if !streams.insert(a.stream.as_str()) {
            return Err(StoreError::InvalidInput(format!(
                "stream {} appears twice in one multi-stream append",
                a.stream
            )));
        }
        if let Some(e) = a.events.iter().find(|e| !ids.insert(e.id)) {
            return Err(StoreError::InvalidInput(format!(
                "event id {} appears twice",
                e.id
            )));
        }
    }
    Ok(())
}
