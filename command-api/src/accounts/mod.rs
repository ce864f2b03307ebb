//! Customer accounts: sign-up, sign-in, sessions, roles, and the guest/account boundary.
//!
//! Guests and accounts are different things. A guest checkout has its own identity
//! ([`CustomerId::guest_of`]); its post-purchase token signs in to that identity only, once.
//! A registered account proves its address with an emailed link before it can claim a guest's
//! orders ([`recovery`]). Staff roles are granted only by an admin or `purser user add`, and
//! only to registered accounts. Password hashes live in `purser.credentials` (never in an
//! event); sessions in `purser.sessions` ([`crate::sessions`]); failed sign-ins are throttled
//! per account and per client address ([`crate::throttle`]).

pub mod passwords;
pub mod recovery;

use std::net::IpAddr;

use chrono::Utc;
use purser_domain::customer::{Customer, CustomerCommand, CustomerState, Role};
use purser_domain::notification::{
    AccountLink, Notification, NotificationCommand, NotificationKind,
};
use purser_domain::{CustomerId, Email, NotificationId, bounded_text};
use purser_event_store::Position;
use sqlx::PgPool;

use crate::bus::CommandBus;
use crate::context::CommandContext;
use crate::failure::Failure;
use crate::sessions::SessionPolicy;
use crate::throttle::{self, ThrottlePolicy};
pub use passwords::{Hasher, PASSWORD_MAX, PASSWORD_MIN, Password};

/// How long an emailed verification link works.
pub const VERIFY_LINK_TTL: chrono::Duration = chrono::Duration::days(3);
/// How long an emailed password-reset link works.
pub const RESET_LINK_TTL: chrono::Duration = chrono::Duration::minutes(30);

/// Everything account operations need beside the command bus.
#[derive(Clone)]
pub struct Accounts {
    pub bus: CommandBus,
    pub pool: PgPool,
    pub hasher: Hasher,
    pub sessions: SessionPolicy,
    pub throttle: ThrottlePolicy,
}

fn invalid_credentials() -> Failure {
    Failure::rejected(
        None,
        "INVALID_CREDENTIALS",
        "the email or the password is wrong",
    )
}

impl Accounts {
    /// Signs a customer up and sends the verification email. The account starts unverified:
    /// it sees its own data, and no guest's orders until it has proved the address.
    pub async fn register(
        &self,
        ctx: &CommandContext,
        email: Email,
        name: &str,
        password: Password,
    ) -> Result<(CustomerState, Option<Position>), Failure> {
        let (state, position, verification_id) = self.create(ctx, email, name, password).await?;
        self.send_verification(ctx, &state, verification_id).await?;
        Ok((state, position))
    }

    /// An account an operator creates (`purser user add`, the demo staff): the operator
    /// vouches for the address, so no verification email goes out.
    pub async fn add_verified(
        &self,
        ctx: &CommandContext,
        email: Email,
        name: &str,
        password: Password,
    ) -> Result<(CustomerState, Option<Position>), Failure> {
        let (state, _, verification_id) = self.create(ctx, email, name, password).await?;
        self.verify_email(ctx, state.customer_id, verification_id)
            .await
    }

    async fn create(
        &self,
        ctx: &CommandContext,
        email: Email,
        name: &str,
        password: Password,
    ) -> Result<(CustomerState, Option<Position>, uuid::Uuid), Failure> {
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
        let (existing, _, _) = self.bus.load::<Customer>(&id).await?;
        if existing.registered {
            return Err(email_taken());
        }
        let phc = self.hasher.hash(password).await?;
        let verification_id = uuid::Uuid::new_v4();
        let cmd = CustomerCommand::Register {
            email,
            name,
            verification_id,
            now: Utc::now(),
        };
        let done = self.bus.execute::<Customer>(&id, ctx, cmd).await?;
        // The account exists only once its event is in: a losing racer never touches the
        // winner's credentials. Should this process stop right here, the owner resets the
        // password through the emailed link.
        passwords::store_hash(&self.pool, id, &phc).await?;
        Ok((done.state, done.position, verification_id))
    }

    /// Queues the verification email for `verification_id` (once: its id is derived).
    async fn send_verification(
        &self,
        ctx: &CommandContext,
        state: &CustomerState,
        verification_id: uuid::Uuid,
    ) -> Result<(), Failure> {
        let to = state
            .email
            .clone()
            .ok_or_else(|| Failure::internal("account without email"))?;
        let link = AccountLink {
            customer_id: state.customer_id,
            link_id: verification_id,
            expires_at: Utc::now() + VERIFY_LINK_TTL,
        };
        self.queue_email(ctx, NotificationKind::VerifyEmail, to, link)
            .await
    }

