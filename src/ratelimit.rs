//! Requests per client address: a token bucket per address (GCRA: one timestamp per client),
//! answered with `429 Too Many Requests` and `Retry-After` when a client goes over.
//!
//! The table is bounded. An address whose bucket is full again carries no information and is
//! dropped when the table needs room; when every tracked address is busy (a flood from more
//! addresses than the table holds), new addresses share one overflow bucket, so memory stays
//! fixed and the flood is still throttled as a whole.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;

use crate::config::RateLimit;
use crate::reply::error_response;

/// Addresses tracked at once.
const MAX_CLIENTS: usize = 100_000;
/// The bucket that addresses share when the table is full of busy ones.
const OVERFLOW: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);

#[derive(Clone)]
pub struct RateLimiter {
    inner: Arc<Mutex<Table>>,
    /// Time between two requests at the steady rate; zero turns the limiter off.
    interval: Duration,
    /// How far ahead of now a client's bucket may run (the burst).
    tolerance: Duration,
    /// The header that carries the client's address when a proxy sits in front (its last
    /// entry), or None to use the connection's peer address.
    client_header: Option<header::HeaderName>,
}

struct Table {
    /// The time each address's bucket is next empty at the steady rate ("theoretical arrival
    /// time"); an address whose time has passed has a full bucket.
    due: HashMap<IpAddr, Instant>,
    last_prune: Instant,
}

impl RateLimiter {
    pub fn new(limit: RateLimit, client_header: Option<header::HeaderName>) -> RateLimiter {
        let interval = match limit.per_second {
            0 => Duration::ZERO,
            n => Duration::from_secs(1) / n,
        };
        RateLimiter {
            inner: Arc::new(Mutex::new(Table {
                due: HashMap::new(),
                last_prune: Instant::now(),
            })),
            interval,
            tolerance: interval * limit.burst,
            client_header,
        }
    }

    /// Takes one request from `client`'s bucket, or says how long until one is free.
    pub fn check(&self, client: IpAddr, now: Instant) -> Result<(), Duration> {
        if self.interval.is_zero() {
            return Ok(());
        }
        let mut table = self
            .inner
            .lock()
            .expect("the rate table lock is never poisoned");
        let key = table.key_for(client, now);
        let due = table.due.get(&key).copied().unwrap_or(now).max(now);
        let ahead = due - now;
        if ahead > self.tolerance {
            return Err(ahead - self.tolerance);
        }
        table.due.insert(key, due + self.interval);
        Ok(())
    }

    fn client(&self, headers: &HeaderMap, peer: Option<SocketAddr>) -> IpAddr {
        self.client_header
            .as_ref()
            .and_then(|h| headers.get(h))
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit(',').next())
            .and_then(|v| v.trim().parse().ok())
            .or(peer.map(|p| p.ip()))
            .unwrap_or(OVERFLOW)
    }
}

impl Table {
    /// The key a new or known client's bucket is under: its own address while there is room.
    fn key_for(&mut self, client: IpAddr, now: Instant) -> IpAddr {
        if self.due.contains_key(&client) || self.due.len() < MAX_CLIENTS {
            return client;
        }
        // Pruning scans the table; at most once a second, so a flood cannot make every
        // request pay for a scan.
        if now.duration_since(self.last_prune) >= Duration::from_secs(1) {
            self.last_prune = now;
            self.due.retain(|_, due| *due > now);
            if self.due.len() < MAX_CLIENTS {
                return client;
            }
        }
        OVERFLOW
    }
}

/// Middleware for the GraphQL routes.
pub async fn limit(
    State(limiter): State<RateLimiter>,
    mut request: Request,
    next: Next,
) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let client = limiter.client(request.headers(), peer);
    if client != OVERFLOW {
        request
            .extensions_mut()
            .insert(purser_api_core::auth::ClientAddr(client));
    }
    match limiter.check(client, Instant::now()) {
        Ok(()) => next.run(request).await,
        Err(wait) => {
            metrics::counter!("purser_http_rate_limited_total").increment(1);
            let mut r = error_response(
                StatusCode::TOO_MANY_REQUESTS,
                "RATE_LIMITED",
                "too many requests from this address; slow down",
            );
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            r.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from_str(&secs.max(1).to_string()).expect("digits"),
            );
            r
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(per_second: u32, burst: u32) -> RateLimiter {
        RateLimiter::new(RateLimit { per_second, burst }, None)
    }

    #[test]
    fn a_client_gets_its_burst_then_the_steady_rate() {
        let l = limiter(10, 5);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let now = Instant::now();
        let allowed = (0..20).filter(|_| l.check(a, now).is_ok()).count();
        assert_eq!(allowed, 6, "the burst plus the request at the steady rate");
        let wait = l.check(a, now).unwrap_err();
        assert!(wait <= Duration::from_millis(100), "{wait:?}");
        assert!(l.check(b, now).is_ok(), "another client is not affected");
        assert!(l.check(a, now + Duration::from_millis(100)).is_ok());
    }

    #[test]
    fn the_table_stays_bounded_and_a_flood_shares_one_bucket() {
        let l = limiter(1, 1);
        let now = Instant::now();
        for i in 0..(MAX_CLIENTS as u32 + 10) {
            let _ = l.check(IpAddr::V4(Ipv4Addr::from(i + 1)), now);
        }
        assert!(l.inner.lock().unwrap().due.len() <= MAX_CLIENTS + 1);
        // Later, idle buckets make room again.
        let later = now + Duration::from_secs(10);
        assert!(l.check("192.0.2.1".parse().unwrap(), later).is_ok());
        assert!(
            l.inner
                .lock()
                .unwrap()
                .due
                .contains_key(&"192.0.2.1".parse::<IpAddr>().unwrap())
        );
    }

    #[test]
    fn zero_turns_it_off_and_a_proxy_header_names_the_client() {
        let off = limiter(0, 1);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        assert!((0..1000).all(|_| off.check(a, Instant::now()).is_ok()));
        let proxied = RateLimiter::new(
            RateLimit {
                per_second: 1,
                burst: 1,
            },
            Some(header::HeaderName::from_static("x-forwarded-for")),
        );
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-forwarded-for",
            "203.0.113.9, 198.51.100.7".parse().unwrap(),
        );
        let peer = Some("127.0.0.1:5000".parse().unwrap());
        assert_eq!(
            proxied.client(&headers, peer),
            "198.51.100.7".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            proxied.client(&HeaderMap::new(), peer),
            "127.0.0.1".parse::<IpAddr>().unwrap()
        );
    }
}
