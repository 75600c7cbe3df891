//! Arbitrary bytes as a dedup snapshot file (read back at start from the data directory):
//! decoding rejects or accepts, never panics nor allocates beyond the input, and what it
//! accepts re-encodes to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_ingest::dedup::snapshot::{Encoder, Header, Snapshot};

fuzz_target!(|data: &[u8]| {
    let Ok(snapshot) = Snapshot::decode(data) else {
        return;
    };
    let header = Header {
        saved_at: snapshot.saved_at,
        window_ms: snapshot.window_ms,
        floor: snapshot.floor,
        topic: &snapshot.topic,
        next_offsets: &snapshot.next_offsets,
    };
    let mut encoder = Encoder::new(&header, snapshot.ids());
    for shard in &snapshot.shards {
        let generations: Vec<(i64, &[u128])> = shard
            .generations
            .iter()
            .map(|generation| (generation.since, generation.ids.as_slice()))
            .collect();
        encoder.shard(shard.covered_since, &generations);
    }
    assert_eq!(encoder.finish(), data);
});
