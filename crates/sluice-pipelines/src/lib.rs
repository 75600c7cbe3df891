//! The exactly-once pipelines: every metric is computed by its own pipeline — one task per
//! source partition, checkpointing its results and offsets into the store together (see
//! `partition.rs` for the protocol) — so metrics are added, removed, backfilled and replayed
//! at runtime without disturbing each other.
//!
//! A pipeline computes one *generation* of a metric's results (`name@generation`). A replay
//! starts the next generation beside the current one, from the earliest retained offset (or
//! the offset of a point in time); when it has caught up with the log, the old pipeline stops
//! and one store transaction makes the new generation current and deletes the old one, so a
//! query sees either the old results or the new, never a mix.
//!
//! Trade-off: each pipeline reads and parses the log itself. That keeps every metric isolated
//! (a failing metric stops alone; adding one never pauses another), at the cost of one log
//! read per metric; sharing one read among metrics that start together is a later
//! optimization the processor already supports.

mod convert;
mod failure;
mod partition;
mod status;
pub mod streams;

pub use convert::partial_row;
pub use failure::FailureClass;
pub use status::{PartitionState, PartitionStatus};

use parking_lot::Mutex;
use partition::{PartitionRunner, Request, supervise};
use serde::Serialize;
use sluice_core::error::{Classify, ErrorClass};
use sluice_core::time::{Millis, now_millis};
use sluice_log::group::{GroupEvent, Member, Membership, Rejoin};
use sluice_log::history::{History, WithHistory};
use sluice_log::{Log, LogError, ReadOptions};
use sluice_store::StoreBackend;
use sluice_store::error::StoreError;
use sluice_store::model::{MetricRecord, Origin, ReplayPlan};
use sluice_stream::config::StreamConfig;
use sluice_stream::engine::output::{LiveWindows, WindowUpdate};
use sluice_stream::plan::{MetricPlan, Source};
use sluice_stream::task::{Control, TaskSettings, ensure_late_topic};
use sluice_stream::{SqlError, StreamError};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How often a node of a cluster reads the metric definitions other nodes may have changed.
pub const DEFINITIONS_POLL: Duration = Duration::from_millis(500);

/// Looks (one per session timeout) a partition computed elsewhere must make no progress in
/// before a node asks its group for a new assignment.
const STALLED_CHECKS: u32 = 3;

/// Looks after a rejoin before another.
const REJOIN_PAUSE: u32 = 10;

/// How pipelines run.
#[derive(Debug, Clone)]
pub struct PipelineSettings {
    /// The stream engine's settings (topics, channel sizes, processor limits).
    pub stream: StreamConfig,
    /// How often each pipeline partition commits a checkpoint.
    pub checkpoint_interval: Duration,
    /// The longest pause before a failed pipeline partition tries again (pauses start at
    /// 100 ms and double).
    pub retry_max_backoff: Duration,
    /// The erased users (shared with the collector): identities skip their events and
    /// remove their profiles.
    pub erased: Arc<sluice_core::erasure::ErasedUsers>,
    /// Where the source topic's records before the log's start are kept (the raw event
    /// archive): pipelines read them from there when their position is before the log's start
    /// (a replay from a time older than the log's retention, or a pipeline that fell behind
    /// it). `None`: such records are gone.
    pub history: Option<Arc<dyn History>>,
}

impl PipelineSettings {
    /// The task settings of a pipeline of `plan`: it reads its source, committed records
    /// only when that is a derived stream.
    fn task_for(&self, plan: &MetricPlan, store: &StoreBackend) -> TaskSettings {
        let mut task = self.task();
        if let Source::Stream(stream) = &plan.source {
            task.source_topic = stream.clone();
            task.committed = Some(Arc::new(streams::StoreRanges {
                store: store.clone(),
                stream: stream.clone(),
            }));
        }
        task
    }

    fn task(&self) -> TaskSettings {
        TaskSettings {
            committed: None,
            source_topic: self.stream.source_topic.clone(),
            late_topic: self.stream.late_topic.clone(),
            read: ReadOptions {
                max_bytes: self.stream.read_max_bytes.as_usize(),
                max_wait: self.stream.read_max_wait.get(),
            },
            tick_interval: self.stream.tick_interval.get(),
        }
    }
}

/// A metric to define at start-up (a `[[metrics]]` table in the config).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricSpec {
    /// The `CREATE METRIC` statement.
    pub sql: String,
    /// Compute it from the earliest retained offset.
    pub backfill: bool,
}

/// Why a metric operation failed.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The SQL is invalid (with line and column).
    #[error("{0}")]
    Sql(SqlError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The log failed.
    #[error(transparent)]
    Log(#[from] LogError),
    /// The engine failed.
    #[error(transparent)]
    Stream(#[from] StreamError),
    /// A replay of this metric is already running.
    #[error("metric {0:?} is already being replayed; wait for it to finish")]
    ReplayRunning(String),
    /// A definition reads `FROM` a name that is no derived stream.
    #[error(
        "{reader:?} reads FROM {stream}, which is not a derived stream: create it first with CREATE STREAM {stream} AS SELECT … FROM events, or read FROM events"
    )]
    UnknownStream {
        /// The definition.
        reader: String,
        /// What it reads.
        stream: String,
    },
    /// A stream that others read cannot be deleted.
    #[error("stream {stream:?} is read by {readers}; delete those first")]
    StreamInUse {
        /// The stream.
        stream: String,
        /// Who reads it.
        readers: String,
    },
    /// A stream would write into a topic sluice keeps for something else.
    #[error(
        "a stream cannot be named {0:?}: that is the name of sluice's events or late-events topic; choose another name"
    )]
    TopicTaken(String),
    /// Streams are not replayed.
    #[error(
        "{0:?} is a derived stream: its records are in its topic already and readers may have counted them, so it is not replayed; delete it and create it again with backfill (and replay the metrics that read it)"
    )]
    StreamReplay(String),
}

impl From<SqlError> for PipelineError {
    fn from(error: SqlError) -> Self {
        PipelineError::Sql(error)
    }
}

impl Classify for PipelineError {
    fn class(&self) -> ErrorClass {
        match self {
            PipelineError::Sql(_)
            | PipelineError::ReplayRunning(_)
            | PipelineError::UnknownStream { .. }
            | PipelineError::StreamInUse { .. }
            | PipelineError::StreamReplay(_)
            | PipelineError::TopicTaken(_) => ErrorClass::User,
            PipelineError::Store(error) => error.class(),
            PipelineError::Log(error) => error.class(),
            PipelineError::Stream(_) => ErrorClass::Internal,
        }
    }
}

