//! Outbound webhooks: integration events POSTed to endpoints admins register.
//!
//! * [`fanout::WebhookFanout`], a projection, turns each integration event into one delivery
//!   row per enabled endpoint that subscribes to its type, in the transaction that moves its
//!   checkpoint, so no event is fanned out twice or missed.
//! * [`worker::DeliveryWorker`] sends due deliveries, signed ([`signature`]), one at a time per
//!   endpoint and ordering key (an order's events arrive in order), retrying with exponential
//!   back-off for a day; an endpoint that has failed for a day is disabled.
//! * [`endpoints`] is what the admin GraphQL calls: register, list, enable/disable, delete,
//!   the delivery log, replay.
//! * [`ssrf`] keeps admin-supplied URLs away from Purser's own network.

pub mod endpoints;
pub mod fanout;
pub mod signature;
pub mod ssrf;
pub mod worker;

use std::time::Duration;

use crate::map::Mapper;

/// How webhooks behave (`PURSER_WEBHOOK_*`).
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// Allow endpoints on loopback, private and link-local addresses (tests, internal setups).
    pub allow_private: bool,
    /// The whole request, connect included.
    pub timeout: Duration,
    /// The first retry's delay; it doubles per failed attempt up to [`MAX_RETRY_DELAY`].
    pub retry_base: Duration,
    /// A delivery still failing this long after it was created is given up.
    pub retry_window: Duration,
    /// An endpoint whose deliveries have failed without a success for this long is disabled.
    pub disable_after: Duration,
    /// Delivered and given-up deliveries stay in the log this long.
    pub retention: Duration,
    pub mapper: Mapper,
}

/// The longest wait between two attempts.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(3600);

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            allow_private: false,
            timeout: Duration::from_secs(10),
            retry_base: Duration::from_secs(10),
            retry_window: Duration::from_secs(86_400),
            disable_after: Duration::from_secs(86_400),
            retention: Duration::from_secs(30 * 86_400),
            mapper: Mapper::default(),
        }
    }
}

/// The delay after the `attempts`-th failed attempt (1-based): `base × 2^(attempts-1)`,
/// at most [`MAX_RETRY_DELAY`].
pub fn retry_delay(base: Duration, attempts: u32) -> Duration {
    let factor = 2u32.saturating_pow(attempts.saturating_sub(1).min(20));
    base.saturating_mul(factor).min(MAX_RETRY_DELAY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_exponentially_up_to_an_hour() {
        let base = Duration::from_secs(10);
        let delays: Vec<u64> = (1..=5).map(|n| retry_delay(base, n).as_secs()).collect();
        assert_eq!(delays, [10, 20, 40, 80, 160]);
        assert_eq!(retry_delay(base, 40), MAX_RETRY_DELAY);
        // A day of retries at these delays is a few dozen attempts, not thousands.
        let mut spent = Duration::ZERO;
        let mut n = 0;
        while spent < Duration::from_secs(86_400) {
            n += 1;
            spent += retry_delay(base, n);
        }
        assert!((25..40).contains(&n), "{n} attempts in a day");
    }
}
