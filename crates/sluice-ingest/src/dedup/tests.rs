use super::snapshot::{Encoder, Header, Snapshot};
use super::*;
use proptest::prelude::*;

const WINDOW: Duration = Duration::from_secs(600);
const T0: Millis = 1_700_000_000_000;

fn secs(n: i64) -> Millis {
    T0 + n * 1000
}

#[test]
fn a_committed_id_is_a_duplicate_for_the_whole_window_then_forgotten() {
    let dedup = Dedup::new(WINDOW, 1000, T0);
    let id = fingerprint("shop", "m-1");
    assert_eq!(dedup.claim(id, T0), Claim::Claimed);
    assert_eq!(dedup.claim(id, T0), Claim::Busy, "still being appended");
    dedup.commit(id, T0);
    assert_eq!(dedup.claim(id, secs(299)), Claim::Duplicate);
    assert_eq!(dedup.claim(id, secs(599)), Claim::Duplicate);
    assert_eq!(
        dedup.claim(id, secs(1200)),
        Claim::Claimed,
        "forgotten after the window"
    );
}

#[test]
fn an_id_committed_just_before_a_rotation_is_remembered_for_the_whole_window() {
    let dedup = Dedup::new(WINDOW, 1000, T0);
    let _ = dedup.claim(fingerprint("t", "first"), T0);
    let id = fingerprint("t", "late");
    assert_eq!(dedup.claim(id, secs(299)), Claim::Claimed);
    dedup.commit(id, secs(299));
    // Rotations at 300 s and 600 s, and still remembered a whole window after its commit.
    assert_eq!(dedup.claim(id, secs(301)), Claim::Duplicate);
    assert_eq!(dedup.claim(id, secs(601)), Claim::Duplicate);
    assert_eq!(dedup.claim(id, secs(898)), Claim::Duplicate);
}

#[test]
fn a_released_id_can_be_claimed_again() {
    let dedup = Dedup::new(WINDOW, 1000, T0);
    let id = fingerprint("shop", "m-1");
    assert_eq!(dedup.claim(id, T0), Claim::Claimed);
    dedup.release(id);
    assert_eq!(dedup.claim(id, T0), Claim::Claimed);
}

#[test]
fn tenants_do_not_share_ids() {
    assert_ne!(fingerprint("a", "bc"), fingerprint("ab", "c"));
    let dedup = Dedup::new(WINDOW, 1000, T0);
    let mut claims = Claims::new(&dedup);
    assert_eq!(claims.claim(fingerprint("shop", "m"), T0), Claim::Claimed);
    assert_eq!(claims.claim(fingerprint("blog", "m"), T0), Claim::Claimed);
}

#[test]
fn dropped_claims_are_released_and_repeats_within_a_request_are_duplicates() {
    let dedup = Dedup::new(WINDOW, 1000, T0);
    let (a, b) = (fingerprint("t", "a"), fingerprint("t", "b"));
    {
        let mut claims = Claims::new(&dedup);
        assert_eq!(claims.claim(a, T0), Claim::Claimed);
        assert_eq!(claims.claim(a, T0), Claim::Duplicate);
        assert_eq!(claims.claim(b, T0), Claim::Claimed);
        claims.commit([a], T0);
    }
    assert_eq!(dedup.claim(a, T0), Claim::Duplicate, "committed");
    assert_eq!(
        dedup.claim(b, T0),
        Claim::Claimed,
        "released when the request ended"
    );
}

#[test]
fn memory_stays_within_capacity_under_any_rate_and_the_coverage_says_so() {
    let capacity = SHARDS * 100;
    let dedup = Dedup::new(WINDOW, capacity, T0 - 600_000);
    assert_eq!(dedup.coverage(T0), WINDOW, "nothing lost yet");
    for i in 0..100_000 {
        let id = fingerprint("t", &i.to_string());
        let now = T0 + i / 100;
        assert_eq!(dedup.claim(id, now), Claim::Claimed);
        dedup.commit(id, now);
    }
    assert!(dedup.len() <= capacity, "{} ids held", dedup.len());
    let recent = fingerprint("t", "99999");
    assert_eq!(
        dedup.claim(recent, secs(1)),
        Claim::Duplicate,
        "the newest ids are kept"
    );
    let covered = dedup.coverage(secs(1));
    assert!(
        covered < Duration::from_secs(2),
        "ids were forgotten early: {covered:?} covered"
    );
}

