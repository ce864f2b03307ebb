//! GraphQL mutations.
//!
//! Every mutation returns a payload with `userErrors` for rejections of what was asked (bad
//! input, domain rules, lost races) and the global `position` of what it appended. The
//! affected entity in the payload is read from the read model after waiting for that position,
//! so a client sees its own write. Faults (the store is down) are GraphQL errors with a code,
//! never a partial write.

use std::sync::Arc;

use async_graphql::{Context, InputObject, MergedObject};
use purser_api_core::auth::Viewer;
pub(crate) use purser_api_core::errors::{Rejection, settle};
use purser_api_core::wire::{Int64, parse_global_id};
use purser_domain::customer::Role;
use purser_domain::{Currency, Money, Quantity, Sku, ValueError};

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
pub mod recovery;
pub mod staff;
pub mod webhooks;

/// Every mutation of the schema.
#[derive(MergedObject, Default)]
pub struct MutationRoot(
    catalog::CatalogMutation,
    carts::CartMutation,
    orders::OrderMutation,
    accounts::AccountMutation,
    recovery::RecoveryMutation,
    staff::StaffMutation,
    licenses::LicenseMutation,
    webhooks::WebhookMutation,
);

impl From<Failure> for Rejection {
    fn from(f: Failure) -> Rejection {
        match f {
            Failure::Rejected {
                field,
                code,
                message,
            } => Rejection::user(field, &code, message),
            Failure::Store(e) => Rejection::from(e),
        }
    }
}

impl<E: purser_domain::DomainError> From<crate::bus::CommandError<E>> for Rejection {
    fn from(e: crate::bus::CommandError<E>) -> Rejection {
        Rejection::from(Failure::from(e))
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

/// Records an operational trace event for this request, when tracing is configured.
pub(crate) fn trace<E: std::fmt::Display>(
    ctx: &Context<'_>,
    kind: crate::trace::TraceKind,
    outcome: Result<(), E>,
    subject: Option<String>,
) {
    if let Some(log) = ctx.data_opt::<crate::trace::TraceLog>() {
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
