use super::*;
use crate::Store;
use crate::model::{MetricCommit, RetractedRow};
use proptest::prelude::*;
use std::collections::BTreeMap;

fn store() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("store.db")).unwrap();
    (dir, store)
}

fn metric(name: &str) -> MetricRecord {
    MetricRecord {
        name: name.into(),
        sql: format!("CREATE METRIC {name} AS …"),
        backfill: false,
        generation: 0,
        created_at: 1,
        origin: Origin::Api,
    }
}

fn row(tenant: &str, key: u8, start: Millis, state: u8) -> StoredRow {
    StoredRow {
        partition: 0,
        tenant: tenant.into(),
        key: vec![key],
        window_start: start,
        window_end: start + 60_000,
        version: 1,
        state: vec![state],
    }
}

fn commit_of(offset: u64, rows: Vec<StoredRow>) -> Commit {
    Commit {
        offset,
        event_time: Some(offset as Millis),
        log_epoch: 0,
        metrics: vec![MetricCommit {
            metric: "views".into(),
            generation: 0,
            watermark: Some(offset as Millis),
            retracted: vec![],
            changed: rows.iter().map(StoredRow::as_changed).collect(),
        }],
    }
}

#[tokio::test]
async fn metric_definitions_are_created_listed_and_deleted() {
    let (_dir, store) = store();
    store.create_metric(metric("views")).await.unwrap();
    store.create_metric(metric("orders")).await.unwrap();
    let error = store.create_metric(metric("views")).await.unwrap_err();
    assert!(
        matches!(error, StoreError::MetricExists(ref name) if name == "views"),
        "{error}"
    );
    let names: Vec<String> = store
        .metrics()
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.name)
        .collect();
    assert_eq!(names, ["orders", "views"]);
    assert!(store.delete_metric("views").await.unwrap());
    assert!(!store.delete_metric("views").await.unwrap());
    assert_eq!(store.metrics().await.unwrap().len(), 1);
}

#[tokio::test]
async fn claims_fence_older_owners() {
    let (_dir, store) = store();
    let first = store.claim("views@0", 3, 100, 4).await.unwrap();
    assert_eq!(
        first,
        Position {
            epoch: 1,
            offset: 100,
            event_time: None,
            log_epoch: 4,
            lost_offsets: 0,
        }
    );
    store
        .commit("views@0", 3, 1, Arc::new(commit_of(150, vec![])))
        .await
        .unwrap();
    let second = store.claim("views@0", 3, 0, 0).await.unwrap();
    assert_eq!(
        second,
        Position {
            epoch: 2,
            offset: 150,
            event_time: Some(150),
            log_epoch: 0,
            lost_offsets: 0,
        },
        "the initial offset and log epoch only apply once; commits store theirs"
    );
    let error = store
        .commit(
            "views@0",
            3,
            1,
            Arc::new(commit_of(200, vec![row("t", 1, 0, 9)])),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            StoreError::Fenced {
                epoch: 1,
                current: 2,
                ..
            }
        ),
        "{error}"
    );
    let position = store.positions("views@0").await.unwrap();
    assert_eq!(
        position,
        [(
            3,
            Position {
                epoch: 2,
                offset: 150,
                event_time: Some(150),
                log_epoch: 0,
                lost_offsets: 0,
            }
        )],
        "a fenced commit changes nothing"
    );
    assert!(
        store
            .load_rows("views", 0, 3, i64::MIN)
            .await
            .unwrap()
            .is_empty()
    );
    let error = store
        .commit("views@0", 4, 1, Arc::new(commit_of(1, vec![])))
        .await
        .unwrap_err();
    assert!(
        matches!(error, StoreError::Fenced { current: 0, .. }),
        "an unclaimed partition cannot be committed"
    );
}

