//! The sealer: a SHA-256 chain over blocks of the committed global log (`es.seals`).
//!
//! It walks the log in log order, the (transaction id, position) order every reader uses,
//! below the commit-visibility horizon ([`PgEventStore::read_hashes`]), so a block, once
//! sealed, can never gain or lose an event that commits late. Each block is
//! `SHA-256(previous digest || each event's stored hash)`: 1,000 events, or fewer when they have
//! waited a second. The sealer only reads events and inserts seals; appends never wait for it.
//! Several sealers may run (one per command-side process): the block number is the primary
//! key, so one wins each block and the others reload and go on after it.

use std::time::{Duration, Instant};

use purser_event_store::{LoggedHash, PgEventStore, Position};
use sha2::{Digest, Sha256};
use sqlx::{PgPool, Row};
use tokio_util::sync::CancellationToken;

/// A stored seal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seal {
    pub block: u64,
    pub first: Position,
    pub last: Position,
    pub event_count: u64,
    pub digest: Vec<u8>,
    pub sealed_at: chrono::DateTime<chrono::Utc>,
}

/// The digest of a block: SHA-256 over the previous block's digest (nothing for block 0) and
/// the hashes of the block's events, in log order.
pub fn block_digest<'a>(previous: &[u8], hashes: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut h = Sha256::new();
    h.update(previous);
    for hash in hashes {
        h.update(hash);
    }
    h.finalize().to_vec()
}

/// How the sealer cuts blocks.
#[derive(Debug, Clone, Copy)]
pub struct SealerOptions {
    /// Events per full block.
    pub block_size: usize,
    /// How long unsealed events may wait before a shorter block seals them.
    pub max_wait: Duration,
    /// How often an idle sealer looks for new events.
    pub poll: Duration,
}

impl Default for SealerOptions {
    fn default() -> Self {
        SealerOptions {
            block_size: 1000,
            max_wait: Duration::from_secs(1),
            poll: Duration::from_millis(250),
        }
    }
}

/// Seals the log of one Postgres event store.
#[derive(Clone)]
pub struct Sealer {
    store: PgEventStore,
    pool: PgPool,
    opts: SealerOptions,
}

/// Where the seal chain ends.
#[derive(Debug, Clone, Default)]
struct Tip {
    next_block: u64,
    after: Position,
    digest: Vec<u8>,
}

enum Sealed {
    /// The block was written; its digest is the new tip of the chain.
    Block {
        digest: Vec<u8>,
    },
    Nothing,
    /// Another sealer took the block number first.
    Lost,
}

impl Sealer {
    pub fn new(pool: PgPool, opts: SealerOptions) -> Sealer {
        Sealer {
            store: PgEventStore::new(pool.clone()),
            pool,
            opts,
        }
    }

