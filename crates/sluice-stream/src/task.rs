//! The partition task: the I/O edge around one [`Processor`]. It reads record batches from
//! the source partition (tail-following), turns them and the control messages it receives
//! into one ordered [`Message`] stream, and delivers what the processor produced: late
//! events appended to the late topic, window updates broadcast to live subscribers,
//! checkpoint snapshots sent (with backpressure) to whoever persists them.
//!
//! Control messages are applied between two batches, never inside one, so a checkpoint
//! barrier cuts the stream at an offset and a metric added at runtime starts at one.
//!
//! **Derived streams.** A derived stream's records are appended to its topic (partition for
//! partition) batch by batch, as the processor makes them; each checkpoint carries the offset
//! ranges appended since the previous one ([`Checkpoint::output`]), which its commit makes
//! visible. A task reading a derived stream (its [`TaskSettings::committed`] is set) reads only
//! inside those committed ranges: below the committed end, skipping whatever a crashed
//! writer appended and never committed.

use crate::engine::output::{Checkpoint, LiveWindows, OutputRange, Outputs, WindowUpdate};
use crate::engine::{Message, Processor};
use crate::error::StreamError;
use crate::plan::MetricPlan;
use sluice_core::time::{Millis, now_millis};
use sluice_log::{Log, LogError, ReadBuffer, ReadOptions, Record, TopicSpec};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, oneshot};

/// Processing time, injectable so tests are deterministic.
pub trait Clock: Send + Sync + 'static {
    /// Milliseconds since the Unix epoch.
    fn now(&self) -> Millis;
}

/// The wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Millis {
        now_millis()
    }
}

/// A clock that moves only when told to (tests).
#[derive(Debug, Clone, Default)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    /// A clock at `now`.
    pub fn new(now: Millis) -> Self {
        ManualClock(Arc::new(AtomicI64::new(now)))
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Millis) {
        self.0.fetch_add(by, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Millis {
        self.0.load(Ordering::SeqCst)
    }
}

/// What other tasks ask of a partition task.
#[derive(Debug)]
pub enum Control {
    /// Checkpoint now: the snapshot goes out on the checkpoint channel.
    Barrier {
        /// Returned in the [`Checkpoint`].
        id: u64,
    },
    /// Start a metric at the next batch.
    AddMetric(Arc<MetricPlan>),
    /// Stop a metric and drop its state.
    RemoveMetric(String),
    /// Read a metric's state the store does not have yet (optionally one tenant's).
    LiveWindows {
        /// The metric.
        metric: String,
        /// Only this tenant's windows.
        tenant: Option<String>,
        /// Where the answer goes.
        reply: oneshot::Sender<Result<LiveWindows, StreamError>>,
    },
    /// Finish the current batch and return the processor.
    Stop,
}

/// What [`Committed::ranges`] returns: committed `[start, end)` ranges, or why they could not
/// be read.
pub type RangesFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Vec<(u64, u64)>, String>> + Send + 'a>>;

/// Which records of a derived stream's partitions are committed: the offset ranges its
/// writers' commits made visible (kept in the store, with the writers' checkpoints).
pub trait Committed: Send + Sync + 'static {
    /// The committed ranges `[start, end)` of `partition` that end after `from`, in offset
    /// order (perhaps only the first few).
    fn ranges(&self, partition: u32, from: u64) -> RangesFuture<'_>;
}

/// Where a partition task reads and writes.
#[derive(Clone)]
pub struct TaskSettings {
    /// The source topic.
    pub source_topic: String,
    /// When the source is a derived stream: which of its records are committed (only those
    /// are read).
    pub committed: Option<Arc<dyn Committed>>,
    /// The late-events topic (created with the source's partition count if missing).
    pub late_topic: String,
    /// How much one read returns and how long it waits at the end of the partition.
    pub read: ReadOptions,
    /// How often the task sends the processor a processing-time tick.
    pub tick_interval: Duration,
}

impl std::fmt::Debug for TaskSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskSettings")
            .field("source_topic", &self.source_topic)
            .field("committed", &self.committed.is_some())
            .field("late_topic", &self.late_topic)
            .field("read", &self.read)
            .field("tick_interval", &self.tick_interval)
            .finish()
    }
}

/// The committed ranges of one partition of a derived stream, as far as a reader knows them
/// (the partition task's, the archive's).
pub struct Visible {
    committed: Arc<dyn Committed>,
    partition: u32,
    /// Known committed ranges, in order.
    ranges: std::collections::VecDeque<(u64, u64)>,
    /// Where reading goes on when the processor's offset lags: past a range that held no
    /// record any more (removed by retention or a repair).
    floor: u64,
}

impl std::fmt::Debug for Visible {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Visible")
            .field("partition", &self.partition)
            .field("ranges", &self.ranges)
            .field("floor", &self.floor)
            .finish_non_exhaustive()
    }
}

