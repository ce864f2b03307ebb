//! What Purser's two API halves share, and nothing else: `purser-command-api` (mutations) and
//! `purser-query-api` (queries and subscriptions) both build on this crate and never on each
//! other.
//!
//! - [`wire`]: the types on the wire (`Int64`, `MoneyV2`, `UserError`, global ids, cursors).
//! - [`errors`]: the one mapping from rejections and failures to GraphQL errors and
//!   `userErrors`.
//! - [`auth`]: the viewer of a request and its bearer tokens.
//! - [`sessions`]: the request-time check that a token's session is live, and current roles.
//! - [`read`]: read-your-writes (`ReadContext::wait_for`).
//! - [`product`]: the catalog product node, which queries list and product mutations return.
//! - [`config`]: `Secret`, `ConfigError` and the URL check every setting uses.

pub mod auth;
pub mod config;
pub mod errors;
pub mod product;
pub mod read;
pub mod sessions;
pub mod wire;

pub use read::ReadContext;
