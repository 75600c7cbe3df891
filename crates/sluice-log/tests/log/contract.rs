//! The backend contract, written once against the `Log` trait and run for every backend: the
//! file log, and (feature `kafka`) the Kafka backend against the broker `SLUICE_TEST_KAFKA`
//! names (`scripts/kafka.sh` starts one).

use crate::common::{config, record, record_with_header};
use sluice_log::{
    AckMode, Log, LogBackend, LogError, ReadBuffer, ReadOptions, Record, StoredRecord, TopicSpec,
};
use std::time::Duration;

const NOW: i64 = 1_700_000_000_000;

fn at_once(max_bytes: usize) -> ReadOptions {
    ReadOptions {
        max_bytes,
        max_wait: Duration::ZERO,
    }
}

async fn file_backend(dir: &std::path::Path, ack: AckMode) -> LogBackend {
    let mut config = config(ack);
    config.url = format!("file://{}", dir.join("log").display());
    LogBackend::open(&config, std::path::Path::new("/unused"))
        .await
        .expect("open")
}

/// A Kafka log on the broker `SLUICE_TEST_KAFKA` names, its topics prefixed by this run and
/// `check`, so checks sharing the broker never see each other's topics. Fails, naming what to
/// run, without the broker: these tests never skip.
#[cfg(feature = "kafka")]
async fn kafka_backend(check: &str) -> LogBackend {
    open_kafka(&kafka_config(check)).await
}

/// The config of [`kafka_backend`]: two backends opened with one are two producers on the
/// same topics.
#[cfg(feature = "kafka")]
fn kafka_config(check: &str) -> sluice_log::LogConfig {
    let brokers = std::env::var("SLUICE_TEST_KAFKA").unwrap_or_else(|_| {
        panic!("SLUICE_TEST_KAFKA is not set: run `export SLUICE_TEST_KAFKA=$(scripts/kafka.sh)`")
    });
    let run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    let mut config = config(AckMode::Fsync);
    config.url = format!("kafka://{brokers}");
    config.kafka.topic_prefix = format!("test-{run}-{check}.");
    config
}

#[cfg(feature = "kafka")]
async fn open_kafka(config: &sluice_log::LogConfig) -> LogBackend {
    LogBackend::open(config, std::path::Path::new("/unused"))
        .await
        .unwrap_or_else(|error| panic!("{error}"))
}

/// Two producers (two nodes) appending to one Kafka partition: records of one may land
/// between another's. Each append reports its first and last record's offsets, and whether
/// nothing else is between them, truly: derived streams commit an append's range only then.
#[cfg(feature = "kafka")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_kafka_writers_report_where_their_records_landed() {
    let mut config = kafka_config("two_writers");
    // One record per produce request, so two producers' requests can alternate.
    config.kafka.client.insert(
        "batch.num.messages".into(),
        sluice_log::ClientValue::Number(1),
    );
    let logs = [open_kafka(&config).await, open_kafka(&config).await];
    logs[0]
        .create_topic(TopicSpec::new("shared", 1))
        .await
        .unwrap();
    let writers = logs.iter().enumerate().map(|(writer, log)| async move {
        let mut results = Vec::new();
        for seq in 0..30u32 {
            let records = (0..1 + seq % 7)
                .map(|i| record(None, &format!("{writer}-{seq}-{i}"), NOW))
                .collect();
            results.push((writer, seq, log.append("shared", 0, records).await.unwrap()));
        }
        results
    });
    let results: Vec<_> = futures::future::join_all(writers)
        .await
        .into_iter()
        .flatten()
        .collect();
    let all = read_all(&logs[1], "shared", 0, 0).await;
    let value =
        |offset: u64| String::from_utf8(all[offset as usize].record.value.to_vec()).unwrap();
    let mut interleaved = 0;
    for (writer, seq, result) in &results {
        let ours = |offset: u64| value(offset).starts_with(&format!("{writer}-{seq}-"));
        assert!(
            ours(result.base_offset) && ours(result.last_offset),
            "{result:?}"
        );
        let count = (result.base_offset..=result.last_offset)
            .filter(|&offset| ours(offset))
            .count();
        assert_eq!(count, result.count as usize, "{result:?}");
        let contiguous = result.last_offset - result.base_offset + 1 == u64::from(result.count);
        assert_eq!(result.is_contiguous(), contiguous);
        interleaved += usize::from(!contiguous);
    }
    eprintln!(
        "{interleaved} of {} appends were interleaved",
        results.len()
    );
    for log in logs {
        log.close().await.unwrap();
    }
}

