use super::*;
use crate::format::{Fields, Rows};
use crate::layout::Layout;
use arrow_array::Array;
use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use sluice_core::event::Event;
use std::time::Duration;

const HOUR: i64 = 3_600_000;
const BASE: i64 = 1_796_648_400_000; // 2026-12-07T13:00:00Z

/// Event `i` of `tenant` at `time`, by user `user` (as user id when it starts with `u`, else
/// as anonymous id).
fn event(i: u64, tenant: &str, user: &str, time: i64) -> String {
    let id = if user.starts_with('u') {
        format!(r#""user_id":"{user}","anonymous_id":"a{i}""#)
    } else {
        format!(r#""anonymous_id":"{user}""#)
    };
    format!(
        r#"{{"message_id":"m{i}","tenant":"{tenant}","type":"track","event":"E",{id},"timestamp":{time},"received_at":{time}}}"#
    )
}

/// Every (file, offset, user id, anonymous id) in the archive.
async fn rows(target: &Target) -> Vec<(String, i64, Option<String>, Option<String>)> {
    let mut found = Vec::new();
    for (name, batch) in target.read_batches("events").await {
        let offsets = batch["log_offset"].as_primitive::<Int64Type>();
        let users = batch["user_id"].as_string::<i32>();
        let anonymous = batch["anonymous_id"].as_string::<i32>();
        for row in 0..batch.num_rows() {
            found.push((
                name.clone(),
                offsets.value(row),
                users.is_valid(row).then(|| users.value(row).to_owned()),
                anonymous
                    .is_valid(row)
                    .then(|| anonymous.value(row).to_owned()),
            ));
        }
    }
    found.sort();
    found
}

/// Writes files: shop's hour 13 holds u1's, a7's (anonymous) and u2's events; shop's hour 14
/// only u1's; blog's hour 13 u1's too (another tenant: kept).
async fn archive_of_three_files(target: &Target) -> Vec<String> {
    let files = [
        (
            "shop",
            BASE,
            vec![(0, "u1"), (1, "u2"), (2, "a7"), (3, "u1"), (4, "u2")],
        ),
        ("shop", BASE + HOUR, vec![(5, "u1"), (6, "u1")]),
        ("blog", BASE, vec![(7, "u1"), (8, "u3")]),
    ];
    let mut names = Vec::new();
    let mut written = Vec::new();
    for (tenant, hour, events) in files {
        let mut rows = Rows::default();
        for (offset, user) in events {
            let json = event(offset, tenant, user, hour + offset as i64);
            let parsed: Event<'_> = serde_json::from_str(&json).unwrap();
            rows.push(0, offset, &Fields::of(&parsed));
        }
        let name = Layout::file(tenant, hour, 0, 0);
        names.push(name.clone());
        written.push((name, rows));
    }
    target.write_files(written).await.unwrap();
    names
}

async fn forgets_a_users_events(target: Target) {
    let names = archive_of_three_files(&target).await;
    let before = rows(&target).await;
    assert_eq!(before.len(), 9);

    let forgotten = forget(&target, "shop", "u1", Duration::ZERO).await.unwrap();
    assert_eq!(forgotten.scanned, 2, "only shop's files");
    assert_eq!(
        forgotten.changed,
        [
            Changed {
                name: names[0].clone(),
                rows: 5,
                removed: 2,
                deleted: false
            },
            Changed {
                name: names[1].clone(),
                rows: 2,
                removed: 2,
                deleted: true
            },
        ]
    );
    assert_eq!(forgotten.removed(), 4);
    assert_eq!(
        target.read_record::<Lease>(LEASE).await.unwrap(),
        None,
        "the compaction lease is released"
    );
    let expected: Vec<_> = before
        .iter()
        .filter(|(name, _, user, _)| {
            !(name.contains("tenant=shop") && user.as_deref() == Some("u1"))
        })
        .cloned()
        .collect();
    assert_eq!(rows(&target).await, expected);

    // By anonymous id too; and forgetting again changes nothing.
    let anonymous = forget(&target, "shop", "a7", Duration::ZERO).await.unwrap();
    assert_eq!((anonymous.scanned, anonymous.removed()), (1, 1));
    let again = forget(&target, "shop", "u1", Duration::ZERO).await.unwrap();
    assert_eq!((again.scanned, again.changed.len()), (1, 0));
    let left: Vec<i64> = rows(&target).await.iter().map(|row| row.1).collect();
    assert_eq!(
        left,
        [7, 8, 1, 4],
        "blog's untouched, and u2's in shop (by file)"
    );
    // No temporary file is left behind.
    assert!(
        target
            .read_all("events")
            .await
            .iter()
            .all(|(name, _)| name.ends_with(".parquet") && !name.contains("/.")),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forget_rewrites_a_tenants_files_without_the_users_events() {
    let dir = tempfile::tempdir().unwrap();
    forgets_a_users_events(Target::test_dir(dir.path())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_s3_forget_rewrites_a_tenants_files_without_the_users_events() {
    forgets_a_users_events(Target::test_bucket("forget")).await;
}

/// A file staged but not published yet is skipped and reported (another tenant's is not
/// reported); once published, it is rewritten.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_staged_file_is_skipped_until_published() {
    let dir = tempfile::tempdir().unwrap();
    let target = Target::test_dir(dir.path());
    let names = archive_of_three_files(&target).await;
    let staged: Vec<String> = [&names[0], &names[2]]
        .iter()
        .map(|name| format!("{}{name}", crate::publish::staging(0, 3)))
        .collect();
    for (name, staged) in [&names[0], &names[2]].into_iter().zip(&staged) {
        target.move_file(name, staged).await.unwrap();
    }
    let forgotten = forget(&target, "shop", "u1", Duration::ZERO).await.unwrap();
    assert_eq!(forgotten.skipped, [names[0].clone()]);
    assert_eq!((forgotten.scanned, forgotten.removed()), (1, 2));
    target.move_file(&staged[0], &names[0]).await.unwrap();
    let forgotten = forget(&target, "shop", "u1", Duration::ZERO).await.unwrap();
    assert!(forgotten.skipped.is_empty());
    assert_eq!(forgotten.removed(), 2);
    assert_eq!(
        forgotten.changed[0].name, names[0],
        "the published file is rewritten"
    );
}

#[test]
fn a_staged_files_published_name_is_under_its_epochs_directory() {
    assert_eq!(
        published_name("_sluice/staged/2/17/events/tenant=a/x.parquet"),
        Some("events/tenant=a/x.parquet")
    );
    assert_eq!(published_name("_sluice/staged/2"), None);
    assert_eq!(published_name("events/tenant=a/x.parquet"), None);
}
