//! How each milestone a checkout reaches becomes the commands that carry it out.

use crate::notification::NotificationKind;
use crate::product::LicenseSource;
use crate::{OrderId, PaymentId, Sku};

use super::action::{CheckoutAction, notification};
use super::config::CheckoutConfig;
use super::milestones::Milestone;
use super::state::{CheckoutState, DigitalLine, PhysicalLine, PlacedOrder};

/// The commands that carry out one milestone, built from the state that reached it.
pub(super) fn actions(
    state: &CheckoutState,
    milestone: &Milestone,
    config: &CheckoutConfig,
) -> Vec<CheckoutAction> {
    use CheckoutAction as A;
    use Milestone as M;
    use NotificationKind as N;
    let Some(order) = &state.order else {
        return vec![];
    };
    let order_id = order.order_id;
    let payment_id = CheckoutState::payment_id(order_id);
    match milestone {
        M::Placed => reserve_and_provision(state, order, config),
        M::PaymentRequested => request_payment(order, payment_id),
        M::Charge => vec![A::ChargePayment { payment_id }],
        M::ConfirmReservation(sku) => for_physical(state, sku, |l| A::ConfirmReservation {
            sku: sku.clone(),
            reservation_id: l.reservation_id,
        }),
        M::MarkPaid => mark_paid(state, order_id, payment_id),
        M::ConfirmOrder => {
            vec![A::ConfirmOrder { order_id }, notification(order, N::OrderConfirmed, "", None)]
        }
        M::StartLicense(sku) => for_digital(state, sku, |l| start_license(state, order, sku, l)),
        M::IssueFromKey(sku) => issue_from_key(state, order, sku),
        M::AttachLicense(sku) => attach_license(state, order, sku),
        M::Fulfill => fulfil(state, order),
        M::Release(sku) => for_physical(state, sku, |l| A::ReleaseReservation {
            sku: sku.clone(),
            reservation_id: l.reservation_id,
            reason: state.release_reason(),
        }),
        M::MarkPaymentFailed => mark_payment_failed(state, order_id),
        M::MarkInventoryUnavailable => {
            vec![A::MarkOrderInventoryUnavailable { order_id, skus: state.rejected_skus() }]
        }
        M::Refund(_) => refund(state, order_id, payment_id),
        M::Cancel => vec![A::CancelOrder { order_id, reason: state.abort_reason() }],
        M::Restock(sku) => for_physical(state, sku, |l| A::RestockConfirmed {
            sku: sku.clone(),
            qty: l.qty,
            order_id,
        }),
        M::RevokeLicense(sku) => for_digital(state, sku, |l| A::RevokeLicense {
            license_id: l.license_id,
            reason: revoke_reason(state),
        }),
        M::MarkOrderRefunded(reference) => mark_order_refunded(state, order_id, reference),
        M::NotifyPaymentFailed => vec![notification(order, N::PaymentFailed, "", None)],
        M::NotifyCancelled => vec![notification(order, N::OrderCancelled, "", None)],
        M::NotifyShipped => vec![notification(order, N::Shipped, "", None)],
        M::NotifyRefunded(reference) => {
            vec![notification(order, N::Refunded, reference, None)]
        }
    }
}

/// The one action about the physical line of `sku`, if the order has such a line.
fn for_physical(
    state: &CheckoutState,
    sku: &Sku,
    action: impl FnOnce(&PhysicalLine) -> CheckoutAction,
) -> Vec<CheckoutAction> {
    state.physical.get(sku).map(action).into_iter().collect()
}

/// The one action about the digital line of `sku`, if the order has such a line.
fn for_digital(
    state: &CheckoutState,
    sku: &Sku,
    action: impl FnOnce(&DigitalLine) -> CheckoutAction,
) -> Vec<CheckoutAction> {
    state.digital.get(sku).map(action).into_iter().collect()
}

fn reserve_and_provision(
    state: &CheckoutState,
    order: &PlacedOrder,
    config: &CheckoutConfig,
) -> Vec<CheckoutAction> {
    let order_id = order.order_id;
    let mut out: Vec<_> = state
        .physical
        .iter()
        .map(|(sku, line)| CheckoutAction::ReserveStock {
            sku: sku.clone(),
            reservation_id: line.reservation_id,
            order_id,
            qty: line.qty,
            expires_at: order.placed_at + config.reservation_ttl,
        })
        .collect();
    if !state.digital.is_empty() {
        out.push(CheckoutAction::ProvisionAccount {
            customer_id: order.customer_id,
            email: order.email.clone(),
            order_id,
        });
    }
    out
}

