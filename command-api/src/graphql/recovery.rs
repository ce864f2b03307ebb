//! Proving the address, recovering the password, and claiming a guest's orders.

use async_graphql::{Context, ID, Object, SimpleObject};
use purser_api_core::auth::{LinkPurpose, Tokens, Viewer};
use purser_api_core::errors::{UserError, unauthenticated};
use purser_api_core::wire::global_id;
use purser_domain::Email;

use super::accounts::{Account, accounts, session_check};
use super::{Rejection, command_context, settle};
use crate::accounts::Password;

/// The account after a change to it.
#[derive(SimpleObject, Default)]
pub struct AccountPayload {
    pub account: Option<Account>,
    pub position: Option<String>,
    pub user_errors: Vec<UserError>,
}

/// Asking for an email (a reset link, a new verification link). The answer is the same
/// whether or not the address has an account.
#[derive(SimpleObject, Default)]
pub struct EmailSentPayload {
    pub user_errors: Vec<UserError>,
}

/// Guest orders moved to the account.
#[derive(SimpleObject, Default)]
pub struct ClaimPayload {
    pub claimed_orders: Vec<ID>,
    /// More guest orders remain: call again.
    pub more: bool,
    pub position: Option<String>,
    pub user_errors: Vec<UserError>,
}

fn link(
    ctx: &Context<'_>,
    purpose: LinkPurpose,
    token: &str,
) -> Result<(purser_domain::CustomerId, uuid::Uuid), Rejection> {
    ctx.data_unchecked::<Tokens>()
        .verify_link(purpose, token)
        .map_err(|e| Rejection::user(Some("token"), "INVALID_TOKEN", e.to_string()))
}

fn signed_in(ctx: &Context<'_>) -> async_graphql::Result<Viewer> {
    let viewer = Viewer::from_ctx(ctx);
    match viewer.customer_id {
        Some(_) => Ok(viewer),
        None => Err(unauthenticated()),
    }
}

/// The answer to a password reset or change, which ended sessions: this process forgets
/// what it knew of them at once.
fn password_set(
    ctx: &Context<'_>,
    outcome: Result<Option<purser_event_store::Position>, Rejection>,
) -> async_graphql::Result<AccountPayload> {
    let (position, user_errors) = settle(outcome.map(Some))?;
    if user_errors.is_empty()
        && let Some(check) = session_check(ctx)
    {
        check.clear();
    }
    Ok(AccountPayload {
        account: None,
        position: position.flatten().map(|p| p.to_string()),
        user_errors,
    })
}

#[derive(Default)]
pub struct RecoveryMutation;

#[Object]
impl RecoveryMutation {
    /// Proves the address with the token from the verification email.
    async fn customer_verify_email(
        &self,
        ctx: &Context<'_>,
        token: String,
    ) -> async_graphql::Result<AccountPayload> {
        let cmd_ctx = command_context(ctx);
        let outcome: Result<_, Rejection> = async {
            let (customer, verification) = link(ctx, LinkPurpose::VerifyEmail, &token)?;
            Ok(accounts(ctx)
                .verify_email(&cmd_ctx, customer, verification)
                .await?)
        }
        .await;
        let (done, user_errors) = settle(outcome.map(Some))?;
        Ok(AccountPayload {
            account: done.as_ref().map(|(s, _)| Account::from_state(s)),
            position: done.and_then(|(_, p)| p).map(|p| p.to_string()),
            user_errors,
        })
    }

    /// Sends a new verification link to the signed-in account (a few per hour at most).
    async fn customer_resend_verification(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<EmailSentPayload> {
        let viewer = signed_in(ctx)?;
        let cmd_ctx = command_context(ctx);
        let customer = viewer.customer_id.expect("signed in");
        let outcome: Result<(), Rejection> = async {
            Ok(accounts(ctx)
                .resend_verification(&cmd_ctx, customer)
                .await?)
        }
        .await;
        let (_, user_errors) = settle(outcome.map(Some))?;
        Ok(EmailSentPayload { user_errors })
    }

    /// Emails a single-use reset link (valid for 30 minutes) when the address has an account.
    async fn customer_request_password_reset(
        &self,
        ctx: &Context<'_>,
        email: String,
    ) -> async_graphql::Result<EmailSentPayload> {
        let cmd_ctx = command_context(ctx);
        let outcome: Result<(), Rejection> = async {
            let email = Email::parse(&email)?;
            Ok(accounts(ctx).request_reset(&cmd_ctx, email).await?)
        }
        .await;
        let (_, user_errors) = settle(outcome.map(Some))?;
        Ok(EmailSentPayload { user_errors })
    }

    /// Sets a new password with the emailed reset token. Works once; every session of the
    /// account ends.
    async fn customer_reset_password(
        &self,
        ctx: &Context<'_>,
        token: String,
        new_password: String,
    ) -> async_graphql::Result<AccountPayload> {
        let cmd_ctx = command_context(ctx);
        let outcome: Result<_, Rejection> = async {
            let (customer, reset) = link(ctx, LinkPurpose::PasswordReset, &token)?;
            let password = Password::parse(new_password)?;
            Ok(accounts(ctx)
                .reset_password(&cmd_ctx, customer, reset, password)
                .await?)
        }
        .await;
        password_set(ctx, outcome)
    }

    /// Changes the signed-in account's password; every other session ends.
    async fn customer_change_password(
        &self,
        ctx: &Context<'_>,
        current_password: String,
        new_password: String,
    ) -> async_graphql::Result<AccountPayload> {
        let viewer = signed_in(ctx)?;
        let cmd_ctx = command_context(ctx);
        let customer = viewer.customer_id.expect("signed in");
        let outcome: Result<_, Rejection> = async {
            let current = Password::parse(current_password).map_err(|_| {
                Rejection::user(None, "INVALID_CREDENTIALS", "the current password is wrong")
            })?;
            let new = Password::parse(new_password)?;
            let a = accounts(ctx);
            Ok(
                a.change_password(&cmd_ctx, customer, viewer.session_id, current, new)
                    .await?,
            )
        }
        .await;
        password_set(ctx, outcome)
    }

    /// Moves the orders a guest placed with this account's verified address to the account.
    async fn customer_claim_guest_orders(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<ClaimPayload> {
        let viewer = signed_in(ctx)?;
        let cmd_ctx = command_context(ctx);
        let customer = viewer.customer_id.expect("signed in");
        let outcome: Result<crate::accounts::recovery::Claimed, Rejection> =
            async { Ok(accounts(ctx).claim_guest_orders(&cmd_ctx, customer).await?) }.await;
        let (claimed, user_errors) = settle(outcome.map(Some))?;
        Ok(match claimed {
            Some(c) => ClaimPayload {
                claimed_orders: c
                    .orders
                    .iter()
                    .map(|o| global_id("Order", &o.to_string()))
                    .collect(),
                more: c.more,
                position: c.position.map(|p| p.to_string()),
                user_errors,
            },
            None => ClaimPayload {
                user_errors,
                ..Default::default()
            },
        })
    }
}
