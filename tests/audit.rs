//! Auditors: export and import of the log, tamper evidence (hash chains and seals), and the
//! auditor's GraphQL (stream history, state as of a past point). Real Postgres throughout.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use purser::app::Role;
use purser::audit::{Check, ExportFilter, ExportedEvent, Progress, Sealer, SealerOptions};
use purser_domain::customer::Role as UserRole;
use purser_event_store::{EventStore, PgEventStore, Position, StreamName};
use serde_json::{Value, json};
use sqlx::PgPool;
use support::shop::{CARD_DECLINED, CARD_OK, Shop};
use support::{TestApp, config_for, purser_command, run_with_timeout, spawn_app};

/// A small shop history: two products, a confirmed order, a declined one, an open cart.
async fn seed(app: &TestApp) -> (String, String) {
    let shop = Shop::new(app).await;
    shop.product("AUD-A", 1_500, 10).await;
    shop.product("AUD-B", 4_000, 3).await;
    let paid = shop
        .order_from(&[("AUD-A", 2), ("AUD-B", 1)], CARD_OK)
        .await;
    let declined = shop.order_from(&[("AUD-A", 1)], CARD_DECLINED).await;
    shop.wait_for_status(&paid, &["CONFIRMED"]).await;
    shop.wait_for_status(&declined, &["CANCELLED"]).await;
    shop.cart(&[("AUD-B", 1)]).await;
    (paid, declined)
}

async fn export_lines(
    store: &dyn EventStore,
    pg: Option<&PgEventStore>,
    filter: &ExportFilter,
) -> Vec<ExportedEvent> {
    let mut out = Vec::new();
    purser::audit::export(store, pg, filter, &mut out, &mut Progress::silent("export"))
        .await
        .expect("export");
    String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad line {l}: {e}")))
        .collect()
}

async fn count(pool: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.unwrap()
}

