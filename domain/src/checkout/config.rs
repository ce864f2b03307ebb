//! The checkout's tunables.

use chrono::Duration;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckoutConfig {
    /// How long a reservation holds stock before the deadline releases it.
    pub reservation_ttl: Duration,
}

impl Default for CheckoutConfig {
    fn default() -> Self {
        CheckoutConfig { reservation_ttl: Duration::minutes(10) }
    }
}