/// Reads every record of a partition from `from` to its end.
async fn read_all(log: &impl Log, topic: &str, partition: u32, from: u64) -> Vec<StoredRecord> {
    let mut records = Vec::new();
    let mut offset = from;
    loop {
        let batch = log
            .read(topic, partition, offset, at_once(4096))
            .await
            .unwrap();
        if batch.records.is_empty() {
            return records;
        }
        offset = batch.next_offset(offset);
        records.extend(batch.records);
    }
}

async fn topics_are_created_described_and_checked(log: &impl Log) {
    log.create_topic(TopicSpec::new("events", 3)).await.unwrap();
    log.create_topic(TopicSpec::new("events", 3)).await.unwrap();
    log.create_topic(TopicSpec::new("audit.v1", 1))
        .await
        .unwrap();
    let error = log
        .create_topic(TopicSpec::new("events", 4))
        .await
        .unwrap_err();
    assert!(
        matches!(error, LogError::TopicMismatch { existing: 3, .. }),
        "{error}"
    );
    for bad in ["", "a/b", ".."] {
        let error = log.create_topic(TopicSpec::new(bad, 1)).await.unwrap_err();
        assert!(
            error.to_string().contains("not a valid topic name"),
            "{error}"
        );
    }
    let error = log
        .create_topic(TopicSpec::new("zero", 0))
        .await
        .unwrap_err();
    assert!(error.to_string().contains("0 partitions"), "{error}");

    let all = log.describe(None).await.unwrap();
    let names: Vec<&str> = all.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["audit.v1", "events"]);
    let events = &log.describe(Some("events")).await.unwrap()[0];
    assert_eq!(events.partitions.len(), 3);
    assert!(
        events
            .partitions
            .iter()
            .all(|p| p.start_offset == 0 && p.end_offset == 0)
    );
    let error = log.describe(Some("nope")).await.unwrap_err();
    assert!(matches!(error, LogError::UnknownTopic(_)), "{error}");
    let error = log
        .append("events", 3, vec![record(None, "x", NOW)])
        .await
        .unwrap_err();
    assert!(
        matches!(error, LogError::UnknownPartition { partitions: 3, .. }),
        "{error}"
    );
}

async fn appended_records_read_back_exactly(log: &impl Log) {
    log.create_topic(TopicSpec::new("t", 2)).await.unwrap();
    let first = vec![
        record(Some("user-1"), "{\"n\":1}", NOW),
        record(None, "", NOW - 5),
        record_with_header("with header", NOW + 7),
    ];
    let appended = log.append("t", 1, first.clone()).await.unwrap();
    assert_eq!((appended.base_offset, appended.count), (0, 3));
    let second = vec![record(Some(""), "second", NOW + 1)];
    assert_eq!(
        log.append("t", 1, second.clone())
            .await
            .unwrap()
            .base_offset,
        3
    );

    let all = read_all(log, "t", 1, 0).await;
    let offsets: Vec<u64> = all.iter().map(|r| r.offset).collect();
    assert_eq!(offsets, [0, 1, 2, 3]);
    let records: Vec<_> = all.into_iter().map(|r| r.record).collect();
    assert_eq!(records, [first, second].concat());

    // From the middle of a batch, and a read limited to one small record.
    let middle = log.read("t", 1, 2, at_once(1)).await.unwrap();
    assert_eq!(middle.records.len(), 1);
    assert_eq!(middle.records[0].offset, 2);
    assert_eq!(middle.end_offset, 4);

    // The end returns nothing; past it, or any offset of an empty partition's past, is an error.
    assert!(
        log.read("t", 1, 4, at_once(100))
            .await
            .unwrap()
            .records
            .is_empty()
    );
    let error = log.read("t", 1, 5, at_once(100)).await.unwrap_err();
    assert!(
        matches!(
            error,
            LogError::OffsetOutOfRange {
                requested: 5,
                start: 0,
                end: 4,
                ..
            }
        ),
        "{error}"
    );
    let info = &log.describe(Some("t")).await.unwrap()[0];
    assert_eq!(info.partitions[0].end_offset, 0);
    assert_eq!(info.partitions[1].end_offset, 4);
}

