//! The one mapping from what went wrong to what a client sees, for queries and mutations
//! alike.
//!
//! | what happened | mutation | query |
//! |---|---|---|
//! | bad input, a domain rule, a lost race | `userErrors` in the payload ([`Rejection::User`]) | `BAD_USER_INPUT` |
//! | not signed in / not allowed | `UNAUTHENTICATED` / `FORBIDDEN` | the same |
//! | a write lost to a concurrent one after retries | `userErrors` with `CONFLICT` | — |
//! | the event store or the read models cannot be reached | `UNAVAILABLE` | `UNAVAILABLE` |
//! | anything else on our side | `INTERNAL` | `INTERNAL` |
//!
//! Internal details are logged once, here, and never sent to the client.

use async_graphql::{ErrorExtensions, SimpleObject};
use purser_domain::{DomainError, ValueError};
use purser_event_store::StoreError;

/// A GraphQL error carrying a machine-readable `extensions.code`.
pub fn api_error(code: &'static str, message: impl Into<String>) -> async_graphql::Error {
    async_graphql::Error::new(message.into()).extend_with(|_, e| e.set("code", code))
}

/// A query argument the caller got wrong (`BAD_USER_INPUT`).
pub fn bad_input(message: impl Into<String>) -> async_graphql::Error {
    api_error("BAD_USER_INPUT", message)
}

/// A query argument the caller got wrong, naming it in `extensions.argument`.
pub fn bad_argument(argument: &'static str, message: impl Into<String>) -> async_graphql::Error {
    bad_input(message).extend_with(move |_, e| e.set("argument", argument))
}

/// No bearer token, or none that is valid.
pub fn unauthenticated() -> async_graphql::Error {
    api_error(
        "UNAUTHENTICATED",
        "sign in first: send `Authorization: Bearer <token>`",
    )
}

/// Signed in, but without the role or ownership this needs.
pub fn forbidden(message: impl Into<String>) -> async_graphql::Error {
    api_error("FORBIDDEN", message)
}

pub fn not_found(message: impl Into<String>) -> async_graphql::Error {
    api_error("NOT_FOUND", message)
}

/// Something on our side that the client cannot fix; `detail` is logged, not sent.
pub fn internal(detail: &dyn std::fmt::Display, message: &str) -> async_graphql::Error {
    tracing::error!(error = %detail, "{message}");
    api_error("INTERNAL", "something went wrong on our side")
}

/// A read-model query failed: logged once, `UNAVAILABLE` to the client.
pub fn db_error(e: sqlx::Error) -> async_graphql::Error {
    tracing::error!(error = %e, "read model query failed");
    unavailable()
}

/// The read models (or the database behind them) cannot be reached.
pub fn unavailable() -> async_graphql::Error {
    api_error(
        "UNAVAILABLE",
        "the read models cannot be reached right now; try again",
    )
}

/// An event-store failure: logged once; an outage is `UNAVAILABLE`, anything else
/// `INTERNAL`. Either way nothing was written by the failing call.
pub fn store_error(e: StoreError) -> async_graphql::Error {
    match e {
        StoreError::Unavailable(_) => {
            tracing::warn!(error = %e, "event store unavailable");
            api_error(
                "UNAVAILABLE",
                "a service we depend on cannot be reached right now; nothing was written, try again",
            )
        }
        other => {
            tracing::error!(error = %other, "event store failure");
            api_error(
                "INTERNAL",
                "something went wrong on our side; nothing was written",
            )
        }
    }
}

/// A rejection of a mutation's input or of what it asked for. Mutations return these in
/// `userErrors` instead of failing.
#[derive(SimpleObject, Debug, Clone, PartialEq, Eq)]
pub struct UserError {
    /// The path to the input field at fault, e.g. `["input", "quantity"]`, when one is.
    pub field: Option<Vec<String>>,
    pub message: String,
    /// A stable machine-readable code, e.g. `INSUFFICIENT_STOCK`.
    pub code: String,
}

