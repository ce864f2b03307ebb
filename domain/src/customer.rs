//! Customer: an account, stream `customer-<uuid>` where the id is [`CustomerId::for_email`].
//!
//! Because the id comes from the email address, a guest provisioned at checkout and the same
//! person registering later share one stream: registering claims the guest account.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use crate::{Aggregate, CustomerId, DomainError, Email, Event, OrderId, ValueError, bounded_text};

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
    /// Has a password: the person signed up.
    pub registered: bool,
    /// Was created for an order (possibly as a guest).
    pub provisioned: bool,
    pub email: Option<Email>,
    pub name: Option<String>,
    pub password_hash: Option<PasswordHash>,
    pub roles: BTreeSet<Role>,
    pub provisioned_for_orders: BTreeSet<OrderId>,
    /// Single-use sign-in tokens already exchanged for a session and not yet expired, with
    /// their expiry (None for tokens redeemed before schema v2 recorded it: kept for good).
    /// An expired token is refused as expired anyway, so remembering it would only grow the
    /// state with every sign-in.
    #[serde(default)]
    pub redeemed_sign_in_tokens: BTreeMap<uuid::Uuid, Option<DateTime<Utc>>>,
    /// The latest expiry among the tokens forgotten. A token that expires no later is refused
    /// as expired even if the deciding process's clock says otherwise: its redemption may
    /// have been forgotten.
    #[serde(default)]
    pub sign_in_tokens_forgotten_through: Option<DateTime<Utc>>,
}

impl CustomerState {
    pub fn exists(&self) -> bool {
        self.registered || self.provisioned
    }
}

