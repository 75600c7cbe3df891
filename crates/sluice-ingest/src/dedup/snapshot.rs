//! The dedup snapshot: the remembered ids, written every `ingest.dedup-snapshot-interval` and
//! at shutdown, so that a restart (also after `kill -9`) remembers the whole window without
//! reading it back from the log.
//!
//! A snapshot records, with the ids, the events topic's next offset per partition at a moment
//! when every append before those offsets had committed its ids (see [`super::gate`]): at start
//! the collector loads it and reads only the records after those offsets ([`super::restore`]).
//!
//! # Format (version 1)
//! All integers little-endian; the file is `<data-dir>/ingest/dedup.snapshot`, replaced
//! atomically (written to `.tmp`, synced, renamed, directory synced).
//!
//! ```text
//! magic: [u8; 4] = "SLDD", version: u8 = 1, _reserved: [u8; 3] = 0
//! saved_at: i64                  // collector clock, ms since the epoch
//! window_ms: i64                 // ingest.dedup-window when saved (informational)
//! floor: i64                     // coverage starts no earlier (i64::MIN: no limit)
//! topic_len: u16, topic: [u8; topic_len]
//! partitions: u32, next_offsets: [u64; partitions]
//! shards: u16                    // 64
//! per shard: covered_since: i64, generations: u8,
//!            per generation: since: i64, ids: u32, [u128; ids]
//! crc: u32                       // CRC-32C of every byte before it
//! ```
//!
//! Size: 16 bytes per id plus a few per shard: `ingest.dedup-capacity` × 16 bytes at most.
//! Decoding checks the checksum, version, counts against the bytes left (nothing is allocated
//! from an unchecked count) and that every id belongs to its shard.

use super::{Fingerprint, Generation, SHARDS, shard_of};
use sluice_core::time::Millis;
use std::io::Write;
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 4] = b"SLDD";
const VERSION: u8 = 1;
/// Generations one shard may hold in a snapshot (the set holds about four).
const MAX_GENERATIONS: u8 = 16;

/// The file, under the data directory.
pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join("ingest").join("dedup.snapshot")
}

/// One shard of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardSnapshot {
    /// Every id committed since this time is in the generations.
    pub covered_since: Millis,
    /// Oldest first.
    pub generations: Vec<Generation>,
}

/// A decoded snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// When it was taken.
    pub saved_at: Millis,
    /// The dedup window then.
    pub window_ms: Millis,
    /// Coverage starts no earlier than this.
    pub floor: Millis,
    /// The events topic.
    pub topic: String,
    /// Per partition, the offset from which the log holds ids the snapshot may lack.
    pub next_offsets: Vec<u64>,
    /// [`SHARDS`] shards.
    pub shards: Vec<ShardSnapshot>,
}

/// What a snapshot says besides its ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header<'a> {
    /// When it is taken.
    pub saved_at: Millis,
    /// The dedup window.
    pub window_ms: Millis,
    /// Coverage starts no earlier than this.
    pub floor: Millis,
    /// The events topic.
    pub topic: &'a str,
    /// Per partition, the offset below which every record's id is in the snapshot.
    pub next_offsets: &'a [u64],
}

/// Encodes a snapshot shard by shard, so the ids are copied once, into the output.
#[derive(Debug)]
pub struct Encoder {
    out: Vec<u8>,
    shards: usize,
}

