//! The store contract, written once against the store's traits and run for every backend
//! (SQLite, and PostgreSQL in a fresh schema of the database `SLUICE_TEST_POSTGRES` names). Each
//! check gets a fresh, empty store behind a [`StoreBackend`], as the pipelines and the API see it.
//! What only PostgreSQL has, its metrics' BI views, is checked in [`postgres_views`].

// Beside this file, not in `tests/`, where cargo would make it a test binary of its own.
#[path = "contract/postgres_views.rs"]
mod postgres_views;
#[path = "contract/schema_registry.rs"]
mod schema_registry;
use schema_registry::schema_versions_ids_deletes_and_settings_round_trip;
#[path = "contract/alerts.rs"]
mod alerts;
use alerts::{
    alerts_deliveries_change_only_pending_notifications,
    alerts_due_notifications_are_pending_ones_due_oldest_first,
    alerts_history_filters_pages_newest_first_and_counts,
    alerts_outbox_inserts_each_notification_once_per_channel,
    alerts_progress_never_goes_back_and_goes_with_its_rule,
    alerts_rules_keep_their_id_until_they_change_and_ids_are_never_reused,
    alerts_silences_are_added_listed_and_deleted_per_tenant,
};

use sluice_core::access::{Role, digest};
use sluice_core::time::Millis;
use sluice_store::model::RetractedRow;
use sluice_store::testing::{closing_of, commit_of, count, count_in, final_row, metric, row};
use sluice_store::{
    Commit, KeyRecord, Position, ReplayPlan, RowCursor, RowPage, RowQuery, RowRange, StoreBackend,
    StoreError, StoredRow, TenantRecord,
};
use std::sync::Arc;

