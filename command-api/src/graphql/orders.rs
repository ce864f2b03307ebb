//! Order lifecycle mutations: processing, shipping, delivery and refunds are admin work;
//! cancelling is open to admins and to the customer who placed the order (while unpaid).

use async_graphql::{Context, ID, InputObject, Object};
use chrono::{DateTime, Utc};
use purser_api_core::auth::Viewer;
use purser_api_core::errors::UserError;
use purser_api_core::wire::global_id;
use purser_domain::OrderId;
use purser_domain::customer::Role;
use purser_domain::order::{CancelledBy, OrderCommand};
use purser_event_store::Position;

use super::{
    MoneyInput, Rejection, bus, command_context, gateway, parse_id, require_admin, settle,
};
use crate::orders;

#[derive(InputObject, Debug, Clone)]
pub struct OrderShipInput {
    pub order_id: ID,
    pub tracking_number: String,
    pub carrier: String,
    pub estimated_delivery: Option<DateTime<Utc>>,
}

#[derive(InputObject, Debug, Clone)]
pub struct OrderCancelInput {
    pub order_id: ID,
    #[graphql(default)]
    pub reason: String,
}

#[derive(InputObject, Debug, Clone)]
pub struct OrderRefundInput {
    pub order_id: ID,
    /// How much to refund; everything still refundable when omitted.
    pub amount: Option<MoneyInput>,
    #[graphql(default)]
    pub reason: String,
    /// Refunds spend money: the same key refunds once, however often it is sent.
    pub idempotency_key: String,
}

/// The result of an order mutation.
pub struct OrderPayload {
    order_id: Option<OrderId>,
    position: Option<Position>,
    user_errors: Vec<UserError>,
}

#[Object]
impl OrderPayload {
    async fn order_id(&self) -> Option<ID> {
        self.order_id.map(|id| global_id("Order", &id.to_string()))
    }
    /// The global position of what this mutation appended (pass it as `minPosition`).
    async fn position(&self) -> Option<String> {
        self.position.map(|p| p.to_string())
    }
    async fn user_errors(&self) -> &[UserError] {
        &self.user_errors
    }
}

fn payload(
    order_id: Option<OrderId>,
    outcome: Result<Option<Position>, Rejection>,
) -> async_graphql::Result<OrderPayload> {
    let (position, user_errors) = settle(outcome)?;
    let order_id = if user_errors.is_empty() {
        order_id
    } else {
        None
    };
    Ok(OrderPayload {
        order_id,
        position,
        user_errors,
    })
}

#[derive(Default)]
pub struct OrderMutation;

impl OrderMutation {
    /// Runs one admin command on an order.
    async fn admin_command(
        &self,
        ctx: &Context<'_>,
        order_id: &ID,
        make: impl FnOnce() -> Result<OrderCommand, Rejection>,
    ) -> async_graphql::Result<OrderPayload> {
        require_admin(ctx)?;
        let cmd_ctx = command_context(ctx);
        let mut parsed = None;
        let outcome = async {
            let id: OrderId = parse_id("Order", "order_id", order_id)?;
            parsed = Some(id);
            let b = bus(ctx);
            orders::load_order(b, id, |_| true).await?;
            Ok(orders::run(b, &cmd_ctx, id, make()?).await?.position)
        }
        .await;
        payload(parsed, outcome)
    }
}

#[Object]
impl OrderMutation {
    /// CONFIRMED → PROCESSING (admin).
    async fn order_start_processing(
        &self,
        ctx: &Context<'_>,
        order_id: ID,
    ) -> async_graphql::Result<OrderPayload> {
        self.admin_command(ctx, &order_id, || {
            Ok(OrderCommand::StartProcessing { now: Utc::now() })
        })
        .await
    }

    /// PROCESSING → SHIPPED with tracking (admin).
    async fn order_ship(
        &self,
        ctx: &Context<'_>,
        input: OrderShipInput,
    ) -> async_graphql::Result<OrderPayload> {
        let id = input.order_id.clone();
        self.admin_command(ctx, &id, move || {
            Ok(OrderCommand::Ship {
                tracking_number: purser_domain::bounded_text(
                    "tracking_number",
                    &input.tracking_number,
                    64,
                    true,
                )?,
                carrier: purser_domain::bounded_text("carrier", &input.carrier, 64, true)?,
                estimated_delivery: input.estimated_delivery,
                now: Utc::now(),
            })
        })
        .await
    }

    /// SHIPPED → DELIVERED (admin).
    async fn order_deliver(
        &self,
        ctx: &Context<'_>,
        order_id: ID,
    ) -> async_graphql::Result<OrderPayload> {
        self.admin_command(ctx, &order_id, || {
            Ok(OrderCommand::Deliver { now: Utc::now() })
        })
        .await
    }

    /// Cancels an order. Admins may cancel until it ships (stock is put back and a captured
    /// payment refunded); a customer may cancel their own order before it is paid.
    async fn order_cancel(
        &self,
        ctx: &Context<'_>,
        input: OrderCancelInput,
    ) -> async_graphql::Result<OrderPayload> {
        let viewer = Viewer::from_ctx(ctx);
        if !viewer.is_signed_in() {
            viewer.require(Role::Customer)?;
        }
        let cmd_ctx = command_context(ctx);
        let mut parsed = None;
        let outcome = async {
            let id: OrderId = parse_id("Order", "order_id", &input.order_id)?;
            parsed = Some(id);
            let b = bus(ctx);
            let admin = viewer.is(Role::Admin);
            orders::load_order(b, id, |o| {
                admin || viewer.customer_id == Some(o.customer_id)
            })
            .await?;
            let reason = purser_domain::bounded_text("reason", &input.reason, 500, false)?;
            let by = if admin {
                CancelledBy::Admin
            } else {
                CancelledBy::Customer
            };
            let reason = if reason.is_empty() {
                "cancelled on request".to_owned()
            } else {
                reason
            };
            Ok(orders::cancel(b, &cmd_ctx, id, reason, by, Utc::now())
                .await?
                .position)
        }
        .await;
        payload(parsed, outcome)
    }

    /// Refunds all or part of a paid order through the payment gateway (admin). Idempotent on
    /// `idempotencyKey`.
    async fn order_refund(
        &self,
        ctx: &Context<'_>,
        input: OrderRefundInput,
    ) -> async_graphql::Result<OrderPayload> {
        require_admin(ctx)?;
        let cmd_ctx = command_context(ctx);
        let mut parsed = None;
        let outcome = async {
            let id: OrderId = parse_id("Order", "order_id", &input.order_id)?;
            parsed = Some(id);
            let key = input.idempotency_key.trim();
            if key.is_empty() || key.len() > 255 {
                return Err(Rejection::user(
                    Some("idempotency_key"),
                    "INVALID_INPUT",
                    "idempotency_key must be 1 to 255 characters",
                ));
            }
            let amount = input
                .amount
                .as_ref()
                .map(|m| m.parse("amount"))
                .transpose()?;
            let reason = purser_domain::bounded_text("reason", &input.reason, 500, false)?;
            let reason = if reason.is_empty() {
                "refunded by an admin".to_owned()
            } else {
                reason
            };
            Ok(orders::refund(
                bus(ctx),
                gateway(ctx).as_ref(),
                &cmd_ctx,
                id,
                amount,
                reason,
                key,
            )
            .await?)
        }
        .await;
        payload(parsed, outcome)
    }
}
