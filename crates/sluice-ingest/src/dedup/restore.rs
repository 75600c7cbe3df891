//! At start: remembering the ids appended before it, so that a client retrying a request the
//! previous process appended but never answered (it was killed, or the answer was lost) does
//! not create duplicates.
//!
//! 1. Load the [snapshot](super::snapshot) if there is a valid one: the previous process's
//!    generations, and per partition the offset after which the log may hold ids it lacks. A
//!    snapshot covering offsets beyond the log's end (its tail was cut since) is ignored: it
//!    remembers ids of records that are gone, whose retries must be appended again.
//! 2. Read the events topic from those offsets (without a snapshot: from the first record of
//!    the window) to its end, remembering each record's id. At most `budget` records are read
//!    per partition, the newest, so a stale snapshot cannot make the start slow.
//! 3. A damaged range of the log (`LogError::Corrupt`) stops nothing: it is logged at ERROR
//!    with the file the log names, its records are counted as unreadable
//!    (`sluice_ingest_dedup_unreadable_records_total`) and skipped, and reading resumes at the
//!    first readable offset after it.
//! 4. Whatever could not be read (skipped, or over the budget) limits the coverage: it starts
//!    at the first record read after it. The coverage is logged, at WARN when it is less than
//!    the window, and exported as `sluice_ingest_dedup_covered_seconds`.

use super::snapshot::{self, Snapshot};
use super::{Dedup, fingerprint};
use sluice_core::Event;
use sluice_core::time::Millis;
use sluice_log::{Log, LogError, ReadBuffer, ReadOptions};
use std::path::Path;
use std::time::{Duration, Instant};

/// What the start-up read found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Restored {
    /// Ids loaded from the snapshot (`None`: no usable snapshot).
    pub snapshot_ids: Option<usize>,
    /// Records read back from the log.
    pub log_records: u64,
    /// Records of the window that could not be read (damaged log ranges).
    pub unreadable: u64,
    /// Records of the window left unread because a partition held more than the budget.
    pub over_budget: u64,
    /// How long it took.
    pub elapsed: Duration,
    /// Per partition, the offset the read stopped at (the end of the log when it was
    /// described): where following later appends starts.
    pub next_offsets: Vec<u64>,
}

/// Restores `dedup` from the snapshot at `snapshot_path` (if any) and the events `topic`.
/// Fails only when the topic cannot be described; damage is reported and skipped.
pub async fn restore<L: Log>(
    dedup: &Dedup,
    log: &L,
    topic: &str,
    snapshot_path: Option<&Path>,
    now: Millis,
    budget: u64,
) -> Result<Restored, LogError> {
    let started = Instant::now();
    let partitions = log
        .describe(Some(topic))
        .await?
        .into_iter()
        .flat_map(|info| info.partitions)
        .collect::<Vec<_>>();
    let mut restored = Restored::default();
    let snapshot = match snapshot_path {
        Some(path) => load_snapshot(path, topic, partitions.len()).await,
        None => None,
    };
    // A snapshot that covers offsets the log no longer holds (recovery or `sluice log repair`
    // cut its tail after the snapshot was written) remembers ids of records that are gone: a
    // retry of one of them must be appended again, not dropped as a duplicate. Which ids those
    // are cannot be told, so the snapshot is set aside and the window read back from the log.
    let snapshot = snapshot.filter(|snapshot| {
        let cut = partitions
            .iter()
            .find(|info| snapshot.next_offsets[info.partition as usize] > info.end_offset);
        if let Some(info) = cut {
            tracing::warn!(
                topic,
                partition = info.partition,
                snapshot_offset = snapshot.next_offsets[info.partition as usize],
                end_offset = info.end_offset,
                "the log ends before the offset the dedup snapshot covers (its tail was cut after the snapshot): the snapshot is ignored and the window is read back from the log"
            );
        }
        cut.is_none()
    });
    if let Some(snapshot) = &snapshot {
        for (index, shard) in snapshot.shards.iter().enumerate() {
            dedup.restore_shard(index, shard.covered_since, shard.generations.clone(), now);
        }
        dedup.limit_coverage(snapshot.floor);
        restored.snapshot_ids = Some(snapshot.ids());
    }
    let window = Millis::try_from(dedup.window().as_millis()).unwrap_or(Millis::MAX);
    let mut reader = Reader {
        log,
        topic,
        dedup,
        now,
        buffer: ReadBuffer::new(),
        restored,
        limit_from_first_record: false,
    };
    for info in &partitions {
        let from = match &snapshot {
            Some(snapshot) => snapshot.next_offsets[info.partition as usize],
            None => match log
                .offset_for_time(topic, info.partition, now.saturating_sub(window))
                .await
            {
                Ok(Some(offset)) => offset,
                Ok(None) => continue,
                Err(error) => {
                    reader.unreadable_partition(info.partition, None, &error);
                    continue;
                }
            },
        };
        let from = from.clamp(info.start_offset, info.end_offset);
        let first = from.max(info.end_offset.saturating_sub(budget));
        if first > from {
            reader.restored.over_budget += first - from;
            reader.limit_from_first_record = true;
        }
        reader
            .read_partition(info.partition, first, info.end_offset)
            .await;
    }
    let mut restored = reader.restored;
    restored.elapsed = started.elapsed();
    let mut next_offsets = vec![0; partitions.len()];
    for info in &partitions {
        if let Some(next) = next_offsets.get_mut(info.partition as usize) {
            *next = info.end_offset;
        }
    }
    restored.next_offsets = next_offsets;
    metrics::counter!("sluice_ingest_dedup_unreadable_records_total")
        .increment(restored.unreadable);
    Ok(restored)
}

