//! Reacting to an event: the actions of every milestone it newly reaches.

use crate::AnyEvent;

use super::action::CheckoutAction;
use super::actions::actions;
use super::config::CheckoutConfig;
use super::evolve::evolve;
use super::milestones::milestones;
use super::state::CheckoutState;

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
