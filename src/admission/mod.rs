//! The one door every GraphQL request comes through, whatever carried it (HTTP POST, HTTP GET,
//! a WebSocket `subscribe`): size, then parse, then one linear-time look at the document
//! (fragments visited once, cycles refused, depth, aliases, fields and a cost that grows with
//! page sizes), then a check that every string is text, then what the transport allows. Only
//! an admitted request reaches authorization and execution, and admitting one costs time in
//! proportion to its size.

mod analysis;
pub mod persisted;
mod text;

use async_graphql::parser::types::{DocumentOperations, OperationDefinition, OperationType};
use async_graphql::{ErrorExtensions, ServerError};

pub use analysis::Size;

use crate::config::Limits;

impl Limits {
    fn check(&self, size: Size) -> Result<(), Refusal> {
        if size.aliases > self.max_aliases {
            return Err(Refusal::TooManyAliases(self.max_aliases));
        }
        if size.fields > self.max_fields || size.cost > self.max_cost {
            return Err(Refusal::TooComplex {
                max_fields: self.max_fields,
                max_cost: self.max_cost,
            });
        }
        Ok(())
    }
}

/// How the request arrived; each transport allows some operations only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// Anything.
    Post,
    /// Queries only: a GET must be safe to repeat and to cache.
    Get,
    /// Queries and subscriptions: writes go over HTTP POST, where idempotency keys, the
    /// request's correlation id and the HTTP rate limit apply.
    WebSocket,
}

/// Why a request was not admitted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the document is larger than {0} bytes")]
    TooLarge(usize),
    #[error("{0}")]
    Syntax(String),
    #[error("fragment `{0}` spreads itself (directly or through other fragments)")]
    FragmentCycle(String),
    #[error("the document's fields are nested deeper than {0} levels")]
    TooDeep(u64),
    #[error("a document may use at most {0} aliases")]
    TooManyAliases(u64),
    #[error(
        "the document asks for too much at once (at most {max_fields} fields once fragments \
         are expanded, and a cost of {max_cost} where a field under `first: n` counts n times); \
         split it into smaller requests"
    )]
    TooComplex { max_fields: u64, max_cost: u64 },
    #[error("{0}")]
    ControlCharacter(String),
    #[error("{operation} operations cannot be sent over {transport}; use {instead}")]
    WrongTransport {
        operation: &'static str,
        transport: &'static str,
        instead: &'static str,
    },
}

impl Refusal {
    /// The stable code of `extensions.code`.
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::TooLarge(_) => "QUERY_TOO_LARGE",
            Refusal::Syntax(_) => "GRAPHQL_PARSE_FAILED",
            Refusal::FragmentCycle(_) => "FRAGMENT_CYCLE",
            Refusal::TooDeep(_) => "QUERY_TOO_DEEP",
            Refusal::TooManyAliases(_) => "TOO_MANY_ALIASES",
            Refusal::TooComplex { .. } => "QUERY_TOO_COMPLEX",
            Refusal::ControlCharacter(_) => "BAD_USER_INPUT",
            Refusal::WrongTransport { .. } => "METHOD_NOT_ALLOWED",
        }
    }

    /// The refusal as a GraphQL error, for transports that answer in GraphQL responses.
    pub fn to_server_error(&self) -> ServerError {
        let code = self.code();
        let mut e = ServerError::new(self.to_string(), None);
        e.extensions = async_graphql::Error::new("")
            .extend_with(|_, x| x.set("code", code))
            .extensions;
        e
    }
}

/// What admission learnt about an admitted request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admitted {
    /// The operation that will run, when the document says (one operation, or the one
    /// `operationName` names); execution reports an ambiguous document itself.
    pub operation: Option<OperationType>,
    pub size: Size,
}

/// Admits `request` arriving over `transport`, or says why not. The parsed document stays in
/// the request, so execution does not parse it again.
pub fn admit(
    request: &mut async_graphql::Request,
    transport: Transport,
    limits: &Limits,
) -> Result<Admitted, Refusal> {
    if request.query.len() > limits.max_document_bytes {
        return Err(Refusal::TooLarge(limits.max_document_bytes));
    }
    let variables = request.variables.clone();
    let operation_name = request.operation_name.clone();
    let doc = request
        .parsed_query()
        .map_err(|e| Refusal::Syntax(e.message))?;
    let operation = selected(&doc.operations, operation_name.as_deref());
    let size = analysis::check(doc, operation, &variables, limits)?;
    text::check(doc, &variables)?;
    let operation = operation.map(|op| op.ty);
    match (transport, operation) {
        (Transport::Get, Some(OperationType::Mutation | OperationType::Subscription)) => {
            Err(Refusal::WrongTransport {
                operation: kind(operation),
                transport: "GET",
                instead: "POST (or a WebSocket for subscriptions)",
            })
        }
        (Transport::WebSocket, Some(OperationType::Mutation)) => Err(Refusal::WrongTransport {
            operation: "mutation",
            transport: "a WebSocket",
            instead: "HTTP POST",
        }),
        _ => Ok(Admitted { operation, size }),
    }
}

fn selected<'d>(
    operations: &'d DocumentOperations,
    name: Option<&str>,
) -> Option<&'d OperationDefinition> {
    match (operations, name) {
        (DocumentOperations::Single(op), _) => Some(&op.node),
        (DocumentOperations::Multiple(ops), Some(name)) => ops
            .iter()
            .find(|(n, _)| n.as_str() == name)
            .map(|(_, op)| &op.node),
        // A document of one named operation may leave `operationName` out.
        (DocumentOperations::Multiple(ops), None) if ops.len() == 1 => {
            ops.values().next().map(|op| &op.node)
        }
        (DocumentOperations::Multiple(_), None) => None,
    }
}

fn kind(operation: Option<OperationType>) -> &'static str {
    match operation {
        Some(OperationType::Mutation) => "mutation",
        Some(OperationType::Subscription) => "subscription",
        _ => "query",
    }
}

#[cfg(test)]
mod tests;