#[derive(Debug, Clone, PartialEq, strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum CustomerCommand {
    Register {
        email: Email,
        name: String,
        password_hash: PasswordHash,
        now: DateTime<Utc>,
    },
    ProvisionAccount {
        email: Email,
        order_id: OrderId,
        guest: bool,
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
    /// Exchanges a single-use sign-in token (identified by its id; the token itself is never
    /// stored) for a session. Works once, and only before the token expires.
    RedeemSignInToken {
        token_id: uuid::Uuid,
        expires_at: DateTime<Utc>,
        now: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum CustomerEvent {
    CustomerRegistered {
        customer_id: CustomerId,
        email: Email,
        name: String,
        password_hash: PasswordHash,
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
    /// Schema v2; v1 did not record `expires_at`.
    SignInTokenRedeemed {
        customer_id: CustomerId,
        token_id: uuid::Uuid,
        expires_at: Option<DateTime<Utc>>,
        at: DateTime<Utc>,
    },
}

impl Event for CustomerEvent {
    event_names!(
        CustomerRegistered,
        AccountProvisioned,
        RoleGranted,
        RoleRevoked,
        SignInTokenRedeemed
    );

    fn schema_version(event_type: &str) -> u16 {
        match event_type {
            "SignInTokenRedeemed" => 2,
            _ => 1,
        }
    }

    fn upcast_step(event_type: &str, version: u16, data: Value) -> Result<Value, String> {
        match (event_type, version) {
            // v1 -> v2: the token's expiry is recorded so that the state can forget it once
            // it has passed. A v1 redemption's expiry is unknown, so it stays remembered.
            ("SignInTokenRedeemed", 1) => {
                let Value::Object(mut fields) = data else {
                    return Err("expected a JSON object".into());
                };
                fields.insert("expires_at".into(), Value::Null);
                Ok(Value::Object(fields))
            }
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
    #[error("every account has the customer role")]
    RoleNotRevocable,
    #[error("this sign-in link has already been used")]
    TokenAlreadyUsed,
    #[error("this sign-in link has expired")]
    TokenExpired,
    #[error(transparent)]
    Invalid(#[from] ValueError),
}

impl DomainError for CustomerError {
    fn code(&self) -> &'static str {
        match self {
            Self::EmailTaken => "EMAIL_TAKEN",
            Self::NotFound => "CUSTOMER_NOT_FOUND",
            Self::RoleNotRevocable => "ROLE_NOT_REVOCABLE",
            Self::TokenAlreadyUsed => "TOKEN_ALREADY_USED",
            Self::TokenExpired => "TOKEN_EXPIRED",
            Self::Invalid(_) => "INVALID_INPUT",
        }
    }

    fn field(&self) -> Option<&'static str> {
        match self {
            Self::EmailTaken => Some("email"),
            Self::RoleNotRevocable => Some("role"),
            Self::Invalid(e) => Some(e.field),
            Self::TokenAlreadyUsed | Self::TokenExpired => Some("token"),
            Self::NotFound => None,
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
        use CustomerEvent::*;
        match command {
            CustomerCommand::Register { email, name, password_hash, now } => {
                // A guest account provisioned at checkout has no password yet; registering
                // claims it. Only a second registration is a clash.
                if state.registered {
                    return Err(CustomerError::EmailTaken);
                }
                let name = bounded_text("name", &name, 200, true)?;
                Ok(vec![CustomerRegistered {
                    customer_id: CustomerId::for_email(&email),
                    email,
                    name,
                    password_hash,
                    at: now,
                }])
            }
            CustomerCommand::ProvisionAccount { email, order_id, guest, now } => {
                if state.provisioned_for_orders.contains(&order_id) {
                    return Ok(vec![]);
                }
                Ok(vec![AccountProvisioned {
                    customer_id: CustomerId::for_email(&email),
                    email,
                    order_id,
                    guest,
                    at: now,
                }])
            }
            CustomerCommand::GrantRole { role, now } => {
                if !state.exists() {
                    return Err(CustomerError::NotFound);
                }
                if state.roles.contains(&role) {
                    return Ok(vec![]);
                }
                Ok(vec![RoleGranted { customer_id: state.customer_id, role, at: now }])
            }
            CustomerCommand::RevokeRole { role, now } => {
                if !state.exists() {
                    return Err(CustomerError::NotFound);
                }
                if role == Role::Customer {
                    return Err(CustomerError::RoleNotRevocable);
                }
                if !state.roles.contains(&role) {
                    return Ok(vec![]);
                }
                Ok(vec![RoleRevoked { customer_id: state.customer_id, role, at: now }])
            }
            CustomerCommand::RedeemSignInToken { token_id, expires_at, now } => {
                if !state.exists() {
                    return Err(CustomerError::NotFound);
                }
                if state.redeemed_sign_in_tokens.contains_key(&token_id) {
                    return Err(CustomerError::TokenAlreadyUsed);
                }
                let forgotten = state.sign_in_tokens_forgotten_through;
                if now >= expires_at || forgotten.is_some_and(|through| expires_at <= through) {
                    return Err(CustomerError::TokenExpired);
                }
                Ok(vec![SignInTokenRedeemed {
                    customer_id: state.customer_id,
                    token_id,
                    expires_at: Some(expires_at),
                    at: now,
                }])
            }
        }
    }

    fn evolve(mut state: CustomerState, event: &CustomerEvent) -> CustomerState {
        use CustomerEvent::*;
        match event {
            CustomerRegistered { customer_id, email, name, password_hash, .. } => {
                state.customer_id = *customer_id;
                state.registered = true;
                state.email = Some(email.clone());
                state.name = Some(name.clone());
                state.password_hash = Some(password_hash.clone());
                state.roles.insert(Role::Customer);
            }
            AccountProvisioned { customer_id, email, order_id, .. } => {
                state.customer_id = *customer_id;
                state.provisioned = true;
                state.email.get_or_insert_with(|| email.clone());
                state.provisioned_for_orders.insert(*order_id);
                state.roles.insert(Role::Customer);
            }
            RoleGranted { role, .. } => {
                state.roles.insert(*role);
            }
            RoleRevoked { role, .. } => {
                state.roles.remove(role);
            }
            SignInTokenRedeemed { token_id, expires_at, at, .. } => {
                state.redeemed_sign_in_tokens.insert(*token_id, *expires_at);
                // The stream's own clock decides what has expired, so every fold agrees.
                let mut through = state.sign_in_tokens_forgotten_through;
                state.redeemed_sign_in_tokens.retain(|_, expiry| match expiry {
                    Some(e) if *e <= *at => {
                        through = through.max(Some(*e));
                        false
                    }
                    _ => true,
                });
                state.sign_in_tokens_forgotten_through = through;
            }
        }
        state
    }
}

#[cfg(test)]
mod tests {
    use super::CustomerEvent::*;
    use super::*;
    use crate::aggregate::testing::given;
    use crate::test_support::{email, t};

    fn ann() -> Email {
        email("ann@example.com")
    }

    fn hash() -> PasswordHash {
        PasswordHash::from_phc("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA").unwrap()
    }

    fn order(n: &str) -> OrderId {
        OrderId::derived(&["test-order", n])
    }

    fn register() -> CustomerCommand {
        CustomerCommand::Register {
            email: ann(),
            name: " Ann ".into(),
            password_hash: hash(),
            now: t(0),
        }
    }

    fn registered() -> CustomerEvent {
        CustomerRegistered {
            customer_id: CustomerId::for_email(&ann()),
            email: ann(),
            name: "Ann".into(),
            password_hash: hash(),
            at: t(0),
        }
    }

    fn provisioned(n: &str, guest: bool) -> CustomerEvent {
        AccountProvisioned {
            customer_id: CustomerId::for_email(&ann()),
            email: ann(),
            order_id: order(n),
            guest,
            at: t(1),
        }
    }

    fn provision(n: &str) -> CustomerCommand {
        CustomerCommand::ProvisionAccount {
            email: ann(),
            order_id: order(n),
            guest: true,
            now: t(1),
        }
    }

    #[test]
    fn register_creates_or_claims_a_guest_account() {
        given::<Customer>([]).when(register()).then([registered()]);
        given::<Customer>([provisioned("1", true)]).when(register()).then([registered()]);
        let err = given::<Customer>([registered()]).when(register()).result().unwrap_err();
        assert_eq!((err.code(), err.field()), ("EMAIL_TAKEN", Some("email")));
        let state = given::<Customer>([provisioned("1", true), registered()]).state().clone();
        assert!(state.registered && state.roles.contains(&Role::Customer));
    }

    #[test]
    fn provision_once_per_order() {
        given::<Customer>([]).when(provision("1")).then([provisioned("1", true)]);
        given::<Customer>([provisioned("1", true)]).when(provision("1")).then([]);
        given::<Customer>([registered(), provisioned("1", true)])
            .when(provision("2"))
            .then([provisioned("2", true)]);
        let state = given::<Customer>([provisioned("1", true)]).state().clone();
        assert_eq!(state.roles, BTreeSet::from([Role::Customer]));
    }

    #[test]
    fn roles_are_granted_and_revoked_idempotently() {
        let grant = |role| CustomerCommand::GrantRole { role, now: t(2) };
        let revoke = |role| CustomerCommand::RevokeRole { role, now: t(3) };
        let id = CustomerId::for_email(&ann());
        let granted = RoleGranted { customer_id: id, role: Role::Admin, at: t(2) };
        given::<Customer>([registered()]).when(grant(Role::Admin)).then([granted.clone()]);
        given::<Customer>([registered(), granted.clone()]).when(grant(Role::Admin)).then([]);
        given::<Customer>([registered()]).when(grant(Role::Customer)).then([]);
        given::<Customer>([]).when(grant(Role::Admin)).then_error("CUSTOMER_NOT_FOUND");
        given::<Customer>([registered(), granted]).when(revoke(Role::Admin)).then([RoleRevoked {
            customer_id: id,
            role: Role::Admin,
            at: t(3),
        }]);
        given::<Customer>([registered()]).when(revoke(Role::Auditor)).then([]);
        given::<Customer>([registered()])
            .when(revoke(Role::Customer))
            .then_error("ROLE_NOT_REVOCABLE");
        given::<Customer>([]).when(revoke(Role::Admin)).then_error("CUSTOMER_NOT_FOUND");
    }

    #[test]
    fn password_hashes_are_redacted_and_validated() {
        assert_eq!(format!("{:?}", hash()), "PasswordHash(<redacted>)");
        assert!(!format!("{:?}", registered()).contains("argon2"));
        assert!(PasswordHash::from_phc("hunter2").is_err());
        assert!(PasswordHash::from_phc("$argon2id$ with space").is_err());
        assert_eq!(serde_json::to_value(Role::Analyst).unwrap(), "analyst");
    }

    #[test]
    fn a_sign_in_token_works_once_and_not_after_it_expires() {
        let token_id = uuid::Uuid::from_u128(7);
        let redeem = |now| CustomerCommand::RedeemSignInToken { token_id, expires_at: t(10), now };
        given::<Customer>([]).when(redeem(t(1))).then_error("CUSTOMER_NOT_FOUND");
        let provisioned = AccountProvisioned {
            customer_id: CustomerId::for_email(&ann()),
            email: ann(),
            order_id: OrderId::derived(&["o"]),
            guest: true,
            at: t(0),
        };
        given::<Customer>([provisioned.clone()]).when(redeem(t(11))).then_error("TOKEN_EXPIRED");
        let used = SignInTokenRedeemed {
            customer_id: CustomerId::for_email(&ann()),
            token_id,
            expires_at: Some(t(10)),
            at: t(1),
        };
        given::<Customer>([provisioned.clone()]).when(redeem(t(1))).then([used.clone()]);
        given::<Customer>([provisioned, used]).when(redeem(t(2))).then_error("TOKEN_ALREADY_USED");
    }

    #[test]
    fn redeemed_tokens_are_forgotten_once_expired_and_stay_refused() {
        let provisioned = AccountProvisioned {
            customer_id: CustomerId::for_email(&ann()),
            email: ann(),
            order_id: OrderId::derived(&["o"]),
            guest: true,
            at: t(0),
        };
        let redeemed = |n: u128, at: i64| SignInTokenRedeemed {
            customer_id: CustomerId::for_email(&ann()),
            token_id: uuid::Uuid::from_u128(n),
            expires_at: Some(t(at + 15)),
            at: t(at),
        };
        // A sign-in every ten minutes for a week: only the unexpired ones are remembered.
        let mut history = vec![provisioned];
        history.extend((0..1_008).map(|i| redeemed(i, i as i64 * 10)));
        let state = given::<Customer>(history.clone()).state().clone();
        assert_eq!(state.redeemed_sign_in_tokens.len(), 2);
        // The first token, forgotten, is still refused, even by a process whose clock is slow.
        let again = CustomerCommand::RedeemSignInToken {
            token_id: uuid::Uuid::from_u128(0),
            expires_at: t(15),
            now: t(5),
        };
        given::<Customer>(history).when(again).then_error("TOKEN_EXPIRED");
    }

    #[test]
    fn sign_in_token_redeemed_v1_is_upcast_and_kept() {
        let v1 = serde_json::json!({
            "customer_id": CustomerId::for_email(&ann()),
            "token_id": uuid::Uuid::from_u128(9),
            "at": "2025-03-01T12:00:00Z"
        });
        let event = CustomerEvent::decode("SignInTokenRedeemed", 1, v1).unwrap();
        assert_eq!(
            event,
            SignInTokenRedeemed {
                customer_id: CustomerId::for_email(&ann()),
                token_id: uuid::Uuid::from_u128(9),
                expires_at: None,
                at: t(0),
            }
        );
        assert_eq!(event.encode().1, 2);
        let later = SignInTokenRedeemed {
            customer_id: CustomerId::for_email(&ann()),
            token_id: uuid::Uuid::from_u128(10),
            expires_at: Some(t(10_000)),
            at: t(9_000),
        };
        let state = Customer::fold(&[event, later]);
        assert!(state.redeemed_sign_in_tokens.contains_key(&uuid::Uuid::from_u128(9)));
    }
}
