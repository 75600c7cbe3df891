//! The collector's dedup upkeep: its coverage reported at start, its gauges kept current, and
//! its snapshot written every `ingest.dedup-snapshot-interval` and at shutdown.

use super::SHARDS;
use super::restore::Restored;
use super::snapshot::{self, Encoder, Header};
use crate::collector::Collector;
use sluice_core::time::Millis;
use sluice_log::Log;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What one dedup snapshot wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotWritten {
    /// Ids saved.
    pub ids: usize,
    /// File size.
    pub bytes: usize,
}

impl<L: Log> Collector<L> {
    /// Logs how much of the window the start-up restore covers (WARN below the window, with
    /// the numbers and causes) and sets the gauges.
    pub(crate) fn report_coverage(&self, restored: &Restored) {
        let now = self.clock.now();
        let covered = self.dedup.coverage(now);
        let window = self.dedup.window();
        let remembered = self.dedup.len();
        self.update_dedup_gauges();
        let snapshot_ids = restored.snapshot_ids.map(|ids| ids as u64);
        let elapsed_ms = restored.elapsed.as_millis() as u64;
        if covered >= window {
            tracing::info!(
                covered_s = covered.as_secs(),
                window_s = window.as_secs(),
                remembered,
                snapshot_ids,
                log_records = restored.log_records,
                elapsed_ms,
                "the dedup window is covered: retries of events acknowledged before this start are recognized"
            );
        } else {
            tracing::warn!(
                covered_s = covered.as_secs(),
                window_s = window.as_secs(),
                remembered,
                capacity = self.dedup.capacity(),
                snapshot_ids,
                log_records = restored.log_records,
                unreadable_records = restored.unreadable,
                over_budget_records = restored.over_budget,
                elapsed_ms,
                "the dedup window is only partly covered: a retry of an event acknowledged longer ago than covered_s may be stored twice (causes: unreadable log records, more records than the read-back budget, or ingest.dedup-capacity below the window's ids)"
            );
        }
    }

    /// Updates the dedup gauges (coverage, remembered ids, capacity).
    pub fn update_dedup_gauges(&self) {
        let now = self.clock.now();
        self.dedup_telemetry
            .covered_seconds
            .set(self.dedup.coverage(now).as_secs_f64());
        self.dedup_telemetry
            .window_seconds
            .set(self.dedup.window().as_secs_f64());
        self.dedup_telemetry.remembered.set(self.dedup.len() as f64);
        self.dedup_telemetry
            .capacity
            .set(self.dedup.capacity() as f64);
    }

    /// Writes the dedup snapshot (when the collector has a snapshot path): the end offsets of
    /// the events topic, then — once every append begun before has committed its ids — the
    /// remembered ids, atomically replacing the previous snapshot.
    pub async fn save_snapshot(&self) -> std::io::Result<Option<SnapshotWritten>> {
        let Some(path) = &self.snapshot_path else {
            return Ok(None);
        };
        let started = Instant::now();
        let topics = self
            .log
            .describe(Some(&self.config.events_topic))
            .await
            .map_err(std::io::Error::other)?;
        let next_offsets: Vec<u64> = topics
            .iter()
            .flat_map(|topic| &topic.partitions)
            .map(|partition| partition.end_offset)
            .collect();
        self.appends.drain().await;
        let header = Header {
            saved_at: self.clock.now(),
            window_ms: self.dedup.window().as_millis() as Millis,
            floor: self.dedup.coverage_floor(),
            topic: &self.config.events_topic,
            next_offsets: &next_offsets,
        };
        let mut encoder = Encoder::new(&header, self.dedup.len());
        let mut ids = 0;
        for shard in 0..SHARDS {
            self.dedup.visit_shard(shard, |covered_since, generations| {
                ids += generations.iter().map(|(_, ids)| ids.len()).sum::<usize>();
                encoder.shard(covered_since, generations);
            });
            // Copying millions of ids takes a while: let requests on this thread run between
            // shards.
            tokio::task::yield_now().await;
        }
        let bytes = encoder.finish();
        let written = SnapshotWritten {
            ids,
            bytes: bytes.len(),
        };
        let (path, writing) = (path.clone(), Arc::clone(&self.snapshot_writing));
        // The lock is taken on the blocking thread: a write whose task was aborted still
        // finishes before the next one starts on the same temporary file.
        tokio::task::spawn_blocking(move || {
            let _writing = writing.lock();
            snapshot::write_atomically(&path, &bytes)
        })
        .await
        .map_err(std::io::Error::other)??;
        self.dedup_telemetry
            .snapshot_bytes
            .set(written.bytes as f64);
        self.dedup_telemetry
            .snapshot_seconds
            .set(started.elapsed().as_secs_f64());
        Ok(Some(written))
    }

    /// Keeps the dedup gauges current (every second) and writes a snapshot every
    /// `ingest.dedup-snapshot-interval`, until `shutdown` completes. The caller writes the last
    /// snapshot once requests have stopped ([`Collector::save_snapshot`]).
    pub async fn run_dedup_upkeep(&self, shutdown: impl Future<Output = ()> + Send) {
        let every = self.config.dedup_snapshot_interval.get();
        let mut ticks = tokio::time::interval(Duration::from_secs(1).min(every));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_snapshot = Instant::now();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => return,
                _ = ticks.tick() => {}
            }
            self.update_dedup_gauges();
            if self.snapshot_path.is_none() || last_snapshot.elapsed() < every {
                continue;
            }
            last_snapshot = Instant::now();
            let saved = tokio::select! {
                () = &mut shutdown => return,
                saved = self.save_snapshot() => saved,
            };
            match saved {
                Ok(_) => self.dedup_telemetry.snapshots_ok.increment(1),
                Err(error) => {
                    self.dedup_telemetry.snapshots_failed.increment(1);
                    tracing::warn!(
                        %error,
                        path = ?self.snapshot_path,
                        "could not write the dedup snapshot; a restart reads more of the log back (retrying at the next interval)"
                    );
                }
            }
        }
    }
}
