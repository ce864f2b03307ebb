//! HTTP caching of anonymous catalog reads, the way a CDN understands it.
//!
//! A GET without credentials whose operation reads only the catalog (`product`, `products`,
//! `categories`) gets `Cache-Control: public` and an `ETag` naming the catalog projection's
//! checkpoint (generation and position): the answer cannot change until the catalog moves, so
//! a request with that tag in `If-None-Match` is answered `304 Not Modified` without running.
//! The checkpoint is read before the query runs, so a tag is never newer than the data it goes
//! with (at worst an old tag on newer data, which costs one full answer). Anything else sent
//! as a GET, and everything with an `Authorization` header, is `private, no-store`: nothing
//! personal or authenticated is ever cacheable.

use async_graphql::parser::types::{DocumentOperations, Selection};
use axum::http::{HeaderMap, HeaderValue, header};
use sqlx::PgPool;

/// Short: a CDN revalidates often and gets a cheap 304 while nothing changed.
pub(crate) const PUBLIC: &str = "public, max-age=5, must-revalidate";
pub(crate) const PRIVATE: &str = "private, no-store";

/// The root fields that read the catalog projection and nothing else.
const CATALOG_FIELDS: &[&str] = &["product", "products", "categories", "__typename"];

/// Whether an admitted request reads only the catalog, without credentials.
pub(crate) fn is_anonymous_catalog_read(
    headers: &HeaderMap,
    request: &mut async_graphql::Request,
) -> bool {
    if headers.contains_key(header::AUTHORIZATION) {
        return false;
    }
    let name = request.operation_name.clone();
    let Ok(doc) = request.parsed_query() else {
        return false;
    };
    let op = match (&doc.operations, name.as_deref()) {
        (DocumentOperations::Single(op), _) => &op.node,
        (DocumentOperations::Multiple(ops), Some(n)) => match ops.get(n) {
            Some(op) => &op.node,
            None => return false,
        },
        (DocumentOperations::Multiple(_), None) => return false,
    };
    // Fragments at the root could name anything; such requests are simply not cached.
    op.ty == async_graphql::parser::types::OperationType::Query
        && op.selection_set.node.items.iter().all(|s| match &s.node {
            Selection::Field(f) => CATALOG_FIELDS.contains(&f.node.name.node.as_str()),
            _ => false,
        })
}

/// The catalog's current tag, or None when it cannot be read (then nothing is cached).
pub(crate) async fn etag(pool: &PgPool) -> Option<HeaderValue> {
    let row: Option<(i64, i64, i64)> = sqlx::query_as(
        "select generation, commit_position, prepare_position
         from purser.projection_checkpoints where name = 'catalog'",
    )
    .fetch_optional(pool)
    .await
    .ok()?;
    let (generation, commit, prepare) = row.unwrap_or((0, 0, 0));
    HeaderValue::from_str(&format!("\"catalog-{generation}-{commit}-{prepare}\"")).ok()
}

/// Whether `If-None-Match` names `tag` (or is `*`); weak and strong forms both match.
pub(crate) fn not_modified(headers: &HeaderMap, tag: &HeaderValue) -> bool {
    let Some(Ok(inm)) = headers.get(header::IF_NONE_MATCH).map(|v| v.to_str()) else {
        return false;
    };
    let tag = tag.to_str().unwrap_or_default();
    inm.split(',')
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == "*" || t == tag)
}

/// Adds the caching headers of a cacheable answer.
pub(crate) fn public(headers: &mut HeaderMap, tag: HeaderValue) {
    headers.insert(header::ETAG, tag);
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(PUBLIC));
    // A shared cache must not hand this to a request with credentials.
    headers.insert(header::VARY, HeaderValue::from_static("Authorization"));
}
