//! One pipeline partition: one metric generation computed over one source partition, with
//! exactly-once results.
//!
//! The protocol, each round:
//! 1. **Claim** the pipeline partition in the store: its epoch is bumped, fencing out any older
//!    owner (a stuck task, a previous process), and the committed offset and event-time clock
//!    come back.
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
//! Failures: a full disk retries the commit with backoff (processing pauses behind the
//! bounded checkpoint channel; nothing is lost); other transient failures (a log read, a
//! store error) restart the round from the last commit; corruption and fencing stop this
//! pipeline partition with a clear error, leaving the log untouched.

use super::PipelineSettings;
use super::convert::{commit_from, decode_row};
use super::status::PartitionStatus;
use crate::error::StoreError;
use crate::store::{Store, StoreBackend};
use sluice_core::time::{Millis, now_millis};
use sluice_log::Log;
use sluice_stream::StreamError;
use sluice_stream::engine::Processor;
use sluice_stream::engine::output::{
    Checkpoint, LiveWindows, OpenWindow, RestoreState, WindowUpdate,
};
use sluice_stream::engine::rows::RowPool;
use sluice_stream::plan::MetricPlan;
use sluice_stream::task::{Control, SystemClock, TaskOutputs, run_partition};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

/// A question for a running pipeline partition.
#[derive(Debug)]
pub(crate) enum Request {
    /// Its open windows, optionally one tenant's.
    OpenWindows {
        tenant: Option<String>,
        reply: oneshot::Sender<Result<Vec<OpenWindow>, StreamError>>,
    },
    /// Its state the store does not have yet, optionally one tenant's.
    LiveWindows {
        tenant: Option<String>,
        reply: oneshot::Sender<Result<LiveWindows, StreamError>>,
    },
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
    pub(crate) settings: Arc<PipelineSettings>,
    pub(crate) updates: broadcast::Sender<Arc<WindowUpdate>>,
    pub(crate) status: Arc<PartitionStatus>,
}

enum Failure {
    /// Restart from the last committed checkpoint after a pause.
    Transient(String),
    /// Stop: the operator must act.
    Fatal(String),
}

impl From<StoreError> for Failure {
    fn from(error: StoreError) -> Failure {
        match error {
            StoreError::Corrupt { .. }
            | StoreError::Fenced { .. }
            | StoreError::NewerSchema { .. } => Failure::Fatal(error.to_string()),
            other => Failure::Transient(other.to_string()),
        }
    }
}

impl<L: Log> PartitionRunner<L> {
    /// Runs until `cancel`, restarting from the last checkpoint after transient failures.
    pub(crate) async fn run(
        self,
        mut requests: mpsc::Receiver<Request>,
        cancel: CancellationToken,
    ) {
        let mut failures = 0u32;
        loop {
            match self.round(&mut requests, &cancel).await {
                Ok(()) => {
                    self.status.set_stopped();
                    return;
                }
                Err(Failure::Fatal(message)) => {
                    tracing::error!(pipeline = %self.pipeline, partition = self.partition, %message, "pipeline partition stopped");
                    self.status.set_failed(message.clone());
                    // Keep answering questions until told to stop, so callers get the reason.
                    loop {
                        tokio::select! {
                            () = cancel.cancelled() => return,
                            request = requests.recv() => match request {
                                None => return,
                                Some(request) => refuse(request, &message),
                            },
                        }
                    }
                }
                Err(Failure::Transient(message)) => {
                    failures += 1;
                    let pause = Duration::from_millis(100 << failures.min(6));
                    tracing::warn!(pipeline = %self.pipeline, partition = self.partition, %message, ?pause, "pipeline partition restarts from its last checkpoint");
                    self.status.set_retrying(message);
                    tokio::select! {
                        () = cancel.cancelled() => { self.status.set_stopped(); return; }
                        () = tokio::time::sleep(pause) => {}
                    }
                }
            }
        }
    }

