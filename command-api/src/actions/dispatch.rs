//! Which method carries out which action, and the action kinds' names for metrics.

use purser_domain::checkout::CheckoutAction;
use purser_domain::license::LicensePayload;

use super::{ActionExecutor, Outcome, Step};

impl ActionExecutor {
    /// Sends the command (or gateway call) an action stands for; each kind is carried out
    /// by the method of the same name, grouped by target in this module's files.
    pub(super) async fn carry_out(&self, step: &Step<'_>, action: CheckoutAction) -> Outcome {
        use CheckoutAction as A;
        match action {
            A::ReserveStock {
                sku,
                reservation_id,
                order_id,
                qty,
                expires_at,
            } => {
                self.reserve_stock(step, sku, reservation_id, order_id, qty, expires_at)
                    .await
            }
            A::ReleaseReservation {
                sku,
                reservation_id,
                reason,
            } => {
                self.release_reservation(step, sku, reservation_id, reason)
                    .await
            }
            A::ConfirmReservation {
                sku,
                reservation_id,
            } => self.confirm_reservation(step, sku, reservation_id).await,
            A::RestockConfirmed { sku, qty, order_id } => {
                self.restock_confirmed(step, sku, qty, order_id).await
            }
            A::MarkOrderInventoryUnavailable { order_id, skus } => {
                self.mark_order_inventory_unavailable(step, order_id, skus)
                    .await
            }
            A::CreatePayment {
                payment_id,
                order_id,
                amount,
                payment_method,
                idempotency_key,
            } => {
                self.create_payment(
                    step,
                    payment_id,
                    order_id,
                    amount,
                    payment_method,
                    idempotency_key,
                )
                .await
            }
            A::StartOrderPayment {
                order_id,
                payment_id,
            } => self.start_order_payment(step, order_id, payment_id).await,
            A::ChargePayment { payment_id } => self.charge(step, payment_id).await,
            A::MarkOrderPaid {
                order_id,
                payment_id,
                gateway_reference,
                amount,
            } => {
                self.mark_order_paid(step, order_id, payment_id, gateway_reference, amount)
                    .await
            }
            A::MarkOrderPaymentFailed {
                order_id,
                reason,
                message,
            } => {
                self.mark_order_payment_failed(step, order_id, reason, message)
                    .await
            }
            A::ConfirmOrder { order_id } => self.confirm_order(step, order_id).await,
            A::CancelOrder { order_id, reason } => self.cancel_order(step, order_id, reason).await,
            A::ProvisionAccount {
                customer_id,
                email,
                order_id,
            } => {
                self.provision_account(step, customer_id, email, order_id)
                    .await
            }
            A::AllocateLicense {
                sku,
                license_id,
                order_id,
            } => self.allocate_license(step, sku, license_id, order_id).await,
            A::IssueSignedLicense {
                sku,
                license_id,
                order_id,
                customer_id,
                seats,
                expires_at,
                ..
            } => {
                let payload = LicensePayload {
                    license_id,
                    sku,
                    customer_id,
                    seats,
                    expires_at,
                };
                self.issue_signed_license(step, payload, order_id).await
            }
            A::IssueLicense {
                license_id,
                sku,
                order_id,
                customer_id,
                seats,
                key,
                expires_at,
            } => {
                let payload = LicensePayload {
                    license_id,
                    sku,
                    customer_id,
                    seats,
                    expires_at,
                };
                self.issue_license(step, payload, order_id, key).await
            }
            A::AttachLicense {
                license_id,
                customer_id,
            } => self.attach_license(step, license_id, customer_id).await,
            A::AttachLicenseToOrder {
                order_id,
                sku,
                license_id,
            } => {
                self.attach_license_to_order(step, order_id, sku, license_id)
                    .await
            }
            A::FulfillOrder { order_id } => self.fulfill_order(step, order_id).await,
            A::RefundPayment {
                payment_id,
                amount,
                reason,
                refund_reference,
            } => {
                self.refund(step, payment_id, amount, reason, refund_reference)
                    .await
            }
            A::MarkOrderRefunded {
                order_id,
                amount,
                reason,
                refund_reference,
            } => {
                self.mark_order_refunded(step, order_id, amount, reason, refund_reference)
                    .await
            }
            A::RevokeLicense { license_id, reason } => {
                self.revoke_license(step, license_id, reason).await
            }
            A::QueueNotification {
                notification_id,
                kind,
                to,
                order_id,
                license_id,
            } => {
                self.queue_notification(step, notification_id, kind, to, order_id, license_id)
                    .await
            }
        }
    }
}

/// A short name per action kind, for metrics.
pub(super) fn action_label(a: &CheckoutAction) -> &'static str {
    match a {
        CheckoutAction::ReserveStock { .. } => "reserve_stock",
        CheckoutAction::ReleaseReservation { .. } => "release_reservation",
        CheckoutAction::ConfirmReservation { .. } => "confirm_reservation",
        CheckoutAction::RestockConfirmed { .. } => "restock_confirmed",
        CheckoutAction::MarkOrderInventoryUnavailable { .. } => "mark_order_inventory_unavailable",
        CheckoutAction::CreatePayment { .. } => "create_payment",
        CheckoutAction::StartOrderPayment { .. } => "start_order_payment",
        CheckoutAction::ChargePayment { .. } => "charge_payment",
        CheckoutAction::MarkOrderPaid { .. } => "mark_order_paid",
        CheckoutAction::MarkOrderPaymentFailed { .. } => "mark_order_payment_failed",
        CheckoutAction::ConfirmOrder { .. } => "confirm_order",
        CheckoutAction::CancelOrder { .. } => "cancel_order",
        CheckoutAction::ProvisionAccount { .. } => "provision_account",
        CheckoutAction::AllocateLicense { .. } => "allocate_license",
        CheckoutAction::IssueSignedLicense { .. } => "issue_signed_license",
        CheckoutAction::IssueLicense { .. } => "issue_license",
        CheckoutAction::AttachLicense { .. } => "attach_license",
        CheckoutAction::AttachLicenseToOrder { .. } => "attach_license_to_order",
        CheckoutAction::FulfillOrder { .. } => "fulfill_order",
        CheckoutAction::RefundPayment { .. } => "refund_payment",
        CheckoutAction::MarkOrderRefunded { .. } => "mark_order_refunded",
        CheckoutAction::RevokeLicense { .. } => "revoke_license",
        CheckoutAction::QueueNotification { .. } => "queue_notification",
    }
}