async fn metric_definitions_are_created_listed_and_deleted(store: &StoreBackend) {
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

async fn claims_fence_older_owners(store: &StoreBackend) {
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

async fn repositions_move_the_position_keep_the_rows_and_count_the_lost_offsets(
    store: &StoreBackend,
) {
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
    let rewound = store.reposition("views@0", 0, epoch, 120, 1).await.unwrap();
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
    let error = store
        .reposition("views@0", 0, epoch, 100, 2)
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::Fenced { .. }), "{error}");
    assert_eq!(store.positions("views@0").await.unwrap()[0].1.offset, 120);

    // Rewinds add up; commits keep the count and store their log epoch.
    assert_eq!(
        store
            .reposition("views@0", 0, newer, 100, 2)
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

    // Forward, past records retention removed before they were processed: they count too.
    let moved = store.reposition("views@0", 0, newer, 200, 2).await.unwrap();
    assert_eq!((moved.offset, moved.lost_offsets), (200, 120));
}

async fn commits_upsert_and_retract_rows_with_the_position(store: &StoreBackend) {
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

async fn pages_walk_the_final_rows_of_a_range_once_in_window_key_order(store: &StoreBackend) {
    store.create_metric(metric("views")).await.unwrap();
    let mut expected = Vec::new();
    for partition in [2u32, 0, 1] {
        let epoch = store.claim("views@0", partition, 0, 0).await.unwrap().epoch;
        let mut rows = Vec::new();
        for start in [0, 60_000, 120_000, 180_000] {
            for key in [3u8, 1, 2] {
                for tenant in ["a", "b"] {
                    rows.push(row(tenant, key, start, partition as u8 * 16 + key));
                }
            }
        }
        store
            .commit(
                "views@0",
                partition,
                epoch,
                Arc::new(closing_of(10, rows.clone())),
            )
            .await
            .unwrap();
        // An open row is no final one: pages leave it out.
        let open = vec![row("a", 9, 60_000, 1)];
        store
            .commit("views@0", partition, epoch, Arc::new(commit_of(11, open)))
            .await
            .unwrap();
        if partition == 1 {
            expected = rows
                .into_iter()
                .filter(|r| r.tenant == "a" && (60_000..180_000).contains(&r.window_start))
                .map(|r| StoredRow {
                    // Every partition's count merged: 2·16 + k, 0 + k and 16 + k.
                    state: count(48 + 3 * u64::from(r.key[0])),
                    ..final_row(r)
                })
                .collect();
        }
    }
    expected.sort_by(|x, y| {
        (x.window_start, &x.key, x.window_end).cmp(&(y.window_start, &y.key, y.window_end))
    });
    assert_eq!(expected.len(), 6);
    let page = |after: Option<RowCursor>, limit: usize| RowPage {
        metric: "views".into(),
        generation: 0,
        tenant: "a".into(),
        start_from: 60_000,
        start_before: 180_000,
        end_upto: 180_000,
        after,
        limit,
    };
    for limit in [1, 4, 6, 100] {
        let mut read: Vec<StoredRow> = Vec::new();
        loop {
            let rows = store
                .rows_page(page(read.last().map(RowCursor::of), limit))
                .await
                .unwrap();
            assert!(rows.len() <= limit);
            let done = rows.len() < limit;
            read.extend(rows);
            if done {
                break;
            }
        }
        assert_eq!(read, expected, "pages of {limit}");
    }
    let upto = RowPage {
        end_upto: 179_999,
        ..page(None, 100)
    };
    let rows = store.rows_page(upto).await.unwrap();
    assert!(
        rows.iter().all(|r| r.window_start == 60_000) && rows.len() == 3,
        "windows ending after end_upto are left out"
    );
}

/// Partitions (on as many connections, or nodes) closing the same windows at the same moment:
/// each window's final row ends up with every part, none lost to a concurrent merge.
async fn partitions_closing_one_window_at_once_lose_no_part(store: &StoreBackend) {
    store.create_metric(metric("views")).await.unwrap();
    const PARTITIONS: u32 = 8;
    const ROUNDS: u8 = 6;
    let mut tasks = Vec::new();
    for partition in 0..PARTITIONS {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let epoch = store.claim("views@0", partition, 0, 0).await.unwrap().epoch;
            for round in 0..ROUNDS {
                // Every partition closes windows 0..4 of this round, counting its number + 1,
                // in two keys; the rows go in a different order in each partition.
                let mut rows: Vec<StoredRow> = (0..4)
                    .flat_map(|w| {
                        let start = Millis::from(round) * 240_000 + w * 60_000;
                        [1, 2].map(|key| row("a", key, start, partition as u8 + 1))
                    })
                    .collect();
                let turn = partition as usize % rows.len();
                rows.rotate_left(turn);
                store
                    .commit(
                        "views@0",
                        partition,
                        epoch,
                        Arc::new(closing_of(u64::from(round) + 1, rows)),
                    )
                    .await
                    .unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let rows = store
        .query_rows(RowQuery {
            metric: "views".into(),
            generation: 0,
            tenant: "a".into(),
            from: Millis::MIN,
            to: Millis::MAX,
        })
        .await
        .unwrap();
    let every_part: u64 = (1..=u64::from(PARTITIONS)).sum();
    assert_eq!(rows.len(), usize::from(ROUNDS) * 4 * 2, "{rows:?}");
    for stored in &rows {
        assert_eq!(stored.partition, None, "final: {stored:?}");
        assert_eq!(count_in(&stored.state), every_part, "{stored:?}");
    }
}

async fn closed_windows_merge_into_one_final_row_whatever_the_partitions(store: &StoreBackend) {
    store.create_metric(metric("views")).await.unwrap();
    let zero = store.claim("views@0", 0, 0, 0).await.unwrap().epoch;
    let one = store.claim("views@0", 1, 0, 0).await.unwrap().epoch;
    let commit = |partition: u32, epoch: u64, commit: Commit| {
        store.commit("views@0", partition, epoch, Arc::new(commit))
    };
    // Partition 0 has the window open; partition 1 closes it, then partition 0 does.
    commit(0, zero, commit_of(10, vec![row("a", 1, 0, 2)]))
        .await
        .unwrap();
    commit(1, one, closing_of(60_000, vec![row("a", 1, 0, 3)]))
        .await
        .unwrap();
    let range = RowRange {
        metric: "views".into(),
        generation: 0,
        tenant: "a".into(),
        end_after: Millis::MIN,
        end_upto: Millis::MAX,
        start_from: Millis::MIN,
        start_before: Millis::MAX,
        limit: 10,
    };
    let read = store
        .live_rows(range.clone(), vec![])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        read.rows,
        [final_row(row("a", 1, 0, 3)), row("a", 1, 0, 2)],
        "partition 1's part is final, partition 0's still open"
    );
    assert_eq!(read.watermarks, [(0, Some(10)), (1, Some(60_000))]);
    let without = store
        .live_rows(range.clone(), vec![0, 7])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        without.rows,
        [final_row(row("a", 1, 0, 3))],
        "partition 0's open rows left out"
    );
    let mut last = row("a", 1, 0, 4);
    last.version = 3;
    commit(0, zero, closing_of(60_000, vec![last]))
        .await
        .unwrap();
    let rows = store.rows_in(range.clone()).await.unwrap().unwrap();
    let merged = StoredRow {
        version: 3,
        state: count(7),
        ..final_row(row("a", 1, 0, 0))
    };
    assert_eq!(
        rows,
        std::slice::from_ref(&merged),
        "one row: both parts merged"
    );
    assert!(
        store
            .load_rows("views", 0, 0, Millis::MIN)
            .await
            .unwrap()
            .is_empty()
    );

    // A state that does not decode fails the commit whole: nothing of it is written.
    let mut damaged = row("a", 1, 0, 1);
    damaged.state[1] ^= 0xff;
    let error = commit(1, one, closing_of(70_000, vec![damaged]))
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::Corrupt { .. }), "{error}");
    assert_eq!(store.rows_in(range).await.unwrap().unwrap(), [merged]);
    assert_eq!(
        store.positions("views@0").await.unwrap()[1].1.offset,
        60_000
    );

    assert!(store.delete_metric("views").await.unwrap());
    let gone = store.query_rows(RowQuery {
        metric: "views".into(),
        generation: 0,
        tenant: "a".into(),
        from: Millis::MIN,
        to: Millis::MAX,
    });
    assert!(
        gone.await.unwrap().is_empty(),
        "final rows go with their metric"
    );
}