impl Visible {
    /// The committed ranges of `partition`, as `committed` tells them.
    pub fn new(committed: Arc<dyn Committed>, partition: u32) -> Visible {
        Visible {
            committed,
            partition,
            ranges: Default::default(),
            floor: 0,
        }
    }

    /// Where to read next and below which offset, from `offset` on (past a gap of records no
    /// commit covers); `None` when nothing committed is there yet.
    pub async fn next(
        &mut self,
        offset: u64,
        topic: &str,
    ) -> Result<Option<(u64, u64)>, StreamError> {
        let offset = offset.max(self.floor);
        while self.ranges.front().is_some_and(|&(_, end)| end <= offset) {
            self.ranges.pop_front();
        }
        if self.ranges.is_empty() {
            let ranges = self
                .committed
                .ranges(self.partition, offset)
                .await
                .map_err(|reason| StreamError::Committed {
                    topic: topic.to_owned(),
                    partition: self.partition,
                    reason,
                })?;
            self.ranges
                .extend(ranges.into_iter().filter(|&(_, end)| end > offset));
        }
        Ok(self
            .ranges
            .front()
            .map(|&(start, end)| (offset.max(start), end)))
    }
}

/// Where a partition task delivers results.
#[derive(Debug, Clone)]
pub struct TaskOutputs {
    /// Window updates for live subscribers (the query API, WebSocket push). Bounded: a
    /// subscriber that falls behind loses the oldest updates and is told so by `recv`.
    pub updates: broadcast::Sender<Arc<WindowUpdate>>,
    /// Checkpoint snapshots for the store. Bounded: when full, the task waits, and with it
    /// the processing of this partition.
    pub checkpoints: mpsc::Sender<Checkpoint>,
    /// The processor's next offset after each batch: how far processing (not yet
    /// committing) has come, for status reports.
    pub processed: Arc<AtomicU64>,
    /// Turns true when whoever runs the task is done with it: an append of derived records
    /// in flight is abandoned then (the records stay uncommitted).
    pub stopping: tokio::sync::watch::Receiver<bool>,
}

/// Creates the late-events topic with the source topic's partition count, if missing.
pub async fn ensure_late_topic<L: Log>(
    log: &L,
    settings: &TaskSettings,
) -> Result<(), StreamError> {
    let error = |op, source| StreamError::Log {
        op,
        topic: settings.source_topic.clone(),
        partition: 0,
        source,
    };
    let source = log
        .describe(Some(&settings.source_topic))
        .await
        .map_err(|e| error("describe", e))?;
    let partitions = source
        .first()
        .map(|topic| topic.partitions.len() as u32)
        .ok_or_else(|| {
            error(
                "describe",
                LogError::UnknownTopic(settings.source_topic.clone()),
            )
        })?;
    log.create_topic(TopicSpec {
        name: settings.late_topic.clone(),
        partitions,
        retention_age: None,
        retention_bytes: None,
    })
    .await
    .map_err(|source| StreamError::Log {
        op: "create",
        topic: settings.late_topic.clone(),
        partition: 0,
        source,
    })
}

