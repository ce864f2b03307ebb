//! Sessions, password hashing and sign-in throttling. docs/security.md explains the model;
//! the README's configuration table lists the variables.

use std::time::Duration;

use purser_command_api::accounts::Hasher;
use purser_command_api::sessions::SessionPolicy;
use purser_command_api::throttle::ThrottlePolicy;

use super::{ConfigError, number};

#[derive(Debug, Clone)]
pub struct Identity {
    pub sessions: SessionPolicy,
    pub throttle: ThrottlePolicy,
    /// Password hashes computed at once (each takes ~19 MiB and a core for tens of ms).
    pub hash_concurrency: usize,
    /// How long a sign-in waits for a hashing slot before it is told to try again.
    pub hash_queue_wait: Duration,
    /// How long a session's standing (live, roles) is cached per process.
    pub session_check: Duration,
}

impl Identity {
    pub fn from_lookup(
        get: &impl Fn(&str) -> Option<String>,
        access_ttl: Duration,
    ) -> Result<Identity, ConfigError> {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get()) as u64;
        let refresh = number(
            get,
            "PURSER_REFRESH_TTL_SECS",
            30 * 86_400,
            300,
            365 * 86_400,
        )?;
        let per_account = number(get, "PURSER_SIGN_IN_FAILURES_PER_ACCOUNT", 10, 1, 1_000)?;
        let per_client = number(get, "PURSER_SIGN_IN_FAILURES_PER_CLIENT", 100, 1, 100_000)?;
        let hash_concurrency = number(get, "PURSER_PASSWORD_HASH_CONCURRENCY", cores, 1, 256)?;
        let session_check = number(get, "PURSER_SESSION_CHECK_SECS", 30, 0, 60)?;
        Ok(Identity {
            sessions: SessionPolicy {
                access_ttl,
                refresh_ttl: Duration::from_secs(refresh),
            },
            throttle: ThrottlePolicy {
                per_account: per_account as i32,
                per_client: per_client as i32,
                ..ThrottlePolicy::default()
            },
            hash_concurrency: hash_concurrency as usize,
            hash_queue_wait: Duration::from_secs(5),
            session_check: Duration::from_secs(session_check),
        })
    }

    pub fn hasher(&self) -> Hasher {
        Hasher::new(self.hash_concurrency, self.hash_queue_wait)
    }
}
