//! The walk over one event: keys matched against the [`FieldSet`]'s trie (or against the
//! [`KeyOrder`]'s expectation), wanted values recorded, everything else skipped.
//!
//! The common path — compact JSON, keys without escapes, strings and numbers — keeps the
//! position in a local and handles each key and value inline; whitespace, escapes and
//! containers go through the general helpers, which keep it in `self.position`.

use super::words::{find_quote, find_structural, matches, skip_number, word_at};
use super::{Entry, FieldSet, KeyOrder, Kind, ScanError, Slot, Step, unescape};

/// Whether the scan may stop (every slot filled, or the gate said so).
type Done = bool;

pub(super) struct Scanner<'a, 'g> {
    set: &'a FieldSet,
    bytes: &'a [u8],
    position: usize,
    remaining: usize,
    key_buffer: Vec<u8>,
    filled: u64,
    gate_mask: u64,
    gate: &'g mut dyn FnMut(&[Slot]) -> bool,
    shape: &'g mut KeyOrder,
    /// Whether to record what this event looks like in `shape`.
    learn: bool,
    /// How many keys this scan has met (the index of the next step).
    step: usize,
}

impl<'a, 'g> Scanner<'a, 'g> {
    pub(super) fn new(
        set: &'a FieldSet,
        bytes: &'a [u8],
        shape: &'g mut KeyOrder,
        learn: bool,
        gate_mask: u64,
        gate: &'g mut dyn FnMut(&[Slot]) -> bool,
    ) -> Self {
        Scanner {
            set,
            bytes,
            position: 0,
            remaining: set.len,
            key_buffer: Vec::new(),
            filled: 0,
            gate_mask,
            gate,
            shape,
            learn,
            step: 0,
        }
    }

    /// Scans the event (an object) into `slots`.
    pub(super) fn run(mut self, slots: &mut [Slot]) -> Result<(), ScanError> {
        self.skip_whitespace();
        if self.peek() != Some(b'{') {
            return Err(self.error("an object"));
        }
        self.object(0, slots)?;
        Ok(())
    }

    #[cold]
    fn error(&self, expected: &'static str) -> ScanError {
        ScanError {
            offset: self.position,
            expected,
        }
    }

