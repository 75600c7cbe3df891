//! Remembering recent `messageId`s so that a client retrying a request does not create
//! duplicates.
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
//! Memory is bounded: remembered ids live in two generations that rotate every half window, so
//! an id is remembered for at least half the window and at most the whole window; when the
//! current generation reaches half the capacity it rotates early, and the early rotations are
//! counted so an operator can raise the capacity.

use parking_lot::Mutex;
use std::hash::{BuildHasherDefault, Hasher};
use std::time::{Duration, Instant};
use xxhash_rust::xxh3::Xxh3;

const SHARDS: usize = 64;

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

#[derive(Debug, Default)]
struct Shard {
    pending: Set,
    current: Set,
    previous: Set,
    rotated_at: Option<Instant>,
}

/// The set of recently appended message ids, sharded to keep lock hold times tiny.
#[derive(Debug)]
pub struct Dedup {
    shards: Vec<Mutex<Shard>>,
    half_window: Duration,
    generation_capacity: usize,
    early_rotations: metrics::Counter,
}

impl Dedup {
    /// Remembers ids for `window`, holding at most `capacity` of them.
    pub fn new(window: Duration, capacity: usize) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            half_window: window / 2,
            generation_capacity: (capacity / 2 / SHARDS).max(1),
            early_rotations: metrics::counter!("sluice_ingest_dedup_early_rotations_total"),
        }
    }

    fn shard(&self, id: Fingerprint) -> &Mutex<Shard> {
        // The high bits pick the shard; the low bits, used by the tables, stay independent of it.
        &self.shards[((id >> 64) as usize) % SHARDS]
    }

    /// Claims `id` for appending (see [`Claim`]).
    pub fn claim(&self, id: Fingerprint, now: Instant) -> Claim {
        let mut shard = self.shard(id).lock();
        self.rotate_if_due(&mut shard, now);
        if shard.current.contains(&id) || shard.previous.contains(&id) {
            Claim::Duplicate
        } else if !shard.pending.insert(id) {
            Claim::Busy
        } else {
            Claim::Claimed
        }
    }

    /// The append of a claimed id is durable: remember it.
    pub fn commit(&self, id: Fingerprint, now: Instant) {
        let mut shard = self.shard(id).lock();
        shard.pending.remove(&id);
        self.rotate_if_due(&mut shard, now);
        if shard.current.len() >= self.generation_capacity {
            shard.previous = std::mem::take(&mut shard.current);
            shard.rotated_at = Some(now);
            self.early_rotations.increment(1);
        }
        shard.current.insert(id);
    }

    /// The append of a claimed id failed or was abandoned: forget it so a retry appends.
    pub fn release(&self, id: Fingerprint) {
        self.shard(id).lock().pending.remove(&id);
    }

    fn rotate_if_due(&self, shard: &mut Shard, now: Instant) {
        match shard.rotated_at {
            None => shard.rotated_at = Some(now),
            Some(at) if now.saturating_duration_since(at) >= self.half_window => {
                if now.saturating_duration_since(at) >= self.half_window * 2 {
                    shard.previous.clear();
                } else {
                    shard.previous = std::mem::take(&mut shard.current);
                }
                shard.current.clear();
                shard.rotated_at = Some(now);
            }
            Some(_) => {}
        }
    }

    /// How many ids are remembered or pending (for tests and metrics).
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                let s = s.lock();
                s.current.len() + s.previous.len() + s.pending.len()
            })
            .sum()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
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
    pub fn claim(&mut self, id: Fingerprint, now: Instant) -> Claim {
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
    pub fn commit(&mut self, ids: impl IntoIterator<Item = Fingerprint>, now: Instant) {
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
mod tests {
    use super::*;
    use proptest::prelude::*;

    const WINDOW: Duration = Duration::from_secs(600);

    #[test]
    fn a_committed_id_is_a_duplicate_until_it_leaves_the_window() {
        let dedup = Dedup::new(WINDOW, 1000);
        let t0 = Instant::now();
        let id = fingerprint("shop", "m-1");
        assert_eq!(dedup.claim(id, t0), Claim::Claimed);
        assert_eq!(dedup.claim(id, t0), Claim::Busy, "still being appended");
        dedup.commit(id, t0);
        assert_eq!(
            dedup.claim(id, t0 + Duration::from_secs(299)),
            Claim::Duplicate
        );
        assert_eq!(
            dedup.claim(id, t0 + Duration::from_secs(599)),
            Claim::Duplicate
        );
        assert_eq!(
            dedup.claim(id, t0 + Duration::from_secs(1200)),
            Claim::Claimed,
            "forgotten after the window"
        );
    }

    #[test]
    fn a_released_id_can_be_claimed_again() {
        let dedup = Dedup::new(WINDOW, 1000);
        let t0 = Instant::now();
        let id = fingerprint("shop", "m-1");
        assert_eq!(dedup.claim(id, t0), Claim::Claimed);
        dedup.release(id);
        assert_eq!(dedup.claim(id, t0), Claim::Claimed);
    }

    #[test]
    fn tenants_do_not_share_ids() {
        assert_ne!(fingerprint("a", "bc"), fingerprint("ab", "c"));
        let dedup = Dedup::new(WINDOW, 1000);
        let now = Instant::now();
        let mut claims = Claims::new(&dedup);
        assert_eq!(claims.claim(fingerprint("shop", "m"), now), Claim::Claimed);
        assert_eq!(claims.claim(fingerprint("blog", "m"), now), Claim::Claimed);
    }

    #[test]
    fn dropped_claims_are_released_and_repeats_within_a_request_are_duplicates() {
        let dedup = Dedup::new(WINDOW, 1000);
        let now = Instant::now();
        let (a, b) = (fingerprint("t", "a"), fingerprint("t", "b"));
        {
            let mut claims = Claims::new(&dedup);
            assert_eq!(claims.claim(a, now), Claim::Claimed);
            assert_eq!(claims.claim(a, now), Claim::Duplicate);
            assert_eq!(claims.claim(b, now), Claim::Claimed);
            claims.commit([a], now);
        }
        assert_eq!(dedup.claim(a, now), Claim::Duplicate, "committed");
        assert_eq!(
            dedup.claim(b, now),
            Claim::Claimed,
            "released when the request ended"
        );
    }

    #[test]
    fn memory_stays_within_capacity_under_any_rate() {
        let capacity = 64 * 100;
        let dedup = Dedup::new(WINDOW, capacity);
        let now = Instant::now();
        for i in 0..100_000 {
            let id = fingerprint("t", &i.to_string());
            assert_eq!(dedup.claim(id, now), Claim::Claimed);
            dedup.commit(id, now);
        }
        assert!(dedup.len() <= capacity + SHARDS, "{} ids held", dedup.len());
        let recent = fingerprint("t", "99999");
        assert_eq!(
            dedup.claim(recent, now),
            Claim::Duplicate,
            "the newest ids are kept"
        );
    }

    proptest! {
        /// Against a model that remembers every committed id forever: within half a window the
        /// two always agree (no duplicate slips through, no new id is refused).
        #[test]
        fn agrees_with_a_model_within_half_a_window(ops in proptest::collection::vec((0u8..3, 0u32..50, 0u64..250), 1..200)) {
            let dedup = Dedup::new(WINDOW, 1_000_000);
            let t0 = Instant::now();
            let mut committed = std::collections::HashSet::new();
            let mut pending = std::collections::HashSet::new();
            let mut elapsed = 0u64;
            for (op, key, step) in ops {
                elapsed = (elapsed + step).min(299);
                let now = t0 + Duration::from_secs(elapsed);
                let id = fingerprint("t", &key.to_string());
                match op {
                    0 => {
                        let expected = if committed.contains(&id) { Claim::Duplicate }
                            else if pending.contains(&id) { Claim::Busy } else { Claim::Claimed };
                        prop_assert_eq!(dedup.claim(id, now), expected);
                        if expected == Claim::Claimed { pending.insert(id); }
                    }
                    1 => if pending.remove(&id) { dedup.commit(id, now); committed.insert(id); },
                    _ => if pending.remove(&id) { dedup.release(id); },
                }
            }
        }
    }
}