    /// Runs until `stop` is cancelled. Database errors are logged and retried with backoff:
    /// sealing is allowed to fall behind, never to skip.
    pub async fn run(self, stop: CancellationToken) {
        let mut backoff = Duration::from_millis(200);
        let mut tip: Option<Tip> = None;
        let mut waiting_since: Option<Instant> = None;
        loop {
            if stop.is_cancelled() {
                return;
            }
            let step = async {
                let t = match tip.take() {
                    Some(t) => t,
                    None => self.load_tip().await?,
                };
                let page = self
                    .store
                    .read_hashes(t.after, self.opts.block_size)
                    .await?;
                let full = page.len() >= self.opts.block_size;
                let due = !page.is_empty()
                    && (full
                        || waiting_since.get_or_insert_with(Instant::now).elapsed()
                            >= self.opts.max_wait);
                if !due {
                    return Ok::<_, anyhow::Error>((Some(t), false));
                }
                match self.seal_block(&t, &page).await? {
                    Sealed::Block { digest } => {
                        waiting_since = None;
                        let last = page.last().map(|h| h.position).unwrap_or(t.after);
                        Ok((
                            Some(Tip {
                                next_block: t.next_block + 1,
                                after: last,
                                digest,
                            }),
                            full,
                        ))
                    }
                    Sealed::Lost | Sealed::Nothing => Ok((None, true)),
                }
            };
            match step.await {
                Ok((t, more)) => {
                    tip = t;
                    backoff = Duration::from_millis(200);
                    if more {
                        continue;
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(self.opts.poll) => {}
                        _ = stop.cancelled() => return,
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "sealer could not seal; retrying");
                    tip = None;
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = stop.cancelled() => return,
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        }
    }

    /// Seals everything committed now, including a last, shorter block, and returns how many
    /// blocks it wrote. For `purser audit seal` and tests.
    pub async fn seal_now(&self) -> anyhow::Result<u64> {
        let mut written = 0;
        let mut tip = self.load_tip().await?;
        loop {
            let page = self
                .store
                .read_hashes(tip.after, self.opts.block_size)
                .await?;
            if page.is_empty() {
                return Ok(written);
            }
            match self.seal_block(&tip, &page).await? {
                Sealed::Block { digest } => {
                    written += 1;
                    tip = Tip {
                        next_block: tip.next_block + 1,
                        after: page.last().map(|h| h.position).unwrap_or(tip.after),
                        digest,
                    };
                }
                Sealed::Lost | Sealed::Nothing => tip = self.load_tip().await?,
            }
        }
    }

    async fn load_tip(&self) -> anyhow::Result<Tip> {
        let row = sqlx::query(
            "select block, last_commit, last_prepare, digest from es.seals
             order by block desc limit 1",
        )
        .fetch_optional(&self.pool)
        .await?;
        Ok(match row {
            None => Tip::default(),
            Some(r) => Tip {
                next_block: r.get::<i64, _>("block") as u64 + 1,
                after: Position::from_db(r.get("last_commit"), r.get("last_prepare")),
                digest: r.get("digest"),
            },
        })
    }

    async fn seal_block(&self, tip: &Tip, page: &[LoggedHash]) -> anyhow::Result<Sealed> {
        let (Some(first), Some(last)) = (page.first(), page.last()) else {
            return Ok(Sealed::Nothing);
        };
        let digest = block_digest(&tip.digest, page.iter().map(|h| &h.hash[..]));
        let (fc, fp) = first.position.to_db();
        let (lc, lp) = last.position.to_db();
        let inserted = sqlx::query(
            "insert into es.seals
                 (block, first_commit, first_prepare, last_commit, last_prepare, event_count, digest)
             values ($1, $2, $3, $4, $5, $6, $7)
             on conflict (block) do nothing",
        )
        .bind(tip.next_block as i64)
        .bind(fc)
        .bind(fp)
        .bind(lc)
        .bind(lp)
        .bind(page.len() as i32)
        .bind(&digest[..])
        .execute(&self.pool)
        .await?;
        if inserted.rows_affected() == 1 {
            tracing::debug!(
                block = tip.next_block,
                events = page.len(),
                "sealed a block"
            );
            Ok(Sealed::Block { digest })
        } else {
            Ok(Sealed::Lost)
        }
    }
}

/// Reads seals in block order, a page at a time, from `from_block` on.
pub async fn read_seals(pool: &PgPool, from_block: u64, max: i64) -> anyhow::Result<Vec<Seal>> {
    let rows = sqlx::query(
        "select block, first_commit, first_prepare, last_commit, last_prepare, event_count,
                digest, sealed_at
         from es.seals where block >= $1 order by block limit $2",
    )
    .bind(from_block.min(i64::MAX as u64) as i64)
    .bind(max)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .iter()
        .map(|r| Seal {
            block: r.get::<i64, _>("block").max(0) as u64,
            first: Position::from_db(r.get("first_commit"), r.get("first_prepare")),
            last: Position::from_db(r.get("last_commit"), r.get("last_prepare")),
            event_count: r.get::<i32, _>("event_count").max(0) as u64,
            digest: r.get("digest"),
            sealed_at: r.get("sealed_at"),
        })
        .collect())
}
