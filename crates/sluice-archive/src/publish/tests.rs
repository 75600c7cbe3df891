use super::*;
use crate::sink::PIPELINE;
use sluice_store::SqliteStore;

async fn stage(target: &Target, owner: &Owner, name: &str) {
    target
        .replace(&owner.staged(name), b"rows".to_vec())
        .await
        .unwrap();
}

/// A claim deletes what owners of older epochs staged, never what a newer owner (one that
/// fenced this one out) staged: that one's commit may name it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_deletes_older_epochs_staging_only() {
    let dir = tempfile::tempdir().unwrap();
    let target = Target::test_dir(&dir.path().join("archive"));
    let store = StoreBackend::from(SqliteStore::open(&dir.path().join("store.db")).unwrap());
    let claim = |epoch| Owner {
        store: store.clone(),
        pipeline: crate::sink::PIPELINE.into(),
        partition: 4,
        epoch,
    };
    let (old, current, newer) = (claim(1), claim(2), claim(3));
    stage(&target, &old, "events/a.parquet").await;
    stage(&target, &newer, "events/b.parquet").await;
    let other = Owner {
        partition: 5,
        ..claim(2)
    };
    stage(&target, &other, "events/c.parquet").await;
    assert_eq!(
        current.recover(&target).await.unwrap(),
        (Published::default(), 1)
    );
    assert_eq!(
        target.list("_sluice/staged/", ".parquet").await.unwrap(),
        [
            "_sluice/staged/4/3/events/b.parquet",
            "_sluice/staged/5/2/events/c.parquet"
        ],
        "a newer epoch's and another partition's stay"
    );
}

/// A note the store holds that is not an archive note stops the claim with what it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_note_that_is_not_sluices_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let target = Target::test_dir(&dir.path().join("archive"));
    let store = StoreBackend::from(SqliteStore::open(&dir.path().join("store.db")).unwrap());
    let epoch = store.claim(PIPELINE, 0, 0, 0).await.unwrap().epoch;
    let commit = Commit {
        offset: 3,
        event_time: None,
        log_epoch: 0,
        metrics: Vec::new(),
        output: Vec::new(),
        note: Some(b"{\"files\": 3}".to_vec()),
    };
    store
        .commit(PIPELINE, 0, epoch, Arc::new(commit))
        .await
        .unwrap();
    let owner = Owner {
        store,
        pipeline: crate::sink::PIPELINE.into(),
        partition: 0,
        epoch: epoch + 1,
    };
    let error = owner.recover(&target).await.unwrap_err().to_string();
    assert!(
        error.contains("the store's note of archive partition 0 is not sluice's"),
        "{error}"
    );
}

/// Publishing moves each staged file once and deletes each file once, however often it runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishing_again_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let target = Target::test_dir(&dir.path().join("archive"));
    let store = StoreBackend::from(SqliteStore::open(&dir.path().join("store.db")).unwrap());
    let owner = Owner {
        store,
        pipeline: crate::sink::PIPELINE.into(),
        partition: 0,
        epoch: 6,
    };
    for name in ["events/x.parquet", "events/y.parquet"] {
        stage(&target, &owner, name).await;
    }
    target
        .replace("events/old.parquet", b"old".to_vec())
        .await
        .unwrap();
    let note = Note {
        epoch: 6,
        files: vec!["events/x.parquet".into(), "events/y.parquet".into()],
        delete: vec!["events/old.parquet".into()],
    };
    let first = publish(&target, 0, &note).await.unwrap();
    assert_eq!(
        first,
        Published {
            moved: 2,
            deleted: 1
        }
    );
    assert_eq!(
        publish(&target, 0, &note).await.unwrap(),
        Published::default()
    );
    assert_eq!(
        target.list("", ".parquet").await.unwrap(),
        ["events/x.parquet", "events/y.parquet"]
    );
}
