//! The Kafka backend (`log.url = "kafka://host1:9092,host2:9092"`, feature `kafka`): sluice's
//! topics as Kafka topics, through librdkafka (the `rdkafka` crate).
//!
//! - **Appends** go through one idempotent producer (`enable.idempotence`, so `acks=all`): an
//!   append returns once the brokers have acknowledged every record, or fails after
//!   `message.timeout.ms` (10 s unless `[log.kafka.client]` sets it) with
//!   [`LogError::Unavailable`], which the collector answers with 503 + `Retry-After`. The records of one append
//!   are handed to the producer together under the partition's lock, so this process's appends
//!   to a partition get contiguous offsets; appends from other producers (other nodes) may
//!   interleave with them, as Kafka allows.
//! - **Reads** use consumers assigned to one partition (no group membership), kept between reads
//!   in a small pool per partition: a consumer whose position is the requested offset goes on
//!   fetching, any other is assigned the offset. A read that assigns first asks the partition's
//!   watermarks: before the low one is [`LogError::OffsetOutOfRange`]; at the high one it waits
//!   for new records up to `max_wait` (tail-following). A read that goes on needs no request
//!   of its own (its end offset is the last high watermark seen, or past the records it got);
//!   its consumer resets to nothing (`auto.offset.reset = error`), so retention that removed
//!   the records it was about to read is [`LogError::OffsetOutOfRange`] too, never a skip.
//! - **Offsets of a topic** (`describe`) are two `ListOffsets` requests for all its partitions
//!   (latest and earliest), not two per partition.
//! - **Topics** are created with the admin API (`partitions`, the configured replication
//!   factor, `retention.ms`/`retention.bytes` from the spec); creating one that exists with the
//!   same partition count is a no-op. Retention is the brokers' own.
//! - **Offsets by time** are Kafka's `ListOffsets`; **consumer offsets** are the group's
//!   committed offsets.
//!
//! Every name sluice uses is given `topic-prefix` in Kafka (empty by default), so several
//! sluice clusters, or tests, can share brokers; listings show sluice's topics only, unprefixed.

mod group;
pub mod source;

use crate::config::LogConfig;
use crate::record::{
    AppendResult, Header, PartitionInfo, ReadBatch, Record, StoredRecord, TopicInfo, TopicSpec,
    check_topic_name,
};
use crate::{Log, LogError, ReadOptions, Result};
use parking_lot::Mutex;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use sluice_core::time::Millis;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a metadata, watermark, admin or commit request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the brokers have to answer at start before sluice gives up with the address to
/// check.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long an append waits for the brokers' acknowledgement by default
/// (`message.timeout.ms`).
const APPEND_TIMEOUT: Duration = Duration::from_secs(10);

/// Consumers kept per partition between reads.
const READERS_KEPT: usize = 4;

/// The Kafka log.
#[derive(Clone)]
pub struct KafkaLog {
    inner: Arc<Inner>,
}

struct Inner {
    /// `bootstrap.servers`, for messages.
    brokers: String,
    /// The client settings every consumer starts from (brokers and `[log.kafka.client]`,
    /// producer-only settings left out).
    client: ClientConfig,
    prefix: String,
    replication: i32,
    /// The consumer group's session timeout.
    session_timeout: Duration,
    max_record_bytes: usize,
    max_batch_bytes: u64,
    producer: FutureProducer,
    admin: AdminClient<DefaultClientContext>,
    /// Metadata, watermarks and offsets by time.
    meta: BaseConsumer,
    /// Partition counts seen, by topic.
    partition_counts: Mutex<HashMap<String, u32>>,
    /// Per partition, the lock its appends take while handing their records over.
    appending: Mutex<HashMap<(String, u32), Arc<tokio::sync::Mutex<()>>>>,
    /// Per partition, idle consumers and the offset each would read next.
    readers: Mutex<HashMap<(String, u32), Vec<IdleReader>>>,
    /// Per partition, the high watermark last asked for (the end offset a read that goes on
    /// reports without asking).
    ends: Mutex<HashMap<(String, u32), u64>>,
}