/// Runs one partition until [`Control::Stop`] or until the control channel closes, and
/// returns the processor. Reads start at the processor's next offset.
pub async fn run_partition<L: Log, C: Clock>(
    log: Arc<L>,
    mut processor: Processor,
    partition: u32,
    settings: TaskSettings,
    mut control: mpsc::Receiver<Control>,
    outputs: TaskOutputs,
    clock: C,
) -> Result<Processor, StreamError> {
    let mut out = Outputs::default();
    // Records are read into memory reused from batch to batch.
    let mut buffer = ReadBuffer::new();
    // Derived records are appended beside processing.
    let mut appender = Appender::new(Arc::clone(&log), partition);
    let mut visible = settings
        .committed
        .clone()
        .map(|committed| Visible::new(committed, partition));
    // What the processor produced, delivered at processing time `$now`.
    macro_rules! deliver {
        ($now:expr) => {
            deliver(
                &*log,
                partition,
                &settings,
                &outputs,
                &mut out,
                &mut appender,
                $now,
            )
            .await?
        };
    }
    let tick_every = Millis::try_from(settings.tick_interval.as_millis()).unwrap_or(Millis::MAX);
    let mut last_tick = clock.now();
    loop {
        // Control first: between batches is where it belongs.
        let mut answered = false;
        loop {
            match control.try_recv() {
                Ok(Control::Stop) | Err(mpsc::error::TryRecvError::Disconnected) => {
                    return Ok(processor);
                }
                Ok(message) => apply(&mut processor, message, &mut out)?,
                Err(mpsc::error::TryRecvError::Empty) => break,
            }
            deliver!(clock.now());
            answered = true;
        }
        if answered {
            // Whoever sent the messages waits for the answers (a checkpoint to commit, windows
            // to show), perhaps queued behind this task on its worker thread. (Once per batch,
            // not per message: a sender that always has another message must not starve the
            // reads.)
            tokio::task::yield_now().await;
        }
        let now = clock.now();
        if now.saturating_sub(last_tick) >= tick_every {
            last_tick = now;
            processor.handle(Message::Tick { now }, &mut out)?;
            deliver!(now);
        }
        let mut offset = processor.next_offset();
        let mut limit = u64::MAX;
        if let Some(visible) = &mut visible {
            match visible.next(offset, &settings.source_topic).await? {
                Some((start, end)) => (offset, limit) = (start, end),
                // Nothing committed to read: wait as a read at the end would.
                None => limit = offset,
            }
        }
        // Whether the read found records, all of them at or past `limit` (so none is left in
        // the committed range from `offset`: a repair or retention removed them).
        let mut beyond = false;
        let read = async {
            if offset >= limit {
                buffer.clear();
                tokio::time::sleep(settings.read.max_wait).await;
                return Ok(());
            }
            log.read_into(
                &settings.source_topic,
                partition,
                offset,
                settings.read,
                &mut buffer,
            )
            .await?;
            let found = !buffer.is_empty();
            buffer.truncate_at(limit);
            beyond = found && buffer.is_empty();
            Ok(())
        };
        tokio::select! {
            biased;
            message = control.recv() => {
                match message {
                    None | Some(Control::Stop) => return Ok(processor),
                    Some(message) => apply(&mut processor, message, &mut out)?,
                }
                deliver!(clock.now());
                continue;
            }
            read = read => read.map_err(|source| StreamError::Log {
                op: "read",
                topic: settings.source_topic.clone(),
                partition,
                source,
            })?,
        };
        if buffer.is_empty() {
            if let Some(visible) = &mut visible
                && beyond
            {
                // The committed range holds nothing readable from `offset`: go past it.
                visible.floor = limit;
            }
            continue;
        }
        let now = clock.now();
        processor.handle(
            Message::Buffered {
                records: &buffer,
                now,
            },
            &mut out,
        )?;
        deliver!(now);
        outputs
            .processed
            .store(processor.next_offset(), Ordering::Relaxed);
        // A partition catching up always has a batch ready, so it would never give its worker
        // thread back: the checkpoint commit it wakes, the collector and the query API would
        // wait behind it for seconds. Its share of the budget makes it yield now and then.
        tokio::task::coop::consume_budget().await;
    }
}

fn apply(
    processor: &mut Processor,
    control: Control,
    out: &mut Outputs,
) -> Result<(), StreamError> {
    match control {
        Control::Barrier { id } => processor.handle(Message::Barrier { id }, out),
        Control::AddMetric(plan) => processor.handle(Message::AddMetric(plan), out),
        Control::RemoveMetric(name) => processor.handle(Message::RemoveMetric(name), out),
        Control::LiveWindows {
            metric,
            tenant,
            reply,
        } => {
            // The asker may have given up; that is not the partition's problem.
            let _ = reply.send(processor.live_windows(&metric, tenant.as_deref()));
            Ok(())
        }
        Control::Stop => Ok(()),
    }
}