/// Reads every record of a partition from `from` to its end with `read_into`, into one reused
/// buffer, checking each read against the contract.
async fn read_all_into(
    log: &impl Log,
    buffer: &mut ReadBuffer,
    partition: u32,
    from: u64,
    max_bytes: usize,
) -> Vec<StoredRecord> {
    let mut records = Vec::new();
    let mut offset = from;
    loop {
        log.read_into("buffered", partition, offset, at_once(max_bytes), buffer)
            .await
            .unwrap();
        if buffer.is_empty() {
            assert_eq!(buffer.end_offset(), offset);
            return records;
        }
        for (i, record) in buffer.iter().enumerate() {
            assert_eq!(record.offset, offset + i as u64);
        }
        // At most one batch (of at most 7 records here) past `max_bytes`.
        let sizes: Vec<usize> = buffer.iter().map(|r| r.to_stored().record.size()).collect();
        let before_last_batch: usize = sizes[..sizes.len().saturating_sub(7)].iter().sum();
        assert!(
            before_last_batch < max_bytes,
            "a read went on past max_bytes"
        );
        offset = buffer.next_offset(offset);
        records.extend(buffer.iter().map(|r| r.to_stored()));
    }
}

async fn buffered_reads_return_what_reads_return(log: &impl Log) {
    log.create_topic(TopicSpec::new("buffered", 2))
        .await
        .unwrap();
    let mut expected: Vec<Record> = Vec::new();
    for batch in 0..40usize {
        let records: Vec<Record> = (0..1 + batch % 7)
            .map(|i| {
                let value = format!("{batch}-{i}-{}", "x".repeat((batch * 37 + i * 11) % 900));
                let key = format!("k{i}");
                match (batch + i) % 3 {
                    0 => record(None, &value, NOW + i as i64),
                    1 => record(Some(&key), &value, NOW - i as i64),
                    _ => record_with_header(&value, NOW),
                }
            })
            .collect();
        log.append("buffered", 1, records.clone()).await.unwrap();
        expected.extend(records);
    }
    let end = expected.len() as u64;
    let read = read_all(log, "buffered", 1, 0).await;
    assert_eq!(read.len(), expected.len());
    let mut buffer = ReadBuffer::new();
    for max_bytes in [1, 700, 5_000, 1 << 20] {
        let all = read_all_into(log, &mut buffer, 1, 0, max_bytes).await;
        assert_eq!(all, read, "max_bytes {max_bytes}");
        // From inside batches, with the buffer holding another position's bytes.
        for from in [1, end / 3, end / 2 + 1, end - 1] {
            let rest = read_all_into(log, &mut buffer, 1, from, max_bytes).await;
            assert_eq!(rest, read[from as usize..], "from {from}");
        }
    }
    // The end gives nothing, past it is an error, as for `read`.
    log.read_into("buffered", 1, end, at_once(100), &mut buffer)
        .await
        .unwrap();
    assert!(buffer.is_empty());
    assert_eq!(buffer.end_offset(), end);
    let error = log
        .read_into("buffered", 1, end + 1, at_once(100), &mut buffer)
        .await
        .unwrap_err();
    assert!(
        matches!(error, LogError::OffsetOutOfRange { .. }),
        "{error}"
    );
    // Another partition through the same buffer.
    log.read_into("buffered", 0, 0, at_once(100), &mut buffer)
        .await
        .unwrap();
    assert!(buffer.is_empty());
    log.append("buffered", 0, vec![record(Some("a"), "b", NOW)])
        .await
        .unwrap();
    let waiting = ReadOptions {
        max_bytes: 100,
        max_wait: Duration::from_secs(60),
    };
    log.read_into("buffered", 0, 0, waiting, &mut buffer)
        .await
        .unwrap();
    assert_eq!(buffer.get(0).unwrap().value, b"b");
    assert_eq!(buffer.get(0).unwrap().key, Some(&b"a"[..]));
}