/// A metric and how its computation is doing.
#[derive(Debug, Clone, Serialize)]
pub struct MetricStatus {
    /// The definition.
    #[serde(flatten)]
    pub record: MetricRecord,
    /// `metric` (windows, stored), `stream` (records, appended to the topic of its name) or
    /// `sessions` (one record per visitor session, appended likewise).
    pub kind: &'static str,
    /// What it reads: `events`, or a derived stream's name.
    pub source: String,
    /// `running`, `backfilling` (catching up with history), `retrying` or `failed`.
    pub state: &'static str,
    /// The first error of a failed or retrying partition.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Events in the log not yet reflected in committed results, over all partitions.
    pub lag: u64,
    /// The lowest partition watermark at the last commits (windows ending by it are final).
    pub watermark: Option<Millis>,
    /// Offsets counted in the results whose records the log no longer holds, over all
    /// partitions: a repair cut the log's tail after they were counted, and the pipeline went
    /// back to count the new records that reuse those offsets. The counted events stay
    /// counted; `sluice replay` recomputes the results from what the log holds now.
    pub lost_offsets: u64,
    /// Fraction of the history processed, while backfilling.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backfill_progress: Option<f64>,
    /// The replay in progress, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replay: Option<ReplayStatus>,
    /// Per partition.
    pub partitions: Vec<PartitionReport>,
}

/// One partition of a metric's current pipeline.
#[derive(Debug, Clone, Serialize)]
pub struct PartitionReport {
    /// Source partition.
    pub partition: u32,
    /// Last committed offset.
    pub committed_offset: u64,
    /// The offset processing has reached (at least the committed one): records up to it are
    /// counted in memory and go to the store with the next checkpoint.
    pub processed_offset: u64,
    /// The log's end offset.
    pub end_offset: u64,
    /// Watermark at the last commit.
    pub watermark: Option<Millis>,
    /// Offsets counted in the results whose records the log no longer holds (a repair cut
    /// them; the position was rewound to count the new records that reuse them).
    pub lost_offsets: u64,
    /// Running, retrying, failed…
    #[serde(flatten)]
    pub state: PartitionState,
}

/// A replay in progress.
#[derive(Debug, Clone, Serialize)]
pub struct ReplayStatus {
    /// The generation being computed.
    pub generation: u32,
    /// Results from this time on are recomputed (`None`: everything).
    pub from_time: Option<Millis>,
    /// Fraction of the way to the end of the log.
    pub progress: f64,
    /// `running`, `retrying` or `failed`: a replay with a failed partition does not finish
    /// (the previous results stay current) until that partition gets past its failure.
    pub state: &'static str,
    /// The first error of a failed or retrying partition.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Per partition of the generation being computed.
    pub partitions: Vec<PartitionReport>,
}

/// One generation of a metric computed over the source partitions, one runner per partition
/// this node owns.
struct PipelineRun {
    plan: Arc<MetricPlan>,
    generation: u32,
    start_offsets: Vec<u64>,
    /// One per source partition.
    partitions: Vec<Slot>,
    updates: broadcast::Sender<Arc<WindowUpdate>>,
    cancel: CancellationToken,
}

/// A source partition of a pipeline: its status, and its runner while this node owns it.
struct Slot {
    status: Arc<PartitionStatus>,
    initial_offset: u64,
    /// The partition's end offset before this process appended anything (see
    /// [`PartitionRunner::end_at_launch`]), for the first runner of a node that owns every
    /// partition; `None` in a cluster, where other nodes append too.
    end_at_launch: Option<u64>,
    runner: Option<Runner>,
}

struct Runner {
    requests: mpsc::Sender<Request>,
    join: JoinHandle<()>,
    cancel: CancellationToken,
}

impl PipelineRun {
    /// Starts the runner of `partition` unless one runs (one that ended, fenced out, is
    /// replaced).
    fn start<L: Log>(&mut self, inner: &Inner<L>, partition: u32) {
        let pipeline = MetricRecord::pipeline_of(&self.plan.name, self.generation);
        let cancel = self.cancel.child_token();
        let Some(slot) = self.partitions.get_mut(partition as usize) else {
            tracing::warn!(%pipeline, partition, "assigned a partition the source topic does not have (partitions added since start are used after a restart)");
            return;
        };
        if slot
            .runner
            .as_ref()
            .is_some_and(|runner| !runner.join.is_finished())
        {
            return;
        }
        let (requests, requests_rx) = mpsc::channel(16);
        let runner = PartitionRunner {
            log: Arc::clone(&inner.reader),
            store: inner.store.clone(),
            plan: Arc::clone(&self.plan),
            generation: self.generation,
            pipeline,
            partition,
            initial_offset: slot.initial_offset,
            end_at_launch: slot.end_at_launch.take(),
            settings: Arc::clone(&inner.settings),
            updates: self.updates.clone(),
            status: Arc::clone(&slot.status),
            shared: inner.rejoin.clone(),
        };
        let join = tokio::spawn(supervise(runner, requests_rx, cancel.clone()));
        slot.runner = Some(Runner {
            requests,
            join,
            cancel,
        });
    }

    /// Stops the runner of `partition` (after a last checkpoint), if one runs, and marks the
    /// partition computed elsewhere.
    async fn release<L: Log>(&mut self, inner: &Inner<L>, partition: u32) {
        let Some(slot) = self.partitions.get_mut(partition as usize) else {
            return;
        };
        if let Some(runner) = slot.runner.take() {
            runner.cancel.cancel();
            let _ = runner.join.await;
        }
        let pipeline = MetricRecord::pipeline_of(&self.plan.name, self.generation);
        let committed = inner
            .store
            .positions(&pipeline)
            .await
            .ok()
            .and_then(|positions| {
                positions
                    .into_iter()
                    .find(|(p, _)| *p == partition)
                    .map(|(_, position)| position.offset)
            })
            .unwrap_or_else(|| slot.status.committed());
        slot.status
            .set_elsewhere(committed, slot.status.watermark());
    }

    /// Tells the runner of `partition` to stop after a last checkpoint, without waiting.
    fn cancel_partition(&self, partition: u32) {
        if let Some(runner) = self
            .partitions
            .get(partition as usize)
            .and_then(|slot| slot.runner.as_ref())
        {
            runner.cancel.cancel();
        }
    }

    /// The request channels of the partitions running here.
    fn senders(&self) -> Vec<(u32, mpsc::Sender<Request>)> {
        self.partitions
            .iter()
            .filter_map(|slot| {
                let runner = slot.runner.as_ref()?;
                Some((slot.status.partition(), runner.requests.clone()))
            })
            .collect()
    }

    async fn stop(self) {
        self.cancel.cancel();
        for slot in self.partitions {
            if let Some(runner) = slot.runner {
                let _ = runner.join.await;
            }
        }
    }
}

