use super::*;
use crate::roles::{Catalogue, Checkpoints, ResultReads};
use crate::testing::{closing_of, commit_of, count_in, metric, row};
use proptest::prelude::*;
use std::collections::BTreeMap;

fn store() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("store.db")).unwrap();
    (dir, store)
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

    /// Random commits (of open rows, of closed windows), fenced commits and reopenings against
    /// a model of committed state: the store always holds exactly the open rows, the merged
    /// final rows and the offset of the successful commits of the current owner.
    #[test]
    fn the_store_matches_a_model_of_committed_checkpoints(
        ops in proptest::collection::vec((0u8..5, proptest::collection::vec((0u8..4, 0i64..4, 0u8..255), 0..6)), 1..25)
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("store.db");
            let mut store = SqliteStore::open(&path).unwrap();
            let mut epoch = store.claim("views@0", 0, 0, 0).await.unwrap().epoch;
            let mut model: BTreeMap<(u8, i64), u64> = BTreeMap::new();
            let mut finals: BTreeMap<(u8, i64), u64> = BTreeMap::new();
            let mut offset = 0u64;
            for (op, changes) in ops {
                let rows: Vec<StoredRow> = changes.iter().map(|&(key, window, state)| row("t", key, window * 60_000, state)).collect();
                match op {
                    0 | 1 => {
                        offset += 1;
                        store.commit("views@0", 0, epoch, Arc::new(commit_of(offset, rows))).await.unwrap();
                        for (key, window, state) in changes {
                            model.insert((key, window * 60_000), u64::from(state));
                        }
                    }
                    4 => {
                        offset += 1;
                        store.commit("views@0", 0, epoch, Arc::new(closing_of(offset, rows))).await.unwrap();
                        for (key, window, state) in changes {
                            model.remove(&(key, window * 60_000));
                            *finals.entry((key, window * 60_000)).or_default() += u64::from(state);
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
                let stored: BTreeMap<(u8, i64), u64> = stored.iter().map(|r| ((r.key[0], r.window_start), count_in(&r.state))).collect();
                prop_assert_eq!(&stored, &model);
                let all = store.query_rows(RowQuery { metric: "views".into(), generation: 0, tenant: "t".into(), from: Millis::MIN, to: Millis::MAX }).await.unwrap();
                let stored: BTreeMap<(u8, i64), u64> = all.iter().filter(|r| r.partition.is_none()).map(|r| ((r.key[0], r.window_start), count_in(&r.state))).collect();
                prop_assert_eq!(&stored, &finals);
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

/// A page after the first seeks to its cursor in the final rows' key with the whole row value:
/// seeking by the window start alone would walk the range again from its start for every page.
#[test]
fn pages_seek_to_their_cursor() {
    let (dir, _store) = store();
    let connection = Connection::open(dir.path().join("store.db")).unwrap();
    let plan: Vec<String> = connection
        .prepare(&format!("EXPLAIN QUERY PLAN {}", super::serving::NEXT_PAGE))
        .unwrap()
        .query_map(
            rusqlite::params!["m", 0, "t", 0, 1, 2, 3, 0, b"k".to_vec(), 0],
            |row| row.get::<_, String>(3),
        )
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(plan.len(), 1, "{plan:?}");
    assert!(
        plan[0].contains("SEARCH finals USING PRIMARY KEY")
            && plan[0].contains("(window_start,group_key,window_end)>(?,?,?)"),
        "{plan:?}"
    );
    assert!(!plan[0].contains("TEMP B-TREE"), "no sort: {plan:?}");
}

/// A range read finds open rows in their table's key, one seek per partition with a
/// watermark row (and none for a skipped partition), not by looking every row up.
#[test]
fn open_rows_are_read_in_key_order_per_partition() {
    let (dir, _store) = store();
    let connection = Connection::open(dir.path().join("store.db")).unwrap();
    let plan: Vec<String> = connection
        .prepare(&format!(
            "EXPLAIN QUERY PLAN {}",
            super::serving::rows_in_sql(&[3])
        ))
        .unwrap()
        .query_map(rusqlite::params!["m", 0, "t", 0, 1, 2, 3, 10], |row| {
            row.get::<_, String>(3)
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let open = plan
        .iter()
        .find(|line| line.contains("partials"))
        .unwrap_or_else(|| panic!("{plan:?}"));
    assert!(
        open.contains("SEARCH partials USING PRIMARY KEY")
            && open.contains("partition=? AND tenant=? AND window_start>? AND window_start<?"),
        "{plan:?}"
    );
    assert!(
        !plan.iter().any(|line| line.contains("SCAN partials")),
        "{plan:?}"
    );
}

/// Open rows of a file from before migration 5 whose partition has no watermark row yet stay
/// readable: the migration gives that partition one.
#[tokio::test]
async fn open_rows_without_a_watermark_row_are_read_after_migrating() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v4.db");
    let connection = Connection::open(&path).unwrap();
    for migration in &schema::MIGRATIONS[..4] {
        connection.execute_batch(migration).unwrap();
    }
    connection
        .execute_batch(
            "PRAGMA user_version = 4; \
             INSERT INTO partials (metric, generation, tenant, window_start, group_key, window_end, partition, version, state) \
             VALUES ('views', 0, 't', 0, x'01', 60000, 2, 1, x'00');",
        )
        .unwrap();
    drop(connection);
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.watermarks("views", 0).await.unwrap(), [(2, None)]);
    let rows = store
        .query_rows(RowQuery {
            metric: "views".into(),
            generation: 0,
            tenant: "t".into(),
            from: Millis::MIN,
            to: Millis::MAX,
        })
        .await
        .unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!((rows[0].partition, rows[0].window_end), (Some(2), 60_000));
}
