//! The parts of an order: its lines, where it ships, and how it was shipped or cancelled.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::product::DigitalTerms;
use crate::{Money, Quantity, Sku, ValueError, bounded_text};

/// One line of an order. Digital lines carry the license terms copied from the product when
/// the order was placed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderLine {
    pub sku: Sku,
    pub name: String,
    pub qty: Quantity,
    pub unit_price: Money,
    pub line_total: Money,
    pub digital: Option<DigitalTerms>,
}

impl OrderLine {
    /// A validated line whose total is `unit_price × qty`.
    pub fn new(
        sku: Sku,
        name: &str,
        qty: Quantity,
        unit_price: Money,
        digital: Option<DigitalTerms>,
    ) -> Result<OrderLine, ValueError> {
        if unit_price.minor < 0 {
            return Err(ValueError::new("unit_price", "must not be negative"));
        }
        if let Some(terms) = &digital {
            terms.validate()?;
        }
        let line_total = unit_price
            .checked_mul(qty.get())
            .map_err(|_| ValueError::new("quantity", "line total out of range"))?;
        let name = bounded_text("name", name, 200, true)?;
        Ok(OrderLine { sku, name, qty, unit_price, line_total, digital })
    }

    pub fn is_digital(&self) -> bool {
        self.digital.is_some()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShippingAddress {
    pub name: String,
    pub line1: String,
    pub line2: Option<String>,
    pub city: String,
    pub postal_code: String,
    /// ISO 3166-1 alpha-2, upper-case.
    pub country: String,
}

impl ShippingAddress {
    pub fn parse(
        name: &str,
        line1: &str,
        line2: Option<&str>,
        city: &str,
        postal_code: &str,
        country: &str,
    ) -> Result<ShippingAddress, ValueError> {
        let country = country.trim().to_ascii_uppercase();
        if country.len() != 2 || !country.chars().all(|c| c.is_ascii_uppercase()) {
            return Err(ValueError::new("country", "must be a two-letter country code"));
        }
        let line2 = match line2.map(|l| bounded_text("line2", l, 200, false)).transpose()? {
            Some(l) if l.is_empty() => None,
            other => other,
        };
        Ok(ShippingAddress {
            name: bounded_text("name", name, 200, true)?,
            line1: bounded_text("line1", line1, 200, true)?,
            line2,
            city: bounded_text("city", city, 100, true)?,
            postal_code: bounded_text("postal_code", postal_code, 20, true)?,
            country,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CancelledBy {
    Customer,
    Admin,
    /// A process manager compensating a failure.
    System,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tracking {
    pub tracking_number: String,
    pub carrier: String,
    pub estimated_delivery: Option<DateTime<Utc>>,
    pub shipped_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cancellation {
    pub reason: String,
    pub by: CancelledBy,
    pub was_paid: bool,
    pub at: DateTime<Utc>,
}
