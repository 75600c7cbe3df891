//! The partition task over the `Log` trait, end to end: events appended to the log come out
//! as window updates and checkpoints; late events land in the late topic; control messages
//! (barriers, metric changes, open-window reads) are applied between batches. Written once,
//! generic over the log, and run for every backend available.

use bytes::Bytes;
use sluice_log::{
    AppendResult, Log, LogError, PartitionInfo, ReadBatch, ReadOptions, Record, StoredRecord,
    TopicInfo, TopicSpec,
};
use sluice_stream::StreamError;
use sluice_stream::config::ProcessorConfig;
use sluice_stream::engine::Processor;
use sluice_stream::engine::output::UpdateKind;
use sluice_stream::plan::LatePolicy;
use sluice_stream::sql::{MetricDefaults, parse_metric};
use sluice_stream::task::{
    Control, ManualClock, TaskOutputs, TaskSettings, ensure_late_topic, run_partition,
};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, broadcast, mpsc, oneshot};

/// A log in memory: enough of the contract for the engine's tests.
#[derive(Default)]
pub(crate) struct MemoryLog {
    topics: Mutex<BTreeMap<String, Vec<Vec<Record>>>>,
    appended: Notify,
}

impl Log for MemoryLog {
    async fn create_topic(&self, spec: TopicSpec) -> sluice_log::Result<()> {
        let mut topics = self.topics.lock().unwrap();
        match topics.get(&spec.name) {
            Some(existing) if existing.len() as u32 != spec.partitions => {
                Err(LogError::TopicMismatch {
                    topic: spec.name,
                    existing: existing.len() as u32,
                    requested: spec.partitions,
                })
            }
            Some(_) => Ok(()),
            None => {
                topics.insert(spec.name, vec![Vec::new(); spec.partitions as usize]);
                Ok(())
            }
        }
    }

    async fn describe(&self, topic: Option<&str>) -> sluice_log::Result<Vec<TopicInfo>> {
        let topics = self.topics.lock().unwrap();
        Ok(topics
            .iter()
            .filter(|(name, _)| topic.is_none_or(|t| t == name.as_str()))
            .map(|(name, partitions)| TopicInfo {
                name: name.clone(),
                partitions: partitions
                    .iter()
                    .enumerate()
                    .map(|(i, records)| PartitionInfo {
                        partition: i as u32,
                        start_offset: 0,
                        end_offset: records.len() as u64,
                        bytes: 0,
                    })
                    .collect(),
                retention_age: None,
                retention_bytes: None,
            })
            .collect())
    }

    async fn append(
        &self,
        topic: &str,
        partition: u32,
        records: Vec<Record>,
    ) -> sluice_log::Result<AppendResult> {
        let mut topics = self.topics.lock().unwrap();
        let log = topics
            .get_mut(topic)
            .ok_or_else(|| LogError::UnknownTopic(topic.into()))?
            .get_mut(partition as usize)
            .ok_or_else(|| LogError::Invalid("no such partition".into()))?;
        let base_offset = log.len() as u64;
        let count = records.len() as u32;
        log.extend(records);
        self.appended.notify_waiters();
        Ok(AppendResult::contiguous(base_offset, count))
    }

    async fn read(
        &self,
        topic: &str,
        partition: u32,
        offset: u64,
        options: ReadOptions,
    ) -> sluice_log::Result<ReadBatch> {
        loop {
            let notified = self.appended.notified();
            {
                let topics = self.topics.lock().unwrap();
                let log = topics
                    .get(topic)
                    .ok_or_else(|| LogError::UnknownTopic(topic.into()))?
                    .get(partition as usize)
                    .ok_or_else(|| LogError::Invalid("no such partition".into()))?;
                let mut records = Vec::new();
                let mut bytes = 0;
                for (i, record) in log.iter().enumerate().skip(offset as usize) {
                    if !records.is_empty() && bytes + record.size() > options.max_bytes {
                        break;
                    }
                    bytes += record.size();
                    records.push(StoredRecord {
                        offset: i as u64,
                        record: record.clone(),
                    });
                }
                if !records.is_empty() || options.max_wait.is_zero() {
                    return Ok(ReadBatch {
                        records,
                        end_offset: log.len() as u64,
                    });
                }
            }
            if tokio::time::timeout(options.max_wait, notified)
                .await
                .is_err()
            {
                return Ok(ReadBatch::default());
            }
        }
    }