async fn settling_moves_open_rows_of_closed_windows_into_final_rows(store: &StoreBackend) {
    store.create_metric(metric("views")).await.unwrap();
    // As an older store kept them: closed windows among the open rows of each partition.
    for partition in [0u32, 1] {
        let epoch = store.claim("views@0", partition, 0, 0).await.unwrap().epoch;
        let rows = vec![row("a", 1, 0, 2), row("a", 1, 60_000, 5)];
        let offset = 90_000 + u64::from(partition) * 40_000;
        let commit = Arc::new(commit_of(offset, rows));
        store
            .commit("views@0", partition, epoch, commit)
            .await
            .unwrap();
    }
    // Watermarks 90 000 and 130 000, lateness 10 000: [0, 60 000) closed on both partitions,
    // [60 000, 120 000) on partition 1 only.
    assert_eq!(store.settle("views", 0, 10_000).await.unwrap(), 3);
    let rows = store
        .query_rows(RowQuery {
            metric: "views".into(),
            generation: 0,
            tenant: "a".into(),
            from: Millis::MIN,
            to: Millis::MAX,
        })
        .await
        .unwrap();
    let open = row("a", 1, 60_000, 5);
    assert_eq!(
        rows,
        [
            StoredRow {
                state: count(4),
                ..final_row(row("a", 1, 0, 0))
            },
            final_row(open.clone()),
            open,
        ]
    );
    assert_eq!(store.settle("views", 0, 10_000).await.unwrap(), 0, "once");
}

/// Tenant a's rows of metric `views`, generation `generation`.
async fn views_rows(store: &StoreBackend, generation: u32) -> Vec<StoredRow> {
    store
        .query_rows(RowQuery {
            metric: "views".into(),
            generation,
            tenant: "a".into(),
            from: 0,
            to: i64::MAX,
        })
        .await
        .unwrap()
}

