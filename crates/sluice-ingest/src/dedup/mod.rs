//! Remembering recent `messageId`s so that a client retrying a request does not create
//! duplicates — within `ingest.dedup-window`, also after a crash.
//!
//! Each id is reduced to a 128-bit hash of `(tenant, messageId)`: 16 bytes per id, and a false
//! match (which would drop a real event) needs a 2^-64-scale coincidence. Ids move through
//! three states:
//!
//! - **pending** while the request that carries it is being appended: another request with the
//!   same id is told to retry shortly ([`Claim::Busy`]) instead of appending a duplicate or
//!   trusting an append that may still fail;
//! - **remembered** once its append is durable: later copies are duplicates;
//! - **forgotten** when it falls out of the window (or the request failed, so a retry must append).
//!
//! # Generations
//! Remembered ids live in generations: a generation holds the ids committed from its `since`
//! until the next generation began. A new generation begins every half window, and a
//! generation is forgotten once the next one began a whole window ago — when every id in it is
//! older than the window. So an id is remembered for at least the whole window and at most one
//! and a half windows, in at most three generations per shard.
//!
//! Memory is bounded by `ingest.dedup-capacity`: when a shard holds its share, the current
//! generation is closed early (if it holds half the share) and the oldest generations are
//! forgotten before their time. Each generation forgotten early is counted
//! (`sluice_ingest_dedup_early_rotations_total`), and the coverage shrinks with it.
//!
//! # Coverage
//! [`Dedup::coverage`] is how far back every committed id is still remembered: the newest
//! oldest-generation start over all shards, and no earlier than the floor set at start when
//! the ids of the time before could not all be read back (see [`restore`]). It is the window
//! when nothing was lost; less after early rotations or a start that could not read
//! everything back.
//!
//! # Time
//! Times are milliseconds on the collector's clock ([`Clock`]): monotonic within a process and
//! anchored to the wall clock at start, so that generations survive a restart in a
//! [`snapshot`].
//!
//! # Layout
//! - this module: the set of ids, its generations and its coverage;
//! - [`snapshot`]: the snapshot file that carries the set across restarts;
//! - [`restore`]: at start, the snapshot plus the log records appended after it;
//! - [`gate`]: lets a snapshot wait for appends whose ids are not committed yet;
//! - [`upkeep`]: the collector's coverage report, gauges and periodic snapshots;
//! - [`peers`]: in a cluster, the ids the other nodes append.

pub mod gate;
pub mod peers;
pub mod restore;
pub mod snapshot;
pub mod upkeep;

use parking_lot::Mutex;
use sluice_core::time::{Millis, now_millis};
use std::collections::VecDeque;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};
use xxhash_rust::xxh3::Xxh3;

/// Shards of the set (a power of two; the snapshot format records it).
pub const SHARDS: usize = 64;

/// The fingerprint of one `(tenant, messageId)`.
pub type Fingerprint = u128;

/// Hashes a tenant and message id (a zero byte separates them: names cannot contain one).
pub fn fingerprint(tenant: &str, message_id: &str) -> Fingerprint {
    let mut hasher = Xxh3::new();
    hasher.update(tenant.as_bytes());
    hasher.update(&[0]);
    hasher.update(message_id.as_bytes());
    hasher.digest128()
}

/// The shard of `id`: its high bits (the tables hash by its low bits, kept independent).
pub fn shard_of(id: Fingerprint) -> usize {
    ((id >> 64) as usize) % SHARDS
}

/// Fingerprints are already uniformly random, so hashing them again would only cost time:
/// the table hashes by their low 64 bits.
#[derive(Debug, Default, Clone, Copy)]
pub struct FingerprintHasher(u64);

impl Hasher for FingerprintHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*byte);
        }
    }

    fn write_u128(&mut self, value: u128) {
        self.0 = value as u64;
    }
}

type Set = hashbrown::HashSet<Fingerprint, BuildHasherDefault<FingerprintHasher>>;

/// The collector's clock: milliseconds since the epoch, read from the wall clock once at
/// start and advanced by a monotonic clock since, so that a clock step never expires or
/// revives ids within a process.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    wall: Millis,
    at: Instant,
}

impl Clock {
    /// A clock anchored to the wall clock now.
    pub fn new() -> Self {
        Self {
            wall: now_millis(),
            at: Instant::now(),
        }
    }

    /// The current time.
    pub fn now(&self) -> Millis {
        let elapsed = Millis::try_from(self.at.elapsed().as_millis()).unwrap_or(Millis::MAX);
        self.wall.saturating_add(elapsed)
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

/// The answer to "may this request append the event with this id?".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// New: the caller now holds the id and must [`Dedup::commit`] or [`Dedup::release`] it.
    Claimed,
    /// Already appended within the window: skip it.
    Duplicate,
    /// Another request is appending it right now: retry later.
    Busy,
}

/// The ids committed from `since` until the next generation began.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generation {
    /// When it began (collector clock).
    pub since: Millis,
    /// Its ids.
    pub ids: Vec<Fingerprint>,
}

