//! Who is asking: bearer tokens (JWT, HS256) naming a customer and a session, the
//! purpose-bound tokens emails and checkouts hand out, and the guards resolvers use.
//!
//! An access token is short-lived and names its session ([`crate::sessions`]): a request is
//! only served while that session is live, and its roles are read from the account at request
//! time (cached briefly), so signing out, a password change, a disabled account or a revoked
//! role ends access within the cache's lifetime, not at the token's expiry.
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
    /// The session the access token belongs to.
    pub session_id: Option<uuid::Uuid>,
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

/// The address a request came from (after `PURSER_CLIENT_IP_HEADER`), for sign-in throttling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub std::net::IpAddr);

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
    /// The session; a token without one (issued before sessions existed) is refused.
    #[serde(default)]
    sid: Option<uuid::Uuid>,
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
    /// The order a sign-in token was handed out for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ord: Option<uuid::Uuid>,
    iat: i64,
    exp: i64,
    iss: String,
}

const ORDER_STATUS: &str = "order-status";
const SIGN_IN: &str = "sign-in";

/// What an emailed link proves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkPurpose {
    VerifyEmail,
    PasswordReset,
}

impl LinkPurpose {
    fn typ(self) -> &'static str {
        match self {
            LinkPurpose::VerifyEmail => "verify-email",
            LinkPurpose::PasswordReset => "password-reset",
        }
    }
}

/// A valid post-purchase sign-in token: whom it signs in, for which order, until when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignInGrant {
    pub customer_id: CustomerId,
    pub order_id: purser_domain::OrderId,
    pub token_id: uuid::Uuid,
    pub expires_at: chrono::DateTime<Utc>,
}

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

    /// An access token for `session`.
    pub fn issue(
        &self,
        session: uuid::Uuid,
        customer_id: CustomerId,
        email: &str,
        roles: &BTreeSet<Role>,
    ) -> String {
        let now = Utc::now().timestamp();
        let claims = Claims {
            sub: customer_id.to_string(),
            email: email.to_owned(),
            roles: roles.iter().copied().collect(),
            sid: Some(session),
            iat: now,
            exp: now + self.ttl.as_secs() as i64,
            iss: ISSUER.to_owned(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .expect("HS256 signing cannot fail")
    }

    /// Checks the signature and expiry only; [`crate::sessions::SessionCheck`] also checks
    /// that the session is live and reads the account's current roles.
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
        let session_id = data.claims.sid.ok_or(TokenError::Invalid)?;
        Ok(Viewer {
            customer_id: Some(customer_id),
            email: Some(data.claims.email),
            roles: data.claims.roles.into_iter().collect(),
            session_id: Some(session_id),
        })
    }
}