/// Loads and checks the snapshot; any problem is logged and the snapshot ignored.
async fn load_snapshot(path: &Path, topic: &str, partitions: usize) -> Option<Snapshot> {
    let owned = path.to_owned();
    let loaded = tokio::task::spawn_blocking(move || {
        snapshot::read(&owned)
            .map_err(|error| error.to_string())?
            .map(|bytes| Snapshot::decode(&bytes))
            .transpose()
    })
    .await
    .unwrap_or_else(|error| Err(error.to_string()));
    let problem = match loaded {
        Ok(None) => return None,
        Ok(Some(snapshot)) if snapshot.topic != topic => format!(
            "it is of topic {:?}, not {topic:?} (ingest.events-topic changed)",
            snapshot.topic
        ),
        Ok(Some(snapshot)) if snapshot.next_offsets.len() != partitions => format!(
            "it has {} partitions, the topic {partitions}",
            snapshot.next_offsets.len()
        ),
        Ok(Some(snapshot)) => return Some(snapshot),
        Err(reason) => reason,
    };
    tracing::warn!(
        snapshot = %path.display(),
        problem,
        "ignoring the dedup snapshot; the dedup window is read back from the log instead"
    );
    None
}

struct Reader<'a, L> {
    log: &'a L,
    topic: &'a str,
    dedup: &'a Dedup,
    now: Millis,
    buffer: ReadBuffer,
    restored: Restored,
    /// The next record read starts the coverage (what came before it was not read).
    limit_from_first_record: bool,
}

const READ: ReadOptions = ReadOptions {
    max_bytes: 4 << 20,
    max_wait: Duration::ZERO,
};