#[tokio::test]
async fn rewinds_move_the_position_back_keep_the_rows_and_count_the_lost_offsets() {
    let (_dir, store) = store();
    let epoch = store.claim("views@0", 0, 0, 0).await.unwrap().epoch;
    store
        .commit(
            "views@0",
            0,
            epoch,
            Arc::new(commit_of(150, vec![row("a", 1, 0, 4)])),
        )
        .await
        .unwrap();
    let epoch = store.claim("views@0", 0, 0, 1).await.unwrap().epoch;
    let rewound = store.rewind("views@0", 0, epoch, 120, 1).await.unwrap();
    let expected = Position {
        epoch,
        offset: 120,
        event_time: Some(150),
        log_epoch: 1,
        lost_offsets: 30,
    };
    assert_eq!(rewound, expected);
    assert_eq!(store.positions("views@0").await.unwrap(), [(0, expected)]);
    assert_eq!(
        store
            .load_rows("views", 0, 0, Millis::MIN)
            .await
            .unwrap()
            .len(),
        1,
        "the counted events stay counted"
    );

    // Only the owner rewinds.
    let newer = store.claim("views@0", 0, 0, 1).await.unwrap().epoch;
    let error = store.rewind("views@0", 0, epoch, 100, 2).await.unwrap_err();
    assert!(matches!(error, StoreError::Fenced { .. }), "{error}");
    assert_eq!(store.positions("views@0").await.unwrap()[0].1.offset, 120);

    // Rewinds add up; commits keep the count and store their log epoch.
    assert_eq!(
        store
            .rewind("views@0", 0, newer, 100, 2)
            .await
            .unwrap()
            .lost_offsets,
        50
    );
    let commit = Commit {
        log_epoch: 2,
        ..commit_of(130, vec![])
    };
    store
        .commit("views@0", 0, newer, Arc::new(commit))
        .await
        .unwrap();
    let position = store.positions("views@0").await.unwrap()[0].1;
    assert_eq!(
        (position.offset, position.log_epoch, position.lost_offsets),
        (130, 2, 50)
    );
}

#[tokio::test]
async fn positions_of_an_older_file_are_of_log_epoch_0() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v2.db");
    let connection = Connection::open(&path).unwrap();
    for migration in &schema::MIGRATIONS[..2] {
        connection.execute_batch(migration).unwrap();
    }
    connection
        .execute_batch(
            "PRAGMA user_version = 2; \
             INSERT INTO positions (pipeline, partition, epoch, next_offset, event_time) VALUES ('views@0', 1, 7, 900, 5);",
        )
        .unwrap();
    drop(connection);
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(
        store.positions("views@0").await.unwrap(),
        [(
            1,
            Position {
                epoch: 7,
                offset: 900,
                event_time: Some(5),
                log_epoch: 0,
                lost_offsets: 0,
            }
        )]
    );
}