/// A consumer of one partition between reads: the offset the read that takes it must ask for,
/// and the records from that offset on that it fetched for a read whose caller had gone (a
/// reader dropped mid-read, as `select!` does, loses nothing; the next read gets them).
struct IdleReader {
    consumer: BaseConsumer,
    from: u64,
    fetched: Vec<StoredRecord>,
}

impl std::fmt::Debug for KafkaLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaLog")
            .field("brokers", &self.inner.brokers)
            .field("prefix", &self.inner.prefix)
            .finish_non_exhaustive()
    }
}

/// librdkafka's producer-only settings (`P` in its CONFIGURATION.md, 2.12).
const PRODUCER_ONLY: &[&str] = &[
    "transactional.id",
    "transaction.timeout.ms",
    "enable.idempotence",
    "enable.gapless.guarantee",
    "queue.buffering.max.messages",
    "queue.buffering.max.kbytes",
    "queue.buffering.max.ms",
    "linger.ms",
    "message.send.max.retries",
    "retries",
    "queue.buffering.backpressure.threshold",
    "compression.codec",
    "compression.type",
    "compression.level",
    "batch.num.messages",
    "batch.size",
    "delivery.report.only.error",
    "sticky.partitioning.linger.ms",
    "request.required.acks",
    "acks",
    "request.timeout.ms",
    "message.timeout.ms",
    "delivery.timeout.ms",
    "queuing.strategy",
    "produce.offset.report",
    "partitioner",
];

/// librdkafka's consumer-only settings (`C` in its CONFIGURATION.md, 2.12).
const CONSUMER_ONLY: &[&str] = &[
    "group.id",
    "group.instance.id",
    "partition.assignment.strategy",
    "session.timeout.ms",
    "heartbeat.interval.ms",
    "group.protocol.type",
    "group.protocol",
    "group.remote.assignor",
    "coordinator.query.interval.ms",
    "max.poll.interval.ms",
    "enable.auto.commit",
    "auto.commit.enable",
    "auto.commit.interval.ms",
    "enable.auto.offset.store",
    "queued.min.messages",
    "queued.max.messages.kbytes",
    "fetch.wait.max.ms",
    "fetch.queue.backoff.ms",
    "fetch.message.max.bytes",
    "max.partition.fetch.bytes",
    "fetch.max.bytes",
    "fetch.min.bytes",
    "fetch.error.backoff.ms",
    "offset.store.method",
    "offset.store.path",
    "offset.store.sync.interval.ms",
    "isolation.level",
    "enable.partition.eof",
    "check.crcs",
    "auto.offset.reset",
    "consume.callback.max.messages",
];

/// `config` without the settings `left_out`.
fn without(config: &ClientConfig, left_out: &[&str]) -> ClientConfig {
    let mut config = config.clone();
    for key in left_out {
        config.remove(key);
    }
    config
}

/// A librdkafka failure as a [`LogError`], naming the brokers.
fn kafka_error(brokers: &str, what: &str, error: KafkaError) -> LogError {
    LogError::Unavailable {
        what: format!("{what} (Kafka at {brokers})"),
        reason: error.to_string(),
    }
}