impl Encoder {
    /// Begins a snapshot with `header`; `ids` is how many ids follow (to size the buffer).
    pub fn new(header: &Header<'_>, ids: usize) -> Self {
        let mut out = Vec::with_capacity(64 + header.topic.len() + ids * 16 + SHARDS * 16);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&[VERSION, 0, 0, 0]);
        out.extend_from_slice(&header.saved_at.to_le_bytes());
        out.extend_from_slice(&header.window_ms.to_le_bytes());
        out.extend_from_slice(&header.floor.to_le_bytes());
        let topic = &header.topic.as_bytes()[..header.topic.len().min(u16::MAX as usize)];
        out.extend_from_slice(&(topic.len() as u16).to_le_bytes());
        out.extend_from_slice(topic);
        out.extend_from_slice(&(header.next_offsets.len() as u32).to_le_bytes());
        for offset in header.next_offsets {
            out.extend_from_slice(&offset.to_le_bytes());
        }
        out.extend_from_slice(&(SHARDS as u16).to_le_bytes());
        Self { out, shards: 0 }
    }

    /// Adds the next shard (shards come in order, each id in its own shard).
    pub fn shard(&mut self, covered_since: Millis, generations: &[(Millis, &[Fingerprint])]) {
        debug_assert!(self.shards < SHARDS);
        // Generations beyond the format's bound are the newest few of a set that never holds
        // that many; merging keeps the ids and their oldest start, so no id is dropped.
        let limit = MAX_GENERATIONS as usize;
        let (head, tail) = generations.split_at(generations.len().min(limit - 1));
        self.out.extend_from_slice(&covered_since.to_le_bytes());
        self.out
            .push((head.len() + usize::from(!tail.is_empty())) as u8);
        for (since, ids) in head {
            self.generation(*since, ids.iter());
        }
        if let Some((since, _)) = tail.first() {
            self.generation(*since, tail.iter().flat_map(|(_, ids)| ids.iter()));
        }
        self.shards += 1;
    }

    fn generation<'a>(
        &mut self,
        since: Millis,
        ids: impl Iterator<Item = &'a Fingerprint> + Clone,
    ) {
        self.out.extend_from_slice(&since.to_le_bytes());
        let count = ids.clone().count().min(u32::MAX as usize);
        self.out.extend_from_slice(&(count as u32).to_le_bytes());
        for id in ids.take(count) {
            self.out.extend_from_slice(&id.to_le_bytes());
        }
    }

    /// The encoded snapshot, with its checksum.
    pub fn finish(mut self) -> Vec<u8> {
        while self.shards < SHARDS {
            self.shard(Millis::MIN, &[]);
        }
        let crc = crc32c::crc32c(&self.out);
        self.out.extend_from_slice(&crc.to_le_bytes());
        self.out
    }
}

/// Reads little-endian fields, failing with what was being read.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, len: usize, what: &str) -> Result<&'a [u8], String> {
        if self.bytes.len() < len {
            return Err(format!(
                "the file ends inside the {what} ({len} bytes needed, {} left)",
                self.bytes.len()
            ));
        }
        let (head, rest) = self.bytes.split_at(len);
        self.bytes = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], String> {
        Ok(self.take(N, what)?.try_into().expect("length checked"))
    }

    fn u8(&mut self, what: &str) -> Result<u8, String> {
        Ok(self.array::<1>(what)?[0])
    }

    fn u16(&mut self, what: &str) -> Result<u16, String> {
        self.array(what).map(u16::from_le_bytes)
    }

    fn u32(&mut self, what: &str) -> Result<u32, String> {
        self.array(what).map(u32::from_le_bytes)
    }

    fn u64(&mut self, what: &str) -> Result<u64, String> {
        self.array(what).map(u64::from_le_bytes)
    }

    fn i64(&mut self, what: &str) -> Result<i64, String> {
        self.array(what).map(i64::from_le_bytes)
    }

    /// A count of `size`-byte items that must fit in the bytes left.
    fn count(&mut self, value: usize, size: usize, what: &str) -> Result<usize, String> {
        if value.saturating_mul(size) > self.bytes.len() {
            return Err(format!(
                "{value} {what} do not fit in the {} bytes left",
                self.bytes.len()
            ));
        }
        Ok(value)
    }
}

