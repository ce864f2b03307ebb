//! Small constructors for the values histories are made of, and the lines of orders and carts.

use chrono::{DateTime, Duration, TimeZone, Utc};
use purser_domain::product::{DigitalTerms, LicenseSource};
use purser_domain::{Currency, CustomerId, Email, Money, Quantity, Sku};

/// A fixed origin, so histories (and what the read models derive from them) are the same on
/// every run.
pub fn t(minutes: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 5, 1, 10, 0, 0).unwrap() + Duration::minutes(minutes)
}

pub fn usd(minor: i64) -> Money {
    Money::new(minor, Currency::USD)
}

pub fn sku(s: &str) -> Sku {
    Sku::parse(s).unwrap()
}

pub fn email(s: &str) -> Email {
    Email::parse(s).unwrap()
}

pub fn customer_of(e: &str) -> CustomerId {
    CustomerId::for_email(&email(e))
}

pub fn qty(n: i64) -> Quantity {
    Quantity::new(n).unwrap()
}

pub fn terms() -> DigitalTerms {
    DigitalTerms {
        license: LicenseSource::Pool,
        seats: 3,
        validity_days: Some(365),
    }
}

/// One line of an order to place.
#[derive(Debug, Clone)]
pub struct Line {
    pub sku: &'static str,
    pub name: &'static str,
    pub qty: i64,
    pub unit_minor: i64,
    pub digital: bool,
}

pub fn physical(sku: &'static str, name: &'static str, qty: i64, unit_minor: i64) -> Line {
    Line {
        sku,
        name,
        qty,
        unit_minor,
        digital: false,
    }
}

pub fn digital(sku: &'static str, name: &'static str, unit_minor: i64) -> Line {
    Line {
        sku,
        name,
        qty: 1,
        unit_minor,
        digital: true,
    }
}
