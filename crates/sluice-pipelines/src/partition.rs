//! One pipeline partition: one metric generation computed over one source partition, with
//! exactly-once results.
//!
//! The protocol, each round:
//! 1. **Claim** the pipeline partition in the store: its epoch is bumped, fencing out any older
//!    owner (a stuck task, a previous process), and the committed offset, its log epoch and
//!    the event-time clock come back. A position the log no longer backs (a repair cut the
//!    log's tail and new records reuse the offsets) is rewound first (see [`crate::rewind`]).
//! 2. **Restore** the processor from that offset, clock and the metric's stored open windows.
//! 3. **Process**: the stream engine's partition task reads from the offset on.
//! 4. **Checkpoint** every `store.checkpoint-interval`: a barrier goes to the task *in the same
//!    stream as the data*, so the snapshot it returns reflects exactly the records before its
//!    offset; the changed rows, the watermarks and the offset commit in one store
//!    transaction, refused if another owner has claimed the partition since.
//!
//! A crash at any point leaves the store at the last committed checkpoint, whose rows reflect
//! exactly the records before its offset; the next owner resumes there. No record is counted
//! twice or lost, without any transaction in the log.
//!
//! Failures (see [`crate::failure`]): a full disk retries the commit with backoff (processing
//! pauses behind the bounded checkpoint channel; nothing is lost); other failures end the
//! round, which starts again from the last commit after a pause that doubles up to
//! `store.retry-max-backoff` — a transient one (an I/O error, a busy store) as `retrying`, a
//! damaged log segment as `failed` (it needs a repair, after which the partition resumes by
//! itself); a damaged store and fencing stop this pipeline partition for good. Every failure
//! is in the status, in `/metrics` and logged at ERROR; the log is never touched.
//!
//! Only [`RoundTask`] awaits the stream task's `JoinHandle`, and only until it has ended; the
//! runner itself runs under [`supervise`], which reports it failed if it ever panics. So a
//! dead partition cannot look alive.

use crate::PipelineSettings;
use crate::convert::{commit_from, decode_row};
use crate::failure::{Failure, FailureClass, Recovery, backoff};
use crate::status::PartitionStatus;
use sluice_core::time::{Millis, now_millis};
use sluice_log::group::Rejoin;
use sluice_log::rewind_target;
use sluice_log::{EpochStart, Log};
use sluice_store::StoreBackend;
use sluice_store::error::StoreError;
use sluice_store::model::Position;
use sluice_stream::StreamError;
use sluice_stream::engine::Processor;
use sluice_stream::engine::output::{Checkpoint, RestoreState, WindowUpdate};
use sluice_stream::engine::rows::RowPool;
use sluice_stream::plan::{MetricPlan, Output};
use sluice_stream::task::{Control, SystemClock, TaskOutputs, run_partition};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::task::{JoinError, JoinHandle};
use tokio_util::sync::CancellationToken;

/// A message for a running pipeline partition.
#[derive(Debug)]
pub(crate) enum Request {
    /// For its partition task, forwarded as it is (the live windows are asked this way).
    Task(Control),
    /// Checkpoint now and answer once the checkpoint is committed.
    Checkpoint {
        reply: oneshot::Sender<Result<u64, String>>,
    },
}

/// Everything one pipeline partition needs.
pub(crate) struct PartitionRunner<L> {
    pub(crate) log: Arc<L>,
    pub(crate) store: StoreBackend,
    pub(crate) plan: Arc<MetricPlan>,
    pub(crate) generation: u32,
    pub(crate) pipeline: String,
    pub(crate) partition: u32,
    pub(crate) initial_offset: u64,
    /// The source partition's end offset when the runner was launched. At start-up that is
    /// before this process appended anything, so a committed position beyond it is beyond
    /// what the log holds (lost with no epoch to tell, e.g. a file cut at a batch boundary),
    /// even once new appends have moved the end past it. `None` where other processes append
    /// too (a cluster), or for a runner started after the first.
    pub(crate) end_at_launch: Option<u64>,
    pub(crate) settings: Arc<PipelineSettings>,
    pub(crate) updates: broadcast::Sender<Arc<WindowUpdate>>,
    pub(crate) status: Arc<PartitionStatus>,
    /// Several nodes share the partitions (a cluster), through this group member: being
    /// fenced out means another node was given this partition, which is a hand-over rather
    /// than a failure.
    pub(crate) shared: Option<Rejoin>,
}

