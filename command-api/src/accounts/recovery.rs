//! Proving the address, recovering the password, and claiming a guest's orders.
//!
//! Every link is a signed token naming the account and the id recorded in its event
//! (`EmailVerificationRequested`, `PasswordResetRequested`); the aggregate accepts only the
//! latest id, once, so an old or used link does nothing. A password reset, or a change, ends
//! every other session of the account.

use chrono::Utc;
use purser_domain::customer::{Customer, CustomerCommand, CustomerState};
use purser_domain::notification::{AccountLink, NotificationKind};
use purser_domain::order::{Order, OrderCommand};
use purser_domain::{CustomerId, Email, OrderId};
use purser_event_store::Position;

use super::passwords::{self, Password};
use super::{Accounts, RESET_LINK_TTL, invalid_credentials};
use crate::context::CommandContext;
use crate::failure::Failure;
use crate::throttle;

/// Guest orders one claim moves at most; the answer says whether more remain.
pub const MAX_CLAIM: i64 = 200;

/// The outcome of a claim.
pub struct Claimed {
    pub orders: Vec<OrderId>,
    pub more: bool,
    pub position: Option<Position>,
}

impl Accounts {
    pub async fn verify_email(
        &self,
        ctx: &CommandContext,
        customer_id: CustomerId,
        verification_id: uuid::Uuid,
    ) -> Result<(CustomerState, Option<Position>), Failure> {
        let cmd = CustomerCommand::VerifyEmail {
            verification_id,
            now: Utc::now(),
        };
        let done = self.bus.execute::<Customer>(&customer_id, ctx, cmd).await?;
        Ok((done.state, done.position))
    }

    /// Sends a fresh verification link (throttled like sign-in, per account).
    pub async fn resend_verification(
        &self,
        ctx: &CommandContext,
        customer_id: CustomerId,
    ) -> Result<(), Failure> {
        let key = format!("verify:{customer_id}");
        throttle::check(&self.pool, std::slice::from_ref(&key)).await?;
        throttle::fail(&self.pool, &self.throttle, &key, 3).await?;
        let verification_id = uuid::Uuid::new_v4();
        let cmd = CustomerCommand::RequestEmailVerification {
            verification_id,
            now: Utc::now(),
        };
        let done = self.bus.execute::<Customer>(&customer_id, ctx, cmd).await?;
        if done.events.is_empty() {
            return Ok(()); // already verified
        }
        self.send_verification(ctx, &done.state, verification_id)
            .await
    }

    /// Emails a reset link when the address has an account. The answer is the same either
    /// way, so the call cannot be used to find out who has an account.
    pub async fn request_reset(&self, ctx: &CommandContext, email: Email) -> Result<(), Failure> {
        let key = format!("reset:{}", CustomerId::for_email(&email));
        throttle::check(&self.pool, std::slice::from_ref(&key)).await?;
        throttle::fail(&self.pool, &self.throttle, &key, 3).await?;
        let id = CustomerId::for_email(&email);
        let reset_id = uuid::Uuid::new_v4();
        let expires_at = Utc::now() + RESET_LINK_TTL;
        let cmd = CustomerCommand::RequestPasswordReset {
            reset_id,
            expires_at,
            now: Utc::now(),
        };
        match self.bus.execute::<Customer>(&id, ctx, cmd).await {
            Ok(_) => {
                let link = AccountLink {
                    customer_id: id,
                    link_id: reset_id,
                    expires_at,
                };
                self.queue_email(ctx, NotificationKind::PasswordReset, email, link)
                    .await
            }
            Err(crate::bus::CommandError::Domain(_)) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Sets a new password through an emailed link; every session of the account ends.
    pub async fn reset_password(
        &self,
        ctx: &CommandContext,
        customer_id: CustomerId,
        reset_id: uuid::Uuid,
        password: Password,
    ) -> Result<Option<Position>, Failure> {
        let phc = self.hasher.hash(password).await?;
        let cmd = CustomerCommand::ResetPassword {
            reset_id,
            now: Utc::now(),
        };
        let done = self.bus.execute::<Customer>(&customer_id, ctx, cmd).await?;
        passwords::store_hash(&self.pool, customer_id, &phc).await?;
        crate::sessions::revoke_all(&self.pool, customer_id, None, "password reset").await?;
        Ok(done.position)
    }

    /// Changes the password of the signed-in owner, who proves the current one; every other
    /// session ends.
    pub async fn change_password(
        &self,
        ctx: &CommandContext,
        customer_id: CustomerId,
        session: Option<uuid::Uuid>,
        current: Password,
        new: Password,
    ) -> Result<Option<Position>, Failure> {
        let key = format!("account:{customer_id}");
        throttle::check(&self.pool, std::slice::from_ref(&key)).await?;
        let (state, _, _) = self.bus.load::<Customer>(&customer_id).await?;
        let stored = passwords::stored_hash(&self.pool, customer_id).await?;
        let hash = stored.or_else(|| state.password_hash.as_ref().map(|h| h.as_phc().to_owned()));
        if !self.hasher.verify(current, hash).await? {
            throttle::fail(&self.pool, &self.throttle, &key, self.throttle.per_account).await?;
            return Err(invalid_credentials());
        }
        let phc = self.hasher.hash(new).await?;
        let cmd = CustomerCommand::ChangePassword { now: Utc::now() };
        let done = self.bus.execute::<Customer>(&customer_id, ctx, cmd).await?;
        passwords::store_hash(&self.pool, customer_id, &phc).await?;
        crate::sessions::revoke_all(&self.pool, customer_id, session, "password changed").await?;
        Ok(done.position)
    }

    /// Moves the guest orders placed with the account's (verified) address to the account.
    pub async fn claim_guest_orders(
        &self,
        ctx: &CommandContext,
        customer_id: CustomerId,
    ) -> Result<Claimed, Failure> {
        let (state, _, _) = self.bus.load::<Customer>(&customer_id).await?;
        let email = match (&state.email, state.registered, state.verified) {
            (Some(email), true, true) => email.clone(),
            (_, true, false) => {
                return Err(Failure::rejected(
                    None,
                    "EMAIL_NOT_VERIFIED",
                    "confirm your email address (the link we sent) before claiming orders",
                ));
            }
            _ => {
                return Err(Failure::rejected(
                    None,
                    "CUSTOMER_NOT_FOUND",
                    "no such account",
                ));
            }
        };
        let candidates: Vec<(uuid::Uuid, uuid::Uuid)> = sqlx::query_as(
            "select order_id, customer_id from sales.orders
             where email = $1 and customer_id <> $2 order by placed_at limit $3",
        )
        .bind(email.as_str())
        .bind(customer_id.as_uuid())
        .bind(MAX_CLAIM + 1)
        .fetch_all(&self.pool)
        .await
        .map_err(Failure::database)?;
        let more = candidates.len() as i64 > MAX_CLAIM;
        let mut claimed = Claimed {
            orders: vec![],
            more,
            position: None,
        };
        for (order, owner) in candidates.into_iter().take(MAX_CLAIM as usize) {
            let order_id = OrderId::from(order);
            // Only guest checkouts' orders; another account's orders are never claimable.
            if CustomerId::from(owner) != CustomerId::guest_of(order_id) {
                continue;
            }
            let cmd = OrderCommand::Claim {
                customer_id,
                email: email.clone(),
                now: Utc::now(),
            };
            let done = self.bus.execute::<Order>(&order_id, ctx, cmd).await?;
            if !done.events.is_empty() {
                claimed.orders.push(order_id);
                claimed.position = done.position.or(claimed.position);
            }
        }
        Ok(claimed)
    }
}