    #[inline(always)]
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.position).copied()
    }

    #[inline(always)]
    fn skip_whitespace(&mut self) {
        while let Some(b' ' | b'\n' | b'\t' | b'\r') = self.peek() {
            self.position += 1;
        }
    }

    /// The next byte that is not whitespace (the position moves to it).
    #[inline(always)]
    fn next_token(&mut self) -> Option<u8> {
        self.skip_whitespace();
        self.peek()
    }

    /// At the opening quote: returns the content range and whether it has escapes.
    #[inline(always)]
    fn string(&mut self) -> Result<(usize, usize, bool), ScanError> {
        self.position += 1;
        let start = self.position;
        let mut escaped = false;
        loop {
            match find_quote(self.bytes, self.position) {
                Some(index) if self.bytes[index] == b'"' => {
                    self.position = index + 1;
                    return Ok((start, index, escaped));
                }
                Some(index) => {
                    escaped = true;
                    self.position = index + 2;
                    if self.position > self.bytes.len() {
                        self.position = self.bytes.len();
                        return Err(self.error("the end of a string"));
                    }
                }
                None => {
                    self.position = self.bytes.len();
                    return Err(self.error("the end of a string"));
                }
            }
        }
    }

    /// At `{`: scans an object whose keys are `node`'s, recording the wanted ones.
    fn object(&mut self, node: u32, slots: &mut [Slot]) -> Result<Done, ScanError> {
        let bytes = self.bytes;
        let mut at = self.position + 1;
        if bytes.get(at) != Some(&b'"') {
            self.position = at;
            match self.next_token() {
                Some(b'"') => at = self.position,
                Some(b'}') => {
                    self.position += 1;
                    return Ok(false);
                }
                _ => return Err(self.error("a key")),
            }
        }
        loop {
            // At a key's opening quote: the key the shape expects here, or the general path.
            let step = self.step;
            self.step += 1;
            let entry = match self.shape.steps.get(step) {
                Some(expected) if expected.node == node && expected.matches_at(bytes, at) => {
                    at += expected.len as usize;
                    expected.entry()
                }
                _ => {
                    let (entry, after) = self.key(node, at, step)?;
                    at = after;
                    entry
                }
            };
            let first = match bytes.get(at) {
                Some(&byte) if !matches!(byte, b' ' | b'\n' | b'\t' | b'\r') => byte,
                _ => {
                    self.position = at;
                    let Some(first) = self.next_token() else {
                        return Err(self.error("a value"));
                    };
                    at = self.position;
                    first
                }
            };
            match (entry, first) {
                (None, b'"') => match find_quote(bytes, at + 1) {
                    Some(index) if bytes[index] == b'"' => at = index + 1,
                    _ => {
                        self.position = at;
                        self.string()?;
                        at = self.position;
                    }
                },
                (None, b'-' | b'0'..=b'9') => at = skip_number(bytes, at),
                (None, _) => {
                    self.position = at;
                    self.skip_value(first)?;
                    at = self.position;
                }
                (Some(entry), _) => {
                    self.position = at;
                    let set = self.set;
                    if self.wanted_value(&set.entries[entry as usize], first, slots)? {
                        return Ok(true);
                    }
                    at = self.position;
                }
            }
            match bytes.get(at) {
                Some(b',') => at += 1,
                Some(b'}') => {
                    self.position = at + 1;
                    return Ok(false);
                }
                _ => {
                    self.position = at;
                    match self.next_token() {
                        Some(b',') => at = self.position + 1,
                        Some(b'}') => {
                            self.position += 1;
                            return Ok(false);
                        }
                        _ => return Err(self.error("',' or '}' in an object")),
                    }
                }
            }
            if bytes.get(at) != Some(&b'"') {
                self.position = at;
                if self.next_token() != Some(b'"') {
                    return Err(self.error("a key"));
                }
                at = self.position;
            }
        }
    }

    /// The general path for the key at `at` (its opening quote), step `step` of the scan:
    /// finds it in `node`, moves past its colon, and records it in the shape. Returns the
    /// entry and the position after the colon.
    #[inline(always)]
    fn key(
        &mut self,
        node: u32,
        at: usize,
        step: usize,
    ) -> Result<(Option<u32>, usize), ScanError> {
        let bytes = self.bytes;
        let start = at + 1;
        // A key without escapes is matched straight from the event bytes: the word that
        // holds its first 8 bytes also tells where a short key ends.
        let mut found = None;
        if start + 8 <= bytes.len() {
            let word = word_at(bytes, start);
            let stops = matches(word, b'"') | matches(word, b'\\');
            if stops != 0 {
                let len = (stops.trailing_zeros() / 8) as usize;
                if bytes[start + len] == b'"' {
                    let word = word & ((1u64 << (len * 8)) - 1);
                    found = Some((self.set.find_word(node, word, len, &[]), start + len + 1));
                }
            } else if let Some(end) = find_quote(bytes, start + 8)
                && bytes[end] == b'"'
            {
                let tail = &bytes[start + 8..end];
                found = Some((self.set.find_word(node, word, end - start, tail), end + 1));
            }
        }
        let (entry, mut after, plain) = match found {
            Some((entry, after)) => (entry, after, true),
            None => {
                // Escapes, or the very end of the input.
                self.position = at;
                let entry = self.escaped_key(node)?;
                (entry, self.position, false)
            }
        };
        let compact = bytes.get(after) == Some(&b':');
        if compact {
            after += 1;
        } else {
            self.position = after;
            if self.next_token() != Some(b':') {
                return Err(self.error("':' after a key"));
            }
            after = self.position + 1;
        }
        if self.learn && step < KeyOrder::MAX_STEPS {
            let steps = &mut self.shape.steps;
            steps.truncate(step);
            steps.push(if plain && compact {
                Step::new(node, entry, &bytes[at..after])
            } else {
                Step::never(node)
            });
        }
        Ok((entry, after))
    }

    /// At a key's opening quote, for keys the fast path of [`Scanner::key`] does not handle:
    /// finds the key in `node` and moves past its closing quote.
    #[cold]
    fn escaped_key(&mut self, node: u32) -> Result<Option<u32>, ScanError> {
        let (start, end, escaped) = self.string()?;
        if escaped {
            self.key_buffer.clear();
            Ok(unescape(&self.bytes[start..end], &mut self.key_buffer)
                .then(|| self.set.find(node, &self.key_buffer))
                .flatten())
        } else {
            Ok(self.set.find(node, &self.bytes[start..end]))
        }
    }

    /// A value whose key is in the trie, starting with `first`: record it and/or descend
    /// into it.
    fn wanted_value(
        &mut self,
        entry: &Entry,
        first: u8,
        slots: &mut [Slot],
    ) -> Result<Done, ScanError> {
        let start = self.position;
        let fresh = entry
            .slot
            .is_some_and(|slot| slots[slot].kind == Kind::Missing);
        let kind = match (first, entry.child) {
            (b'{', Some(child)) => {
                if self.object(child, slots)? {
                    if let Some(slot) = entry.slot.filter(|_| fresh) {
                        slots[slot] = Slot {
                            kind: Kind::Composite,
                            start: 0,
                            end: 0,
                        };
                    }
                    return Ok(true);
                }
                Kind::Composite
            }
            _ if !fresh => {
                self.skip_value(first)?;
                return Ok(false);
            }
            (b'"', _) => {
                let (start, end, escaped) = self.string()?;
                if let Some(slot) = entry.slot {
                    slots[slot] = Slot {
                        kind: if escaped {
                            Kind::EscapedString
                        } else {
                            Kind::String
                        },
                        start: start as u32,
                        end: end as u32,
                    };
                    return Ok(self.filled(slot, slots));
                }
                return Ok(false);
            }
            (b'{' | b'[', _) => {
                self.skip_container()?;
                Kind::Composite
            }
            (b't', _) => self.literal(b"true", Kind::True)?,
            (b'f', _) => self.literal(b"false", Kind::False)?,
            (b'n', _) => self.literal(b"null", Kind::Null)?,
            (b'-' | b'0'..=b'9', _) => {
                self.position = skip_number(self.bytes, self.position);
                Kind::Number
            }
            _ => return Err(self.error("a value")),
        };
        match entry.slot {
            Some(slot) if fresh => {
                slots[slot] = Slot {
                    kind,
                    start: start as u32,
                    end: self.position as u32,
                };
                Ok(self.filled(slot, slots))
            }
            _ => Ok(false),
        }
    }

    #[inline(always)]
    fn filled(&mut self, slot: usize, slots: &[Slot]) -> Done {
        self.remaining -= 1;
        if self.remaining == 0 {
            return true;
        }
        if self.gate_mask != 0 && slot < 64 {
            self.filled |= 1 << slot;
            if self.filled & self.gate_mask == self.gate_mask {
                self.gate_mask = 0;
                return (self.gate)(slots);
            }
        }
        false
    }

    fn literal(&mut self, text: &[u8], kind: Kind) -> Result<Kind, ScanError> {
        if self.bytes[self.position..].starts_with(text) {
            self.position += text.len();
            Ok(kind)
        } else {
            Err(self.error("true, false or null"))
        }
    }

    /// Skips the value that starts with `first`.
    fn skip_value(&mut self, first: u8) -> Result<(), ScanError> {
        match first {
            b'"' => self.string().map(|_| ()),
            b'-' | b'0'..=b'9' => {
                self.position = skip_number(self.bytes, self.position);
                Ok(())
            }
            b'{' | b'[' => self.skip_container(),
            b't' => self.literal(b"true", Kind::True).map(|_| ()),
            b'f' => self.literal(b"false", Kind::False).map(|_| ()),
            b'n' => self.literal(b"null", Kind::Null).map(|_| ()),
            _ => Err(self.error("a value")),
        }
    }

    /// Skips a whole object or array by counting brackets outside strings.
    fn skip_container(&mut self) -> Result<(), ScanError> {
        let mut depth = 0usize;
        while let Some(index) = find_structural(self.bytes, self.position) {
            self.position = index;
            match self.bytes[index] {
                b'"' => {
                    self.string()?;
                    continue;
                }
                b'{' | b'[' => depth += 1,
                _ => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        self.position += 1;
                        return Ok(());
                    }
                }
            }
            self.position += 1;
        }
        self.position = self.bytes.len();
        Err(self.error("the end of an object or array"))
    }
}
