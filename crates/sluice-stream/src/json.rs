//! Extracting only the fields the running metrics need from an event's JSON — the hot path.
//!
//! A [`FieldSet`] is compiled once from the union of the metrics' field paths into a small
//! trie of keys. [`FieldSet::scan`] walks an event's bytes once: top-level keys are matched
//! against the trie, wanted values are recorded as byte ranges ([`Slot`]: no allocation, no
//! tree), objects on a wanted path are descended into, everything else is skipped without
//! being decoded (strings and containers eight bytes at a time). The scan stops as soon
//! as every wanted field has been found, so a metric that needs `tenant`, `event`,
//! `timestamp` and two properties never reads the `context` object that follows them; and a
//! caller-supplied gate can stop it earlier still, once the filters' fields are known and no
//! filter accepts the event ([`FieldSet::scan_gated`]).
//!
//! The scan trusts that its input is JSON (the collector wrote it) only as far as it must:
//! malformed input is a [`ScanError`], never a panic or an endless loop. With duplicate keys
//! the first occurrence wins. Keys written with escapes are unescaped before matching.

use std::fmt;

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

#[derive(Debug, Clone, Default)]
struct Node {
    entries: Vec<Entry>,
}

#[derive(Debug, Clone)]
struct Entry {
    key: Box<[u8]>,
    /// The key's first 8 bytes, zero-padded: most keys are decided by one comparison.
    prefix: u64,
    slot: Option<usize>,
    child: Option<Node>,
}

/// Up to the first 8 bytes of `bytes` as a little-endian word, zero-padded.
#[inline]
fn prefix(bytes: &[u8]) -> u64 {
    let mut word = [0u8; 8];
    let len = bytes.len().min(8);
    word[..len].copy_from_slice(&bytes[..len]);
    u64::from_le_bytes(word)
}

impl Node {
    fn entry(&mut self, key: &str) -> &mut Entry {
        let position = match self.entries.iter().position(|e| &*e.key == key.as_bytes()) {
            Some(position) => position,
            None => {
                self.entries.push(Entry {
                    key: key.as_bytes().into(),
                    prefix: prefix(key.as_bytes()),
                    slot: None,
                    child: None,
                });
                self.entries.len() - 1
            }
        };
        &mut self.entries[position]
    }

    #[inline]
    fn find(&self, key: &[u8]) -> Option<&Entry> {
        self.find_with_prefix(prefix(key), key)
    }

    /// [`Node::find`] with the key's [`prefix`] already computed.
    #[inline(always)]
    fn find_with_prefix(&self, word: u64, key: &[u8]) -> Option<&Entry> {
        self.entries.iter().find(|entry| {
            entry.prefix == word
                && entry.key.len() == key.len()
                && (key.len() <= 8 || entry.key[8..] == key[8..])
        })
    }
}

/// The compiled set of wanted JSON paths; slot `i` receives path `i`.
#[derive(Debug, Clone, Default)]
pub struct FieldSet {
    root: Node,
    len: usize,
}

impl FieldSet {
    /// Compiles `paths` (each a list of keys from the top level down, at least one key).
    /// Equal paths share a slot: the returned set maps path `i` to slot `i` only when the
    /// paths are distinct, which callers ensure.
    pub fn new<P: AsRef<str>>(paths: &[Vec<P>]) -> FieldSet {
        let mut root = Node::default();
        for (slot, path) in paths.iter().enumerate() {
            let mut node = &mut root;
            let mut keys = path.iter().peekable();
            while let Some(key) = keys.next() {
                let entry = node.entry(key.as_ref());
                if keys.peek().is_none() {
                    entry.slot = Some(slot);
                    break;
                }
                node = entry.child.get_or_insert_with(Node::default);
            }
        }
        FieldSet {
            root,
            len: paths.len(),
        }
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
        slots.clear();
        slots.resize(self.len, Slot::default());
        if bytes.len() > u32::MAX as usize {
            return Err(ScanError {
                offset: 0,
                expected: "an event smaller than 4 GiB",
            });
        }
        let mut scanner = Scanner {
            bytes,
            position: 0,
            remaining: self.len,
            key_buffer: Vec::new(),
            filled: 0,
            gate_mask,
            gate,
        };
        scanner.skip_whitespace();
        if scanner.peek() != Some(b'{') {
            return Err(scanner.error("an object"));
        }
        scanner.object(&self.root, slots)?;
        Ok(())
    }
}

