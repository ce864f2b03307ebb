//! `purser audit …`: the auditor's subcommands.

use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use clap::Subcommand;
use purser_event_store::{EventFilter, PgEventStore, Position, StreamName};

use super::progress::{Progress, ProgressEvery};
use crate::config::{Config, StoreKind};
use crate::services;

#[derive(Subcommand, Debug)]
pub enum AuditAction {
    /// Write the event log as JSON Lines, in log order, with every envelope field (and, on
    /// Postgres, each event's chain hash). Streams page by page in constant memory.
    Export {
        /// Only this stream (e.g. order-0191…).
        #[arg(long, value_name = "NAME", value_parser = parse_stream)]
        stream: Option<StreamName>,
        /// Only this stream category (order, cart, inventory, …).
        #[arg(long, value_name = "CAT")]
        category: Option<String>,
        /// Only events after this position (exclusive, like a checkpoint: pass the last
        /// position of an earlier export to continue it). Positions look like 1234/5678.
        #[arg(long, value_name = "P")]
        from_position: Option<Position>,
        /// Only events at or before this position.
        #[arg(long, value_name = "P")]
        to_position: Option<Position>,
        /// Only events recorded at or after this time (RFC 3339, e.g. 2025-01-31T00:00:00Z).
        #[arg(long, value_name = "TIMESTAMP")]
        since: Option<DateTime<Utc>>,
        /// Only events recorded before this time.
        #[arg(long, value_name = "TIMESTAMP")]
        until: Option<DateTime<Utc>>,
        /// Write to FILE instead of standard output.
        #[arg(long, short, value_name = "FILE")]
        output: Option<PathBuf>,
        #[command(flatten)]
        progress: ProgressArgs,
    },
    /// Append an export to an EMPTY event store: same event ids, streams, versions, types,
    /// schema versions, data and metadata, in the same order (new positions and recording
    /// times). Refuses a store that holds any event.
    Import {
        /// The export (JSON Lines); `-` reads standard input.
        file: PathBuf,
        #[command(flatten)]
        progress: ProgressArgs,
    },
    /// Check every stream's hash chain, every stream's versions and every seal (Postgres
    /// store); print the first position where anything breaks. Exits non-zero if anything does.
    Verify {
        /// Also check the database's seals against a copy kept elsewhere (`purser audit seals`).
        #[arg(long, value_name = "FILE")]
        seals: Option<PathBuf>,
        #[command(flatten)]
        progress: ProgressArgs,
    },
    /// Seal everything committed so far (the command side also does this in the background).
    Seal,
    /// Write every seal (block, positions, count, digest) as JSON Lines, to keep a copy away
    /// from the database.
    Seals {
        /// Write to FILE instead of standard output.
        #[arg(long, short, value_name = "FILE")]
        output: Option<PathBuf>,
    },
}

#[derive(clap::Args, Debug)]
pub struct ProgressArgs {
    /// When stderr is not a terminal: print a progress line every N events…
    #[arg(long, value_name = "N", default_value_t = 100_000)]
    progress_every: u64,
    /// …or every S seconds, whichever comes first.
    #[arg(long, value_name = "S", default_value_t = 10)]
    progress_seconds: u64,
}

impl ProgressArgs {
    fn every(&self) -> ProgressEvery {
        ProgressEvery {
            events: self.progress_every.max(1),
            interval: Duration::from_secs(self.progress_seconds.max(1)),
        }
    }
}

fn parse_stream(s: &str) -> Result<StreamName, String> {
    StreamName::new(s).map_err(|e| e.to_string())
}

/// The Postgres store behind `services`, or a clear refusal on KurrentDB.
fn postgres_only(services: &services::Services, what: &str) -> anyhow::Result<PgEventStore> {
    match services.config.event_store {
        StoreKind::Postgres => Ok(PgEventStore::new(services.pool.clone())),
        StoreKind::KurrentDb => anyhow::bail!(
            "{what} needs the Postgres event store: KurrentDB keeps no hash chain and no seals \
             (see docs/audit.md, \"KurrentDB\")"
        ),
    }
}

/// How many events a run will go through, counted only when a progress bar will show it (a
/// count is a scan of its own, not worth it for plain progress lines).
async fn total_for_bar(
    services: &services::Services,
    after: Position,
    filter: &EventFilter,
) -> Option<u64> {
    if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        return None;
    }
    services
        .store
        .backlog(after, filter, i64::MAX as u64)
        .await
        .ok()
        .map(|(n, _)| n)
}