impl<L: Log> Reader<'_, L> {
    /// Remembers the ids of `partition` from `offset` to `end`, skipping damaged ranges.
    async fn read_partition(&mut self, partition: u32, mut offset: u64, end: u64) {
        // After a read fails on damage, batches are read one at a time (a read fails as a
        // whole when any batch in it is damaged) until the damage is found or a read's worth
        // of bytes is behind.
        let mut careful: Option<usize> = None;
        while offset < end {
            let options = match careful {
                Some(_) => ReadOptions {
                    max_bytes: 1,
                    ..READ
                },
                None => READ,
            };
            let read = self
                .log
                .read_into(self.topic, partition, offset, options, &mut self.buffer)
                .await;
            match read {
                Ok(()) if self.buffer.is_empty() => break,
                Ok(()) => {}
                // Retention removed segments meanwhile (a size limit): what it removed is gone
                // for every reader.
                Err(LogError::OffsetOutOfRange { .. }) => break,
                Err(LogError::Corrupt { .. }) if careful.is_none() => {
                    careful = Some(0);
                    continue;
                }
                Err(error @ LogError::Corrupt { .. }) => {
                    careful = None;
                    match self.skip_damage(partition, offset, end, &error).await {
                        Some(next) => {
                            offset = next;
                            continue;
                        }
                        None => break,
                    }
                }
                Err(error) => {
                    self.unreadable_partition(partition, Some((offset, end)), &error);
                    break;
                }
            }
            if std::mem::take(&mut self.limit_from_first_record)
                && let Some(first) = self.buffer.get(0)
            {
                self.dedup.limit_coverage(first.timestamp);
            }
            for record in self.buffer.iter() {
                if let Some((message_id, tenant)) = Event::stored_ids(record.value) {
                    self.dedup
                        .remember(fingerprint(&tenant, &message_id), self.now);
                }
            }
            self.restored.log_records += self.buffer.len() as u64;
            offset = self.buffer.next_offset(offset);
            if let Some(bytes) = &mut careful {
                *bytes += self.buffer.iter().map(|r| r.value.len()).sum::<usize>();
                if *bytes >= READ.max_bytes {
                    careful = None;
                }
            }
        }
        self.limit_from_first_record = false;
    }

    /// `offset` could not be read: reports it and finds the first readable offset after it
    /// (`None` when nothing up to `end` is).
    async fn skip_damage(
        &mut self,
        partition: u32,
        offset: u64,
        end: u64,
        error: &LogError,
    ) -> Option<u64> {
        let next = self.next_readable(partition, offset, end).await;
        let skipped = next.unwrap_or(end) - offset;
        self.restored.unreadable += skipped;
        tracing::error!(
            topic = self.topic,
            partition,
            from_offset = offset,
            resume_offset = next,
            unreadable_records = skipped,
            %error,
            "the log is damaged where the dedup window is read back at start; these records' ids are not remembered, so retries of them are not recognized as duplicates (see `sluice log verify`)"
        );
        match next {
            // Coverage resumes with the first record read after the damage.
            Some(_) => self.limit_from_first_record = true,
            None => self.dedup.limit_coverage(self.now),
        }
        next
    }

    /// The first offset in `(bad, end)` a read succeeds at, as far as a galloping then halving
    /// search finds (a few reads, however long the damage): `None` when none is.
    async fn next_readable(&mut self, partition: u32, bad: u64, end: u64) -> Option<u64> {
        let mut bad = bad;
        let mut step = 1u64;
        let good = loop {
            let probe = bad.saturating_add(step).min(end.checked_sub(1)?);
            if probe <= bad {
                return None;
            }
            if self.readable(partition, probe).await {
                break probe;
            }
            bad = probe;
            step = step.saturating_mul(2);
        };
        let mut good = good;
        while good - bad > 1 {
            let middle = bad + (good - bad) / 2;
            if self.readable(partition, middle).await {
                good = middle;
            } else {
                bad = middle;
            }
        }
        Some(good)
    }

    async fn readable(&mut self, partition: u32, offset: u64) -> bool {
        let probe = ReadOptions {
            max_bytes: 1,
            max_wait: Duration::ZERO,
        };
        self.log
            .read_into(self.topic, partition, offset, probe, &mut self.buffer)
            .await
            .is_ok()
    }

    /// Reading `partition` failed for another reason than damage: nothing after the failure
    /// is remembered.
    fn unreadable_partition(
        &mut self,
        partition: u32,
        range: Option<(u64, u64)>,
        error: &LogError,
    ) {
        if let Some((from, end)) = range {
            self.restored.unreadable += end - from;
        }
        self.dedup.limit_coverage(self.now);
        tracing::error!(
            topic = self.topic,
            partition,
            from_offset = range.map(|(from, _)| from),
            %error,
            "could not read back the dedup window of a partition at start; retries of its recent events are not recognized as duplicates"
        );
    }
}
