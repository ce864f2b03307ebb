//! Sign-up, sign-in and sessions. Address verification, password recovery and claiming
//! guest orders are in [`super::recovery`]; staff administration in [`super::staff`].

use async_graphql::{Context, Enum, ID, InputObject, Object, SimpleObject};
use chrono::{DateTime, Utc};
use purser_api_core::auth::{ClientAddr, Tokens, Viewer, role_name};
use purser_api_core::errors::UserError;
use purser_api_core::sessions::SessionCheck;
use purser_api_core::wire::global_id;
use purser_domain::Email;
use purser_domain::customer::{CustomerState, Role};
use purser_event_store::Position;

use super::{Rejection, command_context, settle, trace};
use crate::accounts::{Accounts, Password};
use crate::trace::TraceKind;

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
    /// The owner has proved the address (the emailed link). Until then the account sees only
    /// what it did itself, and cannot claim guest orders.
    pub verified: bool,
    /// A guest checkout's identity (from the post-purchase sign-in), not a registered account.
    pub guest: bool,
}

impl Account {
    pub(crate) fn from_state(s: &CustomerState) -> Account {
        Account {
            id: global_id("Customer", &s.customer_id.to_string()),
            email: s.email.as_ref().map(|e| e.to_string()).unwrap_or_default(),
            name: s.name.clone(),
            roles: s.roles.iter().map(|r| role_name(*r).to_owned()).collect(),
            verified: s.verified,
            guest: !s.registered,
        }
    }
}

/// A session: a short-lived access token, and the refresh token that renews it.
#[derive(SimpleObject, Default)]
pub struct AuthPayload {
    /// Send as `Authorization: Bearer <token>`. Short-lived: renew it with
    /// `customerRefreshSession` before `expiresAt`.
    pub token: Option<String>,
    pub expires_at: Option<DateTime<Utc>>,
    /// Single use: each refresh answers a new one. Keep it out of reach of scripts.
    pub refresh_token: Option<String>,
    pub refresh_token_expires_at: Option<DateTime<Utc>>,
    pub account: Option<Account>,
    pub position: Option<String>,
    pub user_errors: Vec<UserError>,
}

pub(crate) fn accounts<'a>(ctx: &Context<'a>) -> &'a Accounts {
    ctx.data_unchecked::<Accounts>()
}

/// This process's session check, to forget sessions ended here at once (other processes
/// notice within their check's lifetime).
pub(crate) fn session_check<'a>(ctx: &Context<'a>) -> Option<&'a SessionCheck> {
    ctx.data_opt::<std::sync::Arc<SessionCheck>>().map(|c| &**c)
}

fn access_token(
    ctx: &Context<'_>,
    state: &CustomerState,
    session: uuid::Uuid,
) -> (String, DateTime<Utc>) {
    let tokens = ctx.data_unchecked::<Tokens>();
    let email = state
        .email
        .as_ref()
        .map(|e| e.to_string())
        .unwrap_or_default();
    let token = tokens.issue(session, state.customer_id, &email, &state.roles);
    let ttl = chrono::Duration::from_std(tokens.ttl()).unwrap_or_default();
    (token, Utc::now() + ttl)
}

/// Opens a session for `state` and answers its tokens.
async fn signed_in(
    ctx: &Context<'_>,
    state: &CustomerState,
    position: Option<Position>,
) -> Result<AuthPayload, Rejection> {
    let a = accounts(ctx);
    let guest = !state.registered;
    let opened =
        crate::sessions::open(&a.pool, &a.sessions, state.customer_id, guest, position).await?;
    let (token, expires_at) = access_token(ctx, state, opened.session_id);
    Ok(AuthPayload {
        token: Some(token),
        expires_at: Some(expires_at),
        refresh_token: Some(opened.refresh_token),
        refresh_token_expires_at: Some(opened.refresh_expires_at),
        account: Some(Account::from_state(state)),
        position: position.map(|p| p.to_string()),
        user_errors: vec![],
    })
}

fn refused(outcome: Rejection) -> async_graphql::Result<AuthPayload> {
    let (_, user_errors) = settle::<()>(Err(outcome))?;
    Ok(AuthPayload {
        user_errors,
        ..Default::default()
    })
}

fn answer(outcome: Result<AuthPayload, Rejection>) -> async_graphql::Result<AuthPayload> {
    outcome.or_else(refused)
}

/// The outcome of signing out.
#[derive(SimpleObject, Default)]
pub struct LogoutPayload {
    pub user_errors: Vec<UserError>,
}

fn client(ctx: &Context<'_>) -> Option<std::net::IpAddr> {
    ctx.data_opt::<ClientAddr>().map(|c| c.0)
}

fn credentials_refused() -> Rejection {
    Rejection::user(
        None,
        "INVALID_CREDENTIALS",
        "the email or the password is wrong",
    )
}

