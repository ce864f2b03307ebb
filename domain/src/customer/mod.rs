//! Customer: stream `customer-<uuid>`, either a registered account ([`CustomerId::for_email`])
//! or the guest identity of one checkout ([`CustomerId::guest_of`]).
//!
//! Guests and accounts never share a stream: a guest checkout provisions its own identity,
//! which can be signed into once (the post-purchase token) and never holds a password or a
//! staff role. A registered account sees a guest's orders only after it has proved the address
//! (the emailed verification link) and claimed them. Password hashes live in the credentials
//! table, not in events; accounts registered before that carry theirs in `CustomerRegistered`
//! v1, which still loads.

mod decide;
#[cfg(test)]
mod tests;

use std::collections::BTreeSet;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};

use crate::{Aggregate, CustomerId, DomainError, Email, Event, OrderId, ValueError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Customer,
    Admin,
    Analyst,
    Auditor,
}

/// An argon2 (or other) password hash in PHC string format. The hash is not a secret in the
/// way a password is, but it still never belongs in logs, so `Debug` redacts it.
#[derive(Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct PasswordHash(String);

impl PasswordHash {
    /// Accepts a PHC string such as `$argon2id$v=19$m=19456,t=2,p=1$salt$hash`.
    pub fn from_phc(phc: &str) -> Result<PasswordHash, ValueError> {
        let ok = phc.starts_with('$')
            && phc.len() <= 512
            && phc.split('$').filter(|part| !part.is_empty()).count() >= 2
            && phc.chars().all(|c| c.is_ascii_graphic());
        if !ok {
            return Err(ValueError::new("password_hash", "must be a PHC-format hash string"));
        }
        Ok(PasswordHash(phc.to_owned()))
    }

    pub fn as_phc(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PasswordHash(<redacted>)")
    }
}

impl<'de> Deserialize<'de> for PasswordHash {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        PasswordHash::from_phc(&s).map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CustomerState {
    pub customer_id: CustomerId,
    /// Signed up with a password (or was added as staff).
    pub registered: bool,
    /// Was created for an order: the guest identity of a checkout, or an account a signed-in
    /// customer's digital purchase attached to.
    pub provisioned: bool,
    pub email: Option<Email>,
    pub name: Option<String>,
    /// Only accounts registered before credentials left the event log carry a hash here.
    pub password_hash: Option<PasswordHash>,
    pub roles: BTreeSet<Role>,
    pub provisioned_for_orders: BTreeSet<OrderId>,
    /// The checkout that created this identity, when a guest checkout did.
    #[serde(default)]
    pub created_by_order: Option<OrderId>,
    /// Single-use sign-in tokens already exchanged for a session.
    #[serde(default)]
    pub redeemed_sign_in_tokens: BTreeSet<uuid::Uuid>,
    /// The owner proved the address with the emailed link.
    #[serde(default)]
    pub verified: bool,
    #[serde(default)]
    pub pending_verification: Option<uuid::Uuid>,
    #[serde(default)]
    pub pending_reset: Option<PendingReset>,
    #[serde(default)]
    pub disabled: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingReset {
    pub reset_id: uuid::Uuid,
    pub expires_at: DateTime<Utc>,
}

impl CustomerState {
    pub fn exists(&self) -> bool {
        self.registered || self.provisioned
    }