async fn switching_generations_replaces_results_atomically_and_can_keep_the_past(
    store: &StoreBackend,
) {
    store.create_metric(metric("views")).await.unwrap();
    let old = store.claim("views@0", 0, 0, 0).await.unwrap().epoch;
    // Final rows and an open one, before and after the replay's start.
    let mut past = closing_of(10, vec![row("a", 1, 0, 1), row("a", 1, 60_000, 1)]);
    past.metrics[0].changed = [row("a", 2, 30_000, 1), row("a", 1, 120_000, 1)]
        .iter()
        .map(StoredRow::as_changed)
        .collect();
    store
        .commit("views@0", 0, old, Arc::new(past))
        .await
        .unwrap();
    // An open row of a partition the replay has not reached yet: it is kept all the same.
    let other = store.claim("views@0", 1, 0, 0).await.unwrap().epoch;
    let open = commit_of(3, vec![row("a", 1, 40_000, 1)]);
    store
        .commit("views@0", 1, other, Arc::new(open))
        .await
        .unwrap();
    let new = store.claim("views@1", 0, 0, 0).await.unwrap().epoch;
    let mut replayed = closing_of(
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
    let rows = views_rows(store, 1).await;
    let states: Vec<(Millis, u64, bool)> = rows
        .iter()
        .map(|r| (r.window_start, count_in(&r.state), r.partition.is_none()))
        .collect();
    assert_eq!(
        states,
        [
            (0, 1, true),
            (30_000, 1, false),
            (40_000, 1, false),
            (60_000, 5, true),
            (120_000, 5, true)
        ],
        "before the replay's start the old results stand"
    );
    assert!(views_rows(store, 0).await.is_empty());
    assert!(store.positions("views@0").await.unwrap().is_empty());
    assert_eq!(store.positions("views@1").await.unwrap().len(), 1);

    // Another node of a cluster switching the same replay after this one changes nothing.
    store
        .switch_generation("views", 1, Some(60_000))
        .await
        .unwrap();
    let again = views_rows(store, 1).await;
    assert_eq!(again, rows, "a second switch keeps the kept rows");
    assert_eq!(store.metrics().await.unwrap()[0].generation, 1);
}

async fn replays_are_recorded_once_and_end_with_their_switch(store: &StoreBackend) {
    store.create_metric(metric("views")).await.unwrap();
    // Leftovers of an interrupted attempt at generation 1.
    let left = store.claim("views@1", 0, 0, 0).await.unwrap().epoch;
    let mut leftover = commit_of(4, vec![row("a", 1, 0, 9)]);
    leftover.metrics[0].generation = 1;
    store
        .commit("views@1", 0, left, Arc::new(leftover))
        .await
        .unwrap();

    let plan = ReplayPlan {
        generation: 1,
        from_time: Some(60_000),
        initial: vec![0, 7, 3],
        targets: vec![10, 20, 30],
    };
    assert!(store.begin_replay("views", &plan).await.unwrap());
    assert_eq!(
        store.replays().await.unwrap(),
        vec![("views".to_owned(), plan.clone())]
    );
    assert!(
        store.positions("views@1").await.unwrap().is_empty(),
        "an earlier attempt's positions are gone"
    );
    assert!(views_rows(store, 1).await.is_empty(), "and its rows");
    assert!(
        !store.begin_replay("views", &plan).await.unwrap(),
        "one replay of a metric at a time"
    );
    let later = ReplayPlan {
        generation: 2,
        ..plan.clone()
    };
    store
        .switch_generation("views", 1, plan.from_time)
        .await
        .unwrap();
    assert!(
        store.replays().await.unwrap().is_empty(),
        "the switch ends it"
    );
    assert!(
        !store
            .begin_replay(
                "views",
                &ReplayPlan {
                    generation: 3,
                    ..plan.clone()
                }
            )
            .await
            .unwrap(),
        "only the generation after the current"
    );
    assert!(store.begin_replay("views", &later).await.unwrap());
    assert!(matches!(
        store.begin_replay("nope", &later).await,
        Err(StoreError::UnknownMetric(name)) if name == "nope"
    ));
    assert!(store.delete_metric("views").await.unwrap());
    assert!(
        store.replays().await.unwrap().is_empty(),
        "gone with the metric"
    );
}

fn key(id: &str, tenant: Option<&str>, role: Role, secret: &str) -> KeyRecord {
    KeyRecord {
        id: id.into(),
        tenant: tenant.map(str::to_owned),
        role,
        digest: digest(secret),
        hint: secret[..6].into(),
        label: "test".into(),
        created_at: 1,
    }
}

async fn tenants_keys_and_usage_round_trip(store: &StoreBackend) {
    let shop = TenantRecord {
        name: "shop".into(),
        created_at: 5,
        requests_per_second: Some(10),
        events_per_day: None,
    };
    store.create_tenant(shop.clone()).await.unwrap();
    assert!(matches!(
        store.create_tenant(shop.clone()).await,
        Err(StoreError::TenantExists(name)) if name == "shop"
    ));
    assert!(
        store
            .set_tenant_limits("shop", None, Some(100))
            .await
            .unwrap()
    );
    assert!(!store.set_tenant_limits("nope", None, None).await.unwrap());
    let stored = store.tenants().await.unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(
        (stored[0].requests_per_second, stored[0].events_per_day),
        (None, Some(100))
    );

    store
        .create_key(key("key_a", Some("shop"), Role::Write, "wk_secret_a_0123"))
        .await
        .unwrap();
    store
        .create_key(key("key_b", None, Role::Admin, "ak_secret_b_0123"))
        .await
        .unwrap();
    let duplicate = store
        .create_key(key("key_c", Some("shop"), Role::Read, "wk_secret_a_0123"))
        .await;
    assert!(
        matches!(duplicate, Err(StoreError::Invalid(_))),
        "{duplicate:?}"
    );
    let keys = store.keys().await.unwrap();
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[0].digest, digest("wk_secret_a_0123"));
    assert_eq!(keys[1].role, Role::Admin);

    store
        .add_key_usage(vec![("key_a".into(), 7, 40)])
        .await
        .unwrap();
    store
        .add_key_usage(vec![
            ("key_a".into(), 7, 30),
            ("key_a".into(), 7, 5),
            ("key_b".into(), 7, 2),
        ])
        .await
        .unwrap();
    let mut used = store.key_usage(7).await.unwrap();
    used.sort();
    assert_eq!(
        used,
        vec![("key_a".into(), 75), ("key_b".into(), 2)],
        "every node's additions are summed"
    );
    store
        .add_key_usage(vec![("key_b".into(), 8, 1)])
        .await
        .unwrap();
    assert!(
        store.key_usage(7).await.unwrap().is_empty(),
        "days before the earliest saved are forgotten"
    );
    assert_eq!(store.key_usage(8).await.unwrap(), vec![("key_b".into(), 1)]);

    assert!(store.delete_tenant("shop").await.unwrap());
    let keys = store.keys().await.unwrap();
    assert_eq!(keys.len(), 1, "the tenant's keys went with it");
    assert!(store.delete_key("key_b").await.unwrap());
    assert!(!store.delete_key("key_b").await.unwrap());
}

