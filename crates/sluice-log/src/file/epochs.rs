//! A partition's epochs: where each run of offsets that no reader may have seen before begins.
//!
//! Recovery that cuts a partition's tail moves its end offset back: the offsets cut off may have
//! been read (in `write` mode before a power loss, or by a reader beside the writer) and are now
//! handed out again to new records. A consumer that remembers "offset 1,200 of epoch 0" can then
//! tell, from the epoch list, that epoch 0 ended at 1,000 and that it must rewind to 1,000 (the
//! role Kafka's leader epochs play). A partition begins with epoch 0 at offset 0; each cut adds
//! the next epoch at the new end offset.
//!
//! The list lives in `<partition>/epochs`, written only once a partition has a second epoch
//! (a partition without the file has only epoch 0), and replaced atomically: a temporary file is
//! written and synced, renamed over, and the directory synced. Recovery writes it *before* it
//! truncates, so a crash between the two never loses the new epoch (at worst the next recovery
//! adds another epoch at the same offset, which costs nothing).
//!
//! Format: a [`table`](super::table) with magic `"SLEP"` and entries
//! `{ epoch: u32, start_offset: u64 }` (little-endian), from epoch 0 at offset 0; epochs
//! increase and start offsets never decrease.

use super::format::Malformed;
use super::fs::{atomic_write, io_error};
use super::table;
use crate::record::EpochStart;
use crate::{LogError, Result};
use std::path::{Path, PathBuf};

/// The epoch file's name in a partition directory.
pub const EPOCHS_FILE: &str = "epochs";
/// Magic bytes at the start of an epoch file.
const MAGIC: &[u8; 4] = b"SLEP";
/// Bytes of one entry.
const ENTRY_LEN: usize = 12;

/// The epochs of a partition without an epoch file.
pub fn initial() -> Vec<EpochStart> {
    vec![EpochStart {
        epoch: 0,
        start_offset: 0,
    }]
}

/// Adds the epoch that starts at `start_offset` (the end offset after a cut): the next epoch
/// number, after dropping epochs that started beyond it (their offsets no longer exist, as
/// Kafka's epoch cache does), so start offsets never decrease. Pure.
pub fn push(epochs: &mut Vec<EpochStart>, start_offset: u64) -> EpochStart {
    let epoch = epochs.last().map_or(0, |last| last.epoch + 1);
    epochs.retain(|e| e.start_offset <= start_offset);
    let started = EpochStart {
        epoch,
        start_offset,
    };
    epochs.push(started);
    started
}

/// Serializes epochs to the file format.
pub fn encode(epochs: &[EpochStart]) -> Vec<u8> {
    let entries: Vec<[u8; ENTRY_LEN]> = epochs
        .iter()
        .map(|entry| {
            let mut bytes = [0; ENTRY_LEN];
            bytes[..4].copy_from_slice(&entry.epoch.to_le_bytes());
            bytes[4..].copy_from_slice(&entry.start_offset.to_le_bytes());
            bytes
        })
        .collect();
    table::encode(MAGIC, &entries)
}

/// Parses an epoch file, checking its CRC and that it starts with epoch 0 at offset 0 and that
/// epochs increase and start offsets never decrease.
pub fn decode(buf: &[u8]) -> Result<Vec<EpochStart>, Malformed> {
    let entries = table::decode::<ENTRY_LEN>(buf, MAGIC, "epoch file")?;
    if entries.is_empty() {
        return Err(Malformed {
            at: 8,
            reason: "epoch file lists no epoch".to_owned(),
        });
    }
    let mut epochs: Vec<EpochStart> = Vec::with_capacity(entries.len());
    for (i, bytes) in entries.iter().enumerate() {
        let entry = EpochStart {
            epoch: u32::from_le_bytes(bytes[..4].try_into().expect("4 bytes")),
            start_offset: u64::from_le_bytes(bytes[4..].try_into().expect("8 bytes")),
        };
        let ordered = match epochs.last() {
            None => entry.epoch == 0 && entry.start_offset == 0,
            Some(prev) => prev.epoch < entry.epoch && prev.start_offset <= entry.start_offset,
        };
        if !ordered {
            return Err(Malformed {
                at: table::entry_position(i, ENTRY_LEN),
                reason: "epochs must begin with epoch 0 at offset 0, then increase".to_owned(),
            });
        }
        epochs.push(entry);
    }
    Ok(epochs)
}

