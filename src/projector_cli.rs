//! `purser projector …` and `purser status`: run the projectors, list, rebuild (in place or
//! online), skip a poison event on purpose, and show every projection's health.

use std::time::Duration;

use clap::Args;
use purser_event_store::Position;
use purser_projections::dead_letters::{self, SkipOutcome};

use crate::app::{self, Role};
use crate::config::Config;
use crate::services::{self, Services};

#[derive(Args, Debug)]
pub struct ProjectorArgs {
    /// Empty one projection's read model and rebuild it from position zero, then exit.
    #[arg(long, value_name = "NAME")]
    rebuild: Option<String>,
    /// With --rebuild: build the new version aside while the live tables keep serving,
    /// then switch in one transaction (zero downtime; needs CREATEDB for a scratch
    /// database).
    #[arg(long, requires = "rebuild")]
    online: bool,
    /// List the projections and exit.
    #[arg(long)]
    list: bool,
    /// Have projection NAME pass over the event at POSITION (the one `purser status` shows
    /// it failing on), record it in `purser.dead_letters`, and exit.
    #[arg(long, num_args = 2, value_names = ["POSITION", "NAME"], conflicts_with = "rebuild")]
    skip: Option<Vec<String>>,
    /// With --skip: why (kept with the dead letter for auditors).
    #[arg(long, requires = "skip", default_value = "skipped by an operator")]
    reason: String,
    /// With --skip: skip an event the projection has not failed on.
    #[arg(long, requires = "skip")]
    force: bool,
}

pub async fn run(args: ProjectorArgs, config: Config) -> anyhow::Result<()> {
    if args.list {
        for p in services::projections() {
            println!("{}", p.name());
        }
        return Ok(());
    }
    if let Some(skip) = args.skip {
        let services = services::connect(&config).await?;
        return skip_event(&services, &skip[1], &skip[0], &args.reason, args.force).await;
    }
    let Some(name) = args.rebuild else {
        return app::serve(config, Role::Projector).await;
    };
    let services = services::connect(&config).await?;
    if args.online {
        rebuild_online(&services, &name).await
    } else {
        rebuild(&services, &name).await
    }
}

fn unknown(name: &str) -> anyhow::Error {
    anyhow::anyhow!("there is no projection named {name:?}; `purser projector --list` lists them")
}

async fn rebuild_online(services: &Services, name: &str) -> anyhow::Result<()> {
    let Some(projection) = services::projections()
        .into_iter()
        .find(|p| p.name() == name)
    else {
        return Err(unknown(name));
    };
    let done = crate::online_rebuild::rebuild_online(services, projection).await?;
    println!(
        "rebuilt {name} aside ({} events) and switched at {} ({} more events applied in the switch)",
        done.events_aside, done.position, done.events_at_switch
    );
    for (table, rows) in &done.rows {
        println!("  {table}: {rows} rows");
    }
    Ok(())
}

async fn rebuild(services: &Services, name: &str) -> anyhow::Result<()> {
    let projector = services.projector();
    if !projector.names().contains(&name) {
        return Err(unknown(name));
    }
    match projector.rebuild(name).await? {
        purser_projections::RebuildOutcome::Rebuilt { events } => {
            println!("rebuilt {name} from position zero: {events} events applied");
        }
        purser_projections::RebuildOutcome::HandedOver { owner } => println!(
            "reset {name}; the projector running it ({}) is rebuilding it now",
            owner.as_deref().unwrap_or("another process")
        ),
    }
    Ok(())
}

/// `--skip POSITION NAME`: read-model and command-side projections alike.
async fn skip_event(
    services: &Services,
    name: &str,
    position: &str,
    reason: &str,
    force: bool,
) -> anyhow::Result<()> {
    let position: Position = position
        .parse()
        .map_err(|e| anyhow::anyhow!("{position:?} is not a log position ({e})"))?;
    let projector = [services.projector(), services.command_projector()]
        .into_iter()
        .find(|p| p.names().contains(&name))
        .ok_or_else(|| unknown(name))?;
    let by = format!(
        "operator:{}@{}",
        std::env::var("USER").unwrap_or_else(|_| "unknown".into()),
        std::env::var("HOSTNAME").unwrap_or_else(|_| "localhost".into())
    );
    match projector.skip(name, position, &by, reason, force).await? {
        SkipOutcome::Skipped => {
            println!("{name} passed over the event at {position}; it is in purser.dead_letters");
            Ok(())
        }
        SkipOutcome::HandedOver { owner } => {
            println!(
                "asked {} (which runs {name}) to pass over {position} at its next retry; waiting",
                owner.as_deref().unwrap_or("the projector")
            );
            wait_for_skip(services, name, position).await
        }
    }
}

/// Waits until the projector running `name` has recorded the skip (its retry back-off is
/// at most 30 seconds).
async fn wait_for_skip(services: &Services, name: &str, position: Position) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    while tokio::time::Instant::now() < deadline {
        let done = dead_letters::list(&services.pool, 1_000)
            .await?
            .into_iter()
            .any(|d| d.projection == name && d.position == position && d.skipped_at.is_some());
        if done {
            println!("{name} passed over the event at {position}; it is in purser.dead_letters");
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    anyhow::bail!(
        "{name} has not reached {position} within 90 s; the skip stays asked for and applies \
         when it does (see `purser status`)"
    )
}

/// `purser status`: every projection's position, lag and health, and what to do about a
/// failing one.
pub async fn status(config: Config) -> anyhow::Result<()> {
    let services = services::connect(&config).await?;
    let rows = services.checkpoints.all().await?;
    println!(
        "{:<24} {:<28} {:>12} {:>10} {:>10}  STATUS",
        "PROJECTION", "POSITION", "APPLIED", "LAG", "LAG (s)"
    );
    for r in &rows {
        println!(
            "{:<24} {:<28} {:>12} {:>10} {:>10.1}  {}",
            r.name,
            r.position.to_string(),
            r.events_applied,
            r.lag_events,
            r.lag_seconds,
            r.status
        );
    }
    for r in rows.iter().filter(|r| r.status == "failing") {
        println!(
            "\n{} is failing ({} attempts): {}",
            r.name,
            r.failures,
            r.last_error.as_deref().unwrap_or("no error recorded")
        );
        if let Some(at) = r.failing_position {
            println!(
                "  it stops at the event at {at}; after looking at it, skip it on purpose with\n  \
                 purser projector --skip {at} {} --reason '…'",
                r.name
            );
        }
    }
    Ok(())
}
