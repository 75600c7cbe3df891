//! Arbitrary bytes as a dedup snapshot file (read back at start from the data directory):
//! decoding rejects or accepts, never panics nor allocates beyond the input, and what it
//! accepts re-encodes to the same bytes. Each input is decoded as it is and with its last four
//! bytes replaced by the checksum of the rest, so the parser behind the checksum is reached.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_ingest::dedup::snapshot::{Encoder, Header, Snapshot};

fuzz_target!(|data: &[u8]| {
    check(data);
    if data.len() >= 4 {
        let mut sealed = data.to_vec();
        let body = sealed.len() - 4;
        let crc = crc32c::crc32c(&sealed[..body]);
        sealed[body..].copy_from_slice(&crc.to_le_bytes());
        check(&sealed);
    }
});

/// Decodes `data`; whatever decodes must encode back to the same bytes.
fn check(data: &[u8]) {
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
}