impl Snapshot {
    /// Decodes a snapshot file's bytes.
    pub fn decode(bytes: &[u8]) -> Result<Snapshot, String> {
        if bytes.len() < 8 + 4 {
            return Err(format!("{} bytes are too few for a snapshot", bytes.len()));
        }
        let (body, crc) = bytes.split_at(bytes.len() - 4);
        let stored = u32::from_le_bytes(crc.try_into().expect("4 bytes"));
        let actual = crc32c::crc32c(body);
        if stored != actual {
            return Err(format!(
                "checksum mismatch (stored {stored:08x}, computed {actual:08x})"
            ));
        }
        let mut input = Reader { bytes: body };
        if input.array::<4>("magic")? != *MAGIC {
            return Err("not a dedup snapshot (wrong magic)".into());
        }
        let [version, reserved @ ..] = input.array::<4>("version")?;
        if version != VERSION {
            return Err(format!(
                "format version {version} is not supported (this sluice reads version {VERSION})"
            ));
        }
        if reserved != [0; 3] {
            return Err("the reserved bytes after the version are not zero".into());
        }
        let saved_at = input.i64("save time")?;
        let window_ms = input.i64("window")?;
        let floor = input.i64("coverage floor")?;
        let topic_len = usize::from(input.u16("topic length")?);
        let topic = String::from_utf8(input.take(topic_len, "topic")?.to_vec())
            .map_err(|_| "the topic name is not UTF-8".to_owned())?;
        let partitions = input.u32("partition count")? as usize;
        let partitions = input.count(partitions, 8, "partition offsets")?;
        let next_offsets = (0..partitions)
            .map(|_| input.u64("partition offset"))
            .collect::<Result<Vec<_>, _>>()?;
        let shards = usize::from(input.u16("shard count")?);
        if shards != SHARDS {
            return Err(format!(
                "the snapshot has {shards} shards; this sluice uses {SHARDS}"
            ));
        }
        let mut decoded = Vec::with_capacity(SHARDS);
        for shard in 0..SHARDS {
            let covered_since = input.i64("shard coverage")?;
            let count = input.u8("generation count")?;
            if count > MAX_GENERATIONS {
                return Err(format!(
                    "shard {shard} has {count} generations, more than {MAX_GENERATIONS}"
                ));
            }
            let mut generations = Vec::with_capacity(usize::from(count));
            for _ in 0..count {
                let since = input.i64("generation start")?;
                let ids = input.u32("id count")? as usize;
                let ids = input.count(ids, 16, "ids")?;
                let mut list = Vec::with_capacity(ids);
                for _ in 0..ids {
                    let id = u128::from_le_bytes(input.array("id")?);
                    if shard_of(id) != shard {
                        return Err(format!(
                            "an id of shard {} is stored in shard {shard}",
                            shard_of(id)
                        ));
                    }
                    list.push(id);
                }
                generations.push(Generation { since, ids: list });
            }
            decoded.push(ShardSnapshot {
                covered_since,
                generations,
            });
        }
        if !input.bytes.is_empty() {
            return Err(format!(
                "{} trailing bytes after the last shard",
                input.bytes.len()
            ));
        }
        Ok(Snapshot {
            saved_at,
            window_ms,
            floor,
            topic,
            next_offsets,
            shards: decoded,
        })
    }

    /// How many ids it holds.
    pub fn ids(&self) -> usize {
        self.shards
            .iter()
            .flat_map(|shard| &shard.generations)
            .map(|generation| generation.ids.len())
            .sum()
    }
}

