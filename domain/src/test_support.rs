//! Small fixtures shared by the unit tests of every aggregate.

use chrono::{DateTime, Duration, TimeZone, Utc};

use crate::{Currency, Email, Money, Quantity, Sku};

/// A fixed instant plus `minutes`, so tests never read the clock.
pub(crate) fn t(minutes: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 3, 1, 12, 0, 0).unwrap() + Duration::minutes(minutes)
}

pub(crate) fn sku(raw: &str) -> Sku {
    Sku::parse(raw).unwrap()
}

pub(crate) fn qty(n: i64) -> Quantity {
    Quantity::new(n).unwrap()
}

pub(crate) fn usd(minor: i64) -> Money {
    Money::new(minor, Currency::USD)
}

pub(crate) fn eur(minor: i64) -> Money {
    Money::new(minor, Currency::EUR)
}
pub(crate) fn email(raw: &str) -> Email {
    Email::parse(raw).unwrap()
}
