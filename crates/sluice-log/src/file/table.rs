//! Small checksummed files of fixed-size entries: a partition's `epochs` and `gaps`. Pure codec,
//! no I/O (the files are replaced with [`atomic_write`](super::fs::atomic_write)).
//!
//! ```text
//! magic: [u8; 4], version: u8 = 1, _pad: [u8; 3],
//! count: u32,
//! entries: [[u8; N]; count],
//! crc: u32,                     // CRC32C of everything before it
//! ```

use super::format::Malformed;

/// The format version of every table file.
const VERSION: u8 = 1;
/// Magic, version, padding, count.
const HEADER_LEN: usize = 4 + 1 + 3 + 4;
/// More entries than any table holds (one per recovery or repair): bounds what a damaged count
/// may make a reader allocate.
const MAX_ENTRIES: usize = 1 << 20;

/// Serializes entries of `N` bytes behind `magic`.
pub(crate) fn encode<const N: usize>(magic: &[u8; 4], entries: &[[u8; N]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + entries.len() * N + 4);
    out.extend_from_slice(magic);
    out.push(VERSION);
    out.extend_from_slice(&[0; 3]);
    out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    for entry in entries {
        out.extend_from_slice(entry);
    }
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Parses a table file of `what` (for messages), checking its magic, version, length and CRC.
pub(crate) fn decode<const N: usize>(
    buf: &[u8],
    magic: &[u8; 4],
    what: &str,
) -> Result<Vec<[u8; N]>, Malformed> {
    let bad = |at: usize, reason: String| Malformed { at, reason };
    if buf.len() < HEADER_LEN + 4 {
        return Err(bad(0, format!("{what} is shorter than its header")));
    }
    let (body, crc) = buf.split_at(buf.len() - 4);
    if crc32c::crc32c(body).to_le_bytes() != crc {
        return Err(bad(body.len(), format!("{what} fails its checksum")));
    }
    if &body[..4] != magic || body[4] != VERSION || body[5..8] != [0; 3] {
        return Err(bad(0, format!("not a sluice {what} of a known version")));
    }
    let count = u32::from_le_bytes(body[8..12].try_into().expect("4 bytes")) as usize;
    if count > MAX_ENTRIES || body.len() != HEADER_LEN + count * N {
        return Err(bad(
            8,
            format!("{what}: entry count does not match the file length"),
        ));
    }
    Ok(body[HEADER_LEN..]
        .chunks_exact(N)
        .map(|chunk| chunk.try_into().expect("N bytes"))
        .collect())
}

/// Where entry `i` starts in an encoded table (for error positions).
pub(crate) fn entry_position(i: usize, n: usize) -> usize {
    HEADER_LEN + i * n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_round_trip_and_reject_damage() {
        let entries = [[1u8, 2, 3], [4, 5, 6]];
        let bytes = encode(b"TEST", &entries);
        assert_eq!(decode::<3>(&bytes, b"TEST", "t").unwrap(), entries);
        assert!(
            decode::<3>(&encode::<3>(b"TEST", &[]), b"TEST", "t")
                .unwrap()
                .is_empty()
        );
        for byte in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[byte] ^= 0x20;
            assert!(
                decode::<3>(&damaged, b"TEST", "t").is_err(),
                "flip at {byte}"
            );
        }
        let error = decode::<3>(&bytes, b"ELSE", "gap file").unwrap_err();
        assert!(error.reason.contains("not a sluice gap file"), "{error}");
        assert!(
            decode::<4>(&bytes, b"TEST", "t").is_err(),
            "wrong entry size"
        );
        assert!(decode::<3>(&bytes[..10], b"TEST", "t").is_err());
    }
}