/// How long a cluster node whose partition another node took over waits before it claims the
/// partition again, if its group has not taken the partition from it meanwhile.
const HANDOVER_PAUSE: Duration = Duration::from_secs(5);

/// After a commit that took `d`, the next periodic checkpoint waits at least `d` times this
/// (Flink's "minimum pause between checkpoints", made to follow the commits' cost): committing
/// then takes at most about a tenth of the time. A small state commits in milliseconds and
/// keeps the configured interval; a large one (every open session or profile changed since
/// the last checkpoint) is checkpointed less often, rather than spending most of the
/// machine on writing the same rows again. Asked-for checkpoints (a stop, a replay's
/// switch) are not held back.
const COMMIT_PAUSE_FACTOR: u32 = 9;

/// The longest pause [`COMMIT_PAUSE_FACTOR`] makes: a partition whose checkpoints stop for
/// several of the group's session timeouts looks stalled to the other nodes of a cluster.
const MAX_COMMIT_PAUSE: Duration = Duration::from_secs(5);

impl<L: Log> PartitionRunner<L> {
    /// Runs until `cancel`, starting a new round from the last checkpoint after each failure
    /// that a retry can help, with a capped backoff.
    pub(crate) async fn run(
        self,
        mut requests: mpsc::Receiver<Request>,
        cancel: CancellationToken,
    ) {
        let mut attempt = 0u32;
        // Only the first claim compares with the end at launch: later ones may rightly be
        // beyond it, having processed what was appended since.
        let mut end_at_launch = self.end_at_launch;
        loop {
            let round = self.round(&mut requests, &cancel, end_at_launch.take());
            let failure = match round.await {
                Ok(()) => {
                    self.status.set_stopped();
                    return;
                }
                Err(failure) => failure,
            };
            // Failures in a row: a round that got past the previous failure starts over.
            attempt = if self.status.failing() {
                attempt + 1
            } else {
                1
            };
            if let Some(rejoin) = &self.shared
                && failure.class == FailureClass::Fenced
            {
                // Two nodes were given the partition: normally this one lost its group session
                // (a pause) and the group is about to take the partition from it. If the group
                // still gives it to this node after a pause, the assignments disagree: ask for
                // a new round, and claim it again.
                tracing::info!(pipeline = %self.pipeline, partition = self.partition, pause = ?HANDOVER_PAUSE, "another node of the cluster took the partition over; it stops here");
                self.status
                    .set_elsewhere(self.status.committed(), self.status.watermark());
                tokio::select! {
                    () = cancel.cancelled() => return,
                    () = tokio::time::sleep(HANDOVER_PAUSE) => {}
                }
                tracing::warn!(pipeline = %self.pipeline, partition = self.partition, "the consumer group still gives this node a partition another node took over; asking for a new assignment and claiming it again");
                rejoin.request();
                attempt = 0;
                continue;
            }
            let pause = match failure.class.recovery() {
                Recovery::Stop => None,
                Recovery::Retry | Recovery::RetryFailed => {
                    Some(backoff(attempt, self.settings.retry_max_backoff))
                }
            };
            let next_retry =
                pause.map(|pause| now_millis().saturating_add(pause.as_millis() as i64));
            self.status.set_failed(&failure, attempt, next_retry);
            let class = failure.class.as_str();
            let reason = &failure.reason;
            let Some(pause) = pause else {
                tracing::error!(pipeline = %self.pipeline, partition = self.partition, class, %reason, "pipeline partition failed and stopped");
                // Keep answering questions until told to stop, so callers get the reason.
                refuse_until(&mut requests, &cancel, reason, None).await;
                return;
            };
            tracing::error!(pipeline = %self.pipeline, partition = self.partition, class, %reason, attempt, ?pause, "pipeline partition failed; it starts again from its last checkpoint");
            if !refuse_until(&mut requests, &cancel, reason, Some(pause)).await {
                self.status.set_stopped();
                return;
            }
        }
    }