async fn bad_appends_are_refused_with_the_limit_to_change(log: &impl Log) {
    log.create_topic(TopicSpec::new("t", 1)).await.unwrap();
    let error = log.append("t", 0, Vec::new()).await.unwrap_err();
    assert!(error.to_string().contains("at least one record"), "{error}");
    let huge = "x".repeat(5000);
    let error = log
        .append(
            "t",
            0,
            vec![record(None, "ok", NOW), record(None, &huge, NOW)],
        )
        .await
        .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("record 1 of the batch is 5000 bytes"),
        "{error}"
    );
    assert!(
        error.to_string().contains("log.max-record-bytes"),
        "{error}"
    );
    let many: Vec<_> = (0..10)
        .map(|_| record(None, &"y".repeat(4000), NOW))
        .collect();
    let error = log.append("t", 0, many).await.unwrap_err();
    assert!(error.to_string().contains("log.max-batch-bytes"), "{error}");
    assert_eq!(
        log.describe(Some("t")).await.unwrap()[0].partitions[0].end_offset,
        0
    );
}

async fn a_waiting_reader_is_woken_by_an_append(log: &impl Log) {
    log.create_topic(TopicSpec::new("tail", 1)).await.unwrap();
    let waiting = log.read(
        "tail",
        0,
        0,
        ReadOptions {
            max_bytes: 1024,
            max_wait: Duration::from_secs(60),
        },
    );
    let append = async {
        // Let the reader start waiting first; the reader must not miss this append either way.
        tokio::task::yield_now().await;
        log.append("tail", 0, vec![record(None, "hello", NOW)])
            .await
            .unwrap()
    };
    let (read, appended) = tokio::join!(waiting, append);
    let read = read.unwrap();
    assert_eq!(appended.base_offset, 0);
    assert_eq!(read.records.len(), 1);
    assert_eq!(&read.records[0].record.value[..], b"hello");

    // A bounded wait with nothing new returns empty, with the end offset.
    let empty = log
        .read(
            "tail",
            0,
            1,
            ReadOptions {
                max_bytes: 1024,
                max_wait: Duration::from_millis(20),
            },
        )
        .await
        .unwrap();
    assert!(empty.records.is_empty());
    assert_eq!(empty.end_offset, 1);
}

/// Reads dropped before they answer (a task's `select!` drops its read whenever a control
/// message comes first) lose nothing: the next read from that offset gets every record.
async fn dropped_reads_lose_nothing(log: &impl Log) {
    log.create_topic(TopicSpec::new("dropped", 1))
        .await
        .unwrap();
    log.append(
        "dropped",
        0,
        vec![record(None, "a", NOW), record(None, "b", NOW)],
    )
    .await
    .unwrap();
    let patient = ReadOptions {
        max_bytes: 1024,
        max_wait: Duration::from_secs(5),
    };
    for _ in 0..5 {
        let _ = tokio::time::timeout(Duration::from_millis(1), log.read("dropped", 0, 0, patient))
            .await;
    }
    let values: Vec<Vec<u8>> = read_all(log, "dropped", 0, 0)
        .await
        .into_iter()
        .map(|stored| stored.record.value.to_vec())
        .collect();
    assert_eq!(values, [b"a".to_vec(), b"b".to_vec()]);
}