impl KafkaLog {
    /// Connects to the brokers of `brokers` (comma-separated `host:port`) with `config`'s
    /// `[log.kafka]` client settings, checking that they answer.
    pub async fn connect(brokers: &str, config: &LogConfig) -> Result<KafkaLog> {
        let mut client = ClientConfig::new();
        client.set("bootstrap.servers", brokers);
        for (key, value) in &config.kafka.client {
            client.set(key, value.to_string());
        }
        let create = |what: &str, error: KafkaError| {
            LogError::Invalid(format!(
                "log.kafka: cannot make the Kafka {what} for {brokers}: {error}; check the settings in [log.kafka]"
            ))
        };
        // Each client is given the settings of its kind only: librdkafka warns (CONFWARN) for
        // every client given a setting of the other kind.
        let mut producing = without(&client, CONSUMER_ONLY);
        let client = without(&client, PRODUCER_ONLY);
        // An append waits this long for the brokers before it fails (and the collector answers
        // 503), unless [log.kafka.client] says otherwise: librdkafka's own default, 5 minutes,
        // would outlast every request.
        if producing.get("message.timeout.ms").is_none() {
            producing.set("message.timeout.ms", APPEND_TIMEOUT.as_millis().to_string());
        }
        let producer: FutureProducer = producing
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .create()
            .map_err(|e| create("producer", e))?;
        // The admin client is a producer handle in librdkafka.
        let admin: AdminClient<DefaultClientContext> = without(&producing, PRODUCER_ONLY)
            .create()
            .map_err(|e| create("admin client", e))?;
        // In no group: it only asks for metadata, watermarks and offsets by time, and a
        // consumer in no group closes at once when dropped.
        let meta: BaseConsumer = client
            .clone()
            .set("enable.auto.commit", "false")
            .create()
            .map_err(|e| create("consumer", e))?;
        let log = KafkaLog {
            inner: Arc::new(Inner {
                brokers: brokers.to_owned(),
                client,
                prefix: config.kafka.topic_prefix.clone(),
                replication: i32::from(config.kafka.replication_factor),
                session_timeout: config.kafka.session_timeout.get(),
                max_record_bytes: config.max_record_bytes.as_usize(),
                max_batch_bytes: config.max_batch_bytes.bytes(),
                producer,
                admin,
                meta,
                partition_counts: Mutex::new(HashMap::new()),
                appending: Mutex::new(HashMap::new()),
                readers: Mutex::new(HashMap::new()),
                ends: Mutex::new(HashMap::new()),
            }),
        };
        // The brokers must answer now: a wrong address fails the start, not the first append.
        let inner = Arc::clone(&log.inner);
        blocking(move || {
            inner
                .meta
                .fetch_metadata(None, CONNECT_TIMEOUT)
                .map(|_| ())
                .map_err(|error| {
                    LogError::Invalid(format!(
                        "log.url: the Kafka brokers at {} do not answer ({error}); check the address, that they run, and the security settings in [log.kafka]",
                        inner.brokers
                    ))
                })
        })
        .await?;
        Ok(log)
    }

    /// Joins the consumer group `group` on `topic`: the partitions of `topic` this process
    /// works on come through the membership's events (see [`crate::group`]).
    pub fn join_group(&self, topic: &str, group: &str) -> Result<crate::group::Membership> {
        group::join(&self.inner, topic, group)
    }

    /// Reads `topic` — one sluice does not own, named as it is in Kafka (no prefix) — as a
    /// member of the consumer group `group` (see [`source`]).
    pub fn read_source(&self, topic: &str, group: &str) -> Result<source::TopicReader> {
        source::join(&self.inner, topic, group)
    }

    fn kafka_name(&self, topic: &str) -> String {
        format!("{}{topic}", self.inner.prefix)
    }

    /// The partition count of `topic`, or [`LogError::UnknownTopic`].
    async fn partitions(&self, topic: &str) -> Result<u32> {
        let info = self.describe_topics(Some(topic), false).await?;
        Ok(info[0].partitions.len() as u32)
    }

    /// Checks that `partition` exists in `topic`. Kafka only ever adds partitions, so a count
    /// seen once answers without a round trip; a partition beyond it asks the brokers again.
    async fn check_partition(&self, topic: &str, partition: u32) -> Result<()> {
        if self
            .inner
            .partition_counts
            .lock()
            .get(topic)
            .is_some_and(|&count| partition < count)
        {
            return Ok(());
        }
        let partitions = self.partitions(topic).await?;
        self.inner
            .partition_counts
            .lock()
            .insert(topic.to_owned(), partitions);
        if partition >= partitions {
            return Err(LogError::UnknownPartition {
                topic: topic.to_owned(),
                partition,
                partitions,
            });
        }
        Ok(())
    }