    async fn queue_email(
        &self,
        ctx: &CommandContext,
        kind: NotificationKind,
        to: Email,
        link: AccountLink,
    ) -> Result<(), Failure> {
        let id = NotificationId::derived(&["account", kind.as_str(), &link.link_id.to_string()]);
        let cmd = NotificationCommand::Queue {
            notification_id: id,
            kind,
            to,
            order_id: None,
            license_id: None,
            account: Some(link),
            now: Utc::now(),
        };
        self.bus.execute::<Notification>(&id, ctx, cmd).await?;
        Ok(())
    }

    /// Checks credentials, throttled per account and per client address. Unknown addresses,
    /// wrong passwords and disabled accounts get the same answer after the same work.
    pub async fn sign_in(
        &self,
        email: Email,
        password: Password,
        client: Option<IpAddr>,
    ) -> Result<(CustomerState, Option<Position>), Failure> {
        let account_key = throttle::account_key(&email);
        let client_key = throttle::client_key(client);
        let keys: Vec<String> = std::iter::once(account_key.clone())
            .chain(client_key.clone())
            .collect();
        throttle::check(&self.pool, &keys).await?;
        let id = CustomerId::for_email(&email);
        let (state, _, position) = self.bus.load::<Customer>(&id).await?;
        let stored = passwords::stored_hash(&self.pool, id).await?;
        let legacy = stored.is_none() && state.password_hash.is_some();
        let hash = stored.or_else(|| state.password_hash.as_ref().map(|h| h.as_phc().to_owned()));
        let phc = hash.clone();
        if self.hasher.verify(password, hash).await? && state.registered && !state.disabled {
            throttle::succeed(&self.pool, &account_key).await?;
            if legacy {
                // Accounts from before credentials left the log: move the hash over once.
                if let Some(phc) = phc {
                    passwords::store_hash(&self.pool, id, &phc).await?;
                }
            }
            return Ok((state, position));
        }
        throttle::fail(
            &self.pool,
            &self.throttle,
            &account_key,
            self.throttle.per_account,
        )
        .await?;
        if let Some(key) = client_key {
            throttle::fail(&self.pool, &self.throttle, &key, self.throttle.per_client).await?;
        }
        Err(invalid_credentials())
    }

    /// Exchanges a verified post-purchase token for the guest identity it was made for. The
    /// customer aggregate refuses it for any other identity, a registered or staff account,
    /// a second time, or after it expired.
    pub async fn redeem_sign_in(
        &self,
        ctx: &CommandContext,
        grant: purser_api_core::auth::SignInGrant,
    ) -> Result<(CustomerState, Option<Position>), Failure> {
        if grant.customer_id != CustomerId::guest_of(grant.order_id) {
            return Err(Failure::rejected(
                Some("token"),
                "INVALID_TOKEN",
                "this link is not valid",
            ));
        }
        let cmd = CustomerCommand::RedeemSignInToken {
            token_id: grant.token_id,
            order_id: grant.order_id,
            expires_at: grant.expires_at,
            now: Utc::now(),
        };
        let done = self
            .bus
            .execute::<Customer>(&grant.customer_id, ctx, cmd)
            .await?;
        Ok((done.state, done.position))
    }

    /// An admin's change to the account with this email. A staff role can only go to a
    /// registered account (the aggregate's rule); disabling ends every session at once.
    pub async fn administer(
        &self,
        ctx: &CommandContext,
        email: &Email,
        change: StaffChange,
    ) -> Result<Option<Position>, Failure> {
        let id = CustomerId::for_email(email);
        let (state, _, _) = self.bus.load::<Customer>(&id).await?;
        if !state.exists() {
            return Err(no_account());
        }
        let now = Utc::now();
        let disabling = matches!(change, StaffChange::Disable(_));
        let cmd = match change {
            StaffChange::Grant(role) => CustomerCommand::GrantRole { role, now },
            StaffChange::Revoke(role) => CustomerCommand::RevokeRole { role, now },
            StaffChange::Disable(reason) => CustomerCommand::Disable { reason, now },
            StaffChange::Enable => CustomerCommand::Enable { now },
        };
        let done = self.bus.execute::<Customer>(&id, ctx, cmd).await?;
        if disabling {
            crate::sessions::revoke_all(&self.pool, id, None, "account disabled").await?;
        }
        Ok(done.position)
    }
}

/// What an admin (or `purser user add`) may change about an account.
#[derive(Debug, Clone, PartialEq)]
pub enum StaffChange {
    Grant(Role),
    Revoke(Role),
    Disable(String),
    Enable,
}

fn email_taken() -> Failure {
    Failure::rejected(
        Some("email"),
        "EMAIL_TAKEN",
        "an account with this email already exists",
    )
}

fn no_account() -> Failure {
    Failure::rejected(
        Some("email"),
        "CUSTOMER_NOT_FOUND",
        "no account with this email",
    )
}
