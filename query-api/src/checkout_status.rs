//! Following a checkout without an account: the checkout returns an order id
//! and a status token; polling `checkoutStatus` with both shows the order, and once its
//! digital goods are delivered, hands out a single-use sign-in token that
//! `customerSignInWithToken` exchanges for a session of the checkout's own guest identity,
//! exactly once. Orders of a signed-in customer (whatever email they typed) never get one.

use async_graphql::{Context, ID, Object, SimpleObject};
use chrono::{DateTime, Utc};
use purser_domain::{CustomerId, OrderId};

use crate::orders::{Order, load_order};
use purser_api_core::ReadContext;
use purser_api_core::auth::Tokens;
use purser_api_core::errors::{bad_input, db_error};
use purser_api_core::wire::parse_global_id;

#[derive(SimpleObject)]
pub struct CheckoutStatus {
    pub order: Order,
    /// Present once the order's digital goods are delivered to the buyer's account: exchange
    /// it (once, within ten minutes) with `customerSignInWithToken` for a session.
    pub sign_in_token: Option<String>,
    pub sign_in_token_expires_at: Option<DateTime<Utc>>,
}

/// How long after fulfilment the post-purchase sign-in works.
pub const SIGN_IN_WINDOW: chrono::Duration = chrono::Duration::minutes(10);

/// When the post-purchase token of this order expires, if it may have one now: only a guest
/// checkout's order, with digital goods, fulfilled less than ten minutes ago. The window runs
/// from fulfilment, so polling never renews it.
fn sign_in_window(row: &crate::orders::OrderRow, order_id: OrderId) -> Option<DateTime<Utc>> {
    let guest = CustomerId::from(row.customer_id) == CustomerId::guest_of(order_id);
    let expires_at = row.fulfilled_at? + SIGN_IN_WINDOW;
    (guest && row.has_digital && Utc::now() < expires_at).then_some(expires_at)
}

#[derive(Default)]
pub struct CheckoutStatusQuery;

#[Object]
impl CheckoutStatusQuery {
    /// An order's progress for whoever holds its status token (returned by `cartCheckout`).
    /// A wrong or expired token reads exactly like an unknown order: null.
    async fn checkout_status(
        &self,
        ctx: &Context<'_>,
        order_id: ID,
        status_token: String,
        min_position: Option<String>,
    ) -> async_graphql::Result<Option<CheckoutStatus>> {
        let read = ReadContext::from_ctx(ctx);
        let tokens = ctx.data_unchecked::<Tokens>();
        let key = parse_global_id("Order", &order_id).unwrap_or_else(|_| order_id.to_string());
        let order_id: OrderId = key
            .parse()
            .map_err(|_| bad_input("orderId is not a valid Order id"))?;
        if tokens.verify_order_status(&status_token, order_id).is_err() {
            return Ok(None);
        }
        read.wait_for(ctx, &["orders"], min_position.as_deref())
            .await?;
        let Some(row) = load_order(&read.pool, order_id.as_uuid())
            .await
            .map_err(db_error)?
        else {
            return Ok(None);
        };
        let (sign_in_token, sign_in_token_expires_at) = match sign_in_window(&row, order_id) {
            Some(expires_at) => {
                let guest = CustomerId::guest_of(order_id);
                (
                    Some(tokens.issue_sign_in(guest, order_id, expires_at)),
                    Some(expires_at),
                )
            }
            None => (None, None),
        };
        Ok(Some(CheckoutStatus {
            order: Order::new(row),
            sign_in_token,
            sign_in_token_expires_at,
        }))
    }
}
