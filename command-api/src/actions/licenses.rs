//! Actions on licenses: taking a key from a SKU's pool, issuing (pool key or signed), and
//! attaching or revoking an issued license.

use chrono::{DateTime, Utc};
use purser_domain::license::{
    License, LicenseCommand, LicensePayload, LicensePool, LicensePoolCommand,
};
use purser_domain::{CustomerId, LicenseId, OrderId, Sku};

use super::{ActionExecutor, Outcome, Step};

impl ActionExecutor {
    pub(super) async fn allocate_license(
        &self,
        step: &Step<'_>,
        sku: Sku,
        license_id: LicenseId,
        order_id: OrderId,
    ) -> Outcome {
        let id = sku.clone();
        let cmd = LicensePoolCommand::Allocate {
            sku,
            license_id,
            order_id,
            now: step.now,
        };
        self.send::<LicensePool>(step, &id, cmd).await
    }

    /// Signs the license with the configured key and issues it.
    pub(super) async fn issue_signed_license(
        &self,
        step: &Step<'_>,
        payload: LicensePayload,
        order_id: OrderId,
    ) -> Outcome {
        let license_id = payload.license_id;
        let cmd = match &self.signer {
            Some(signer) => {
                let key = signer.sign(&payload);
                issue(payload, order_id, key, step.now)
            }
            // Without a key no license can be issued: record that as a fact, and the
            // checkout refunds and cancels rather than leave the customer charged.
            None => LicenseCommand::RecordIssueFailure {
                license_id,
                sku: payload.sku,
                order_id,
                reason: "no license signing key is configured".into(),
                now: step.now,
            },
        };
        self.send::<License>(step, &license_id, cmd).await
    }

    /// Issues a license with a key allocated from the pool.
    pub(super) async fn issue_license(
        &self,
        step: &Step<'_>,
        payload: LicensePayload,
        order_id: OrderId,
        key: String,
    ) -> Outcome {
        let license_id = payload.license_id;
        let cmd = issue(payload, order_id, key, step.now);
        self.send::<License>(step, &license_id, cmd).await
    }

    pub(super) async fn attach_license(
        &self,
        step: &Step<'_>,
        license_id: LicenseId,
        customer_id: CustomerId,
    ) -> Outcome {
        let cmd = LicenseCommand::Attach {
            customer_id,
            now: step.now,
        };
        self.send::<License>(step, &license_id, cmd).await
    }

    pub(super) async fn revoke_license(
        &self,
        step: &Step<'_>,
        license_id: LicenseId,
        reason: String,
    ) -> Outcome {
        let cmd = LicenseCommand::Revoke {
            reason,
            now: step.now,
        };
        self.send::<License>(step, &license_id, cmd).await
    }
}

/// The command that issues the license `payload` describes, with its key.
fn issue(
    payload: LicensePayload,
    order_id: OrderId,
    key: String,
    now: DateTime<Utc>,
) -> LicenseCommand {
    LicenseCommand::Issue {
        license_id: payload.license_id,
        sku: payload.sku,
        order_id,
        customer_id: payload.customer_id,
        seats: payload.seats,
        key,
        expires_at: payload.expires_at,
        now,
    }
}