/// Once `stopping` turns true (never, if its sender is gone without saying so).
async fn stopped(mut stopping: tokio::sync::watch::Receiver<bool>) {
    if stopping.wait_for(|stopping| *stopping).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Batches of derived records queued for a partition task's appender.
const APPENDS_QUEUED: usize = 4;

/// Appends a partition task's derived records in a task of its own, in order, so processing
/// goes on while the log makes the previous batch durable. A checkpoint waits for the appends
/// queued before it ([`Appender::flush`]) and carries their ranges.
struct Appender<L> {
    log: Arc<L>,
    partition: u32,
    /// Started with the first records.
    jobs: Option<(mpsc::Sender<AppendJob>, tokio::task::JoinHandle<()>)>,
}

enum AppendJob {
    Records(Arc<str>, Vec<Record>),
    Flush(oneshot::Sender<Result<Vec<OutputRange>, StreamError>>),
}

impl<L: Log> Appender<L> {
    fn new(log: Arc<L>, partition: u32) -> Self {
        Appender {
            log,
            partition,
            jobs: None,
        }
    }

    /// Queues `records` for `stream`'s partition (waiting while the queue is full).
    async fn send(&mut self, stream: Arc<str>, records: Vec<Record>) -> Result<(), StreamError> {
        let (jobs, _) = self.jobs.get_or_insert_with(|| {
            let (jobs, queued) = mpsc::channel(APPENDS_QUEUED);
            let task = tokio::spawn(append_jobs(Arc::clone(&self.log), self.partition, queued));
            (jobs, task)
        });
        jobs.send(AppendJob::Records(stream, records))
            .await
            .map_err(|_| StreamError::ChannelClosed("appender"))
    }

    /// Waits for every queued append; the ranges appended since the last flush, or the first
    /// failure (then nothing after it was appended, and the task must not commit).
    async fn flush(&mut self) -> Result<Vec<OutputRange>, StreamError> {
        let Some((jobs, _)) = &self.jobs else {
            return Ok(Vec::new());
        };
        let (reply, answer) = oneshot::channel();
        jobs.send(AppendJob::Flush(reply))
            .await
            .map_err(|_| StreamError::ChannelClosed("appender"))?;
        answer
            .await
            .map_err(|_| StreamError::ChannelClosed("appender"))?
    }
}

impl<L> Drop for Appender<L> {
    fn drop(&mut self) {
        // An append in flight is abandoned with its task: it is not committed.
        if let Some((_, task)) = &self.jobs {
            task.abort();
        }
    }
}

/// The appender's task: appends in the order queued, merging adjacent ranges.
async fn append_jobs<L: Log>(log: Arc<L>, partition: u32, mut jobs: mpsc::Receiver<AppendJob>) {
    let mut ranges: Vec<OutputRange> = Vec::new();
    let mut failed: Option<StreamError> = None;
    let mut poisoned = false;
    while let Some(job) = jobs.recv().await {
        match job {
            AppendJob::Records(_, _) if poisoned || failed.is_some() => {}
            AppendJob::Records(stream, records) => {
                match log.append(&stream, partition, records).await {
                    // A range must hold this writer's records only (see `StreamError::Interleaved`).
                    Ok(result) if !result.is_contiguous() => {
                        failed = Some(StreamError::Interleaved {
                            topic: stream.to_string(),
                            partition,
                            first: result.base_offset,
                            last: result.last_offset,
                            count: result.count,
                        });
                    }
                    Ok(result) => {
                        let (start, end) = (
                            result.base_offset,
                            result.base_offset + u64::from(result.count),
                        );
                        match ranges.iter_mut().rev().find(|range| range.stream == stream) {
                            Some(range) if range.end == start => range.end = end,
                            _ => ranges.push(OutputRange { stream, start, end }),
                        }
                    }
                    Err(source) => {
                        failed = Some(StreamError::Log {
                            op: "append",
                            topic: stream.to_string(),
                            partition,
                            source,
                        });
                    }
                }
            }
            AppendJob::Flush(reply) => {
                let answer = match failed.take() {
                    Some(error) => {
                        poisoned = true;
                        Err(error)
                    }
                    None if poisoned => Err(StreamError::ChannelClosed("appender")),
                    None => Ok(std::mem::take(&mut ranges)),
                };
                let _ = reply.send(answer);
            }
        }
    }
}

async fn deliver<L: Log>(
    log: &L,
    partition: u32,
    settings: &TaskSettings,
    outputs: &TaskOutputs,
    out: &mut Outputs,
    appender: &mut Appender<L>,
    now: Millis,
) -> Result<(), StreamError> {
    // The round is over: what an append wrote is not committed, so readers never see it, and
    // the next owner appends after it. Waiting for a slow broker would only hold up whoever
    // takes the partition over.
    let over = || StreamError::ChannelClosed("control");
    // Derived records before the checkpoints: a checkpoint covers every record its offset
    // covers, so the ranges it carries must hold them all.
    while let Some(first) = out.records.first() {
        let stream = first.stream.clone();
        let split = out
            .records
            .iter()
            .position(|record| record.stream != stream)
            .unwrap_or(out.records.len());
        let records = out
            .records
            .drain(..split)
            .map(|record| record.to_record(&settings.source_topic, partition))
            .collect();
        tokio::select! {
            sent = appender.send(stream, records) => sent?,
            () = stopped(outputs.stopping.clone()) => return Err(over()),
        }
    }
    if !out.late.is_empty() {
        let records = out.late.drain(..).map(|late| late.to_record(now)).collect();
        log.append(&settings.late_topic, partition, records)
            .await
            .map_err(|source| StreamError::Log {
                op: "append",
                topic: settings.late_topic.clone(),
                partition,
                source,
            })?;
    }
    for update in out.updates.drain(..) {
        // No subscriber is fine: updates are for live readers; the store gets checkpoints.
        let _ = outputs.updates.send(Arc::new(update));
    }
    for mut checkpoint in out.checkpoints.drain(..) {
        checkpoint.output = tokio::select! {
            flushed = appender.flush() => flushed?,
            () = stopped(outputs.stopping.clone()) => return Err(over()),
        };
        outputs
            .checkpoints
            .send(checkpoint)
            .await
            .map_err(|_| StreamError::ChannelClosed("checkpoint"))?;
    }
    Ok(())
}
