//! GraphQL mutations.
//!
//! Every mutation returns a payload with `userErrors` for rejections of what was asked (bad
//! input, domain rules, lost races) and the global `position` of what it appended. The
//! affected entity in the payload is read from the read model after waiting for that position,
//! so a client sees its own write. Faults (the store is down) are GraphQL errors with a code,
//! never a partial write.

use std::sync::Arc;

use async_graphql::{Context, InputObject, MergedObject};
use purser_domain::customer::Role;
use purser_domain::{Currency, Money, Quantity, Sku, ValueError};
use purser_event_store::{Position, StoreError};
use purser_query_api::auth::Viewer;
use purser_query_api::types::{Int64, UserError, api_error, parse_global_id};

use crate::bus::CommandBus;
use crate::carts::Actor;
use crate::context::CommandContext;
use crate::failure::Failure;
use crate::gateway::PaymentGateway;

pub mod accounts;
pub mod carts;
pub mod catalog;
pub mod licenses;
pub mod orders;

/// Every mutation of the schema.
#[derive(MergedObject, Default)]
pub struct MutationRoot(
    catalog::CatalogMutation,
    carts::CartMutation,
    orders::OrderMutation,
    accounts::AccountMutation,
    licenses::LicenseMutation,
);

/// Why a mutation did not go through: the caller's problem (user errors in the payload) or
/// ours (a GraphQL error with a code).
pub enum Rejection {
    User(Vec<UserError>),
    Fault(async_graphql::Error),
}

impl Rejection {
    pub fn user(field: Option<&str>, code: &str, message: impl Into<String>) -> Rejection {
        Rejection::User(vec![UserError::new(field, code, message)])
    }
}

impl From<ValueError> for Rejection {
    fn from(e: ValueError) -> Rejection {
        Rejection::user(Some(e.field), "INVALID_INPUT", e.to_string())
    }
}

impl From<Failure> for Rejection {
    fn from(f: Failure) -> Rejection {
        match f {
            Failure::Rejected {
                field,
                code,
                message,
            } => Rejection::user(field, &code, message),
            Failure::Store(e) => Rejection::Fault(store_fault(e)),
        }
    }
}

impl<E: purser_domain::DomainError> From<crate::bus::CommandError<E>> for Rejection {
    fn from(e: crate::bus::CommandError<E>) -> Rejection {
        Rejection::from(Failure::from(e))
    }
}

impl From<StoreError> for Rejection {
    fn from(e: StoreError) -> Rejection {
        Rejection::Fault(store_fault(e))
    }
}

/// Logs a store failure once and says nothing internal to the client.
pub fn store_fault(e: StoreError) -> async_graphql::Error {
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

/// Splits a mutation's outcome into (position, user errors), or fails for a fault.
pub fn settle(
    outcome: Result<Option<Position>, Rejection>,
) -> async_graphql::Result<(Option<Position>, Vec<UserError>)> {
    match outcome {
        Ok(position) => Ok((position, vec![])),
        Err(Rejection::User(errors)) => Ok((None, errors)),
        Err(Rejection::Fault(e)) => Err(e),
    }
}

/// Money as input: minor units and an ISO 4217 code.
#[derive(InputObject, Debug, Clone)]
pub struct MoneyInput {
    /// Minor units (cents): 1999 with USD is $19.99.
    pub amount: Int64,
    pub currency: String,
}

impl MoneyInput {
    pub fn parse(&self, field: &'static str) -> Result<Money, ValueError> {
        let currency =
            Currency::parse(&self.currency).map_err(|e| ValueError::new(field, e.to_string()))?;
        Money::non_negative(self.amount.0, currency)
            .map_err(|e| ValueError::new(field, e.to_string()))
    }
}

pub(crate) fn bus<'a>(ctx: &Context<'a>) -> &'a CommandBus {
    ctx.data_unchecked::<CommandBus>()
}

pub(crate) fn gateway<'a>(ctx: &Context<'a>) -> &'a Arc<dyn PaymentGateway> {
    ctx.data_unchecked::<Arc<dyn PaymentGateway>>()
}

/// The command context of the request (set by the HTTP layer), with the viewer as actor.
pub fn command_context(ctx: &Context<'_>) -> CommandContext {
    let mut c = ctx
        .data_opt::<CommandContext>()
        .cloned()
        .unwrap_or_else(|| CommandContext::new("anonymous"));
    c.actor = Viewer::from_ctx(ctx).actor();
    c
}

pub(crate) fn actor(ctx: &Context<'_>) -> Actor {
    let v = Viewer::from_ctx(ctx);
    Actor {
        customer_id: v.customer_id,
        admin: v.is(Role::Admin),
    }
}

/// Admin-only mutations refuse everyone else with a GraphQL error (UNAUTHENTICATED or
/// FORBIDDEN), not a user error: it is not something the input can fix.
pub(crate) fn require_admin(ctx: &Context<'_>) -> async_graphql::Result<()> {
    Viewer::from_ctx(ctx).require(Role::Admin)
}

pub(crate) fn parse_sku(raw: &str) -> Result<Sku, Rejection> {
    Ok(Sku::parse(raw)?)
}

pub(crate) fn parse_quantity(raw: Int64) -> Result<Quantity, Rejection> {
    Ok(Quantity::new(raw.0)?)
}

/// Parses an id argument: the opaque global id this API returns, or (for convenience) the
/// bare UUID.
pub(crate) fn parse_id<T: std::str::FromStr>(
    type_name: &str,
    field: &'static str,
    raw: &str,
) -> Result<T, Rejection> {
    let key = parse_global_id(type_name, raw).unwrap_or_else(|_| raw.trim().to_owned());
    key.parse::<T>().map_err(|_| {
        Rejection::user(
            Some(field),
            "INVALID_ID",
            format!("{field} is not a valid {type_name} id"),
        )
    })
}

/// Records a trace event (seed 003) for this request, when tracing is configured.
pub(crate) fn trace<E: std::fmt::Display>(
    ctx: &Context<'_>,
    kind: purser_query_api::trace::TraceKind,
    outcome: Result<(), E>,
    subject: Option<String>,
) {
    if let Some(log) = ctx.data_opt::<purser_query_api::trace::TraceLog>() {
        let c = command_context(ctx);
        log.outcome(
            kind,
            outcome,
            Some(c.correlation_id),
            Some(c.actor),
            subject,
        );
    }
}

/// The message of a rejection, for a trace event.
pub(crate) fn rejection_message(r: &Rejection) -> String {
    match r {
        Rejection::User(errors) => errors
            .iter()
            .map(|e| format!("{}: {}", e.code, e.message))
            .collect::<Vec<_>>()
            .join("; "),
        Rejection::Fault(e) => e.message.clone(),
    }
}
