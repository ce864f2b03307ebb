//! Customer accounts: sign-up, sign-in, roles.
//!
//! Passwords are hashed with argon2id (the OWASP-recommended parameters of the `argon2`
//! crate's defaults) on a blocking thread, so hashing never stalls the async runtime. Only the
//! PHC hash string reaches an event; the password itself is dropped as soon as it is hashed
//! and never logged. Sign-in failures do not say whether the address exists, and an unknown
//! address costs the same hashing work as a wrong password.

use argon2::password_hash::{PasswordHasher, PasswordVerifier, SaltString, rand_core::OsRng};
use argon2::{Argon2, PasswordHash as Phc};
use chrono::Utc;
use purser_domain::customer::{Customer, CustomerCommand, CustomerState, PasswordHash, Role};
use purser_domain::{CustomerId, Email, bounded_text};
use purser_event_store::Position;

use crate::bus::CommandBus;
use crate::context::CommandContext;
use crate::failure::Failure;

pub const PASSWORD_MIN: usize = 8;
pub const PASSWORD_MAX: usize = 128;

/// A password that never prints.
pub struct Password(String);

impl Password {
    pub fn parse(raw: String) -> Result<Password, Failure> {
        let n = raw.chars().count();
        if !(PASSWORD_MIN..=PASSWORD_MAX).contains(&n) {
            return Err(Failure::rejected(
                Some("password"),
                "INVALID_INPUT",
                format!("a password needs {PASSWORD_MIN} to {PASSWORD_MAX} characters"),
            ));
        }
        Ok(Password(raw))
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// Hashes on a blocking thread.
pub async fn hash_password(password: Password) -> Result<PasswordHash, Failure> {
    let phc = tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(password.0.as_bytes(), &salt)
            .map(|h| h.to_string())
    })
    .await
    .map_err(|e| {
        Failure::Store(purser_event_store::StoreError::Backend(format!(
            "hashing task failed: {e}"
        )))
    })?
    .map_err(|e| {
        Failure::Store(purser_event_store::StoreError::Backend(format!(
            "hashing failed: {e}"
        )))
    })?;
    Ok(PasswordHash::from_phc(&phc)?)
}

/// Verifies on a blocking thread. With no hash (unknown account) it still does the work of
/// one verification, against a fixed dummy hash, and answers false.
pub async fn verify_password(password: Password, hash: Option<String>) -> bool {
    const DUMMY: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$0z5u9pL8yq+2lm6R6zVv7c9mAcW9rI7H6o1m1oK5vFw";
    tokio::task::spawn_blocking(move || {
        let known = hash.is_some();
        let phc = hash.unwrap_or_else(|| DUMMY.to_owned());
        let ok = Phc::new(&phc).is_ok_and(|parsed| {
            Argon2::default()
                .verify_password(password.0.as_bytes(), &parsed)
                .is_ok()
        });
        known && ok
    })
    .await
    .unwrap_or(false)
}

/// Signs a customer up. A guest provisioned at an earlier checkout claims that account.
pub async fn register(
    bus: &CommandBus,
    ctx: &CommandContext,
    email: Email,
    name: &str,
    password: Password,
) -> Result<(CustomerState, Option<Position>), Failure> {
    let name = bounded_text("name", name, 200, false)?;
    // A name is optional at sign-up; the account goes by the email's local part until set.
    let name = if name.is_empty() {
        email
            .as_str()
            .split('@')
            .next()
            .unwrap_or("customer")
            .to_owned()
    } else {
        name
    };
    let id = CustomerId::for_email(&email);
    // Refuse a taken address before spending time on hashing.
    let (existing, _, _) = bus.load::<Customer>(&id).await?;
    if existing.registered {
        return Err(Failure::rejected(
            Some("email"),
            "EMAIL_TAKEN",
            "an account with this email already exists",
        ));
    }
    let password_hash = hash_password(password).await?;
    let done = bus
        .execute::<Customer>(
            &id,
            ctx,
            CustomerCommand::Register {
                email,
                name,
                password_hash,
                now: Utc::now(),
            },
        )
        .await?;
    Ok((done.state, done.position))
}

/// Checks credentials; the same error for an unknown address and a wrong password.
pub async fn sign_in(
    bus: &CommandBus,
    email: Email,
    password: Password,
) -> Result<CustomerState, Failure> {
    let id = CustomerId::for_email(&email);
    let (state, _, _) = bus.load::<Customer>(&id).await?;
    let hash = state.password_hash.as_ref().map(|h| h.as_phc().to_owned());
    if verify_password(password, hash).await {
        Ok(state)
    } else {
        Err(Failure::rejected(
            None,
            "INVALID_CREDENTIALS",
            "the email or the password is wrong",
        ))
    }
}

/// Exchanges a verified single-use sign-in token for the customer's state (to issue a
/// session). The customer aggregate records the token id, so the second exchange fails.
pub async fn redeem_sign_in(
    bus: &CommandBus,
    ctx: &CommandContext,
    customer_id: CustomerId,
    token_id: uuid::Uuid,
    expires_at: chrono::DateTime<Utc>,
) -> Result<(CustomerState, Option<Position>), Failure> {
    let cmd = CustomerCommand::RedeemSignInToken {
        token_id,
        expires_at,
        now: Utc::now(),
    };
    let done = bus.execute::<Customer>(&customer_id, ctx, cmd).await?;
    Ok((done.state, done.position))
}

/// Grants a role to the account with this email (which must exist).
pub async fn grant_role(
    bus: &CommandBus,
    ctx: &CommandContext,
    email: &Email,
    role: Role,
) -> Result<Option<Position>, Failure> {
    let id = CustomerId::for_email(email);
    let (state, version, _) = bus.load::<Customer>(&id).await?;
    if version.is_none() || !(state.registered || state.provisioned) {
        return Err(Failure::rejected(
            Some("email"),
            "CUSTOMER_NOT_FOUND",
            "no account with this email",
        ));
    }
    Ok(bus
        .execute::<Customer>(
            &id,
            ctx,
            CustomerCommand::GrantRole {
                role,
                now: Utc::now(),
            },
        )
        .await?
        .position)
}
