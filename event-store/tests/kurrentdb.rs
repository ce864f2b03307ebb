//! The contract suite on KurrentDB. Runs when `KURRENTDB_URL` points at a server (for example
//! `KURRENTDB_URL=kurrentdb://localhost:2113?tls=false` with `docker compose up -d kurrentdb`);
//! otherwise every test returns at once, and the run says so in one line.
//!
//! The reconnect test also needs a way to restart the server: a shell command in
//! `KURRENTDB_RESTART_COMMAND` that restarts it and keeps its data (for the compose service,
//! `docker compose restart kurrentdb`). Without it, that test is skipped and says so.

mod contract;

use std::sync::Arc;
use std::time::Duration;

use purser_event_store::{EventStore, KurrentEventStore};

async fn make() -> Option<(Arc<dyn EventStore>, ())> {
    let Ok(url) = std::env::var("KURRENTDB_URL") else {
        notice(
            "KurrentDB contract suite skipped: KURRENTDB_URL is not set (see event-store/tests/kurrentdb.rs)",
        );
        return None;
    };
    let store = KurrentEventStore::from_url(&url).expect("KURRENTDB_URL parses");
    store
        .wait_for_leader(Duration::from_secs(30))
        .await
        .expect("a KurrentDB leader answers");
    Some((Arc::new(store), ()))
}

async fn restart(_: &()) -> bool {
    let Ok(command) = std::env::var("KURRENTDB_RESTART_COMMAND") else {
        notice(
            "KurrentDB reconnect test skipped: KURRENTDB_RESTART_COMMAND is not set (e.g. `docker compose restart kurrentdb`)",
        );
        return false;
    };
    let status = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(&command)
        .status()
        .await
        .expect("run KURRENTDB_RESTART_COMMAND");
    assert!(status.success(), "{command} failed: {status}");
    true
}

/// Says once per test binary, on the terminal (not in the captured test output, which cargo
/// shows only for failures), why tests are being skipped.
fn notice(what: &str) {
    static SAID: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let mut said = SAID.lock().unwrap_or_else(|e| e.into_inner());
    if !said.iter().any(|s| s == what) {
        said.push(what.to_owned());
        use std::io::Write;
        let _ = writeln!(std::io::stderr(), "{what}");
    }
}

contract_suite!(
    make,
    restart,
    contract::Traits {
        refuses_ids_of_other_streams: false,
        atomic_multi_stream: false,
    }
);
