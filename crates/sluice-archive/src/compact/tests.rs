use super::*;
use crate::format::{Fields, Rows};
use crate::layout::Layout;
use crate::publish::Owner;
use crate::sink::PIPELINE;
use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use sluice_core::event::Event;

/// 2026-12-07T00:00:00Z.
const DEC_7: Millis = 1_796_601_600_000;
/// Now: 13:30 on Dec 7.
const NOW: Millis = DEC_7 + 13 * HOUR + 30 * 60_000;
const SETTLE: Duration = Duration::from_secs(600);

/// A file of `partition`'s batch from `first` in `tenant`'s `hour`, of `count` events.
fn file(tenant: &str, hour: Millis, partition: u32, first: u64, count: u64) -> (String, Rows) {
    let mut rows = Rows::default();
    for offset in first..first + count {
        let time = hour + offset as Millis;
        let json = format!(
            r#"{{"message_id":"m{offset}","tenant":"{tenant}","type":"track","event":"E","anonymous_id":"a{offset}","timestamp":{time},"received_at":{time},"properties":{{"n":{offset}}}}}"#
        );
        rows.push(
            partition,
            offset,
            &Fields::of(&serde_json::from_str::<Event<'_>>(&json).unwrap()),
        );
    }
    (Layout::file(tenant, hour, partition, first), rows)
}

/// A claim of `partition` in a store of its own under `dir`, at offset 7.
async fn owner_of(dir: &std::path::Path, partition: u32) -> (Owner, Mark) {
    let store = sluice_store::StoreBackend::from(
        sluice_store::SqliteStore::open(&dir.join(format!("store-{partition}.db"))).unwrap(),
    );
    let position = store.claim(PIPELINE, partition, 7, 0).await.unwrap();
    let mark = Mark {
        offset: position.offset,
        event_time: Some(NOW),
        log_epoch: 0,
    };
    let owner = Owner {
        store,
        pipeline: crate::sink::PIPELINE.into(),
        partition,
        epoch: position.epoch,
    };
    (owner, mark)
}

/// Every (file, partition, offset) in the archive.
async fn rows(target: &Target) -> Vec<(String, i64)> {
    let mut found = Vec::new();
    for (name, batch) in target.read_batches("events").await {
        for offset in batch["log_offset"].as_primitive::<Int64Type>().values() {
            found.push((name.clone(), *offset));
        }
    }
    found
}

/// Partition 0's three files of shop's hour 11 (ended 2.5 h ago) are merged, in offset
/// order; partition 1's file there, partition 0's file of the running hour 13, and blog's
/// single file of hour 11 stay.
async fn small_files_of_an_hour_are_merged(target: Target) {
    let dir = tempfile::tempdir().unwrap();
    let (owner, mark) = owner_of(dir.path(), 0).await;
    let eleven = DEC_7 + 11 * HOUR;
    let files = vec![
        file("shop", eleven, 0, 20, 3),
        file("shop", eleven, 0, 0, 5),
        file("shop", eleven, 0, 10, 4),
        file("shop", eleven, 1, 0, 2),
        file("shop", DEC_7 + 13 * HOUR, 0, 30, 2),
        file("blog", eleven, 0, 40, 2),
    ];
    let names: Vec<String> = files.iter().map(|(name, _)| name.clone()).collect();
    target.write_files(files).await.unwrap();
    let before = rows(&target).await;

    let compacted = compact(&target, &owner, mark, NOW, SETTLE).await.unwrap();
    assert_eq!(
        compacted,
        Compacted {
            outputs: 1,
            inputs: 3
        }
    );
    let output = "events/tenant=shop/date=2026-12-07/hour=11/part-0-00000000000000000000-00000000000000000020.parquet";
    let mut expected_names = vec![
        output.to_owned(),
        names[3].clone(),
        names[4].clone(),
        names[5].clone(),
    ];
    expected_names.sort();
    assert_eq!(
        target.list("events/", ".parquet").await.unwrap(),
        expected_names
    );
    let after = rows(&target).await;
    let merged: Vec<i64> = after
        .iter()
        .filter(|(name, _)| name == output)
        .map(|(_, offset)| *offset)
        .collect();
    assert_eq!(
        merged,
        [0, 1, 2, 3, 4, 10, 11, 12, 13, 20, 21, 22],
        "in log order"
    );
    let offsets = |rows: &[(String, i64)]| {
        let mut offsets: Vec<i64> = rows.iter().map(|(_, offset)| *offset).collect();
        offsets.sort();
        offsets
    };
    assert_eq!(offsets(&after), offsets(&before), "every row once");

    // A late file in the same hour is merged with the output the next time.
    target
        .write_files(vec![file("shop", eleven, 0, 50, 1)])
        .await
        .unwrap();
    let again = compact(&target, &owner, mark, NOW, SETTLE).await.unwrap();
    assert_eq!(
        again,
        Compacted {
            outputs: 1,
            inputs: 2
        }
    );
    let hour_files = target
        .list("events/tenant=shop/date=2026-12-07/hour=11/", ".parquet")
        .await
        .unwrap();
    assert_eq!(
        hour_files,
        [
            "events/tenant=shop/date=2026-12-07/hour=11/part-0-00000000000000000000-00000000000000000050.parquet",
            names[3].as_str()
        ]
    );
    assert_eq!(
        compact(&target, &owner, mark, NOW, SETTLE).await.unwrap(),
        Compacted::default()
    );
    let positions = owner.store.positions(PIPELINE).await.unwrap();
    assert_eq!(positions[0].1.offset, 7, "compactions keep the position");
    assert!(
        target.list("_sluice/", "").await.unwrap().is_empty(),
        "nothing is left staged"
    );

    // While forget holds its lease nothing is compacted.
    target
        .write_files(vec![file("shop", eleven, 1, 60, 1)])
        .await
        .unwrap();
    target
        .write_record(LEASE, &Lease { until: NOW + HOUR })
        .await
        .unwrap();
    let (other, other_mark) = owner_of(dir.path(), 1).await;
    assert_eq!(
        compact(&target, &other, other_mark, NOW, SETTLE)
            .await
            .unwrap(),
        Compacted::default()
    );
    target
        .write_record(LEASE, &Lease { until: NOW - 1 })
        .await
        .unwrap();
    assert_eq!(
        compact(&target, &other, other_mark, NOW, SETTLE)
            .await
            .unwrap(),
        Compacted {
            outputs: 1,
            inputs: 2
        },
        "an expired lease holds nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_files_of_an_hour_are_merged_in_a_directory() {
    let dir = tempfile::tempdir().unwrap();
    small_files_of_an_hour_are_merged(Target::test_dir(dir.path())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_s3_small_files_of_an_hour_are_merged() {
    small_files_of_an_hour_are_merged(Target::test_bucket("compact")).await;
}

/// A crash after the output was staged but before its commit: the next owner deletes it and
/// the inputs stay. A crash after the commit, with one input deleted: the next owner moves
/// the output in and deletes the other. An owner fenced out meanwhile cannot commit at all.
/// Either way every row is in one published file.
async fn a_compaction_a_crash_interrupted_is_dropped_or_finished(target: Target) {
    let dir = tempfile::tempdir().unwrap();
    let (first, mark) = owner_of(dir.path(), 0).await;
    let eleven = DEC_7 + 11 * HOUR;
    let files = vec![file("shop", eleven, 0, 0, 3), file("shop", eleven, 0, 3, 3)];
    let inputs: Vec<String> = files.iter().map(|(name, _)| name.clone()).collect();
    target.write_files(files).await.unwrap();
    let output = "events/tenant=shop/date=2026-12-07/hour=11/part-0-00000000000000000000-00000000000000000003.parquet";
    let mut bytes = Vec::new();
    for input in &inputs {
        bytes.push(target.read(input).await.unwrap());
    }
    let merged = format::merge(bytes).unwrap().unwrap();

    // Crashed after staging: the next owner deletes what it staged; the inputs stay.
    target
        .replace(&first.staged(output), merged.clone())
        .await
        .unwrap();
    let claim = |epoch| Owner {
        epoch,
        ..first.clone()
    };
    let second = claim(first.store.claim(PIPELINE, 0, 0, 0).await.unwrap().epoch);
    let (published, dropped) = second.recover(&target).await.unwrap();
    assert_eq!((published, dropped), (Default::default(), 1));
    assert_eq!(target.list("events/", ".parquet").await.unwrap(), inputs);
    assert!(target.list("_sluice/", "").await.unwrap().is_empty());

    // The first owner, fenced out, cannot publish an output.
    target
        .replace(&first.staged(output), merged.clone())
        .await
        .unwrap();
    let fenced = first
        .commit_and_publish(&target, mark, vec![output.into()], inputs.clone())
        .await
        .unwrap_err();
    assert!(
        matches!(
            fenced,
            ArchiveError::Store(sluice_store::StoreError::Fenced { .. })
        ),
        "{fenced}"
    );
    assert_eq!(target.list("events/", ".parquet").await.unwrap(), inputs);

    // The second commits, moves the output in, deletes one input and crashes.
    target
        .replace(&second.staged(output), merged)
        .await
        .unwrap();
    let note = crate::publish::Note {
        epoch: second.epoch,
        files: vec![output.into()],
        delete: inputs.clone(),
    };
    let commit = sluice_store::Commit {
        offset: mark.offset,
        event_time: mark.event_time,
        log_epoch: 0,
        metrics: Vec::new(),
        output: Vec::new(),
        note: Some(serde_json::to_vec(&note).unwrap()),
    };
    second
        .store
        .commit(PIPELINE, 0, second.epoch, std::sync::Arc::new(commit))
        .await
        .unwrap();
    target
        .move_file(&second.staged(output), output)
        .await
        .unwrap();
    target.remove(&inputs[0]).await.unwrap();

    let third = claim(first.store.claim(PIPELINE, 0, 0, 0).await.unwrap().epoch);
    let (published, dropped) = third.recover(&target).await.unwrap();
    assert_eq!(
        published,
        crate::publish::Published {
            moved: 0,
            deleted: 1
        }
    );
    assert_eq!(dropped, 1, "what the fenced first owner staged");
    assert_eq!(target.list("events/", ".parquet").await.unwrap(), [output]);
    let offsets: Vec<i64> = rows(&target)
        .await
        .iter()
        .map(|(_, offset)| *offset)
        .collect();
    assert_eq!(offsets, [0, 1, 2, 3, 4, 5]);
    assert!(target.list("_sluice/", "").await.unwrap().is_empty());
    assert_eq!(
        third.recover(&target).await.unwrap(),
        (Default::default(), 0),
        "publishing again changes nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compaction_a_crash_interrupted_is_dropped_or_finished_in_a_directory() {
    let dir = tempfile::tempdir().unwrap();
    a_compaction_a_crash_interrupted_is_dropped_or_finished(Target::test_dir(dir.path())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_s3_a_compaction_a_crash_interrupted_is_dropped_or_finished() {
    a_compaction_a_crash_interrupted_is_dropped_or_finished(Target::test_bucket("compact-crash"))
        .await;
}

#[test]
fn file_names_give_their_partition_and_first_offset() {
    assert_eq!(
        parse_part("part-3-00000000000000000042.parquet"),
        Some((3, 42, 42))
    );
    assert_eq!(
        parse_part("part-3-00000000000000000042-00000000000000000090.parquet"),
        Some((3, 42, 90))
    );
    assert_eq!(parse_part(".part-3-00000000000000000042.parquet.tmp"), None);
    assert_eq!(parse_part("part-x-1.parquet"), None);
    assert_eq!(parse_part("part-3-1-x.parquet"), None);
    assert_eq!(parse_part("part-3-1-2-3.parquet"), None);
}