#[tokio::test]
async fn commits_upsert_and_retract_rows_with_the_position() {
    let (_dir, store) = store();
    store.create_metric(metric("views")).await.unwrap();
    let epoch = store.claim("views@0", 0, 0, 0).await.unwrap().epoch;
    store
        .commit(
            "views@0",
            0,
            epoch,
            Arc::new(commit_of(
                10,
                vec![row("a", 1, 0, 1), row("a", 2, 60_000, 2), row("b", 1, 0, 3)],
            )),
        )
        .await
        .unwrap();
    let mut update = commit_of(20, vec![row("a", 1, 0, 7)]);
    update.metrics[0].retracted.push(RetractedRow {
        tenant: "a".into(),
        key: vec![2],
        window_start: 60_000,
        window_end: 120_000,
    });
    store
        .commit("views@0", 0, epoch, Arc::new(update))
        .await
        .unwrap();

    let rows = store
        .query_rows(RowQuery {
            metric: "views".into(),
            generation: 0,
            tenant: "a".into(),
            from: 0,
            to: 1_000_000,
        })
        .await
        .unwrap();
    assert_eq!(rows, [row("a", 1, 0, 7)]);
    let rows = store
        .query_rows(RowQuery {
            metric: "views".into(),
            generation: 0,
            tenant: "b".into(),
            from: 0,
            to: 1_000_000,
        })
        .await
        .unwrap();
    assert_eq!(
        rows,
        [row("b", 1, 0, 3)],
        "tenants never see each other's rows"
    );
    assert_eq!(
        store.load_rows("views", 0, 0, 60_000).await.unwrap().len(),
        0,
        "windows ending by the cut are not reloaded"
    );
    assert_eq!(
        store.load_rows("views", 0, 0, 59_999).await.unwrap().len(),
        2
    );
    assert_eq!(store.watermarks("views", 0).await.unwrap(), [(0, Some(20))]);
    assert_eq!(store.positions("views@0").await.unwrap()[0].1.offset, 20);

    assert!(store.delete_metric("views").await.unwrap());
    assert!(
        store.positions("views@0").await.unwrap().is_empty(),
        "deleting a metric removes its positions"
    );
    assert!(
        store
            .load_rows("views", 0, 0, i64::MIN)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn switching_generations_replaces_results_atomically_and_can_keep_the_past() {
    let (_dir, store) = store();
    store.create_metric(metric("views")).await.unwrap();
    let old = store.claim("views@0", 0, 0, 0).await.unwrap().epoch;
    store
        .commit(
            "views@0",
            0,
            old,
            Arc::new(commit_of(
                10,
                vec![
                    row("a", 1, 0, 1),
                    row("a", 1, 60_000, 1),
                    row("a", 1, 120_000, 1),
                ],
            )),
        )
        .await
        .unwrap();
    let new = store.claim("views@1", 0, 0, 0).await.unwrap().epoch;
    let mut replayed = commit_of(
        10,
        vec![
            row("a", 1, 0, 5),
            row("a", 1, 60_000, 5),
            row("a", 1, 120_000, 5),
        ],
    );
    replayed.metrics[0].generation = 1;
    store
        .commit("views@1", 0, new, Arc::new(replayed))
        .await
        .unwrap();

    store
        .switch_generation("views", 1, Some(60_000))
        .await
        .unwrap();
    assert_eq!(store.metrics().await.unwrap()[0].generation, 1);
    let rows = store
        .query_rows(RowQuery {
            metric: "views".into(),
            generation: 1,
            tenant: "a".into(),
            from: 0,
            to: i64::MAX,
        })
        .await
        .unwrap();
    let states: Vec<(Millis, u8)> = rows.iter().map(|r| (r.window_start, r.state[0])).collect();
    assert_eq!(
        states,
        [(0, 1), (60_000, 5), (120_000, 5)],
        "before the replay's start the old results stand"
    );
    assert!(
        store
            .query_rows(RowQuery {
                metric: "views".into(),
                generation: 0,
                tenant: "a".into(),
                from: 0,
                to: i64::MAX
            })
            .await
            .unwrap()
            .is_empty()
    );
    assert!(store.positions("views@0").await.unwrap().is_empty());
    assert_eq!(store.positions("views@1").await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_corrupt_file_is_named_with_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    std::fs::write(&path, vec![0x5a; 8192]).unwrap();
    let error = SqliteStore::open(&path).unwrap_err();
    let text = error.to_string();
    assert!(matches!(error, StoreError::Corrupt { .. }), "{text}");
    assert!(
        text.contains(&path.display().to_string()) && text.contains("sluice replay"),
        "{text}"
    );
}

/// A store written by this sluice, with rows in every table, closed cleanly (WAL folded in).
async fn populated_store(path: &std::path::Path) {
    let store = SqliteStore::open(path).unwrap();
    store.create_metric(metric("views")).await.unwrap();
    let epoch = store.claim("views@0", 0, 0, 0).await.unwrap().epoch;
    let rows = (0..400u16)
        .map(|i| row("a", (i % 200) as u8, Millis::from(i) * 60_000, 7))
        .collect();
    store
        .commit("views@0", 0, epoch, Arc::new(commit_of(400, rows)))
        .await
        .unwrap();
    drop(store);
    let connection = Connection::open(path).unwrap();
    connection
        .execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
        .unwrap();
}

fn assert_reported_corrupt(path: &std::path::Path, damage: &str) {
    match SqliteStore::open(path) {
        Err(error @ StoreError::Corrupt { .. }) => {
            let text = error.to_string();
            assert!(
                text.contains(&path.display().to_string()) && text.contains("sluice replay"),
                "{damage}: {text}"
            );
        }
        Err(error) => panic!("{damage}: reported as {error:?}, not as a corrupt store"),
        Ok(_) => panic!("{damage}: the store opened as if intact"),
    }
}

#[tokio::test]
async fn every_kind_of_damage_is_reported_as_a_corrupt_store() {
    let dir = tempfile::tempdir().unwrap();
    let intact = dir.path().join("intact.db");
    populated_store(&intact).await;
    let bytes = std::fs::read(&intact).unwrap();
    let page = 16_384;
    assert!(bytes.len() >= 3 * page, "the store has several pages");
    let damages: Vec<(&str, Vec<u8>)> = vec![
        ("a byte flipped on every page", {
            let mut bytes = bytes.clone();
            for (i, start) in (0..bytes.len()).step_by(page).enumerate() {
                // In the cell content at the end of each page (bytes in a page's free space
                // are no damage at all), somewhere different in each page.
                let at = start + page - 64 - (i * 7919) % 1024;
                bytes[at] ^= 0x20;
            }
            bytes
        }),
        ("a column name changed in the schema", {
            let text = String::from_utf8_lossy(&bytes);
            let at = text
                .find("label TEXT")
                .expect("the schema is on the first page");
            let mut bytes = bytes.clone();
            bytes[at] = b'x';
            bytes
        }),
        (
            "the file cut in half",
            bytes[..bytes.len() / 2 / page * page].to_vec(),
        ),
        ("the header zeroed", {
            let mut bytes = bytes.clone();
            bytes[..100].fill(0);
            bytes
        }),
    ];
    for (damage, damaged) in damages {
        let path = dir.path().join("store.db");
        std::fs::write(&path, damaged).unwrap();
        assert_reported_corrupt(&path, damage);
        std::fs::remove_file(&path).unwrap();
    }
    // The intact copy opens: the check does not refuse good files.
    SqliteStore::open(&intact).unwrap();
}

#[tokio::test]
async fn a_store_from_a_newer_sluice_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    drop(SqliteStore::open(&path).unwrap());
    Connection::open(&path)
        .unwrap()
        .execute_batch("PRAGMA user_version = 99")
        .unwrap();
    let error = SqliteStore::open(&path).unwrap_err();
    assert!(
        error
            .to_string()
            .contains("schema version 99, newer than this sluice understands"),
        "{error}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Random commits, fenced commits and reopenings against a model of committed state: the
    /// store always holds exactly the rows and offset of the last successful commit of the
    /// current owner.
    #[test]
    fn the_store_matches_a_model_of_committed_checkpoints(
        ops in proptest::collection::vec((0u8..4, proptest::collection::vec((0u8..4, 0i64..4, 0u8..255), 0..6)), 1..25)
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("store.db");
            let mut store = SqliteStore::open(&path).unwrap();
            let mut epoch = store.claim("views@0", 0, 0, 0).await.unwrap().epoch;
            let mut model: BTreeMap<(u8, i64), u8> = BTreeMap::new();
            let mut offset = 0u64;
            for (op, changes) in ops {
                let rows: Vec<StoredRow> = changes.iter().map(|&(key, window, state)| row("t", key, window * 60_000, state)).collect();
                match op {
                    0 | 1 => {
                        offset += 1;
                        store.commit("views@0", 0, epoch, Arc::new(commit_of(offset, rows))).await.unwrap();
                        for (key, window, state) in changes {
                            model.insert((key, window * 60_000), state);
                        }
                    }
                    2 => {
                        // A stale owner's commit is refused and changes nothing.
                        let stale = epoch;
                        epoch = store.claim("views@0", 0, 0, 0).await.unwrap().epoch;
                        prop_assert!(store.commit("views@0", 0, stale, Arc::new(commit_of(offset + 100, rows))).await.is_err());
                    }
                    _ => {
                        drop(store);
                        store = SqliteStore::open(&path).unwrap();
                        epoch = store.claim("views@0", 0, 0, 0).await.unwrap().epoch;
                    }
                }
                let stored = store.load_rows("views", 0, 0, i64::MIN).await.unwrap();
                let stored: BTreeMap<(u8, i64), u8> = stored.iter().map(|r| ((r.key[0], r.window_start), r.state[0])).collect();
                prop_assert_eq!(&stored, &model);
                prop_assert_eq!(store.positions("views@0").await.unwrap()[0].1.offset, offset);
            }
            Ok(())
        })?;
    }
}

fn page_size(path: &Path) -> u64 {
    Connection::open(path)
        .unwrap()
        .query_row("PRAGMA page_size", [], |row| row.get(0))
        .unwrap()
}

#[tokio::test]
async fn new_stores_use_16_kib_pages_and_older_files_keep_theirs() {
    let (dir, store) = store();
    assert_eq!(page_size(store.path()), 16_384);

    // A file an earlier sluice created (4 KiB pages, tables present) opens and migrates as is.
    let old = dir.path().join("old.db");
    let connection = Connection::open(&old).unwrap();
    connection
        .execute_batch(
            "PRAGMA page_size = 4096; PRAGMA journal_mode = WAL; CREATE TABLE earlier (x INTEGER);",
        )
        .unwrap();
    drop(connection);
    let reopened = SqliteStore::open(&old).unwrap();
    reopened.create_metric(metric("views")).await.unwrap();
    assert_eq!(page_size(&old), 4_096);
    let epoch = reopened.claim("views@0", 0, 0, 0).await.unwrap().epoch;
    reopened
        .commit(
            "views@0",
            0,
            epoch,
            Arc::new(commit_of(5, vec![row("a", 1, 0, 4)])),
        )
        .await
        .unwrap();
    assert_eq!(reopened.claim("views@0", 0, 0, 0).await.unwrap().offset, 5);
}