pub async fn run(action: AuditAction, config: &Config) -> anyhow::Result<()> {
    let services = services::connect(config).await?;
    match action {
        AuditAction::Export {
            stream,
            category,
            from_position,
            to_position,
            since,
            until,
            output,
            progress,
        } => {
            let filter = super::ExportFilter {
                stream,
                category,
                after: from_position,
                to: to_position,
                since,
                until,
            };
            let pg = (services.config.event_store == StoreKind::Postgres)
                .then(|| PgEventStore::new(services.pool.clone()));
            let f = match (&filter.stream, &filter.category) {
                (Some(s), _) => EventFilter::categories([s.category()]),
                (None, Some(c)) => EventFilter::categories([c.as_str()]),
                (None, None) => EventFilter::all(),
            };
            let total = total_for_bar(&services, filter.after.unwrap_or(Position::START), &f).await;
            let mut bar = Progress::new("export", total, progress.every());
            let summary = match &output {
                Some(path) => {
                    let file = std::fs::File::create(path)
                        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", path.display()))?;
                    let mut out = BufWriter::with_capacity(1 << 20, file);
                    let s =
                        super::export(&*services.store, pg.as_ref(), &filter, &mut out, &mut bar)
                            .await?;
                    out.into_inner()
                        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?
                        .sync_all()?;
                    s
                }
                None => {
                    let stdout = std::io::stdout();
                    let mut out = BufWriter::with_capacity(1 << 20, stdout.lock());
                    super::export(&*services.store, pg.as_ref(), &filter, &mut out, &mut bar)
                        .await?
                }
            };
            bar.finish();
            let range = match (summary.first, summary.last) {
                (Some(a), Some(b)) => format!(" (positions {a} to {b})"),
                _ => String::new(),
            };
            eprintln!(
                "exported {} events{range}{}",
                summary.events,
                output
                    .as_ref()
                    .map(|p| format!(" to {}", p.display()))
                    .unwrap_or_default()
            );
            Ok(())
        }
        AuditAction::Import { file, progress } => {
            let mut input: Box<dyn BufRead> = if file.as_os_str() == "-" {
                Box::new(BufReader::new(std::io::stdin()))
            } else {
                Box::new(BufReader::with_capacity(
                    1 << 20,
                    std::fs::File::open(&file)
                        .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", file.display()))?,
                ))
            };
            let mut bar = Progress::new("import", None, progress.every());
            let summary = super::import(&*services.store, &mut *input, &mut bar).await?;
            bar.finish();
            println!(
                "imported {} events in {} appends",
                summary.events, summary.appends
            );
            Ok(())
        }
        AuditAction::Verify { seals, progress } => {
            let pg = postgres_only(&services, "audit verify")?;
            let total = total_for_bar(&services, Position::START, &EventFilter::all()).await;
            let mut bar = Progress::new("verify", total, progress.every());
            let mut copy: Option<Box<dyn BufRead>> = match &seals {
                Some(path) => Some(Box::new(BufReader::new(
                    std::fs::File::open(path)
                        .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", path.display()))?,
                ))),
                None => None,
            };
            let report = super::verify(
                &pg,
                &services.pool,
                copy.as_mut().map(|c| &mut **c as &mut dyn BufRead),
                &mut bar,
            )
            .await?;
            bar.finish();
            print!("{report}");
            std::io::stdout().flush()?;
            match report.first {
                None => Ok(()),
                Some(first) => anyhow::bail!(
                    "verification failed: first break at position {} ({})",
                    first.position,
                    first.check
                ),
            }
        }
        AuditAction::Seal => {
            postgres_only(&services, "audit seal")?;
            let sealer = super::Sealer::new(services.pool.clone(), Default::default());
            let n = sealer.seal_now().await?;
            println!("sealed {n} new block(s)");
            Ok(())
        }
        AuditAction::Seals { output } => {
            postgres_only(&services, "audit seals")?;
            let n = match &output {
                Some(path) => {
                    let file = std::fs::File::create(path)
                        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", path.display()))?;
                    let mut out = BufWriter::new(file);
                    super::verify::export_seals(&services.pool, &mut out).await?
                }
                None => {
                    let stdout = std::io::stdout();
                    let mut out = BufWriter::new(stdout.lock());
                    super::verify::export_seals(&services.pool, &mut out).await?
                }
            };
            eprintln!("wrote {n} seals");
            Ok(())
        }
    }
}
