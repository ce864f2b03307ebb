//! Who is asking: bearer tokens (JWT, HS256) carrying a customer id and roles, and the guards
//! resolvers use.
//!
//! A request without a token is anonymous: it can browse the catalog, keep a cart and check
//! out as a guest. Customers see only their own carts, orders and licenses; `admin` may manage
//! the catalog and orders; `analyst` may read analytics; `auditor` may read history.

use std::collections::BTreeSet;
use std::time::Duration;

use async_graphql::Context;
use chrono::Utc;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use purser_domain::CustomerId;
use purser_domain::customer::Role;
use serde::{Deserialize, Serialize};

use crate::errors::{forbidden, unauthenticated};

/// The caller of a request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Viewer {
    pub customer_id: Option<CustomerId>,
    pub email: Option<String>,
    pub roles: BTreeSet<Role>,
}

impl Viewer {
    pub fn anonymous() -> Viewer {
        Viewer::default()
    }

    pub fn from_ctx(ctx: &Context<'_>) -> Viewer {
        ctx.data_opt::<Viewer>().cloned().unwrap_or_default()
    }

    pub fn is(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    pub fn is_signed_in(&self) -> bool {
        self.customer_id.is_some()
    }

    /// Fails unless the viewer has `role` (or is an admin, who may do everything).
    pub fn require(&self, role: Role) -> async_graphql::Result<()> {
        if self.is(role) || self.is(Role::Admin) {
            return Ok(());
        }
        if !self.is_signed_in() {
            return Err(unauthenticated());
        }
        Err(forbidden(format!(
            "this needs the {} role",
            role_name(role)
        )))
    }

    /// Fails unless the viewer has one of `roles` (admins always pass).
    pub fn require_any(&self, roles: &[Role]) -> async_graphql::Result<()> {
        if roles.iter().any(|r| self.is(*r)) || self.is(Role::Admin) {
            return Ok(());
        }
        if !self.is_signed_in() {
            return Err(unauthenticated());
        }
        let names: Vec<&str> = roles.iter().map(|r| role_name(*r)).collect();
        Err(forbidden(format!(
            "this needs one of the roles: {}",
            names.join(", ")
        )))
    }

    /// Whether the viewer may read data belonging to `owner`: their own, or staff's.
    pub fn may_read_customer(&self, owner: Option<CustomerId>) -> bool {
        self.is(Role::Admin)
            || self.is(Role::Auditor)
            || (owner.is_some() && owner == self.customer_id)
    }

    /// The actor recorded in event metadata.
    pub fn actor(&self) -> String {
        match (self.customer_id, self.is(Role::Admin)) {
            (Some(id), true) => format!("admin:{id}"),
            (Some(id), false) => format!("customer:{id}"),
            (None, _) => "anonymous".to_string(),
        }
    }
}

pub fn role_name(r: Role) -> &'static str {
    match r {
        Role::Customer => "customer",
        Role::Admin => "admin",
        Role::Analyst => "analyst",
        Role::Auditor => "auditor",
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Claims {
    sub: String,
    email: String,
    roles: Vec<Role>,
    iat: i64,
    exp: i64,
    iss: String,
}

/// Claims of a purpose-bound token (not a session): an order-status capability, or a
/// single-use sign-in token. `typ` keeps one kind from being used as another.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct PurposeClaims {
    typ: String,
    sub: String,
    jti: uuid::Uuid,
    iat: i64,
    exp: i64,
    iss: String,
}

const ORDER_STATUS: &str = "order-status";
const SIGN_IN: &str = "sign-in";

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token has expired; sign in again")]
    Expired,
    #[error("the token is not valid")]
    Invalid,
}

/// Signs and checks bearer tokens.
#[derive(Clone)]
pub struct Tokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    ttl: Duration,
}

const ISSUER: &str = "purser";

impl Tokens {
    /// `secret` must be at least 32 bytes.
    pub fn new(secret: &[u8], ttl: Duration) -> Tokens {
        Tokens {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            ttl,
        }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    pub fn issue(&self, customer_id: CustomerId, email: &str, roles: &BTreeSet<Role>) -> String {
        let now = Utc::now().timestamp();
        let claims = Claims {
            sub: customer_id.to_string(),
            email: email.to_owned(),
            roles: roles.iter().copied().collect(),
            iat: now,
            exp: now + self.ttl.as_secs() as i64,
            iss: ISSUER.to_owned(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .expect("HS256 signing cannot fail")
    }

    pub fn verify(&self, token: &str) -> Result<Viewer, TokenError> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.leeway = 5;
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation).map_err(
            |e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
                _ => TokenError::Invalid,
            },
        )?;
        let customer_id = data
            .claims
            .sub
            .parse::<CustomerId>()
            .map_err(|_| TokenError::Invalid)?;
        Ok(Viewer {
            customer_id: Some(customer_id),
            email: Some(data.claims.email),
            roles: data.claims.roles.into_iter().collect(),
        })
    }
}

