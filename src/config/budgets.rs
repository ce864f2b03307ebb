//! What a client may cost: the limits of one GraphQL request, of WebSocket connections, of
//! requests per client, of read-your-writes waits, the memory of the command bus's state
//! cache, and how long shutdown, trace events and refused process-manager commands last.
//! Every value has a variable; docs/operations.md lists them.

use std::time::Duration;

use purser_command_api::state_cache::CacheLimits;

use super::{ConfigError, number};

/// What one request may be. The defaults are far above any real page of the storefront or
/// the admin and far below what would cost the server noticeable time.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Bytes of the document text.
    pub max_document_bytes: usize,
    pub max_depth: u64,
    pub max_aliases: u64,
    /// Fields once fragments are expanded.
    pub max_fields: u64,
    /// Fields weighted by the page sizes (`first`/`last`) above them.
    pub max_cost: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_document_bytes: 64 * 1024,
            max_depth: 12,
            max_aliases: 30,
            max_fields: 1_000,
            max_cost: 50_000,
        }
    }
}

/// Bounds of one connection and of all of a process's connections.
#[derive(Debug, Clone)]
pub struct WsLimits {
    /// The largest message a client may send.
    pub max_message_bytes: usize,
    /// Operations one connection may run at once.
    pub max_operations: usize,
    /// A connection with no message from the client and nothing running for this long is
    /// closed (this also bounds a connection that never sends `connection_init`).
    pub idle_timeout: Duration,
    /// Open connections per process.
    pub max_connections: usize,
}

impl Default for WsLimits {
    fn default() -> WsLimits {
        WsLimits {
            max_message_bytes: 64 * 1024,
            max_operations: 16,
            idle_timeout: Duration::from_secs(300),
            max_connections: 10_000,
        }
    }
}

/// Requests per client address: a steady rate with a burst on top (a token bucket).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Requests per second a client may keep up; 0 turns the limit off.
    pub per_second: u32,
    /// Requests a client may send at once above the steady rate.
    pub burst: u32,
}

#[derive(Debug, Clone)]
pub struct Budgets {
    pub admission: Limits,
    pub websocket: WsLimits,
    pub rate_limit: RateLimit,
    /// The header a proxy in front puts the client's address in (its last entry is used),
    /// e.g. `x-forwarded-for`; unset: the connection's peer address.
    pub client_ip_header: Option<axum::http::HeaderName>,
    /// Read-your-writes waits (`minPosition`) a process holds at once; beyond it a query gets
    /// a fast `UNAVAILABLE` with a retry hint instead of a place in a queue.
    pub max_waiters: usize,
    /// How long a shutdown waits for requests and batches in flight before the process exits.
    pub shutdown_timeout: Duration,
    /// How long operational trace events are kept.
    pub trace_retention: Duration,
    /// The command bus's cache of aggregate states, in bytes and entries.
    pub state_cache: CacheLimits,
    /// How long refused process-manager commands (`purser.outbox_rejections`) are kept.
    pub rejection_retention: Duration,
}

impl Budgets {
    pub fn from_lookup(get: &impl Fn(&str) -> Option<String>) -> Result<Budgets, ConfigError> {
        let admission = Limits {
            max_document_bytes: number(get, "PURSER_QUERY_MAX_BYTES", 65_536, 1_024, 1_048_576)?
                as usize,
            max_depth: number(get, "PURSER_QUERY_MAX_DEPTH", 12, 2, 64)?,
            max_aliases: number(get, "PURSER_QUERY_MAX_ALIASES", 30, 0, 1_000)?,
            max_fields: number(get, "PURSER_QUERY_MAX_FIELDS", 1_000, 10, 100_000)?,
            max_cost: number(get, "PURSER_QUERY_MAX_COST", 50_000, 100, 10_000_000)?,
        };
        let websocket = WsLimits {
            max_message_bytes: number(get, "PURSER_WS_MAX_MESSAGE_BYTES", 65_536, 1_024, 1_048_576)?
                as usize,
            max_operations: number(get, "PURSER_WS_MAX_OPERATIONS", 16, 1, 1_000)? as usize,
            idle_timeout: Duration::from_secs(number(get, "PURSER_WS_IDLE_SECS", 300, 5, 86_400)?),
            max_connections: number(get, "PURSER_WS_MAX_CONNECTIONS", 10_000, 1, 1_000_000)?
                as usize,
        };
        let rate_limit = RateLimit {
            per_second: number(get, "PURSER_RATE_LIMIT_PER_SEC", 50, 0, 1_000_000)? as u32,
            burst: number(get, "PURSER_RATE_LIMIT_BURST", 100, 1, 1_000_000)? as u32,
        };
        let client_ip_header = match get("PURSER_CLIENT_IP_HEADER").filter(|h| !h.trim().is_empty())
        {
            None => None,
            Some(h) => Some(h.trim().parse().map_err(|_| {
                ConfigError(format!(
                    "PURSER_CLIENT_IP_HEADER must be a header name like x-forwarded-for, not {:?}",
                    h.chars().take(40).collect::<String>()
                ))
            })?),
        };
        Ok(Budgets {
            admission,
            websocket,
            rate_limit,
            client_ip_header,
            max_waiters: number(get, "PURSER_MAX_CONSISTENCY_WAITERS", 256, 1, 100_000)? as usize,
            shutdown_timeout: Duration::from_secs(number(
                get,
                "PURSER_SHUTDOWN_TIMEOUT_SECS",
                30,
                1,
                3_600,
            )?),
            trace_retention: Duration::from_secs(
                number(get, "PURSER_TRACE_RETENTION_DAYS", 30, 1, 3_650)? * 86_400,
            ),
            state_cache: CacheLimits {
                max_bytes: number(get, "PURSER_STATE_CACHE_MB", 16, 0, 65_536)? as usize
                    * 1024
                    * 1024,
                max_entries: number(get, "PURSER_STATE_CACHE_ENTRIES", 50_000, 0, 10_000_000)?
                    as usize,
            },
            rejection_retention: Duration::from_secs(
                number(get, "PURSER_REJECTION_RETENTION_DAYS", 30, 1, 3_650)? * 86_400,
            ),
        })
    }
}

impl Default for Budgets {
    fn default() -> Budgets {
        Budgets::from_lookup(&|_| None).expect("the defaults are valid")
    }
}
