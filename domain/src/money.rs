//! Money: integer minor units and an ISO 4217 currency. Never floats.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An ISO 4217 currency Purser knows, with its number of minor-unit digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Currency {
    code: [u8; 3],
    exponent: u8,
}

/// (code, minor-unit digits, symbol). The common trading currencies; extend as needed.
const CURRENCIES: &[(&str, u8, &str)] = &[
    ("AUD", 2, "A$"),
    ("BRL", 2, "R$"),
    ("CAD", 2, "CA$"),
    ("CHF", 2, "CHF "),
    ("CNY", 2, "CN¥"),
    ("CZK", 2, "CZK "),
    ("DKK", 2, "DKK "),
    ("EUR", 2, "€"),
    ("GBP", 2, "£"),
    ("HKD", 2, "HK$"),
    ("INR", 2, "₹"),
    ("JPY", 0, "¥"),
    ("KRW", 0, "₩"),
    ("MXN", 2, "MX$"),
    ("NOK", 2, "NOK "),
    ("NZD", 2, "NZ$"),
    ("PLN", 2, "PLN "),
    ("SEK", 2, "SEK "),
    ("SGD", 2, "SGD "),
    ("USD", 2, "$"),
    ("ZAR", 2, "ZAR "),
];

impl Currency {
    pub const USD: Currency = Currency { code: *b"USD", exponent: 2 };
    pub const EUR: Currency = Currency { code: *b"EUR", exponent: 2 };
    pub const GBP: Currency = Currency { code: *b"GBP", exponent: 2 };
    pub const JPY: Currency = Currency { code: *b"JPY", exponent: 0 };

    /// Parses an ISO 4217 code (case-insensitive) that Purser supports.
    pub fn parse(code: &str) -> Result<Currency, MoneyError> {
        let upper = code.trim().to_ascii_uppercase();
        CURRENCIES
            .iter()
            .find(|(c, _, _)| *c == upper)
            .map(|(c, e, _)| {
                let b = c.as_bytes();
                Currency { code: [b[0], b[1], b[2]], exponent: *e }
            })
            .ok_or_else(|| MoneyError::UnknownCurrency(code.chars().take(16).collect()))
    }

    pub fn code(&self) -> &str {
        std::str::from_utf8(&self.code).expect("currency codes are ASCII")
    }

    /// Digits after the decimal point (2 for USD, 0 for JPY).
    pub fn exponent(&self) -> u8 {
        self.exponent
    }

    fn symbol(&self) -> &'static str {
        CURRENCIES.iter().find(|(c, _, _)| *c == self.code()).map(|(_, _, s)| *s).unwrap_or("")
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl FromStr for Currency {
    type Err = MoneyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Currency::parse(s)
    }
}

impl Serialize for Currency {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.code())
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Currency::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("unknown or unsupported currency {0:?}")]
    UnknownCurrency(String),
    #[error("currency mismatch: {0} and {1}")]
    CurrencyMismatch(Currency, Currency),
    #[error("amount out of range: Purser handles amounts up to {} minor units", Money::MAX_MINOR)]
    Overflow,
    #[error("amount must not be negative")]
    Negative,
}

/// An amount of money in integer minor units (cents for USD, yen for JPY).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Money {
    pub minor: i64,
    pub currency: Currency,
}

impl Money {
    /// The largest amount, in minor units, that Purser accepts anywhere: a price, a line, a
    /// cart, an order, a payment or a refund (10^15: ten trillion dollars in cents). It is far
    /// above any real sale and far below `i64::MAX`, so every sum the domain forms is checked
    /// against it, and read models can add up thousands of such amounts in a `bigint`.
    pub const MAX_MINOR: i64 = 1_000_000_000_000_000;

    pub fn new(minor: i64, currency: Currency) -> Money {
        Money { minor, currency }
    }

    pub fn zero(currency: Currency) -> Money {
        Money { minor: 0, currency }
    }

    /// A non-negative amount within bounds, as prices and payments must be.
    pub fn non_negative(minor: i64, currency: Currency) -> Result<Money, MoneyError> {
        if minor < 0 {
            return Err(MoneyError::Negative);
        }
        Money { minor, currency }.bounded()
    }

    /// Whether the amount lies within ±[`Money::MAX_MINOR`].
    pub fn is_bounded(&self) -> bool {
        self.minor.unsigned_abs() <= Self::MAX_MINOR as u64
    }

