//! Request-time checks of an access token's session: is it still live, is the account still
//! enabled, and which roles does the account hold now.
//!
//! Every transport (HTTP POST and GET, WebSocket) authenticates through
//! [`SessionCheck::authenticate`]. The answer for a session is cached for `ttl` (30 seconds by
//! default), so one request costs at most one indexed lookup and revocation by another process
//! takes effect within that time; a sign-out on this process takes effect at once. The cache
//! holds at most `capacity` sessions: when full, expired answers go first, then everything.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use purser_domain::customer::Role;
use sqlx::PgPool;
use uuid::Uuid;

use crate::auth::{TokenError, Tokens, Viewer};

/// What the database says about one session.
#[derive(Debug, Clone, PartialEq)]
struct Standing {
    live: bool,
    /// `None` until the customers read model has the account (just after signing up).
    roles: Option<BTreeSet<Role>>,
}

pub struct SessionCheck {
    pool: PgPool,
    ttl: Duration,
    capacity: usize,
    cache: Mutex<HashMap<Uuid, (Instant, Standing)>>,
}

impl SessionCheck {
    pub const DEFAULT_TTL: Duration = Duration::from_secs(30);
    pub const DEFAULT_CAPACITY: usize = 50_000;

    pub fn new(pool: PgPool, ttl: Duration, capacity: usize) -> SessionCheck {
        SessionCheck {
            pool,
            ttl,
            capacity: capacity.max(1),
            cache: Mutex::default(),
        }
    }

    /// The viewer behind a bearer token: signature and expiry, then the session and the
    /// account's current roles.
    pub async fn authenticate(&self, tokens: &Tokens, token: &str) -> Result<Viewer, AuthError> {
        let mut viewer = tokens.verify(token).map_err(AuthError::Token)?;
        let session = viewer
            .session_id
            .ok_or(AuthError::Token(TokenError::Invalid))?;
        let standing = match self.cached(session) {
            Some(s) => s,
            None => {
                let s = self.load(session).await.map_err(AuthError::Unavailable)?;
                self.remember(session, s.clone());
                s
            }
        };
        if !standing.live {
            return Err(AuthError::Ended);
        }
        if let Some(roles) = standing.roles {
            viewer.roles = roles;
        }
        Ok(viewer)
    }

    /// Forgets a session this process has just ended, so its next request is refused at once.
    pub fn forget(&self, session: Uuid) {
        self.cache
            .lock()
            .expect("session cache lock")
            .remove(&session);
    }

    /// Forgets every cached answer (after a password change or a disabled account, whose
    /// sessions this process cannot name one by one).
    pub fn clear(&self) {
        self.cache.lock().expect("session cache lock").clear();
    }

    pub fn cached_sessions(&self) -> usize {
        self.cache.lock().expect("session cache lock").len()
    }

    fn cached(&self, session: Uuid) -> Option<Standing> {
        let cache = self.cache.lock().expect("session cache lock");
        cache
            .get(&session)
            .filter(|(at, _)| at.elapsed() < self.ttl)
            .map(|(_, s)| s.clone())
    }

    fn remember(&self, session: Uuid, standing: Standing) {
        let mut cache = self.cache.lock().expect("session cache lock");
        if cache.len() >= self.capacity {
            let ttl = self.ttl;
            cache.retain(|_, (at, _)| at.elapsed() < ttl);
            if cache.len() >= self.capacity {
                cache.clear();
            }
        }
        cache.insert(session, (Instant::now(), standing));
    }

    async fn load(&self, session: Uuid) -> Result<Standing, sqlx::Error> {
        // The read model's roles count once it has caught up with the account as the session
        // saw it; before that (a role granted a moment ago) the token's roles stand.
        let row: Option<(bool, Option<Vec<String>>, Option<bool>)> = sqlx::query_as(
            "select s.revoked_at is null and s.expires_at > now(),
                    case when s.account_commit is null
                           or (cp.commit_position, cp.prepare_position)
                              >= (s.account_commit, s.account_prepare)
                         then c.roles end,
                    c.disabled_at is not null
             from purser.sessions s
             left join sales.customers c on c.customer_id = s.customer_id
             left join purser.projection_checkpoints cp on cp.name = 'customers'
             where s.id = $1",
        )
        .bind(session)
        .fetch_optional(&self.pool)
        .await?;
        let Some((live, roles, disabled)) = row else {
            return Ok(Standing {
                live: false,
                roles: None,
            });
        };
        let roles = roles.map(|names| names.iter().filter_map(|n| parse_role(n)).collect());
        Ok(Standing {
            live: live && disabled != Some(true),
            roles,
        })
    }
}

fn parse_role(name: &str) -> Option<Role> {
    serde_json::from_value(serde_json::Value::String(name.to_owned())).ok()
}

/// Why a bearer token does not authenticate.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error(transparent)]
    Token(TokenError),
    #[error("the session has ended; sign in again")]
    Ended,
    #[error("sessions cannot be checked right now")]
    Unavailable(sqlx::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_names_parse_as_stored() {
        assert_eq!(parse_role("admin"), Some(Role::Admin));
        assert_eq!(parse_role("auditor"), Some(Role::Auditor));
        assert_eq!(parse_role("root"), None);
    }

    #[tokio::test]
    async fn the_cache_is_bounded_and_forgets_on_sign_out() {
        let pool = PgPool::connect_lazy("postgres://127.0.0.1/none").unwrap();
        let check = SessionCheck::new(pool, Duration::from_secs(30), 3);
        for _ in 0..10 {
            check.remember(
                Uuid::new_v4(),
                Standing {
                    live: true,
                    roles: None,
                },
            );
            assert!(check.cached_sessions() <= 3);
        }
        let s = Uuid::new_v4();
        check.remember(
            s,
            Standing {
                live: true,
                roles: None,
            },
        );
        assert!(check.cached(s).is_some());
        check.forget(s);
        assert!(check.cached(s).is_none());
    }
}
