//! The `purser` binary as a library: configuration, wiring, HTTP and the CLI, so every part
//! can be started from tests exactly as the binary starts it.

pub mod admission;
pub mod app;
pub mod audit;
pub(crate) mod catalog_cache;
pub mod cli;
pub mod config;
pub mod http;
pub mod observability;
pub mod online_rebuild;
pub mod projector_cli;
pub mod ratelimit;
pub mod reply;
pub mod schema;
pub(crate) mod scratch;
pub mod seed;
pub mod services;
pub mod telemetry;
pub mod users;
pub mod websocket;
pub mod workers;