async fn boards_are_saved_replaced_listed_and_deleted_per_tenant(store: &StoreBackend) {
    let board = |tenant: &str, name: &str, spec: &str, at: i64| sluice_store::BoardRecord {
        tenant: tenant.into(),
        name: name.into(),
        spec: spec.into(),
        updated_at: at,
    };
    store
        .put_board(board("shop", "sales", "{}", 1))
        .await
        .unwrap();
    store
        .put_board(board("shop", "ops", "{}", 2))
        .await
        .unwrap();
    store
        .put_board(board("blog", "sales", "{}", 3))
        .await
        .unwrap();
    store
        .put_board(board("shop", "sales", r#"{"panels":[]}"#, 4))
        .await
        .unwrap();
    let shop = store.boards("shop").await.unwrap();
    assert_eq!(
        shop,
        [
            board("shop", "ops", "{}", 2),
            board("shop", "sales", r#"{"panels":[]}"#, 4)
        ],
        "by name, the second save replacing the first"
    );
    assert!(store.delete_board("shop", "sales").await.unwrap());
    assert!(!store.delete_board("shop", "sales").await.unwrap());
    assert_eq!(store.boards("shop").await.unwrap().len(), 1);
    assert_eq!(
        store.boards("blog").await.unwrap(),
        [board("blog", "sales", "{}", 3)],
        "another tenant's board of the same name is its own"
    );
}

async fn erasures_keep_their_first_time_per_tenant(store: &StoreBackend) {
    let erasure = |tenant: &str, id: &str, at: i64| sluice_store::ErasureRecord {
        tenant: tenant.into(),
        id: id.into(),
        erased_at: at,
    };
    assert!(store.erasures().await.unwrap().is_empty());
    assert_eq!(
        store.erase(erasure("shop", "u1", 10)).await.unwrap(),
        erasure("shop", "u1", 10)
    );
    assert_eq!(
        store.erase(erasure("shop", "u1", 20)).await.unwrap(),
        erasure("shop", "u1", 10),
        "erased again: the first time stays"
    );
    store.erase(erasure("blog", "u1", 30)).await.unwrap();
    store.erase(erasure("shop", "anon-7", 40)).await.unwrap();
    assert_eq!(
        store.erasures().await.unwrap(),
        [
            erasure("blog", "u1", 30),
            erasure("shop", "anon-7", 40),
            erasure("shop", "u1", 10)
        ],
        "by tenant then id; one tenant's id is not another's"
    );
}

async fn stream_ranges_are_committed_with_the_position_and_go_with_the_stream(
    store: &StoreBackend,
) {
    let range = |start, end| sluice_store::model::StreamRange {
        stream: "orders".into(),
        start,
        end,
    };
    let output = |offset, ranges: Vec<sluice_store::model::StreamRange>| {
        Arc::new(sluice_store::model::Commit {
            output: ranges,
            ..commit_of(offset, vec![])
        })
    };
    store.create_metric(metric("orders")).await.unwrap();
    let epoch = store.claim("orders@0", 2, 0, 0).await.unwrap().epoch;
    assert!(
        store
            .stream_ranges("orders", 2, 0, 10)
            .await
            .unwrap()
            .is_empty()
    );
    store
        .commit("orders@0", 2, epoch, output(10, vec![range(0, 4)]))
        .await
        .unwrap();
    store
        .commit("orders@0", 2, epoch, output(20, vec![range(4, 9)]))
        .await
        .unwrap();
    assert_eq!(
        store.stream_ranges("orders", 2, 0, 10).await.unwrap(),
        [(0, 9)],
        "a range starting where the last ended extends it"
    );
    // An owner that appended [9, 12) and crashed before its commit: fenced, nothing visible.
    let next = store.claim("orders@0", 2, 0, 0).await.unwrap().epoch;
    let fenced = store
        .commit("orders@0", 2, epoch, output(30, vec![range(9, 12)]))
        .await
        .unwrap_err();
    assert!(matches!(fenced, StoreError::Fenced { .. }), "{fenced}");
    store
        .commit(
            "orders@0",
            2,
            next,
            output(30, vec![range(12, 15), range(15, 16)]),
        )
        .await
        .unwrap();
    assert_eq!(
        store.stream_ranges("orders", 2, 0, 10).await.unwrap(),
        [(0, 9), (12, 16)],
        "the records a crashed writer appended, 9..12, are in no range"
    );
    assert_eq!(
        store.stream_ranges("orders", 2, 9, 10).await.unwrap(),
        [(12, 16)]
    );
    assert_eq!(
        store.stream_ranges("orders", 2, 8, 1).await.unwrap(),
        [(0, 9)]
    );
    assert!(
        store
            .stream_ranges("orders", 2, 16, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .stream_ranges("orders", 1, 0, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(store.delete_metric("orders").await.unwrap());
    assert!(
        store
            .stream_ranges("orders", 2, 0, 10)
            .await
            .unwrap()
            .is_empty(),
        "deleting the stream deletes its ranges: a stream made again starts with none"
    );
}

async fn a_commit_keeps_its_note_with_the_position_until_the_next_commit(store: &StoreBackend) {
    let noted = |offset, note: Option<&[u8]>| {
        Arc::new(sluice_store::model::Commit {
            note: note.map(<[u8]>::to_vec),
            ..commit_of(offset, vec![])
        })
    };
    assert_eq!(store.committed_note("archive", 1).await.unwrap(), None);
    let epoch = store.claim("archive", 1, 0, 0).await.unwrap().epoch;
    assert_eq!(store.committed_note("archive", 1).await.unwrap(), None);
    store
        .commit("archive", 1, epoch, noted(10, Some(b"batch 0..10")))
        .await
        .unwrap();
    assert_eq!(
        store.committed_note("archive", 1).await.unwrap().as_deref(),
        Some(&b"batch 0..10"[..])
    );
    // A new owner reads the last owner's note; the fenced one cannot replace it.
    let next = store.claim("archive", 1, 0, 0).await.unwrap().epoch;
    let fenced = store
        .commit("archive", 1, epoch, noted(20, Some(b"batch 10..20")))
        .await
        .unwrap_err();
    assert!(matches!(fenced, StoreError::Fenced { .. }), "{fenced}");
    assert_eq!(
        store.committed_note("archive", 1).await.unwrap().as_deref(),
        Some(&b"batch 0..10"[..]),
        "a claim keeps the note; a fenced commit does not replace it"
    );
    assert_eq!(
        store.committed_note("archive", 0).await.unwrap(),
        None,
        "another partition's"
    );
    store
        .commit("archive", 1, next, noted(20, None))
        .await
        .unwrap();
    assert_eq!(
        store.committed_note("archive", 1).await.unwrap(),
        None,
        "a commit without a note clears it"
    );
}

macro_rules! for_every_backend {
    ($($check:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $check() {
                    let dir = tempfile::tempdir().unwrap();
                    let store = sluice_store::SqliteStore::open(&dir.path().join("store.db"))
                        .unwrap();
                    super::$check(&super::StoreBackend::from(store)).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $check() {
                    let store = sluice_store::testing::postgres_store(stringify!($check)).await;
                    super::$check(&super::StoreBackend::from(store)).await;
                }
            )*
        }
    };
}

for_every_backend!(
    metric_definitions_are_created_listed_and_deleted,
    claims_fence_older_owners,
    repositions_move_the_position_keep_the_rows_and_count_the_lost_offsets,
    commits_upsert_and_retract_rows_with_the_position,
    pages_walk_the_final_rows_of_a_range_once_in_window_key_order,
    closed_windows_merge_into_one_final_row_whatever_the_partitions,
    partitions_closing_one_window_at_once_lose_no_part,
    settling_moves_open_rows_of_closed_windows_into_final_rows,
    switching_generations_replaces_results_atomically_and_can_keep_the_past,
    replays_are_recorded_once_and_end_with_their_switch,
    tenants_keys_and_usage_round_trip,
    schema_versions_ids_deletes_and_settings_round_trip,
    boards_are_saved_replaced_listed_and_deleted_per_tenant,
    erasures_keep_their_first_time_per_tenant,
    stream_ranges_are_committed_with_the_position_and_go_with_the_stream,
    a_commit_keeps_its_note_with_the_position_until_the_next_commit,
    alerts_rules_keep_their_id_until_they_change_and_ids_are_never_reused,
    alerts_progress_never_goes_back_and_goes_with_its_rule,
    alerts_outbox_inserts_each_notification_once_per_channel,
    alerts_due_notifications_are_pending_ones_due_oldest_first,
    alerts_deliveries_change_only_pending_notifications,
    alerts_history_filters_pages_newest_first_and_counts,
    alerts_silences_are_added_listed_and_deleted_per_tenant,
);
