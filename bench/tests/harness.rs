//! The harness runs end to end at a tiny size. Benchmarks are not tests: nothing here looks
//! at a time or a rate, only that every row was measured and the databases are gone after.
//!
//! Rows 6–8 need the `purser` binary (`PURSER_BIN`, else `target/<profile>/purser` next to
//! this test's own binary, which a workspace build makes); without one they are skipped and
//! the report says so.

use std::path::PathBuf;

use purser_bench::{Options, Sizes};

fn purser_binary() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("PURSER_BIN") {
        return Some(PathBuf::from(p));
    }
    // target/<profile>/deps/harness-… → target/<profile>/purser
    let exe = std::env::current_exe().ok()?;
    let candidate = exe.parent()?.parent()?.join("purser");
    candidate.is_file().then_some(candidate)
}

fn database_url() -> String {
    std::env::var("PURSER_TEST_DATABASE_URL")
        .or_else(|_| std::env::var("DATABASE_URL"))
        .unwrap_or_else(|_| "postgres://purser:purser@127.0.0.1:5432/purser".to_string())
}

async fn bench_databases(url: &str) -> Vec<String> {
    let opts: sqlx::postgres::PgConnectOptions = url.parse().unwrap();
    let pool = sqlx::PgPool::connect_with(opts.database("postgres"))
        .await
        .unwrap();
    let names = sqlx::query_scalar("select datname from pg_database where datname like $1")
        .bind(format!("purser_bench_%_{}_%", std::process::id()))
        .fetch_all(&pool)
        .await
        .unwrap();
    pool.close().await;
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_row_is_measured_at_a_tiny_size() {
    let url = database_url();
    let json = std::env::temp_dir().join(format!("purser-bench-{}.json", std::process::id()));
    let server = purser_binary();
    let report = purser_bench::run(Options {
        database_url: url.clone(),
        sizes: Sizes::tiny(),
        json: Some(json.clone()),
        only: vec![],
        server_exe: server.clone(),
        verbose: false,
    })
    .await
    .expect("the bench runs");

    let rows_seen: std::collections::BTreeSet<u8> = report.rows.iter().map(|r| r.row).collect();
    let expected: Vec<u8> = if server.is_some() {
        (1..=8).collect()
    } else {
        (1..=5).collect()
    };
    for r in expected {
        assert!(rows_seen.contains(&r), "row {r} missing from {report:#?}");
    }
    for r in &report.rows {
        assert!(r.ours.is_finite(), "{r:?}");
        if let Some(b) = r.baseline {
            assert!(b.is_finite() && r.ratio.is_some(), "{r:?}");
        }
    }
    assert!(
        report
            .notes
            .iter()
            .any(|n| n.contains("identical read models")),
        "the raw baseline must write the same rows as the projections: {:#?}",
        report.notes
    );
    let written: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let first = &written.as_array().unwrap()[0];
    for key in ["name", "ours", "baseline", "unit", "ratio"] {
        assert!(first.get(key).is_some(), "JSON rows carry {key}: {first}");
    }
    let _ = std::fs::remove_file(&json);
    assert!(report.table().contains("| row | measurement |"));
    assert!(bench_databases(&url).await.is_empty());
}

#[tokio::test]
async fn only_takes_row_numbers() {
    let err = purser_bench::run(Options {
        database_url: database_url(),
        sizes: Sizes::tiny(),
        json: None,
        only: vec![9],
        server_exe: None,
        verbose: false,
    })
    .await
    .unwrap_err();
    assert!(err.to_string().contains("1 to 8"), "{err}");
}