struct ReplayRun {
    run: PipelineRun,
    from_time: Option<Millis>,
    targets: Vec<u64>,
}

struct Running {
    record: MetricRecord,
    plan: Arc<MetricPlan>,
    current: PipelineRun,
    replay: Option<ReplayRun>,
}

struct Inner<L> {
    log: Arc<L>,
    /// The log as the pipelines read it: before a partition's start, from the history.
    reader: Arc<WithHistory<L>>,
    store: StoreBackend,
    settings: Arc<PipelineSettings>,
    updates: broadcast::Sender<Arc<WindowUpdate>>,
    running: tokio::sync::Mutex<BTreeMap<String, Running>>,
    plans: Mutex<BTreeMap<String, (Arc<MetricPlan>, u32)>>,
    background: Mutex<Vec<JoinHandle<()>>>,
    /// The source partitions this node computes: `None`, every one (it owns the log);
    /// otherwise those its group assigned it (see [`Pipelines::start_in_group`]). Changed
    /// only while `running` is locked, so a pipeline starts the partitions owned when it starts.
    owned: Mutex<Option<BTreeSet<u32>>>,
    /// `owned` as it changes, for others that share this node's partitions (the archive).
    owned_changes: tokio::sync::watch::Sender<BTreeSet<u32>>,
    /// The group membership, left after the pipelines stop.
    member: Mutex<Option<Member>>,
    /// Asks the group member for a new assignment (in a cluster).
    rejoin: Option<Rejoin>,
    /// Held while metrics are defined, deleted or replayed, and while a cluster node brings
    /// its pipelines in line with the store's definitions.
    catalogue: tokio::sync::Mutex<()>,
}

/// Every metric's pipelines.
pub struct Pipelines<L> {
    inner: Arc<Inner<L>>,
}