impl UserError {
    pub fn new(field: Option<&str>, code: &str, message: impl Into<String>) -> UserError {
        UserError {
            field: field.map(|f| vec!["input".to_owned(), camel_case(f)]),
            message: message.into(),
            code: code.to_owned(),
        }
    }
}

/// `qty_on_hand` → `qtyOnHand`, so error paths match the schema's field names.
fn camel_case(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut upper = false;
    for c in s.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// Why a mutation did not go through: the caller's problem (user errors in the payload) or
/// ours (a GraphQL error with a code).
#[derive(Debug)]
pub enum Rejection {
    User(Vec<UserError>),
    Fault(async_graphql::Error),
}

impl Rejection {
    pub fn user(field: Option<&str>, code: &str, message: impl Into<String>) -> Rejection {
        Rejection::User(vec![UserError::new(field, code, message)])
    }

    /// A rule of the domain refused the command.
    pub fn domain<E: DomainError>(e: &E) -> Rejection {
        Rejection::user(e.field(), e.code(), e.to_string())
    }

    /// A write that kept losing to concurrent ones.
    pub fn conflict(message: impl Into<String>) -> Rejection {
        Rejection::user(None, "CONFLICT", message)
    }

    /// The message of the rejection, for a trace record.
    pub fn message(&self) -> String {
        match self {
            Rejection::User(errors) => errors
                .iter()
                .map(|e| format!("{}: {}", e.code, e.message))
                .collect::<Vec<_>>()
                .join("; "),
            Rejection::Fault(e) => e.message.clone(),
        }
    }
}

impl From<ValueError> for Rejection {
    fn from(e: ValueError) -> Rejection {
        Rejection::user(Some(e.field), "INVALID_INPUT", e.to_string())
    }
}

impl From<StoreError> for Rejection {
    fn from(e: StoreError) -> Rejection {
        Rejection::Fault(store_error(e))
    }
}

impl From<sqlx::Error> for Rejection {
    fn from(e: sqlx::Error) -> Rejection {
        Rejection::Fault(db_error(e))
    }
}

impl From<async_graphql::Error> for Rejection {
    fn from(e: async_graphql::Error) -> Rejection {
        Rejection::Fault(e)
    }
}

/// Splits a mutation's outcome into (what it produced, user errors), or fails for a fault.
pub fn settle<T>(
    outcome: Result<Option<T>, Rejection>,
) -> async_graphql::Result<(Option<T>, Vec<UserError>)> {
    match outcome {
        Ok(value) => Ok((value, vec![])),
        Err(Rejection::User(errors)) => Ok((None, errors)),
        Err(Rejection::Fault(e)) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(e: &async_graphql::Error) -> String {
        let ext = e.extensions.as_ref().expect("extensions");
        ext.get("code").expect("code").to_string()
    }

    #[test]
    fn user_error_paths_use_schema_names() {
        let e = UserError::new(Some("unit_price"), "X", "m");
        assert_eq!(
            e.field,
            Some(vec!["input".to_string(), "unitPrice".to_string()])
        );
    }

    #[test]
    fn outages_and_faults_have_distinct_codes_and_say_nothing_internal() {
        let outage = store_error(StoreError::Unavailable(
            "connection refused to 10.0.0.1".into(),
        ));
        assert_eq!(code(&outage), "\"UNAVAILABLE\"");
        assert!(!outage.message.contains("10.0.0.1"));
        let fault = store_error(StoreError::Backend("relation es.events is gone".into()));
        assert_eq!(code(&fault), "\"INTERNAL\"");
        assert!(!fault.message.contains("es.events"));
        assert_eq!(
            code(&db_error(sqlx::Error::PoolTimedOut)),
            "\"UNAVAILABLE\""
        );
    }

    #[test]
    fn rejections_split_into_user_errors_and_faults() {
        let (value, errors) = settle::<u8>(Err(Rejection::conflict("lost a race"))).unwrap();
        assert_eq!(value, None);
        assert_eq!(errors[0].code, "CONFLICT");
        assert!(settle::<u8>(Err(StoreError::Unavailable("x".into()).into())).is_err());
        assert_eq!(settle(Ok(Some(7))).unwrap(), (Some(7), vec![]));
    }
}
