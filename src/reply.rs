//! Error answers outside GraphQL's own responses (bad transport, rate limits, webhooks, 404):
//! the same JSON shape a GraphQL error has, so a client parses one thing.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// A JSON error body: `{"errors":[{"message":…,"extensions":{"code":…}}]}`.
pub fn error_response(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    let body = json!({ "errors": [{ "message": message.into(), "extensions": { "code": code } }] });
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body.to_string(),
    )
        .into_response()
}