impl<L> Clone for Pipelines<L> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<L> std::fmt::Debug for Pipelines<L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipelines")
            .field(
                "metrics",
                &self.inner.plans.lock().keys().collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl<L: Log> Pipelines<L> {
    /// Creates the late topic, brings the store's metric definitions in line with the
    /// configured ones (created, replaced when their SQL changed, deleted when no longer
    /// configured) and starts every metric's pipeline where its last checkpoint left off.
    pub async fn start(
        log: Arc<L>,
        store: impl Into<StoreBackend>,
        settings: PipelineSettings,
        configured: &[MetricSpec],
    ) -> Result<Pipelines<L>, PipelineError> {
        Self::start_with(log, store.into(), settings, configured, None).await
    }

    /// Like [`Pipelines::start`], for a node of a cluster: the node computes the source
    /// partitions `membership` assigns it (none until the group says), stops those it revokes
    /// after a last checkpoint, and follows the metric definitions other nodes make in the
    /// store (within [`DEFINITIONS_POLL`]).
    pub async fn start_in_group(
        log: Arc<L>,
        store: impl Into<StoreBackend>,
        settings: PipelineSettings,
        configured: &[MetricSpec],
        membership: Membership,
    ) -> Result<Pipelines<L>, PipelineError> {
        Self::start_with(log, store.into(), settings, configured, Some(membership)).await
    }

    async fn start_with(
        log: Arc<L>,
        store: StoreBackend,
        settings: PipelineSettings,
        configured: &[MetricSpec],
        membership: Option<Membership>,
    ) -> Result<Pipelines<L>, PipelineError> {
        ensure_late_topic(&*log, &settings.task()).await?;
        let pipelines = Pipelines {
            inner: Arc::new(Inner {
                updates: broadcast::channel(settings.stream.update_channel_capacity.max(1)).0,
                reader: Arc::new(WithHistory::new(Arc::clone(&log), settings.history.clone())),
                log,
                store,
                settings: Arc::new(settings),
                running: tokio::sync::Mutex::new(BTreeMap::new()),
                plans: Mutex::new(BTreeMap::new()),
                background: Mutex::new(Vec::new()),
                owned: Mutex::new(membership.as_ref().map(|_| BTreeSet::new())),
                owned_changes: tokio::sync::watch::Sender::new(BTreeSet::new()),
                member: Mutex::new(None),
                rejoin: membership
                    .as_ref()
                    .map(|membership| membership.rejoin.clone()),
                catalogue: tokio::sync::Mutex::new(()),
            }),
        };
        let defaults = pipelines.inner.settings.stream.metric_defaults();
        let mut wanted = BTreeMap::new();
        let mut sources = BTreeMap::new();
        for spec in configured {
            let plan = sluice_stream::sql::parse_metric(&spec.sql, &defaults)?;
            sources.insert(plan.name.clone(), plan.source.clone());
            wanted.insert(plan.name.clone(), spec.clone());
        }
        let store = &pipelines.inner.store;
        for record in store.metrics().await? {
            let keep = match (record.origin, wanted.get(&record.name)) {
                (Origin::Config, None) => false,
                (_, Some(spec)) => spec.sql == record.sql && spec.backfill == record.backfill,
                (Origin::Api, None) => true,
            };
            if !keep {
                tracing::info!(metric = %record.name, "metric definition changed or left the config; its results are deleted");
                store.delete_metric(&record.name).await?;
            }
        }
        let stored: BTreeMap<String, MetricRecord> = store
            .metrics()
            .await?
            .into_iter()
            .map(|record| (record.name.clone(), record))
            .collect();
        // Streams before the definitions that read them.
        let order = streams::in_dependency_order(
            wanted
                .keys()
                .map(|name| (name.clone(), name.clone(), sources[name].clone()))
                .collect(),
        );
        for name in &order {
            let spec = &wanted[name];
            if stored.contains_key(name) {
                continue;
            }
            match pipelines
                .create(&spec.sql, spec.backfill, Origin::Config)
                .await
            {
                Ok(_) => {}
                // Another node of the cluster, starting with the same config, defined it
                // first: run that definition.
                Err(PipelineError::Store(StoreError::MetricExists(_))) => {
                    let record = store
                        .metrics()
                        .await?
                        .into_iter()
                        .find(|record| &record.name == name)
                        .filter(|record| record.sql == spec.sql && record.backfill == spec.backfill)
                        .ok_or_else(|| StoreError::MetricExists(name.clone()))?;
                    pipelines.launch(record).await?;
                }
                Err(error) => return Err(error),
            }
        }
        let stored = stored
            .into_values()
            .map(|record| {
                let source = sluice_stream::sql::parse_metric(&record.sql, &defaults)
                    .map_or(Source::Events, |plan| plan.source);
                (record.clone(), record.name, source)
            })
            .collect();
        for record in streams::in_dependency_order(stored) {
            pipelines.launch(record).await?;
        }
        {
            let _catalogue = pipelines.inner.catalogue.lock().await;
            pipelines.adopt_replays().await?;
        }
        if let Some(membership) = membership {
            *pipelines.inner.member.lock() = Some(membership.member);
            let follower = pipelines.clone();
            let events = membership.events;
            let group = membership.group;
            let handle = tokio::spawn(async move { follower.follow(&group, events).await });
            pipelines.inner.background.lock().push(handle);
            let watcher = pipelines.clone();
            let handle = tokio::spawn(async move { watcher.follow_definitions().await });
            pipelines.inner.background.lock().push(handle);
            let watcher = pipelines.clone();
            let (rejoin, every) = (membership.rejoin, membership.session_timeout);
            let handle = tokio::spawn(async move { watcher.watch_stalls(rejoin, every).await });
            pipelines.inner.background.lock().push(handle);
        }
        Ok(pipelines)
    }

    /// Whether this node shares the source partitions with others.
    pub fn in_group(&self) -> bool {
        self.inner.owned.lock().is_some()
    }

    /// The source partitions the group gives this node, as they change (the pipelines have
    /// started on a partition before it shows here, and stopped on one before it leaves);
    /// `None` when the node owns the log and computes every partition.
    pub fn owned_partitions(&self) -> Option<tokio::sync::watch::Receiver<BTreeSet<u32>>> {
        self.in_group()
            .then(|| self.inner.owned_changes.subscribe())
    }

    /// Applies the group's changes: starts the pipelines' runners of assigned partitions, stops
    /// those of revoked ones (after a last checkpoint) before answering the group.
    async fn follow(&self, group: &str, mut events: mpsc::UnboundedReceiver<GroupEvent>) {
        while let Some(event) = events.recv().await {
            match event {
                GroupEvent::Assigned(partitions) => {
                    let mut running = self.inner.running.lock().await;
                    let mut owned = self.inner.owned.lock().clone().unwrap_or_default();
                    owned.extend(partitions.iter().copied());
                    *self.inner.owned.lock() = Some(owned);
                    for metric in running.values_mut() {
                        for &partition in &partitions {
                            metric.current.start(&self.inner, partition);
                            if let Some(replay) = &mut metric.replay {
                                replay.run.start(&self.inner, partition);
                            }
                        }
                    }
                    self.publish_owned();
                    tracing::info!(
                        group,
                        ?partitions,
                        "pipelines started on assigned partitions"
                    );
                }
                GroupEvent::Revoked {
                    partitions,
                    lost,
                    done,
                } => {
                    let mut running = self.inner.running.lock().await;
                    if let Some(owned) = self.inner.owned.lock().as_mut() {
                        for partition in &partitions {
                            owned.remove(partition);
                        }
                    }
                    // Every runner is told at once, so their last checkpoints commit together.
                    for metric in running.values() {
                        let runs = std::iter::once(&metric.current)
                            .chain(metric.replay.as_ref().map(|replay| &replay.run));
                        for run in runs {
                            for &partition in &partitions {
                                run.cancel_partition(partition);
                            }
                        }
                    }
                    for metric in running.values_mut() {
                        for &partition in &partitions {
                            metric.current.release(&self.inner, partition).await;
                            if let Some(replay) = &mut metric.replay {
                                replay.run.release(&self.inner, partition).await;
                            }
                        }
                    }
                    self.publish_owned();
                    tracing::info!(
                        group,
                        ?partitions,
                        lost,
                        "pipelines stopped on revoked partitions"
                    );
                    drop(done);
                }
            }
        }
    }

    /// Tells [`Pipelines::owned_partitions`]' receivers the partitions owned now.
    fn publish_owned(&self) {
        let owned = self.inner.owned.lock().clone().unwrap_or_default();
        self.inner.owned_changes.send_replace(owned);
    }

    /// Every `every` (the group's session timeout), looks for source partitions that no node
    /// seems to compute: computed elsewhere, behind the log's end, and with no new checkpoint
    /// for [`STALLED_CHECKS`] looks in a row. Then it asks the group member to join again, so
    /// a new round of assignment gives them an owner (at most once per [`REJOIN_PAUSE`]
    /// looks). With Apache Kafka this does not happen; some Kafka-compatible brokers tell only
    /// one member when another died, and the others keep their old assignment.
    async fn watch_stalls(&self, rejoin: Rejoin, every: Duration) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut seen: BTreeMap<u32, (u64, u32)> = BTreeMap::new();
        let mut pause = 0u32;
        loop {
            tick.tick().await;
            pause = pause.saturating_sub(1);
            let Ok(ends) = self.offsets(&Source::Events).await else {
                continue;
            };
            if self.refresh_elsewhere(None).await.is_err() {
                continue;
            }
            let behind: Vec<(u32, u64)> = {
                let running = self.inner.running.lock().await;
                let Some(metric) = running
                    .values()
                    .find(|metric| metric.plan.source == Source::Events)
                else {
                    continue;
                };
                metric
                    .current
                    .partitions
                    .iter()
                    .filter(|slot| slot.status.elsewhere())
                    .map(|slot| (slot.status.partition(), slot.status.committed()))
                    .filter(|&(partition, committed)| {
                        ends.get(partition as usize)
                            .is_some_and(|&(_, end)| end > committed)
                    })
                    .collect()
            };
            let mut next = BTreeMap::new();
            for (partition, committed) in behind {
                let looks = match seen.get(&partition) {
                    Some(&(before, looks)) if before == committed => looks + 1,
                    _ => 1,
                };
                next.insert(partition, (committed, looks));
            }
            seen = next;
            let stalled: Vec<u32> = seen
                .iter()
                .filter(|(_, (_, looks))| *looks >= STALLED_CHECKS)
                .map(|(&partition, _)| partition)
                .collect();
            if !stalled.is_empty() && pause == 0 {
                tracing::warn!(
                    ?stalled,
                    "partitions make no progress and no node seems to compute them; asking the consumer group for a new assignment"
                );
                rejoin.request();
                pause = REJOIN_PAUSE;
                seen.clear();
            }
        }
    }

    /// Every [`DEFINITIONS_POLL`], brings this node's pipelines in line with the metric
    /// definitions in the store, which other nodes of the cluster change: starts the metrics
    /// defined elsewhere, stops those deleted elsewhere, restarts those redefined or replayed.
    async fn follow_definitions(&self) {
        let mut tick = tokio::time::interval(DEFINITIONS_POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        loop {
            tick.tick().await;
            match self.sync_definitions().await {
                Ok(()) => failing = false,
                Err(error) if !failing => {
                    tracing::warn!(%error, "cannot read the metric definitions from the store; trying again");
                    failing = true;
                }
                Err(_) => {}
            }
        }
    }

    async fn sync_definitions(&self) -> Result<(), PipelineError> {
        let _catalogue = self.inner.catalogue.lock().await;
        let stored: BTreeMap<String, MetricRecord> = self
            .inner
            .store
            .metrics()
            .await?
            .into_iter()
            .map(|record| (record.name.clone(), record))
            .collect();
        let stale: Vec<String> = {
            let running = self.inner.running.lock().await;
            running
                .values()
                .filter(|metric| {
                    stored.get(&metric.record.name).is_none_or(|record| {
                        record.created_at != metric.record.created_at
                            || record.generation != metric.record.generation
                    })
                })
                .map(|metric| metric.record.name.clone())
                .collect()
        };
        for name in &stale {
            let removed = self.inner.running.lock().await.remove(name);
            self.inner.plans.lock().remove(name);
            if let Some(metric) = removed {
                metric.current.stop().await;
                if let Some(replay) = metric.replay {
                    replay.run.stop().await;
                }
            }
            tracing::info!(metric = %name, "metric deleted or redefined on another node; its pipeline stopped here");
        }
        let missing: Vec<MetricRecord> = {
            let running = self.inner.running.lock().await;
            stored
                .into_values()
                .filter(|record| !running.contains_key(&record.name))
                .collect()
        };
        for record in missing {
            let name = record.name.clone();
            self.launch(record).await?;
            tracing::info!(metric = %name, "metric defined on another node; its pipeline started here");
        }
        self.adopt_replays().await
    }

    /// The store the pipelines commit into.
    pub fn store(&self) -> &StoreBackend {
        &self.inner.store
    }

    /// The plan and current generation of a metric.
    pub fn plan(&self, name: &str) -> Option<(Arc<MetricPlan>, u32)> {
        self.inner.plans.lock().get(name).cloned()
    }

    /// Every metric's plan and current generation, by name.
    pub fn plans(&self) -> Vec<(Arc<MetricPlan>, u32)> {
        self.inner.plans.lock().values().cloned().collect()
    }

    /// Live window updates of every metric (bounded: a slow receiver misses updates and is
    /// told how many).
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<WindowUpdate>> {
        self.inner.updates.subscribe()
    }

    /// Defines a metric and starts computing it: from the earliest retained offset with
    /// `backfill`, else from the end of the log.
    pub async fn create(
        &self,
        sql: &str,
        backfill: bool,
        origin: Origin,
    ) -> Result<MetricStatus, PipelineError> {
        let plan =
            sluice_stream::sql::parse_metric(sql, &self.inner.settings.stream.metric_defaults())?;
        let _catalogue = self.inner.catalogue.lock().await;
        let topics = &self.inner.settings.stream;
        if plan.is_stream() && [&topics.source_topic, &topics.late_topic].contains(&&plan.name) {
            return Err(PipelineError::TopicTaken(plan.name.clone()));
        }
        if let Source::Stream(stream) = &plan.source {
            let running = self
                .inner
                .plans
                .lock()
                .get(stream)
                .map(|(source, _)| source.is_stream());
            // Not started yet (at start-up, definitions in the store start after the config's
            // new ones): the store's catalogue says.
            let is_stream = match running {
                Some(is_stream) => is_stream,
                None => {
                    let defaults = self.inner.settings.stream.metric_defaults();
                    streams::is_stored_stream(&self.inner.store, stream, &defaults).await?
                }
            };
            if !is_stream {
                return Err(PipelineError::UnknownStream {
                    reader: plan.name.clone(),
                    stream: stream.clone(),
                });
            }
        }
        let record = MetricRecord {
            name: plan.name.clone(),
            sql: sql.to_owned(),
            backfill,
            generation: 0,
            created_at: now_millis(),
            origin,
        };
        self.inner.store.create_metric(record.clone()).await?;
        let name = record.name.clone();
        if let Err(error) = self.launch(record).await {
            let _ = self.inner.store.delete_metric(&name).await;
            return Err(error);
        }
        drop(_catalogue);
        self.status(Some(&name))
            .await?
            .pop()
            .ok_or_else(|| StoreError::UnknownMetric(name).into())
    }

    async fn launch(&self, record: MetricRecord) -> Result<(), PipelineError> {
        let plan = Arc::new(sluice_stream::sql::parse_metric(
            &record.sql,
            &self.inner.settings.stream.metric_defaults(),
        )?);
        // A store written before final rows existed kept closed windows among the open rows.
        let settled = self
            .inner
            .store
            .settle(&record.name, record.generation, plan.allowed_lateness)
            .await?;
        if settled > 0 {
            tracing::info!(metric = %record.name, rows = settled, "closed windows moved into final rows");
        }
        streams::ensure_topics(
            &*self.inner.log,
            &self.inner.settings.stream.source_topic,
            &plan,
        )
        .await?;
        let offsets = self.offsets(&plan.source).await?;
        let initial: Vec<u64> = offsets
            .iter()
            .map(|&(start, end)| if record.backfill { start } else { end })
            .collect();
        let mut running = self.inner.running.lock().await;
        let current = self.spawn(
            &plan,
            record.generation,
            initial,
            &offsets,
            self.inner.updates.clone(),
        );
        self.inner
            .plans
            .lock()
            .insert(record.name.clone(), (Arc::clone(&plan), record.generation));
        running.insert(
            record.name.clone(),
            Running {
                record,
                plan,
                current,
                replay: None,
            },
        );
        Ok(())
    }

    /// Start and end offsets of every partition of `source`: of a derived stream, the end
    /// of what its writers committed (all a reader may read).
    async fn offsets(&self, source: &Source) -> Result<Vec<(u64, u64)>, PipelineError> {
        let topic = source.topic(&self.inner.settings.stream.source_topic);
        let info = self.inner.log.describe(Some(topic)).await?;
        let offsets: Vec<(u64, u64)> = info
            .first()
            .map(|topic| {
                topic
                    .partitions
                    .iter()
                    .map(|p| (p.start_offset, p.end_offset))
                    .collect()
            })
            .unwrap_or_default();
        let Source::Stream(stream) = source else {
            return Ok(offsets);
        };
        let starts: Vec<u64> = offsets.iter().map(|&(start, _)| start).collect();
        let ends = streams::committed_ends(&self.inner.store, stream, &starts).await?;
        Ok(starts
            .into_iter()
            .zip(ends)
            .map(|(start, end)| (start, end.max(start)))
            .collect())
    }

    /// Starts a pipeline: one runner per source partition, new positions at `initial`;
    /// `offsets` are the partitions' start and end offsets as just read (at start-up, before
    /// anything was appended: a committed position beyond such an end is beyond the log).
    /// Call with `running` locked, so the partitions owned do not change meanwhile.
    fn spawn(
        &self,
        plan: &Arc<MetricPlan>,
        generation: u32,
        initial: Vec<u64>,
        offsets: &[(u64, u64)],
        updates: broadcast::Sender<Arc<WindowUpdate>>,
    ) -> PipelineRun {
        let owned = self.inner.owned.lock().clone();
        let partitions = initial
            .iter()
            .enumerate()
            .map(|(partition, &initial_offset)| {
                let status = Arc::new(PartitionStatus::new(
                    &plan.name,
                    partition as u32,
                    initial_offset,
                ));
                Slot {
                    status,
                    initial_offset,
                    end_at_launch: match owned {
                        None => Some(
                            offsets
                                .get(partition)
                                .map_or(initial_offset, |&(_, end)| end),
                        ),
                        Some(_) => None,
                    },
                    runner: None,
                }
            })
            .collect();
        let mut run = PipelineRun {
            plan: Arc::clone(plan),
            generation,
            start_offsets: initial,
            partitions,
            updates,
            cancel: CancellationToken::new(),
        };
        for partition in 0..run.partitions.len() as u32 {
            match &owned {
                Some(owned) if !owned.contains(&partition) => {
                    let status = &run.partitions[partition as usize].status;
                    status.set_elsewhere(status.committed(), None);
                }
                _ => run.start(&self.inner, partition),
            }
        }
        run
    }

    /// Stops a metric's pipelines and deletes its definition and results.
    pub async fn delete(&self, name: &str) -> Result<(), PipelineError> {
        let _catalogue = self.inner.catalogue.lock().await;
        let readers: Vec<String> = self
            .inner
            .plans
            .lock()
            .values()
            .filter(|(plan, _)| plan.source == Source::Stream(name.to_owned()))
            .map(|(plan, _)| plan.name.clone())
            .collect();
        if !readers.is_empty() {
            return Err(PipelineError::StreamInUse {
                stream: name.to_owned(),
                readers: readers.join(", "),
            });
        }
        let running = self.inner.running.lock().await.remove(name);
        self.inner.plans.lock().remove(name);
        if let Some(running) = running {
            running.current.stop().await;
            if let Some(replay) = running.replay {
                replay.run.stop().await;
            }
        }
        if !self.inner.store.delete_metric(name).await? {
            return Err(StoreError::UnknownMetric(name.to_owned()).into());
        }
        Ok(())
    }

    /// Status of one metric, or of all when `name` is `None`.
    pub async fn status(&self, name: Option<&str>) -> Result<Vec<MetricStatus>, PipelineError> {
        if self.in_group() {
            self.refresh_elsewhere(name).await?;
        }
        let sources: BTreeSet<Source> = {
            let running = self.inner.running.lock().await;
            if let Some(name) = name
                && !running.contains_key(name)
            {
                return Err(StoreError::UnknownMetric(name.to_owned()).into());
            }
            running
                .values()
                .filter(|metric| name.is_none_or(|name| metric.record.name == name))
                .map(|metric| metric.plan.source.clone())
                .collect()
        };
        // The events topic's ends, and each stream's committed ends from the store (its topic
        // has as many partitions): status is asked often, and a broker's offsets are not free.
        let events: Vec<u64> = self
            .offsets(&Source::Events)
            .await?
            .into_iter()
            .map(|(_, end)| end)
            .collect();
        let mut ends: BTreeMap<Source, Vec<u64>> = BTreeMap::new();
        for source in sources {
            let source_ends = match &source {
                Source::Events => events.clone(),
                Source::Stream(stream) => {
                    streams::committed_ends(&self.inner.store, stream, &vec![0; events.len()])
                        .await?
                }
            };
            ends.insert(source, source_ends);
        }
        let running = self.inner.running.lock().await;
        Ok(running
            .values()
            .filter(|metric| name.is_none_or(|name| metric.record.name == name))
            .map(|metric| {
                describe(
                    metric,
                    ends.get(&metric.plan.source).map_or(&[][..], Vec::as_slice),
                )
            })
            .collect())
    }

    /// Reads the last checkpoints of the partitions other nodes compute from the store, so
    /// every node reports the same progress.
    async fn refresh_elsewhere(&self, name: Option<&str>) -> Result<(), PipelineError> {
        let runs: Vec<(String, u32, Vec<Arc<PartitionStatus>>)> = {
            let running = self.inner.running.lock().await;
            running
                .values()
                .filter(|metric| name.is_none_or(|name| metric.record.name == name))
                .flat_map(|metric| {
                    std::iter::once(&metric.current)
                        .chain(metric.replay.as_ref().map(|replay| &replay.run))
                        .map(|run| {
                            let elsewhere = run
                                .partitions
                                .iter()
                                .map(|slot| Arc::clone(&slot.status))
                                .filter(|status| status.elsewhere())
                                .collect();
                            (metric.record.name.clone(), run.generation, elsewhere)
                        })
                })
                .collect()
        };
        for (metric, generation, statuses) in runs {
            if statuses.is_empty() {
                continue;
            }
            let store = &self.inner.store;
            let pipeline = MetricRecord::pipeline_of(&metric, generation);
            let positions: BTreeMap<u32, u64> = store
                .positions(&pipeline)
                .await?
                .into_iter()
                .map(|(partition, position)| (partition, position.offset))
                .collect();
            let watermarks: BTreeMap<u32, Option<Millis>> = store
                .watermarks(&metric, generation)
                .await?
                .into_iter()
                .collect();
            for status in statuses {
                let partition = status.partition();
                if let Some(&offset) = positions.get(&partition) {
                    let watermark = watermarks.get(&partition).copied().flatten();
                    status.committed_elsewhere(offset, watermark);
                }
            }
        }
        Ok(())
    }

    /// A metric's state the store does not have yet, per partition of its current generation
    /// (optionally one tenant's), with that generation. Laid over the generation's stored rows
    /// it gives every event processed so far (see [`LiveWindows`]); a partition that is
    /// restarting is left out (its committed rows stand for it).
    pub async fn live_windows(
        &self,
        name: &str,
        tenant: Option<&str>,
    ) -> Result<(u32, Vec<(u32, LiveWindows)>), PipelineError> {
        let (generation, senders): (u32, Vec<(u32, mpsc::Sender<Request>)>) = {
            let running = self.inner.running.lock().await;
            let metric = running
                .get(name)
                .ok_or_else(|| StoreError::UnknownMetric(name.to_owned()))?;
            (metric.current.generation, metric.current.senders())
        };
        let mut answers = Vec::with_capacity(senders.len());
        for (partition, sender) in senders {
            let (reply, answer) = oneshot::channel();
            let ask = Request::Task(Control::LiveWindows {
                metric: name.to_owned(),
                tenant: tenant.map(str::to_owned),
                reply,
            });
            if sender.send(ask).await.is_ok() {
                answers.push((partition, answer));
            }
        }
        let mut windows = Vec::with_capacity(answers.len());
        for (partition, answer) in answers {
            if let Ok(Ok(live)) = answer.await {
                windows.push((partition, live));
            }
        }
        Ok((generation, windows))
    }

    /// Commits a checkpoint on every partition of a metric's current pipeline now, and
    /// returns once all are committed (used before a replay switches generations and by
    /// tests that read the store).
    pub async fn checkpoint(&self, name: &str) -> Result<(), PipelineError> {
        let senders: Vec<mpsc::Sender<Request>> = {
            let running = self.inner.running.lock().await;
            let metric = running
                .get(name)
                .ok_or_else(|| StoreError::UnknownMetric(name.to_owned()))?;
            metric
                .current
                .senders()
                .into_iter()
                .map(|(_, sender)| sender)
                .collect()
        };
        checkpoint_all(&senders).await
    }

    /// Recomputes a metric from the log — everything, or the windows from `from_time` on —
    /// into a new generation, and makes it current atomically once it has caught up. Returns
    /// at once; [`Pipelines::status`] shows the progress.
    ///
    /// The replay is recorded in the store ([`ReplayPlan`]): every node of a cluster runs it on
    /// the partitions it owns ([`Pipelines::adopt_replays`]), any of them makes it current
    /// once every partition has committed its target, and a restart resumes it.
    pub async fn replay(&self, name: &str, from_time: Option<Millis>) -> Result<(), PipelineError> {
        let _catalogue = self.inner.catalogue.lock().await;
        let mut running = self.inner.running.lock().await;
        let metric = running
            .get_mut(name)
            .ok_or_else(|| StoreError::UnknownMetric(name.to_owned()))?;
        if metric.replay.is_some() {
            return Err(PipelineError::ReplayRunning(name.to_owned()));
        }
        if metric.plan.is_stream() {
            return Err(PipelineError::StreamReplay(name.to_owned()));
        }
        let offsets = self.offsets(&metric.plan.source).await?;
        let mut initial = Vec::with_capacity(offsets.len());
        for (partition, &(start, end)) in offsets.iter().enumerate() {
            let offset = match from_time {
                None => start,
                // Before the log's start, from the history (the archive) when there is one.
                Some(time) => self
                    .inner
                    .reader
                    .offset_for_time(
                        metric
                            .plan
                            .source
                            .topic(&self.inner.settings.stream.source_topic),
                        partition as u32,
                        time,
                    )
                    .await?
                    .unwrap_or(end),
            };
            initial.push(offset);
        }
        let plan = ReplayPlan {
            generation: metric.record.generation + 1,
            from_time,
            initial,
            targets: offsets.iter().map(|&(_, end)| end).collect(),
        };
        // Recorded first (which also clears what an interrupted replay left behind): another
        // node may have started one.
        if !self.inner.store.begin_replay(name, &plan).await? {
            return Err(PipelineError::ReplayRunning(name.to_owned()));
        }
        self.run_replay(name, metric, plan, &offsets);
        Ok(())
    }

    /// Runs `plan` for `metric` on this node's partitions, and watches for its end.
    fn run_replay(
        &self,
        name: &str,
        metric: &mut Running,
        plan: ReplayPlan,
        offsets: &[(u64, u64)],
    ) {
        // The replayed generation's updates are not live results until it becomes current.
        let quiet = broadcast::channel(1).0;
        let run = self.spawn(&metric.plan, plan.generation, plan.initial, offsets, quiet);
        metric.replay = Some(ReplayRun {
            run,
            from_time: plan.from_time,
            targets: plan.targets,
        });
        let watcher = self.clone();
        let name = name.to_owned();
        let handle = tokio::spawn(async move {
            if let Err(error) = watcher.finish_replay(&name).await {
                tracing::error!(metric = %name, %error, "replay failed; the previous results stay current");
            }
        });
        self.inner.background.lock().push(handle);
    }

    /// Runs the replays recorded in the store that this node does not run yet: those another
    /// node of the cluster started, and those a stop interrupted. Call with the catalogue
    /// lock held.
    async fn adopt_replays(&self) -> Result<(), PipelineError> {
        let recorded = self.inner.store.replays().await?;
        if recorded.is_empty() {
            return Ok(());
        }
        let mut running = self.inner.running.lock().await;
        for (name, plan) in recorded {
            let Some(metric) = running.get_mut(&name) else {
                continue;
            };
            if metric.replay.is_some() || plan.generation != metric.record.generation + 1 {
                continue;
            }
            let offsets = self.offsets(&metric.plan.source).await?;
            if plan.initial.len() != offsets.len() {
                tracing::error!(metric = %name, recorded = plan.initial.len(), partitions = offsets.len(), "a recorded replay does not match the source topic's partitions; it is not resumed: delete the metric and define it again to recompute it");
                continue;
            }
            tracing::info!(metric = %name, generation = plan.generation, "replay recorded in the store (started on another node, or before a stop) runs here too");
            self.run_replay(&name, metric, plan, &offsets);
        }
        Ok(())
    }

    /// Waits until a replay reaches the log's end as it was when the replay started, then
    /// switches generations. A failed partition holds the replay back (its status says so,
    /// and the previous results stay current) until it gets past the failure.
    async fn finish_replay(&self, name: &str) -> Result<(), PipelineError> {
        let mut held_back = false;
        let mut running = loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if self.in_group() {
                // Partitions other nodes compute: their commits, read from the store.
                if let Err(error) = self.refresh_elsewhere(Some(name)).await {
                    tracing::debug!(metric = %name, %error, "cannot read other nodes' progress yet");
                    continue;
                }
            }
            let running = self.inner.running.lock().await;
            let Some(replay) = running.get(name).and_then(|metric| metric.replay.as_ref()) else {
                return Ok(());
            };
            let failed = replay
                .run
                .partitions
                .iter()
                .find_map(|Slot { status, .. }| match status.state() {
                    PartitionState::Failed { reason, .. } => Some((status.partition(), reason)),
                    _ => None,
                });
            match failed {
                Some((partition, reason)) if !held_back => {
                    tracing::error!(metric = %name, generation = replay.run.generation, partition, %reason, "replay held back by a failed partition; the previous results stay current");
                    held_back = true;
                }
                Some(_) => {}
                None => held_back = false,
            }
            let caught_up = replay
                .run
                .partitions
                .iter()
                .zip(&replay.targets)
                .all(|(slot, &target)| slot.status.committed() >= target);
            if !caught_up {
                continue;
            }
            // Everything up to the targets is committed; a last checkpoint of every partition
            // before switching (one that fails now is waited for like any failed partition).
            let senders: Vec<_> = replay
                .run
                .senders()
                .into_iter()
                .map(|(_, sender)| sender)
                .collect();
            match checkpoint_all(&senders).await {
                Ok(()) => break running,
                Err(error) => {
                    tracing::warn!(metric = %name, %error, "replay's last checkpoint failed; waiting for its partitions");
                }
            }
        };
        let Some(metric) = running.get_mut(name) else {
            return Ok(());
        };
        let Some(replay) = metric.replay.take() else {
            return Ok(());
        };
        let generation = replay.run.generation;
        let keep_before = replay.from_time;
        replay.run.stop().await;
        let previous = std::mem::replace(
            &mut metric.current,
            PipelineRun {
                plan: Arc::clone(&metric.plan),
                generation,
                start_offsets: Vec::new(),
                partitions: Vec::new(),
                updates: self.inner.updates.clone(),
                cancel: CancellationToken::new(),
            },
        );
        previous.stop().await;
        self.inner
            .store
            .switch_generation(name, generation, keep_before)
            .await?;
        // Resume the new generation where it committed, now publishing live updates.
        let offsets = self.offsets(&metric.plan.source).await?;
        metric.current = self.spawn(
            &metric.plan,
            generation,
            offsets.iter().map(|&(_, end)| end).collect(),
            &offsets,
            self.inner.updates.clone(),
        );
        metric.record.generation = generation;
        self.inner
            .plans
            .lock()
            .insert(name.to_owned(), (Arc::clone(&metric.plan), generation));
        tracing::info!(metric = %name, generation, "replay finished; its results are current");
        Ok(())
    }

    /// Stops every pipeline after a last checkpoint.
    pub async fn stop(&self) {
        for handle in self.inner.background.lock().drain(..) {
            handle.abort();
        }
        let running = std::mem::take(&mut *self.inner.running.lock().await);
        for (_, metric) in running {
            metric.current.stop().await;
            if let Some(replay) = metric.replay {
                replay.run.stop().await;
            }
        }
        let member = self.inner.member.lock().take();
        if let Some(member) = member {
            member.leave().await;
        }
    }
}

