//! Accounts created by operators: the first admin, analysts, auditors.

use purser_command_api::CommandContext;
use purser_command_api::accounts::{Password, StaffChange};
use purser_command_api::failure::Failure;
use purser_domain::Email;
use purser_domain::customer::Role;

use crate::services::Services;

/// Makes sure an account exists with this email, password (when it is new) and roles.
/// Returns whether the account was created.
pub async fn ensure_user(
    services: &Services,
    email: &str,
    password: &str,
    name: &str,
    roles: &[Role],
) -> anyhow::Result<bool> {
    let email = Email::parse(email).map_err(|e| anyhow::anyhow!("{e}"))?;
    let ctx = CommandContext::system("users");
    let created = match services
        .accounts
        .add_verified(
            &ctx,
            email.clone(),
            name,
            Password::parse(password.to_owned()).map_err(|e| anyhow::anyhow!("{e}"))?,
        )
        .await
    {
        Ok(_) => true,
        Err(Failure::Rejected { code, .. }) if code == "EMAIL_TAKEN" => false,
        Err(e) => return Err(anyhow::anyhow!("cannot create {email}: {e}")),
    };
    for role in roles {
        services
            .accounts
            .administer(&ctx, &email, StaffChange::Grant(*role))
            .await
            .map_err(|e| anyhow::anyhow!("cannot grant a role to {email}: {e}"))?;
    }
    Ok(created)
}
