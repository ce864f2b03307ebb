//! The one GraphQL schema: queries from `purser-query-api`, mutations from
//! `purser-command-api`, assembled here because only the binary knows both.

use std::sync::Arc;

use async_graphql::{MergedObject, Schema};
use purser_api_core::ReadContext;
use purser_api_core::auth::Tokens;
use purser_command_api::CommandBus;
use purser_command_api::gateway::PaymentGateway;
use purser_command_api::graphql::MutationRoot;
use purser_query_api::analytics::AnalyticsQuery;
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
    purser_command_api::graphql::webhooks::WebhookQuery,
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

/// What the resolvers find in the schema's data.
pub struct Parts {
    pub read: ReadContext,
    pub bus: CommandBus,
    pub gateway: Arc<dyn PaymentGateway>,
    pub tokens: Tokens,
    pub accounts: purser_command_api::accounts::Accounts,
    pub sessions: Arc<purser_api_core::sessions::SessionCheck>,
    pub trace: Option<purser_command_api::trace::TraceLog>,
    pub webhooks: purser_command_api::graphql::webhooks::WebhookAdmin,
}

pub fn build(parts: Parts, read_only: bool) -> PurserSchema {
    let Parts {
        read,
        bus,
        gateway,
        tokens,
        accounts,
        sessions,
        trace,
        webhooks,
    } = parts;
    let feed = OrderFeed::new(bus.store().clone());
    let mut builder =
        with_loaders(builder(), &read.pool).extension(crate::observability::GraphqlMetrics {
            trace: trace.clone(),
        });
    if read_only {
        builder = builder.extension(ReadOnly);
    }
    if let Some(trace) = trace {
        builder = builder.data(trace);
    }
    builder
        .data(purser_query_api::audit::AuditLog::new(bus.store().clone()))
        .data(read)
        .data(bus)
        .data(gateway)
        .data(tokens)
        .data(accounts)
        .data(sessions)
        .data(feed)
        .data(webhooks)
        .finish()
}

/// Refuses mutations: a `query-api` process serves queries and subscriptions (possibly from
/// a read replica); writes go to a `command-api` or `serve` process.
struct ReadOnly;

impl async_graphql::extensions::ExtensionFactory for ReadOnly {
    fn create(&self) -> Arc<dyn async_graphql::extensions::Extension> {
        Arc::new(ReadOnly)
    }
}

#[async_trait::async_trait]
impl async_graphql::extensions::Extension for ReadOnly {
    async fn parse_query(
        &self,
        ctx: &async_graphql::extensions::ExtensionContext<'_>,
        query: &str,
        variables: &async_graphql::Variables,
        next: async_graphql::extensions::NextParseQuery<'_>,
    ) -> async_graphql::ServerResult<async_graphql::parser::types::ExecutableDocument> {
        let doc = next.run(ctx, query, variables).await?;
        let mutation = doc
            .operations
            .iter()
            .any(|(_, op)| op.node.ty == async_graphql::parser::types::OperationType::Mutation);
        if mutation {
            let mut e = async_graphql::ServerError::new(
                "this is a query-api process: it serves queries and subscriptions; send mutations to a command-api or serve process",
                None,
            );
            e.extensions = Some({
                let mut x = async_graphql::ErrorExtensionValues::default();
                x.set("code", "READ_ONLY");
                x
            });
            return Err(e);
        }
        Ok(doc)
    }
}

/// The schema in SDL, as checked in at `schema.graphql`.
pub fn sdl() -> String {
    builder().finish().sdl()
}
