use super::*;
use crate::format::{Fields, Rows};
use crate::layout::Layout;
use sluice_core::config::{ByteSize, HumanDuration};
use sluice_core::event::Event;

/// 2026-12-07T00:00:00Z.
const DEC_7: Millis = 1_796_601_600_000;

fn config() -> ArchiveConfig {
    let day = Duration::from_secs(86_400);
    ArchiveConfig {
        enabled: true,
        url: String::new(),
        roll_bytes: ByteSize(1 << 20),
        roll_age: HumanDuration(Duration::from_secs(1)),
        retention: HumanDuration(Duration::ZERO),
        tenant_retention: [("shop".to_owned(), HumanDuration(2 * day))].into(),
        columns: Vec::new(),
        streams: Vec::new(),
    }
}

/// One file of one event for each (tenant, hour start, partition).
async fn files(target: &Target, files: &[(&str, Millis, u32)]) -> Vec<String> {
    let mut written = Vec::new();
    for (tenant, hour, partition) in files {
        let json = format!(
            r#"{{"message_id":"m","tenant":"{tenant}","type":"track","event":"E","anonymous_id":"a","timestamp":{hour},"received_at":{hour}}}"#
        );
        let mut rows = Rows::default();
        rows.push(
            *partition,
            0,
            &Fields::of(&serde_json::from_str::<Event<'_>>(&json).unwrap()),
        );
        written.push((Layout::file(tenant, *hour, *partition, 0), rows));
    }
    let names = written.iter().map(|(name, _)| name.clone()).collect();
    target.write_files(written).await.unwrap();
    names
}

/// At 13:30 on Dec 7 with shop's retention of 2 days, shop's hours that ended by 13:30 on
/// Dec 5 go (a whole date, and the hours of a date before the cutoff); the hour running at the
/// cutoff stays, and blog (no retention) keeps everything.
async fn expired_hours_go(target: Target) {
    let names = files(
        &target,
        &[
            ("shop", DEC_7 - 3 * DAY + 10 * HOUR, 0), // Dec 4, 10:00: the whole date
            ("shop", DEC_7 - 2 * DAY + 12 * HOUR, 0), // Dec 5, 12:00-13:00
            ("shop", DEC_7 - 2 * DAY + 12 * HOUR, 1),
            ("shop", DEC_7 - 2 * DAY + 13 * HOUR, 0), // Dec 5, 13:00-14:00: at the cutoff
            ("shop", DEC_7 - DAY, 0),                 // Dec 6
            ("blog", DEC_7 - 3 * DAY + 10 * HOUR, 0), // no retention
        ],
    )
    .await;
    let now = DEC_7 + 13 * HOUR + 30 * 60_000;
    let swept = sweep(&target, &config(), now).await.unwrap();
    assert_eq!(swept, Swept { hours: 2, files: 3 });
    let left = target.list("events/", ".parquet").await.unwrap();
    let mut expected = vec![names[3].clone(), names[4].clone(), names[5].clone()];
    expected.sort();
    assert_eq!(left, expected);
    assert_eq!(
        target.list_dirs("events/tenant=shop/").await.unwrap(),
        ["date=2026-12-05", "date=2026-12-06"],
        "the emptied date is gone"
    );
    assert_eq!(
        target
            .list_dirs("events/tenant=shop/date=2026-12-05/")
            .await
            .unwrap(),
        ["hour=13"]
    );
    // Nothing more to do an hour less later.
    let again = sweep(&target, &config(), now + 20 * 60_000).await.unwrap();
    assert_eq!(again, Swept::default());
    let later = sweep(&target, &config(), now + 31 * 60_000).await.unwrap();
    assert_eq!(
        later,
        Swept { hours: 1, files: 1 },
        "hour 13 expired at 14:00"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hours_older_than_the_tenants_retention_are_deleted() {
    let dir = tempfile::tempdir().unwrap();
    expired_hours_go(Target::test_dir(dir.path())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_s3_hours_older_than_the_tenants_retention_are_deleted() {
    expired_hours_go(Target::test_bucket("retention")).await;
}