    /// Describes sluice's topics (`None`: every one), with offsets when `offsets`.
    async fn describe_topics(&self, topic: Option<&str>, offsets: bool) -> Result<Vec<TopicInfo>> {
        let inner = Arc::clone(&self.inner);
        let wanted = topic.map(|topic| self.kafka_name(topic));
        let shown = topic.map(str::to_owned);
        blocking(move || {
            let metadata = inner
                .meta
                .fetch_metadata(wanted.as_deref(), REQUEST_TIMEOUT)
                .map_err(|e| kafka_error(&inner.brokers, "reading topic metadata", e))?;
            let mut topics = Vec::new();
            for found in metadata.topics() {
                let Some(name) = found.name().strip_prefix(&inner.prefix) else {
                    continue;
                };
                if found.name().starts_with("__") || found.error().is_some() {
                    continue;
                }
                let ids: Vec<i32> = found.partitions().iter().map(|p| p.id()).collect();
                let bounds = if offsets {
                    partition_offsets(&inner, found.name(), &ids)?
                } else {
                    vec![(0, 0); ids.len()]
                };
                let mut partitions: Vec<PartitionInfo> = ids
                    .iter()
                    .zip(bounds)
                    .map(|(id, (start, end))| PartitionInfo {
                        partition: *id as u32,
                        start_offset: start,
                        end_offset: end,
                        bytes: 0,
                    })
                    .collect();
                if offsets {
                    let mut ends = inner.ends.lock();
                    for p in &partitions {
                        ends.insert((name.to_owned(), p.partition), p.end_offset);
                    }
                }
                partitions.sort_by_key(|p| p.partition);
                topics.push(TopicInfo {
                    name: name.to_owned(),
                    partitions,
                    retention_age: None,
                    retention_bytes: None,
                });
            }
            topics.sort_by(|a, b| a.name.cmp(&b.name));
            match shown {
                Some(name) if topics.is_empty() || topics[0].partitions.is_empty() => {
                    Err(LogError::UnknownTopic(name))
                }
                _ => Ok(topics),
            }
        })
        .await
    }

    /// The (low, high) watermarks of a partition.
    async fn watermarks(&self, topic: &str, partition: u32) -> Result<(u64, u64)> {
        let inner = Arc::clone(&self.inner);
        let name = self.kafka_name(topic);
        let (low, high) = blocking(move || {
            let (low, high) = inner
                .meta
                .fetch_watermarks(&name, partition as i32, REQUEST_TIMEOUT)
                .map_err(|e| kafka_error(&inner.brokers, "reading offsets", e))?;
            Ok((low.max(0) as u64, high.max(0) as u64))
        })
        .await?;
        self.inner
            .ends
            .lock()
            .insert((topic.to_owned(), partition), high);
        Ok((low, high))
    }

    /// The end offset of a partition as last asked, at least `past`: what a read that goes on
    /// reports without asking.
    fn last_end(&self, topic: &str, partition: u32, past: u64) -> u64 {
        let ends = self.inner.ends.lock();
        ends.get(&(topic.to_owned(), partition))
            .copied()
            .unwrap_or(0)
            .max(past)
    }

    /// A kept reader of one partition that a read left at `offset` (with what it fetched
    /// already), if there is one.
    fn kept_reader(&self, topic: &str, partition: u32, offset: u64) -> Option<IdleReader> {
        let mut readers = self.inner.readers.lock();
        let pool = readers.get_mut(&(topic.to_owned(), partition))?;
        let index = pool.iter().position(|reader| reader.from == offset)?;
        Some(pool.swap_remove(index))
    }

    /// What a read from `offset` that failed with `error` reports: records no longer (or not
    /// yet) there are [`LogError::OffsetOutOfRange`], with the partition's offsets now.
    async fn read_failed(
        &self,
        topic: &str,
        partition: u32,
        offset: u64,
        error: KafkaError,
    ) -> LogError {
        let out_of_range = matches!(
            error.rdkafka_error_code(),
            Some(RDKafkaErrorCode::AutoOffsetReset | RDKafkaErrorCode::OffsetOutOfRange)
        );
        if out_of_range {
            match self.watermarks(topic, partition).await {
                Ok((start, end)) if offset < start || offset > end => {
                    return LogError::OffsetOutOfRange {
                        topic: topic.to_owned(),
                        partition,
                        requested: offset,
                        start,
                        end,
                    };
                }
                Ok(_) => {}
                Err(asking) => return asking,
            }
        }
        kafka_error(&self.inner.brokers, "reading", error)
    }

