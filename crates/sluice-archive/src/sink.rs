//! The archivers: one task per partition of the source topic, each running the protocol in
//! the crate docs (read a batch, record it as pending, write its files, commit its end).

use crate::compact;
use crate::config::{ArchiveConfig, Location};
use crate::format::{Capacity, Fields, Rows};
use crate::layout::{Layout, hour_of};
use crate::promote::Promotions;
use crate::publish::{Mark, Owner, Published};
use crate::scan::EventScan;
use crate::target::Target;
use sluice_core::erasure::ErasedUsers;
use sluice_core::time::Millis;
use sluice_log::{EpochStart, Log, LogError, ReadBuffer, ReadOptions, rewind_target};
use sluice_store::{StoreBackend, StoreError};
use sluice_stream::error::StreamError;
use sluice_stream::task::{Committed, Visible};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The store pipeline whose positions are the archive's: per partition, the first offset not
/// yet archived. A derived stream's archive has its own, `archive/<stream>`.
pub const PIPELINE: &str = "archive";

/// What an archive archives.
#[derive(Clone)]
pub struct Archived {
    /// The topic read.
    pub topic: String,
    /// The store pipeline of its positions.
    pub pipeline: String,
    /// Where its files go under the archive's root (`""`: the root; `streams/<name>/`).
    pub under: String,
    /// For a derived stream: which of its records are committed (only those are archived).
    pub committed: Option<Arc<dyn Committed>>,
}

impl std::fmt::Debug for Archived {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Archived")
            .field("topic", &self.topic)
            .field("pipeline", &self.pipeline)
            .field("under", &self.under)
            .finish_non_exhaustive()
    }
}

impl Archived {
    /// The accepted events, the topic `topic`, into the archive's root.
    pub fn events(topic: &str) -> Archived {
        Archived {
            topic: topic.to_owned(),
            pipeline: PIPELINE.to_owned(),
            under: String::new(),
            committed: None,
        }
    }

    /// The derived stream `name` (its topic), into `streams/<name>/` under the archive's
    /// root: the records `committed` says its writers committed, as a derived stream's reader
    /// reads them.
    pub fn stream(name: &str, committed: Arc<dyn Committed>) -> Archived {
        Archived {
            topic: name.to_owned(),
            pipeline: format!("{PIPELINE}/{name}"),
            under: format!("streams/{name}/"),
            committed: Some(committed),
        }
    }

    fn is_stream(&self) -> bool {
        self.committed.is_some()
    }
}

/// Most (tenant, hour) files one batch may write: a batch of events scattered over many
/// hours is written early rather than as thousands of tiny files at once.
const MAX_FILES_PER_BATCH: usize = 256;

/// What one read of the log asks for.
const READ_BYTES: usize = 1 << 20;

/// The longest an idle read waits, so a stop or a due roll is noticed.
const IDLE_WAIT: Duration = Duration::from_millis(500);

/// How often a node looks for partitions it owns whose archiver stopped.
const RESTART_CHECK: Duration = Duration::from_secs(10);