async fn checkpoint_all(senders: &[mpsc::Sender<Request>]) -> Result<(), PipelineError> {
    let mut answers = Vec::new();
    for sender in senders {
        let (reply, answer) = oneshot::channel();
        if sender.send(Request::Checkpoint { reply }).await.is_ok() {
            answers.push(answer);
        }
    }
    for answer in answers {
        match answer.await {
            Ok(Ok(_)) => {}
            Ok(Err(reason)) => return Err(StoreError::Invalid(reason).into()),
            Err(_) => return Err(StoreError::Closed.into()),
        }
    }
    Ok(())
}

fn describe(metric: &Running, ends: &[u64]) -> MetricStatus {
    let run = &metric.current;
    let partitions = reports(run, ends);
    let lag: u64 = partitions
        .iter()
        .map(|p| p.end_offset.saturating_sub(p.committed_offset))
        .sum();
    let watermark = partitions.iter().map(|p| p.watermark).min().flatten();
    let (troubled, error) = trouble(&partitions);
    let total: u64 = run
        .start_offsets
        .iter()
        .zip(&partitions)
        .map(|(start, p)| p.end_offset.saturating_sub(*start))
        .sum();
    let done: u64 = run
        .start_offsets
        .iter()
        .zip(&partitions)
        .map(|(start, p)| p.committed_offset.saturating_sub(*start))
        .sum();
    let backfilling =
        metric.record.backfill && lag > 0 && total > 0 && (done as f64 / total as f64) < 0.99;
    let state = troubled.unwrap_or(if backfilling {
        "backfilling"
    } else {
        "running"
    });
    let replay = metric.replay.as_ref().map(|replay| {
        let partitions = reports(&replay.run, ends);
        let total: u64 = replay
            .run
            .start_offsets
            .iter()
            .zip(&replay.targets)
            .map(|(s, t)| t.saturating_sub(*s))
            .sum();
        let done: u64 = replay
            .run
            .start_offsets
            .iter()
            .zip(&partitions)
            .zip(&replay.targets)
            .map(|((s, p), t)| p.committed_offset.min(*t).saturating_sub(*s))
            .sum();
        let (troubled, error) = trouble(&partitions);
        ReplayStatus {
            generation: replay.run.generation,
            from_time: replay.from_time,
            progress: if total == 0 {
                1.0
            } else {
                done as f64 / total as f64
            },
            state: troubled.unwrap_or("running"),
            error,
            partitions,
        }
    });
    MetricStatus {
        record: metric.record.clone(),
        kind: match metric.plan.output {
            sluice_stream::plan::Output::Windows => "metric",
            sluice_stream::plan::Output::Records(_) => "stream",
            sluice_stream::plan::Output::Sessions { .. } => "sessions",
            sluice_stream::plan::Output::Identity => "identity",
        },
        source: match &metric.plan.source {
            Source::Events => "events".to_owned(),
            Source::Stream(stream) => stream.clone(),
        },
        state,
        error,
        lag,
        watermark,
        lost_offsets: partitions.iter().map(|p| p.lost_offsets).sum(),
        backfill_progress: (metric.record.backfill && total > 0)
            .then(|| (done as f64 / total as f64).min(1.0)),
        replay,
        partitions,
    }
}

