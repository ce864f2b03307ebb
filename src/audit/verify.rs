//! `purser audit verify`: checks the Postgres event log against its two hash chains.
//!
//! One pass over the log in log order, a page at a time, in constant memory:
//!
//! - **hash chain**: the database recomputes each event's `es.event_hash` from its stored
//!   content and the stored hash of the previous version of its stream, and compares it with
//!   the stored hash. An edited event fails here, at exactly its position.
//! - **stream versions**: every event but a stream's first has its predecessor (version − 1).
//!   An event removed from the middle (or the start) of a stream fails here, at the position of
//!   the event after the hole.
//! - **seals**: the events between one seal and the next are exactly the block the sealer saw:
//!   same first and last position, same count, and `SHA-256(previous digest || hashes)` equals
//!   the stored digest; block numbers have no holes. A removed, added or re-hashed sealed event
//!   fails here, reported at the first position of its block (a digest says that a block
//!   changed, not where inside it).
//!
//! The report names the first position in log order where anything breaks, and lists the
//! first problems found. Problems are found in log order except for a block's seal check,
//! which can only conclude at the block's end; the walk goes on to the end of the log, so a
//! seal failure with an earlier position is never missed.

use std::fmt;
use std::io::BufRead;

use purser_event_store::{ChainLink, PgEventStore, Position};
use sqlx::PgPool;

use super::progress::Progress;
use super::seal::{Seal, read_seals};

/// Which check found a problem.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Check {
    HashChain,
    StreamVersions,
    Seal,
    /// A seal in the database differs from a copy kept elsewhere (`--seals FILE`).
    SealCopy,
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Check::HashChain => "hash chain",
            Check::StreamVersions => "stream versions",
            Check::Seal => "seal",
            Check::SealCopy => "seal copy",
        })
    }
}

/// One problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub position: Position,
    pub check: Check,
    pub detail: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}): {}", self.position, self.check, self.detail)
    }
}

/// What a verification found.
#[derive(Debug, Clone, Default)]
pub struct VerifyReport {
    pub events: u64,
    pub seals: u64,
    /// Events after the last seal (the sealer has not reached them yet).
    pub unsealed: u64,
    pub problems: u64,
    /// The earliest problem in log order.
    pub first: Option<Finding>,
    /// The first problems found (at most [`KEPT`]), in log order.
    pub findings: Vec<Finding>,
}

/// How many problems a report lists; the count covers all of them.
pub const KEPT: usize = 20;

impl VerifyReport {
    pub fn is_clean(&self) -> bool {
        self.problems == 0
    }

    fn add(&mut self, finding: Finding) {
        self.problems += 1;
        if self
            .first
            .as_ref()
            .is_none_or(|f| finding.position < f.position)
        {
            self.first = Some(finding.clone());
        }
        if self.findings.len() < KEPT {
            self.findings.push(finding);
            self.findings.sort_by_key(|f| (f.position, f.check));
        }
    }
}

impl fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "checked {} events and {} seals ({} events after the last seal are not sealed yet)",
            self.events, self.seals, self.unsealed
        )?;
        match &self.first {
            None => writeln!(
                f,
                "OK: every stream's hash chain, every stream's versions and every seal verify"
            ),
            Some(first) => {
                writeln!(
                    f,
                    "FAILED: {} problem(s); the first break is at position {}",
                    self.problems, first
                )?;
                for finding in &self.findings {
                    writeln!(f, "  {finding}")?;
                }
                if self.problems > self.findings.len() as u64 {
                    writeln!(
                        f,
                        "  … and {} more",
                        self.problems - self.findings.len() as u64
                    )?;
                }
                Ok(())
            }
        }
    }
}

/// Events per page of the walk.
const PAGE: usize = 1000;
/// Seals per page.
const SEAL_PAGE: i64 = 100;

/// The block being checked.
struct OpenBlock {
    seal: Seal,
    hasher: sha2::Sha256,
    count: u64,
    first_seen: Option<Position>,
    last_seen: Option<Position>,
}

/// Walks the seals alongside the log.
struct SealWalk<'a> {
    pool: &'a PgPool,
    /// Blocks up to this one are checked; later ones were written during the walk.
    last_block: Option<u64>,
    buffered: std::collections::VecDeque<Seal>,
    next_block: u64,
    /// The stored digest of the previous block (what the next one must chain to).
    previous_digest: Vec<u8>,
    open: Option<OpenBlock>,
    exhausted: bool,
}