    /// A consumer of one partition assigned to `offset`, for a read no kept reader was left
    /// at ([`KafkaLog::kept_reader`]): an idle one of the partition's, or a new one.
    fn assigned_reader(&self, topic: &str, partition: u32, offset: u64) -> Result<IdleReader> {
        let kept = self
            .inner
            .readers
            .lock()
            .get_mut(&(topic.to_owned(), partition))
            .and_then(Vec::pop);
        let consumer = match kept {
            Some(reader) => reader.consumer,
            None => self
                .inner
                .client
                .clone()
                .set("group.id", "sluice-reader")
                .set("enable.auto.commit", "false")
                // Records gone from under a reader (retention) are an error, never a skip.
                .set("auto.offset.reset", "error")
                .set("enable.partition.eof", "false")
                .create()
                .map_err(|e| kafka_error(&self.inner.brokers, "making a consumer", e))?,
        };
        let mut assignment = TopicPartitionList::new();
        assignment
            .add_partition_offset(
                &self.kafka_name(topic),
                partition as i32,
                Offset::Offset(offset as i64),
            )
            .map_err(|e| kafka_error(&self.inner.brokers, "assigning a partition", e))?;
        consumer
            .assign(&assignment)
            .map_err(|e| kafka_error(&self.inner.brokers, "assigning a partition", e))?;
        Ok(IdleReader {
            consumer,
            from: offset,
            fetched: Vec::new(),
        })
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Readers are consumers in a group (librdkafka reads through the group's queue): one
        // says goodbye to the brokers when dropped, which waits for them — seconds each while
        // they are down. A thread of their own does it, which the process does not wait for
        // at exit; nothing is left to save by then.
        let readers = std::mem::take(&mut *self.readers.lock());
        if !readers.is_empty() {
            let _ = std::thread::Builder::new()
                .name("sluice-kafka-close".into())
                .spawn(move || drop(readers));
        }
    }
}

/// Gives a reader back to its partition's pool (a full pool drops it).
fn keep_reader(inner: &Inner, topic: &str, partition: u32, reader: IdleReader) {
    let mut readers = inner.readers.lock();
    let pool = readers.entry((topic.to_owned(), partition)).or_default();
    if pool.len() < READERS_KEPT {
        pool.push(reader);
    }
}

/// Runs a blocking librdkafka call on tokio's blocking pool.
/// The (start, end) offsets of partitions `ids` of Kafka topic `topic`: one `ListOffsets`
/// request for the latest offsets of all of them and one for the earliest (a partition either
/// leaves out is asked on its own).
fn partition_offsets(inner: &Inner, topic: &str, ids: &[i32]) -> Result<Vec<(u64, u64)>> {
    let failed = |e| kafka_error(&inner.brokers, "reading offsets", e);
    let ask = |at: Offset| -> Result<Vec<Option<u64>>> {
        let mut list = TopicPartitionList::new();
        for id in ids {
            list.add_partition_offset(topic, *id, at).map_err(failed)?;
        }
        let found = inner
            .meta
            .offsets_for_times(list, REQUEST_TIMEOUT)
            .map_err(failed)?;
        Ok(ids
            .iter()
            .map(|id| {
                let element = found.find_partition(topic, *id)?;
                match (element.error(), element.offset()) {
                    (Ok(()), Offset::Offset(offset)) if offset >= 0 => Some(offset as u64),
                    _ => None,
                }
            })
            .collect())
    };
    let (ends, starts) = (ask(Offset::End)?, ask(Offset::Beginning)?);
    ids.iter()
        .zip(starts.into_iter().zip(ends))
        .map(|(id, bounds)| match bounds {
            (Some(start), Some(end)) => Ok((start, end)),
            _ => {
                let (low, high) = inner
                    .meta
                    .fetch_watermarks(topic, *id, REQUEST_TIMEOUT)
                    .map_err(failed)?;
                Ok((low.max(0) as u64, high.max(0) as u64))
            }
        })
        .collect()
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|_| LogError::Closed)?
}

