//! Actions on the order: recording how its payment, stock and licenses went, and moving it
//! on (confirm, fulfil, cancel, refund). The four that bring an order to an outcome are
//! counted for the business metrics.

use purser_domain::order::{CancelledBy, Order, OrderCommand};
use purser_domain::{LicenseId, Money, OrderId, PaymentId, Sku};

use super::{ActionExecutor, Outcome, Step};

impl ActionExecutor {
    /// Sends an order command that brings the order to `outcome`, and counts the order once
    /// (only when the command appended).
    async fn send_counted(
        &self,
        step: &Step<'_>,
        order_id: OrderId,
        command: OrderCommand,
        outcome: &'static str,
    ) -> Outcome {
        let r = self
            .bus
            .execute::<Order>(&order_id, &step.ctx, command)
            .await;
        if r.as_ref().is_ok_and(|e| !e.events.is_empty()) {
            metrics::counter!("purser_orders_total", "outcome" => outcome).increment(1);
        }
        self.settle(step.job, r)
    }

    pub(super) async fn mark_order_inventory_unavailable(
        &self,
        step: &Step<'_>,
        order_id: OrderId,
        skus: Vec<Sku>,
    ) -> Outcome {
        let cmd = OrderCommand::MarkInventoryUnavailable {
            skus,
            now: step.now,
        };
        self.send::<Order>(step, &order_id, cmd).await
    }

    pub(super) async fn start_order_payment(
        &self,
        step: &Step<'_>,
        order_id: OrderId,
        payment_id: PaymentId,
    ) -> Outcome {
        let cmd = OrderCommand::StartPayment {
            payment_id,
            now: step.now,
        };
        self.send::<Order>(step, &order_id, cmd).await
    }

    pub(super) async fn mark_order_paid(
        &self,
        step: &Step<'_>,
        order_id: OrderId,
        payment_id: PaymentId,
        gateway_reference: String,
        amount: Money,
    ) -> Outcome {
        let cmd = OrderCommand::MarkPaid {
            payment_id,
            gateway_reference,
            amount,
            now: step.now,
        };
        self.send::<Order>(step, &order_id, cmd).await
    }

    pub(super) async fn mark_order_payment_failed(
        &self,
        step: &Step<'_>,
        order_id: OrderId,
        reason: String,
        message: String,
    ) -> Outcome {
        let cmd = OrderCommand::MarkPaymentFailed {
            reason,
            message,
            now: step.now,
        };
        self.send::<Order>(step, &order_id, cmd).await
    }

    pub(super) async fn confirm_order(&self, step: &Step<'_>, order_id: OrderId) -> Outcome {
        let cmd = OrderCommand::Confirm { now: step.now };
        self.send_counted(step, order_id, cmd, "confirmed").await
    }

    pub(super) async fn cancel_order(
        &self,
        step: &Step<'_>,
        order_id: OrderId,
        reason: String,
    ) -> Outcome {
        let cmd = OrderCommand::Cancel {
            reason,
            by: CancelledBy::System,
            now: step.now,
        };
        self.send_counted(step, order_id, cmd, "cancelled").await
    }

    pub(super) async fn attach_license_to_order(
        &self,
        step: &Step<'_>,
        order_id: OrderId,
        sku: Sku,
        license_id: LicenseId,
    ) -> Outcome {
        let cmd = OrderCommand::AttachLicense {
            sku,
            license_id,
            now: step.now,
        };
        self.send::<Order>(step, &order_id, cmd).await
    }

    pub(super) async fn fulfill_order(&self, step: &Step<'_>, order_id: OrderId) -> Outcome {
        let cmd = OrderCommand::Fulfill { now: step.now };
        self.send_counted(step, order_id, cmd, "fulfilled").await
    }

    pub(super) async fn mark_order_refunded(
        &self,
        step: &Step<'_>,
        order_id: OrderId,
        amount: Money,
        reason: String,
        refund_reference: String,
    ) -> Outcome {
        let cmd = OrderCommand::Refund {
            amount,
            reason,
            refund_reference,
            now: step.now,
        };
        self.send_counted(step, order_id, cmd, "refunded").await
    }
}
