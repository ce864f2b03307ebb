//! A seeded order after it is placed: paying (or failing to), delivering software and stock,
//! and what admins do later (cancel, refund).

use anyhow::anyhow;
use chrono::Duration;
use purser_command_api::licensing::LicenseSigner;
use purser_domain::checkout::CheckoutState;
use purser_domain::inventory::{AdjustmentReason, Inventory, InventoryCommand, ReleaseReason};
use purser_domain::license::{
    License, LicenseCommand, LicensePayload, LicensePool, LicensePoolCommand, LicensePoolEvent,
};
use purser_domain::order::{CancelledBy, OrderCommand};
use purser_domain::payment::{Payment, PaymentCommand, PaymentFailureReason, PaymentMethod};
use purser_domain::product::LicenseSource;
use purser_domain::{LicenseId, Money, PaymentId};

use super::order::{OrderWriter, Reserved};
use super::plan::{PaymentPlan, PlannedLine, card};

impl OrderWriter<'_> {
    /// Creates the payment and starts the order's payment with it.
    pub(super) async fn start_payment(
        &mut self,
        payment_id: PaymentId,
        total: Money,
        payment: PaymentPlan,
    ) -> anyhow::Result<()> {
        let intent = PaymentCommand::CreateIntent {
            payment_id,
            order_id: self.order_id,
            amount: total,
            payment_method: PaymentMethod::parse(card(payment)).expect("valid token"),
            idempotency_key: payment_id.to_string(),
            now: self.at(2),
        };
        self.run::<Payment>(&payment_id, intent).await?;
        self.order(OrderCommand::StartPayment {
            payment_id,
            now: self.at(2),
        })
        .await
    }

    /// A declined charge: the stock goes back and the order is cancelled.
    pub(super) async fn payment_failed(
        &mut self,
        payment_id: PaymentId,
        reason: PaymentFailureReason,
        reserved: &[Reserved],
    ) -> anyhow::Result<()> {
        let message = "the card was declined (demo data)".to_string();
        let fail = PaymentCommand::Fail {
            reason,
            message: message.clone(),
            now: self.at(4),
        };
        self.run::<Payment>(&payment_id, fail).await?;
        self.release(reserved, ReleaseReason::PaymentFailed).await?;
        self.order(OrderCommand::MarkPaymentFailed {
            reason: reason.code().to_owned(),
            message,
            now: self.at(5),
        })
        .await?;
        self.order(OrderCommand::Cancel {
            reason: format!("payment failed: {}", reason.code()),
            by: CancelledBy::System,
            now: self.at(6),
        })
        .await
    }

    /// A captured charge: the stock is taken and the order paid (and confirmed when it ships
    /// anything).
    pub(super) async fn capture(
        &mut self,
        payment_id: PaymentId,
        total: Money,
        reserved: &[Reserved],
        has_physical: bool,
    ) -> anyhow::Result<()> {
        let reference = format!("sim_ch_seed_{:06}", self.i);
        let capture = PaymentCommand::Capture {
            gateway_reference: reference.clone(),
            now: self.at(4),
        };
        self.run::<Payment>(&payment_id, capture).await?;
        for r in reserved {
            let cmd = InventoryCommand::Confirm {
                reservation_id: r.reservation_id,
                now: self.at(5),
            };
            self.run::<Inventory>(&r.sku, cmd).await?;
        }
        self.order(OrderCommand::MarkPaid {
            payment_id,
            gateway_reference: reference,
            amount: total,
            now: self.at(5),
        })
        .await?;
        if has_physical {
            self.order(OrderCommand::Confirm { now: self.at(6) })
                .await?;
        }
        Ok(())
    }

    /// Issues and attaches a license per digital line and fulfils the order. Returns the
    /// licenses issued.
    pub(super) async fn deliver_licenses(
        &mut self,
        signer: Option<&LicenseSigner>,
        lines: &[PlannedLine],
    ) -> anyhow::Result<Vec<LicenseId>> {
        let mut licenses = Vec::new();
        for line in lines.iter().filter(|l| l.terms.is_some()) {
            licenses.push(self.deliver_license(signer, line).await?);
        }
        if !licenses.is_empty() {
            self.order(OrderCommand::Fulfill { now: self.at(9) })
                .await?;
        }
        Ok(licenses)
    }

    async fn deliver_license(
        &mut self,
        signer: Option<&LicenseSigner>,
        line: &PlannedLine,
    ) -> anyhow::Result<LicenseId> {
        let sku = &line.sku;
        let terms = line.terms.expect("digital");
        let license_id = CheckoutState::license_id(self.order_id, sku);
        let expires_at = terms
            .validity_days
            .map(|d| self.at(6) + Duration::days(i64::from(d)));
        let key = match terms.license {
            LicenseSource::Pool => {
                let cmd = LicensePoolCommand::Allocate {
                    sku: sku.clone(),
                    license_id,
                    order_id: self.order_id,
                    now: self.at(6),
                };
                let done = self.run::<LicensePool>(sku, cmd).await?;
                match done.events.first() {
                    Some(LicensePoolEvent::LicenseKeyAllocated { key, .. }) => key.clone(),
                    _ => {
                        return Err(anyhow!(
                            "the demo key pool of {sku} ran dry; load more keys"
                        ));
                    }
                }
            }
            LicenseSource::Signed => match signer {
                Some(signer) => signer.sign(&LicensePayload {
                    license_id,
                    sku: sku.clone(),
                    customer_id: self.customer_id,
                    seats: terms.seats,
                    expires_at,
                }),
                None => {
                    return Err(anyhow!(
                        "demo history needs a license signing key (PURSER_LICENSE_SIGNING_KEY)"
                    ));
                }
            },
        };
        let issue = LicenseCommand::Issue {
            license_id,
            sku: sku.clone(),
            order_id: self.order_id,
            customer_id: self.customer_id,
            seats: terms.seats,
            key,
            expires_at,
            now: self.at(7),
        };
        self.run::<License>(&license_id, issue).await?;
        let attach = LicenseCommand::Attach {
            customer_id: self.customer_id,
            now: self.at(7),
        };
        self.run::<License>(&license_id, attach).await?;
        self.order(OrderCommand::AttachLicense {
            sku: sku.clone(),
            license_id,
            now: self.at(8),
        })
        .await?;
        Ok(license_id)
    }

    /// An admin cancels the order an hour after it was placed; the checkout's compensation
    /// follows: stock back on the shelf, the payment refunded, licenses revoked.
    pub(super) async fn admin_cancel(
        &mut self,
        payment_id: PaymentId,
        total: Money,
        reserved: &[Reserved],
        licenses: &[LicenseId],
    ) -> anyhow::Result<()> {
        let at = self.at(3600);
        let order_id = self.order_id;
        self.order(OrderCommand::Cancel {
            reason: "the customer asked to cancel".into(),
            by: CancelledBy::Admin,
            now: at,
        })
        .await?;
        for r in reserved {
            let cmd = InventoryCommand::Adjust {
                sku: r.sku.clone(),
                delta: i64::from(r.qty.get()),
                reason: AdjustmentReason::OrderCancelled,
                note: format!("order {order_id} cancelled after its stock left the shelf"),
                now: at + Duration::seconds(1),
            };
            self.run::<Inventory>(&r.sku, cmd).await?;
        }
        let reference = CheckoutState::compensation_reference(order_id);
        let reason = "order cancelled: the customer asked to cancel".to_string();
        let refund = PaymentCommand::Refund {
            amount: total,
            reason: reason.clone(),
            refund_reference: reference.clone(),
            now: at + Duration::seconds(2),
        };
        self.run::<Payment>(&payment_id, refund).await?;
        self.order(OrderCommand::Refund {
            amount: total,
            reason,
            refund_reference: reference,
            now: at + Duration::seconds(3),
        })
        .await?;
        self.revoke(licenses, at + Duration::seconds(4)).await
    }

    /// Processing starts after four hours, the parcel ships after a day and arrives three
    /// days later, as far as the order's age allows.
    pub(super) async fn ship(&mut self, age: Duration) -> anyhow::Result<()> {
        self.order(OrderCommand::StartProcessing {
            now: self.at(4 * 3600),
        })
        .await?;
        if age <= Duration::days(1) {
            return Ok(());
        }
        let carrier = ["UPS", "DHL", "FedEx", "USPS"][self.i % 4];
        self.order(OrderCommand::Ship {
            tracking_number: format!("1Z{:010}", self.i * 7919),
            carrier: carrier.into(),
            estimated_delivery: Some(self.at(4 * 86_400)),
            now: self.at(86_400),
        })
        .await?;
        if age > Duration::days(4) {
            self.order(OrderCommand::Deliver {
                now: self.at(3 * 86_400 + 7200),
            })
            .await?;
        }
        Ok(())
    }

    /// An admin refunds the order two days after it was placed, every other one in full (which
    /// revokes its licenses) and the rest by half.
    pub(super) async fn refund(
        &mut self,
        payment_id: PaymentId,
        total: Money,
        licenses: &[LicenseId],
    ) -> anyhow::Result<()> {
        let amount = if self.i.is_multiple_of(2) {
            total
        } else {
            Money::new(total.minor / 2, total.currency)
        };
        let reference = format!("admin-refund-{}-seed", self.order_id);
        let at = self.at(2 * 86_400);
        let reason = "refunded on request (demo data)".to_string();
        let refund = PaymentCommand::Refund {
            amount,
            reason: reason.clone(),
            refund_reference: reference.clone(),
            now: at,
        };
        self.run::<Payment>(&payment_id, refund).await?;
        self.order(OrderCommand::Refund {
            amount,
            reason,
            refund_reference: reference,
            now: at + Duration::seconds(1),
        })
        .await?;
        if amount == total {
            self.revoke(licenses, at + Duration::seconds(2)).await?;
        }
        Ok(())
    }

    async fn revoke(
        &mut self,
        licenses: &[LicenseId],
        now: chrono::DateTime<chrono::Utc>,
    ) -> anyhow::Result<()> {
        for license_id in licenses {
            let cmd = LicenseCommand::Revoke {
                reason: "order refunded".into(),
                now,
            };
            self.run::<License>(license_id, cmd).await?;
        }
        Ok(())
    }
}
