//! A schema with every read query, over a fresh database, and viewers to ask as.

#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeSet;
use std::time::Duration;

use async_graphql::{EmptyMutation, EmptySubscription, MergedObject, Request, Schema, Variables};
use purser_api_core::ReadContext;
use purser_api_core::auth::Viewer;
use purser_domain::CustomerId;
use purser_domain::customer::Role;
use purser_projections::Checkpoints;
use purser_query_api::analytics::AnalyticsQuery;
use purser_query_api::carts::CartsQuery;
use purser_query_api::catalog::CatalogQuery;
use purser_query_api::customers::CustomersQuery;
use purser_query_api::loaders::with_loaders;
use purser_query_api::orders::OrdersQuery;
use serde_json::Value;
use sqlx::PgPool;

pub use purser_testkit::scenario;

#[derive(MergedObject, Default)]
pub struct Query(
    CatalogQuery,
    OrdersQuery,
    CartsQuery,
    CustomersQuery,
    AnalyticsQuery,
);

pub type ReadSchema = Schema<Query, EmptyMutation, EmptySubscription>;

/// The read schema over `pool`, waiting on `checkpoints` for `minPosition`.
pub fn schema_with(pool: &PgPool, checkpoints: Checkpoints) -> ReadSchema {
    let read = ReadContext::new(pool.clone(), checkpoints, Duration::from_secs(20), 64);
    with_loaders(
        Schema::build(Query::default(), EmptyMutation, EmptySubscription),
        pool,
    )
    .data(read)
    .finish()
}

pub fn schema(pool: &PgPool) -> ReadSchema {
    schema_with(pool, Checkpoints::new(pool.clone()))
}

/// Runs a query as `viewer`; the whole response (data and errors) as JSON.
pub async fn run(schema: &ReadSchema, viewer: &Viewer, query: &str, variables: Value) -> Value {
    let response = schema
        .execute(
            Request::new(query)
                .variables(Variables::from_json(variables))
                .data(viewer.clone()),
        )
        .await;
    serde_json::to_value(&response).expect("a response serialises")
}

pub fn customer(email: &str) -> Viewer {
    Viewer {
        customer_id: Some(CustomerId::for_email(
            &purser_domain::Email::parse(email).unwrap(),
        )),
        email: Some(email.to_owned()),
        roles: [Role::Customer].into(),
        session_id: None,
    }
}

pub fn with_roles(email: &str, roles: &[Role]) -> Viewer {
    let mut v = customer(email);
    v.roles = roles
        .iter()
        .copied()
        .chain([Role::Customer])
        .collect::<BTreeSet<_>>();
    v
}

pub fn admin() -> Viewer {
    with_roles("admin@example.com", &[Role::Admin])
}

pub fn anonymous() -> Viewer {
    Viewer::anonymous()
}

/// The `extensions.code` of every error of a response.
pub fn error_codes(response: &Value) -> Vec<String> {
    response["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .map(|e| e["extensions"]["code"].as_str().unwrap_or("").to_owned())
                .collect()
        })
        .unwrap_or_default()
}