#[derive(Debug)]
struct Shard {
    pending: Set,
    /// Oldest first; never empty; the last is the current one. Every id of a generation was
    /// committed within half a window of its start: a commit later than that begins a new
    /// generation first.
    generations: VecDeque<(Millis, Set)>,
    /// Every id committed since this time is remembered (until the window forgets it).
    covered_since: Millis,
}

impl Shard {
    fn new(since: Millis) -> Self {
        Self {
            pending: Set::default(),
            generations: VecDeque::from([(since, Set::default())]),
            covered_since: since,
        }
    }

    fn remembered(&self) -> usize {
        self.generations.iter().map(|(_, ids)| ids.len()).sum()
    }

    fn contains(&self, id: &Fingerprint) -> bool {
        self.generations.iter().any(|(_, ids)| ids.contains(id))
    }

    fn current(&mut self) -> &mut Set {
        &mut self.generations.back_mut().expect("never empty").1
    }
}

/// The set of recently appended message ids, sharded to keep lock hold times tiny.
#[derive(Debug)]
pub struct Dedup {
    shards: Vec<Mutex<Shard>>,
    window: Millis,
    rotate_every: Millis,
    shard_capacity: usize,
    /// Coverage starts no earlier than this (set at start when not everything before could be
    /// read back); `Millis::MIN` when nothing limits it.
    floor: AtomicI64,
    early_rotations: metrics::Counter,
}

impl Dedup {
    /// Remembers ids for `window`, holding at most `capacity` of them; `since` is the time from
    /// which every committed id will be here (the start, or the start minus the window when
    /// the caller reads that window back).
    pub fn new(window: Duration, capacity: usize, since: Millis) -> Self {
        let window = Millis::try_from(window.as_millis())
            .unwrap_or(Millis::MAX)
            .max(2);
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::new(since))).collect(),
            window,
            rotate_every: window / 2,
            shard_capacity: (capacity / SHARDS).max(2),
            floor: AtomicI64::new(Millis::MIN),
            early_rotations: metrics::counter!("sluice_ingest_dedup_early_rotations_total"),
        }
    }

    /// How long ids are remembered.
    pub fn window(&self) -> Duration {
        Duration::from_millis(self.window as u64)
    }

    /// The most ids remembered.
    pub fn capacity(&self) -> usize {
        self.shard_capacity * SHARDS
    }

    fn shard(&self, id: Fingerprint) -> &Mutex<Shard> {
        &self.shards[shard_of(id)]
    }

    /// Claims `id` for appending (see [`Claim`]).
    pub fn claim(&self, id: Fingerprint, now: Millis) -> Claim {
        let mut shard = self.shard(id).lock();
        self.expire(&mut shard, now);
        if shard.contains(&id) {
            Claim::Duplicate
        } else if !shard.pending.insert(id) {
            Claim::Busy
        } else {
            Claim::Claimed
        }
    }

    /// The append of a claimed id is durable: remember it.
    pub fn commit(&self, id: Fingerprint, now: Millis) {
        let mut shard = self.shard(id).lock();
        shard.pending.remove(&id);
        self.remember_in(&mut shard, id, now);
    }

    /// Remembers `id` as appended (ids read back at start, which nobody claimed).
    pub fn remember(&self, id: Fingerprint, now: Millis) {
        let mut shard = self.shard(id).lock();
        self.remember_in(&mut shard, id, now);
    }

    fn remember_in(&self, shard: &mut Shard, id: Fingerprint, now: Millis) {
        self.expire(shard, now);
        if shard.remembered() >= self.shard_capacity {
            self.make_room(shard, now);
        }
        shard.current().insert(id);
    }

    /// The shard is full: close the current generation if it holds half the share, then
    /// forget the oldest generations until there is room.
    fn make_room(&self, shard: &mut Shard, now: Millis) {
        if shard.current().len() >= self.shard_capacity / 2 {
            shard.generations.push_back((now, Set::default()));
        }
        while shard.remembered() >= self.shard_capacity && shard.generations.len() > 1 {
            self.forget_oldest_early(shard);
        }
    }

    /// Forgets the oldest generation before its time: coverage now begins with the next one.
    fn forget_oldest_early(&self, shard: &mut Shard) {
        shard.generations.pop_front();
        if let Some((since, _)) = shard.generations.front() {
            shard.covered_since = shard.covered_since.max(*since);
        }
        self.early_rotations.increment(1);
    }

    /// The append of a claimed id failed or was abandoned: forget it so a retry appends.
    pub fn release(&self, id: Fingerprint) {
        self.shard(id).lock().pending.remove(&id);
    }

    /// Forgets the generations whose ids are all older than the window, and begins a new one
    /// when the current one began half a window ago.
    fn expire(&self, shard: &mut Shard, now: Millis) {
        let cutoff = now.saturating_sub(self.window);
        while let Some(&(since, _)) = shard.generations.front() {
            let closed = since.saturating_add(self.rotate_every);
            let end = shard
                .generations
                .get(1)
                .map_or(closed, |(next, _)| closed.min(*next));
            if end > cutoff {
                break;
            }
            shard.generations.pop_front();
        }
        let current_since = shard.generations.back().map(|(since, _)| *since);
        if current_since.is_none_or(|since| now.saturating_sub(since) >= self.rotate_every) {
            shard.generations.push_back((now, Set::default()));
        }
    }

    /// How far back every committed id is remembered, at most the window.
    pub fn coverage(&self, now: Millis) -> Duration {
        let since = self
            .shards
            .iter()
            .map(|shard| shard.lock().covered_since)
            .max()
            .unwrap_or(now)
            .max(self.floor.load(Ordering::Relaxed));
        let covered = now.saturating_sub(since).clamp(0, self.window);
        Duration::from_millis(covered as u64)
    }

    /// Coverage starts no earlier than `since` (ids committed before it may be missing).
    pub fn limit_coverage(&self, since: Millis) {
        self.floor.fetch_max(since, Ordering::Relaxed);
    }

    /// The time coverage may not start before (`Millis::MIN` when unlimited).
    pub fn coverage_floor(&self) -> Millis {
        self.floor.load(Ordering::Relaxed)
    }

    /// How many ids are remembered or pending.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                let s = s.lock();
                s.remembered() + s.pending.len()
            })
            .sum()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Calls `each(covered_since, generations)` with shard `index`'s generations, oldest first
    /// as `(since, ids)`, copied under its lock (held only while copying): for snapshots,
    /// which visit the shards one by one.
    pub fn visit_shard(
        &self,
        index: usize,
        each: impl FnOnce(Millis, &[(Millis, &[Fingerprint])]),
    ) {
        let (covered_since, generations) = {
            let shard = self.shards[index].lock();
            let generations: Vec<(Millis, Vec<Fingerprint>)> = shard
                .generations
                .iter()
                .map(|(since, ids)| (*since, ids.iter().copied().collect()))
                .collect();
            (shard.covered_since, generations)
        };
        let generations: Vec<(Millis, &[Fingerprint])> = generations
            .iter()
            .map(|(since, ids)| (*since, ids.as_slice()))
            .collect();
        each(covered_since, &generations);
    }

    /// Replaces shard `index` with `generations` (oldest first, ids of this shard only) and the
    /// time from which they hold every committed id, keeping what is pending; then applies the
    /// window and the capacity (which may be lower than when they were saved).
    pub fn restore_shard(
        &self,
        index: usize,
        covered_since: Millis,
        generations: Vec<Generation>,
        now: Millis,
    ) {
        let mut shard = self.shards[index].lock();
        shard.generations = generations
            .into_iter()
            .map(|generation| {
                let mut ids =
                    Set::with_capacity_and_hasher(generation.ids.len(), Default::default());
                ids.extend(generation.ids);
                (generation.since, ids)
            })
            .collect();
        shard.covered_since = covered_since;
        self.expire(&mut shard, now);
        while shard.remembered() > self.shard_capacity && shard.generations.len() > 1 {
            self.forget_oldest_early(&mut shard);
        }
        if shard.remembered() > self.shard_capacity {
            // One generation over a lowered capacity: start afresh rather than hold more.
            shard.generations = VecDeque::from([(now, Set::default())]);
            shard.covered_since = now;
            self.early_rotations.increment(1);
        }
    }

    /// Every shard's coverage start, in shard order (for snapshots).
    pub fn covered_since(&self) -> Vec<Millis> {
        self.shards
            .iter()
            .map(|shard| shard.lock().covered_since)
            .collect()
    }
}

