//! Actions about the customer: provisioning the account digital purchases attach to, and
//! queueing an email.

use purser_domain::customer::{Customer, CustomerCommand};
use purser_domain::notification::{Notification, NotificationCommand, NotificationKind};
use purser_domain::{CustomerId, Email, LicenseId, NotificationId, OrderId};

use super::{ActionExecutor, Outcome, Step};

impl ActionExecutor {
    pub(super) async fn provision_account(
        &self,
        step: &Step<'_>,
        customer_id: CustomerId,
        email: Email,
        order_id: OrderId,
    ) -> Outcome {
        let cmd = CustomerCommand::ProvisionAccount {
            customer_id,
            email,
            order_id,
            now: step.now,
        };
        self.send::<Customer>(step, &customer_id, cmd).await
    }

    pub(super) async fn queue_notification(
        &self,
        step: &Step<'_>,
        notification_id: NotificationId,
        kind: NotificationKind,
        to: Email,
        order_id: OrderId,
        license_id: Option<LicenseId>,
    ) -> Outcome {
        let cmd = NotificationCommand::Queue {
            notification_id,
            kind,
            to,
            order_id: Some(order_id),
            license_id,
            account: None,
            now: step.now,
        };
        self.send::<Notification>(step, &notification_id, cmd).await
    }
}