#[test]
fn coverage_is_limited_by_a_floor_and_grows_back_to_the_window() {
    let dedup = Dedup::new(WINDOW, 1000, T0 - 600_000);
    dedup.limit_coverage(T0 - 60_000);
    assert_eq!(dedup.coverage(T0), Duration::from_secs(60));
    assert_eq!(dedup.coverage(secs(540)), WINDOW);
    let fresh = Dedup::new(WINDOW, 1000, T0);
    assert_eq!(fresh.coverage(secs(30)), Duration::from_secs(30));
}

fn snapshot_of(dedup: &Dedup, saved_at: Millis) -> Snapshot {
    let header = Header {
        saved_at,
        window_ms: 600_000,
        floor: dedup.coverage_floor(),
        topic: "events",
        next_offsets: &[0],
    };
    let mut encoder = Encoder::new(&header, dedup.len());
    for shard in 0..SHARDS {
        dedup.visit_shard(shard, |covered_since, generations| {
            encoder.shard(covered_since, generations)
        });
    }
    Snapshot::decode(&encoder.finish()).unwrap()
}

#[test]
fn a_restored_snapshot_answers_like_the_set_it_was_taken_from() {
    let dedup = Dedup::new(WINDOW, 10_000, T0 - 600_000);
    let ids: Vec<Fingerprint> = (0..500).map(|i| fingerprint("t", &i.to_string())).collect();
    for (i, id) in ids.iter().enumerate() {
        let now = T0 + i as Millis * 1000;
        dedup.claim(*id, now);
        dedup.commit(*id, now);
    }
    let snapshot = snapshot_of(&dedup, secs(500));
    assert_eq!(snapshot.ids(), 500);

    let restored = Dedup::new(WINDOW, 10_000, secs(530));
    for (index, shard) in snapshot.shards.into_iter().enumerate() {
        restored.restore_shard(index, shard.covered_since, shard.generations, secs(530));
    }
    assert_eq!(restored.coverage(secs(530)), WINDOW);
    for (i, id) in ids.iter().enumerate() {
        // Each id is still a duplicate a whole window after its commit.
        let within = T0 + i as Millis * 1000 + 599_000;
        assert_eq!(
            restored.claim(*id, within.max(secs(530))),
            Claim::Duplicate,
            "id {i}"
        );
    }
    assert_eq!(
        restored.claim(ids[0], secs(1200)),
        Claim::Claimed,
        "forgotten after 1.5 windows"
    );
}

#[test]
fn a_snapshot_restored_under_a_lower_capacity_keeps_the_newest_ids_and_says_so() {
    let dedup = Dedup::new(WINDOW, SHARDS * 100, T0 - 600_000);
    for i in 0..3000 {
        let id = fingerprint("t", &i.to_string());
        let now = T0 + i * 200;
        dedup.claim(id, now);
        dedup.commit(id, now);
    }
    let snapshot = snapshot_of(&dedup, secs(600));
    let smaller = Dedup::new(WINDOW, SHARDS * 10, secs(600));
    for (index, shard) in snapshot.shards.into_iter().enumerate() {
        smaller.restore_shard(index, shard.covered_since, shard.generations, secs(600));
    }
    assert!(smaller.len() <= SHARDS * 10, "{} ids", smaller.len());
    assert!(smaller.coverage(secs(600)) < WINDOW);
}

proptest! {
    /// Against a model that remembers when each id was committed: an id committed at most a
    /// window ago is always a duplicate, one committed more than 1.5 windows ago never is, and
    /// an id never committed is never refused.
    #[test]
    fn agrees_with_a_model_of_the_window(ops in proptest::collection::vec((0u8..3, 0u32..50, 0i64..200), 1..300)) {
        let dedup = Dedup::new(WINDOW, 1_000_000, T0);
        let mut committed: std::collections::HashMap<Fingerprint, Millis> = Default::default();
        let mut pending = std::collections::HashSet::new();
        let mut now = T0;
        for (op, key, step) in ops {
            now += step * 1000;
            let id = fingerprint("t", &key.to_string());
            match op {
                0 => {
                    let claim = dedup.claim(id, now);
                    let age = committed.get(&id).map(|at| now - at);
                    if pending.contains(&id) {
                        prop_assert_eq!(claim, Claim::Busy);
                    } else if age.is_some_and(|age| age <= 600_000) {
                        prop_assert_eq!(claim, Claim::Duplicate);
                    } else if age.is_none_or(|age| age > 900_000) {
                        prop_assert_eq!(claim, Claim::Claimed);
                    }
                    if claim == Claim::Claimed { pending.insert(id); }
                }
                1 => if pending.remove(&id) { dedup.commit(id, now); committed.insert(id, now); },
                _ => if pending.remove(&id) { dedup.release(id); },
            }
            prop_assert_eq!(dedup.coverage(now), WINDOW.min(Duration::from_millis((now - T0) as u64)));
        }
    }
}