    async fn round(
        &self,
        requests: &mut mpsc::Receiver<Request>,
        cancel: &CancellationToken,
    ) -> Result<(), Failure> {
        let position = self
            .store
            .claim(&self.pipeline, self.partition, self.initial_offset)
            .await?;
        let epoch = position.epoch;
        // Windows closed at the committed clock are final in the store: no need to load them.
        let open_after = position.event_time.map_or(Millis::MIN, |time| {
            time - self.plan.out_of_orderness - self.plan.allowed_lateness - 1
        });
        let kinds: Vec<_> = self
            .plan
            .aggregates
            .iter()
            .map(|aggregate| aggregate.kind)
            .collect();
        let rows = self
            .store
            .load_rows_with(&self.plan.name, self.generation, self.partition, open_after, move |row| decode_row(row, &kinds))
            .await?
            .map_err(|reason| {
                Failure::Fatal(format!(
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
        .map_err(|error| Failure::Fatal(error.to_string()))?;
        let pool = processor.row_pool();
        tracing::debug!(pipeline = %self.pipeline, partition = self.partition, offset = position.offset, epoch, restored, "pipeline partition resumed");
        self.status.set_running(position.offset);

        let stream = &self.settings.stream;
        let (control, control_rx) = mpsc::channel(stream.control_channel_capacity);
        let (checkpoints_tx, mut checkpoints) =
            mpsc::channel::<Checkpoint>(stream.checkpoint_channel_capacity);
        let outputs = TaskOutputs {
            updates: self.updates.clone(),
            checkpoints: checkpoints_tx,
            processed: self.status.processed_counter(),
        };
        let mut task = tokio::spawn(run_partition(
            Arc::clone(&self.log),
            processor,
            self.partition,
            self.settings.task(),
            control_rx,
            outputs,
            SystemClock,
        ));
        let result = self
            .drive(
                epoch,
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
        let _ = control.try_send(Control::Stop);
        drop(control);
        if tokio::time::timeout(Duration::from_secs(5), &mut task)
            .await
            .is_err()
        {
            task.abort();
            let _ = task.await;
        }
        result
    }

    async fn drive(
        &self,
        epoch: u64,
        pool: &RowPool,
        control: &mpsc::Sender<Control>,
        checkpoints: &mut mpsc::Receiver<Checkpoint>,
        task: &mut tokio::task::JoinHandle<Result<Processor, StreamError>>,
        requests: &mut mpsc::Receiver<Request>,
        cancel: &CancellationToken,
    ) -> Result<(), Failure> {
        let mut tick = tokio::time::interval(self.settings.checkpoint_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        let mut barrier = 0u64;
        let mut waiting: Vec<(u64, oneshot::Sender<Result<u64, String>>)> = Vec::new();
        loop {
            tokio::select! {
                () = cancel.cancelled() => {
                    // A last checkpoint, so a restart has nothing to redo.
                    barrier += 1;
                    if control.send(Control::Barrier { id: barrier }).await.is_ok()
                        && let Ok(Some(mut checkpoint)) = tokio::time::timeout(Duration::from_secs(10), checkpoints.recv()).await
                    {
                        self.commit(epoch, &mut checkpoint, pool, cancel).await?;
                    }
                    return Ok(());
                }
                _ = tick.tick() => {
                    barrier += 1;
                    if control.send(Control::Barrier { id: barrier }).await.is_err() {
                        return Err(Failure::Transient("the partition task ended".into()));
                    }
                }
                checkpoint = checkpoints.recv() => {
                    let Some(mut checkpoint) = checkpoint else {
                        return Err(Failure::Transient("the partition task ended".into()));
                    };
                    self.commit(epoch, &mut checkpoint, pool, cancel).await?;
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
                    Some(Request::OpenWindows { tenant, reply }) => {
                        let ask = Control::OpenWindows { metric: self.plan.name.clone(), tenant, reply };
                        if control.send(ask).await.is_err() {
                            return Err(Failure::Transient("the partition task ended".into()));
                        }
                    }
                    Some(Request::LiveWindows { tenant, reply }) => {
                        let ask = Control::LiveWindows { metric: self.plan.name.clone(), tenant, reply };
                        if control.send(ask).await.is_err() {
                            return Err(Failure::Transient("the partition task ended".into()));
                        }
                    }
                    Some(Request::Checkpoint { reply }) => {
                        barrier += 1;
                        waiting.push((barrier, reply));
                        if control.send(Control::Barrier { id: barrier }).await.is_err() {
                            return Err(Failure::Transient("the partition task ended".into()));
                        }
                    }
                },
                ended = &mut *task => {
                    return Err(match ended {
                        Ok(Ok(_)) => Failure::Transient("the partition task stopped".into()),
                        Ok(Err(error @ (StreamError::Restore { .. } | StreamError::Decode(_)))) => Failure::Fatal(error.to_string()),
                        Ok(Err(error)) => Failure::Transient(error.to_string()),
                        Err(join) => Failure::Transient(format!("the partition task panicked: {join}")),
                    });
                }
            }
        }
    }

    /// Commits one checkpoint, retrying while the disk is full.
    async fn commit(
        &self,
        epoch: u64,
        checkpoint: &mut Checkpoint,
        pool: &RowPool,
        cancel: &CancellationToken,
    ) -> Result<(), Failure> {
        let commit = Arc::new(commit_from(checkpoint, self.generation));
        let mut attempt = 0u32;
        loop {
            match self
                .store
                .commit(&self.pipeline, self.partition, epoch, Arc::clone(&commit))
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
                        commit
                            .metrics
                            .into_iter()
                            .for_each(|metric| pool.give(metric.changed));
                    }
                    return Ok(());
                }
                Err(error @ StoreError::DiskFull { .. }) => {
                    attempt += 1;
                    let message = error.to_string();
                    if attempt == 1 {
                        tracing::error!(pipeline = %self.pipeline, partition = self.partition, %message, "checkpoint failed; retrying");
                    }
                    self.status.set_retrying(message);
                    tokio::select! {
                        () = cancel.cancelled() => return Ok(()),
                        () = tokio::time::sleep(Duration::from_millis(250 * u64::from(attempt.min(20)))) => {}
                    }
                }
                Err(error) => return Err(error.into()),
            }
        }
    }
}

fn refuse(request: Request, message: &str) {
    match request {
        Request::OpenWindows { reply, .. } => {
            let _ = reply.send(Err(StreamError::ChannelClosed(
                "pipeline partition stopped",
            )));
        }
        Request::LiveWindows { reply, .. } => {
            let _ = reply.send(Err(StreamError::ChannelClosed(
                "pipeline partition stopped",
            )));
        }
        Request::Checkpoint { reply } => {
            let _ = reply.send(Err(message.to_owned()));
        }
    }
}
