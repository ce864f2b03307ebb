//! Notification: one email to send, with retries, stream `notification-<uuid>`.
//!
//! Process managers queue notifications with deterministic ids, so queueing the same one again
//! does nothing; a sender marks each attempt sent or failed.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{Aggregate, CustomerId, DomainError, Email, Event, LicenseId, NotificationId, OrderId};

/// What an account email (verification, password reset) links to: the sender turns it into a
/// signed link with the server's secret, so the link itself is never stored anywhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountLink {
    pub customer_id: CustomerId,
    /// The verification or reset id the link proves knowledge of.
    pub link_id: uuid::Uuid,
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotificationKind {
    OrderConfirmed,
    PaymentFailed,
    /// Carries the license id; the sender looks up the key and download link.
    LicenseReady,
    Shipped,
    Refunded,
    OrderCancelled,
    /// The link that proves a new account's address.
    VerifyEmail,
    /// A single-use link to set a new password.
    PasswordReset,
}

impl NotificationKind {
    /// The snake_case name, as serialised.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::OrderConfirmed => "order_confirmed",
            Self::PaymentFailed => "payment_failed",
            Self::LicenseReady => "license_ready",
            Self::Shipped => "shipped",
            Self::Refunded => "refunded",
            Self::OrderCancelled => "order_cancelled",
            Self::VerifyEmail => "verify_email",
            Self::PasswordReset => "password_reset",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum NotificationStatus {
    Queued,
    Sent,
    Failed { attempts: u32 },
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NotificationState {
    /// `None` until queued.
    pub status: Option<NotificationStatus>,
    pub notification_id: NotificationId,
    pub kind: Option<NotificationKind>,
    pub to: Option<Email>,
    /// The order an order email is about; account emails have none.
    pub order_id: Option<OrderId>,
    pub license_id: Option<LicenseId>,
    #[serde(default)]
    pub account: Option<AccountLink>,
    pub attempts: u32,
    pub next_attempt_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum NotificationCommand {
    Queue {
        notification_id: NotificationId,
        kind: NotificationKind,
        to: Email,
        order_id: Option<OrderId>,
        license_id: Option<LicenseId>,
        account: Option<AccountLink>,
        now: DateTime<Utc>,
    },
    MarkSent {
        attempt: u32,
        now: DateTime<Utc>,
    },
    /// `next_attempt_at` is `None` when the sender has given up.
    MarkFailed {
        attempt: u32,
        error: String,
        next_attempt_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum NotificationEvent {
    NotificationQueued {
        notification_id: NotificationId,
        kind: NotificationKind,
        to: Email,
        /// Always present before account emails existed, so old events load unchanged.
        order_id: Option<OrderId>,
        license_id: Option<LicenseId>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        account: Option<AccountLink>,
        at: DateTime<Utc>,
    },
    NotificationSent {
        notification_id: NotificationId,
        order_id: Option<OrderId>,
        attempt: u32,
        at: DateTime<Utc>,
    },
    NotificationFailed {
        notification_id: NotificationId,
        order_id: Option<OrderId>,
        attempt: u32,
        error: String,
        next_attempt_at: Option<DateTime<Utc>>,
        at: DateTime<Utc>,
    },
}

impl Event for NotificationEvent {
    event_names!(NotificationQueued, NotificationSent, NotificationFailed);
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum NotificationError {
    #[error("no such notification")]
    NotFound,
    #[error("the notification has already been sent")]
    AlreadySent,
}

impl DomainError for NotificationError {
    fn code(&self) -> &'static str {
        match self {
            Self::NotFound => "NOTIFICATION_NOT_FOUND",
            Self::AlreadySent => "NOTIFICATION_ALREADY_SENT",
        }
    }
}

pub struct Notification;

impl Notification {
    pub const MAX_ERROR_LEN: usize = 500;
}

impl Aggregate for Notification {
    const CATEGORY: &'static str = "notification";
    type Id = NotificationId;
    type State = NotificationState;
    type Command = NotificationCommand;
    type Event = NotificationEvent;
    type Error = NotificationError;

    fn decide(
        state: &NotificationState,
        command: NotificationCommand,
    ) -> Result<Vec<NotificationEvent>, NotificationError> {
        use NotificationEvent::*;
        let (notification_id, order_id) = (state.notification_id, state.order_id);
        match command {
            NotificationCommand::Queue {
                notification_id,
                kind,
                to,
                order_id,
                license_id,
                account,
                now,
            } => {
                if state.status.is_some() {
                    return Ok(vec![]);
                }
                Ok(vec![NotificationQueued {
                    notification_id,
                    kind,
                    to,
                    order_id,
                    license_id,
                    account,
                    at: now,
                }])
            }
            NotificationCommand::MarkSent { attempt, now } => match state.status {
                None => Err(NotificationError::NotFound),
                Some(NotificationStatus::Sent) => Ok(vec![]),
                Some(_) => {
                    Ok(vec![NotificationSent { notification_id, order_id, attempt, at: now }])
                }
            },
            NotificationCommand::MarkFailed { attempt, error, next_attempt_at, now } => {
                match state.status {
                    None => Err(NotificationError::NotFound),
                    Some(NotificationStatus::Sent) => Err(NotificationError::AlreadySent),
                    // The same failed attempt reported twice is recorded once.
                    Some(_) if attempt <= state.attempts => Ok(vec![]),
                    Some(_) => Ok(vec![NotificationFailed {
                        notification_id,
                        order_id,
                        attempt,
                        // SMTP errors can be long; keep the start, which says what went wrong.
                        error: error.chars().take(Self::MAX_ERROR_LEN).collect(),
                        next_attempt_at,
                        at: now,
                    }]),
                }
            }
        }
    }

    fn evolve(mut state: NotificationState, event: &NotificationEvent) -> NotificationState {
        use NotificationEvent::*;
        match event {
            NotificationQueued { notification_id, kind, to, order_id, license_id, account, at } => {
                state = NotificationState {
                    status: Some(NotificationStatus::Queued),
                    notification_id: *notification_id,
                    kind: Some(*kind),
                    to: Some(to.clone()),
                    order_id: *order_id,
                    license_id: *license_id,
                    account: *account,
                    attempts: 0,
                    next_attempt_at: Some(*at),
                };
            }
            NotificationSent { attempt, .. } => {
                state.status = Some(NotificationStatus::Sent);
                state.attempts = state.attempts.max(*attempt);
                state.next_attempt_at = None;
            }
            NotificationFailed { attempt, next_attempt_at, .. } => {
                state.attempts = state.attempts.max(*attempt);
                state.status = Some(NotificationStatus::Failed { attempts: state.attempts });
                state.next_attempt_at = *next_attempt_at;
            }
        }
        state
    }
}

#[cfg(test)]
mod tests {
    use super::NotificationEvent::*;
    use super::*;
    use crate::aggregate::testing::given;
    use crate::test_support::{email, t};

    fn nid() -> NotificationId {
        NotificationId::derived(&["test-notification"])
    }

    fn oid() -> OrderId {
        OrderId::derived(&["test-order"])
    }

    fn queued() -> NotificationEvent {
        NotificationQueued {
            notification_id: nid(),
            kind: NotificationKind::OrderConfirmed,
            to: email("ann@example.com"),
            order_id: Some(oid()),
            license_id: None,
            account: None,
            at: t(0),
        }
    }

    fn failed(attempt: u32) -> NotificationEvent {
        NotificationFailed {
            notification_id: nid(),
            order_id: Some(oid()),
            attempt,
            error: "421 try later".into(),
            next_attempt_at: Some(t(5)),
            at: t(1),
        }
    }

    fn fail(attempt: u32, error: &str) -> NotificationCommand {
        NotificationCommand::MarkFailed {
            attempt,
            error: error.into(),
            next_attempt_at: Some(t(5)),
            now: t(1),
        }
    }

    fn sent() -> NotificationEvent {
        NotificationSent { notification_id: nid(), order_id: Some(oid()), attempt: 2, at: t(6) }
    }

    #[test]
    fn queue_once() {
        let queue = || NotificationCommand::Queue {
            notification_id: nid(),
            kind: NotificationKind::OrderConfirmed,
            to: email("ann@example.com"),
            order_id: Some(oid()),
            license_id: None,
            account: None,
            now: t(0),
        };
        given::<Notification>([]).when(queue()).then([queued()]);
        given::<Notification>([queued()]).when(queue()).then([]);
    }

    #[test]
    fn order_emails_written_before_account_emails_still_load() {
        let v1 = serde_json::json!({
            "notification_id": nid(), "kind": "order_confirmed", "to": "ann@example.com",
            "order_id": oid(), "license_id": null, "at": t(0),
        });
        let e = NotificationEvent::decode("NotificationQueued", 1, v1).unwrap();
        assert_eq!(e, queued());
    }

    #[test]
    fn send_once() {
        let send = || NotificationCommand::MarkSent { attempt: 2, now: t(6) };
        given::<Notification>([queued(), failed(1)]).when(send()).then([sent()]);
        given::<Notification>([queued(), sent()]).when(send()).then([]);
        given::<Notification>([]).when(send()).then_error("NOTIFICATION_NOT_FOUND");
    }

    #[test]
    fn failures_are_counted_and_truncated() {
        given::<Notification>([queued()]).when(fail(1, "421 try later")).then([failed(1)]);
        given::<Notification>([queued(), failed(1)]).when(fail(1, "421 try later")).then([]);
        given::<Notification>([queued(), sent()])
            .when(fail(3, "late"))
            .then_error("NOTIFICATION_ALREADY_SENT");
        given::<Notification>([]).when(fail(1, "x")).then_error("NOTIFICATION_NOT_FOUND");
        let events =
            given::<Notification>([queued()]).when(fail(1, &"e".repeat(2_000))).result().unwrap();
        assert!(
            matches!(&events[0], NotificationFailed { error, .. } if error.chars().count() == 500)
        );
        let state = given::<Notification>([queued(), failed(1), failed(2)]).state().clone();
        assert_eq!(state.status, Some(NotificationStatus::Failed { attempts: 2 }));
        assert_eq!(state.next_attempt_at, Some(t(5)));
    }
}