async fn offsets_are_found_by_time(log: &impl Log) {
    log.create_topic(TopicSpec::new("time", 1)).await.unwrap();
    assert_eq!(log.offset_for_time("time", 0, 0).await.unwrap(), None);
    // Timestamps out of order inside and across batches: 100, 300, 200 | 150, 400 | 50, ...
    let stamps: [&[i64]; 3] = [&[100, 300, 200], &[150, 400], &[50, 500, 450]];
    for batch in stamps {
        let records = batch.iter().map(|&t| record(None, "v", t)).collect();
        log.append("time", 0, records).await.unwrap();
    }
    let cases = [
        (0, Some(0)),
        (100, Some(0)),
        (101, Some(1)),
        (300, Some(1)),
        (301, Some(4)),
        (450, Some(6)),
        (451, Some(6)),
        (500, Some(6)),
        (501, None),
    ];
    for (time, expected) in cases {
        assert_eq!(
            log.offset_for_time("time", 0, time).await.unwrap(),
            expected,
            "time {time}"
        );
    }
}

async fn consumer_offsets_are_stored(log: &impl Log) {
    log.create_topic(TopicSpec::new("c", 2)).await.unwrap();
    log.append("c", 1, vec![record(None, "a", NOW), record(None, "b", NOW)])
        .await
        .unwrap();
    assert_eq!(log.consumer_offset("g", "c", 1, None).await.unwrap(), None);
    assert_eq!(
        log.consumer_offset("g", "c", 1, Some(2)).await.unwrap(),
        Some(2)
    );
    assert_eq!(
        log.consumer_offset("g", "c", 1, None).await.unwrap(),
        Some(2)
    );
    assert_eq!(log.consumer_offset("g", "c", 0, None).await.unwrap(), None);
    let error = log.consumer_offset("g", "c", 2, Some(0)).await.unwrap_err();
    assert!(
        matches!(error, LogError::UnknownPartition { .. }),
        "{error}"
    );
    let error = log.consumer_offset("a/b", "c", 1, None).await.unwrap_err();
    assert!(error.to_string().contains("consumer group name"), "{error}");
}

async fn concurrent_appenders_get_disjoint_contiguous_offsets(log: &impl Log) {
    log.create_topic(TopicSpec::new("busy", 2)).await.unwrap();
    let appenders = (0..8u32).map(|appender| async move {
        let mut acked = Vec::new();
        for seq in 0..40u32 {
            let count = 1 + (appender + seq) % 5;
            let records = (0..count)
                .map(|i| {
                    record(
                        Some(&format!("a{appender}")),
                        &format!("{appender}-{seq}-{i}"),
                        NOW,
                    )
                })
                .collect();
            let result = log.append("busy", appender % 2, records).await.unwrap();
            assert_eq!(result.count, count);
            acked.push((appender % 2, result.base_offset, appender, seq, count));
        }
        acked
    });
    let acked: Vec<_> = futures::future::join_all(appenders)
        .await
        .into_iter()
        .flatten()
        .collect();
    for partition in 0..2 {
        let all = read_all(log, "busy", partition, 0).await;
        for (i, stored) in all.iter().enumerate() {
            assert_eq!(stored.offset, i as u64);
        }
        for &(p, base, appender, seq, count) in acked.iter().filter(|a| a.0 == partition) {
            for i in 0..count {
                let stored = &all[(base + u64::from(i)) as usize];
                assert_eq!(p, partition);
                assert_eq!(
                    stored.record.value,
                    format!("{appender}-{seq}-{i}").as_bytes()
                );
            }
        }
        let total: u32 = acked.iter().filter(|a| a.0 == partition).map(|a| a.4).sum();
        assert_eq!(all.len(), total as usize);
    }
}

macro_rules! for_every_backend {
    ($($check:ident),* $(,)?) => {
        mod file_backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    // `none` acknowledges before records are readable, which these checks
                    // assume; `acks_without_waiting_become_readable` covers it.
                    for ack in [sluice_log::AckMode::Fsync, sluice_log::AckMode::Write] {
                        let dir = tempfile::tempdir().unwrap();
                        let log = super::file_backend(dir.path(), ack).await;
                        super::$check(&log).await;
                        log.close().await.unwrap();
                    }
                }
            )*
        }
        #[cfg(feature = "kafka")]
        mod kafka_backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    let log = super::kafka_backend(stringify!($check)).await;
                    super::$check(&log).await;
                }
            )*
        }
    };
}