/// The epoch file of a partition directory.
pub fn path(partition_dir: &Path) -> PathBuf {
    partition_dir.join(EPOCHS_FILE)
}

/// Reads a partition's epochs: [`initial`] when it has no epoch file.
pub(crate) fn load(partition_dir: &Path) -> Result<Vec<EpochStart>> {
    let path = path(partition_dir);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(initial()),
        Err(error) => return Err(io_error("reading", &path)(error)),
    };
    decode(&bytes).map_err(|problem| LogError::Corrupt {
        path: path.clone(),
        reason: format!(
            "the partition's epoch file is damaged ({problem}); restore it from a backup, or remove it if no consumer keeps positions in this partition"
        ),
    })
}

/// Starts a new epoch at `start_offset` and makes it durable before returning: callers cut the
/// tail only after this.
pub(crate) fn start(
    partition_dir: &Path,
    epochs: &mut Vec<EpochStart>,
    start_offset: u64,
) -> Result<EpochStart> {
    let mut next = epochs.clone();
    let started = push(&mut next, start_offset);
    atomic_write(&path(partition_dir), &encode(&next))?;
    *epochs = next;
    Ok(started)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(epoch: u32, start_offset: u64) -> EpochStart {
        EpochStart {
            epoch,
            start_offset,
        }
    }

    #[test]
    fn new_epochs_get_the_next_number_and_drop_epochs_that_began_later() {
        let mut epochs = initial();
        assert_eq!(push(&mut epochs, 100), at(1, 100));
        assert_eq!(push(&mut epochs, 100), at(2, 100));
        assert_eq!(push(&mut epochs, 250), at(3, 250));
        // A cut below epoch 3's start: its offsets are gone, its number is not reused.
        assert_eq!(push(&mut epochs, 180), at(4, 180));
        assert_eq!(epochs, [at(0, 0), at(1, 100), at(2, 100), at(4, 180)]);
    }

    #[test]
    fn epoch_files_round_trip_and_reject_damage() {
        let epochs = vec![at(0, 0), at(1, 100), at(3, 100), at(4, 7_000_000_000)];
        let bytes = encode(&epochs);
        assert_eq!(decode(&bytes).unwrap(), epochs);
        for byte in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[byte] ^= 0x04;
            assert!(decode(&damaged).is_err(), "flip at {byte} accepted");
        }
        assert!(decode(&bytes[..bytes.len() - 1]).is_err());
        let error = decode(&encode(&[])).unwrap_err();
        assert!(error.reason.contains("no epoch"), "{error}");
        let error = decode(&encode(&[at(1, 0)])).unwrap_err();
        assert!(error.reason.contains("epoch 0 at offset 0"), "{error}");
        let error = decode(&encode(&[at(0, 0), at(2, 50), at(1, 60)])).unwrap_err();
        assert!(error.reason.contains("increase"), "{error}");
    }

    #[test]
    fn a_partition_without_a_file_has_epoch_zero_and_a_new_epoch_is_durable() {
        let dir = tempfile::tempdir().unwrap();
        let mut epochs = load(dir.path()).unwrap();
        assert_eq!(epochs, initial());
        assert_eq!(start(dir.path(), &mut epochs, 42).unwrap(), at(1, 42));
        assert_eq!(load(dir.path()).unwrap(), [at(0, 0), at(1, 42)]);
        assert!(!dir.path().join("epochs.tmp").exists());
        std::fs::write(path(dir.path()), b"garbage").unwrap();
        let error = load(dir.path()).unwrap_err();
        assert!(matches!(error, LogError::Corrupt { .. }), "{error}");
        assert!(
            error.to_string().contains("epoch file is damaged"),
            "{error}"
        );
    }
}
