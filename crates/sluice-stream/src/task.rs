//! The partition task: the I/O edge around one [`Processor`]. It reads record batches from
//! the source partition (tail-following), turns them and the control messages it receives
//! into one ordered [`Message`] stream, and delivers what the processor produced: late
//! events appended to the late topic, window updates broadcast to live subscribers,
//! checkpoint snapshots sent (with backpressure) to whoever persists them.
//!
//! Control messages are applied between two batches, never inside one, so a checkpoint
//! barrier cuts the stream at an offset and a metric added at runtime starts at one.

use crate::engine::output::{Checkpoint, LiveWindows, Outputs, WindowUpdate};
use crate::engine::{Message, Processor};
use crate::error::StreamError;
use crate::plan::MetricPlan;
use sluice_core::time::{Millis, now_millis};
use sluice_log::{Log, LogError, ReadBuffer, ReadOptions, TopicSpec};
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

/// Where a partition task reads and writes.
#[derive(Debug, Clone)]
pub struct TaskSettings {
    /// The source topic.
    pub source_topic: String,
    /// The late-events topic (created with the source's partition count if missing).
    pub late_topic: String,
    /// How much one read returns and how long it waits at the end of the partition.
    pub read: ReadOptions,
    /// How often the task sends the processor a processing-time tick.
    pub tick_interval: Duration,
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
            deliver(&*log, partition, &settings, &outputs, &mut out, clock.now()).await?;
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
            deliver(&*log, partition, &settings, &outputs, &mut out, now).await?;
        }
        let offset = processor.next_offset();
        let read = log.read_into(
            &settings.source_topic,
            partition,
            offset,
            settings.read,
            &mut buffer,
        );
        tokio::select! {
            biased;
            message = control.recv() => {
                match message {
                    None | Some(Control::Stop) => return Ok(processor),
                    Some(message) => apply(&mut processor, message, &mut out)?,
                }
                deliver(&*log, partition, &settings, &outputs, &mut out, clock.now()).await?;
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
        deliver(&*log, partition, &settings, &outputs, &mut out, now).await?;
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

async fn deliver<L: Log>(
    log: &L,
    partition: u32,
    settings: &TaskSettings,
    outputs: &TaskOutputs,
    out: &mut Outputs,
    now: Millis,
) -> Result<(), StreamError> {
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
    for checkpoint in out.checkpoints.drain(..) {
        outputs
            .checkpoints
            .send(checkpoint)
            .await
            .map_err(|_| StreamError::ChannelClosed("checkpoint"))?;
    }
    Ok(())
}
