//! The one GraphQL schema: queries from `purser-query-api`, mutations from
//! `purser-command-api`, assembled here because only the binary knows both.

use std::sync::Arc;

use async_graphql::{MergedObject, Schema};
use purser_command_api::CommandBus;
use purser_command_api::gateway::PaymentGateway;
use purser_command_api::graphql::MutationRoot;
use purser_query_api::ReadContext;
use purser_query_api::analytics::AnalyticsQuery;
use purser_query_api::auth::Tokens;
use purser_query_api::carts::CartsQuery;
use purser_query_api::catalog::CatalogQuery;
use purser_query_api::customers::CustomersQuery;
use purser_query_api::loaders::with_loaders;
use purser_query_api::ops::OpsQuery;
use purser_query_api::orders::OrdersQuery;
use purser_query_api::subscriptions::{OrderFeed, SubscriptionRoot};

#[derive(MergedObject, Default)]
pub struct Query(
    CatalogQuery,
    OpsQuery,
    OrdersQuery,
    CartsQuery,
    CustomersQuery,
    AnalyticsQuery,
    purser_query_api::checkout_status::CheckoutStatusQuery,
    purser_query_api::audit::AuditQuery,
);

pub type Mutation = MutationRoot;

pub type Subscription = SubscriptionRoot;

pub type PurserSchema = Schema<Query, Mutation, Subscription>;

/// Query depth and complexity limits: deep enough for any real page, too shallow for abuse.
pub const MAX_DEPTH: usize = 12;
pub const MAX_COMPLEXITY: usize = 2_000;

fn builder() -> async_graphql::SchemaBuilder<Query, Mutation, Subscription> {
    Schema::build(Query::default(), MutationRoot::default(), SubscriptionRoot)
        .limit_depth(MAX_DEPTH)
        .limit_complexity(MAX_COMPLEXITY)
}

pub fn build(
    read: ReadContext,
    bus: CommandBus,
    gateway: Arc<dyn PaymentGateway>,
    tokens: Tokens,
    trace: Option<purser_query_api::trace::TraceLog>,
) -> PurserSchema {
    let feed = OrderFeed::new(bus.store().clone());
    let mut builder =
        with_loaders(builder(), &read.pool).extension(crate::observability::GraphqlMetrics {
            trace: trace.clone(),
        });
    if let Some(trace) = trace {
        builder = builder.data(trace);
    }
    builder
        .data(purser_query_api::audit::AuditLog::new(bus.store().clone()))
        .data(read)
        .data(bus)
        .data(gateway)
        .data(tokens)
        .data(feed)
        .finish()
}

/// The schema in SDL, as checked in at `schema.graphql`.
pub fn sdl() -> String {
    builder().finish().sdl()
}
