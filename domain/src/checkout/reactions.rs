//! Reacting to an event: the actions of every milestone it newly reaches.

use crate::notification::NotificationKind;
use crate::{AnyEvent, LicenseId, NotificationId};

use super::actions::{CheckoutAction, actions};
use super::config::CheckoutConfig;
use super::evolve::evolve;
use super::milestones::milestones;
use super::state::{CheckoutState, PlacedOrder};

/// The actions caused by `event`, given the state before it.
pub fn react(
    before: &CheckoutState,
    event: &AnyEvent,
    config: &CheckoutConfig,
) -> Vec<CheckoutAction> {
    let after = evolve(before.clone(), event);
    let reached_before = milestones(before);
    milestones(&after)
        .into_iter()
        .filter(|m| !reached_before.contains(m))
        .flat_map(|m| actions(&after, &m, config))
        .collect()
}

/// An email to the order's customer. Its id is derived from the order, the kind and
/// `discriminator` (a SKU or refund reference where one order gets several of a kind), so a
/// repeat queues nothing new.
pub(super) fn notification(
    order: &PlacedOrder,
    kind: NotificationKind,
    discriminator: &str,
    license_id: Option<LicenseId>,
) -> CheckoutAction {
    let order_id = order.order_id;
    let parts = ["checkout", &order_id.to_string(), "notification", kind.as_str(), discriminator];
    CheckoutAction::QueueNotification {
        notification_id: NotificationId::derived(&parts),
        kind,
        to: order.email.clone(),
        order_id,
        license_id,
    }
}
