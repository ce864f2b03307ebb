//! The contract suite on KurrentDB. Runs when `KURRENTDB_URL` points at a server (for example
//! `KURRENTDB_URL=kurrentdb://localhost:2113?tls=false` with `docker compose up kurrentdb`);
//! otherwise every test returns at once and says so.

mod contract;

use std::sync::Arc;
use std::time::Duration;

use purser_event_store::{EventStore, KurrentEventStore};

async fn make() -> Option<(Arc<dyn EventStore>, ())> {
    let Ok(url) = std::env::var("KURRENTDB_URL") else {
        eprintln!("KURRENTDB_URL is not set: skipping the KurrentDB contract suite");
        return None;
    };
    let store = KurrentEventStore::from_url(&url).expect("KURRENTDB_URL parses");
    store
        .check(Duration::from_secs(10))
        .await
        .expect("KurrentDB answers");
    Some((Arc::new(store), ()))
}

contract_suite!(make);
