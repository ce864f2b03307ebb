//! The checkout process manager: one instance per order, pure.
//!
//! It reads events (as [`AnyEvent`](crate::AnyEvent)) and answers with commands to send, as data
//! ([`CheckoutAction`]); a durable runner executes them. The runner's loop per event is:
//!
//! ```text
//! let Some(order) = order_of(&event) else { skip };
//! let actions = react(&state[order], &event, &config);   // decided from the state BEFORE the event
//! state[order] = evolve(state[order], &event);
//! execute(actions)                                       // each carries deterministic ids
//! ```
//!
//! # How reactions happen exactly once
//!
//! The state records facts only, and every fact only ever moves forward (a reservation goes
//! requested → reserved → confirmed/released, never back), so evolving an event that was already
//! seen changes nothing. From a state, [`milestones`] derives the set of things that should
//! have happened ("payment requested", "reservation X released", ...). `react` evolves a copy of
//! the state and emits the actions of the milestones that are reached by this event and were
//! not reached before it. A duplicate event reaches nothing new, so it emits nothing. Because
//! milestones depend on the set of facts and not on the order they arrived in, independent
//! events (payment captured vs account provisioned, the reservations of different lines) lead
//! to the same actions whatever their order, and every action's data comes from the state
//! (for example license expiry counts from the later of capture and provisioning), so equal
//! facts give equal actions.
//!
//! # The flow
//!
//! - `OrderPlaced` → reserve every physical line; provision the account if there are digital
//!   lines; with no physical lines, go straight to payment.
//! - All physical lines reserved → create the payment and start the order's payment;
//!   `PaymentIntentCreated` → charge it.
//! - A line rejected → release the lines already reserved; once every line has an answer, mark
//!   the order inventory-unavailable; `OrderInventoryUnavailable` → cancel.
//! - `PaymentCaptured` → confirm the reservations and mark the order paid; order paid and all
//!   reservations confirmed → confirm the order and notify.
//! - `PaymentFailed` → release the reservations and mark the order's payment failed;
//!   `OrderPaymentFailed` → cancel and notify.
//! - Digital lines wait for both the capture and `AccountProvisioned` → allocate a pool key or
//!   issue a signed license per line; `LicenseKeyAllocated` → issue it; `LicenseIssued` → attach
//!   it to the account and to the order; all attached → fulfil the order, notify per license.
//! - A reservation that expires before the order is confirmed → cancel the order and release
//!   the other reservations.
//!
//! # Compensation
//!
//! Once the order is aborted (a line rejected, payment failed, a reservation expired, a
//! license pool empty, or the order cancelled by anyone), money already captured is refunded
//! in full (less earlier refunds) with the deterministic reference `checkout-<order>-compensation`,
//! active reservations are released, confirmed stock is put back (`RestockConfirmed`), and
//! licenses already issued are revoked once the order is cancelled. When the license pool is
//! empty the refund is sent first and the order is cancelled by the system (allowed from PAID
//! and CONFIRMED); when `PaymentRefunded` arrives and the order has recorded both its payment
//! and its cancellation, the refund is recorded on the order, which ends **REFUNDED** with
//! CANCELLED just before it on the timeline. If the capture arrives after the order was
//! cancelled without payment (a reservation expired while the charge was in flight), the
//! payment is refunded but the order, which never recorded the payment, stays CANCELLED; the
//! refund is visible on the payment, whose events carry the order id.
//!
//! Actions can lose a race with a deadline or an admin (confirming a reservation that just
//! expired, say); the target aggregate then rejects them, the runner records that and moves
//! on, and the events of whatever won drive the compensation above.
mod action;
mod actions;
mod config;
mod evolve;
mod milestones;
mod reactions;
mod state;
#[cfg(test)]
mod tests;

pub use action::CheckoutAction;
pub use config::CheckoutConfig;
pub use evolve::{evolve, order_of};
pub use milestones::{Milestone, milestones};
pub use reactions::react;
pub use state::{
    CancelInfo, Captured, CheckoutState, DigitalLine, PaymentFailure, PhysicalLine, PlacedOrder,
    RecordedRefund, ReservationProgress,
};
