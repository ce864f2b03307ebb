//! Order: what a customer bought and how far it got, stream `order-<uuid>`.
//!
//! ```text
//! PENDING → PAYMENT_PROCESSING → PAID → CONFIRMED → PROCESSING → SHIPPED → DELIVERED   (physical, mixed)
//!                                PAID → FULFILLED                                      (digital only)
//! PENDING → INVENTORY_UNAVAILABLE → CANCELLED       PAYMENT_PROCESSING → PAYMENT_FAILED → CANCELLED
//! PAID … DELIVERED, FULFILLED, CANCELLED (when paid) → REFUNDED
//! ```
//! A mixed order records `OrderFulfilled` once its licenses are attached but keeps following
//! the physical path. Every other transition is an `INVALID_TRANSITION` error. Every event
//! carries the order id, so the checkout process manager can route it.
mod command;
mod decide;
mod error;
mod events;
mod state;
mod status;
#[cfg(test)]
mod tests;
mod values;

pub use command::OrderCommand;
pub use error::OrderError;
pub use events::OrderEvent;
pub use state::OrderState;
pub use status::OrderStatus;
pub use values::{Cancellation, CancelledBy, OrderLine, ShippingAddress, Tracking};

use crate::{Aggregate, OrderId};

pub struct Order;

impl Order {
    pub const MAX_LINES: usize = 100;
}

impl Aggregate for Order {
    const CATEGORY: &'static str = "order";
    type Id = OrderId;
    type State = OrderState;
    type Command = OrderCommand;
    type Event = OrderEvent;
    type Error = OrderError;

    fn decide(state: &OrderState, command: OrderCommand) -> Result<Vec<OrderEvent>, OrderError> {
        decide::decide(state, command)
    }

    fn evolve(state: OrderState, event: &OrderEvent) -> OrderState {
        state::evolve(state, event)
    }
}
