//! The archivers: one task per partition of the source topic, each running the protocol in
//! the crate docs (read a batch, record it as pending, write its files, commit its end).

use crate::compact;
use crate::config::{ArchiveConfig, Location};
use crate::format::{Capacity, Fields, Rows};
use crate::layout::{Layout, Pending, hour_of};
use crate::promote::Promotions;
use crate::scan::EventScan;
use crate::target::Target;
use sluice_core::erasure::ErasedUsers;
use sluice_core::time::Millis;
use sluice_log::{EpochStart, Log, LogError, ReadBuffer, ReadOptions, rewind_target};
use sluice_store::{Commit, StoreBackend, StoreError};
use std::collections::HashMap;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The store pipeline whose positions are the archive's: per partition, the first offset not
/// yet archived.
pub const PIPELINE: &str = "archive";

/// Most (tenant, hour) files one batch may write: a batch of events scattered over many
/// hours is written early rather than as thousands of tiny files at once.
const MAX_FILES_PER_BATCH: usize = 256;

/// What one read of the log asks for.
const READ_BYTES: usize = 1 << 20;

/// The longest an idle read waits, so a stop or a due roll is noticed.
const IDLE_WAIT: Duration = Duration::from_millis(500);

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
}

/// The running archivers.
#[derive(Debug)]
pub struct Archive {
    tasks: Vec<JoinHandle<()>>,
    cancel: CancellationToken,
    location: String,
}

impl Archive {
    /// Starts archiving every partition of `topic` into `location`, skipping the events of
    /// `erased` ids. Fails at once when the location cannot be written (a directory that
    /// cannot be made, a missing bucket, wrong credentials), or the topic cannot be described.
    pub async fn start<L: Log>(
        log: Arc<L>,
        store: StoreBackend,
        topic: &str,
        location: Location,
        config: &ArchiveConfig,
        erased: Arc<ErasedUsers>,
    ) -> Result<Archive, ArchiveError> {
        let target = Target::open(&location)?;
        Self::start_on(log, store, topic, target, config, erased).await
    }

    /// [`Archive::start`] on an opened target.
    pub(crate) async fn start_on<L: Log>(
        log: Arc<L>,
        store: StoreBackend,
        topic: &str,
        target: Target,
        config: &ArchiveConfig,
        erased: Arc<ErasedUsers>,
    ) -> Result<Archive, ArchiveError> {
        target.check_writable().await?;
        let partitions = log
            .describe(Some(topic))
            .await?
            .into_iter()
            .flat_map(|info| info.partitions)
            .collect::<Vec<_>>();
        let cancel = CancellationToken::new();
        let promotions = Arc::new(Promotions::new(&config.columns));
        let mut tasks: Vec<JoinHandle<()>> = partitions
            .into_iter()
            .map(|info| {
                let archiver = Archiver {
                    log: Arc::clone(&log),
                    store: store.clone(),
                    topic: topic.to_owned(),
                    partition: info.partition,
                    target: target.clone(),
                    erased: Arc::clone(&erased),
                    promotions: Arc::clone(&promotions),
                    roll_bytes: config.roll_bytes(),
                    roll_age: config.roll_age(),
                    cancel: cancel.clone(),
                    compacted: std::sync::Mutex::new(None),
                    end_at_launch: std::sync::Mutex::new(Some(info.end_offset)),
                };
                tokio::spawn(archiver.run())
            })
            .collect();
        if config.has_retention() {
            tasks.push(tokio::spawn(crate::retention::run(
                target.clone(),
                config.clone(),
                cancel.clone(),
            )));
        }
        let location = target.location();
        tracing::info!(%location, topic, "archiving events as Parquet");
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
    topic: String,
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
            .claim(PIPELINE, self.partition, first, log_epoch)
            .await?;
        let epoch = position.epoch;
        self.recover(position.offset).await?;
        let finished = compact::recover(&self.target, self.partition).await?;
        if finished > 0 {
            tracing::info!(
                partition = self.partition,
                removed = finished,
                "finished a compaction a crash interrupted: deleted the files merged into its output"
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
                .reposition(PIPELINE, self.partition, epoch, target, log_epoch)
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
                    .reposition(PIPELINE, self.partition, epoch, current.start, log_epoch)
                    .await?;
            }
            let (end, hints) = (current.end, current.capacities());
            let (committed, next) = tokio::join!(
                self.write_and_commit(current, epoch, log_epoch),
                self.read_batch(end, hints)
            );
            committed?;
            batch = next?;
            expected = end;
        }
        Ok(())
    }

