//! Carts and checkout: keeping a cart, and turning it into an order.
//!
//! Prices, names and stock are looked up from the product and inventory aggregates before
//! deciding, and passed into the cart's commands (the domain never reaches out).
//!
//! Placing an order touches two streams, so it is ordered to be safe at every step: the order
//! id is derived from (cart, idempotency key); the order's placement is validated first (a
//! pure `decide` on an empty order), then the cart is checked out *to that order id*, then the
//! order is placed. A retry with the same key finds the cart already checked out to the same
//! order and the order already placed, and returns the original result; a crash between the
//! two steps is finished by the retry. A second checkout of the same cart with another key is
//! refused (the cart is closed).

use chrono::{DateTime, Utc};
use purser_domain::cart::{Cart, CartCommand, CartState, CartStatus};
use purser_domain::inventory::Inventory;
use purser_domain::order::{Order, OrderCommand, OrderLine, OrderState, ShippingAddress};
use purser_domain::payment::PaymentMethod;
use purser_domain::product::{Product, ProductKind, ProductState};
use purser_domain::{Aggregate, CartId, Currency, CustomerId, Email, OrderId, Quantity, Sku};
use purser_event_store::Position;

use crate::bus::{CommandBus, Executed};
use crate::context::CommandContext;
use crate::failure::Failure;

/// Who is acting on a cart: a signed-in customer (or an admin), or a guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Actor {
    pub customer_id: Option<CustomerId>,
    pub admin: bool,
}

/// Loads a cart the actor may use. Someone else's cart reads as not found.
pub async fn load_cart(
    bus: &CommandBus,
    cart_id: CartId,
    actor: Actor,
) -> Result<CartState, Failure> {
    let (state, version, _) = bus.load::<Cart>(&cart_id).await?;
    let owner_ok = match state.customer_id {
        None => true,
        Some(owner) => actor.admin || actor.customer_id == Some(owner),
    };
    if version.is_none() || !owner_ok {
        return Err(Failure::rejected(
            Some("cart_id"),
            "CART_NOT_FOUND",
            format!("no cart {cart_id}"),
        ));
    }
    Ok(state)
}

pub async fn create_cart(
    bus: &CommandBus,
    ctx: &CommandContext,
    cart_id: CartId,
    customer_id: Option<CustomerId>,
    currency: Currency,
    now: DateTime<Utc>,
) -> Result<Executed<Cart>, Failure> {
    let cmd = CartCommand::Create {
        cart_id,
        customer_id,
        currency,
        now,
    };
    Ok(bus.execute::<Cart>(&cart_id, ctx, cmd).await?)
}

/// What a cart line needs to know about its product right now.
struct ProductFacts {
    name: String,
    digital: bool,
    price: purser_domain::Money,
    available: Option<u64>,
}

async fn product_facts(
    bus: &CommandBus,
    sku: &Sku,
) -> Result<(ProductState, ProductFacts), Failure> {
    let (product, version, _) = bus.load::<Product>(sku).await?;
    let (Some(_), Some(price)) = (version, product.price) else {
        return Err(Failure::rejected(
            Some("sku"),
            "PRODUCT_NOT_FOUND",
            format!("no product with SKU {sku}"),
        ));
    };
    if product.discontinued {
        return Err(Failure::rejected(
            Some("sku"),
            "PRODUCT_DISCONTINUED",
            format!("{sku} is no longer sold"),
        ));
    }
    let digital = matches!(product.kind, ProductKind::Digital { .. });
    let available = if digital {
        None
    } else {
        let (stock, _, _) = bus.load::<Inventory>(sku).await?;
        Some(stock.available())
    };
    let facts = ProductFacts {
        name: product.name.clone(),
        digital,
        price,
        available,
    };
    Ok((product, facts))
}

/// The command that puts `qty` of `sku` into a cart (`set`: as the line's new quantity;
/// otherwise added to it), with the product's current name, price and stock looked up.
pub async fn line_command(
    bus: &CommandBus,
    sku: Sku,
    qty: Quantity,
    set: bool,
) -> Result<CartCommand, Failure> {
    let (_, p) = product_facts(bus, &sku).await?;
    let now = Utc::now();
    Ok(if set {
        CartCommand::ChangeQuantity {
            sku,
            qty,
            available: p.available,
            now,
        }
    } else {
        CartCommand::AddItem {
            sku,
            name: p.name,
            digital: p.digital,
            qty,
            unit_price: p.price,
            available: p.available,
            now,
        }
    })
}

/// A checkout request, validated.
#[derive(Debug, Clone)]
pub struct CheckoutRequest {
    pub cart_id: CartId,
    pub idempotency_key: String,
    /// Required for guests; signed-in customers default to their own address.
    pub email: Option<Email>,
    pub payment_method: PaymentMethod,
    pub shipping_address: Option<ShippingAddress>,
    pub actor: Actor,
    pub actor_email: Option<Email>,
}

