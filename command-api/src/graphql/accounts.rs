//! Sign-up, sign-in and roles.

use async_graphql::{Context, Enum, ID, InputObject, Object, SimpleObject};
use chrono::{DateTime, Utc};
use purser_api_core::auth::{Tokens, role_name};
use purser_api_core::errors::UserError;
use purser_api_core::wire::global_id;
use purser_domain::Email;
use purser_domain::customer::{CustomerState, Role};
use purser_event_store::Position;

use crate::trace::TraceKind;

use super::{Rejection, bus, command_context, require_admin, settle, trace};
use crate::accounts::{self, Password};

#[derive(InputObject)]
pub struct CustomerRegisterInput {
    pub email: String,
    pub password: String,
    #[graphql(default)]
    pub name: String,
}

#[derive(InputObject)]
pub struct CustomerLoginInput {
    pub email: String,
    pub password: String,
}

#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
pub enum RoleName {
    Customer,
    Admin,
    Analyst,
    Auditor,
}

impl From<RoleName> for Role {
    fn from(r: RoleName) -> Role {
        match r {
            RoleName::Customer => Role::Customer,
            RoleName::Admin => Role::Admin,
            RoleName::Analyst => Role::Analyst,
            RoleName::Auditor => Role::Auditor,
        }
    }
}

/// The signed-in account.
#[derive(SimpleObject, Debug, Clone)]
pub struct Account {
    pub id: ID,
    pub email: String,
    pub name: Option<String>,
    pub roles: Vec<String>,
}

impl Account {
    fn from_state(s: &CustomerState) -> Account {
        Account {
            id: global_id("Customer", &s.customer_id.to_string()),
            email: s.email.as_ref().map(|e| e.to_string()).unwrap_or_default(),
            name: s.name.clone(),
            roles: s.roles.iter().map(|r| role_name(*r).to_owned()).collect(),
        }
    }
}

/// A bearer token and the account it is for.
#[derive(SimpleObject, Default)]
pub struct AuthPayload {
    /// Send as `Authorization: Bearer <token>`.
    pub token: Option<String>,
    pub expires_at: Option<DateTime<Utc>>,
    pub account: Option<Account>,
    pub position: Option<String>,
    pub user_errors: Vec<UserError>,
}

fn authenticated(
    ctx: &Context<'_>,
    state: &CustomerState,
    position: Option<Position>,
) -> AuthPayload {
    let tokens = ctx.data_unchecked::<Tokens>();
    let email = state
        .email
        .as_ref()
        .map(|e| e.to_string())
        .unwrap_or_default();
    let token = tokens.issue(state.customer_id, &email, &state.roles);
    AuthPayload {
        token: Some(token),
        expires_at: Some(Utc::now() + chrono::Duration::from_std(tokens.ttl()).unwrap_or_default()),
        account: Some(Account::from_state(state)),
        position: position.map(|p| p.to_string()),
        user_errors: vec![],
    }
}

fn refused(outcome: Rejection) -> async_graphql::Result<AuthPayload> {
    let (_, user_errors) = settle::<()>(Err(outcome))?;
    Ok(AuthPayload {
        user_errors,
        ..Default::default()
    })
}

/// The result of a role change.
#[derive(SimpleObject, Default)]
pub struct RolePayload {
    pub position: Option<String>,
    pub user_errors: Vec<UserError>,
}

#[derive(Default)]
pub struct AccountMutation;

#[Object]
impl AccountMutation {
    /// Creates an account (or claims the guest account of an earlier checkout) and signs in.
    async fn customer_register(
        &self,
        ctx: &Context<'_>,
        input: CustomerRegisterInput,
    ) -> async_graphql::Result<AuthPayload> {
        let cmd_ctx = command_context(ctx);
        let outcome = async {
            let email = Email::parse(&input.email)?;
            let password = Password::parse(input.password)?;
            Ok(accounts::register(bus(ctx), &cmd_ctx, email, &input.name, password).await?)
        }
        .await;
        match outcome {
            Ok((state, position)) => Ok(authenticated(ctx, &state, position)),
            Err(r) => refused(r),
        }
    }

    /// Signs in with email and password.
    async fn customer_login(
        &self,
        ctx: &Context<'_>,
        input: CustomerLoginInput,
    ) -> async_graphql::Result<AuthPayload> {
        let outcome: Result<CustomerState, Rejection> = async {
            let email = Email::parse(&input.email).map_err(|_| {
                Rejection::user(
                    None,
                    "INVALID_CREDENTIALS",
                    "the email or the password is wrong",
                )
            })?;
            let password = Password::parse(input.password).map_err(|_| {
                Rejection::user(
                    None,
                    "INVALID_CREDENTIALS",
                    "the email or the password is wrong",
                )
            })?;
            Ok(accounts::sign_in(bus(ctx), email, password).await?)
        }
        .await;
        let subject = Some(input.email.trim().to_ascii_lowercase());
        match outcome {
            Ok(state) => {
                trace::<String>(ctx, TraceKind::Login, Ok(()), subject);
                Ok(authenticated(ctx, &state, None))
            }
            Err(r) => {
                trace(ctx, TraceKind::Login, Err(r.message()), subject);
                refused(r)
            }
        }
    }

    /// Exchanges the single-use sign-in token from `checkoutStatus` for a session. Works
    /// once; a second exchange, or one after the ten minutes are up, is refused.
    async fn customer_sign_in_with_token(
        &self,
        ctx: &Context<'_>,
        token: String,
    ) -> async_graphql::Result<AuthPayload> {
        let cmd_ctx = command_context(ctx);
        let outcome: Result<(CustomerState, Option<Position>), Rejection> = async {
            let tokens = ctx.data_unchecked::<Tokens>();
            let (customer_id, token_id, expires_at) = tokens
                .verify_sign_in(&token)
                .map_err(|e| Rejection::user(Some("token"), "INVALID_TOKEN", e.to_string()))?;
            Ok(
                accounts::redeem_sign_in(bus(ctx), &cmd_ctx, customer_id, token_id, expires_at)
                    .await?,
            )
        }
        .await;
        match outcome {
            Ok((state, position)) => Ok(authenticated(ctx, &state, position)),
            Err(r) => refused(r),
        }
    }

    /// Grants a role to an account (admin).
    async fn customer_grant_role(
        &self,
        ctx: &Context<'_>,
        email: String,
        role: RoleName,
    ) -> async_graphql::Result<RolePayload> {
        require_admin(ctx)?;
        let cmd_ctx = command_context(ctx);
        let outcome = async {
            let email = Email::parse(&email)?;
            Ok(accounts::grant_role(bus(ctx), &cmd_ctx, &email, role.into()).await?)
        }
        .await;
        let (position, user_errors) = settle(outcome)?;
        Ok(RolePayload {
            position: position.map(|p| p.to_string()),
            user_errors,
        })
    }
}
