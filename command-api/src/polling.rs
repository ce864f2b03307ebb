//! How long the outbox dispatcher, the deadline worker and the notification worker wait after
//! a round. Each claims what is due and, in the same statement, learns when the next row it did
//! not claim falls due.

use std::future::Future;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// The shortest wait after a round that claimed nothing although a row was due: such a row is
/// held by someone else for the moment (locked by a transaction still writing it, or queued
/// behind another row of its key), and looking again at once would only spin.
const HELD_ROW_PAUSE: Duration = Duration::from_millis(10);

/// The wait before the next round: until the next row falls due (measured from when the round
/// began, which is when its due times were read), at most `poll`; no wait after a round that
/// did work and found more due. Wake-ups end the wait sooner.
pub(crate) fn wait_after_round(
    claimed: usize,
    next_due: Option<Duration>,
    poll: Duration,
    round_took: Duration,
) -> Duration {
    let wait = next_due
        .unwrap_or(poll)
        .min(poll)
        .saturating_sub(round_took);
    if claimed == 0 {
        wait.max(HELD_ROW_PAUSE)
    } else {
        wait
    }
}

/// The next-due seconds a claim statement returned (NULL: no other row) as a wait; a row
/// already due gives zero.
pub(crate) fn due_in(secs: Option<f64>) -> Option<Duration> {
    secs.map(|secs| Duration::from_secs_f64(secs.max(0.0)))
}

/// The earlier of the next due time and `other` (a row of the round put off for that long).
pub(crate) fn sooner(next_due: Option<Duration>, other: Duration) -> Option<Duration> {
    Some(next_due.map_or(other, |d| d.min(other)))
}

/// The loop the three pollers share, until `shutdown`: a round, then the wait
/// [`wait_after_round`] gives, cut short by a change of `wake` (a projection that fills the
/// table committed) or by shutdown. `wake` is marked seen before each round, so rows written
/// while a round runs end the wait after it. Should `wake`'s sender be gone, the wait runs its
/// full length instead of spinning. After a failed round it pauses `on_error.0`, doubling up
/// to `on_error.1` while failures go on.
pub(crate) async fn run_rounds<R, F>(
    what: &'static str,
    mut wake: watch::Receiver<u64>,
    poll: Duration,
    on_error: (Duration, Duration),
    shutdown: &CancellationToken,
    mut round: R,
) where
    R: FnMut() -> F,
    F: Future<Output = Result<(usize, Option<Duration>), sqlx::Error>>,
{
    let mut backoff = on_error.0;
    while !shutdown.is_cancelled() {
        wake.borrow_and_update();
        let started = tokio::time::Instant::now();
        let wait = match round().await {
            Ok((claimed, next_due)) => {
                backoff = on_error.0;
                wait_after_round(claimed, next_due, poll, started.elapsed())
            }
            Err(e) => {
                tracing::warn!(error = %e, "{what} cannot reach the database");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(on_error.1);
                continue;
            }
        };
        if wait.is_zero() {
            continue;
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            changed = wake.changed() => {
                if changed.is_err() {
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(wait) => {}
                    }
                }
            }
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLL: Duration = Duration::from_millis(500);
    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn waits_until_the_next_row_falls_due_counting_from_the_start_of_the_round() {
        assert_eq!(wait_after_round(3, Some(80 * MS), POLL, 30 * MS), 50 * MS);
        assert_eq!(
            wait_after_round(3, Some(10 * MS), POLL, 30 * MS),
            Duration::ZERO
        );
    }

    #[test]
    fn a_null_due_time_is_none_and_a_past_one_is_now() {
        assert_eq!(due_in(None), None);
        assert_eq!(due_in(Some(-3.0)), Some(Duration::ZERO));
        assert_eq!(due_in(Some(0.25)), Some(250 * MS));
        assert_eq!(sooner(None, 5 * MS), Some(5 * MS));
        assert_eq!(sooner(Some(2 * MS), 5 * MS), Some(2 * MS));
    }

    #[test]
    fn never_longer_than_the_poll_interval() {
        assert_eq!(wait_after_round(0, None, POLL, Duration::ZERO), POLL);
        assert_eq!(
            wait_after_round(1, Some(60 * POLL), POLL, Duration::ZERO),
            POLL
        );
    }

    #[test]
    fn a_round_that_found_work_goes_again_at_once_but_an_empty_one_does_not_spin() {
        assert_eq!(
            wait_after_round(5, Some(Duration::ZERO), POLL, 2 * MS),
            Duration::ZERO
        );
        assert_eq!(
            wait_after_round(0, Some(Duration::ZERO), POLL, 2 * MS),
            HELD_ROW_PAUSE
        );
    }
}