struct Scanner<'a, 'g> {
    bytes: &'a [u8],
    position: usize,
    remaining: usize,
    key_buffer: Vec<u8>,
    filled: u64,
    gate_mask: u64,
    gate: &'g mut dyn FnMut(&[Slot]) -> bool,
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// High bit set in each byte of `word` equal to `byte` (exact for the lowest match; higher
/// bytes may be false positives, so only the lowest set bit is used).
#[inline]
fn matches(word: u64, byte: u8) -> u64 {
    let x = word ^ (ONES * u64::from(byte));
    x.wrapping_sub(ONES) & !x & HIGHS
}

/// The 8 bytes at `at` as a little-endian word.
#[inline]
fn word_at(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(word)
}

/// The first `"` or `\\` at or after `at`, eight bytes at a time.
#[inline]
fn find_quote(bytes: &[u8], mut at: usize) -> Option<usize> {
    while at + 8 <= bytes.len() {
        let word = word_at(bytes, at);
        let found = matches(word, b'"') | matches(word, b'\\');
        if found != 0 {
            return Some(at + (found.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    bytes[at..]
        .iter()
        .position(|&b| b == b'"' || b == b'\\')
        .map(|i| at + i)
}

/// The first byte that matters when skipping a container (`"`, `{`, `}`, `[`, `]`) at or
/// after `at`. `[` and `]` differ from `{` and `}` only in bit 5, so setting it folds them.
#[inline]
fn find_structural(bytes: &[u8], mut at: usize) -> Option<usize> {
    while at + 8 <= bytes.len() {
        let word = word_at(bytes, at);
        let folded = word | (ONES * 0x20);
        let found = matches(word, b'"') | matches(folded, b'{') | matches(folded, b'}');
        if found != 0 {
            return Some(at + (found.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    bytes[at..]
        .iter()
        .position(|&b| matches!(b, b'"' | b'{' | b'}' | b'[' | b']'))
        .map(|i| at + i)
}

/// Whether the scan may stop (every slot filled).
type Done = bool;

impl Scanner<'_, '_> {
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

    #[inline(always)]
    fn expect(&mut self, byte: u8, expected: &'static str) -> Result<(), ScanError> {
        self.skip_whitespace();
        if self.peek() == Some(byte) {
            self.position += 1;
            Ok(())
        } else {
            Err(self.error(expected))
        }
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

    /// At `{`: scans an object, recording wanted keys of `node`.
    fn object(&mut self, node: &Node, slots: &mut [Slot]) -> Result<Done, ScanError> {
        self.position += 1;
        self.skip_whitespace();
        if self.peek() == Some(b'}') {
            self.position += 1;
            return Ok(false);
        }
        loop {
            self.skip_whitespace();
            if self.peek() != Some(b'"') {
                return Err(self.error("a key"));
            }
            let (start, end, escaped) = self.string()?;
            self.expect(b':', "':' after a key")?;
            self.skip_whitespace();
            let entry = if escaped {
                self.key_buffer.clear();
                unescape(&self.bytes[start..end], &mut self.key_buffer)
                    .then(|| node.find(&self.key_buffer))
                    .flatten()
            } else {
                // The key's prefix straight from the event bytes (a key is always followed by
                // at least `":` and a value, so 8 bytes are there but at the very end).
                let len = end - start;
                let word = if start + 8 <= self.bytes.len() {
                    let word = word_at(self.bytes, start);
                    if len >= 8 {
                        word
                    } else {
                        word & ((1u64 << (len * 8)) - 1)
                    }
                } else {
                    prefix(&self.bytes[start..end])
                };
                node.find_with_prefix(word, &self.bytes[start..end])
            };
            match entry {
                Some(entry) => {
                    if self.wanted_value(entry, slots)? {
                        return Ok(true);
                    }
                }
                None => self.skip_value()?,
            }
            self.skip_whitespace();
            match self.peek() {
                Some(b',') => self.position += 1,
                Some(b'}') => {
                    self.position += 1;
                    return Ok(false);
                }
                _ => return Err(self.error("',' or '}' in an object")),
            }
        }
    }

    /// A value whose key is in the trie: record it and/or descend into it.
    fn wanted_value(&mut self, entry: &Entry, slots: &mut [Slot]) -> Result<Done, ScanError> {
        let start = self.position;
        let fresh = entry
            .slot
            .is_some_and(|slot| slots[slot].kind == Kind::Missing);
        let kind = match (self.peek(), &entry.child) {
            (Some(b'{'), Some(child)) => {
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
                self.skip_value()?;
                return Ok(false);
            }
            (Some(b'"'), _) => {
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
            (Some(b'{' | b'['), _) => {
                self.skip_value()?;
                Kind::Composite
            }
            (Some(b't'), _) => self.literal(b"true", Kind::True)?,
            (Some(b'f'), _) => self.literal(b"false", Kind::False)?,
            (Some(b'n'), _) => self.literal(b"null", Kind::Null)?,
            (Some(b'-' | b'0'..=b'9'), _) => {
                self.number();
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

    #[inline(always)]
    fn number(&mut self) {
        self.position += self.bytes[self.position..]
            .iter()
            .take_while(|b| matches!(b, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'))
            .count();
    }

    #[inline(always)]
    fn skip_value(&mut self) -> Result<(), ScanError> {
        match self.peek() {
            Some(b'"') => self.string().map(|_| ()),
            Some(b'{' | b'[') => self.skip_container(),
            Some(b't') => self.literal(b"true", Kind::True).map(|_| ()),
            Some(b'f') => self.literal(b"false", Kind::False).map(|_| ()),
            Some(b'n') => self.literal(b"null", Kind::Null).map(|_| ()),
            Some(b'-' | b'0'..=b'9') => {
                self.number();
                Ok(())
            }
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
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::Value;

    fn scan(json: &str, paths: &[&str]) -> Result<Vec<(Kind, String)>, ScanError> {
        let paths: Vec<Vec<&str>> = paths.iter().map(|p| p.split('.').collect()).collect();
        let set = FieldSet::new(&paths);
        let mut slots = Vec::new();
        set.scan(json.as_bytes(), &mut slots)?;
        Ok(slots
            .iter()
            .map(|s| {
                (
                    s.kind,
                    String::from_utf8_lossy(s.text(json.as_bytes())).into_owned(),
                )
            })
            .collect())
    }

    #[test]
    fn finds_top_level_and_nested_fields() {
        let json = r#"{"tenant":"shop","type":"track","event":"Page Viewed","timestamp":1714564740000,
            "properties":{"url":"/a\"b","duration_ms":12.5,"nested":{"x":true},"list":[1,{"url":"no"}]},
            "context":{"ip":null}}"#;
        let found = scan(
            json,
            &[
                "tenant",
                "timestamp",
                "properties.url",
                "properties.duration_ms",
                "properties.nested.x",
                "properties.list",
                "context.ip",
                "properties.missing",
                "traits.plan",
            ],
        )
        .unwrap();
        assert_eq!(found[0], (Kind::String, "shop".into()));
        assert_eq!(found[1], (Kind::Number, "1714564740000".into()));
        assert_eq!(found[2], (Kind::EscapedString, r#"/a\"b"#.into()));
        assert_eq!(found[3], (Kind::Number, "12.5".into()));
        assert_eq!(found[4], (Kind::True, "true".into()));
        assert_eq!(found[5].0, Kind::Composite);
        assert_eq!(found[6], (Kind::Null, "null".into()));
        assert_eq!(found[7].0, Kind::Missing);
        assert_eq!(found[8].0, Kind::Missing);
    }

    #[test]
    fn stops_once_every_field_is_found() {
        // The tail is garbage: a scan that stops early never sees it.
        let json = r#"{"tenant":"t","timestamp":5,"context": GARBAGE"#;
        assert_eq!(
            scan(json, &["tenant", "timestamp"]).unwrap()[1],
            (Kind::Number, "5".into())
        );
        assert!(scan(json, &["tenant", "timestamp", "context.x"]).is_err());
    }

    #[test]
    fn first_duplicate_wins_and_escaped_keys_match() {
        let json = r#"{"a":1,"a":2,"\u0062":"yes"}"#;
        let found = scan(json, &["a", "b"]).unwrap();
        assert_eq!(found[0].1, "1");
        assert_eq!(found[1], (Kind::String, "yes".into()));
    }

    #[test]
    fn malformed_input_is_an_error() {
        for bad in [
            "",
            "[]",
            "{",
            r#"{"a"}"#,
            r#"{"a":}"#,
            r#"{"a":tru}"#,
            r#"{"a":"x"#,
            r#"{"a":{"b":[1,2}"#,
            r#"{"a":1 "b":2}"#,
            r#"{"a\"#,
        ] {
            assert!(scan(bad, &["zz"]).is_err(), "{bad:?}");
        }
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            (-1e6f64..1e6).prop_map(Value::from),
            "[a-c\"\\\\é\n ]{0,6}".prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map("[a-c]{1,2}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        /// The scan agrees with serde_json on every path of random documents.
        #[test]
        fn agrees_with_serde_json(map in prop::collection::btree_map("[a-c]{1,2}", json_value(), 0..5), pretty in any::<bool>()) {
            let value = Value::Object(map.into_iter().collect());
            let text = if pretty { serde_json::to_string_pretty(&value).unwrap() } else { value.to_string() };
            let paths: Vec<String> = ["a", "b", "c", "a.a", "a.b", "b.c.a", "ab", "c.ca"].iter().map(|s| s.to_string()).collect();
            let split: Vec<Vec<&str>> = paths.iter().map(|p| p.split('.').collect()).collect();
            let set = FieldSet::new(&split);
            let mut slots = Vec::new();
            set.scan(text.as_bytes(), &mut slots).unwrap();
            for (path, slot) in split.iter().zip(&slots) {
                let expected = path.iter().try_fold(&value, |v, key| v.get(key));
                match (expected, slot.kind) {
                    (None, Kind::Missing) => {}
                    (Some(Value::Null), Kind::Null) | (Some(Value::Bool(true)), Kind::True) | (Some(Value::Bool(false)), Kind::False) => {}
                    (Some(Value::Array(_) | Value::Object(_)), Kind::Composite) => {}
                    (Some(Value::Number(n)), Kind::Number) => {
                        let text = std::str::from_utf8(slot.text(text.as_bytes())).unwrap();
                        prop_assert_eq!(text.parse::<f64>().unwrap(), n.as_f64().unwrap());
                    }
                    (Some(Value::String(s)), Kind::String | Kind::EscapedString) => {
                        let mut out = Vec::new();
                        prop_assert!(unescape(slot.text(text.as_bytes()), &mut out));
                        prop_assert_eq!(String::from_utf8(out).unwrap(), s.clone());
                    }
                    (expected, kind) => prop_assert!(false, "{:?}: expected {:?}, scanned {:?}", path, expected, kind),
                }
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            let set = FieldSet::new(&[vec!["a"], vec!["b", "c"]]);
            let mut slots = Vec::new();
            let _ = set.scan(&bytes, &mut slots);
        }
    }
}