    /// Steps 1 to 3 of the protocol for one batch.
    async fn write_and_commit(
        &self,
        batch: Batch,
        epoch: u64,
        log_epoch: u32,
    ) -> Result<(), ArchiveError> {
        let commit = Commit {
            offset: batch.end,
            event_time: batch.latest,
            log_epoch,
            metrics: Vec::new(),
            output: Vec::new(),
            note: None,
        };
        self.write(batch).await?;
        self.store
            .commit(PIPELINE, self.partition, epoch, Arc::new(commit))
            .await?;
        self.compact_when_due().await;
        Ok(())
    }

    /// Merges this partition's small files of settled hours, every [`compact::COMPACT_INTERVAL`]
    /// (right after a commit: no batch of this partition is pending). A failure is logged;
    /// the next start finishes or drops what it left.
    async fn compact_when_due(&self) {
        {
            let mut last = self.compacted.lock().unwrap_or_else(|e| e.into_inner());
            if last.is_some_and(|last| last.elapsed() < compact::COMPACT_INTERVAL) {
                return;
            }
            *last = Some(Instant::now());
        }
        let now = sluice_core::time::now_millis();
        match compact::compact(&self.target, self.partition, now, self.roll_age).await {
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
            Err(error) => {
                metrics::counter!("sluice_archive_errors_total").increment(1);
                tracing::error!(partition = self.partition, %error, "compacting the archive failed; the next start finishes or drops it");
            }
        }
    }

    /// The partition's first retained offset (where a partition never archived starts), its
    /// end, and its epochs.
    async fn source(&self) -> Result<(u64, u64, Vec<EpochStart>), ArchiveError> {
        let epochs = self.log.epochs(&self.topic, self.partition).await?;
        let (start, end) = self
            .log
            .describe(Some(&self.topic))
            .await?
            .iter()
            .flat_map(|info| &info.partitions)
            .find(|info| info.partition == self.partition)
            .map_or((0, 0), |info| (info.start_offset, info.end_offset));
        Ok((start, end, epochs))
    }

    /// Deletes the files of a batch that was written but not committed.
    async fn recover(&self, committed: u64) -> Result<(), ArchiveError> {
        let partition = self.partition;
        let removed = match self.target.read_pending(partition).await? {
            Some(pending) if pending.start == committed => self.target.discard(&pending).await?,
            _ => 0,
        };
        if removed > 0 {
            tracing::info!(
                partition,
                removed,
                from = committed,
                "deleted the files of an archive batch that was never committed; it is archived again"
            );
        }
        Ok(())
    }

    /// Reads the batch starting at `start` (or, when retention removed events from there, at
    /// the log's first offset: the batch's `start` says which), its files reserving what `hints`
    /// say the previous batch's held; `None` once stopped.
    async fn read_batch(&self, start: u64, hints: Hints) -> Result<Option<Batch>, ArchiveError> {
        let mut batch = Batch::new(start, hints);
        let mut scan = EventScan::default();
        // One buffer for the batch's reads: each read refills it instead of allocating.
        let mut records = ReadBuffer::new();
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
            let options = ReadOptions {
                max_bytes: READ_BYTES,
                max_wait: wait,
            };
            let read = tokio::select! {
                read = self.log.read_into(&self.topic, self.partition, batch.end, options, &mut records) => read,
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
            for stored in records.iter() {
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
                        tracing::error!(partition = self.partition, offset = stored.offset, %error, "a record of the events topic is not an event; it is not archived");
                    }
                }
                batch.end = stored.offset + 1;
            }
            if !records.is_empty() && batch.first_read.is_none() {
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

    /// Steps 1 and 2 of the protocol: records the batch as pending, then writes its files,
    /// durably.
    async fn write(&self, batch: Batch) -> Result<(), ArchiveError> {
        let events: usize = batch
            .rows
            .values()
            .flat_map(HashMap::values)
            .map(Rows::len)
            .sum();
        let (pending, files) = batch_files(self.partition, batch);
        self.target.write_pending(self.partition, &pending).await?;
        let count = files.len();
        let bytes = self.target.write_files(files).await?;
        metrics::counter!("sluice_archive_events_total").increment(events as u64);
        metrics::counter!("sluice_archive_files_total").increment(count as u64);
        metrics::counter!("sluice_archive_bytes_total").increment(bytes);
        Ok(())
    }
}

/// The batch's pending record and its files, by name.
fn batch_files(partition: u32, batch: Batch) -> (Pending, Vec<(String, Rows)>) {
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
    let pending = Pending {
        start: batch.start,
        end: batch.end,
        files: files.iter().map(|(name, _)| name.clone()).collect(),
    };
    (pending, files)
}

#[cfg(test)]
mod tests;
