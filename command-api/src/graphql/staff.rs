//! Staff administration of accounts (admins only): roles and disabling. Staff roles go only
//! to registered accounts; no customer or guest action leads to one.

use async_graphql::{Context, Object, SimpleObject};
use purser_api_core::errors::UserError;
use purser_domain::Email;

use super::accounts::{RoleName, accounts, session_check};
use super::{Rejection, command_context, require_admin, settle};
use crate::accounts::StaffChange;

/// The result of a change to an account.
#[derive(SimpleObject, Default)]
pub struct RolePayload {
    pub position: Option<String>,
    pub user_errors: Vec<UserError>,
}

/// Every staff mutation: admins only, the account named by its email.
async fn administer(
    ctx: &Context<'_>,
    email: &str,
    change: StaffChange,
) -> async_graphql::Result<RolePayload> {
    require_admin(ctx)?;
    let cmd_ctx = command_context(ctx);
    let disabling = matches!(change, StaffChange::Disable(_));
    let outcome: Result<_, Rejection> = async {
        let email = Email::parse(email)?;
        Ok(accounts(ctx).administer(&cmd_ctx, &email, change).await?)
    }
    .await;
    let (position, user_errors) = settle(outcome.map(Some))?;
    if disabling && user_errors.is_empty() {
        // This process cannot name the account's sessions one by one; the others notice
        // within their session check's lifetime.
        if let Some(check) = session_check(ctx) {
            check.clear();
        }
    }
    Ok(RolePayload {
        position: position.flatten().map(|p| p.to_string()),
        user_errors,
    })
}

#[derive(Default)]
pub struct StaffMutation;

#[Object]
impl StaffMutation {
    /// Grants a role to a registered account (admin).
    async fn customer_grant_role(
        &self,
        ctx: &Context<'_>,
        email: String,
        role: RoleName,
    ) -> async_graphql::Result<RolePayload> {
        administer(ctx, &email, StaffChange::Grant(role.into())).await
    }

    /// Revokes a role (admin). Requests of the account's sessions lose it within the session
    /// check's lifetime (30 seconds by default).
    async fn customer_revoke_role(
        &self,
        ctx: &Context<'_>,
        email: String,
        role: RoleName,
    ) -> async_graphql::Result<RolePayload> {
        administer(ctx, &email, StaffChange::Revoke(role.into())).await
    }

    /// Disables an account (admin): every session ends and sign-in is refused.
    async fn customer_disable(
        &self,
        ctx: &Context<'_>,
        email: String,
        reason: String,
    ) -> async_graphql::Result<RolePayload> {
        administer(ctx, &email, StaffChange::Disable(reason)).await
    }

    /// Enables a disabled account again (admin).
    async fn customer_enable(
        &self,
        ctx: &Context<'_>,
        email: String,
    ) -> async_graphql::Result<RolePayload> {
        administer(ctx, &email, StaffChange::Enable).await
    }
}