/// The longest wait between attempts after an error.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Why archiving stopped or cannot start.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// The archive's directory (or a file of it) cannot be written or read.
    #[error("the archive at {location}: {source}")]
    Io {
        /// The archive's location.
        location: String,
        /// What failed.
        source: io::Error,
    },
    /// A request to the archive's S3 bucket failed.
    #[error("the archive at {location}: {source}")]
    S3 {
        /// The archive's location.
        location: String,
        /// What failed.
        source: object_store::Error,
    },
    /// The archive's S3 bucket cannot be written (checked at the start).
    #[error(
        "cannot put, read and delete objects in the archive at {location}: {reason}. Check that the bucket exists (in AWS_REGION, or at AWS_ENDPOINT_URL for an S3-compatible store) and that the credentials (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or the instance's role) may write under that prefix"
    )]
    S3Access {
        /// The archive's location.
        location: String,
        /// What S3 answered (its error code and message), or what failed.
        reason: String,
    },
    /// The log failed.
    #[error(transparent)]
    Log(#[from] LogError),
    /// The store failed (or another owner fenced this one out).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A derived stream's committed ranges could not be read.
    #[error(transparent)]
    Committed(#[from] StreamError),
}

/// The running archivers.
#[derive(Debug)]
pub struct Archive {
    tasks: Vec<JoinHandle<()>>,
    cancel: CancellationToken,
    location: String,
}

impl Archive {
    /// Starts archiving `partitions` of `archived`'s topic into `location`, skipping the
    /// records of `erased` ids. Fails at once when the location cannot be written (a
    /// directory that cannot be made, a missing bucket, wrong credentials), or the topic
    /// cannot be described.
    pub async fn start<L: Log>(
        log: Arc<L>,
        store: StoreBackend,
        archived: Archived,
        location: Location,
        config: &ArchiveConfig,
        erased: Arc<ErasedUsers>,
        partitions: Partitions,
    ) -> Result<Archive, ArchiveError> {
        let target = Target::open(&location)?;
        Self::start_on(log, store, archived, target, config, erased, partitions).await
    }

    /// [`Archive::start`] on an opened target (the archive's root).
    pub(crate) async fn start_on<L: Log>(
        log: Arc<L>,
        store: StoreBackend,
        archived: Archived,
        target: Target,
        config: &ArchiveConfig,
        erased: Arc<ErasedUsers>,
        partitions: Partitions,
    ) -> Result<Archive, ArchiveError> {
        let target = target.under(&archived.under);
        let topic = archived.topic.as_str();
        target.check_writable().await?;
        let described = log
            .describe(Some(topic))
            .await?
            .into_iter()
            .flat_map(|info| info.partitions)
            .collect::<Vec<_>>();
        let cancel = CancellationToken::new();
        // A derived stream's records have no promoted columns.
        let promotions = Arc::new(match archived.is_stream() {
            true => Promotions::derived(),
            false => Promotions::new(&config.columns),
        });
        let (roll_bytes, roll_age) = (config.roll_bytes(), config.roll_age());
        let (source, archive_target) = (archived.clone(), target.clone());
        let spawn = move |partition: u32, end_at_launch: Option<u64>, cancel: CancellationToken| {
            let archiver = Archiver {
                log: Arc::clone(&log),
                store: store.clone(),
                archived: source.clone(),
                partition,
                target: archive_target.clone(),
                erased: Arc::clone(&erased),
                promotions: Arc::clone(&promotions),
                roll_bytes,
                roll_age,
                cancel,
                compacted: std::sync::Mutex::new(None),
                end_at_launch: std::sync::Mutex::new(end_at_launch),
            };
            tokio::spawn(archiver.run())
        };
        let mut tasks: Vec<JoinHandle<()>> = match partitions {
            Partitions::All => described
                .into_iter()
                .map(|info| spawn(info.partition, Some(info.end_offset), cancel.clone()))
                .collect(),
            Partitions::Owned(owned) => {
                vec![tokio::spawn(follow(owned, spawn, cancel.clone()))]
            }
        };
        if config.has_retention() {
            tasks.push(tokio::spawn(crate::retention::run(
                target.clone(),
                config.clone(),
                cancel.clone(),
            )));
        }
        let location = target.location();
        tracing::info!(%location, topic, "archiving as Parquet");
        Ok(Archive {
            tasks,
            cancel,
            location,
        })
    }

    /// Where the archive is (a directory, or `s3://bucket/prefix`).
    pub fn location(&self) -> &str {
        &self.location
    }

    /// Stops every archiver. A batch not yet committed is archived again by the next start.
    pub async fn stop(self) {
        self.cancel.cancel();
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// Which partitions of the source a node archives.
#[derive(Debug)]
pub enum Partitions {
    /// Every one: the node owns the log.
    All,
    /// Those its pipelines own in a cluster, as the consumer group moves them
    /// (`Pipelines::owned_partitions`).
    Owned(watch::Receiver<BTreeSet<u32>>),
}

/// Keeps one archiver running per partition of `owned` until `cancel`: starts one for each
/// partition that arrives, stops the archivers of those that leave (their next owner's claim
/// fences them anyway), and starts again one that stopped while its partition is still owned
/// (another node's archiver, not yet told it lost the partition, fenced it out).
async fn follow(
    mut owned: watch::Receiver<BTreeSet<u32>>,
    spawn: impl Fn(u32, Option<u64>, CancellationToken) -> JoinHandle<()>,
    cancel: CancellationToken,
) {
    let mut running: BTreeMap<u32, (CancellationToken, JoinHandle<()>)> = BTreeMap::new();
    let mut stopping: Vec<JoinHandle<()>> = Vec::new();
    let mut check = tokio::time::interval(RESTART_CHECK);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let wanted = owned.borrow_and_update().clone();
        let gone: Vec<u32> = running
            .keys()
            .filter(|partition| !wanted.contains(partition))
            .copied()
            .collect();
        for partition in gone {
            if let Some((token, task)) = running.remove(&partition) {
                token.cancel();
                stopping.push(task);
                tracing::info!(
                    partition,
                    "the partition left this node: its archiver stops"
                );
            }
        }
        stopping.retain(|task| !task.is_finished());
        for &partition in &wanted {
            if running
                .get(&partition)
                .is_none_or(|(_, task)| task.is_finished())
            {
                let token = cancel.child_token();
                running.insert(partition, (token.clone(), spawn(partition, None, token)));
            }
        }
        tokio::select! {
            changed = owned.changed() => if changed.is_err() { break },
            _ = check.tick() => {}
            () = cancel.cancelled() => break,
        }
    }
    cancel.cancel();
    let tasks = running.into_values().map(|(_, task)| task).chain(stopping);
    for task in tasks {
        let _ = task.await;
    }
}

/// A batch being read: its offsets and its events by tenant and hour.
#[derive(Debug)]
struct Batch {
    start: u64,
    end: u64,
    rows: HashMap<String, HashMap<Millis, Rows>>,
    /// What the previous batch's files held, by tenant and hour: a file of this batch
    /// reserves that (and an eighth more) when it starts.
    hints: Hints,
    files: usize,
    bytes: usize,
    first_read: Option<Instant>,
    latest: Option<Millis>,
}

/// Row and column sizes of a batch's files, by tenant and hour.
type Hints = HashMap<String, HashMap<Millis, Capacity>>;

impl Batch {
    fn new(start: u64, hints: Hints) -> Self {
        Self {
            start,
            end: start,
            rows: HashMap::new(),
            hints,
            files: 0,
            bytes: 0,
            first_read: None,
            latest: None,
        }
    }

    fn push(
        &mut self,
        partition: u32,
        offset: u64,
        event: &Fields<'_>,
        size: usize,
        promotions: &Promotions,
    ) {
        let hour = hour_of(event.timestamp);
        let hours = match self.rows.get_mut(&*event.tenant) {
            Some(hours) => hours,
            None => self.rows.entry(event.tenant.to_string()).or_default(),
        };
        let rows = hours.entry(hour).or_insert_with(|| {
            self.files += 1;
            let capacity = self
                .hints
                .get(&*event.tenant)
                .and_then(|hours| hours.get(&hour))
                .map_or_else(Capacity::default, |hint| hint.with_headroom());
            Rows::with_capacity(promotions.of(&event.tenant), capacity)
        });
        rows.push(partition, offset, event);
        self.bytes += size;
        self.latest = self.latest.max(Some(event.timestamp));
    }

    /// What this batch's files hold: the next batch's hints.
    fn capacities(&self) -> Hints {
        self.rows
            .iter()
            .map(|(tenant, hours)| {
                let sizes = hours.iter().map(|(&hour, rows)| (hour, rows.capacity()));
                (tenant.clone(), sizes.collect())
            })
            .collect()
    }

    fn is_empty(&self) -> bool {
        self.end == self.start
    }
}

/// One partition's archiver.
struct Archiver<L> {
    log: Arc<L>,
    store: StoreBackend,
    archived: Archived,
    partition: u32,
    target: Target,
    erased: Arc<ErasedUsers>,
    promotions: Arc<Promotions>,
    roll_bytes: usize,
    roll_age: Duration,
    cancel: CancellationToken,
    /// When this archiver last compacted.
    compacted: std::sync::Mutex<Option<Instant>>,
    /// The partition's end when the archive started, taken by the first claim.
    end_at_launch: std::sync::Mutex<Option<u64>>,
}

impl<L: Log> Archiver<L> {
    /// Archives until stopped, starting over (claim, recovery) after each error.
    async fn run(self) {
        let mut backoff = Duration::from_millis(100);
        loop {
            match self.archive().await {
                Ok(()) => return,
                Err(ArchiveError::Store(StoreError::Fenced { .. })) => {
                    tracing::warn!(
                        partition = self.partition,
                        "another archiver owns this partition now; this one stops"
                    );
                    return;
                }
                Err(error) => {
                    metrics::counter!("sluice_archive_errors_total").increment(1);
                    tracing::error!(partition = self.partition, %error, retry_in = ?backoff, "archiving failed; it starts again from the last committed batch");
                }
            }
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                () = self.cancel.cancelled() => return,
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// Claims the partition, cleans up after an uncommitted batch, then archives batch after
    /// batch until stopped.
    async fn archive(&self) -> Result<(), ArchiveError> {
        let (first, end, epochs) = self.source().await?;
        let log_epoch = epochs.last().map_or(0, |current| current.epoch);
        let position = self
            .store
            .claim(&self.archived.pipeline, self.partition, first, log_epoch)
            .await?;
        let epoch = position.epoch;
        let owner = Owner {
            store: self.store.clone(),
            pipeline: self.archived.pipeline.clone(),
            partition: self.partition,
            epoch,
        };
        let (published, dropped) = owner.recover(&self.target).await?;
        if published != Published::default() || dropped > 0 {
            tracing::info!(
                partition = self.partition,
                published = published.moved,
                deleted = published.deleted,
                dropped_staged = dropped,
                "finished publishing what the last owner committed, and deleted what older owners staged but never committed"
            );
        }
        // The first claim measures the position against the end before anything was appended
        // since the start (as the pipelines' do).
        let at_launch = self
            .end_at_launch
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let end = at_launch.map_or(end, |at_launch| at_launch.min(end));
        let mut expected = position.offset;
        if let Some(target) = rewind_target(position.offset, position.log_epoch, &epochs, end) {
            // A repair cut the log's tail after it was archived, and new events take those
            // offsets: they are archived too. The archived events of the lost range stay
            // (they were accepted and happened, as the metrics keep counting them).
            let lost = position.offset - target;
            self.store
                .reposition(
                    &self.archived.pipeline,
                    self.partition,
                    epoch,
                    target,
                    log_epoch,
                )
                .await?;
            metrics::counter!("sluice_archive_rewound_offsets_total").increment(lost);
            tracing::error!(
                partition = self.partition,
                committed_offset = position.offset,
                rewound_to = target,
                log_epoch,
                lost_offsets = lost,
                "the log no longer holds {lost} events the archive has (a repair cut its tail; new events reuse the offsets): archiving again from {target}; the archived events of the lost range stay, so (log_partition, log_offset) repeats there with other message ids"
            );
            expected = target;
        }
        let mut batch = self.read_batch(expected, Hints::new()).await?;
        // The next batch is read while this one is written and committed; its own pending
        // record is written only after that commit.
        while let Some(current) = batch {
            if current.start != expected {
                // Retention removed events before they were read: the position moves past
                // them (counted as lost in the store) before the batch after them is written.
                self.store
                    .reposition(
                        &self.archived.pipeline,
                        self.partition,
                        epoch,
                        current.start,
                        log_epoch,
                    )
                    .await?;
            }
            let (end, hints) = (current.end, current.capacities());
            let (committed, next) = tokio::join!(
                self.write_and_commit(current, &owner, log_epoch),
                self.read_batch(end, hints)
            );
            committed?;
            batch = next?;
            expected = end;
        }
        Ok(())
    }

    /// Stages the batch's files, commits its end with them, publishes them (the protocol of
    /// [`crate::publish`]), then compacts when due.
    async fn write_and_commit(
        &self,
        batch: Batch,
        owner: &Owner,
        log_epoch: u32,
    ) -> Result<(), ArchiveError> {
        let mark = Mark {
            offset: batch.end,
            event_time: batch.latest,
            log_epoch,
        };
        let files = self.stage(batch, owner).await?;
        owner
            .commit_and_publish(&self.target, mark, files, Vec::new())
            .await?;
        self.compact_when_due(owner, mark).await
    }

    /// Merges this partition's small files of settled hours, every [`compact::COMPACT_INTERVAL`]
    /// (right after a publish: `mark` is the committed position), and deletes what fenced
    /// owners staged meanwhile. A failed compaction is logged; a fenced one stops the archiver.
    async fn compact_when_due(&self, owner: &Owner, mark: Mark) -> Result<(), ArchiveError> {
        {
            let mut last = self.compacted.lock().unwrap_or_else(|e| e.into_inner());
            if last.is_some_and(|last| last.elapsed() < compact::COMPACT_INTERVAL) {
                return Ok(());
            }
            *last = Some(Instant::now());
        }
        let now = sluice_core::time::now_millis();
        let compacted = compact::compact(&self.target, owner, mark, now, self.roll_age).await;
        match compacted {
            Ok(done) if done.outputs > 0 => {
                metrics::counter!("sluice_archive_compacted_files_total")
                    .increment(done.inputs as u64);
                tracing::info!(
                    partition = self.partition,
                    outputs = done.outputs,
                    inputs = done.inputs,
                    "compacted the archive's small files"
                );
            }
            Ok(_) => {}
            Err(fenced @ ArchiveError::Store(StoreError::Fenced { .. })) => return Err(fenced),
            Err(error) => {
                metrics::counter!("sluice_archive_errors_total").increment(1);
                tracing::error!(partition = self.partition, %error, "compacting the archive failed; what it staged is deleted by a later compaction or start");
            }
        }
        match owner.drop_older(&self.target).await {
            Ok(0) => {}
            Ok(dropped) => tracing::info!(
                partition = self.partition,
                dropped,
                "deleted files an older owner of the partition staged but never committed"
            ),
            Err(error) => {
                tracing::warn!(partition = self.partition, %error, "could not delete what older owners staged; the next compaction tries again");
            }
        }
        Ok(())
    }

    /// The partition's first retained offset (where a partition never archived starts), its
    /// end, and its epochs.
    async fn source(&self) -> Result<(u64, u64, Vec<EpochStart>), ArchiveError> {
        let topic = &self.archived.topic;
        let epochs = self.log.epochs(topic, self.partition).await?;
        let (start, end) = self
            .log
            .describe(Some(topic))
            .await?
            .iter()
            .flat_map(|info| &info.partitions)
            .find(|info| info.partition == self.partition)
            .map_or((0, 0), |info| (info.start_offset, info.end_offset));
        Ok((start, end, epochs))
    }

    /// Reads the batch starting at `start` (or, when retention removed events from there, at
    /// the log's first offset: the batch's `start` says which), its files reserving what `hints`
    /// say the previous batch's held; `None` once stopped.
    async fn read_batch(&self, start: u64, hints: Hints) -> Result<Option<Batch>, ArchiveError> {
        let mut batch = Batch::new(start, hints);
        let mut scan = match self.archived.is_stream() {
            true => EventScan::derived(),
            false => EventScan::default(),
        };
        // One buffer for the batch's reads: each read refills it instead of allocating.
        let mut records = ReadBuffer::new();
        let topic = self.archived.topic.as_str();
        // A derived stream's records are read inside its committed ranges only.
        let mut visible = self
            .archived
            .committed
            .clone()
            .map(|committed| Visible::new(committed, self.partition));
        loop {
            let age = batch.first_read.map(|first| first.elapsed());
            if !batch.is_empty()
                && (batch.bytes >= self.roll_bytes
                    || batch.files >= MAX_FILES_PER_BATCH
                    || age.is_some_and(|age| age >= self.roll_age))
            {
                return Ok(Some(batch));
            }
            let wait = match age {
                Some(age) => self.roll_age.saturating_sub(age).min(IDLE_WAIT),
                None => IDLE_WAIT,
            };
            let mut below = u64::MAX;
            if let Some(visible) = &mut visible {
                match visible.next(batch.end, topic).await? {
                    // Past a gap of records no commit covers (a crashed writer's): they are
                    // in no batch, and the position moves past them with the batch's end.
                    Some((from, end)) => (batch.end, below) = (from, end),
                    None => {
                        tokio::select! {
                            () = tokio::time::sleep(wait) => {}
                            () = self.cancel.cancelled() => return Ok(None),
                        }
                        continue;
                    }
                }
            }
            let options = ReadOptions {
                max_bytes: READ_BYTES,
                max_wait: wait,
            };
            let read = tokio::select! {
                read = self.log.read_into(topic, self.partition, batch.end, options, &mut records) => read,
                () = self.cancel.cancelled() => return Ok(None),
            };
            match read {
                Ok(()) => {}
                Err(LogError::OffsetOutOfRange { start: first, .. }) if first > batch.end => {
                    if !batch.is_empty() {
                        return Ok(Some(batch));
                    }
                    tracing::warn!(
                        partition = self.partition,
                        from = batch.end,
                        to = first,
                        "retention removed events before they were archived; archiving goes on from the log's first offset"
                    );
                    metrics::counter!("sluice_archive_events_missed_total")
                        .increment(first - batch.end);
                    batch = Batch::new(first, std::mem::take(&mut batch.hints));
                    continue;
                }
                Err(error) => return Err(error.into()),
            };
            let mut read_any = false;
            for stored in records.iter().take_while(|stored| stored.offset < below) {
                read_any = true;
                let value = stored.value;
                // The tenant names a directory: a record whose tenant is no valid tenant name
                // (never the collector's) is not archived rather than written elsewhere.
                let parsed = scan.fields(value).and_then(|event| {
                    sluice_core::tenant::check_tenant_name(&event.tenant).map(|()| event)
                });
                match parsed {
                    Ok(event) if self.is_erased(&event) => {
                        metrics::counter!("sluice_archive_events_erased_total").increment(1);
                    }
                    Ok(event) => batch.push(
                        self.partition,
                        stored.offset,
                        &event,
                        value.len(),
                        &self.promotions,
                    ),
                    Err(error) => {
                        metrics::counter!("sluice_archive_records_skipped_total").increment(1);
                        tracing::error!(topic, partition = self.partition, offset = stored.offset, %error, "a record is not an event (or, of a derived stream, not event-shaped); it is not archived");
                    }
                }
                batch.end = stored.offset + 1;
            }
            if read_any && batch.first_read.is_none() {
                batch.first_read = Some(Instant::now());
            }
        }
    }

    /// Whether the event's user id or anonymous id was erased (`DELETE /v1/users/{id}`): the
    /// collector drops such events from then on; those already in the log are not archived.
    fn is_erased(&self, event: &Fields<'_>) -> bool {
        let ids = event.user_id().into_iter().chain(event.anonymous_id());
        self.erased.any_erased(&event.tenant, ids)
    }

    /// Step 1 of [`crate::publish`]: writes the batch's files into `owner`'s staging
    /// directory, durably; returns their names.
    async fn stage(&self, batch: Batch, owner: &Owner) -> Result<Vec<String>, ArchiveError> {
        let events: usize = batch
            .rows
            .values()
            .flat_map(HashMap::values)
            .map(Rows::len)
            .sum();
        let files = batch_files(self.partition, batch);
        let names: Vec<String> = files.iter().map(|(name, _)| name.clone()).collect();
        let staged = files
            .into_iter()
            .map(|(name, rows)| (owner.staged(&name), rows))
            .collect();
        let bytes = self.target.write_files(staged).await?;
        metrics::counter!("sluice_archive_events_total").increment(events as u64);
        metrics::counter!("sluice_archive_files_total").increment(names.len() as u64);
        metrics::counter!("sluice_archive_bytes_total").increment(bytes);
        Ok(names)
    }
}

/// The batch's files, by name, sorted.
fn batch_files(partition: u32, batch: Batch) -> Vec<(String, Rows)> {
    let mut files: Vec<(String, Rows)> = batch
        .rows
        .into_iter()
        .flat_map(|(tenant, hours)| {
            hours.into_iter().map(move |(hour, rows)| {
                (Layout::file(&tenant, hour, partition, batch.start), rows)
            })
        })
        .collect();
    files.sort_by(|a, b| a.0.cmp(&b.0));
    files
}

#[cfg(test)]
mod tests;