impl Tokens {
    fn issue_purpose(
        &self,
        typ: &str,
        sub: String,
        jti: uuid::Uuid,
        ttl: Duration,
    ) -> (String, chrono::DateTime<Utc>) {
        let now = Utc::now();
        let exp = now + chrono::Duration::from_std(ttl).unwrap_or_default();
        let claims = PurposeClaims {
            typ: typ.to_owned(),
            sub,
            jti,
            iat: now.timestamp(),
            exp: exp.timestamp(),
            iss: ISSUER.to_owned(),
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .expect("HS256 signing cannot fail");
        (token, exp)
    }

    fn verify_purpose(&self, typ: &str, token: &str) -> Result<PurposeClaims, TokenError> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.leeway = 5;
        let claims =
            jsonwebtoken::decode::<PurposeClaims>(token.trim(), &self.decoding, &validation)
                .map_err(|e| match e.kind() {
                    jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
                    _ => TokenError::Invalid,
                })?
                .claims;
        if claims.typ != typ {
            return Err(TokenError::Invalid);
        }
        Ok(claims)
    }

    /// A capability to follow one order's status without signing in (what a guest gets back
    /// from checkout). Valid for 30 days.
    pub fn issue_order_status(&self, order_id: purser_domain::OrderId) -> String {
        let jti = purser_domain::derive_id(&["order-status", &order_id.to_string()]);
        self.issue_purpose(
            ORDER_STATUS,
            order_id.to_string(),
            jti,
            Duration::from_secs(30 * 86_400),
        )
        .0
    }

    pub fn verify_order_status(
        &self,
        token: &str,
        order_id: purser_domain::OrderId,
    ) -> Result<(), TokenError> {
        let claims = self.verify_purpose(ORDER_STATUS, token)?;
        if claims.sub == order_id.to_string() {
            Ok(())
        } else {
            Err(TokenError::Invalid)
        }
    }

    /// A single-use sign-in token for the customer of a fulfilled order (the post-purchase
    /// auto-login), valid for ten minutes. Its id is fixed per order, so however often it is asked
    /// for, one exchange is all there is.
    pub fn issue_sign_in(
        &self,
        customer_id: CustomerId,
        order_id: purser_domain::OrderId,
    ) -> (String, chrono::DateTime<Utc>) {
        let jti = purser_domain::derive_id(&["sign-in", &order_id.to_string()]);
        self.issue_purpose(
            SIGN_IN,
            customer_id.to_string(),
            jti,
            Duration::from_secs(600),
        )
    }

    /// The customer, token id and expiry of a valid sign-in token.
    pub fn verify_sign_in(
        &self,
        token: &str,
    ) -> Result<(CustomerId, uuid::Uuid, chrono::DateTime<Utc>), TokenError> {
        let claims = self.verify_purpose(SIGN_IN, token)?;
        let customer_id = claims
            .sub
            .parse::<CustomerId>()
            .map_err(|_| TokenError::Invalid)?;
        let exp =
            chrono::DateTime::<Utc>::from_timestamp(claims.exp, 0).ok_or(TokenError::Invalid)?;
        Ok((customer_id, claims.jti, exp))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn purpose_tokens_cannot_stand_in_for_each_other_or_for_sessions() {
        let t = tokens(60);
        let order = purser_domain::OrderId::new();
        let status = t.issue_order_status(order);
        assert!(t.verify_order_status(&status, order).is_ok());
        assert!(
            t.verify_order_status(&status, purser_domain::OrderId::new())
                .is_err()
        );
        assert!(t.verify_sign_in(&status).is_err());
        assert!(
            t.verify(&status).is_err(),
            "a status token is not a session"
        );
        let (sign_in, _) = t.issue_sign_in(CustomerId::new(), order);
        assert!(t.verify_sign_in(&sign_in).is_ok());
        assert!(
            t.verify(&sign_in).is_err(),
            "a sign-in token is not a session"
        );
        let session = t.issue(CustomerId::new(), "a@b.co", &BTreeSet::new());
        assert!(t.verify_sign_in(&session).is_err());
    }

    fn tokens(ttl: u64) -> Tokens {
        Tokens::new(
            b"0123456789abcdef0123456789abcdef",
            Duration::from_secs(ttl),
        )
    }

    #[test]
    fn tokens_round_trip_and_expire() {
        let id = CustomerId::new();
        let roles: BTreeSet<Role> = [Role::Customer, Role::Analyst].into();
        let v = tokens(60)
            .verify(&tokens(60).issue(id, "a@b.co", &roles))
            .unwrap();
        assert_eq!(v.customer_id, Some(id));
        assert!(v.is(Role::Analyst) && !v.is(Role::Admin));
        assert_eq!(tokens(60).verify("garbage"), Err(TokenError::Invalid));
        let other = Tokens::new(b"another-secret-another-secret-xx", Duration::from_secs(60));
        assert_eq!(
            other.verify(&tokens(60).issue(id, "a@b.co", &roles)),
            Err(TokenError::Invalid)
        );
    }

    #[test]
    fn guards_distinguish_anonymous_from_forbidden() {
        let anon = Viewer::anonymous();
        assert!(anon.require(Role::Admin).is_err());
        let customer = Viewer {
            customer_id: Some(CustomerId::new()),
            email: None,
            roles: [Role::Customer].into(),
        };
        assert!(customer.require(Role::Admin).is_err());
        assert!(customer.may_read_customer(customer.customer_id));
        assert!(!customer.may_read_customer(Some(CustomerId::new())));
        let admin = Viewer {
            customer_id: Some(CustomerId::new()),
            email: None,
            roles: [Role::Admin].into(),
        };
        assert!(admin.require(Role::Analyst).is_ok());
        assert!(admin.may_read_customer(Some(CustomerId::new())));
    }
}