impl Log for KafkaLog {
    async fn create_topic(&self, spec: TopicSpec) -> Result<()> {
        check_topic_name(&spec.name).map_err(LogError::Invalid)?;
        if spec.partitions == 0 || spec.partitions > crate::config::MAX_PARTITIONS {
            return Err(LogError::Invalid(format!(
                "topic {:?}: {} partitions; a topic has 1 to {}",
                spec.name,
                spec.partitions,
                crate::config::MAX_PARTITIONS
            )));
        }
        let name = self.kafka_name(&spec.name);
        let retention_ms = spec.retention_age.map(|age| age.as_millis().to_string());
        let retention_bytes = spec.retention_bytes.map(|bytes| bytes.to_string());
        let mut topic = NewTopic::new(
            &name,
            spec.partitions as i32,
            TopicReplication::Fixed(self.inner.replication),
        );
        if let Some(ms) = &retention_ms {
            topic = topic.set("retention.ms", ms);
        }
        if let Some(bytes) = &retention_bytes {
            topic = topic.set("retention.bytes", bytes);
        }
        let options = AdminOptions::new().operation_timeout(Some(REQUEST_TIMEOUT));
        let results = self
            .inner
            .admin
            .create_topics([&topic], &options)
            .await
            .map_err(|e| kafka_error(&self.inner.brokers, "creating a topic", e))?;
        match results.into_iter().next() {
            Some(Ok(_)) | None => {}
            Some(Err((_, RDKafkaErrorCode::TopicAlreadyExists))) => {
                let existing = self.partitions(&spec.name).await?;
                if existing != spec.partitions {
                    return Err(LogError::TopicMismatch {
                        topic: spec.name,
                        existing,
                        requested: spec.partitions,
                    });
                }
                return Ok(());
            }
            Some(Err((_, code))) => {
                return Err(LogError::Unavailable {
                    what: format!("creating topic {name} (Kafka at {})", self.inner.brokers),
                    reason: code.to_string(),
                });
            }
        }
        // The brokers learn of a new topic asynchronously: wait until its partitions show.
        let deadline = Instant::now() + REQUEST_TIMEOUT;
        loop {
            match self.partitions(&spec.name).await {
                Ok(count) if count == spec.partitions => return Ok(()),
                Ok(_) | Err(LogError::UnknownTopic(_)) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Ok(count) => {
                    return Err(LogError::TopicMismatch {
                        topic: spec.name,
                        existing: count,
                        requested: spec.partitions,
                    });
                }
                Err(error) => return Err(error),
            }
        }
    }

    async fn describe(&self, topic: Option<&str>) -> Result<Vec<TopicInfo>> {
        self.describe_topics(topic, true).await
    }

    async fn append(
        &self,
        topic: &str,
        partition: u32,
        records: Vec<Record>,
    ) -> Result<AppendResult> {
        self.check_partition(topic, partition).await?;
        crate::record::check_records(&records, self.inner.max_record_bytes)?;
        let bytes: u64 = records.iter().map(|r| r.size() as u64).sum();
        if bytes > self.inner.max_batch_bytes {
            return Err(LogError::Invalid(format!(
                "a batch of {} records holds {bytes} bytes, more than log.max-batch-bytes ({}); split it into smaller appends",
                records.len(),
                self.inner.max_batch_bytes
            )));
        }
        let name = self.kafka_name(topic);
        let lock = Arc::clone(
            self.inner
                .appending
                .lock()
                .entry((topic.to_owned(), partition))
                .or_default(),
        );
        let mut deliveries = Vec::with_capacity(records.len());
        {
            let _order = lock.lock().await;
            for record in &records {
                let mut headers = OwnedHeaders::new_with_capacity(record.headers.len());
                for header in &record.headers {
                    headers = headers.insert(rdkafka::message::Header {
                        key: &header.key,
                        value: Some(header.value.as_ref()),
                    });
                }
                let mut message = FutureRecord::to(&name)
                    .partition(partition as i32)
                    .payload(record.value.as_ref())
                    .timestamp(record.timestamp)
                    .headers(headers);
                if let Some(key) = &record.key {
                    message = message.key(key.as_ref());
                }
                // The queue is bounded: wait for room rather than fail.
                let mut message = Some(message);
                loop {
                    match self
                        .inner
                        .producer
                        .send_result(message.take().expect("a record"))
                    {
                        Ok(delivery) => {
                            deliveries.push(delivery);
                            break;
                        }
                        Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                            message = Some(back);
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                        Err((error, _)) => {
                            return Err(kafka_error(&self.inner.brokers, "appending", error));
                        }
                    }
                }
            }
        }
        // Each record's own offset: another producer (another node) may have written the
        // partition between two of ours.
        let (mut first, mut last) = (u64::MAX, 0);
        for delivery in deliveries {
            let delivered = delivery.await.map_err(|_| LogError::Closed)?;
            let delivered = delivered
                .map_err(|(error, _)| kafka_error(&self.inner.brokers, "appending", error))?;
            let offset = delivered.offset as u64;
            first = first.min(offset);
            last = last.max(offset);
        }
        if records.is_empty() {
            return Ok(AppendResult::contiguous(0, 0));
        }
        Ok(AppendResult {
            base_offset: first,
            count: records.len() as u32,
            last_offset: last,
        })
    }

