//! Cart and checkout mutations. Open to guests: a cart without a customer belongs to whoever
//! holds its id; a signed-in customer's cart is theirs alone.

use async_graphql::{Context, ID, InputObject, Object};
use chrono::Utc;
use purser_api_core::auth::Viewer;
use purser_api_core::errors::UserError;
use purser_api_core::wire::{Int64, global_id};
use purser_domain::cart::CartCommand;
use purser_domain::order::ShippingAddress;
use purser_domain::payment::PaymentMethod;
use purser_domain::{CartId, Currency, Email, OrderId, ValueError};
use purser_event_store::Position;

use crate::trace::TraceKind;

use super::{
    Rejection, actor, bus, command_context, parse_id, parse_quantity, parse_sku, settle, trace,
};
use crate::carts::{self, CheckoutRequest};

#[derive(InputObject, Debug, Clone)]
pub struct CartCreateInput {
    /// ISO 4217 currency of the cart; every line must be priced in it.
    #[graphql(default_with = "\"USD\".to_string()")]
    pub currency: String,
}

#[derive(InputObject, Debug, Clone)]
pub struct CartLineInput {
    pub sku: String,
    pub quantity: Int64,
}

#[derive(InputObject, Debug, Clone)]
pub struct ShippingAddressInput {
    pub name: String,
    pub line1: String,
    pub line2: Option<String>,
    pub city: String,
    pub postal_code: String,
    /// Two-letter ISO country code.
    pub country: String,
}

impl ShippingAddressInput {
    fn parse(&self) -> Result<ShippingAddress, ValueError> {
        ShippingAddress::parse(
            &self.name,
            &self.line1,
            self.line2.as_deref(),
            &self.city,
            &self.postal_code,
            &self.country,
        )
    }
}

#[derive(InputObject, Debug, Clone)]
pub struct CartCheckoutInput {
    pub cart_id: ID,
    /// Any unique string per checkout attempt (a UUID is fine). Sending the same checkout
    /// again with the same key returns the first result and never places a second order.
    pub idempotency_key: String,
    /// Required for guests; signed-in customers default to their account's address.
    pub email: Option<String>,
    /// A payment method token (`pm_card_visa`, …) or a test card number; card numbers are
    /// never stored, only their last four digits.
    pub payment_method: String,
    /// Required when the cart holds physical products.
    pub shipping_address: Option<ShippingAddressInput>,
}

/// The result of a cart mutation.
pub struct CartPayload {
    cart_id: Option<CartId>,
    position: Option<Position>,
    user_errors: Vec<UserError>,
}

#[Object]
impl CartPayload {
    /// The cart's global id.
    async fn cart_id(&self) -> Option<ID> {
        self.cart_id.map(|id| global_id("Cart", &id.to_string()))
    }
    /// The global position of what this mutation appended (pass it as `minPosition`).
    async fn position(&self) -> Option<String> {
        self.position.map(|p| p.to_string())
    }
    async fn user_errors(&self) -> &[UserError] {
        &self.user_errors
    }
}

fn cart_payload(
    cart_id: Option<CartId>,
    outcome: Result<Option<Position>, Rejection>,
) -> async_graphql::Result<CartPayload> {
    let (position, user_errors) = settle(outcome)?;
    let cart_id = if user_errors.is_empty() {
        cart_id
    } else {
        None
    };
    Ok(CartPayload {
        cart_id,
        position,
        user_errors,
    })
}

/// The result of a checkout.
pub struct CheckoutPayload {
    order_id: Option<OrderId>,
    status_token: Option<String>,
    replayed: bool,
    position: Option<Position>,
    user_errors: Vec<UserError>,
}

#[Object]
impl CheckoutPayload {
    /// The order's global id. The order is PENDING now; payment and fulfilment follow
    /// asynchronously (follow it with `order(id:)` or the `orderStatusChanged` subscription).
    async fn order_id(&self) -> Option<ID> {
        self.order_id.map(|id| global_id("Order", &id.to_string()))
    }
    /// Lets whoever checked out (a guest included) follow the order with `checkoutStatus`.
    async fn status_token(&self) -> Option<&str> {
        self.status_token.as_deref()
    }
    /// True when this checkout had already gone through under the same idempotency key and
    /// this is its original result.
    async fn replayed(&self) -> bool {
        self.replayed
    }
    async fn position(&self) -> Option<String> {
        self.position.map(|p| p.to_string())
    }
    async fn user_errors(&self) -> &[UserError] {
        &self.user_errors
    }
}

#[derive(Default)]
pub struct CartMutation;

#[Object]
impl CartMutation {
    /// Opens a cart. A signed-in customer's cart is theirs; a guest's cart is reachable by
    /// its id only.
    async fn cart_create(
        &self,
        ctx: &Context<'_>,
        input: Option<CartCreateInput>,
    ) -> async_graphql::Result<CartPayload> {
        let cmd_ctx = command_context(ctx);
        let viewer = Viewer::from_ctx(ctx);
        let cart_id = CartId::new();
        let outcome = async {
            let currency = input.map(|i| i.currency).unwrap_or_else(|| "USD".into());
            let currency = Currency::parse(&currency)
                .map_err(|e| ValueError::new("currency", e.to_string()))?;
            Ok(carts::create_cart(
                bus(ctx),
                &cmd_ctx,
                cart_id,
                viewer.customer_id,
                currency,
                Utc::now(),
            )
            .await?
            .position)
        }
        .await;
        cart_payload(Some(cart_id), outcome)
    }

