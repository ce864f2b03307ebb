//! Passwords: argon2id hashing on a bounded pool, and the credentials table.
//!
//! Hashing costs ~19 MiB and tens of milliseconds of a core, so at most `concurrency` hashes
//! run at once; a caller waits up to `queue_wait` for a turn and is then told to try again,
//! which keeps a flood of sign-ins from exhausting memory or starving other requests. An
//! unknown address costs the same work as a wrong password (a dummy hash is checked).

use std::sync::Arc;
use std::time::Duration;

use argon2::password_hash::{PasswordHasher, PasswordVerifier, SaltString, rand_core::OsRng};
use argon2::{Argon2, PasswordHash as Phc};
use purser_domain::CustomerId;
use sqlx::PgPool;
use tokio::sync::Semaphore;

use crate::failure::Failure;

pub const PASSWORD_MIN: usize = 8;
pub const PASSWORD_MAX: usize = 128;

/// A password that never prints.
pub struct Password(String);

impl Password {
    pub fn parse(raw: String) -> Result<Password, Failure> {
        let n = raw.chars().count();
        if !(PASSWORD_MIN..=PASSWORD_MAX).contains(&n) {
            return Err(Failure::rejected(
                Some("password"),
                "INVALID_INPUT",
                format!("a password needs {PASSWORD_MIN} to {PASSWORD_MAX} characters"),
            ));
        }
        Ok(Password(raw))
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// The bounded pool passwords are hashed and checked on.
#[derive(Clone)]
pub struct Hasher {
    permits: Arc<Semaphore>,
    queue_wait: Duration,
}

const DUMMY: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$0z5u9pL8yq+2lm6R6zVv7c9mAcW9rI7H6o1m1oK5vFw";

impl Hasher {
    pub fn new(concurrency: usize, queue_wait: Duration) -> Hasher {
        Hasher {
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
            queue_wait,
        }
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Failure> {
        let permit = tokio::time::timeout(self.queue_wait, self.permits.clone().acquire_owned())
            .await
            .map_err(|_| busy())?
            .map_err(|_| busy())?;
        let out = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            work()
        })
        .await
        .map_err(|e| Failure::internal(format!("hashing task failed: {e}")))?;
        Ok(out)
    }

    pub async fn hash(&self, password: Password) -> Result<String, Failure> {
        self.run(move || {
            let salt = SaltString::generate(&mut OsRng);
            Argon2::default()
                .hash_password(password.0.as_bytes(), &salt)
                .map(|h| h.to_string())
        })
        .await?
        .map_err(|e| Failure::internal(format!("hashing failed: {e}")))
    }

    /// With no hash (unknown account) it still does one verification's work and answers false.
    pub async fn verify(&self, password: Password, hash: Option<String>) -> Result<bool, Failure> {
        self.run(move || {
            let known = hash.is_some();
            let phc = hash.unwrap_or_else(|| DUMMY.to_owned());
            let ok = Phc::new(&phc).is_ok_and(|parsed| {
                Argon2::default()
                    .verify_password(password.0.as_bytes(), &parsed)
                    .is_ok()
            });
            known && ok
        })
        .await
    }
}

fn busy() -> Failure {
    Failure::rejected(
        None,
        "TOO_MANY_ATTEMPTS",
        "sign-in is busy right now; try again in a few seconds (retryAfter=2)",
    )
}

pub async fn stored_hash(pool: &PgPool, id: CustomerId) -> Result<Option<String>, Failure> {
    sqlx::query_scalar("select password_hash from purser.credentials where customer_id = $1")
        .bind(id.as_uuid())
        .fetch_optional(pool)
        .await
        .map_err(Failure::database)
}

pub async fn store_hash(pool: &PgPool, id: CustomerId, phc: &str) -> Result<(), Failure> {
    sqlx::query(
        "insert into purser.credentials (customer_id, password_hash) values ($1, $2)
         on conflict (customer_id) do update set password_hash = $2, changed_at = now()",
    )
    .bind(id.as_uuid())
    .bind(phc)
    .execute(pool)
    .await
    .map_err(Failure::database)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_verify_and_the_pool_turns_away_when_full() {
        let hasher = Hasher::new(1, Duration::from_millis(50));
        let phc = hasher
            .hash(Password::parse("correct horse".into()).unwrap())
            .await
            .unwrap();
        let ok = hasher.verify(
            Password::parse("correct horse".into()).unwrap(),
            Some(phc.clone()),
        );
        assert!(ok.await.unwrap());
        let wrong = hasher.verify(Password::parse("wrong horse".into()).unwrap(), Some(phc));
        assert!(!wrong.await.unwrap());
        let unknown = hasher.verify(Password::parse("whatever1".into()).unwrap(), None);
        assert!(!unknown.await.unwrap());
        let _held = hasher.permits.clone().acquire_owned().await.unwrap();
        let refused = hasher
            .hash(Password::parse("correct horse".into()).unwrap())
            .await;
        assert!(
            matches!(refused, Err(Failure::Rejected { code, .. }) if code == "TOO_MANY_ATTEMPTS")
        );
    }

    #[test]
    fn passwords_never_print() {
        let p = Password::parse("hunter2hunter2".into()).unwrap();
        assert_eq!(format!("{p:?}"), "Password(<redacted>)");
        assert!(Password::parse("short".into()).is_err());
    }
}