for_every_backend!(
    topics_are_created_described_and_checked,
    appended_records_read_back_exactly,
    buffered_reads_return_what_reads_return,
    bad_appends_are_refused_with_the_limit_to_change,
    a_waiting_reader_is_woken_by_an_append,
    dropped_reads_lose_nothing,
    offsets_are_found_by_time,
    consumer_offsets_are_stored,
    concurrent_appenders_get_disjoint_contiguous_offsets,
);

/// The file log knows each partition's size (Kafka's brokers do not tell it to clients).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_file_log_describes_partition_sizes() {
    let dir = tempfile::tempdir().unwrap();
    let log = file_backend(dir.path(), AckMode::Write).await;
    log.create_topic(TopicSpec::new("t", 2)).await.unwrap();
    log.append("t", 1, vec![record(None, "sized", NOW)])
        .await
        .unwrap();
    let info = &log.describe(Some("t")).await.unwrap()[0];
    assert_eq!(info.partitions[0].bytes, 0);
    assert!(info.partitions[1].bytes > 0);
    log.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_without_waiting_become_readable() {
    let dir = tempfile::tempdir().unwrap();
    let log = file_backend(dir.path(), AckMode::None).await;
    log.create_topic(TopicSpec::new("fast", 1)).await.unwrap();
    let mut expected = Vec::new();
    for i in 0..50 {
        let records = vec![record(None, &format!("v{i}"), NOW)];
        let appended = log.append("fast", 0, records.clone()).await.unwrap();
        assert_eq!(appended.base_offset, i);
        expected.extend(records);
    }
    // A tail-following read of the last offset waits until it is written.
    let last = log
        .read(
            "fast",
            0,
            49,
            ReadOptions {
                max_bytes: 1,
                max_wait: Duration::from_secs(60),
            },
        )
        .await
        .unwrap();
    assert_eq!(last.records[0].offset, 49);
    let all: Vec<_> = read_all(&log, "fast", 0, 0)
        .await
        .into_iter()
        .map(|r| r.record)
        .collect();
    assert_eq!(all, expected);
    log.close().await.unwrap();
}

/// A backend without a `read_into` of its own: the trait's default, under the same contract.
struct ViaRead(LogBackend);

impl Log for ViaRead {
    async fn create_topic(&self, spec: TopicSpec) -> sluice_log::Result<()> {
        self.0.create_topic(spec).await
    }

    async fn describe(
        &self,
        topic: Option<&str>,
    ) -> sluice_log::Result<Vec<sluice_log::TopicInfo>> {
        self.0.describe(topic).await
    }

    async fn append(
        &self,
        topic: &str,
        partition: u32,
        records: Vec<Record>,
    ) -> sluice_log::Result<sluice_log::AppendResult> {
        self.0.append(topic, partition, records).await
    }

    async fn read(
        &self,
        topic: &str,
        partition: u32,
        offset: u64,
        options: ReadOptions,
    ) -> sluice_log::Result<sluice_log::ReadBatch> {
        self.0.read(topic, partition, offset, options).await
    }

    async fn offset_for_time(
        &self,
        topic: &str,
        partition: u32,
        timestamp: i64,
    ) -> sluice_log::Result<Option<u64>> {
        self.0.offset_for_time(topic, partition, timestamp).await
    }

    async fn consumer_offset(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
        commit: Option<u64>,
    ) -> sluice_log::Result<Option<u64>> {
        self.0
            .consumer_offset(group, topic, partition, commit)
            .await
    }

    async fn enforce_retention(&self) -> sluice_log::Result<u64> {
        self.0.enforce_retention().await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_read_into_keeps_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let log = ViaRead(file_backend(dir.path(), AckMode::Write).await);
    buffered_reads_return_what_reads_return(&log).await;
    log.0.close().await.unwrap();
}