    async fn read(
        &self,
        topic: &str,
        partition: u32,
        offset: u64,
        options: ReadOptions,
    ) -> Result<ReadBatch> {
        self.check_partition(topic, partition).await?;
        let mut reader = match self.kept_reader(topic, partition, offset) {
            Some(reader) => reader,
            None => {
                let (start, end) = self.watermarks(topic, partition).await?;
                if offset < start || offset > end {
                    return Err(LogError::OffsetOutOfRange {
                        topic: topic.to_owned(),
                        partition,
                        requested: offset,
                        start,
                        end,
                    });
                }
                self.assigned_reader(topic, partition, offset)?
            }
        };
        let end = self.last_end(topic, partition, offset);
        if !reader.fetched.is_empty() {
            // Fetched for an earlier read of this offset whose caller had gone.
            let records = std::mem::take(&mut reader.fetched);
            let next = records.last().map_or(offset, |r| r.offset + 1);
            reader.from = next;
            keep_reader(&self.inner, topic, partition, reader);
            return Ok(ReadBatch {
                records,
                end_offset: end.max(next),
            });
        }
        // Records exist: fetch them however long the brokers take; none yet: wait up to
        // max_wait for one.
        let first_wait = if offset < end {
            REQUEST_TIMEOUT
        } else {
            options.max_wait
        };
        let inner = Arc::clone(&self.inner);
        let topic_name = topic.to_owned();
        let (answer, answered) = tokio::sync::oneshot::channel();
        tokio::task::spawn_blocking(move || {
            let mut records = Vec::new();
            let mut bytes = 0usize;
            let mut wait = first_wait;
            let started = Instant::now();
            let mut failed = None;
            loop {
                match reader.consumer.poll(wait) {
                    None => break,
                    Some(Err(error)) => {
                        failed = Some(error);
                        break;
                    }
                    Some(Ok(message)) => {
                        let record = stored_record(&message);
                        bytes += record.record.size();
                        records.push(record);
                        if bytes >= options.max_bytes {
                            break;
                        }
                        // More only if already fetched: what is there, not what may come.
                        wait = Duration::ZERO;
                    }
                }
                if records.is_empty() && started.elapsed() >= first_wait {
                    break;
                }
            }
            if let Some(error) = failed {
                // The consumer's position is unknown after an error: it is not kept.
                let _ = answer.send(Err(error));
                return;
            }
            let next = records
                .last()
                .map_or(offset, |r: &StoredRecord| r.offset + 1);
            match answer.send(Ok(records)) {
                Ok(()) => reader.from = next,
                // The read was dropped: keep what was fetched for the next read from `offset`.
                Err(Ok(records)) => reader.fetched = records,
                Err(Err(_)) => return,
            }
            keep_reader(&inner, &topic_name, partition, reader);
        });
        let records = match answered.await.map_err(|_| LogError::Closed)? {
            Ok(records) => records,
            Err(error) => return Err(self.read_failed(topic, partition, offset, error).await),
        };
        let next = records.last().map_or(offset, |r| r.offset + 1);
        let end = if records.is_empty() {
            self.watermarks(topic, partition).await?.1
        } else {
            end.max(next)
        };
        Ok(ReadBatch {
            records,
            end_offset: end,
        })
    }