/// Each partition of a pipeline, against the log's end offsets.
fn reports(run: &PipelineRun, ends: &[u64]) -> Vec<PartitionReport> {
    run.partitions
        .iter()
        .map(|Slot { status, .. }| PartitionReport {
            partition: status.partition(),
            committed_offset: status.committed(),
            processed_offset: status.processed().max(status.committed()),
            end_offset: ends.get(status.partition() as usize).copied().unwrap_or(0),
            watermark: status.watermark(),
            lost_offsets: status.lost_offsets(),
            state: status.state(),
        })
        .collect()
}

/// `failed` if a partition failed, else `retrying` if one retries, with the first reason.
fn trouble(partitions: &[PartitionReport]) -> (Option<&'static str>, Option<String>) {
    let failed = partitions
        .iter()
        .any(|p| matches!(p.state, PartitionState::Failed { .. }));
    let retrying = partitions
        .iter()
        .any(|p| matches!(p.state, PartitionState::Retrying { .. }));
    let error = partitions
        .iter()
        .filter(|p| !failed || matches!(p.state, PartitionState::Failed { .. }))
        .find_map(|p| p.state.reason().map(str::to_owned));
    let state = if failed {
        Some("failed")
    } else if retrying {
        Some("retrying")
    } else {
        None
    };
    (state, error)
}