    async fn offset_for_time(&self, _: &str, _: u32, _: i64) -> sluice_log::Result<Option<u64>> {
        Ok(None)
    }

    async fn consumer_offset(
        &self,
        _: &str,
        _: &str,
        _: u32,
        _: Option<u64>,
    ) -> sluice_log::Result<Option<u64>> {
        Ok(None)
    }

    async fn enforce_retention(&self) -> sluice_log::Result<u64> {
        Ok(0)
    }
}

fn view(time: i64, url: &str) -> Record {
    let json = format!(
        r#"{{"tenant":"shop","event":"Page Viewed","user_id":"u","timestamp":{time},"properties":{{"url":"{url}"}}}}"#
    );
    Record::new(Some(Bytes::from_static(b"u")), json, time)
}

/// Settings for topic `events`: reads of at most 256 bytes (a record or two), a tick a second.
fn small_batches() -> TaskSettings {
    TaskSettings {
        committed: None,
        source_topic: "events".into(),
        late_topic: "events.late".into(),
        read: ReadOptions {
            max_bytes: 256,
            max_wait: Duration::from_millis(20),
        },
        tick_interval: Duration::from_secs(1),
    }
}

/// The whole life of a partition task, against any log.
pub(crate) async fn partition_task_end_to_end<L: Log>(log: Arc<L>) {
    let defaults = MetricDefaults {
        out_of_orderness: 0,
        allowed_lateness: 0,
        late: LatePolicy::Topic,
    };
    let views = parse_metric(
        "CREATE METRIC views AS SELECT properties.url AS url, COUNT(*) AS n FROM events GROUP BY url, TUMBLE(timestamp, INTERVAL '10' SECOND)",
        &defaults,
    )
    .unwrap();
    let totals = parse_metric(
        "CREATE METRIC totals AS SELECT COUNT(*) AS n FROM events GROUP BY TUMBLE(timestamp, INTERVAL '10' SECOND)",
        &defaults,
    )
    .unwrap();
    log.create_topic(TopicSpec {
        name: "events".into(),
        partitions: 2,
        retention_age: None,
        retention_bytes: None,
    })
    .await
    .unwrap();
    let settings = small_batches();
    ensure_late_topic(&*log, &settings).await.unwrap();
    let described = log.describe(Some("events.late")).await.unwrap();
    assert_eq!(
        described[0].partitions.len(),
        2,
        "the late topic mirrors the source"
    );

    log.append(
        "events",
        1,
        vec![view(1_000, "/a"), view(2_000, "/b"), view(3_000, "/a")],
    )
    .await
    .unwrap();
    let config = ProcessorConfig {
        idle_timeout: 5_000,
        max_open_windows: 1_000,
    };
    let mut processor = Processor::new(1, 0, config);
    processor.add_metric(Arc::new(views)).unwrap();
    let (control, control_rx) = mpsc::channel(8);
    let (updates, mut updates_rx) = broadcast::channel(64);
    let (checkpoints, mut checkpoints_rx) = mpsc::channel(1);
    let clock = ManualClock::new(1_000_000);
    let processed = Arc::new(AtomicU64::new(0));
    let task = tokio::spawn(run_partition(
        log.clone(),
        processor,
        1,
        settings,
        control_rx,
        TaskOutputs {
            updates,
            checkpoints,
            processed: processed.clone(),
            stopping: tokio::sync::watch::channel(false).1,
        },
        clock.clone(),
    ));

    // A barrier after the three events: the snapshot holds them and offset 3. The control
    // message can overtake the first read, so ask until the offset shows all three.
    let checkpoint = loop {
        control.send(Control::Barrier { id: 7 }).await.unwrap();
        let checkpoint = checkpoints_rx.recv().await.unwrap();
        if checkpoint.offset == 3 {
            break checkpoint;
        }
    };
    assert_eq!(
        (checkpoint.partition, checkpoint.event_time),
        (1, Some(3_000))
    );
    assert_eq!(
        processed.load(Ordering::Relaxed),
        3,
        "the batch that reached offset 3 was reported processed"
    );
    assert_eq!(
        checkpoint.metrics[0].changed.len(),
        2,
        "two open windows: /a and /b"
    );

    let (reply, answer) = oneshot::channel();
    control
        .send(Control::LiveWindows {
            metric: "views".into(),
            tenant: Some("shop".into()),
            reply,
        })
        .await
        .unwrap();
    assert_eq!(answer.await.unwrap().unwrap().open.len(), 2);

    // A metric added at runtime counts from the next record on.
    control
        .send(Control::AddMetric(Arc::new(totals)))
        .await
        .unwrap();
    let (reply, answer) = oneshot::channel();
    control
        .send(Control::LiveWindows {
            metric: "totals".into(),
            tenant: None,
            reply,
        })
        .await
        .unwrap();
    assert!(answer.await.unwrap().unwrap().open.is_empty());

    // The watermark passes 10 s: `views` closes [0, 10 s) (`totals` started after those
    // events); an old event is late for both metrics.
    log.append("events", 1, vec![view(12_000, "/a"), view(4_000, "/a")])
        .await
        .unwrap();
    let mut finals = Vec::new();
    while finals.len() < 2 {
        let update = updates_rx.recv().await.unwrap();
        assert_eq!(update.kind, UpdateKind::Final);
        finals.push(format!("{} {}", update.metric, update.key));
    }
    finals.sort();
    assert_eq!(finals, ["views shop \"/a\"", "views shop \"/b\""]);
    let late = loop {
        let batch = log
            .read(
                "events.late",
                1,
                0,
                ReadOptions {
                    max_bytes: 1 << 20,
                    max_wait: Duration::from_millis(50),
                },
            )
            .await
            .unwrap();
        if batch.records.len() == 2 {
            break batch;
        }
    };
    let body: serde_json::Value = serde_json::from_slice(&late.records[0].record.value).unwrap();
    assert_eq!(
        (body["offset"].as_u64(), body["reason"].as_str()),
        (Some(4), Some("window_closed"))
    );

    // Idle: processing time passes with no events; the tick closes the last windows.
    clock.advance(60_000);
    let mut closed = Vec::new();
    while closed.len() < 2 {
        let update = updates_rx.recv().await.unwrap();
        closed.push(format!(
            "{} [{}, {})",
            update.metric, update.window.start, update.window.end
        ));
    }
    closed.sort();
    assert_eq!(closed, ["totals [10000, 20000)", "views [10000, 20000)"]);

    control
        .send(Control::RemoveMetric("views".into()))
        .await
        .unwrap();
    control.send(Control::Stop).await.unwrap();
    let processor = task.await.unwrap().unwrap();
    assert_eq!(processor.metric_names(), ["totals"]);
    assert_eq!(processor.next_offset(), 5);
    assert_eq!(processor.stats().late, 2);
}