    async fn offset_for_time(
        &self,
        topic: &str,
        partition: u32,
        timestamp: Millis,
    ) -> Result<Option<u64>> {
        self.check_partition(topic, partition).await?;
        let inner = Arc::clone(&self.inner);
        let name = self.kafka_name(topic);
        let found = blocking(move || {
            let mut query = TopicPartitionList::new();
            query
                .add_partition_offset(&name, partition as i32, Offset::Offset(timestamp.max(0)))
                .map_err(|e| kafka_error(&inner.brokers, "finding an offset by time", e))?;
            let found = inner
                .meta
                .offsets_for_times(query, REQUEST_TIMEOUT)
                .map_err(|e| kafka_error(&inner.brokers, "finding an offset by time", e))?;
            let offset = found
                .elements()
                .first()
                .and_then(|element| match element.offset() {
                    Offset::Offset(offset) if offset >= 0 => Some(offset),
                    _ => None,
                });
            // Some brokers answer the end offset when no record is that recent: no record
            // is there.
            let Some(offset) = offset else {
                return Ok(None);
            };
            let (_, end) = inner
                .meta
                .fetch_watermarks(&name, partition as i32, REQUEST_TIMEOUT)
                .map_err(|e| kafka_error(&inner.brokers, "reading offsets", e))?;
            Ok((offset < end).then_some(offset as u64))
        })
        .await?;
        // Some brokers (tansu) answer offset 0 when every record is older: the record found
        // must be at or after the time asked for.
        let Some(offset) = found else {
            return Ok(None);
        };
        let options = ReadOptions {
            max_bytes: 1,
            max_wait: Duration::ZERO,
        };
        let batch = self.read(topic, partition, offset, options).await?;
        Ok(batch
            .records
            .first()
            .filter(|record| record.record.timestamp >= timestamp)
            .map(|record| record.offset))
    }

    async fn consumer_offset(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
        commit: Option<u64>,
    ) -> Result<Option<u64>> {
        crate::file::offsets::check_group_name(group)?;
        self.check_partition(topic, partition).await?;
        let inner = Arc::clone(&self.inner);
        let name = self.kafka_name(topic);
        let group = format!("{}{group}", self.inner.prefix);
        blocking(move || {
            let consumer: BaseConsumer = inner
                .client
                .clone()
                .set("group.id", &group)
                .set("enable.auto.commit", "false")
                .create()
                .map_err(|e| kafka_error(&inner.brokers, "making a consumer", e))?;
            let mut list = TopicPartitionList::new();
            match commit {
                Some(offset) => {
                    list.add_partition_offset(
                        &name,
                        partition as i32,
                        Offset::Offset(offset as i64),
                    )
                    .map_err(|e| kafka_error(&inner.brokers, "committing an offset", e))?;
                    consumer
                        .commit(&list, CommitMode::Sync)
                        .map_err(|e| kafka_error(&inner.brokers, "committing an offset", e))?;
                    Ok(Some(offset))
                }
                None => {
                    list.add_partition(&name, partition as i32);
                    let committed = consumer
                        .committed_offsets(list, REQUEST_TIMEOUT)
                        .map_err(|e| kafka_error(&inner.brokers, "reading an offset", e))?;
                    Ok(committed
                        .elements()
                        .first()
                        .and_then(|element| match element.offset() {
                            Offset::Offset(offset) if offset >= 0 => Some(offset as u64),
                            _ => None,
                        }))
                }
            }
        })
        .await
    }

    async fn enforce_retention(&self) -> Result<u64> {
        // The brokers apply each topic's retention themselves.
        Ok(0)
    }
}

/// A consumed message as a record.
fn stored_record(message: &rdkafka::message::BorrowedMessage<'_>) -> StoredRecord {
    let headers = message
        .headers()
        .map(|headers| {
            headers
                .iter()
                .map(|header| Header {
                    key: header.key.to_owned(),
                    value: bytes::Bytes::copy_from_slice(header.value.unwrap_or_default()),
                })
                .collect()
        })
        .unwrap_or_default();
    StoredRecord {
        offset: message.offset() as u64,
        record: Record {
            key: message.key().map(bytes::Bytes::copy_from_slice),
            value: bytes::Bytes::copy_from_slice(message.payload().unwrap_or_default()),
            timestamp: message.timestamp().to_millis().unwrap_or(0),
            headers,
        },
    }
}