    async fn round(
        &self,
        requests: &mut mpsc::Receiver<Request>,
        cancel: &CancellationToken,
        end_at_launch: Option<u64>,
    ) -> Result<(), Failure> {
        let (position, claim) = self.claim(end_at_launch).await?;
        // Windows closed at the committed clock are final in the store: no need to load them.
        // An identity's rows are never closed: all of them are its state.
        let open_after = match (&self.plan.output, position.event_time) {
            (Output::Identity, _) | (_, None) => Millis::MIN,
            (_, Some(time)) => time - self.plan.out_of_orderness - self.plan.allowed_lateness - 1,
        };
        let kinds: Vec<_> = self
            .plan
            .aggregates
            .iter()
            .map(|aggregate| aggregate.kind)
            .collect();
        let rows = self
            .store
            .load_partials(&self.plan.name, self.generation, self.partition, open_after, Box::new(move |row| decode_row(row, &kinds)))
            .await?
            .map_err(|reason| {
                Failure::new(FailureClass::StateCorrupt, format!(
                    "the store {} holds a damaged partial of metric {:?} (partition {}): {reason}; move the store away and run `sluice replay --metric {}`",
                    self.store.location(),
                    self.plan.name,
                    self.partition,
                    self.plan.name
                ))
            })?;
        let restored = rows.len();
        let state = RestoreState {
            offset: position.offset,
            event_time: position.event_time,
            metrics: vec![(Arc::clone(&self.plan), rows)],
        };
        let processor = Processor::restore(
            self.partition,
            self.settings.stream.processor(),
            state,
            now_millis(),
        )
        .map_err(Failure::from)?
        .with_erasures(Arc::clone(&self.settings.erased));
        let pool = processor.row_pool();
        tracing::debug!(pipeline = %self.pipeline, partition = self.partition, offset = position.offset, epoch = claim.epoch, log_epoch = claim.log_epoch, restored, "pipeline partition resumed");
        self.status
            .set_running(position.offset, position.lost_offsets);

        let stream = &self.settings.stream;
        let (control, control_rx) = mpsc::channel(stream.control_channel_capacity);
        let (checkpoints_tx, mut checkpoints) =
            mpsc::channel::<Checkpoint>(stream.checkpoint_channel_capacity);
        let (stopping, stopping_rx) = tokio::sync::watch::channel(false);
        let outputs = TaskOutputs {
            updates: self.updates.clone(),
            checkpoints: checkpoints_tx,
            processed: self.status.processed_counter(),
            stopping: stopping_rx,
        };
        let mut task = RoundTask(Some(tokio::spawn(run_partition(
            Arc::clone(&self.log),
            processor,
            self.partition,
            self.settings.task_for(&self.plan, &self.store),
            control_rx,
            outputs,
            SystemClock,
        ))));
        let result = self
            .drive(
                claim,
                &pool,
                &control,
                &mut checkpoints,
                &mut task,
                requests,
                cancel,
            )
            .await;
        // However the round ended, the task stops with it (between two batches), and releases
        // the log before the round returns.
        let _ = stopping.send(true);
        let _ = control.try_send(Control::Stop);
        drop(control);
        task.stop(Duration::from_secs(5)).await;
        result
    }