impl<'a> SealWalk<'a> {
    async fn next_seal(&mut self) -> anyhow::Result<Option<Seal>> {
        let Some(last_block) = self.last_block else {
            return Ok(None);
        };
        if self.buffered.is_empty() && !self.exhausted {
            let page = read_seals(self.pool, self.next_block, SEAL_PAGE).await?;
            if (page.len() as i64) < SEAL_PAGE {
                self.exhausted = true;
            }
            self.buffered.extend(page);
        }
        match self.buffered.pop_front() {
            Some(s) if s.block <= last_block => Ok(Some(s)),
            _ => {
                self.exhausted = true;
                self.buffered.clear();
                Ok(None)
            }
        }
    }

    /// Opens the next block, reporting a hole in the block numbers.
    async fn open_next(&mut self, report: &mut VerifyReport) -> anyhow::Result<()> {
        use sha2::Digest;
        if let Some(seal) = self.next_seal().await? {
            if seal.block != self.next_block {
                report.add(Finding {
                    position: seal.first,
                    check: Check::Seal,
                    detail: format!(
                        "seal blocks {}..{} are missing (the seal table was edited)",
                        self.next_block,
                        seal.block - 1
                    ),
                });
            }
            self.next_block = seal.block + 1;
            let mut hasher = sha2::Sha256::new();
            hasher.update(&self.previous_digest);
            self.open = Some(OpenBlock {
                seal,
                hasher,
                count: 0,
                first_seen: None,
                last_seen: None,
            });
        }
        Ok(())
    }

    /// Concludes the open block.
    fn close(&mut self, report: &mut VerifyReport) {
        use sha2::Digest;
        let Some(b) = self.open.take() else { return };
        report.seals += 1;
        let at = b.first_seen.map_or(b.seal.first, |p| p.min(b.seal.first));
        let block = b.seal.block;
        let mut problems = Vec::new();
        if b.count != b.seal.event_count {
            problems.push(format!(
                "{} events where {} were sealed",
                b.count, b.seal.event_count
            ));
        }
        if b.first_seen != Some(b.seal.first) {
            problems.push(format!(
                "the block starts at {} but was sealed starting at {}",
                b.first_seen.map_or("nothing".into(), |p| p.to_string()),
                b.seal.first
            ));
        }
        if b.last_seen != Some(b.seal.last) {
            problems.push(format!(
                "the block ends at {} but was sealed ending at {}",
                b.last_seen.map_or("nothing".into(), |p| p.to_string()),
                b.seal.last
            ));
        }
        let digest = b.hasher.finalize().to_vec();
        if digest != b.seal.digest {
            problems.push(
                "its digest does not match (an event in it was changed, added or removed, or the seal was)"
                    .to_string(),
            );
        }
        if !problems.is_empty() {
            report.add(Finding {
                position: at,
                check: Check::Seal,
                detail: format!(
                    "seal block {block} ({}..{}): {}",
                    b.seal.first,
                    b.seal.last,
                    problems.join("; ")
                ),
            });
        }
        self.previous_digest = b.seal.digest;
    }

    /// Accounts one event against the seals.
    async fn take(&mut self, link: &ChainLink, report: &mut VerifyReport) -> anyhow::Result<()> {
        use sha2::Digest;
        loop {
            if self.open.is_none() {
                self.open_next(report).await?;
                if self.open.is_none() {
                    report.unsealed += 1;
                    return Ok(());
                }
            }
            let b = self.open.as_mut().expect("opened above");
            if link.position > b.seal.last {
                self.close(report);
                continue;
            }
            if b.first_seen.is_none() && link.position < b.seal.first {
                // Between the previous block and this one: sealed by nobody, yet earlier than
                // sealed events.
                report.add(Finding {
                    position: link.position,
                    check: Check::Seal,
                    detail: format!(
                        "event {} ({} v{}) lies between sealed blocks, outside any seal",
                        link.event_id, link.stream, link.version
                    ),
                });
                return Ok(());
            }
            b.hasher.update(&link.hash);
            b.count += 1;
            b.first_seen.get_or_insert(link.position);
            b.last_seen = Some(link.position);
            return Ok(());
        }
    }

    /// After the last event: every remaining seal lacks events.
    async fn finish(&mut self, report: &mut VerifyReport) -> anyhow::Result<()> {
        loop {
            if self.open.is_none() {
                self.open_next(report).await?;
            }
            if self.open.is_none() {
                return Ok(());
            }
            self.close(report);
        }
    }
}

