//! Value types that cannot hold a bad value: parse at the edge, trust inside.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

/// Why an input could not become a value type. `field` names the input to blame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ValueError {
    pub field: &'static str,
    pub message: String,
}

impl ValueError {
    pub fn new(field: &'static str, message: impl Into<String>) -> Self {
        ValueError { field, message: message.into() }
    }
}

/// A stock-keeping unit: 1 to 64 characters of `A-Z 0-9 - _ .`, stored upper-case.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Sku(String);

impl Sku {
    pub const MAX_LEN: usize = 64;

    pub fn parse(raw: &str) -> Result<Sku, ValueError> {
        let s = raw.trim().to_ascii_uppercase();
        if s.is_empty() {
            return Err(ValueError::new("sku", "must not be empty"));
        }
        if s.len() > Self::MAX_LEN {
            return Err(ValueError::new(
                "sku",
                format!("must be at most {} characters", Self::MAX_LEN),
            ));
        }
        if !s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')) {
            return Err(ValueError::new(
                "sku",
                "may contain only letters, digits, '-', '_' and '.'",
            ));
        }
        Ok(Sku(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The product's stream, `product-<SKU>`.
    pub fn product_stream(&self) -> String {
        format!("product-{}", self.0)
    }

    /// The SKU's stock stream, `inventory-<SKU>`.
    pub fn inventory_stream(&self) -> String {
        format!("inventory-{}", self.0)
    }

    /// The SKU's license-key pool stream, `licensepool-<SKU>`.
    pub fn license_pool_stream(&self) -> String {
        format!("licensepool-{}", self.0)
    }
}

impl fmt::Display for Sku {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Sku {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Sku::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// A positive quantity of units, at most [`Quantity::MAX`] per line or movement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Quantity(u32);

impl Quantity {
    /// A sane upper bound for one cart line, reservation or stock movement.
    pub const MAX: u32 = 1_000_000;

    pub fn new(n: i64) -> Result<Quantity, ValueError> {
        if n <= 0 {
            return Err(ValueError::new("quantity", "must be at least 1"));
        }
        if n > i64::from(Self::MAX) {
            return Err(ValueError::new("quantity", format!("must be at most {}", Self::MAX)));
        }
        Ok(Quantity(n as u32))
    }

    pub fn get(&self) -> u32 {
        self.0
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl<'de> Deserialize<'de> for Quantity {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = i64::deserialize(d)?;
        Quantity::new(n).map_err(serde::de::Error::custom)
    }
}

/// A normalised (trimmed, lower-case) email address of plausible shape, at most 254 bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Email, ValueError> {
        let s = raw.trim().to_ascii_lowercase();
        if s.len() > 254 {
            return Err(ValueError::new("email", "must be at most 254 characters"));
        }
        let Some((local, domain)) = s.split_once('@') else {
            return Err(ValueError::new("email", "must look like name@example.com"));
        };
        let ok = !local.is_empty()
            && local.len() <= 64
            && domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !domain.contains('@')
            && !s.chars().any(|c| c.is_whitespace() || c.is_control());
        if !ok {
            return Err(ValueError::new("email", "must look like name@example.com"));
        }
        Ok(Email(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Email {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Email::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Checks a free-text input: trimmed, within `max` characters, no control characters other
/// than newlines and tabs, and (when `required`) not empty.
pub fn bounded_text(
    field: &'static str,
    raw: &str,
    max: usize,
    required: bool,
) -> Result<String, ValueError> {
    let s = raw.trim();
    if required && s.is_empty() {
        return Err(ValueError::new(field, "must not be empty"));
    }
    if s.chars().count() > max {
        return Err(ValueError::new(field, format!("must be at most {max} characters")));
    }
    if s.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Err(ValueError::new(field, "must not contain control characters"));
    }
    Ok(s.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sku_is_normalised_and_bounded() {
        assert_eq!(Sku::parse(" lap-13 ").unwrap().as_str(), "LAP-13");
        assert_eq!(Sku::parse("").unwrap_err().field, "sku");
        assert!(Sku::parse("has space").is_err());
        assert!(Sku::parse(&"A".repeat(65)).is_err());
        assert!(serde_json::from_str::<Sku>("\"bad sku\"").is_err());
    }

    #[test]
    fn quantity_is_positive_and_sane() {
        assert!(Quantity::new(0).is_err());
        assert!(Quantity::new(-3).is_err());
        assert!(Quantity::new(i64::from(Quantity::MAX) + 1).is_err());
        assert_eq!(Quantity::new(3).unwrap().get(), 3);
    }

    #[test]
    fn email_is_normalised() {
        assert_eq!(Email::parse(" Ann@Example.COM ").unwrap().as_str(), "ann@example.com");
        for bad in ["", "ann", "ann@", "@x.com", "a@b", "a b@c.com", "a@b..", "a@@b.com"] {
            assert!(Email::parse(bad).is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn text_is_bounded() {
        assert_eq!(bounded_text("name", "  Laptop ", 10, true).unwrap(), "Laptop");
        assert!(bounded_text("name", "   ", 10, true).is_err());
        assert!(bounded_text("name", &"x".repeat(11), 10, true).is_err());
        assert!(bounded_text("name", "a\u{0}b", 10, true).is_err());
        assert_eq!(bounded_text("note", "", 10, false).unwrap(), "");
    }
}
