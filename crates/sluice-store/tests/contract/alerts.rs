//! The alerts' part of the store contract: rules and their ids, progress, the notification
//! outbox (once per id and channel, due reads, deliveries, history, counts), silences, and
//! all of it surviving a restart.

use sluice_core::time::Millis;
use sluice_store::{
    AlertProgress, AlertRuleRecord, DeliveryOutcome, DeliveryState, Notification,
    NotificationQuery, SilenceRecord, StoreBackend, StoreError,
};
use std::collections::HashMap;

fn rule(tenant: &str, name: &str, sql: &str, channels: &[&str]) -> AlertRuleRecord {
    AlertRuleRecord {
        id: 0,
        tenant: tenant.into(),
        name: name.into(),
        metric: "errors".into(),
        sql: sql.into(),
        channels: channels.iter().map(|&c| c.into()).collect(),
        origin: "api".into(),
        created_at: 0,
    }
}

fn progress(rule_id: u64, cursor: Millis, snapshot: &[u8]) -> AlertProgress {
    AlertProgress {
        rule_id,
        cursor,
        snapshot: snapshot.to_vec(),
    }
}

/// A pending notification of `shop/high_errors` to channel `ops`, created at `created_at`
/// and due at `next_attempt`.
fn notification(id: &str, created_at: Millis, next_attempt: Millis) -> Notification {
    Notification {
        id: id.into(),
        channel: "ops".into(),
        tenant: "shop".into(),
        rule: "high_errors".into(),
        status: "firing".into(),
        created_at,
        payload: format!(r#"{{"id":"{id}"}}"#),
        attempts: 0,
        next_attempt,
        state: DeliveryState::Pending,
        last_error: None,
        updated_at: created_at,
    }
}

fn outcome(n: &Notification, state: DeliveryState, attempts: u32, at: Millis) -> DeliveryOutcome {
    DeliveryOutcome {
        id: n.id.clone(),
        channel: n.channel.clone(),
        state,
        attempts,
        next_attempt: at + 1_000,
        last_error: (state == DeliveryState::Pending).then(|| "503 from the receiver".into()),
        at,
    }
}

fn ids(notifications: &[Notification]) -> Vec<(&str, &str)> {
    notifications
        .iter()
        .map(|n| (n.id.as_str(), n.channel.as_str()))
        .collect()
}

/// The whole outbox, newest first.
async fn outbox(store: &StoreBackend) -> Vec<Notification> {
    store
        .notifications(NotificationQuery {
            limit: 10_000,
            ..NotificationQuery::default()
        })
        .await
        .unwrap()
}

pub(crate) async fn alerts_rules_keep_their_id_until_they_change_and_ids_are_never_reused(
    store: &StoreBackend,
) {
    let v1 = rule("shop", "high_errors", "CREATE ALERT v1", &["ops", "pager"]);
    let (first, changed) = store.put_alert_rule(v1.clone()).await.unwrap();
    assert!(changed, "a new rule is a change");
    assert!(first.id > 0 && first.created_at > 0, "{first:?}");
    assert_eq!(
        first,
        AlertRuleRecord {
            id: first.id,
            created_at: first.created_at,
            ..v1.clone()
        },
        "stored as given, with the store's id and time"
    );
    store
        .commit_alerts(vec![progress(first.id, 60_000, b"s1")], vec![])
        .await
        .unwrap();

    let again = AlertRuleRecord {
        id: 12_345,
        created_at: 1,
        origin: "config".into(),
        ..v1.clone()
    };
    let (kept, changed) = store.put_alert_rule(again).await.unwrap();
    assert!(!changed, "the same metric, text and channels are no change");
    assert_eq!(kept, first, "kept as it is: same id, time and origin");
    assert_eq!(
        store.alert_progress(vec![first.id]).await.unwrap(),
        [progress(first.id, 60_000, b"s1")],
        "an unchanged rule keeps its progress"
    );

    let v2 = rule("shop", "high_errors", "CREATE ALERT v2", &["ops", "pager"]);
    let (second, changed) = store.put_alert_rule(v2.clone()).await.unwrap();
    assert!(changed);
    assert!(second.id > first.id, "a new text gets a new id");
    assert!(second.created_at >= first.created_at);
    assert!(
        store
            .alert_progress(vec![first.id, second.id])
            .await
            .unwrap()
            .is_empty(),
        "a replaced rule starts without progress, and the old one's is gone"
    );
    let reordered = rule("shop", "high_errors", "CREATE ALERT v2", &["pager", "ops"]);
    let (third, changed) = store.put_alert_rule(reordered).await.unwrap();
    assert!(changed && third.id > second.id, "other channels: {third:?}");
    let mut other_metric = rule("shop", "high_errors", "CREATE ALERT v2", &["pager", "ops"]);
    other_metric.metric = "latency".into();
    let (fourth, changed) = store.put_alert_rule(other_metric).await.unwrap();
    assert!(
        changed && fourth.id > third.id,
        "another metric: {fourth:?}"
    );

    let (quiet, _) = store
        .put_alert_rule(rule("shop", "a_quiet_one", "CREATE ALERT q", &[]))
        .await
        .unwrap();
    // The highest id so far, deleted below: a store must not hand it out again.
    let odd = rule(
        "blog",
        "high_errors",
        "CREATE ALERT v1",
        &[r#"a "quoted", \ name"#],
    );
    let (blog, _) = store.put_alert_rule(odd).await.unwrap();
    assert_eq!(
        store.alert_rules().await.unwrap(),
        [blog.clone(), quiet.clone(), fourth.clone()],
        "by tenant then name, channels as given (none, or names JSON must escape)"
    );
    let (blog_again, changed) = store.put_alert_rule(blog.clone()).await.unwrap();
    assert!(
        !changed && blog_again == blog,
        "odd channel names compare equal"
    );

    assert!(
        store
            .delete_alert_rule("shop", "high_errors")
            .await
            .unwrap()
    );
    assert!(
        !store
            .delete_alert_rule("shop", "high_errors")
            .await
            .unwrap()
    );
    assert!(
        store
            .delete_alert_rule("blog", "high_errors")
            .await
            .unwrap(),
        "another tenant's rule of the same name is its own"
    );
    let (recreated, changed) = store
        .put_alert_rule(rule(
            "shop",
            "high_errors",
            "CREATE ALERT v2",
            &["pager", "ops"],
        ))
        .await
        .unwrap();
    assert!(changed);
    assert!(
        recreated.id > blog.id.max(quiet.id).max(fourth.id),
        "a deleted and recreated rule gets an id never used before: {recreated:?}"
    );
    assert_eq!(store.alert_rules().await.unwrap(), [quiet, recreated]);
}

pub(crate) async fn alerts_progress_never_goes_back_and_goes_with_its_rule(store: &StoreBackend) {
    let (one, _) = store
        .put_alert_rule(rule("shop", "one", "CREATE ALERT one", &["ops"]))
        .await
        .unwrap();
    let (two, _) = store
        .put_alert_rule(rule("shop", "two", "CREATE ALERT two", &["ops"]))
        .await
        .unwrap();
    let stored = |ids: Vec<u64>| async move {
        let mut progress = store.alert_progress(ids).await.unwrap();
        progress.sort_by_key(|p| p.rule_id);
        progress
    };
    assert!(stored(vec![]).await.is_empty());
    assert!(stored(vec![one.id, two.id]).await.is_empty());

    store
        .commit_alerts(
            vec![progress(one.id, 10, b"a"), progress(two.id, 10, b"x")],
            vec![],
        )
        .await
        .unwrap();
    store
        .commit_alerts(vec![progress(one.id, 5, b"behind")], vec![])
        .await
        .unwrap();
    assert_eq!(
        stored(vec![one.id]).await,
        [progress(one.id, 10, b"a")],
        "a cursor behind the stored one (another node got further) changes nothing"
    );
    store
        .commit_alerts(vec![progress(one.id, 10, b"b")], vec![])
        .await
        .unwrap();
    assert_eq!(
        stored(vec![one.id]).await,
        [progress(one.id, 10, b"b")],
        "an equal cursor stores its snapshot"
    );
    store
        .commit_alerts(
            vec![progress(one.id, 30, b"c"), progress(one.id, 20, b"d")],
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        stored(vec![one.id, two.id, 999_999]).await,
        [progress(one.id, 30, b"c"), progress(two.id, 10, b"x")],
        "in one commit too the furthest stays; only rules with progress answer"
    );

    assert!(store.delete_alert_rule("shop", "two").await.unwrap());
    assert!(
        stored(vec![two.id]).await.is_empty(),
        "a deleted rule's progress goes with it"
    );
    let inserted = store
        .commit_alerts(
            vec![
                progress(two.id, 40, b"late"),
                progress(999_999, 1, b"never"),
            ],
            vec![notification("shop/two.2/k/1", 1, 1)],
        )
        .await
        .unwrap();
    assert_eq!(
        inserted, 1,
        "the commit's notifications are stored all the same"
    );
    assert!(
        stored(vec![two.id, 999_999]).await.is_empty(),
        "progress of a deleted (or never stored) rule is not stored"
    );
    assert_eq!(stored(vec![one.id]).await, [progress(one.id, 30, b"c")]);
}

pub(crate) async fn alerts_outbox_inserts_each_notification_once_per_channel(store: &StoreBackend) {
    let (high, _) = store
        .put_alert_rule(rule(
            "shop",
            "high_errors",
            "CREATE ALERT h",
            &["ops", "pager"],
        ))
        .await
        .unwrap();
    let first = notification("shop/high_errors.1/k/1", 100, 100);
    let paged = Notification {
        channel: "pager".into(),
        ..first.clone()
    };
    let inserted = store
        .commit_alerts(
            vec![progress(high.id, 60_000, b"s")],
            vec![first.clone(), paged.clone(), first.clone()],
        )
        .await
        .unwrap();
    assert_eq!(
        inserted, 2,
        "one per (id, channel), even twice in one commit"
    );
    assert_eq!(
        store.alert_progress(vec![high.id]).await.unwrap(),
        [progress(high.id, 60_000, b"s")],
        "committed with its notifications"
    );

    let replayed = Notification {
        payload: r#"{"replayed":true}"#.into(),
        ..first.clone()
    };
    let inserted = store
        .commit_alerts(
            vec![progress(high.id, 60_000, b"s")],
            vec![replayed, paged.clone()],
        )
        .await
        .unwrap();
    assert_eq!(inserted, 0, "a replay's notifications are there already");
    let stored = outbox(store).await;
    assert_eq!(stored.len(), 2);
    assert!(
        stored.contains(&first) && stored.contains(&paged),
        "stored as first given, untouched by the replay: {stored:?}"
    );

    assert!(
        store
            .delete_alert_rule("shop", "high_errors")
            .await
            .unwrap()
    );
    assert_eq!(
        outbox(store).await.len(),
        2,
        "a deleted rule's notifications stay (they report what happened)"
    );
}

pub(crate) async fn alerts_due_notifications_are_pending_ones_due_oldest_first(
    store: &StoreBackend,
) {
    let delivered = Notification {
        state: DeliveryState::Delivered,
        ..notification("delivered", 1, 1)
    };
    let notifications = vec![
        notification("c", 30, 300),
        notification("b", 20, 100),
        notification("a", 10, 100),
        notification("d", 40, 200),
        notification("later", 5, 500),
        delivered,
        Notification {
            channel: "a-channel".into(),
            ..notification("a", 10, 100)
        },
    ];
    assert_eq!(store.commit_alerts(vec![], notifications).await.unwrap(), 7);
    let due = store.due_notifications(400, 10).await.unwrap();
    assert_eq!(
        ids(&due),
        [
            ("a", "a-channel"),
            ("a", "ops"),
            ("b", "ops"),
            ("d", "ops"),
            ("c", "ops")
        ],
        "pending and due at 400, by due time, then creation, then id"
    );
    assert_eq!(due[3], notification("d", 40, 200), "whole rows come back");
    assert_eq!(
        ids(&store.due_notifications(400, 2).await.unwrap()),
        [("a", "a-channel"), ("a", "ops")],
        "at most the limit, oldest first"
    );
    assert_eq!(
        ids(&store.due_notifications(500, 100).await.unwrap()).len(),
        6,
        "due at exactly its next attempt"
    );
    assert!(store.due_notifications(99, 10).await.unwrap().is_empty());
    assert!(store.due_notifications(400, 0).await.unwrap().is_empty());
}

pub(crate) async fn alerts_deliveries_change_only_pending_notifications(store: &StoreBackend) {
    let retried = notification("retried", 10, 100);
    let delivered = notification("delivered", 20, 100);
    let dead = notification("dead", 30, 100);
    store
        .commit_alerts(
            vec![],
            vec![retried.clone(), delivered.clone(), dead.clone()],
        )
        .await
        .unwrap();
    store
        .record_deliveries(vec![
            outcome(&retried, DeliveryState::Pending, 1, 150),
            outcome(&delivered, DeliveryState::Delivered, 1, 160),
            outcome(&dead, DeliveryState::Dead, 9, 170),
            DeliveryOutcome {
                id: "unknown".into(),
                ..outcome(&dead, DeliveryState::Delivered, 1, 170)
            },
        ])
        .await
        .unwrap();
    assert!(
        store.due_notifications(1_149, 10).await.unwrap().is_empty(),
        "a failed attempt is due again at its next attempt, the others never"
    );
    let due = store.due_notifications(1_150, 10).await.unwrap();
    assert_eq!(
        due,
        [Notification {
            attempts: 1,
            next_attempt: 1_150,
            last_error: Some("503 from the receiver".into()),
            updated_at: 150,
            ..retried.clone()
        }]
    );
    let by_id: HashMap<String, Notification> = outbox(store)
        .await
        .into_iter()
        .map(|n| (n.id.clone(), n))
        .collect();
    assert_eq!(by_id.len(), 3, "no row for an unknown notification");
    assert_eq!(
        by_id["delivered"],
        Notification {
            state: DeliveryState::Delivered,
            attempts: 1,
            next_attempt: 1_160,
            updated_at: 160,
            ..delivered.clone()
        }
    );
    assert_eq!(
        (by_id["dead"].state, by_id["dead"].attempts),
        (DeliveryState::Dead, 9)
    );

    store
        .record_deliveries(vec![
            outcome(&delivered, DeliveryState::Pending, 2, 200),
            outcome(&dead, DeliveryState::Delivered, 10, 200),
            outcome(&retried, DeliveryState::Delivered, 2, 1_200),
            outcome(&retried, DeliveryState::Dead, 3, 1_300),
        ])
        .await
        .unwrap();
    let after: HashMap<String, Notification> = outbox(store)
        .await
        .into_iter()
        .map(|n| (n.id.clone(), n))
        .collect();
    assert_eq!(
        after["delivered"], by_id["delivered"],
        "a delivered notification stays delivered"
    );
    assert_eq!(after["dead"], by_id["dead"], "a dead one stays dead");
    assert_eq!(
        (after["retried"].state, after["retried"].attempts),
        (DeliveryState::Delivered, 2),
        "of two outcomes in one call, the second finds the notification no longer pending"
    );
}

pub(crate) async fn alerts_history_filters_pages_newest_first_and_counts(store: &StoreBackend) {
    let of = |tenant: &str, rule: &str, id: &str, created_at: Millis, state: DeliveryState| {
        Notification {
            tenant: tenant.into(),
            rule: rule.into(),
            state,
            ..notification(id, created_at, created_at)
        }
    };
    let notifications = vec![
        of("shop", "high_errors", "n1", 100, DeliveryState::Delivered),
        of("shop", "high_errors", "n2", 200, DeliveryState::Pending),
        of("shop", "slow", "n3", 300, DeliveryState::Dead),
        of("blog", "high_errors", "n4", 400, DeliveryState::Silenced),
        of("shop", "slow", "n5", 300, DeliveryState::Delivered),
        of("shop", "high_errors", "n6", 500, DeliveryState::Delivered),
    ];
    store.commit_alerts(vec![], notifications).await.unwrap();
    let read = |query: NotificationQuery| async move {
        store
            .notifications(query)
            .await
            .unwrap()
            .into_iter()
            .map(|n| n.id)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        read(NotificationQuery::default()).await,
        ["n6", "n4", "n5", "n3", "n2", "n1"],
        "newest first, then by id backwards; no limit is the default one"
    );
    let shop = |query: NotificationQuery| NotificationQuery {
        tenant: Some("shop".into()),
        ..query
    };
    assert_eq!(
        read(shop(NotificationQuery::default())).await,
        ["n6", "n5", "n3", "n2", "n1"]
    );
    assert_eq!(
        read(shop(NotificationQuery {
            rule: Some("high_errors".into()),
            ..NotificationQuery::default()
        }))
        .await,
        ["n6", "n2", "n1"]
    );
    assert_eq!(
        read(shop(NotificationQuery {
            state: Some(DeliveryState::Delivered),
            ..NotificationQuery::default()
        }))
        .await,
        ["n6", "n5", "n1"]
    );
    assert_eq!(
        read(NotificationQuery {
            rule: Some("high_errors".into()),
            ..NotificationQuery::default()
        })
        .await,
        ["n6", "n4", "n2", "n1"],
        "an admin's read spans tenants"
    );
    let first_page = read(shop(NotificationQuery {
        limit: 2,
        ..NotificationQuery::default()
    }))
    .await;
    assert_eq!(first_page, ["n6", "n5"]);
    assert_eq!(
        read(shop(NotificationQuery {
            before: Some(300),
            limit: 2,
            ..NotificationQuery::default()
        }))
        .await,
        ["n2", "n1"],
        "created strictly before"
    );

    let counts: HashMap<DeliveryState, u64> = store
        .notification_counts()
        .await
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(
        counts,
        HashMap::from([
            (DeliveryState::Delivered, 3),
            (DeliveryState::Pending, 1),
            (DeliveryState::Dead, 1),
            (DeliveryState::Silenced, 1),
        ])
    );

    let many: Vec<Notification> = (0..150)
        .map(|i| {
            of(
                "many",
                "r",
                &format!("m{i:03}"),
                1_000 + i,
                DeliveryState::Pending,
            )
        })
        .collect();
    assert_eq!(store.commit_alerts(vec![], many).await.unwrap(), 150);
    let tenant = |limit| NotificationQuery {
        tenant: Some("many".into()),
        limit,
        ..NotificationQuery::default()
    };
    let default = read(tenant(0)).await;
    assert_eq!(default.len(), 100, "a limit of 0 reads the default 100");
    assert_eq!(
        (default[0].as_str(), default[99].as_str()),
        ("m149", "m050")
    );
    assert_eq!(read(tenant(120)).await.len(), 120);
    let counts: HashMap<DeliveryState, u64> = store
        .notification_counts()
        .await
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(counts[&DeliveryState::Pending], 151);
}

pub(crate) async fn alerts_silences_are_added_listed_and_deleted_per_tenant(store: &StoreBackend) {
    let silence = |id: &str, tenant: &str, rule: Option<&str>, from: Millis| SilenceRecord {
        id: id.into(),
        tenant: tenant.into(),
        rule: rule.map(Into::into),
        key: rule.map(|_| r#"{"region":"eu"}"#.into()),
        from,
        to: from + 3_600_000,
        comment: format!("maintenance {id}"),
        created_at: from - 1,
    };
    let late = silence("sil_late", "shop", Some("high_errors"), 2_000);
    let early = silence("sil_early", "shop", None, 1_000);
    let blog = silence("sil_blog", "blog", None, 5_000);
    for one in [&late, &early, &blog] {
        store.put_silence(one.clone()).await.unwrap();
    }
    let error = store
        .put_silence(silence("sil_late", "blog", None, 9_000))
        .await
        .unwrap_err();
    assert!(
        matches!(error, StoreError::Invalid(ref text) if text.contains("sil_late")),
        "{error}"
    );
    assert_eq!(
        store.silences().await.unwrap(),
        [blog.clone(), early.clone(), late.clone()],
        "by tenant then start, a refused duplicate changing nothing"
    );
    assert!(
        !store.delete_silence("blog", "sil_late").await.unwrap(),
        "another tenant's silence is not deleted"
    );
    assert!(store.delete_silence("shop", "sil_late").await.unwrap());
    assert!(!store.delete_silence("shop", "sil_late").await.unwrap());
    assert_eq!(store.silences().await.unwrap(), [blog, early]);
}

/// Writes rules, progress, notifications and silences for [`alerts_state_is_as_written`].
/// Returns the rules kept.
async fn write_alerts_state(store: &StoreBackend) -> Vec<AlertRuleRecord> {
    let (kept, _) = store
        .put_alert_rule(rule("shop", "kept", "CREATE ALERT kept", &["ops"]))
        .await
        .unwrap();
    let (gone, _) = store
        .put_alert_rule(rule("shop", "gone", "CREATE ALERT gone", &["ops"]))
        .await
        .unwrap();
    let n = notification("shop/kept.1/k/1", 100, 100);
    store
        .commit_alerts(vec![progress(kept.id, 60_000, b"state")], vec![n.clone()])
        .await
        .unwrap();
    store
        .record_deliveries(vec![outcome(&n, DeliveryState::Pending, 1, 150)])
        .await
        .unwrap();
    store
        .put_silence(SilenceRecord {
            id: "sil_1".into(),
            tenant: "shop".into(),
            rule: None,
            key: None,
            from: 1,
            to: 2,
            comment: "".into(),
            created_at: 1,
        })
        .await
        .unwrap();
    // The highest id so far goes: a restart must not hand it out again.
    assert!(gone.id > kept.id);
    assert!(store.delete_alert_rule("shop", "gone").await.unwrap());
    vec![kept, gone]
}

/// Checks, after a restart, what [`write_alerts_state`] wrote.
async fn alerts_state_is_as_written(store: &StoreBackend, written: Vec<AlertRuleRecord>) {
    let (kept, gone) = (&written[0], &written[1]);
    assert_eq!(
        store.alert_rules().await.unwrap(),
        std::slice::from_ref(kept)
    );
    assert_eq!(
        store.alert_progress(vec![kept.id]).await.unwrap(),
        [progress(kept.id, 60_000, b"state")]
    );
    let due = store.due_notifications(1_150, 10).await.unwrap();
    assert_eq!(
        (ids(&due), due[0].attempts),
        (vec![("shop/kept.1/k/1", "ops")], 1)
    );
    assert_eq!(store.silences().await.unwrap().len(), 1);
    let (again, changed) = store
        .put_alert_rule(rule("shop", "kept", "CREATE ALERT kept", &["ops"]))
        .await
        .unwrap();
    assert!(!changed && again == *kept);
    let (new, _) = store
        .put_alert_rule(rule("shop", "new", "CREATE ALERT new", &["ops"]))
        .await
        .unwrap();
    assert!(
        new.id > gone.id,
        "ids are never handed out twice, across restarts too: {new:?} after {gone:?}"
    );
}

/// Alerts survive a restart: SQLite reopening its file, PostgreSQL connecting again.
mod restarts {
    use sluice_store::{PostgresStore, SqliteStore, StoreBackend};

    #[tokio::test]
    async fn alerts_survive_reopening_the_sqlite_store() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.db");
        let store = StoreBackend::from(SqliteStore::open(&path).unwrap());
        let written = super::write_alerts_state(&store).await;
        drop(store);
        let store = StoreBackend::from(SqliteStore::open(&path).unwrap());
        super::alerts_state_is_as_written(&store, written).await;
    }

    #[tokio::test]
    async fn alerts_survive_reconnecting_to_the_postgres_store() {
        let url = sluice_store::testing::postgres_url("alerts_survive_reconnecting").await;
        let store = StoreBackend::from(PostgresStore::connect(&url).await.unwrap());
        let written = super::write_alerts_state(&store).await;
        drop(store);
        let store = StoreBackend::from(PostgresStore::connect(&url).await.unwrap());
        super::alerts_state_is_as_written(&store, written).await;
    }
}