    /// Claims the pipeline partition and checks its position against the source partition's
    /// epochs, start and end (the end at launch, if given, when lower): rewinding it if the log
    /// has since lost records it had counted, moving it to the start if retention removed
    /// records it had not processed yet.
    async fn claim(&self, end_at_launch: Option<u64>) -> Result<(Position, Claim), Failure> {
        let (epochs, start, end) = self.source().await?;
        let end = end_at_launch.map_or(end, |at_launch| at_launch.min(end));
        let log_epoch = epochs.last().map_or(0, |current| current.epoch);
        let position = self
            .store
            .claim(
                &self.pipeline,
                self.partition,
                self.initial_offset,
                log_epoch,
            )
            .await?;
        let claim = Claim {
            epoch: position.epoch,
            log_epoch,
        };
        let Some(target) = rewind_target(position.offset, position.log_epoch, &epochs, end) else {
            if position.offset < start {
                // Records before the log's start may be kept elsewhere (the archive), and read
                // from there; what is kept neither there nor in the log is gone.
                let topic = self.plan.source.topic(&self.settings.stream.source_topic);
                let kept = self
                    .log
                    .history_start(topic, self.partition)
                    .await
                    .map_err(|source| {
                        Failure::from(StreamError::Log {
                            op: "history",
                            topic: topic.to_owned(),
                            partition: self.partition,
                            source,
                        })
                    })?
                    .filter(|&kept| kept < start)
                    .unwrap_or(start);
                if position.offset < kept {
                    return self.skip_removed(position, claim, kept).await;
                }
            }
            return Ok((position, claim));
        };
        let lost = position.offset - target;
        let rewound = self
            .store
            .reposition(
                &self.pipeline,
                self.partition,
                claim.epoch,
                target,
                log_epoch,
            )
            .await?;
        tracing::error!(
            pipeline = %self.pipeline,
            partition = self.partition,
            committed_offset = position.offset,
            committed_log_epoch = position.log_epoch,
            rewound_to = target,
            log_epoch,
            lost_offsets = lost,
            "the log no longer holds records this pipeline partition counted (a repair cut its tail; new records reuse the offsets): rewinding to count the new records; the {lost} events counted from the lost range stay counted. Run `sluice replay --metric {}` to recompute from what the log holds now",
            self.plan.name
        );
        self.status.rewound(lost);
        Ok((rewound, claim))
    }

    /// Moves a position that retention left behind to `start`, the partition's (or its
    /// history's) first record: the records in between are gone without having been counted.
    /// The results stay exact for everything the log still holds; how many were lost is
    /// reported like a rewind's.
    async fn skip_removed(
        &self,
        position: Position,
        claim: Claim,
        start: u64,
    ) -> Result<(Position, Claim), Failure> {
        let lost = start - position.offset;
        let moved = self
            .store
            .reposition(
                &self.pipeline,
                self.partition,
                claim.epoch,
                start,
                claim.log_epoch,
            )
            .await?;
        tracing::error!(
            pipeline = %self.pipeline,
            partition = self.partition,
            committed_offset = position.offset,
            continued_at = start,
            lost_offsets = lost,
            "the log's retention removed {lost} records this pipeline partition had not processed yet (and the archive, if enabled, does not hold them): continuing at offset {start} without them. Keep pipelines caught up, or raise log.retention-age / log.retention-bytes"
        );
        self.status.rewound(lost);
        Ok((moved, claim))
    }

    /// The source partition's epochs, start and end offset.
    async fn source(&self) -> Result<(Vec<EpochStart>, u64, u64), Failure> {
        let topic = self.plan.source.topic(&self.settings.stream.source_topic);
        let failed = |op, source| {
            Failure::from(StreamError::Log {
                op,
                topic: topic.to_owned(),
                partition: self.partition,
                source,
            })
        };
        let epochs = self
            .log
            .epochs(topic, self.partition)
            .await
            .map_err(|error| failed("epochs", error))?;
        let (start, end) = self
            .log
            .describe(Some(topic))
            .await
            .map_err(|error| failed("describe", error))?
            .first()
            .and_then(|info| info.partitions.get(self.partition as usize))
            .map(|info| (info.start_offset, info.end_offset))
            .ok_or_else(|| {
                Failure::new(
                    FailureClass::Log,
                    format!("the log has no partition {topic}/{}", self.partition),
                )
            })?;
        Ok((epochs, start, end))
    }