    /// The amount itself when it lies within bounds, `Overflow` otherwise.
    pub fn bounded(self) -> Result<Money, MoneyError> {
        if self.is_bounded() { Ok(self) } else { Err(MoneyError::Overflow) }
    }

    pub fn checked_add(self, other: Money) -> Result<Money, MoneyError> {
        if self.currency != other.currency {
            return Err(MoneyError::CurrencyMismatch(self.currency, other.currency));
        }
        let minor = self.minor.checked_add(other.minor).ok_or(MoneyError::Overflow)?;
        Money { minor, currency: self.currency }.bounded()
    }

    pub fn checked_sub(self, other: Money) -> Result<Money, MoneyError> {
        if self.currency != other.currency {
            return Err(MoneyError::CurrencyMismatch(self.currency, other.currency));
        }
        let minor = self.minor.checked_sub(other.minor).ok_or(MoneyError::Overflow)?;
        Money { minor, currency: self.currency }.bounded()
    }

    pub fn checked_mul(self, factor: u32) -> Result<Money, MoneyError> {
        let minor = self.minor.checked_mul(i64::from(factor)).ok_or(MoneyError::Overflow)?;
        Money { minor, currency: self.currency }.bounded()
    }

    /// Human-readable form, e.g. `$1,234.50`, `€9.99`, `¥1,200`, `-$5.00`.
    pub fn formatted(&self) -> String {
        let exp = u32::from(self.currency.exponent());
        let abs = self.minor.unsigned_abs();
        let scale = 10u64.pow(exp);
        let major = abs / scale;
        let frac = abs % scale;
        let mut digits = major.to_string();
        let mut grouped = String::with_capacity(digits.len() + digits.len() / 3);
        while digits.len() > 3 {
            let tail = digits.split_off(digits.len() - 3);
            grouped = format!(",{tail}{grouped}");
        }
        grouped = format!("{digits}{grouped}");
        let sign = if self.minor < 0 { "-" } else { "" };
        let symbol = self.currency.symbol();
        if exp == 0 {
            format!("{sign}{symbol}{grouped}")
        } else {
            format!("{sign}{symbol}{grouped}.{frac:0width$}", width = exp as usize)
        }
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.formatted())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_minor_units() {
        assert_eq!(Money::new(123450, Currency::USD).formatted(), "$1,234.50");
        assert_eq!(Money::new(999, Currency::EUR).formatted(), "€9.99");
        assert_eq!(Money::new(1200, Currency::JPY).formatted(), "¥1,200");
        assert_eq!(Money::new(-500, Currency::USD).formatted(), "-$5.00");
        assert_eq!(Money::new(5, Currency::USD).formatted(), "$0.05");
        assert_eq!(Money::new(100_000_000, Currency::GBP).formatted(), "£1,000,000.00");
    }

    #[test]
    fn never_mixes_currencies() {
        let usd = Money::new(100, Currency::USD);
        let eur = Money::new(100, Currency::EUR);
        assert_eq!(
            usd.checked_add(eur),
            Err(MoneyError::CurrencyMismatch(Currency::USD, Currency::EUR))
        );
        assert_eq!(usd.checked_mul(3).unwrap().minor, 300);
        assert_eq!(Money::new(i64::MAX, Currency::USD).checked_mul(2), Err(MoneyError::Overflow));
    }

    #[test]
    fn every_step_stays_within_the_bound() {
        let max = Money::new(Money::MAX_MINOR, Currency::USD);
        assert!(max.is_bounded());
        assert_eq!(
            Money::non_negative(Money::MAX_MINOR + 1, Currency::USD),
            Err(MoneyError::Overflow)
        );
        assert_eq!(Money::non_negative(i64::MAX, Currency::USD), Err(MoneyError::Overflow));
        assert_eq!(max.checked_add(Money::new(1, Currency::USD)), Err(MoneyError::Overflow));
        assert_eq!(max.checked_mul(2), Err(MoneyError::Overflow));
        assert_eq!(
            Money::new(-Money::MAX_MINOR, Currency::USD).checked_sub(Money::new(1, Currency::USD)),
            Err(MoneyError::Overflow)
        );
        assert_eq!(max.checked_mul(1), Ok(max));
    }

    #[test]
    fn parses_currency_codes() {
        assert_eq!(Currency::parse("usd").unwrap(), Currency::USD);
        assert!(Currency::parse("XXX").is_err());
        assert!(Currency::parse("").is_err());
        let json = serde_json::to_value(Money::new(5, Currency::EUR)).unwrap();
        assert_eq!(json, serde_json::json!({"minor": 5, "currency": "EUR"}));
    }
}