/// (rows, checksum) of every read-model table, by name.
async fn read_model_checksums(pool: &PgPool) -> BTreeMap<String, (i64, String)> {
    let tables: Vec<String> = sqlx::query_scalar(
        "select table_schema || '.' || table_name from information_schema.tables
         where table_schema in ('catalog', 'sales', 'analytics') and table_type = 'BASE TABLE'
         order by 1",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    let mut out = BTreeMap::new();
    for t in tables {
        let row: (i64, String) = sqlx::query_as(&format!(
            "select count(*), coalesce(md5(string_agg(md5(r::text), '' order by md5(r::text))), '')
             from {t} r"
        ))
        .fetch_one(pool)
        .await
        .unwrap();
        out.insert(t, row);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_imported_into_an_empty_database_gives_the_same_history_and_read_models() {
    let mut app = spawn_app().await;
    seed(&app).await;
    // Freeze the log (no command side), then let the live read models catch up with it.
    app.role = Role::Projector;
    app.restart().await;
    app.settle().await;
    let pool = app.db.pool().await;
    let store = app.services().store.clone();
    let pg = PgEventStore::new(pool.clone());

    let all = export_lines(&*store, Some(&pg), &ExportFilter::default()).await;
    let total = count(&pool, "select count(*) from es.events").await;
    assert_eq!(all.len() as i64, total, "every event is exported");
    let positions: Vec<Position> = all.iter().map(|e| e.position.parse().unwrap()).collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "in log order");
    for e in &all {
        assert_eq!(e.position, format!("{}/{}", e.commit, e.prepare));
        let hash = e.hash.as_deref().expect("Postgres exports carry the hash");
        let stored: Vec<u8> = sqlx::query_scalar("select hash from es.events where event_id = $1")
            .bind(e.id)
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(hash, hex::encode(stored));
    }
    // Every envelope field is on each line.
    let line: Value = serde_json::to_value(&all[0]).unwrap();
    for key in [
        "id",
        "stream",
        "version",
        "position",
        "commit",
        "prepare",
        "type",
        "schema_version",
        "data",
        "metadata",
        "recorded_at",
        "hash",
    ] {
        assert!(line.get(key).is_some(), "{key} missing from {line}");
    }

    // Filters: a category, one stream, a position range (exclusive start, inclusive end), a
    // time window.
    let orders = export_lines(
        &*store,
        None,
        &ExportFilter {
            category: Some("order".into()),
            ..Default::default()
        },
    )
    .await;
    assert!(
        !orders.is_empty()
            && orders
                .iter()
                .all(|e| e.stream.starts_with("order-") && e.hash.is_none())
    );
    assert_eq!(
        orders.len(),
        all.iter()
            .filter(|e| e.stream.starts_with("order-"))
            .count()
    );
    let one = StreamName::new(orders[0].stream.clone()).unwrap();
    let stream = export_lines(
        &*store,
        None,
        &ExportFilter {
            stream: Some(one.clone()),
            ..Default::default()
        },
    )
    .await;
    let expected: Vec<_> = all
        .iter()
        .filter(|e| e.stream == one.as_str())
        .map(|e| e.id)
        .collect();
    assert_eq!(stream.iter().map(|e| e.id).collect::<Vec<_>>(), expected);
    let (a, b) = (positions[3], positions[9]);
    let range = export_lines(
        &*store,
        None,
        &ExportFilter {
            after: Some(a),
            to: Some(b),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        range.iter().map(|e| e.id).collect::<Vec<_>>(),
        all[4..=9].iter().map(|e| e.id).collect::<Vec<_>>()
    );
    let (since, until) = (all[5].recorded_at, all[all.len() - 1].recorded_at);
    let window = export_lines(
        &*store,
        None,
        &ExportFilter {
            since: Some(since),
            until: Some(until),
            ..Default::default()
        },
    )
    .await;
    let expected: Vec<_> = all
        .iter()
        .filter(|e| e.recorded_at >= since && e.recorded_at < until)
        .map(|e| e.id)
        .collect();
    assert!(!expected.is_empty());
    assert_eq!(window.iter().map(|e| e.id).collect::<Vec<_>>(), expected);

    // Import into an empty database.
    let db_b = purser_testkit::TestDb::new().await;
    let services_b = purser::services::connect(&config_for(&db_b, &[]))
        .await
        .unwrap();
    let mut file = Vec::new();
    for e in &all {
        serde_json::to_writer(&mut file, e).unwrap();
        file.push(b'\n');
    }
    let summary = purser::audit::import(
        &*services_b.store,
        &mut &file[..],
        &mut Progress::silent("import"),
    )
    .await
    .expect("import");
    assert_eq!(summary.events as i64, total);
    // A second import is refused: the store is no longer empty.
    let again = purser::audit::import(
        &*services_b.store,
        &mut &file[..],
        &mut Progress::silent("import"),
    )
    .await;
    assert!(again.unwrap_err().to_string().contains("not empty"));

    // The same history: ids, streams, versions, types, schema versions, data and metadata, in
    // the same order; only positions, recording times and therefore hashes are new.
    let pool_b = db_b.pool().await;
    let imported = export_lines(
        &*services_b.store,
        Some(&PgEventStore::new(pool_b.clone())),
        &ExportFilter::default(),
    )
    .await;
    let strip = |e: &ExportedEvent| {
        (
            e.id,
            e.stream.clone(),
            e.version,
            e.event_type.clone(),
            e.schema_version,
            e.data.clone(),
            e.metadata.clone(),
        )
    };
    assert_eq!(
        imported.iter().map(strip).collect::<Vec<_>>(),
        all.iter().map(strip).collect::<Vec<_>>()
    );
    // The imported store has a sound hash chain of its own.
    Sealer::new(pool_b.clone(), SealerOptions::default())
        .seal_now()
        .await
        .unwrap();
    let report = purser::audit::verify(
        &PgEventStore::new(pool_b.clone()),
        &pool_b,
        None,
        &mut Progress::silent("verify"),
    )
    .await
    .unwrap();
    assert!(report.is_clean(), "{report}");

    // Replayed from zero, the read models equal the live ones, checksum for checksum.
    let projector = services_b.projector();
    for name in projector.names() {
        projector.rebuild(name).await.unwrap();
    }
    let live = read_model_checksums(&pool).await;
    let replayed = read_model_checksums(&pool_b).await;
    assert!(
        live.get("sales.orders").is_some_and(|(rows, _)| *rows == 2),
        "{live:?}"
    );
    assert!(
        live.values().filter(|(rows, _)| *rows > 0).count() >= 5,
        "{live:?}"
    );
    assert_eq!(live, replayed);
    app.stop().await;
}

/// What a forger with the table owner's rights does first: switch off the trigger that
/// refuses UPDATE and DELETE on the log. (Still caught afterwards by the chain and seals.)
async fn disable_append_only_guard(pool: &PgPool) {
    sqlx::query("alter table es.events disable trigger append_only")
        .execute(pool)
        .await
        .unwrap();
}

/// Waits until the background sealer has sealed every event.
async fn wait_until_sealed(pool: &PgPool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let events = count(pool, "select count(*) from es.events").await;
        let sealed = count(
            pool,
            "select coalesce(sum(event_count), 0)::bigint from es.seals",
        )
        .await;
        if events > 0 && sealed == events {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the sealer sealed {sealed} of {events} events"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn verify(pool: &PgPool) -> purser::audit::VerifyReport {
    purser::audit::verify(
        &PgEventStore::new(pool.clone()),
        pool,
        None,
        &mut Progress::silent("verify"),
    )
    .await
    .unwrap()
}

/// The position of the event at `version` of the stream.
async fn position_of(pool: &PgPool, stream: &str, version: i64) -> Position {
    let (tx, gp): (i64, i64) = sqlx::query_as(
        "select transaction_id::text::bigint, global_position from es.events where stream_name = $1 and stream_version = $2",
    )
    .bind(stream)
    .bind(version)
    .fetch_one(pool)
    .await
    .unwrap();
    Position::from_db(tx, gp)
}

/// A stream with at least `n` events, whose every event is sealed.
async fn stream_with(pool: &PgPool, category: &str, n: i64) -> String {
    sqlx::query_scalar(
        "select stream_name from es.events where category = $1 group by stream_name
         having count(*) >= $2 order by stream_name limit 1",
    )
    .bind(category)
    .bind(n)
    .fetch_one(pool)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untouched_history_verifies_clean_and_the_background_sealer_covers_it() {
    let mut app = spawn_app().await;
    seed(&app).await;
    let pool = app.db.pool().await;
    // The command side runs the sealer: everything gets sealed without anyone asking.
    wait_until_sealed(&pool).await;
    app.stop().await;
    wait_until_sealed(&pool).await;
    let report = verify(&pool).await;
    assert!(report.is_clean(), "{report}");
    assert_eq!(
        report.events as i64,
        count(&pool, "select count(*) from es.events").await
    );
    assert_eq!(
        report.seals as i64,
        count(&pool, "select count(*) from es.seals").await
    );
    assert_eq!(report.unsealed, 0);
    // Blocks chain: block n+1 starts right after block n, with no holes in the numbering.
    let blocks = count(&pool, "select count(*) from es.seals").await;
    assert_eq!(
        count(&pool, "select max(block) + 1 from es.seals").await,
        blocks
    );

    // The binary agrees, exits 0, and prints plain progress lines when stderr is not a
    // terminal.
    let mut cmd = purser_command(&app.db.url());
    cmd.args(["audit", "verify", "--progress-every", "1"]);
    let (code, stdout, stderr) = run_with_timeout(cmd, Duration::from_secs(60));
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("OK:"), "{stdout}");
    assert!(stderr.contains("verify: "), "no progress lines: {stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_edited_in_the_database_is_named_at_exactly_its_position() {
    let mut app = spawn_app().await;
    let (order, _) = seed(&app).await;
    app.stop().await;
    let pool = app.db.pool().await;
    Sealer::new(pool.clone(), SealerOptions::default())
        .seal_now()
        .await
        .unwrap();
    assert!(verify(&pool).await.is_clean());

    // Someone with write access to the table lowers the order's total in its OrderPlaced event.
    let stream = format!(
        "order-{}",
        purser_api_core::wire::parse_uuid_id("Order", &order).unwrap()
    );
    let at = position_of(&pool, &stream, 0).await;
    disable_append_only_guard(&pool).await;
    let changed = sqlx::query(
        "update es.events set data = jsonb_set(data, '{lines,0,qty}', '1') where stream_name = $1 and stream_version = 0",
    )
    .bind(&stream)
    .execute(&pool)
    .await
    .unwrap();
    assert_eq!(changed.rows_affected(), 1);

    let report = verify(&pool).await;
    let first = report.first.clone().expect("the edit is found");
    assert_eq!(first.position, at, "{report}");
    assert_eq!(first.check, Check::HashChain, "{report}");
    assert_eq!(
        report.problems, 1,
        "only the edited event is reported: {report}"
    );

    // The binary names the same position and exits non-zero.
    let mut cmd = purser_command(&app.db.url());
    cmd.args(["audit", "verify"]);
    let (code, stdout, stderr) = run_with_timeout(cmd, Duration::from_secs(60));
    assert_ne!(code, Some(0));
    assert!(
        stdout.contains(&format!("first break is at position {at} (hash chain)")),
        "{stdout}"
    );
    assert!(
        stderr.contains(&format!("first break at position {at}")),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_whose_hash_is_recomputed_still_breaks_the_next_event_and_the_seal() {
    let mut app = spawn_app().await;
    seed(&app).await;
    app.stop().await;
    let pool = app.db.pool().await;
    Sealer::new(pool.clone(), SealerOptions::default())
        .seal_now()
        .await
        .unwrap();
    let stream = stream_with(&pool, "order", 3).await;
    // The forger also recomputes the edited event's own hash.
    disable_append_only_guard(&pool).await;
    sqlx::query(
        "update es.events e set data = e.data || '{\"forged\": true}',
                hash = es.event_hash((select p.hash from es.events p where p.stream_name = e.stream_name and p.stream_version = 0),
                                     e.event_id, e.stream_name, e.stream_version, e.event_type, e.schema_version,
                                     e.data || '{\"forged\": true}', e.metadata, e.recorded_at)
         where e.stream_name = $1 and e.stream_version = 1",
    )
    .bind(&stream)
    .execute(&pool)
    .await
    .unwrap();
    let edited = position_of(&pool, &stream, 1).await;
    let next = position_of(&pool, &stream, 2).await;
    let report = verify(&pool).await;
    // The next event of the stream no longer chains to it...
    assert!(
        report
            .findings
            .iter()
            .any(|f| f.check == Check::HashChain && f.position == next),
        "{report}"
    );
    // ...and the block that held it no longer matches its seal, reported at or before it.
    let seal = report
        .findings
        .iter()
        .find(|f| f.check == Check::Seal)
        .expect("seal finding");
    assert!(seal.position <= edited, "{report}");
    assert_eq!(report.first.as_ref().unwrap().position, seal.position);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_deleted_from_the_middle_of_a_stream_is_noticed() {
    let mut app = spawn_app().await;
    seed(&app).await;
    app.stop().await;
    let pool = app.db.pool().await;
    Sealer::new(pool.clone(), SealerOptions::default())
        .seal_now()
        .await
        .unwrap();
    let stream = stream_with(&pool, "order", 3).await;
    let after_hole = position_of(&pool, &stream, 2).await;
    disable_append_only_guard(&pool).await;
    sqlx::query("delete from es.events where stream_name = $1 and stream_version = 1")
        .bind(&stream)
        .execute(&pool)
        .await
        .unwrap();
    let report = verify(&pool).await;
    assert!(!report.is_clean());
    let versions = report
        .findings
        .iter()
        .find(|f| f.check == Check::StreamVersions)
        .unwrap_or_else(|| panic!("{report}"));
    assert_eq!(versions.position, after_hole, "{report}");
    assert!(
        versions.detail.contains(&stream) && versions.detail.contains("version 1 is missing"),
        "{report}"
    );
    assert!(
        report.findings.iter().any(|f| f.check == Check::Seal),
        "the seal notices too: {report}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deleted_last_event_of_a_sealed_stream_is_noticed_by_the_seals() {
    let mut app = spawn_app().await;
    seed(&app).await;
    let pool = app.db.pool().await;
    wait_until_sealed(&pool).await;
    app.stop().await;
    // Sealed in small blocks, so the one that held it is easy to name.
    Sealer::new(pool.clone(), SealerOptions::default())
        .seal_now()
        .await
        .unwrap();
    let stream = stream_with(&pool, "order", 2).await;
    let last: i64 =
        sqlx::query_scalar("select max(stream_version) from es.events where stream_name = $1")
            .bind(&stream)
            .fetch_one(&pool)
            .await
            .unwrap();
    let gone = position_of(&pool, &stream, last).await;
    let (block, first_commit, first_prepare): (i64, i64, i64) = sqlx::query_as(
        "select block, first_commit, first_prepare from es.seals
         where (first_commit, first_prepare) <= ($1, $2) and ($1, $2) <= (last_commit, last_prepare)",
    )
    .bind(gone.commit as i64)
    .bind(gone.prepare as i64)
    .fetch_one(&pool)
    .await
    .unwrap();
    disable_append_only_guard(&pool).await;
    sqlx::query("delete from es.events where stream_name = $1 and stream_version = $2")
        .bind(&stream)
        .bind(last)
        .execute(&pool)
        .await
        .unwrap();
    let report = verify(&pool).await;
    // The stream's own chain cannot tell (its remaining events are intact)...
    assert!(
        report.findings.iter().all(|f| f.check == Check::Seal),
        "{report}"
    );
    // ...but the block that sealed it can.
    let first = report.first.clone().expect("the deletion is noticed");
    assert_eq!(
        first.position,
        Position::from_db(first_commit, first_prepare),
        "{report}"
    );
    assert!(
        first.detail.contains(&format!("seal block {block}")),
        "{report}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rewrite_of_events_and_seals_is_caught_only_by_a_copy_of_the_seals_kept_elsewhere() {
    let mut app = spawn_app().await;
    seed(&app).await;
    app.stop().await;
    let pool = app.db.pool().await;
    let sealer = Sealer::new(pool.clone(), SealerOptions::default());
    sealer.seal_now().await.unwrap();
    // The auditor keeps a copy of the seals away from the database.
    let mut copy = Vec::new();
    purser::audit::verify::export_seals(&pool, &mut copy)
        .await
        .unwrap();

    // A superuser edits an event, recomputes its stream's chain from there on, and reseals
    // everything.
    let stream = stream_with(&pool, "order", 3).await;
    disable_append_only_guard(&pool).await;
    sqlx::query("update es.events set data = data || '{\"forged\": true}' where stream_name = $1 and stream_version = 1")
        .bind(&stream)
        .execute(&pool)
        .await
        .unwrap();
    let last: i64 =
        sqlx::query_scalar("select max(stream_version) from es.events where stream_name = $1")
            .bind(&stream)
            .fetch_one(&pool)
            .await
            .unwrap();
    for v in 1..=last {
        sqlx::query(
            "update es.events e set hash = es.event_hash(
                 (select p.hash from es.events p where p.stream_name = e.stream_name and p.stream_version = e.stream_version - 1),
                 e.event_id, e.stream_name, e.stream_version, e.event_type, e.schema_version, e.data, e.metadata, e.recorded_at)
             where e.stream_name = $1 and e.stream_version = $2",
        )
        .bind(&stream)
        .bind(v)
        .execute(&pool)
        .await
        .unwrap();
    }
    sqlx::query("delete from es.seals")
        .execute(&pool)
        .await
        .unwrap();
    sealer.seal_now().await.unwrap();

    // The database alone now looks consistent: that is the limit of evidence it holds itself.
    assert!(verify(&pool).await.is_clean());
    // The copy does not match.
    let report = purser::audit::verify(
        &PgEventStore::new(pool.clone()),
        &pool,
        Some(&mut &copy[..]),
        &mut Progress::silent("verify"),
    )
    .await
    .unwrap();
    assert!(
        report.findings.iter().any(|f| f.check == Check::SealCopy),
        "{report}"
    );
}

/// KurrentDB refuses an append over its size limit (1 MiB by default up to v25.0), so an
/// import splits a stream's run of events by size as well as by count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_splits_large_events_into_appends_under_the_size_limit() {
    let db = purser_testkit::TestDb::new().await;
    let store = PgEventStore::new(db.pool().await);
    let blob = "x".repeat(200 * 1024);
    let mut file = Vec::new();
    for version in 0..6u64 {
        let e = ExportedEvent {
            id: uuid::Uuid::new_v4(),
            stream: "blob-1".into(),
            version,
            position: "0/0".into(),
            commit: 0,
            prepare: 0,
            event_type: "Blob".into(),
            schema_version: 1,
            data: json!({ "blob": blob }),
            metadata: Default::default(),
            recorded_at: chrono::Utc::now(),
            hash: None,
            redacted: false,
        };
        serde_json::to_writer(&mut file, &e).unwrap();
        file.push(b'\n');
    }
    let summary = purser::audit::import(&store, &mut &file[..], &mut Progress::silent("import"))
        .await
        .expect("import");
    assert_eq!(summary.events, 6);
    // Two 200 KiB events fit under the 512 KiB a batch may hold; three do not.
    assert_eq!(summary.appends, 3);
    let stream = StreamName::new("blob-1").unwrap();
    assert_eq!(store.read_stream(&stream, 0, 10).await.unwrap().len(), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_exports_to_a_file_and_refuses_to_import_into_a_non_empty_store() {
    let mut app = spawn_app().await;
    seed(&app).await;
    app.stop().await;
    let dir = std::env::temp_dir().join(format!("purser-audit-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("orders.jsonl");
    let mut cmd = purser_command(&app.db.url());
    cmd.args([
        "audit",
        "export",
        "--category",
        "order",
        "--progress-every",
        "1",
        "--output",
    ])
    .arg(&file);
    let (code, _, stderr) = run_with_timeout(cmd, Duration::from_secs(60));
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("export: ") && stderr.contains("exported "),
        "{stderr}"
    );
    let text = std::fs::read_to_string(&file).unwrap();
    let pool = app.db.pool().await;
    assert_eq!(
        text.lines().count() as i64,
        count(
            &pool,
            "select count(*) from es.events where category = 'order'"
        )
        .await
    );

    let mut cmd = purser_command(&app.db.url());
    cmd.args(["audit", "import"]).arg(&file);
    let (code, _, stderr) = run_with_timeout(cmd, Duration::from_secs(60));
    assert_ne!(code, Some(0));
    assert!(stderr.contains("not empty"), "{stderr}");

    let empty = purser_testkit::TestDb::new().await;
    let mut cmd = purser_command(&empty.url());
    cmd.args(["audit", "import"]).arg(&file);
    let (code, stdout, stderr) = run_with_timeout(cmd, Duration::from_secs(60));
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout.contains(&format!("imported {} events", text.lines().count())),
        "{stdout}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

const HISTORY: &str = "query($s: String!, $first: Int, $after: String) {
    streamHistory(stream: $s, first: $first, after: $after) {
        edges { cursor node { id stream version position type schemaVersion data recordedAt
                              metadata { correlationId causationId actor idempotencyKey traceId } } }
        pageInfo { hasNextPage hasPreviousPage endCursor } } }";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auditors_read_a_streams_history_and_states_as_of_past_points() {
    let app = spawn_app().await;
    let shop = Shop::new(&app).await;
    shop.product("TT-1", 2_500, 10).await;
    let cart = shop.cart(&[("TT-1", 3)]).await;
    let out = shop.checkout(&cart, "tt-key-1", CARD_OK).await;
    let order = out["orderId"].as_str().unwrap().to_owned();
    shop.wait_for_status(&order, &["CONFIRMED"]).await;
    let auditor = app
        .token_for("auditor@purser.test", &[UserRole::Auditor])
        .await;
    let order_uuid = purser_api_core::wire::parse_uuid_id("Order", &order).unwrap();
    let stream = format!("order-{order_uuid}");

    // The whole history, paged.
    let r = app
        .graphql_as(&auditor, HISTORY, json!({ "s": stream }))
        .await;
    let edges = r["data"]["streamHistory"]["edges"]
        .as_array()
        .unwrap_or_else(|| panic!("{r}"))
        .clone();
    assert!(edges.len() >= 3, "{r}");
    assert_eq!(edges[0]["node"]["type"], "OrderPlaced");
    assert_eq!(edges[0]["node"]["stream"], stream.as_str());
    assert_eq!(edges[0]["node"]["data"]["lines"][0]["qty"], 3, "{r}");
    assert!(
        edges[0]["node"]["metadata"]["correlationId"].is_string(),
        "{r}"
    );
    for (i, e) in edges.iter().enumerate() {
        assert_eq!(e["node"]["version"], i as i64);
    }
    let page1 = app
        .graphql_as(&auditor, HISTORY, json!({ "s": stream, "first": 2 }))
        .await;
    let info = &page1["data"]["streamHistory"]["pageInfo"];
    assert_eq!(info["hasNextPage"], true);
    let page2 = app
        .graphql_as(
            &auditor,
            HISTORY,
            json!({ "s": stream, "first": 2, "after": info["endCursor"] }),
        )
        .await;
    assert_eq!(
        page2["data"]["streamHistory"]["edges"][0]["node"]["version"], 2,
        "{page2}"
    );
    assert_eq!(
        page2["data"]["streamHistory"]["pageInfo"]["hasPreviousPage"],
        true
    );

    // The order as of its first event, as of now, and before it existed.
    let placed_at = edges[0]["node"]["position"].as_str().unwrap().to_owned();
    let placed_time = edges[0]["node"]["recordedAt"].as_str().unwrap().to_owned();
    let q =
        "query($id: ID!, $p: String, $at: DateTime) { orderAsOf(id: $id, position: $p, at: $at) {
                 orderId status total { amount } state
                 asOf { stream eventsApplied version position lastEvent recordedAt } } }";
    let then = app
        .graphql_as(&auditor, q, json!({ "id": order, "p": placed_at }))
        .await;
    let then = &then["data"]["orderAsOf"];
    assert_eq!(then["status"], "PENDING", "{then}");
    assert_eq!(then["asOf"]["eventsApplied"], 1);
    assert_eq!(then["asOf"]["lastEvent"], "OrderPlaced");
    assert_eq!(then["total"]["amount"], 7_500);
    let by_time = app
        .graphql_as(&auditor, q, json!({ "id": order, "at": placed_time }))
        .await;
    assert_eq!(
        by_time["data"]["orderAsOf"]["status"], "PENDING",
        "{by_time}"
    );
    let now = app.graphql_as(&auditor, q, json!({ "id": order })).await;
    let now = &now["data"]["orderAsOf"];
    assert_eq!(now["status"], "CONFIRMED", "{now}");
    assert_eq!(now["asOf"]["eventsApplied"], edges.len() as i64);
    assert_eq!(
        now["state"]["confirmed"], true,
        "the whole folded state: {now}"
    );
    let before = app
        .graphql_as(
            &auditor,
            q,
            json!({ "id": order, "at": "2001-01-01T00:00:00Z" }),
        )
        .await;
    assert!(before["data"]["orderAsOf"].is_null(), "{before}");

    // The stock item: before the reservation, while reserved, after the sale.
    let q = "query($s: String!, $p: String) { stockAsOf(sku: $s, position: $p) { sku onHand reserved available asOf { lastEvent position } } }";
    let stock = app
        .graphql_as(&auditor, HISTORY, json!({ "s": "inventory-TT-1" }))
        .await;
    let stock_edges = stock["data"]["streamHistory"]["edges"]
        .as_array()
        .unwrap()
        .clone();
    let at_type = |t: &str| {
        stock_edges
            .iter()
            .find(|e| e["node"]["type"] == t)
            .unwrap_or_else(|| panic!("no {t} in {stock_edges:?}"))["node"]["position"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let received = app
        .graphql_as(
            &auditor,
            q,
            json!({ "s": "TT-1", "p": at_type("StockReceived") }),
        )
        .await;
    assert_eq!(received["data"]["stockAsOf"]["onHand"], 10, "{received}");
    assert_eq!(received["data"]["stockAsOf"]["reserved"], 0);
    let reserved = app
        .graphql_as(
            &auditor,
            q,
            json!({ "s": "TT-1", "p": at_type("StockReserved") }),
        )
        .await;
    assert_eq!(reserved["data"]["stockAsOf"]["reserved"], 3, "{reserved}");
    assert_eq!(reserved["data"]["stockAsOf"]["available"], 7);
    let sold = app.graphql_as(&auditor, q, json!({ "s": "TT-1" })).await;
    assert_eq!(sold["data"]["stockAsOf"]["onHand"], 7, "{sold}");
    assert_eq!(sold["data"]["stockAsOf"]["reserved"], 0);

    // The cart: open before checkout, checked out after.
    let cart_history = app.graphql_as(&auditor, HISTORY, json!({ "s": format!("cart-{}", purser_api_core::wire::parse_uuid_id("Cart", &cart).unwrap()) })).await;
    let cart_edges = cart_history["data"]["streamHistory"]["edges"]
        .as_array()
        .unwrap_or_else(|| panic!("{cart_history}"))
        .clone();
    let checked_out = cart_edges
        .iter()
        .position(|e| e["node"]["type"] == "CartCheckedOut")
        .expect("checked out");
    let before_checkout = cart_edges[checked_out - 1]["node"]["position"]
        .as_str()
        .unwrap();
    let q = "query($id: ID!, $p: String) { cartAsOf(id: $id, position: $p) { status itemCount total { amount } } }";
    let open = app
        .graphql_as(&auditor, q, json!({ "id": cart, "p": before_checkout }))
        .await;
    assert_eq!(open["data"]["cartAsOf"]["status"], "OPEN", "{open}");
    assert_eq!(open["data"]["cartAsOf"]["itemCount"], 3);
    let done = app.graphql_as(&auditor, q, json!({ "id": cart })).await;
    assert_eq!(done["data"]["cartAsOf"]["status"], "CHECKED_OUT", "{done}");

    // Admins may ask too; nobody else may.
    let admin = app
        .graphql_as(&shop.admin, HISTORY, json!({ "s": stream }))
        .await;
    assert!(admin.get("errors").is_none(), "{admin}");
    let anonymous = app.graphql(HISTORY, json!({ "s": stream })).await;
    assert_eq!(
        anonymous["errors"][0]["extensions"]["code"], "UNAUTHENTICATED",
        "{anonymous}"
    );
    for role in [UserRole::Customer, UserRole::Analyst] {
        let token = app
            .token_for(&format!("{role:?}@purser.test").to_lowercase(), &[role])
            .await;
        for (query, vars) in [
            (HISTORY, json!({ "s": stream })),
            (
                "query($id: ID!) { orderAsOf(id: $id) { status } }",
                json!({ "id": order }),
            ),
            (
                "query($id: ID!) { cartAsOf(id: $id) { status } }",
                json!({ "id": cart }),
            ),
            ("query { stockAsOf(sku: \"TT-1\") { onHand } }", json!({})),
        ] {
            let r = app.graphql_as(&token, query, vars).await;
            assert_eq!(
                r["errors"][0]["extensions"]["code"], "FORBIDDEN",
                "{role:?}: {r}"
            );
        }
    }

    // Bad input is a typed error.
    let r = app
        .graphql_as(
            &auditor,
            "query($id: ID!) { orderAsOf(id: $id, position: \"soon\") { status } }",
            json!({ "id": order }),
        )
        .await;
    assert_eq!(
        r["errors"][0]["extensions"]["code"], "BAD_USER_INPUT",
        "{r}"
    );
    let r = app
        .graphql_as(&auditor, HISTORY, json!({ "s": "no stream" }))
        .await;
    assert_eq!(
        r["errors"][0]["extensions"]["code"], "BAD_USER_INPUT",
        "{r}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_from_zero_equals_the_live_read_models_and_names_a_tampered_row() {
    let mut app = spawn_app().await;
    seed(&app).await;
    // Freeze the log (no command side, so no retries append meanwhile) and let the live read
    // models catch up with it.
    app.role = Role::Projector;
    app.restart().await;
    app.settle().await;
    let opts = purser::audit::ReplayOptions {
        live_wait: Duration::from_secs(30),
        ..Default::default()
    };
    let report = purser::audit::replay(app.services(), &opts).await.unwrap();
    assert!(report.is_equal(), "{report}");
    assert!(report.tables.len() >= 8, "{report}");
    assert!(
        report
            .tables
            .iter()
            .any(|t| t.table == "sales.orders" && t.live_rows == 2),
        "{report}"
    );

    // Someone edits a live read-model row behind the projector's back.
    let pool = app.db.pool().await;
    sqlx::query("update catalog.stock set on_hand = on_hand + 5 where sku = 'AUD-A'")
        .execute(&pool)
        .await
        .unwrap();
    let report = purser::audit::replay(app.services(), &opts).await.unwrap();
    assert_eq!(report.differing(), 1, "{report}");
    let stock = report
        .tables
        .iter()
        .find(|t| t.table == "catalog.stock")
        .unwrap();
    assert!(!stock.equal());
    assert!(
        stock
            .first_difference
            .as_deref()
            .is_some_and(|d| d.contains("AUD-A")),
        "{report}"
    );

    // The binary prints the per-table report and exits 1; no scratch database is left behind.
    app.stop().await;
    let mut cmd = purser_command(&app.db.url());
    cmd.arg("replay");
    let (code, stdout, stderr) =
        tokio::task::spawn_blocking(move || run_with_timeout(cmd, Duration::from_secs(120)))
            .await
            .unwrap();
    assert_eq!(code, Some(1), "{stdout}\n{stderr}");
    assert!(stdout.contains("catalog.stock"), "{stdout}");
    assert!(stdout.contains("DIFFERS"), "{stdout}");
    assert!(stdout.contains("first difference: live only:"), "{stdout}");
    let left: i64 = sqlx::query_scalar("select count(*) from pg_database where datname like $1")
        .bind(format!(
            "{}%_replay_%",
            &app.db.name[..app.db.name.len().min(40)]
        ))
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(left, 0, "scratch databases are dropped");
}

/// The catalog projection, changed: it shows product names in capitals.
struct ShoutingCatalog;

#[async_trait::async_trait]
impl purser_projections::Projection for ShoutingCatalog {
    fn name(&self) -> &'static str {
        "catalog"
    }

    fn filter(&self) -> purser_event_store::EventFilter {
        purser_projections::Projection::filter(&purser_projections::catalog::CatalogProjection)
    }

    fn tables(&self) -> &'static [&'static str] {
        purser_projections::Projection::tables(&purser_projections::catalog::CatalogProjection)
    }

    async fn apply(
        &self,
        tx: &mut sqlx::PgConnection,
        event: &purser_event_store::RecordedEvent,
    ) -> Result<(), purser_projections::ProjectionError> {
        purser_projections::Projection::apply(
            &purser_projections::catalog::CatalogProjection,
            tx,
            event,
        )
        .await?;
        sqlx::query("update catalog.products set name = upper(name) where name <> upper(name)")
            .execute(&mut *tx)
            .await?;
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_online_rebuild_switches_once_while_queries_never_fail() {
    let app = spawn_app().await;
    let shop = Shop::new(&app).await;
    for sku in ["ZD-1", "ZD-2", "ZD-3"] {
        shop.product(sku, 1_000, 5).await;
    }
    app.settle().await;

    // A client reads the catalog continuously and records every distinct answer.
    let stop = tokio_util::sync::CancellationToken::new();
    let answered = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let reader = tokio::spawn({
        let (http, url, stop) = (app.http.clone(), app.url("/graphql"), stop.clone());
        let answered = answered.clone();
        async move {
            let mut answers: Vec<Vec<String>> = Vec::new();
            let (mut queries, mut failures) = (0u64, Vec::new());
            while !stop.is_cancelled() {
                queries += 1;
                let r = http
                    .post(&url)
                    .json(&json!({ "query": "{ products(first: 10, sort: NEWEST) { nodes { name } } }" }))
                    .send()
                    .await;
                let body: Value = match r {
                    Ok(r) if r.status() == 200 => r.json().await.unwrap_or(Value::Null),
                    Ok(r) => {
                        failures.push(format!("status {}", r.status()));
                        continue;
                    }
                    Err(e) => {
                        failures.push(e.to_string());
                        continue;
                    }
                };
                let Some(nodes) = body["data"]["products"]["nodes"].as_array() else {
                    failures.push(body.to_string());
                    continue;
                };
                let mut names: Vec<String> = nodes
                    .iter()
                    .map(|n| n["name"].as_str().unwrap_or_default().to_owned())
                    .collect();
                names.sort();
                answered.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if answers.last() != Some(&names) {
                    answers.push(names);
                }
            }
            (queries, failures, answers)
        }
    });
    // Writers keep going during the rebuild: stock arrives.
    let writer = async {
        for _ in 0..5 {
            shop.receive("ZD-1", 1).await;
        }
    };
    let (rebuilt, ()) = tokio::join!(
        purser::online_rebuild::rebuild_online(
            app.services(),
            std::sync::Arc::new(ShoutingCatalog)
        ),
        writer
    );
    let rebuilt = rebuilt.expect("online rebuild");
    assert!(
        rebuilt.rows.contains(&("catalog.products".to_owned(), 3)),
        "{rebuilt:?}"
    );
    // Let the reader answer a few more times after the switch, then stop it.
    app.settle().await;
    let after_switch = answered.load(std::sync::atomic::Ordering::SeqCst);
    while answered.load(std::sync::atomic::Ordering::SeqCst) < after_switch + 5 {
        tokio::task::yield_now().await;
    }
    stop.cancel();
    let (queries, failures, answers) = reader.await.unwrap();
    assert!(queries > 10, "the client kept querying ({queries} queries)");
    assert!(failures.is_empty(), "failed queries: {failures:?}");
    let old: Vec<String> = ["Product ZD-1", "Product ZD-2", "Product ZD-3"]
        .map(String::from)
        .to_vec();
    let new: Vec<String> = old.iter().map(|n| n.to_uppercase()).collect();
    assert_eq!(answers, vec![old, new], "the answer switches once");

    // Nothing was skipped or applied twice across the switch: 5 + 5 units of ZD-1.
    assert_eq!(shop.stock("ZD-1").await.0, 10);
    let generation: i64 = sqlx::query_scalar(
        "select generation from purser.projection_checkpoints where name = 'catalog'",
    )
    .fetch_one(&app.services().pool)
    .await
    .unwrap();
    assert_eq!(generation, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_refuses_to_edit_delete_or_truncate_the_log() {
    let db = purser_testkit::TestDb::new().await;
    let pool = db.pool().await;
    let store = PgEventStore::new(pool.clone());
    let stream = StreamName::new("thing-1".to_owned()).unwrap();
    store
        .append(
            &stream,
            purser_event_store::ExpectedVersion::NoStream,
            vec![purser_event_store::NewEvent {
                id: uuid::Uuid::now_v7(),
                event_type: "ThingHappened".into(),
                schema_version: 1,
                data: json!({ "n": 1 }),
                metadata: Default::default(),
            }],
        )
        .await
        .unwrap();
    for sql in [
        "update es.events set data = '{}'",
        "delete from es.events",
        "truncate es.events",
    ] {
        let err = sqlx::query(sql).execute(&pool).await.unwrap_err();
        assert!(
            err.to_string().contains("es.events is append-only"),
            "{sql}: {err}"
        );
    }
    assert_eq!(count(&pool, "select count(*) from es.events").await, 1);
}