/// The order a checkout placed (or had placed before, for a retry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placed {
    pub order_id: OrderId,
    pub position: Option<Position>,
    /// True when this was a retry of a checkout that had already gone through.
    pub replayed: bool,
}

/// The order id a checkout with this key places: the same key always names the same order.
pub fn order_id_for(cart_id: CartId, idempotency_key: &str) -> OrderId {
    OrderId::derived(&["checkout", &cart_id.to_string(), idempotency_key])
}

pub const MAX_IDEMPOTENCY_KEY: usize = 255;

pub async fn check_out(
    bus: &CommandBus,
    ctx: &CommandContext,
    req: CheckoutRequest,
) -> Result<Placed, Failure> {
    let key = req.idempotency_key.trim();
    if key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY || key.chars().any(|c| c.is_control()) {
        return Err(Failure::rejected(
            Some("idempotency_key"),
            "INVALID_INPUT",
            format!("idempotency_key must be 1 to {MAX_IDEMPOTENCY_KEY} printable characters"),
        ));
    }
    let order_id = order_id_for(req.cart_id, key);
    // Each stream's events get ids derived from the key and that stream, so a retry appends
    // nothing to either.
    let cart_ctx = ctx.clone().idempotent(key, &Cart::stream(&req.cart_id));
    let order_ctx = ctx.clone().idempotent(key, &Order::stream(&order_id));

    // A retry of a checkout that went through returns the original order.
    let (existing, version, position) = bus.load::<Order>(&order_id).await?;
    if version.is_some() && existing.status.is_some() {
        return Ok(Placed {
            order_id,
            position,
            replayed: true,
        });
    }

    let cart = load_cart(bus, req.cart_id, req.actor).await?;
    match cart.status {
        CartStatus::Open => {}
        CartStatus::CheckedOut { order_id: o } if o == order_id => {}
        _ => {
            return Err(Failure::rejected(
                Some("cart_id"),
                "CART_CLOSED",
                "this cart has already been checked out or abandoned",
            ));
        }
    }
    if cart.lines.is_empty() {
        return Err(Failure::rejected(
            Some("cart_id"),
            "CART_EMPTY",
            "the cart is empty",
        ));
    }
    let email = match (req.email, req.actor_email) {
        (Some(e), _) => e,
        (None, Some(e)) => e,
        (None, None) => {
            return Err(Failure::rejected(
                Some("email"),
                "EMAIL_REQUIRED",
                "a guest checkout needs an email address",
            ));
        }
    };
    // A guest checkout gets its own identity, derived from the order and never from the
    // typed email: whatever address a guest gives, the order lands on no existing account.
    let customer_id = req
        .actor
        .customer_id
        .or(cart.customer_id)
        .unwrap_or_else(|| CustomerId::guest_of(order_id));

    // Price every line as the catalog says now, with each digital product's license terms.
    let mut lines = Vec::with_capacity(cart.lines.len());
    for line in &cart.lines {
        let (product, p) = product_facts(bus, &line.sku).await?;
        let terms = product.kind.digital_terms();
        lines.push(OrderLine::new(
            line.sku.clone(),
            &p.name,
            line.qty,
            p.price,
            terms,
        )?);
    }
    let place = OrderCommand::Place {
        order_id,
        customer_id,
        email,
        lines,
        cart_id: Some(req.cart_id),
        payment_method: req.payment_method,
        shipping_address: req.shipping_address,
        now: Utc::now(),
    };
    // Validate the order before closing the cart, so a refusal leaves the cart open.
    Order::decide(&OrderState::default(), place.clone())
        .map_err(crate::bus::CommandError::<_>::Domain)
        .map_err(Failure::from)?;

    if matches!(cart.status, CartStatus::Open) {
        bus.execute::<Cart>(
            &req.cart_id,
            &cart_ctx,
            CartCommand::CheckOut {
                order_id,
                now: Utc::now(),
            },
        )
        .await?;
    }
    let placed = match bus.execute::<Order>(&order_id, &order_ctx, place).await {
        Ok(placed) => placed,
        Err(refused) => {
            // The order id is derived from the cart and the key, so an order that exists now
            // was placed by a concurrent call with this same key: its result is ours too.
            let (existing, version, position) = bus.load::<Order>(&order_id).await?;
            if version.is_some() && existing.status.is_some() {
                return Ok(Placed {
                    order_id,
                    position,
                    replayed: true,
                });
            }
            return Err(refused.into());
        }
    };
    Ok(Placed {
        order_id,
        position: placed.position,
        replayed: placed.events.is_empty(),
    })
}
