//! Reading an event's columns straight out of a log record's JSON, the archiver's hot path.
//!
//! The archive needs every field of every event, but only as text: strings as they are, the
//! nested values (`properties`, `context`, …) as their JSON text, the times as integers. So a
//! record is not parsed into a tree or an [`Event`](sluice_core::event::Event): the stream
//! engine's scanner ([`FieldSet`], with a [`KeyOrder`] learned from the records before) finds
//! each top-level value's byte range in one pass, skipping the nested values eight bytes at a
//! time, and the [`Fields`] borrow those ranges. Only strings written with escapes are copied
//! (unescaped).
//!
//! What a record must be is what deserializing an `Event` demands, checked here field by
//! field: a JSON object in UTF-8 with `message_id`, `tenant` and `type` strings (a type of the
//! Segment Spec), integer `timestamp` and `received_at`, the other text fields strings or
//! `null`, the other times integers or `null`. A record that is not is an error (the archiver
//! skips it and says so). Keys it does not know are ignored; of a key written twice the first
//! counts. A derived stream's records ([`EventScan::derived`]) are read the same way, except
//! that their `type` may be any string (`session`) and `received_at` may be missing. Like the
//! engine, the scan trusts that the nested values are well-formed JSON: the
//! collector wrote them (it parsed each request), and the engine reads the same records.

use crate::format::{Fields, JSON, TEXT};
use sluice_core::event::EventType;
use sluice_core::time::Millis;
use sluice_stream::json::{FieldSet, KeyOrder, Kind, Slot};
use std::borrow::Cow;

const MESSAGE_ID: usize = 0;
const TENANT: usize = 1;
const TYPE: usize = 2;
const TIMESTAMP: usize = 3;
const FIRST_TEXT: usize = 4;
const RECEIVED_AT: usize = FIRST_TEXT + TEXT.len();
const SENT_AT: usize = RECEIVED_AT + 1;
const ORIGINAL_TIMESTAMP: usize = SENT_AT + 1;
const FIRST_JSON: usize = ORIGINAL_TIMESTAMP + 1;

/// The top-level keys read, in slot order: the four required ones, the [`TEXT`] columns' keys,
/// the other times, then the [`JSON`] columns' keys.
const KEYS: [&str; FIRST_JSON + JSON.len()] = {
    let mut keys = [""; FIRST_JSON + JSON.len()];
    keys[MESSAGE_ID] = "message_id";
    keys[TENANT] = "tenant";
    keys[TYPE] = "type";
    keys[TIMESTAMP] = "timestamp";
    keys[RECEIVED_AT] = "received_at";
    keys[SENT_AT] = "sent_at";
    keys[ORIGINAL_TIMESTAMP] = "original_timestamp";
    let mut i = 0;
    while i < TEXT.len() {
        keys[FIRST_TEXT + i] = TEXT[i];
        i += 1;
    }
    let mut i = 0;
    while i < JSON.len() {
        keys[FIRST_JSON + i] = record_key(JSON[i]);
        i += 1;
    }
    keys
};

