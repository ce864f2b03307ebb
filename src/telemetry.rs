//! Logging: structured `tracing` output, text for people or JSON for machines.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. `filter` is an `EnvFilter` directive (`PURSER_LOG`).
pub fn init(filter: &str, json: bool) {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // A second call (tests starting several apps) keeps the first subscriber.
    let _ = if json {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.compact().try_init()
    };
}