    /// Holds a role beyond `customer`.
    pub fn is_staff(&self) -> bool {
        self.roles.iter().any(|r| *r != Role::Customer)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PasswordChange {
    /// The owner changed it while signed in.
    Changed,
    /// Set through an emailed reset link.
    Reset,
}

#[derive(Debug, Clone, PartialEq, strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum CustomerCommand {
    /// Signs up; the password's hash goes to the credentials table, never into the event.
    /// Asks for the address to be verified (`verification_id` names the emailed link).
    Register {
        email: Email,
        name: String,
        verification_id: uuid::Uuid,
        now: DateTime<Utc>,
    },
    /// Attaches an order's digital goods to `customer_id`: the buyer's account, or the guest
    /// identity the checkout created ([`CustomerId::guest_of`]).
    ProvisionAccount {
        customer_id: CustomerId,
        email: Email,
        order_id: OrderId,
        now: DateTime<Utc>,
    },
    GrantRole {
        role: Role,
        now: DateTime<Utc>,
    },
    RevokeRole {
        role: Role,
        now: DateTime<Utc>,
    },
    /// Exchanges the post-purchase single-use token (identified by its id; the token itself
    /// is never stored) for a session: only for the guest identity `order_id` created, once,
    /// before the token expires.
    RedeemSignInToken {
        token_id: uuid::Uuid,
        order_id: OrderId,
        expires_at: DateTime<Utc>,
        now: DateTime<Utc>,
    },
    /// Sends a new verification link (the old one stops working).
    RequestEmailVerification {
        verification_id: uuid::Uuid,
        now: DateTime<Utc>,
    },
    VerifyEmail {
        verification_id: uuid::Uuid,
        now: DateTime<Utc>,
    },
    RequestPasswordReset {
        reset_id: uuid::Uuid,
        expires_at: DateTime<Utc>,
        now: DateTime<Utc>,
    },
    /// Uses the emailed reset link; the new hash goes to the credentials table.
    ResetPassword {
        reset_id: uuid::Uuid,
        now: DateTime<Utc>,
    },
    /// The signed-in owner changed the password (the old one was checked by the caller).
    ChangePassword {
        now: DateTime<Utc>,
    },
    Disable {
        reason: String,
        now: DateTime<Utc>,
    },
    Enable {
        now: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum CustomerEvent {
    /// v2 has no password hash (it lives in the credentials table); v1 events still carry one.
    CustomerRegistered {
        customer_id: CustomerId,
        email: Email,
        name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        password_hash: Option<PasswordHash>,
        at: DateTime<Utc>,
    },
    AccountProvisioned {
        customer_id: CustomerId,
        email: Email,
        order_id: OrderId,
        guest: bool,
        at: DateTime<Utc>,
    },
    RoleGranted {
        customer_id: CustomerId,
        role: Role,
        at: DateTime<Utc>,
    },
    RoleRevoked {
        customer_id: CustomerId,
        role: Role,
        at: DateTime<Utc>,
    },
    SignInTokenRedeemed {
        customer_id: CustomerId,
        token_id: uuid::Uuid,
        at: DateTime<Utc>,
    },
    EmailVerificationRequested {
        customer_id: CustomerId,
        verification_id: uuid::Uuid,
        email: Email,
        at: DateTime<Utc>,
    },
    EmailVerified {
        customer_id: CustomerId,
        verification_id: uuid::Uuid,
        at: DateTime<Utc>,
    },
    PasswordResetRequested {
        customer_id: CustomerId,
        reset_id: uuid::Uuid,
        email: Email,
        expires_at: DateTime<Utc>,
        at: DateTime<Utc>,
    },
    PasswordChanged {
        customer_id: CustomerId,
        how: PasswordChange,
        at: DateTime<Utc>,
    },
    AccountDisabled {
        customer_id: CustomerId,
        reason: String,
        at: DateTime<Utc>,
    },
    AccountEnabled {
        customer_id: CustomerId,
        at: DateTime<Utc>,
    },
}

impl Event for CustomerEvent {
    event_names!(
        CustomerRegistered,
        AccountProvisioned,
        RoleGranted,
        RoleRevoked,
        SignInTokenRedeemed,
        EmailVerificationRequested,
        EmailVerified,
        PasswordResetRequested,
        PasswordChanged,
        AccountDisabled,
        AccountEnabled
    );

    fn schema_version(event_type: &str) -> u16 {
        match event_type {
            "CustomerRegistered" => 2,
            _ => 1,
        }
    }

    /// v1 → v2 of `CustomerRegistered` only made the hash optional: v1 data is v2 data that
    /// still has one.
    fn upcast_step(
        event_type: &str,
        version: u16,
        data: serde_json::Value,
    ) -> Result<serde_json::Value, String> {
        match (event_type, version) {
            ("CustomerRegistered", 1) => Ok(data),
            _ => Err(format!("no upcaster from {event_type} v{version}")),
        }
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CustomerError {
    #[error("an account with this email is already registered")]
    EmailTaken,
    #[error("no such customer")]
    NotFound,
    #[error("only a registered account can hold this role")]
    NotRegistered,
    #[error("every account has the customer role")]
    RoleNotRevocable,
    #[error("this sign-in link has already been used")]
    TokenAlreadyUsed,
    #[error("this link has expired")]
    TokenExpired,
    #[error("this link is not valid")]
    TokenInvalid,
    #[error("this sign-in link cannot sign in to this account")]
    SignInNotAllowed,
    #[error("this account is disabled")]
    Disabled,
    #[error(transparent)]
    Invalid(#[from] ValueError),
}

impl DomainError for CustomerError {
    fn code(&self) -> &'static str {
        match self {
            Self::EmailTaken => "EMAIL_TAKEN",
            Self::NotFound => "CUSTOMER_NOT_FOUND",
            Self::NotRegistered => "CUSTOMER_NOT_REGISTERED",
            Self::RoleNotRevocable => "ROLE_NOT_REVOCABLE",
            Self::TokenAlreadyUsed => "TOKEN_ALREADY_USED",
            Self::TokenExpired => "TOKEN_EXPIRED",
            Self::TokenInvalid | Self::SignInNotAllowed => "INVALID_TOKEN",
            Self::Disabled => "ACCOUNT_DISABLED",
            Self::Invalid(_) => "INVALID_INPUT",
        }
    }

    fn field(&self) -> Option<&'static str> {
        match self {
            Self::EmailTaken | Self::NotRegistered => Some("email"),
            Self::RoleNotRevocable => Some("role"),
            Self::Invalid(e) => Some(e.field),
            Self::TokenAlreadyUsed
            | Self::TokenExpired
            | Self::TokenInvalid
            | Self::SignInNotAllowed => Some("token"),
            Self::NotFound | Self::Disabled => None,
        }
    }
}

pub struct Customer;

impl Aggregate for Customer {
    const CATEGORY: &'static str = "customer";
    type Id = CustomerId;
    type State = CustomerState;
    type Command = CustomerCommand;
    type Event = CustomerEvent;
    type Error = CustomerError;

    fn decide(
        state: &CustomerState,
        command: CustomerCommand,
    ) -> Result<Vec<CustomerEvent>, CustomerError> {
        decide::decide(state, command)
    }

    fn evolve(state: CustomerState, event: &CustomerEvent) -> CustomerState {
        decide::evolve(state, event)
    }
}
