//! The byte-level primitives of the partial-state encoding: LEB128 varints, zigzag signed
//! integers, and a reader that fails with a message instead of panicking on short or
//! malformed input.

/// The most bytes a `u64` takes as a varint.
pub(crate) const MAX_U64_BYTES: usize = 10;

/// [`Writer::u64`] appends this many bytes, then cuts the buffer back to the varint's length.
const WRITE_WIDTH: usize = 16;

/// How far past the bytes it keeps [`Writer::u64`] writes for a moment: a buffer reserved for
/// an encoding's bound plus this never grows while encoding.
pub(crate) const WRITE_SLACK: usize = WRITE_WIDTH - MAX_U64_BYTES;

/// Appends encoded values to a buffer.
#[derive(Debug, Default)]
pub(crate) struct Writer {
    pub(crate) bytes: Vec<u8>,
}

impl Writer {
    pub(crate) fn u8(&mut self, value: u8) {
        self.bytes.push(value);
    }

    pub(crate) fn varint(&mut self, mut value: u128) {
        loop {
            let byte = (value & 0x7f) as u8;
            value >>= 7;
            if value == 0 {
                self.bytes.push(byte);
                return;
            }
            self.bytes.push(byte | 0x80);
        }
    }

    /// The same bytes as [`Writer::varint`], built in two machine words instead of byte by
    /// byte: most values (counts, bins, and the 8–9-byte hash deltas of a HyperLogLog) take
    /// this path, and it is most of a checkpoint's encoding time.
    #[inline]
    pub(crate) fn u64(&mut self, value: u64) {
        if value < 0x80 {
            self.bytes.push(value as u8);
            return;
        }
        let len = (64 - value.leading_zeros() as usize).div_ceil(7);
        // Every 7-bit group in a byte with the continuation bit set; the last one cleared.
        let mut low = 0u64;
        for group in 0..8 {
            low |= (((value >> (7 * group)) & 0x7f) | 0x80) << (8 * group);
        }
        let high = (((value >> 56) & 0x7f) | 0x80) | (((value >> 63) | 0x80) << 8);
        // In the registers, without a branch (8 or 9 bytes is a coin toss for hash deltas),
        // and not in the array: a byte stored and then read back as part of a wider load
        // stalls the store buffer.
        let last = !(0x80u128 << (8 * (len - 1)));
        let encoded = ((u128::from(high) << 64 | u128::from(low)) & last).to_le_bytes();
        // A copy of fixed width (one vector move, no call to memcpy), then the unused tail
        // cut off: the reason for [`WRITE_SLACK`].
        let start = self.bytes.len();
        self.bytes.extend_from_slice(&encoded);
        self.bytes.truncate(start + len);
    }

    pub(crate) fn i128(&mut self, value: i128) {
        self.varint(((value << 1) ^ (value >> 127)) as u128);
    }

    pub(crate) fn i64(&mut self, value: i64) {
        self.i128(i128::from(value));
    }

    pub(crate) fn raw(&mut self, bytes: &[u8]) {
        self.bytes.extend_from_slice(bytes);
    }
}

/// Reads encoded values; every method fails with a description of what was malformed.
#[derive(Debug)]
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
    position: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, position: 0 }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.position == self.bytes.len()
    }

    pub(crate) fn u8(&mut self, what: &str) -> Result<u8, String> {
        let byte = *self
            .bytes
            .get(self.position)
            .ok_or_else(|| format!("truncated: {what} is missing at byte {}", self.position))?;
        self.position += 1;
        Ok(byte)
    }

    pub(crate) fn varint(&mut self, what: &str) -> Result<u128, String> {
        let mut value: u128 = 0;
        for shift in (0..128).step_by(7) {
            let byte = self.u8(what)?;
            value |= u128::from(byte & 0x7f)
                .checked_shl(shift)
                .filter(|v| v >> shift == u128::from(byte & 0x7f))
                .ok_or_else(|| format!("{what} overflows at byte {}", self.position))?;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(format!(
            "{what} is longer than 19 bytes at byte {}",
            self.position
        ))
    }

    pub(crate) fn u64(&mut self, what: &str) -> Result<u64, String> {
        u64::try_from(self.varint(what)?).map_err(|_| format!("{what} is out of range"))
    }

    pub(crate) fn usize_at_most(&mut self, max: usize, what: &str) -> Result<usize, String> {
        let value = self.u64(what)?;
        usize::try_from(value)
            .ok()
            .filter(|&v| v <= max)
            .ok_or_else(|| format!("{what} is {value}, more than the limit of {max}"))
    }

    pub(crate) fn i128(&mut self, what: &str) -> Result<i128, String> {
        let raw = self.varint(what)?;
        Ok(((raw >> 1) as i128) ^ -((raw & 1) as i128))
    }

    pub(crate) fn i64(&mut self, what: &str) -> Result<i64, String> {
        i64::try_from(self.i128(what)?).map_err(|_| format!("{what} is out of range"))
    }

    pub(crate) fn raw(&mut self, len: usize, what: &str) -> Result<&'a [u8], String> {
        let end = self
            .position
            .checked_add(len)
            .filter(|&end| end <= self.bytes.len())
            .ok_or_else(|| {
                format!(
                    "truncated: {what} needs {len} bytes at byte {}",
                    self.position
                )
            })?;
        let slice = &self.bytes[self.position..end];
        self.position = end;
        Ok(slice)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn integers_round_trip(a in any::<u64>(), b in any::<i128>(), c in any::<i64>()) {
            let mut writer = Writer::default();
            writer.u64(a);
            writer.i128(b);
            writer.i64(c);
            let mut reader = Reader::new(&writer.bytes);
            prop_assert_eq!(reader.u64("a").unwrap(), a);
            prop_assert_eq!(reader.i128("b").unwrap(), b);
            prop_assert_eq!(reader.i64("c").unwrap(), c);
            prop_assert!(reader.is_empty());
        }
    }

    proptest! {
        #[test]
        fn the_u64_path_writes_the_bytes_of_the_general_varint(
            value in prop_oneof![any::<u64>(), 0u64..0x4000, Just(u64::MAX), Just(1 << 63)],
            before in 0usize..40,
        ) {
            let mut fast = Writer { bytes: vec![7; before] };
            fast.u64(value);
            let mut general = Writer { bytes: vec![7; before] };
            general.varint(u128::from(value));
            prop_assert_eq!(fast.bytes, general.bytes);
        }
    }

    #[test]
    fn every_u64_length_matches_the_general_varint() {
        for bits in 0..64 {
            for value in [1u64 << bits, (1u64 << bits) - 1, (1u64 << bits) | 1] {
                let mut fast = Writer::default();
                fast.u64(value);
                let mut general = Writer::default();
                general.varint(u128::from(value));
                assert_eq!(fast.bytes, general.bytes, "{value:#x}");
            }
        }
    }

    #[test]
    fn malformed_varints_are_errors_not_panics() {
        let mut reader = Reader::new(&[0x80, 0x80]);
        assert!(
            reader
                .u64("count")
                .unwrap_err()
                .contains("truncated: count")
        );
        let long = [0xffu8; 20];
        assert!(Reader::new(&long).varint("x").is_err());
        let big = [
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f,
        ];
        assert!(
            Reader::new(&big)
                .u64("x")
                .unwrap_err()
                .contains("out of range")
        );
    }
}