/// The key in a record of the column named `column`: the event's `metadata` is `_metadata`
/// (Segment's name), every other column is named as its key.
const fn record_key(column: &'static str) -> &'static str {
    match column.as_bytes() {
        b"metadata" => "_metadata",
        _ => column,
    }
}

/// Reads records of one partition one after another (it learns their key order).
#[derive(Debug)]
pub struct EventScan {
    set: FieldSet,
    shape: KeyOrder,
    slots: Vec<Slot>,
    /// Reading a derived stream's records.
    derived: bool,
}

impl Default for EventScan {
    fn default() -> Self {
        EventScan {
            set: FieldSet::new(&KEYS.map(|key| vec![key])),
            shape: KeyOrder::default(),
            slots: Vec::new(),
            derived: false,
        }
    }
}

impl EventScan {
    /// A scan of a derived stream's records: any `type`, `received_at` optional.
    pub fn derived() -> Self {
        EventScan {
            derived: true,
            ..EventScan::default()
        }
    }

    /// The columns of the event `record` holds, borrowed from it; or what is wrong with it.
    pub fn fields<'a>(&mut self, record: &'a [u8]) -> Result<Fields<'a>, String> {
        let text = std::str::from_utf8(record).map_err(|error| {
            format!("not UTF-8: invalid byte at offset {}", error.valid_up_to())
        })?;
        self.set
            .scan_with(record, &mut self.slots, &mut self.shape, 0, &mut |_| false)
            .map_err(|error| error.to_string())?;
        let slots = &self.slots;
        let string = |slot: usize| -> Result<Option<Cow<'a, str>>, String> {
            string(text, slots[slot]).map_err(|expected| format!("{}: {expected}", KEYS[slot]))
        };
        let required = |slot: usize| -> Result<Cow<'a, str>, String> {
            string(slot)?.ok_or_else(|| format!("{} is missing", KEYS[slot]))
        };
        let time = |slot: usize| -> Result<Option<Millis>, String> {
            time(text, slots[slot]).map_err(|expected| format!("{}: {expected}", KEYS[slot]))
        };
        let required_time = |slot: usize| -> Result<Millis, String> {
            time(slot)?.ok_or_else(|| format!("{} is missing", KEYS[slot]))
        };
        let kind = required(TYPE)?;
        if !self.derived && kind.parse::<EventType>().is_err() {
            return Err(format!("type: {kind:?} is no type of the Segment Spec"));
        }
        let mut texts = std::array::from_fn(|_| None);
        for (index, value) in texts.iter_mut().enumerate() {
            *value = string(FIRST_TEXT + index)?;
        }
        Ok(Fields {
            message_id: required(MESSAGE_ID)?,
            tenant: required(TENANT)?,
            kind,
            text: texts,
            timestamp: required_time(TIMESTAMP)?,
            received_at: match self.derived {
                true => time(RECEIVED_AT)?,
                false => Some(required_time(RECEIVED_AT)?),
            },
            sent_at: time(SENT_AT)?,
            original_timestamp: time(ORIGINAL_TIMESTAMP)?,
            json: std::array::from_fn(|index| json(text, slots[FIRST_JSON + index])),
        })
    }
}

/// A string field's value (`None`: missing or `null`); `Err` says what it should have been.
fn string(text: &str, slot: Slot) -> Result<Option<Cow<'_, str>>, &'static str> {
    let (start, end) = (slot.start as usize, slot.end as usize);
    match slot.kind {
        Kind::Missing | Kind::Null => Ok(None),
        Kind::String => text
            .get(start..end)
            .map(|s| Some(Cow::Borrowed(s)))
            .ok_or(NOT_A_STRING),
        Kind::EscapedString => text
            .get(start.wrapping_sub(1)..end + 1)
            .and_then(|quoted| serde_json::from_str::<String>(quoted).ok())
            .map(|s| Some(Cow::Owned(s)))
            .ok_or("a string with invalid escapes"),
        _ => Err(NOT_A_STRING),
    }
}

const NOT_A_STRING: &str = "not a string";

/// A time field's value, epoch milliseconds (`None`: missing or `null`).
fn time(text: &str, slot: Slot) -> Result<Option<Millis>, &'static str> {
    match slot.kind {
        Kind::Missing | Kind::Null => Ok(None),
        Kind::Number => text
            .get(slot.start as usize..slot.end as usize)
            .and_then(|number| number.parse::<Millis>().ok())
            .map(Some)
            .ok_or("not an integer of milliseconds"),
        _ => Err("not an integer of milliseconds"),
    }
}

/// A nested value's JSON text, verbatim (`None`: missing or `null`).
fn json(text: &str, slot: Slot) -> Option<&str> {
    let (start, end) = (slot.start as usize, slot.end as usize);
    match slot.kind {
        Kind::Missing | Kind::Null => None,
        // A string's slot is its content: the text takes the quotes too.
        Kind::String | Kind::EscapedString => text.get(start.checked_sub(1)?..end + 1),
        _ => text.get(start..end),
    }
}

#[cfg(test)]
mod tests;
