//! Outbound webhook administration (admin): register endpoints, read the delivery log,
//! replay a delivery, enable, disable, delete. The rows live in `integrations.*`
//! (command-side state, like the outbox); the deliveries themselves are sent by
//! `purser_integrations::webhooks::worker`.

use async_graphql::{Context, ID, InputObject, Object, SimpleObject};
use chrono::{DateTime, Utc};
use purser_api_core::errors::UserError;
use purser_integrations::webhooks::endpoints::{self, Delivery, Endpoint, EndpointError};
use sqlx::PgPool;
use uuid::Uuid;

use super::{Rejection, require_admin, settle};

/// What the webhook GraphQL needs: the write pool and whether private targets are allowed.
#[derive(Clone)]
pub struct WebhookAdmin {
    pub pool: PgPool,
    pub allow_private: bool,
}

#[derive(SimpleObject)]
pub struct WebhookEndpoint {
    pub id: ID,
    pub url: String,
    /// Public event types it receives; empty means all.
    pub event_types: Vec<String>,
    pub description: String,
    pub enabled: bool,
    /// When its current run of failed deliveries began.
    pub failing_since: Option<DateTime<Utc>>,
    pub disabled_at: Option<DateTime<Utc>>,
    pub disabled_reason: Option<String>,
    pub created_at: DateTime<Utc>,
}

impl From<Endpoint> for WebhookEndpoint {
    fn from(e: Endpoint) -> Self {
        WebhookEndpoint {
            id: ID(e.id.to_string()),
            url: e.url,
            event_types: e.event_types,
            description: e.description,
            enabled: e.enabled,
            failing_since: e.failing_since,
            disabled_at: e.disabled_at,
            disabled_reason: e.disabled_reason,
            created_at: e.created_at,
        }
    }
}

/// One entry of the delivery log.
#[derive(SimpleObject)]
pub struct WebhookDelivery {
    pub id: ID,
    pub endpoint_id: ID,
    /// The integration event's id: the receiver's de-duplication key.
    pub event_id: ID,
    pub event_type: String,
    /// PENDING, DELIVERED or FAILED (given up after the retry window).
    pub status: String,
    pub attempts: i32,
    /// The HTTP status of the last attempt, if it got an answer.
    pub last_status_code: Option<i32>,
    pub last_error: Option<String>,
    pub last_attempt_at: Option<DateTime<Utc>>,
    pub next_attempt_at: DateTime<Utc>,
    pub delivered_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

impl From<Delivery> for WebhookDelivery {
    fn from(d: Delivery) -> Self {
        WebhookDelivery {
            id: ID(d.id.to_string()),
            endpoint_id: ID(d.endpoint_id.to_string()),
            event_id: ID(d.event_id.to_string()),
            event_type: d.event_type,
            status: d.status.to_uppercase(),
            attempts: d.attempts,
            last_status_code: d.last_status,
            last_error: d.last_error,
            last_attempt_at: d.last_attempt_at,
            next_attempt_at: d.next_attempt_at,
            delivered_at: d.delivered_at,
            created_at: d.created_at,
        }
    }
}

#[derive(InputObject)]
pub struct WebhookEndpointCreateInput {
    /// http(s) URL; loopback, private and link-local addresses are refused.
    pub url: String,
    /// Public event types (`order.paid`, …); empty or absent means all.
    #[graphql(default)]
    pub event_types: Vec<String>,
    #[graphql(default)]
    pub description: String,
}

#[derive(SimpleObject, Default)]
pub struct WebhookEndpointPayload {
    pub endpoint: Option<WebhookEndpoint>,
    /// The signing secret, returned once, when the endpoint is created.
    pub secret: Option<String>,
    pub user_errors: Vec<UserError>,
}

#[derive(SimpleObject, Default)]
pub struct WebhookDeliveryPayload {
    pub delivery: Option<WebhookDelivery>,
    pub user_errors: Vec<UserError>,
}

fn admin<'a>(ctx: &Context<'a>) -> async_graphql::Result<&'a WebhookAdmin> {
    require_admin(ctx)?;
    Ok(ctx.data_unchecked::<WebhookAdmin>())
}

fn rejection(e: EndpointError) -> Rejection {
    match e {
        EndpointError::Target(t) => {
            Rejection::user(Some("url"), "INVALID_WEBHOOK_URL", t.to_string())
        }
        EndpointError::UnknownType(_) => {
            Rejection::user(Some("eventTypes"), "UNKNOWN_EVENT_TYPE", e.to_string())
        }
        EndpointError::Description => {
            Rejection::user(Some("description"), "TOO_LONG", e.to_string())
        }
        EndpointError::TooMany => Rejection::user(None, "TOO_MANY_ENDPOINTS", e.to_string()),
        EndpointError::NotFound => Rejection::user(Some("id"), "NOT_FOUND", e.to_string()),
        EndpointError::Db(db) => Rejection::from(db),
    }
}