#[derive(Default)]
pub struct AccountMutation;

#[Object]
impl AccountMutation {
    /// Creates an account, emails a link to verify the address, and signs in. Orders a guest
    /// placed with this address stay invisible until the address is verified and they are
    /// claimed (`customerClaimGuestOrders`).
    async fn customer_register(
        &self,
        ctx: &Context<'_>,
        input: CustomerRegisterInput,
    ) -> async_graphql::Result<AuthPayload> {
        let cmd_ctx = command_context(ctx);
        answer(
            async {
                let email = Email::parse(&input.email)?;
                let password = Password::parse(input.password)?;
                let (state, position) = accounts(ctx)
                    .register(&cmd_ctx, email, &input.name, password)
                    .await?;
                signed_in(ctx, &state, position).await
            }
            .await,
        )
    }

    /// Signs in with email and password. Failures are throttled per account and per client
    /// address (`TOO_MANY_ATTEMPTS`, with the seconds to wait in the message).
    async fn customer_login(
        &self,
        ctx: &Context<'_>,
        input: CustomerLoginInput,
    ) -> async_graphql::Result<AuthPayload> {
        let outcome: Result<(CustomerState, Option<Position>), Rejection> = async {
            let email = Email::parse(&input.email).map_err(|_| credentials_refused())?;
            let password = Password::parse(input.password).map_err(|_| credentials_refused())?;
            Ok(accounts(ctx).sign_in(email, password, client(ctx)).await?)
        }
        .await;
        let subject = Some(input.email.trim().to_ascii_lowercase());
        match outcome {
            Ok((state, position)) => {
                trace::<String>(ctx, TraceKind::Login, Ok(()), subject);
                answer(signed_in(ctx, &state, position).await)
            }
            Err(r) => {
                trace(ctx, TraceKind::Login, Err(r.message()), subject);
                refused(r)
            }
        }
    }

    /// Exchanges the single-use token from `checkoutStatus` for a session of the guest
    /// checkout's own identity (never a registered or staff account). Works once, and not
    /// after ten minutes.
    async fn customer_sign_in_with_token(
        &self,
        ctx: &Context<'_>,
        token: String,
    ) -> async_graphql::Result<AuthPayload> {
        let cmd_ctx = command_context(ctx);
        answer(
            async {
                let tokens = ctx.data_unchecked::<Tokens>();
                let grant = tokens
                    .verify_sign_in(&token)
                    .map_err(|e| Rejection::user(Some("token"), "INVALID_TOKEN", e.to_string()))?;
                let (state, position) = accounts(ctx).redeem_sign_in(&cmd_ctx, grant).await?;
                signed_in(ctx, &state, position).await
            }
            .await,
        )
    }

    /// Renews a session: a new access token and a new refresh token (the old one stops
    /// working; presenting it again ends the session).
    async fn customer_refresh_session(
        &self,
        ctx: &Context<'_>,
        refresh_token: String,
    ) -> async_graphql::Result<AuthPayload> {
        answer(
            async {
                let a = accounts(ctx);
                let (customer, opened) =
                    crate::sessions::refresh(&a.pool, &a.sessions, &refresh_token).await?;
                let (state, _, at) = a
                    .bus
                    .load::<purser_domain::customer::Customer>(&customer)
                    .await?;
                crate::sessions::note_account(&a.pool, opened.session_id, at).await?;
                if state.disabled {
                    crate::sessions::revoke(&a.pool, opened.session_id, "account disabled").await?;
                    return Err(Rejection::user(
                        None,
                        "ACCOUNT_DISABLED",
                        "this account is disabled",
                    ));
                }
                let (token, expires_at) = access_token(ctx, &state, opened.session_id);
                Ok(AuthPayload {
                    token: Some(token),
                    expires_at: Some(expires_at),
                    refresh_token: Some(opened.refresh_token),
                    refresh_token_expires_at: Some(opened.refresh_expires_at),
                    account: Some(Account::from_state(&state)),
                    ..Default::default()
                })
            }
            .await,
        )
    }

    /// Ends the caller's session: its access and refresh tokens stop working.
    async fn customer_logout(&self, ctx: &Context<'_>) -> async_graphql::Result<LogoutPayload> {
        let viewer = Viewer::from_ctx(ctx);
        let Some(session) = viewer.session_id else {
            return Err(purser_api_core::errors::unauthenticated());
        };
        let outcome: Result<(), Rejection> = async {
            crate::sessions::revoke(&accounts(ctx).pool, session, "signed out").await?;
            if let Some(check) = session_check(ctx) {
                check.forget(session);
            }
            Ok(())
        }
        .await;
        let (_, user_errors) = settle(outcome.map(Some))?;
        Ok(LogoutPayload { user_errors })
    }
}