/// A hang is reported as a failure, not left to the CI's time limit (a guard, not a timing
/// assertion: the test needs milliseconds).
pub(crate) async fn guarded(test: impl std::future::Future<Output = ()>) {
    tokio::time::timeout(Duration::from_secs(120), test)
        .await
        .expect("the partition task test did not finish within 120 s: a hang");
}

#[tokio::test]
async fn partition_task_over_the_memory_log() {
    guarded(partition_task_end_to_end(Arc::new(MemoryLog::default()))).await;
}

#[tokio::test]
async fn partition_task_over_the_file_log() {
    use sluice_core::config::{ByteSize, HumanDuration};
    use sluice_log::{AckMode, FileLog, LogConfig};
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        url: String::new(),
        ack: AckMode::Write,
        partitions: 2,
        segment_bytes: ByteSize(1 << 20),
        segment_age: HumanDuration(Duration::from_secs(86_400)),
        retention_age: HumanDuration(Duration::ZERO),
        retention_bytes: ByteSize(0),
        retention_check_interval: HumanDuration(Duration::from_secs(60)),
        index_interval_bytes: ByteSize(1024),
        max_record_bytes: ByteSize(64 * 1024),
        max_batch_bytes: ByteSize(1 << 20),
        max_pending_bytes: ByteSize(4 << 20),
        kafka: Default::default(),
    };
    let log = FileLog::open(dir.path(), &config).unwrap();
    guarded(partition_task_end_to_end(Arc::new(log.clone()))).await;
    log.close().await.unwrap();
}