impl Tokens {
    fn issue_purpose(
        &self,
        typ: &str,
        sub: String,
        jti: uuid::Uuid,
        ord: Option<uuid::Uuid>,
        exp: chrono::DateTime<Utc>,
    ) -> (String, chrono::DateTime<Utc>) {
        let now = Utc::now();
        let claims = PurposeClaims {
            typ: typ.to_owned(),
            sub,
            jti,
            ord,
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
        let exp = Utc::now() + chrono::Duration::days(30);
        self.issue_purpose(ORDER_STATUS, order_id.to_string(), jti, None, exp)
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

    /// The post-purchase single-use sign-in token of a guest checkout: it names the guest
    /// identity the checkout created and the order, and expires at `expires_at` (ten minutes
    /// after the order was fulfilled, so asking again never renews it). Its id is fixed per
    /// order, so one exchange is all there is.
    pub fn issue_sign_in(
        &self,
        customer_id: CustomerId,
        order_id: purser_domain::OrderId,
        expires_at: chrono::DateTime<Utc>,
    ) -> String {
        let jti = purser_domain::derive_id(&["sign-in", &order_id.to_string()]);
        let sub = customer_id.to_string();
        self.issue_purpose(SIGN_IN, sub, jti, Some(order_id.as_uuid()), expires_at)
            .0
    }

    pub fn verify_sign_in(&self, token: &str) -> Result<SignInGrant, TokenError> {
        let claims = self.verify_purpose(SIGN_IN, token)?;
        let customer_id = claims
            .sub
            .parse::<CustomerId>()
            .map_err(|_| TokenError::Invalid)?;
        let order_id = purser_domain::OrderId::from(claims.ord.ok_or(TokenError::Invalid)?);
        if claims.jti != purser_domain::derive_id(&["sign-in", &order_id.to_string()]) {
            return Err(TokenError::Invalid);
        }
        let expires_at =
            chrono::DateTime::<Utc>::from_timestamp(claims.exp, 0).ok_or(TokenError::Invalid)?;
        Ok(SignInGrant {
            customer_id,
            order_id,
            token_id: claims.jti,
            expires_at,
        })
    }

    /// The token in an emailed link (address verification, password reset). It is derived
    /// from the event's ids and this server's secret when the email is written, and never
    /// stored.
    pub fn issue_link(
        &self,
        purpose: LinkPurpose,
        customer_id: CustomerId,
        link_id: uuid::Uuid,
        expires_at: chrono::DateTime<Utc>,
    ) -> String {
        let sub = customer_id.to_string();
        self.issue_purpose(purpose.typ(), sub, link_id, None, expires_at)
            .0
    }

    /// The customer and link id of a valid emailed link.
    pub fn verify_link(
        &self,
        purpose: LinkPurpose,
        token: &str,
    ) -> Result<(CustomerId, uuid::Uuid), TokenError> {
        let claims = self.verify_purpose(purpose.typ(), token)?;
        let customer_id = claims
            .sub
            .parse::<CustomerId>()
            .map_err(|_| TokenError::Invalid)?;
        Ok((customer_id, claims.jti))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(ttl: u64) -> Tokens {
        Tokens::new(
            b"0123456789abcdef0123456789abcdef",
            Duration::from_secs(ttl),
        )
    }

    fn soon() -> chrono::DateTime<Utc> {
        Utc::now() + chrono::Duration::minutes(10)
    }

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
        let guest = CustomerId::guest_of(order);
        let sign_in = t.issue_sign_in(guest, order, soon());
        let grant = t.verify_sign_in(&sign_in).unwrap();
        assert_eq!((grant.customer_id, grant.order_id), (guest, order));
        assert!(
            t.verify(&sign_in).is_err(),
            "a sign-in token is not a session"
        );
        let link = t.issue_link(LinkPurpose::VerifyEmail, guest, uuid::Uuid::nil(), soon());
        assert!(t.verify_link(LinkPurpose::VerifyEmail, &link).is_ok());
        assert!(t.verify_link(LinkPurpose::PasswordReset, &link).is_err());
        assert!(t.verify(&link).is_err() && t.verify_sign_in(&link).is_err());
        let session = t.issue(
            uuid::Uuid::nil(),
            CustomerId::new(),
            "a@b.co",
            &BTreeSet::new(),
        );
        assert!(t.verify_sign_in(&session).is_err());
        assert!(t.verify_link(LinkPurpose::PasswordReset, &session).is_err());
    }

    #[test]
    fn an_expired_link_is_refused() {
        let t = tokens(60);
        let past = Utc::now() - chrono::Duration::minutes(1);
        let link = t.issue_link(
            LinkPurpose::PasswordReset,
            CustomerId::new(),
            uuid::Uuid::nil(),
            past,
        );
        assert_eq!(
            t.verify_link(LinkPurpose::PasswordReset, &link),
            Err(TokenError::Expired)
        );
    }

    #[test]
    fn tokens_round_trip_and_expire() {
        let id = CustomerId::new();
        let sid = uuid::Uuid::new_v4();
        let roles: BTreeSet<Role> = [Role::Customer, Role::Analyst].into();
        let v = tokens(60)
            .verify(&tokens(60).issue(sid, id, "a@b.co", &roles))
            .unwrap();
        assert_eq!((v.customer_id, v.session_id), (Some(id), Some(sid)));
        assert!(v.is(Role::Analyst) && !v.is(Role::Admin));
        assert_eq!(tokens(60).verify("garbage"), Err(TokenError::Invalid));
        let other = Tokens::new(b"another-secret-another-secret-xx", Duration::from_secs(60));
        assert_eq!(
            other.verify(&tokens(60).issue(sid, id, "a@b.co", &roles)),
            Err(TokenError::Invalid)
        );
    }

    #[test]
    fn guards_distinguish_anonymous_from_forbidden() {
        let anon = Viewer::anonymous();
        assert!(anon.require(Role::Admin).is_err());
        let customer = Viewer {
            customer_id: Some(CustomerId::new()),
            roles: [Role::Customer].into(),
            ..Viewer::default()
        };
        assert!(customer.require(Role::Admin).is_err());
        assert!(customer.may_read_customer(customer.customer_id));
        assert!(!customer.may_read_customer(Some(CustomerId::new())));
        let admin = Viewer {
            customer_id: Some(CustomerId::new()),
            roles: [Role::Admin].into(),
            ..Viewer::default()
        };
        assert!(admin.require(Role::Analyst).is_ok());
        assert!(admin.may_read_customer(Some(CustomerId::new())));
    }
}
