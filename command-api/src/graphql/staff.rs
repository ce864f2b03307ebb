//! Staff administration of accounts (admins only): roles and disabling. Staff roles go only
//! to registered accounts; no customer or guest action leads to one.

use async_graphql::{Context, Object, SimpleObject};
use purser_api_core::errors::UserError;
use purser_domain::Email;

use super::accounts::{RoleName, accounts};
use super::{Rejection, command_context, require_admin, settle};

/// The result of a change to an account.
#[derive(SimpleObject, Default)]
pub struct RolePayload {
    pub position: Option<String>,
    pub user_errors: Vec<UserError>,
}

fn payload(
    outcome: Result<Option<purser_event_store::Position>, Rejection>,
) -> async_graphql::Result<RolePayload> {
    let (position, user_errors) = settle(outcome.map(Some))?;
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
        require_admin(ctx)?;
        let cmd_ctx = command_context(ctx);
        payload(
            async {
                let email = Email::parse(&email)?;
                Ok(accounts(ctx)
                    .set_role(&cmd_ctx, &email, role.into(), true)
                    .await?)
            }
            .await,
        )
    }

    /// Revokes a role (admin). Requests of the account's sessions lose it within the session
    /// check's lifetime (30 seconds by default).
    async fn customer_revoke_role(
        &self,
        ctx: &Context<'_>,
        email: String,
        role: RoleName,
    ) -> async_graphql::Result<RolePayload> {
        require_admin(ctx)?;
        let cmd_ctx = command_context(ctx);
        payload(
            async {
                let email = Email::parse(&email)?;
                Ok(accounts(ctx)
                    .set_role(&cmd_ctx, &email, role.into(), false)
                    .await?)
            }
            .await,
        )
    }

    /// Disables an account (admin): every session ends and sign-in is refused.
    async fn customer_disable(
        &self,
        ctx: &Context<'_>,
        email: String,
        reason: String,
    ) -> async_graphql::Result<RolePayload> {
        require_admin(ctx)?;
        let cmd_ctx = command_context(ctx);
        let done = payload(
            async {
                let email = Email::parse(&email)?;
                Ok(accounts(ctx)
                    .set_disabled(&cmd_ctx, &email, true, &reason)
                    .await?)
            }
            .await,
        );
        if let Some(check) =
            ctx.data_opt::<std::sync::Arc<purser_api_core::sessions::SessionCheck>>()
        {
            check.clear();
        }
        done
    }

    /// Enables a disabled account again (admin).
    async fn customer_enable(
        &self,
        ctx: &Context<'_>,
        email: String,
    ) -> async_graphql::Result<RolePayload> {
        require_admin(ctx)?;
        let cmd_ctx = command_context(ctx);
        payload(
            async {
                let email = Email::parse(&email)?;
                Ok(accounts(ctx)
                    .set_disabled(&cmd_ctx, &email, false, "")
                    .await?)
            }
            .await,
        )
    }
}