/// A partition catching up on a backlog always has a batch ready; it must still give its
/// thread back now and then, or the checkpoint it owes would wait (on a busy runtime) until
/// the whole backlog is done. On a single-threaded runtime this test would never see the
/// backlog part-way: the task would run it to the end before anything else ran.
#[tokio::test(flavor = "current_thread")]
async fn a_partition_catching_up_answers_a_barrier_before_its_backlog_ends() {
    const BACKLOG: u64 = 5_000;
    let log = Arc::new(MemoryLog::default());
    log.create_topic(TopicSpec {
        name: "events".into(),
        partitions: 1,
        retention_age: None,
        retention_bytes: None,
    })
    .await
    .unwrap();
    let records = (0..BACKLOG).map(|i| view(i as i64, "/a")).collect();
    log.append("events", 0, records).await.unwrap();
    let views = parse_metric(
        "CREATE METRIC views AS SELECT COUNT(*) AS n FROM events GROUP BY TUMBLE(timestamp, INTERVAL '10' SECOND)",
        &MetricDefaults {
            out_of_orderness: 0,
            allowed_lateness: 0,
            late: LatePolicy::Drop,
        },
    )
    .unwrap();
    let mut processor = Processor::new(
        1,
        0,
        ProcessorConfig {
            idle_timeout: 5_000,
            max_open_windows: 1_000,
        },
    );
    processor.add_metric(Arc::new(views)).unwrap();
    let (control, control_rx) = mpsc::channel(8);
    let (checkpoints, mut checkpoints_rx) = mpsc::channel(1);
    let processed = Arc::new(AtomicU64::new(0));
    // A record or two per batch: thousands of batches, all ready at once.
    let settings = small_batches();
    let task = tokio::spawn(run_partition(
        log,
        processor,
        0,
        settings,
        control_rx,
        TaskOutputs {
            updates: broadcast::channel(16).0,
            checkpoints,
            processed: processed.clone(),
            stopping: tokio::sync::watch::channel(false).1,
        },
        ManualClock::new(1_000_000),
    ));
    let seen = loop {
        tokio::task::yield_now().await;
        let seen = processed.load(Ordering::Relaxed);
        if seen > 0 {
            break seen;
        }
    };
    assert!(
        seen < BACKLOG,
        "the task ran its whole backlog of {BACKLOG} records without yielding its thread"
    );
    control.send(Control::Barrier { id: 1 }).await.unwrap();
    let checkpoint = checkpoints_rx.recv().await.unwrap();
    assert!(
        (seen..BACKLOG).contains(&checkpoint.offset),
        "the checkpoint (offset {}) came part-way through the backlog, after offset {seen}",
        checkpoint.offset
    );
    control.send(Control::Stop).await.unwrap();
    let processor = task.await.unwrap().unwrap();
    assert!(processor.next_offset() <= BACKLOG);
}

/// A log where another writer's record lands in the middle of every append to `routed`, as
/// a fenced-out owner still producing to a Kafka partition would put it.
struct InterleavingLog(MemoryLog);

