//! How long the outbox dispatcher, the deadline worker and the notification worker wait after
//! a round. Each claims what is due and, in the same statement, learns when the next row it did
//! not claim falls due.

use std::time::Duration;

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