/// Writes `bytes` to `path` atomically and durably: a temporary file, synced, renamed over
/// `path`, and the directory synced (creating the directory first if needed).
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = path.with_extension("snapshot.tmp");
    {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

/// Reads the snapshot at `path`: `Ok(None)` when there is none.
pub fn read(path: &Path) -> std::io::Result<Option<Vec<u8>>> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dedup::fingerprint;

    fn ids_of_shard(shard: usize, count: usize) -> Vec<Fingerprint> {
        (0..)
            .map(|i| fingerprint("t", &i.to_string()))
            .filter(|id| shard_of(*id) == shard)
            .take(count)
            .collect()
    }

    fn sample() -> (Vec<u8>, Vec<Fingerprint>) {
        let header = Header {
            saved_at: 1_000_000,
            window_ms: 600_000,
            floor: 999_000,
            topic: "events",
            next_offsets: &[5, 0, 7],
        };
        let mut encoder = Encoder::new(&header, 10);
        let ids = ids_of_shard(0, 3);
        encoder.shard(900_000, &[(900_000, &ids[..2]), (950_000, &ids[2..])]);
        (encoder.finish(), ids)
    }

    #[test]
    fn round_trips_with_every_field() {
        let (bytes, ids) = sample();
        let snapshot = Snapshot::decode(&bytes).unwrap();
        assert_eq!(snapshot.saved_at, 1_000_000);
        assert_eq!(snapshot.window_ms, 600_000);
        assert_eq!(snapshot.floor, 999_000);
        assert_eq!(snapshot.topic, "events");
        assert_eq!(snapshot.next_offsets, [5, 0, 7]);
        assert_eq!(snapshot.shards.len(), SHARDS);
        assert_eq!(
            snapshot.shards[0],
            ShardSnapshot {
                covered_since: 900_000,
                generations: vec![
                    Generation {
                        since: 900_000,
                        ids: ids[..2].to_vec()
                    },
                    Generation {
                        since: 950_000,
                        ids: ids[2..].to_vec()
                    },
                ],
            }
        );
        assert!(
            snapshot.shards[1..]
                .iter()
                .all(|s| s.generations.is_empty())
        );
        assert_eq!(snapshot.ids(), 3);
    }

    #[test]
    fn damage_truncation_and_misplaced_ids_are_refused_with_the_reason() {
        let (bytes, _) = sample();
        let mut flipped = bytes.clone();
        flipped[40] ^= 1;
        assert!(
            Snapshot::decode(&flipped)
                .unwrap_err()
                .contains("checksum mismatch")
        );
        assert!(Snapshot::decode(&bytes[..bytes.len() - 9]).is_err());
        assert!(Snapshot::decode(b"").unwrap_err().contains("too few"));
        let mut reserved = bytes[..bytes.len() - 4].to_vec();
        reserved[5] = 1;
        reserved.extend_from_slice(&crc32c::crc32c(&reserved).to_le_bytes());
        assert!(
            Snapshot::decode(&reserved)
                .unwrap_err()
                .contains("reserved bytes")
        );

        let header = Header {
            saved_at: 0,
            window_ms: 1,
            floor: 0,
            topic: "events",
            next_offsets: &[],
        };
        let mut encoder = Encoder::new(&header, 1);
        let wrong = ids_of_shard(1, 1);
        encoder.shard(0, &[(0, &wrong[..])]);
        let error = Snapshot::decode(&encoder.finish()).unwrap_err();
        assert_eq!(error, "an id of shard 1 is stored in shard 0");

        // A count larger than the file is refused before anything is allocated for it.
        let mut huge = Encoder::new(&header, 0);
        huge.out.truncate(huge.out.len() - 2);
        huge.out.extend_from_slice(&(SHARDS as u16).to_le_bytes());
        huge.out.extend_from_slice(&0i64.to_le_bytes());
        huge.out.push(1);
        huge.out.extend_from_slice(&0i64.to_le_bytes());
        huge.out.extend_from_slice(&u32::MAX.to_le_bytes());
        let crc = crc32c::crc32c(&huge.out);
        huge.out.extend_from_slice(&crc.to_le_bytes());
        let error = Snapshot::decode(&huge.out).unwrap_err();
        assert!(error.contains("4294967295 ids do not fit"), "{error}");
    }

    #[test]
    fn written_atomically_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let file = path(dir.path());
        assert_eq!(read(&file).unwrap(), None);
        let (bytes, _) = sample();
        write_atomically(&file, &bytes).unwrap();
        write_atomically(&file, &bytes).unwrap();
        assert_eq!(read(&file).unwrap(), Some(bytes));
        let names: Vec<_> = std::fs::read_dir(file.parent().unwrap())
            .unwrap()
            .map(|entry| entry.unwrap().file_name())
            .collect();
        assert_eq!(names, ["dedup.snapshot"], "no temporary file is left");
    }
}