    /// Adds lines (or raises their quantities), all or none: stock is checked for each.
    async fn cart_lines_add(
        &self,
        ctx: &Context<'_>,
        cart_id: ID,
        lines: Vec<CartLineInput>,
    ) -> async_graphql::Result<CartPayload> {
        self.change_lines(ctx, cart_id, lines, false).await
    }

    /// Sets line quantities, all or none.
    async fn cart_lines_update(
        &self,
        ctx: &Context<'_>,
        cart_id: ID,
        lines: Vec<CartLineInput>,
    ) -> async_graphql::Result<CartPayload> {
        self.change_lines(ctx, cart_id, lines, true).await
    }

    /// Removes lines by SKU, all or none.
    async fn cart_lines_remove(
        &self,
        ctx: &Context<'_>,
        cart_id: ID,
        skus: Vec<String>,
    ) -> async_graphql::Result<CartPayload> {
        let cmd_ctx = command_context(ctx);
        let mut parsed_id = None;
        let outcome = async {
            let id: CartId = parse_id("Cart", "cart_id", &cart_id)?;
            parsed_id = Some(id);
            if skus.is_empty() || skus.len() > 100 {
                return Err(Rejection::user(
                    Some("skus"),
                    "INVALID_INPUT",
                    "give 1 to 100 SKUs",
                ));
            }
            let b = bus(ctx);
            carts::load_cart(b, id, actor(ctx)).await?;
            let now = Utc::now();
            let commands = skus
                .iter()
                .map(|s| {
                    Ok(CartCommand::RemoveItem {
                        sku: parse_sku(s)?,
                        now,
                    })
                })
                .collect::<Result<Vec<_>, Rejection>>()?;
            Ok(
                b.execute_all::<purser_domain::cart::Cart>(&id, &cmd_ctx, commands)
                    .await?
                    .position,
            )
        }
        .await;
        cart_payload(parsed_id, outcome)
    }

    /// Checks the cart out: places an order (PENDING) and returns at once; stock reservation,
    /// payment and fulfilment follow in the background. Idempotent on `idempotencyKey`.
    async fn cart_checkout(
        &self,
        ctx: &Context<'_>,
        input: CartCheckoutInput,
    ) -> async_graphql::Result<CheckoutPayload> {
        let cmd_ctx = command_context(ctx);
        let viewer = Viewer::from_ctx(ctx);
        let outcome = async {
            let cart_id: CartId = parse_id("Cart", "cart_id", &input.cart_id)?;
            let email = input.email.as_deref().map(Email::parse).transpose()?;
            let payment_method = PaymentMethod::parse(&input.payment_method)?;
            let shipping_address = input
                .shipping_address
                .as_ref()
                .map(|a| a.parse())
                .transpose()?;
            let request = CheckoutRequest {
                cart_id,
                idempotency_key: input.idempotency_key.clone(),
                email,
                payment_method,
                shipping_address,
                actor: actor(ctx),
                actor_email: viewer.email.as_deref().and_then(|e| Email::parse(e).ok()),
            };
            Ok::<_, Rejection>(carts::check_out(bus(ctx), &cmd_ctx, request).await?)
        }
        .await;
        match &outcome {
            Ok(placed) => {
                if !placed.replayed {
                    metrics::counter!("purser_orders_placed_total").increment(1);
                }
                trace::<String>(
                    ctx,
                    TraceKind::OrderCreation,
                    Ok(()),
                    Some(placed.order_id.to_string()),
                );
            }
            Err(r) => trace(ctx, TraceKind::OrderCreation, Err(r.message()), None),
        }
        match outcome {
            Ok(placed) => Ok(CheckoutPayload {
                order_id: Some(placed.order_id),
                status_token: Some(
                    ctx.data_unchecked::<purser_api_core::auth::Tokens>()
                        .issue_order_status(placed.order_id),
                ),
                replayed: placed.replayed,
                position: placed.position,
                user_errors: vec![],
            }),
            Err(Rejection::User(user_errors)) => Ok(CheckoutPayload {
                order_id: None,
                status_token: None,
                replayed: false,
                position: None,
                user_errors,
            }),
            Err(Rejection::Fault(e)) => Err(e),
        }
    }
}

impl CartMutation {
    async fn change_lines(
        &self,
        ctx: &Context<'_>,
        cart_id: ID,
        lines: Vec<CartLineInput>,
        set: bool,
    ) -> async_graphql::Result<CartPayload> {
        let cmd_ctx = command_context(ctx);
        let mut parsed_id = None;
        let outcome = async {
            let id: CartId = parse_id("Cart", "cart_id", &cart_id)?;
            parsed_id = Some(id);
            if lines.is_empty() || lines.len() > 100 {
                return Err(Rejection::user(
                    Some("lines"),
                    "INVALID_INPUT",
                    "give 1 to 100 lines",
                ));
            }
            let b = bus(ctx);
            let actor = actor(ctx);
            carts::load_cart(b, id, actor).await?;
            // Look every product up first, then decide all lines on the cart together so
            // that either every line goes in or none does.
            let mut commands = Vec::with_capacity(lines.len());
            for line in &lines {
                let sku = parse_sku(&line.sku)?;
                let qty = parse_quantity(line.quantity)?;
                commands.push(carts::line_command(b, sku, qty, set).await?);
            }
            Ok(
                b.execute_all::<purser_domain::cart::Cart>(&id, &cmd_ctx, commands)
                    .await?
                    .position,
            )
        }
        .await;
        cart_payload(parsed_id, outcome)
    }
}