/// Verifies the whole visible log. `seal_copy`, when given, is a copy of the seals kept away
/// from the database (`purser audit seals`), which the stored seals must still match.
pub async fn verify(
    store: &PgEventStore,
    pool: &PgPool,
    seal_copy: Option<&mut dyn BufRead>,
    progress: &mut Progress,
) -> anyhow::Result<VerifyReport> {
    // Read to everything committed when verification starts: an open transaction elsewhere
    // in the cluster would otherwise hold the read horizon back and end the walk early.
    purser_event_store::committed_snapshot(store, std::time::Duration::from_secs(60)).await?;
    let mut report = VerifyReport::default();
    let last_block: Option<i64> = sqlx::query_scalar("select max(block) from es.seals")
        .fetch_one(pool)
        .await?;
    let mut seals = SealWalk {
        pool,
        last_block: last_block.map(|b| b.max(0) as u64),
        buffered: Default::default(),
        next_block: 0,
        previous_digest: Vec::new(),
        open: None,
        exhausted: last_block.is_none(),
    };
    let mut after = Position::START;
    loop {
        let page = store.read_chain(after, PAGE).await?;
        let n = page.len();
        for link in &page {
            report.events += 1;
            if !link.has_predecessor {
                report.add(Finding {
                    position: link.position,
                    check: Check::StreamVersions,
                    detail: format!(
                        "event {} is version {} of {}, but version {} is missing",
                        link.event_id,
                        link.version,
                        link.stream,
                        link.version.saturating_sub(1)
                    ),
                });
            } else if !link.hash_matches {
                report.add(Finding {
                    position: link.position,
                    check: Check::HashChain,
                    detail: format!(
                        "event {} ({} v{}): the stored hash does not match its content and the previous hash (the event, or the one before it in its stream, was changed)",
                        link.event_id, link.stream, link.version
                    ),
                });
            }
            seals.take(link, &mut report).await?;
        }
        if let Some(last) = page.last() {
            after = last.position;
            progress.advance(n as u64, &after);
        }
        if n < PAGE {
            break;
        }
    }
    seals.finish(&mut report).await?;
    if let Some(copy) = seal_copy {
        compare_seal_copy(pool, copy, &mut report).await?;
    }
    Ok(report)
}

/// A seal as `purser audit seals` writes it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ExportedSeal {
    pub block: u64,
    pub first: String,
    pub last: String,
    pub event_count: u64,
    pub digest: String,
    pub sealed_at: chrono::DateTime<chrono::Utc>,
}

impl From<&Seal> for ExportedSeal {
    fn from(s: &Seal) -> ExportedSeal {
        ExportedSeal {
            block: s.block,
            first: s.first.to_string(),
            last: s.last.to_string(),
            event_count: s.event_count,
            digest: hex::encode(&s.digest),
            sealed_at: s.sealed_at,
        }
    }
}

/// Every seal kept elsewhere must still be in the database, unchanged. A copy taken before
/// someone rewrote both the events and the seals is what exposes that rewrite.
async fn compare_seal_copy(
    pool: &PgPool,
    copy: &mut dyn BufRead,
    report: &mut VerifyReport,
) -> anyhow::Result<()> {
    let mut raw = String::new();
    let mut line_no = 0u64;
    loop {
        raw.clear();
        if copy.read_line(&mut raw)? == 0 {
            return Ok(());
        }
        line_no += 1;
        if raw.trim().is_empty() {
            continue;
        }
        let kept: ExportedSeal = serde_json::from_str(&raw)
            .map_err(|e| anyhow::anyhow!("seal copy, line {line_no}: not a seal: {e}"))?;
        let first: Position = kept
            .first
            .parse()
            .map_err(|e| anyhow::anyhow!("seal copy, line {line_no}: {e}"))?;
        let stored = read_seals(pool, kept.block, 1)
            .await?
            .into_iter()
            .find(|s| s.block == kept.block);
        let detail = match stored {
            None => Some(format!(
                "seal block {} of the copy is not in the database",
                kept.block
            )),
            Some(s) => {
                let now = ExportedSeal::from(&s);
                (now.digest != kept.digest
                    || now.first != kept.first
                    || now.last != kept.last
                    || now.event_count != kept.event_count)
                    .then(|| {
                        format!(
                            "seal block {} differs from the copy: digest {} now, {} in the copy",
                            kept.block, now.digest, kept.digest
                        )
                    })
            }
        };
        if let Some(detail) = detail {
            report.add(Finding {
                position: first,
                check: Check::SealCopy,
                detail,
            });
        }
    }
}

/// Writes every seal as JSON Lines, for keeping a copy away from the database.
pub async fn export_seals(pool: &PgPool, out: &mut dyn std::io::Write) -> anyhow::Result<u64> {
    let mut next = 0u64;
    let mut written = 0u64;
    loop {
        let page = read_seals(pool, next, 1000).await?;
        for s in &page {
            serde_json::to_writer(&mut *out, &ExportedSeal::from(s))?;
            out.write_all(b"\n")?;
            written += 1;
            next = s.block + 1;
        }
        if page.len() < 1000 {
            out.flush()?;
            return Ok(written);
        }
    }
}
