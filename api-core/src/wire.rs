//! Types both halves of the schema use on the wire: 64-bit integers, money, page info, global
//! ids and cursors (user errors are in `errors`, with the rest of what goes wrong).

use async_graphql::{InputValueError, InputValueResult, Scalar, ScalarType, SimpleObject, Value};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::errors::{bad_argument, bad_input};

/// A 64-bit integer. GraphQL's `Int` is 32-bit; amounts in minor units and positions can be
/// larger. Serialised as a JSON number (exact up to 2^53 in JavaScript).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Int64(pub i64);

#[Scalar(name = "Int64")]
impl ScalarType for Int64 {
    fn parse(value: Value) -> InputValueResult<Self> {
        match &value {
            Value::Number(n) => n
                .as_i64()
                .map(Int64)
                .ok_or_else(|| InputValueError::custom("not a 64-bit integer")),
            Value::String(s) => s
                .parse()
                .map(Int64)
                .map_err(|_| InputValueError::custom("not a 64-bit integer")),
            _ => Err(InputValueError::expected_type(value)),
        }
    }

    fn to_value(&self) -> Value {
        Value::Number(self.0.into())
    }
}

/// An amount of money: integer minor units (cents), its ISO 4217 currency, and a display form.
#[derive(SimpleObject, Debug, Clone, PartialEq, Eq)]
pub struct MoneyV2 {
    /// Minor units: 1999 USD is $19.99, 1200 JPY is ¥1,200.
    pub amount: Int64,
    /// ISO 4217 code.
    pub currency: String,
    /// For display, e.g. `$19.99`.
    pub formatted: String,
}

impl MoneyV2 {
    pub fn new(minor: i64, currency: &str) -> MoneyV2 {
        match purser_domain::Currency::parse(currency) {
            Ok(c) => {
                let m = purser_domain::Money::new(minor, c);
                MoneyV2 {
                    amount: Int64(minor),
                    currency: c.code().to_owned(),
                    formatted: m.formatted(),
                }
            }
            Err(_) => MoneyV2 {
                amount: Int64(minor),
                currency: currency.to_owned(),
                formatted: format!("{minor} {currency}"),
            },
        }
    }
}

impl From<purser_domain::Money> for MoneyV2 {
    fn from(m: purser_domain::Money) -> MoneyV2 {
        MoneyV2 {
            amount: Int64(m.minor),
            currency: m.currency.code().to_owned(),
            formatted: m.formatted(),
        }
    }
}

/// Relay page info.
#[derive(SimpleObject, Debug, Clone, Default, PartialEq, Eq)]
pub struct PageInfo {
    pub has_next_page: bool,
    pub has_previous_page: bool,
    pub start_cursor: Option<String>,
    pub end_cursor: Option<String>,
}

/// Opaque global ids: `base64url("<Type>:<key>")`.
pub fn global_id(type_name: &str, key: &str) -> async_graphql::ID {
    async_graphql::ID(URL_SAFE_NO_PAD.encode(format!("{type_name}:{key}")))
}

/// Decodes a global id of the expected type into its key.
pub fn parse_global_id(type_name: &str, id: &str) -> Result<String, async_graphql::Error> {
    let bad = || bad_input(format!("not a valid {type_name} id"));
    let raw = URL_SAFE_NO_PAD.decode(id.trim()).map_err(|_| bad())?;
    let text = String::from_utf8(raw).map_err(|_| bad())?;
    let (t, key) = text.split_once(':').ok_or_else(bad)?;
    if t != type_name || key.is_empty() {
        return Err(bad());
    }
    Ok(key.to_owned())
}

/// Decodes the id of a UUID-keyed type: its global id, or (for callers holding the id a
/// mutation or an event returned) the bare UUID. Anything else is a `BAD_USER_INPUT` error.
pub fn parse_uuid_id(type_name: &str, id: &str) -> Result<uuid::Uuid, async_graphql::Error> {
    if let Ok(u) = uuid::Uuid::parse_str(id.trim()) {
        return Ok(u);
    }
    let key = parse_global_id(type_name, id)?;
    uuid::Uuid::parse_str(&key).map_err(|_| bad_input(format!("not a valid {type_name} id")))
}

/// The global id of a UUID-keyed object.
pub fn uuid_global_id(type_name: &str, id: uuid::Uuid) -> async_graphql::ID {
    global_id(type_name, &id.to_string())
}

/// Opaque cursors: base64url of a JSON array of the sort key.
pub fn encode_cursor(key: &serde_json::Value) -> String {
    URL_SAFE_NO_PAD.encode(key.to_string())
}

pub fn decode_cursor(cursor: &str) -> Result<serde_json::Value, async_graphql::Error> {
    let bad = || bad_input("the cursor is not one this API returned");
    let raw = URL_SAFE_NO_PAD.decode(cursor.trim()).map_err(|_| bad())?;
    serde_json::from_slice(&raw).map_err(|_| bad())
}

/// The page size asked for, capped. Relay's `first` must be between 1 and `max`.
pub fn page_size(first: Option<i32>, default: i64, max: i64) -> async_graphql::Result<i64> {
    match first {
        None => Ok(default),
        Some(n) if n >= 1 && i64::from(n) <= max => Ok(i64::from(n)),
        Some(_) => Err(bad_argument(
            "first",
            format!("`first` must be between 1 and {max}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn global_ids_round_trip_and_reject_other_types() {
        let id = global_id("Product", "LAP-13");
        assert_eq!(parse_global_id("Product", &id).unwrap(), "LAP-13");
        assert!(parse_global_id("Order", &id).is_err());
        assert!(parse_global_id("Product", "%%%").is_err());
    }

    #[test]
    fn uuid_ids_accept_global_and_bare_forms_only() {
        let u = uuid::Uuid::now_v7();
        assert_eq!(
            parse_uuid_id("Order", &uuid_global_id("Order", u)).unwrap(),
            u
        );
        assert_eq!(parse_uuid_id("Order", &u.to_string()).unwrap(), u);
        assert!(parse_uuid_id("Order", &uuid_global_id("Cart", u)).is_err());
        assert!(parse_uuid_id("Order", &global_id("Order", "not-a-uuid")).is_err());
        assert!(parse_uuid_id("Order", "").is_err());
    }

    #[test]
    fn money_is_formatted() {
        assert_eq!(MoneyV2::new(1999, "USD").formatted, "$19.99");
    }
}
