//! Extracting only the fields the running metrics need from an event's JSON — the hot path.
//!
//! A [`FieldSet`] is compiled once from the union of the metrics' field paths into a small
//! trie of keys (each object level with a collision-free hash table of its keys).
//! [`FieldSet::scan`] walks an event's bytes once: top-level keys are matched against the
//! trie, wanted values are recorded as byte ranges ([`Slot`]: no allocation, no tree), objects
//! on a wanted path are descended into, everything else is skipped without being decoded
//! (strings, numbers and containers eight bytes at a time). The scan stops as soon as every
//! wanted field has been found, so a metric that needs `tenant`, `event`, `timestamp` and two
//! properties never reads the `context` object that follows them; and a caller-supplied gate
//! can stop it earlier still, once the filters' fields are known and no filter accepts the
//! event ([`FieldSet::scan_gated`]).
//!
//! Events of one topic are written by one normalizer and look alike: the same keys in the
//! same order, only the values differ. A [`KeyOrder`] remembers the keys the previous scans met
//! (as literal bytes, `"tenant":`, with the trie entry each one is) and a scan that is given
//! one ([`FieldSet::scan_with`]) checks each key against that expectation with three word
//! comparisons instead of finding its end and looking it up; where an event differs, the scan
//! takes the general path for that key and the shape learns the new sequence from there. The
//! result never depends on the shape, only the speed does.
//!
//! The scan trusts that its input is JSON (the collector wrote it) only as far as it must:
//! malformed input is a [`ScanError`], never a panic or an endless loop. With duplicate keys
//! the first occurrence wins. Keys written with escapes are unescaped before matching.
//!
//! # Layout
//! - this module: slots, the compiled [`FieldSet`] and its tables, [`KeyOrder`];
//! - `scanner`: the walk over one event;
//! - `words`: eight-bytes-at-a-time searches (safe SWAR).

mod scanner;
mod words;

use scanner::Scanner;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use words::{low_bytes, prefix};

/// What kind of value a [`Slot`] found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Kind {
    /// The field is absent.
    #[default]
    Missing,
    /// `null`.
    Null,
    /// `true`.
    True,
    /// `false`.
    False,
    /// A number; the range is its text.
    Number,
    /// A string without escapes; the range is its content between the quotes.
    String,
    /// A string with escapes; the range is its content between the quotes, still escaped.
    EscapedString,
    /// An object or array (not a value to the metric dialect: it evaluates as NULL).
    Composite,
}

/// Where one wanted field's value lies in the scanned bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Slot {
    /// What was found.
    pub kind: Kind,
    /// Byte offset of the value's text.
    pub start: u32,
    /// Byte offset just after the value's text.
    pub end: u32,
}

impl Slot {
    /// The value's text inside `bytes`.
    pub fn text<'a>(&self, bytes: &'a [u8]) -> &'a [u8] {
        bytes
            .get(self.start as usize..self.end as usize)
            .unwrap_or_default()
    }
}

/// Malformed JSON, with the byte offset where the scan gave up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanError {
    /// Byte offset.
    pub offset: usize,
    /// What was expected there.
    pub expected: &'static str,
}

impl fmt::Display for ScanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "malformed event JSON at byte {}: expected {}",
            self.offset, self.expected
        )
    }
}

/// One object level of the trie.
#[derive(Debug, Clone, Default)]
struct Node {
    /// Indexes of this level's entries in [`FieldSet::entries`].
    members: Vec<u32>,
    /// A perfect hash of the members' (prefix, length): `table[hash >> shift]` is an entry's
    /// index + 1, or 0. Empty when no collision-free table was found; then the members are
    /// searched one by one.
    table: Box<[u32]>,
    shift: u32,
}

#[derive(Debug, Clone)]
struct Entry {
    key: Box<[u8]>,
    /// The key's first 8 bytes, zero-padded: most keys are decided by one comparison.
    prefix: u64,
    slot: Option<usize>,
    /// The node of this key's object, when a wanted path goes through it.
    child: Option<u32>,
}

impl Entry {
    /// Whether this is the key of `len` bytes with [`prefix`] `word` and bytes `tail` after
    /// the eighth.
    #[inline(always)]
    fn is(&self, word: u64, len: usize, tail: &[u8]) -> bool {
        self.prefix == word && self.key.len() == len && (len <= 8 || self.key[8..] == *tail)
    }
}

