//! Eight bytes at a time (SWAR: SIMD within a register), in safe code: the byte searches the
//! scanner repeats for every string, number and skipped container.

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// High bit set in each byte of `word` equal to `byte` (exact for the lowest match; higher
/// bytes may be false positives, so only the lowest set bit is used).
#[inline(always)]
pub(super) fn matches(word: u64, byte: u8) -> u64 {
    let x = word ^ (ONES * u64::from(byte));
    x.wrapping_sub(ONES) & !x & HIGHS
}

/// High bit set in each byte of `word` that is not an ASCII digit (exact for every byte).
#[inline(always)]
pub(super) fn non_digits(word: u64) -> u64 {
    let x = word ^ (ONES * u64::from(b'0'));
    // Digits become 0..=9; adding 0x76 to the low 7 bits sets bit 7 exactly for 10..=0x7f,
    // and bytes with bit 7 already set keep it; no byte carries into the next.
    (((x & !HIGHS).wrapping_add(ONES * 0x76)) | x) & HIGHS
}

/// The 8 bytes at `at` as a little-endian word.
#[inline(always)]
pub(super) fn word_at(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(word)
}

/// Up to the first 8 bytes of `bytes` as a little-endian word, zero-padded.
#[inline]
pub(super) fn prefix(bytes: &[u8]) -> u64 {
    let mut word = [0u8; 8];
    let len = bytes.len().min(8);
    word[..len].copy_from_slice(&bytes[..len]);
    u64::from_le_bytes(word)
}

/// A mask of the low `len` bytes of a word (`len` at most 8).
#[inline(always)]
pub(super) fn low_bytes(len: usize) -> u64 {
    if len >= 8 {
        u64::MAX
    } else {
        (1u64 << (len * 8)) - 1
    }
}

/// The first `"` or `\\` at or after `at`.
#[inline(always)]
pub(super) fn find_quote(bytes: &[u8], mut at: usize) -> Option<usize> {
    while at + 8 <= bytes.len() {
        let word = word_at(bytes, at);
        let found = matches(word, b'"') | matches(word, b'\\');
        if found != 0 {
            return Some(at + (found.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    bytes
        .get(at..)?
        .iter()
        .position(|&b| b == b'"' || b == b'\\')
        .map(|i| at + i)
}

/// The first byte that matters when skipping a container (`"`, `{`, `}`, `[`, `]`) at or
/// after `at`. `[` and `]` differ from `{` and `}` only in bit 5, so setting it folds them.
#[inline]
pub(super) fn find_structural(bytes: &[u8], mut at: usize) -> Option<usize> {
    while at + 8 <= bytes.len() {
        let word = word_at(bytes, at);
        let folded = word | (ONES * 0x20);
        let found = matches(word, b'"') | matches(folded, b'{') | matches(folded, b'}');
        if found != 0 {
            return Some(at + (found.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    bytes
        .get(at..)?
        .iter()
        .position(|&b| matches!(b, b'"' | b'{' | b'}' | b'[' | b']'))
        .map(|i| at + i)
}

/// Moves past the characters a number may hold, from `at` (digits eight at a time); the
/// number's grammar is checked where its value is used.
#[inline(always)]
pub(super) fn skip_number(bytes: &[u8], mut at: usize) -> usize {
    loop {
        if at + 8 <= bytes.len() {
            let found = non_digits(word_at(bytes, at));
            if found == 0 {
                at += 8;
                continue;
            }
            at += (found.trailing_zeros() / 8) as usize;
        } else if let Some(b'0'..=b'9') = bytes.get(at) {
            at += 1;
            continue;
        }
        match bytes.get(at) {
            Some(b'-' | b'+' | b'.' | b'e' | b'E') => at += 1,
            _ => return at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_digits_are_found_in_every_lane() {
        for lane in 0..8 {
            for byte in 0..=255u8 {
                let mut word = *b"01234567";
                word[lane] = byte;
                let found = non_digits(u64::from_le_bytes(word));
                let expected = if byte.is_ascii_digit() {
                    0
                } else {
                    0x80u64 << (lane * 8)
                };
                assert_eq!(found, expected, "byte {byte:#04x} in lane {lane}");
            }
        }
    }

    #[test]
    fn searches_agree_with_a_byte_loop() {
        let text =
            br#"{"a":"x\"y","bb":[1,{"c":-2.5e3}],"d":1234567890123,"e":"0123456789abcdef"}"#;
        for start in 0..text.len() {
            let quote = text[start..]
                .iter()
                .position(|&b| b == b'"' || b == b'\\')
                .map(|i| start + i);
            assert_eq!(find_quote(text, start), quote, "from {start}");
            let structural = text[start..]
                .iter()
                .position(|b| b"\"{}[]".contains(b))
                .map(|i| start + i);
            assert_eq!(find_structural(text, start), structural, "from {start}");
            let number = start
                + text[start..]
                    .iter()
                    .take_while(|b| b"0123456789+-.eE".contains(b))
                    .count();
            assert_eq!(skip_number(text, start), number, "from {start}");
        }
        assert_eq!(low_bytes(0), 0);
        assert_eq!(low_bytes(3), 0xff_ffff);
        assert_eq!(low_bytes(8), u64::MAX);
        assert_eq!(prefix(b"abc"), 0x63_6261);
    }
}