impl Log for InterleavingLog {
    async fn create_topic(&self, spec: TopicSpec) -> sluice_log::Result<()> {
        self.0.create_topic(spec).await
    }

    async fn describe(&self, topic: Option<&str>) -> sluice_log::Result<Vec<TopicInfo>> {
        self.0.describe(topic).await
    }

    async fn append(
        &self,
        topic: &str,
        partition: u32,
        mut records: Vec<Record>,
    ) -> sluice_log::Result<AppendResult> {
        if topic != "routed" || records.len() < 2 {
            return self.0.append(topic, partition, records).await;
        }
        let count = records.len() as u32;
        let rest = records.split_off(records.len() / 2);
        let first = self.0.append(topic, partition, records).await?;
        let foreign = Record::new(None, "{\"tenant\":\"shop\",\"timestamp\":1}", 1);
        self.0.append(topic, partition, vec![foreign]).await?;
        let last = self.0.append(topic, partition, rest).await?;
        Ok(AppendResult {
            base_offset: first.base_offset,
            count,
            last_offset: last.last_offset,
        })
    }

    async fn read(
        &self,
        topic: &str,
        partition: u32,
        offset: u64,
        options: ReadOptions,
    ) -> sluice_log::Result<ReadBatch> {
        self.0.read(topic, partition, offset, options).await
    }

    async fn offset_for_time(&self, t: &str, p: u32, at: i64) -> sluice_log::Result<Option<u64>> {
        self.0.offset_for_time(t, p, at).await
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

/// Derived records whose append another writer interleaved are never committed: the task
/// fails before the checkpoint that would have carried their range, so no reader sees them.
#[tokio::test]
async fn an_append_another_writer_interleaved_is_not_committed() {
    guarded(async {
        let log = Arc::new(InterleavingLog(MemoryLog::default()));
        for name in ["events", "routed"] {
            log.create_topic(TopicSpec::new(name, 1)).await.unwrap();
        }
        let settings = TaskSettings {
            source_topic: "events".into(),
            ..small_batches()
        };
        ensure_late_topic(&*log, &settings).await.unwrap();
        log.append("events", 0, (0..4).map(|i| view(1_000 + i, "/a")).collect())
            .await
            .unwrap();
        let defaults = MetricDefaults {
            out_of_orderness: 0,
            allowed_lateness: 0,
            late: LatePolicy::Topic,
        };
        let routed = parse_metric(
            "CREATE STREAM routed AS SELECT properties.url AS url FROM events",
            &defaults,
        )
        .unwrap();
        let mut processor = Processor::new(
            0,
            0,
            ProcessorConfig {
                idle_timeout: 5_000,
                max_open_windows: 1_000,
            },
        );
        processor.add_metric(Arc::new(routed)).unwrap();
        let (control, control_rx) = mpsc::channel(8);
        let (checkpoints, mut checkpoints_rx) = mpsc::channel(4);
        let task = tokio::spawn(run_partition(
            log.clone(),
            processor,
            0,
            settings,
            control_rx,
            TaskOutputs {
                updates: broadcast::channel(64).0,
                checkpoints,
                processed: Arc::new(AtomicU64::new(0)),
                stopping: tokio::sync::watch::channel(false).1,
            },
            ManualClock::new(1_000_000),
        ));
        // Barriers until the task stops: none of its checkpoints may carry a range.
        loop {
            tokio::select! {
                checkpoint = checkpoints_rx.recv() => match checkpoint {
                    Some(checkpoint) => assert!(
                        checkpoint.output.is_empty(),
                        "an interleaved range was committed: {:?}",
                        checkpoint.output
                    ),
                    None => break,
                },
                _ = control.send(Control::Barrier { id: 1 }) => {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        }
        let error = task.await.unwrap().unwrap_err();
        assert!(
            matches!(error, StreamError::Interleaved { ref topic, first, last, count, .. }
                if topic == "routed" && last - first == u64::from(count)),
            "{error}"
        );
        assert!(
            error.to_string().contains("another writer appended"),
            "{error}"
        );
    })
    .await;
}