/// Groups per-request claims so every claimed id is committed or released exactly once, even
/// when the request is cancelled midway (the client hung up): dropping releases the rest.
#[derive(Debug)]
pub struct Claims<'a> {
    dedup: &'a Dedup,
    held: Set,
}

impl<'a> Claims<'a> {
    /// No claims yet.
    pub fn new(dedup: &'a Dedup) -> Self {
        Self::with_capacity(dedup, 0)
    }

    /// No claims yet, with room for `ids` of them (a batch's size: the set is not rehashed
    /// as it fills).
    pub fn with_capacity(dedup: &'a Dedup, ids: usize) -> Self {
        Self {
            dedup,
            held: Set::with_capacity_and_hasher(ids, Default::default()),
        }
    }

    /// Claims `id`; a second claim of an id this request already holds is a duplicate within
    /// the request itself.
    pub fn claim(&mut self, id: Fingerprint, now: Millis) -> Claim {
        if self.held.contains(&id) {
            return Claim::Duplicate;
        }
        let claim = self.dedup.claim(id, now);
        if claim == Claim::Claimed {
            self.held.insert(id);
        }
        claim
    }

    /// Commits `ids` (their append is durable).
    pub fn commit(&mut self, ids: impl IntoIterator<Item = Fingerprint>, now: Millis) {
        for id in ids {
            if self.held.remove(&id) {
                self.dedup.commit(id, now);
            }
        }
    }
}

impl Drop for Claims<'_> {
    fn drop(&mut self) {
        for id in self.held.drain() {
            self.dedup.release(id);
        }
    }
}

#[cfg(test)]
mod tests;