    async fn drive(
        &self,
        claim: Claim,
        pool: &RowPool,
        control: &mpsc::Sender<Control>,
        checkpoints: &mut mpsc::Receiver<Checkpoint>,
        task: &mut RoundTask,
        requests: &mut mpsc::Receiver<Request>,
        cancel: &CancellationToken,
    ) -> Result<(), Failure> {
        let mut tick = tokio::time::interval(self.settings.checkpoint_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        let mut barrier = 0u64;
        let mut waiting: Vec<(u64, oneshot::Sender<Result<u64, String>>)> = Vec::new();
        // No periodic checkpoint before this (see COMMIT_PAUSE_FACTOR).
        let mut not_before = tokio::time::Instant::now();
        loop {
            tokio::select! {
                () = cancel.cancelled() => {
                    // A last checkpoint, so a restart has nothing to redo.
                    barrier += 1;
                    if control.send(Control::Barrier { id: barrier }).await.is_ok()
                        && let Ok(Some(mut checkpoint)) = tokio::time::timeout(Duration::from_secs(10), checkpoints.recv()).await
                    {
                        self.commit(claim, &mut checkpoint, pool, cancel).await?;
                    }
                    return Ok(());
                }
                _ = tick.tick() => {
                    if tokio::time::Instant::now() < not_before {
                        continue;
                    }
                    barrier += 1;
                    if control.send(Control::Barrier { id: barrier }).await.is_err() {
                        return Err(Failure::from_task_end(task.ended().await));
                    }
                }
                checkpoint = checkpoints.recv() => {
                    let Some(mut checkpoint) = checkpoint else {
                        return Err(Failure::from_task_end(task.ended().await));
                    };
                    let started = tokio::time::Instant::now();
                    self.commit(claim, &mut checkpoint, pool, cancel).await?;
                    let pause = (started.elapsed() * COMMIT_PAUSE_FACTOR).min(MAX_COMMIT_PAUSE);
                    not_before = tokio::time::Instant::now() + pause;
                    let committed = checkpoint.barrier;
                    for (id, reply) in std::mem::take(&mut waiting) {
                        if id <= committed {
                            let _ = reply.send(Ok(checkpoint.offset));
                        } else {
                            waiting.push((id, reply));
                        }
                    }
                }
                request = requests.recv() => match request {
                    None => return Ok(()),
                    Some(Request::Task(ask)) => {
                        if control.send(ask).await.is_err() {
                            return Err(Failure::from_task_end(task.ended().await));
                        }
                    }
                    Some(Request::Checkpoint { reply }) => {
                        barrier += 1;
                        waiting.push((barrier, reply));
                        if control.send(Control::Barrier { id: barrier }).await.is_err() {
                            return Err(Failure::from_task_end(task.ended().await));
                        }
                    }
                },
                ended = task.ended() => return Err(Failure::from_task_end(ended)),
            }
        }
    }

    /// Commits one checkpoint, retrying while the disk is full.
    async fn commit(
        &self,
        claim: Claim,
        checkpoint: &mut Checkpoint,
        pool: &RowPool,
        cancel: &CancellationToken,
    ) -> Result<(), Failure> {
        let commit = Arc::new(commit_from(checkpoint, self.generation, claim.log_epoch));
        let mut attempt = 0u32;
        loop {
            match self
                .store
                .commit(
                    &self.pipeline,
                    self.partition,
                    claim.epoch,
                    Arc::clone(&commit),
                )
                .await
            {
                Ok(()) => {
                    let watermark = checkpoint
                        .metrics
                        .first()
                        .and_then(|metric| metric.watermark);
                    self.status.set_committed(checkpoint.offset, watermark);
                    // The store has let go of the rows by now: the processor packs the next
                    // ones into their memory.
                    if let Ok(commit) = Arc::try_unwrap(commit) {
                        commit.metrics.into_iter().for_each(|metric| {
                            pool.give(metric.closed);
                            pool.give(metric.changed);
                        });
                    }
                    return Ok(());
                }
                Err(error @ StoreError::DiskFull { .. }) => {
                    attempt += 1;
                    let failure = Failure::from(error);
                    if attempt == 1 {
                        tracing::error!(pipeline = %self.pipeline, partition = self.partition, class = failure.class.as_str(), reason = %failure.reason, "checkpoint failed; retrying");
                    }
                    let pause = Duration::from_millis(250 * u64::from(attempt.min(20)));
                    let next_retry = now_millis().saturating_add(pause.as_millis() as i64);
                    self.status.set_failed(&failure, attempt, Some(next_retry));
                    tokio::select! {
                        () = cancel.cancelled() => return Ok(()),
                        () = tokio::time::sleep(pause) => {}
                    }
                }
                Err(error) => return Err(error.into()),
            }
        }
    }
}

/// What a round holds once it has claimed the pipeline partition.
#[derive(Debug, Clone, Copy)]
struct Claim {
    /// The owner's fencing epoch in the store.
    epoch: u64,
    /// The source partition's current log epoch, stored with each commit.
    log_epoch: u32,
}

/// Runs a pipeline partition's runner in a task of its own and watches it: a runner that
/// panics (a bug) is reported failed — status, `/metrics`, an ERROR line — instead of leaving
/// its last state, perhaps `running`, behind.
pub(crate) async fn supervise<L: Log>(
    runner: PartitionRunner<L>,
    requests: mpsc::Receiver<Request>,
    cancel: CancellationToken,
) {
    let status = Arc::clone(&runner.status);
    let (pipeline, partition) = (runner.pipeline.clone(), runner.partition);
    let Err(join) = tokio::spawn(runner.run(requests, cancel)).await else {
        return;
    };
    let failure = Failure::new(
        FailureClass::Internal,
        format!(
            "the pipeline partition's runner ended abnormally ({join}); this is a bug, please report it. Restart sluice to resume this partition"
        ),
    );
    tracing::error!(%pipeline, partition, class = failure.class.as_str(), reason = %failure.reason, "pipeline partition failed and stopped");
    status.set_failed(&failure, 1, None);
}

/// The stream partition task of one round. Only this awaits its `JoinHandle`, and it lets go
/// of the handle once the task has ended: a finished task is never polled again.
struct RoundTask(Option<JoinHandle<Result<Processor, StreamError>>>);

impl RoundTask {
    /// How the task ended, once it has; pending forever after that.
    async fn ended(&mut self) -> Result<Result<Processor, StreamError>, JoinError> {
        let Some(join) = &mut self.0 else {
            return std::future::pending().await;
        };
        let ended = join.await;
        self.0 = None;
        ended
    }