fn request_payment(order: &PlacedOrder, payment_id: PaymentId) -> Vec<CheckoutAction> {
    let order_id = order.order_id;
    vec![
        CheckoutAction::CreatePayment {
            payment_id,
            order_id,
            amount: order.total,
            payment_method: order.payment_method.clone(),
            idempotency_key: format!("checkout-{order_id}-payment"),
        },
        CheckoutAction::StartOrderPayment { order_id, payment_id },
    ]
}

fn mark_paid(
    state: &CheckoutState,
    order_id: OrderId,
    payment_id: PaymentId,
) -> Vec<CheckoutAction> {
    state
        .captured
        .iter()
        .map(|c| CheckoutAction::MarkOrderPaid {
            order_id,
            payment_id,
            gateway_reference: c.gateway_reference.clone(),
            amount: c.amount,
        })
        .collect()
}

fn start_license(
    state: &CheckoutState,
    order: &PlacedOrder,
    sku: &Sku,
    line: &DigitalLine,
) -> CheckoutAction {
    let (license_id, order_id) = (line.license_id, order.order_id);
    match line.terms.license {
        LicenseSource::Pool => {
            CheckoutAction::AllocateLicense { sku: sku.clone(), license_id, order_id }
        }
        LicenseSource::Signed => CheckoutAction::IssueSignedLicense {
            sku: sku.clone(),
            license_id,
            order_id,
            customer_id: order.customer_id,
            seats: line.terms.seats,
            validity_days: line.terms.validity_days,
            expires_at: state.license_expiry(&line.terms),
        },
    }
}

fn issue_from_key(state: &CheckoutState, order: &PlacedOrder, sku: &Sku) -> Vec<CheckoutAction> {
    state
        .digital
        .get(sku)
        .and_then(|l| {
            Some(CheckoutAction::IssueLicense {
                license_id: l.license_id,
                sku: sku.clone(),
                order_id: order.order_id,
                customer_id: order.customer_id,
                seats: l.terms.seats,
                key: l.key.clone()?,
                expires_at: state.license_expiry(&l.terms),
            })
        })
        .into_iter()
        .collect()
}

fn attach_license(state: &CheckoutState, order: &PlacedOrder, sku: &Sku) -> Vec<CheckoutAction> {
    state
        .digital
        .get(sku)
        .map(|l| {
            vec![
                CheckoutAction::AttachLicense {
                    license_id: l.license_id,
                    customer_id: order.customer_id,
                },
                CheckoutAction::AttachLicenseToOrder {
                    order_id: order.order_id,
                    sku: sku.clone(),
                    license_id: l.license_id,
                },
            ]
        })
        .unwrap_or_default()
}

/// Fulfils the order and tells the customer about each license.
fn fulfil(state: &CheckoutState, order: &PlacedOrder) -> Vec<CheckoutAction> {
    std::iter::once(CheckoutAction::FulfillOrder { order_id: order.order_id })
        .chain(state.digital.iter().map(|(sku, l)| {
            notification(order, NotificationKind::LicenseReady, sku.as_str(), Some(l.license_id))
        }))
        .collect()
}

fn mark_payment_failed(state: &CheckoutState, order_id: OrderId) -> Vec<CheckoutAction> {
    state
        .payment_failed
        .iter()
        .map(|f| CheckoutAction::MarkOrderPaymentFailed {
            order_id,
            reason: f.reason.code().to_owned(),
            message: f.message.clone(),
        })
        .collect()
}

/// Refunds whatever is still refundable under the checkout's one compensation reference.
fn refund(state: &CheckoutState, order_id: OrderId, payment_id: PaymentId) -> Vec<CheckoutAction> {
    state
        .refundable()
        .map(|amount| CheckoutAction::RefundPayment {
            payment_id,
            amount,
            reason: state.abort_reason(),
            refund_reference: CheckoutState::compensation_reference(order_id),
        })
        .into_iter()
        .collect()
}

fn revoke_reason(state: &CheckoutState) -> String {
    if state.order_cancelled.is_some() {
        "order cancelled".to_owned()
    } else {
        "order refunded".to_owned()
    }
}

fn mark_order_refunded(
    state: &CheckoutState,
    order_id: OrderId,
    reference: &str,
) -> Vec<CheckoutAction> {
    state
        .payment_refunds
        .get(reference)
        .map(|r| CheckoutAction::MarkOrderRefunded {
            order_id,
            amount: r.amount,
            reason: r.reason.clone(),
            refund_reference: reference.to_owned(),
        })
        .into_iter()
        .collect()
}