fn parse_uuid(raw: &ID) -> Result<Uuid, Rejection> {
    raw.parse::<Uuid>()
        .map_err(|_| Rejection::user(Some("id"), "INVALID_ID", "not a webhook endpoint id"))
}

fn endpoint_payload(
    outcome: Result<Option<(WebhookEndpoint, Option<String>)>, Rejection>,
) -> async_graphql::Result<WebhookEndpointPayload> {
    let (value, user_errors) = settle(outcome)?;
    let (endpoint, secret) = value.map_or((None, None), |(e, s)| (Some(e), s));
    Ok(WebhookEndpointPayload {
        endpoint,
        secret,
        user_errors,
    })
}

#[derive(Default)]
pub struct WebhookMutation;

#[Object]
impl WebhookMutation {
    /// Registers an endpoint for outbound webhooks (admin). The payload carries the signing
    /// secret, this once.
    async fn webhook_endpoint_create(
        &self,
        ctx: &Context<'_>,
        input: WebhookEndpointCreateInput,
    ) -> async_graphql::Result<WebhookEndpointPayload> {
        let w = admin(ctx)?;
        let actor = super::command_context(ctx).actor;
        let outcome = endpoints::register(
            &w.pool,
            &input.url,
            &input.event_types,
            &input.description,
            w.allow_private,
            Some(actor.as_str()),
        )
        .await
        .map(|(e, secret)| Some((e.into(), Some(secret))))
        .map_err(rejection);
        endpoint_payload(outcome)
    }

    /// Enables or disables an endpoint (admin). Enabling sends what waited meanwhile.
    async fn webhook_endpoint_set_enabled(
        &self,
        ctx: &Context<'_>,
        id: ID,
        enabled: bool,
    ) -> async_graphql::Result<WebhookEndpointPayload> {
        let w = admin(ctx)?;
        let outcome = async {
            let e = endpoints::set_enabled(&w.pool, parse_uuid(&id)?, enabled)
                .await
                .map_err(rejection)?;
            Ok(Some((e.into(), None)))
        }
        .await;
        endpoint_payload(outcome)
    }

    /// Deletes an endpoint and its delivery log (admin).
    async fn webhook_endpoint_delete(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> async_graphql::Result<WebhookEndpointPayload> {
        let w = admin(ctx)?;
        let outcome = async {
            endpoints::delete(&w.pool, parse_uuid(&id)?)
                .await
                .map_err(rejection)?;
            Ok(None)
        }
        .await;
        endpoint_payload(outcome)
    }

    /// Sends a delivery again, with the same event id (admin).
    async fn webhook_delivery_replay(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> async_graphql::Result<WebhookDeliveryPayload> {
        let w = admin(ctx)?;
        let outcome = async {
            let id = id
                .parse::<i64>()
                .map_err(|_| Rejection::user(Some("id"), "INVALID_ID", "not a delivery id"))?;
            let d = endpoints::replay(&w.pool, id).await.map_err(rejection)?;
            Ok(Some(WebhookDelivery::from(d)))
        }
        .await;
        let (delivery, user_errors) = settle(outcome)?;
        Ok(WebhookDeliveryPayload {
            delivery,
            user_errors,
        })
    }
}

/// A query's failure: the database's is logged once and coded; there are no other.
fn query_error(e: EndpointError) -> async_graphql::Error {
    match e {
        EndpointError::Db(db) => purser_api_core::errors::db_error(db),
        other => purser_api_core::errors::bad_input(other.to_string()),
    }
}

#[derive(Default)]
pub struct WebhookQuery;

#[Object]
impl WebhookQuery {
    /// Registered webhook endpoints (admin).
    async fn webhook_endpoints(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<Vec<WebhookEndpoint>> {
        let w = admin(ctx)?;
        let list = endpoints::list(&w.pool).await.map_err(query_error)?;
        Ok(list.into_iter().map(Into::into).collect())
    }

    /// An endpoint's delivery log, newest first (admin): at most 200 per page, older ones
    /// with `before` (a delivery id).
    async fn webhook_deliveries(
        &self,
        ctx: &Context<'_>,
        endpoint_id: ID,
        #[graphql(default = 50)] first: i32,
        before: Option<ID>,
    ) -> async_graphql::Result<Vec<WebhookDelivery>> {
        let w = admin(ctx)?;
        let bad = |what: &str| purser_api_core::errors::bad_input(what);
        let endpoint = endpoint_id
            .parse::<Uuid>()
            .map_err(|_| bad("endpointId is not an endpoint id"))?;
        let before = before
            .map(|b| {
                b.parse::<i64>()
                    .map_err(|_| bad("before is not a delivery id"))
            })
            .transpose()?;
        let list = endpoints::deliveries(&w.pool, endpoint, i64::from(first), before)
            .await
            .map_err(query_error)?;
        Ok(list.into_iter().map(Into::into).collect())
    }
}