    /// Waits up to `grace` for the task to end (it stops between two batches once its control
    /// channel says so or closes), then aborts it.
    async fn stop(mut self, grace: Duration) {
        let Some(mut join) = self.0.take() else {
            return;
        };
        if tokio::time::timeout(grace, &mut join).await.is_err() {
            join.abort();
            let _ = join.await;
        }
    }
}

/// Answers requests with `reason` until `pause` is over (`true`) or `cancel` (`false`); with
/// no pause, until `cancel` or until no one can ask any more.
async fn refuse_until(
    requests: &mut mpsc::Receiver<Request>,
    cancel: &CancellationToken,
    reason: &str,
    pause: Option<Duration>,
) -> bool {
    let sleep = async {
        match pause {
            Some(pause) => tokio::time::sleep(pause).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(sleep);
    let mut open = true;
    loop {
        tokio::select! {
            () = cancel.cancelled() => return false,
            () = &mut sleep => return true,
            request = requests.recv(), if open => match request {
                Some(request) => refuse(request, reason),
                None if pause.is_none() => return false,
                None => open = false,
            },
        }
    }
}

fn refuse(request: Request, reason: &str) {
    match request {
        Request::Task(Control::LiveWindows { reply, .. }) => {
            let _ = reply.send(Err(StreamError::ChannelClosed(
                "pipeline partition stopped",
            )));
        }
        // Nothing waits for an answer to the others.
        Request::Task(_) => {}
        Request::Checkpoint { reply } => {
            let _ = reply.send(Err(reason.to_owned()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_log::{LogBackend, LogConfig, Record, TopicSpec};
    use sluice_store::model::Commit;
    use sluice_store::sqlite::SqliteStore;

    fn section<T: serde::de::DeserializeOwned>(name: &str) -> T {
        let text = include_str!("../../sluice/src/default.toml");
        let table: toml::Table = toml::from_str(text).unwrap();
        table[name].clone().try_into().unwrap()
    }

    #[tokio::test]
    async fn the_first_claim_measures_the_position_against_the_end_at_launch() {
        let dir = tempfile::tempdir().unwrap();
        let log: LogBackend = LogBackend::open(&section::<LogConfig>("log"), dir.path())
            .await
            .unwrap();
        log.create_topic(TopicSpec::new("events", 1)).await.unwrap();
        let records = (0..80)
            .map(|i| Record::new(None, b"{}".to_vec(), i))
            .collect();
        log.append("events", 0, records).await.unwrap();
        let store = StoreBackend::from(SqliteStore::open(&dir.path().join("s.db")).unwrap());
        let epoch = store.claim("m@0", 0, 0, 0).await.unwrap().epoch;
        let commit = Commit {
            offset: 50,
            ..Commit::default()
        };
        store
            .commit("m@0", 0, epoch, Arc::new(commit))
            .await
            .unwrap();
        let plan = sluice_stream::sql::parse_metric(
            "CREATE METRIC m AS SELECT COUNT(*) AS n FROM events GROUP BY TUMBLE(timestamp, INTERVAL '1' MINUTE)",
            &section::<sluice_stream::config::StreamConfig>("stream").metric_defaults(),
        )
        .unwrap();
        let runner = PartitionRunner {
            log: Arc::new(log),
            store: store.clone(),
            plan: Arc::new(plan),
            generation: 0,
            pipeline: "m@0".into(),
            partition: 0,
            initial_offset: 0,
            // The log ended at 30 when the runner was launched: 50 records came later...
            end_at_launch: Some(30),
            shared: None,
            settings: Arc::new(PipelineSettings {
                stream: section("stream"),
                checkpoint_interval: Duration::from_secs(1),
                retry_max_backoff: Duration::from_secs(1),
                erased: Arc::default(),
                history: None,
            }),
            updates: broadcast::channel(1).0,
            status: Arc::new(PartitionStatus::new("m", 0, 0)),
        };

        // ...so a position at 50 is beyond what the log held: back to 30, 20 offsets lost.
        let (position, _) = runner.claim(Some(30)).await.unwrap();
        assert_eq!((position.offset, position.lost_offsets), (30, 20));
        // Later claims compare with the log's end as it is (80).
        let epoch = store.claim("m@0", 0, 0, 0).await.unwrap().epoch;
        let commit = Commit {
            offset: 70,
            ..Commit::default()
        };
        store
            .commit("m@0", 0, epoch, Arc::new(commit))
            .await
            .unwrap();
        let (position, _) = runner.claim(None).await.unwrap();
        assert_eq!((position.offset, position.lost_offsets), (70, 20));
    }
}