/// Mixes a key's prefix and length; the table index is the top bits.
#[inline(always)]
fn key_hash(word: u64, len: usize) -> u64 {
    (word ^ (len as u64).rotate_right(7)).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// Tells [`KeyOrder`]s which set they were learned with.
static NEXT_SET_ID: AtomicU64 = AtomicU64::new(1);

/// The compiled set of wanted JSON paths; slot `i` receives path `i`.
#[derive(Debug, Clone)]
pub struct FieldSet {
    /// `nodes[0]` is the top-level object.
    nodes: Vec<Node>,
    entries: Vec<Entry>,
    len: usize,
    id: u64,
}

impl Default for FieldSet {
    fn default() -> Self {
        FieldSet::new::<&str>(&[])
    }
}

impl FieldSet {
    /// Compiles `paths` (each a list of keys from the top level down, at least one key).
    /// Equal paths share a slot: the returned set maps path `i` to slot `i` only when the
    /// paths are distinct, which callers ensure.
    pub fn new<P: AsRef<str>>(paths: &[Vec<P>]) -> FieldSet {
        let mut set = FieldSet {
            nodes: vec![Node::default()],
            entries: Vec::new(),
            len: paths.len(),
            id: NEXT_SET_ID.fetch_add(1, Ordering::Relaxed),
        };
        for (slot, path) in paths.iter().enumerate() {
            let mut node = 0;
            let mut keys = path.iter().peekable();
            while let Some(key) = keys.next() {
                let entry = set.entry(node, key.as_ref().as_bytes());
                if keys.peek().is_none() {
                    set.entries[entry].slot = Some(slot);
                    break;
                }
                node = match set.entries[entry].child {
                    Some(child) => child as usize,
                    None => {
                        set.nodes.push(Node::default());
                        let child = set.nodes.len() - 1;
                        set.entries[entry].child = Some(child as u32);
                        child
                    }
                };
            }
        }
        for node in 0..set.nodes.len() {
            set.seal(node);
        }
        set
    }

    /// The entry of `key` in `node`, added if missing.
    fn entry(&mut self, node: usize, key: &[u8]) -> usize {
        let found = self.nodes[node]
            .members
            .iter()
            .map(|&member| member as usize)
            .find(|&member| *self.entries[member].key == *key);
        found.unwrap_or_else(|| {
            self.entries.push(Entry {
                key: key.into(),
                prefix: prefix(key),
                slot: None,
                child: None,
            });
            let entry = self.entries.len() - 1;
            self.nodes[node].members.push(entry as u32);
            entry
        })
    }

    /// Builds `node`'s table: the smallest (of at least 4 slots per member, which keeps most
    /// unwanted keys on an empty slot) in which no two members collide.
    fn seal(&mut self, node: usize) {
        let members = &self.nodes[node].members;
        if members.is_empty() {
            return;
        }
        let min_bits = (members.len() * 4).next_power_of_two().trailing_zeros();
        for bits in min_bits.max(4)..=12 {
            let shift = 64 - bits;
            let mut table = vec![0u32; 1 << bits];
            let perfect = members.iter().all(|&member| {
                let entry = &self.entries[member as usize];
                let at = (key_hash(entry.prefix, entry.key.len()) >> shift) as usize;
                let free = table[at] == 0;
                table[at] = member + 1;
                free
            });
            if perfect {
                self.nodes[node].table = table.into_boxed_slice();
                self.nodes[node].shift = shift;
                return;
            }
        }
    }

    /// The entry of `node` for the key of `len` bytes whose [`prefix`] is `word` and whose
    /// bytes after the eighth are `tail`.
    #[inline(always)]
    fn find_word(&self, node: u32, word: u64, len: usize, tail: &[u8]) -> Option<u32> {
        let node = &self.nodes[node as usize];
        if node.table.is_empty() {
            return node
                .members
                .iter()
                .copied()
                .find(|&member| self.entries[member as usize].is(word, len, tail));
        }
        let at = (key_hash(word, len) >> node.shift) as usize;
        match node.table.get(at) {
            Some(&index) if index != 0 => {
                let member = index - 1;
                self.entries[member as usize]
                    .is(word, len, tail)
                    .then_some(member)
            }
            _ => None,
        }
    }

    /// [`FieldSet::find_word`] for a whole key.
    fn find(&self, node: u32, key: &[u8]) -> Option<u32> {
        self.find_word(
            node,
            prefix(key),
            key.len(),
            key.get(8..).unwrap_or_default(),
        )
    }

    /// Number of slots a scan fills.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no field is wanted.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Scans one event, filling `slots` (resized to [`FieldSet::len`]; every slot is reset).
    pub fn scan(&self, bytes: &[u8], slots: &mut Vec<Slot>) -> Result<(), ScanError> {
        self.scan_gated(bytes, slots, 0, &mut |_| false)
    }

    /// Scans like [`FieldSet::scan`], and once every slot in `gate_mask` (bit `i` = slot `i`,
    /// slots 0–63) has been filled, calls `gate` once; if it returns true the scan stops
    /// there. The caller uses it to stop reading an event as soon as no metric's filter
    /// accepts it. A zero mask never gates.
    pub fn scan_gated(
        &self,
        bytes: &[u8],
        slots: &mut Vec<Slot>,
        gate_mask: u64,
        gate: &mut dyn FnMut(&[Slot]) -> bool,
    ) -> Result<(), ScanError> {
        self.run(
            bytes,
            slots,
            &mut KeyOrder::default(),
            false,
            gate_mask,
            gate,
        )
    }

    /// [`FieldSet::scan_gated`], expecting the keys `shape` learned from the previous scans
    /// given it and learning where this event differs. A shape learned with another set is
    /// reset first.
    pub fn scan_with(
        &self,
        bytes: &[u8],
        slots: &mut Vec<Slot>,
        shape: &mut KeyOrder,
        gate_mask: u64,
        gate: &mut dyn FnMut(&[Slot]) -> bool,
    ) -> Result<(), ScanError> {
        if shape.set != self.id {
            shape.set = self.id;
            shape.steps.clear();
        }
        self.run(bytes, slots, shape, true, gate_mask, gate)
    }

    fn run(
        &self,
        bytes: &[u8],
        slots: &mut Vec<Slot>,
        shape: &mut KeyOrder,
        learn: bool,
        gate_mask: u64,
        gate: &mut dyn FnMut(&[Slot]) -> bool,
    ) -> Result<(), ScanError> {
        slots.clear();
        slots.resize(self.len, Slot::default());
        if bytes.len() > u32::MAX as usize {
            return Err(ScanError {
                offset: 0,
                expected: "an event smaller than 4 GiB",
            });
        }
        Scanner::new(self, bytes, shape, learn, gate_mask, gate).run(slots)
    }
}

/// The keys recent events held, in the order a scan met them, for [`FieldSet::scan_with`].
/// Bounded: at most [`KeyOrder::MAX_STEPS`] keys per event are remembered.
#[derive(Debug, Clone, Default)]
pub struct KeyOrder {
    /// [`FieldSet::id`] of the set these steps belong to.
    set: u64,
    steps: Vec<Step>,
}

impl KeyOrder {
    /// The most keys remembered per event.
    pub const MAX_STEPS: usize = 64;
}

/// One expected key: the bytes from its opening quote to its colon (at most 24), which object
/// level it belongs to, and its entry.
#[derive(Debug, Clone, Copy)]
struct Step {
    node: u32,
    /// The entry's index + 1, or 0 for a key no path wants.
    entry: u32,
    len: u32,
    words: [u64; 3],
    masks: [u64; 3],
}

impl Step {
    /// The longest literal a step holds.
    const MAX_LEN: usize = 24;

    /// A step expecting `literal` (`"key":`) in `node`, leading to `entry`.
    fn new(node: u32, entry: Option<u32>, literal: &[u8]) -> Step {
        if literal.len() > Step::MAX_LEN {
            return Step::never(node);
        }
        let part = |k: usize| literal.get(8 * k..).unwrap_or_default();
        Step {
            node,
            entry: entry.map_or(0, |entry| entry + 1),
            len: literal.len() as u32,
            words: [prefix(part(0)), prefix(part(1)), prefix(part(2))],
            masks: [
                low_bytes(part(0).len()),
                low_bytes(part(1).len()),
                low_bytes(part(2).len()),
            ],
        }
    }

    /// A step that matches nothing (keys with escapes or spaces, long keys): the scan takes
    /// the general path there.
    fn never(node: u32) -> Step {
        // A key starts with `"`, never with a zero byte.
        Step {
            node,
            entry: 0,
            len: 0,
            words: [0; 3],
            masks: [0xff, 0, 0],
        }
    }

    /// Whether `bytes` hold this step's literal at `at`.
    #[inline(always)]
    fn matches_at(&self, bytes: &[u8], at: usize) -> bool {
        let Some(window) = bytes.get(at..at.wrapping_add(Step::MAX_LEN)) else {
            return false;
        };
        let word = |k: usize| {
            let mut word = [0u8; 8];
            word.copy_from_slice(&window[8 * k..8 * k + 8]);
            u64::from_le_bytes(word)
        };
        let differ = ((word(0) ^ self.words[0]) & self.masks[0])
            | ((word(1) ^ self.words[1]) & self.masks[1])
            | ((word(2) ^ self.words[2]) & self.masks[2]);
        differ == 0
    }

    #[inline(always)]
    fn entry(&self) -> Option<u32> {
        self.entry.checked_sub(1)
    }
}

/// Unescapes a JSON string's content into `out`; false when the escapes are invalid.
pub fn unescape(raw: &[u8], out: &mut Vec<u8>) -> bool {
    let mut quoted = Vec::with_capacity(raw.len() + 2);
    quoted.push(b'"');
    quoted.extend_from_slice(raw);
    quoted.push(b'"');
    match serde_json::from_slice::<String>(&quoted) {
        Ok(text) => {
            out.extend_from_slice(text.as_bytes());
            true
        }
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests;
