//! The normalized event: what the collector appends to the `events` topic and every consumer
//! reads back. It is JSON, so any tool can read the log; field names are the ones the metric
//! dialect uses (`type`, `event`, `user_id`, `timestamp`, `properties.…`), instants are epoch
//! milliseconds, and the nested objects are copied verbatim from the client's request.

use crate::time::Millis;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::fmt;
use std::io::Write as _;
use std::str::FromStr;

/// The Segment Spec call types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventType {
    /// A user action (`event` names it).
    Track,
    /// A web page view.
    Page,
    /// A mobile screen view.
    Screen,
    /// Who the user is (`traits`).
    Identify,
    /// The user joins a group or account (`groupId`).
    Group,
    /// Merges two identities (`previousId` → `userId`).
    Alias,
}

impl EventType {
    /// Every type, in Segment's documentation order.
    pub const ALL: [EventType; 6] = [
        EventType::Track,
        EventType::Page,
        EventType::Screen,
        EventType::Identify,
        EventType::Group,
        EventType::Alias,
    ];

    /// The lowercase name used in JSON and URLs.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Track => "track",
            EventType::Page => "page",
            EventType::Screen => "screen",
            EventType::Identify => "identify",
            EventType::Group => "group",
            EventType::Alias => "alias",
        }
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EventType {
    type Err = ();

    fn from_str(text: &str) -> Result<Self, ()> {
        EventType::ALL
            .into_iter()
            .find(|kind| kind.as_str() == text)
            .ok_or(())
    }
}

/// Writes `"key":` (keys are plain ASCII), after a comma unless it is the first.
fn write_key(out: &mut Vec<u8>, key: &[u8], first: bool) {
    if !first {
        out.push(b',');
    }
    out.push(b'"');
    out.extend_from_slice(key);
    out.extend_from_slice(b"\":");
}

/// Writes `text` as a JSON string: copied between quotes when nothing in it needs an escape,
/// otherwise escaped by serde_json.
fn write_str(out: &mut Vec<u8>, text: &str) {
    if text
        .bytes()
        .all(|byte| byte >= 0x20 && byte != b'"' && byte != b'\\')
    {
        out.reserve(text.len() + 2);
        out.push(b'"');
        out.extend_from_slice(text.as_bytes());
        out.push(b'"');
    } else {
        // Serializing a string into memory cannot fail.
        let _ = serde_json::to_writer(&mut *out, text);
    }
}

/// One accepted, normalized event. Text borrows from the request it was parsed from where it
/// can (`Cow::Borrowed`), so normalizing and storing an event copies each byte once.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Event<'a> {
    /// The client's `messageId`, or a generated UUIDv7; retries of one event share it.
    #[serde(borrow)]
    pub message_id: Cow<'a, str>,
    /// The tenant of the write key the event arrived with.
    #[serde(borrow)]
    pub tenant: Cow<'a, str>,
    /// The call type.
    #[serde(rename = "type")]
    pub kind: EventType,
    /// Track: the action's name (`Order Completed`).
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub event: Option<Cow<'a, str>>,
    /// Page and screen: the page or screen name.
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub name: Option<Cow<'a, str>>,
    /// Page: the page category.
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub category: Option<Cow<'a, str>>,
    /// The known user, when identified.
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<Cow<'a, str>>,
    /// The device or browser identity; present when the user is anonymous.
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub anonymous_id: Option<Cow<'a, str>>,
    /// Group: the account or organization.
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub group_id: Option<Cow<'a, str>>,
    /// Alias: the identity being merged into `user_id`.
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub previous_id: Option<Cow<'a, str>>,
    /// Event time, corrected for client clock skew (see [`crate::normalize`]).
    pub timestamp: Millis,
    /// When sluice received the request.
    pub received_at: Millis,
    /// When the client says it sent the request, if it said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent_at: Option<Millis>,
    /// The event time the client's clock reported, if it reported one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original_timestamp: Option<Millis>,
    /// Track, page and screen properties, verbatim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub properties: Option<Cow<'a, RawValue>>,
    /// Identify and group traits, verbatim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traits: Option<Cow<'a, RawValue>>,
    /// Device, library, page and campaign context, verbatim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<Cow<'a, RawValue>>,
    /// The destinations the client enabled or disabled for this event (Segment's
    /// `integrations`), verbatim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub integrations: Option<Cow<'a, RawValue>>,
    /// Where the event comes from as the client says (`browser`, `server`, `mobile`),
    /// verbatim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<Cow<'a, RawValue>>,
    /// The client's API version, verbatim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<Cow<'a, RawValue>>,
    /// The SDK's own bookkeeping (bundled and unbundled destinations, retry count), verbatim.
    #[serde(rename = "_metadata", default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Cow<'a, RawValue>>,
    /// Set when the tenant's schema validation is `warn` and the event broke its schema: every
    /// violation (`[{"path", "keyword", "message"}]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_violations: Option<Cow<'a, RawValue>>,
}

impl Event<'_> {
    /// The log partition key: the anonymous id, else the user id, so one visitor's events stay
    /// in one partition and in order (what Segment and Kafka users expect).
    pub fn partition_key(&self) -> &str {
        self.anonymous_id
            .as_deref()
            .or(self.user_id.as_deref())
            .unwrap_or(&self.message_id)
    }

    /// The event as the JSON stored in the log.
    pub fn to_json(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        self.write_json(&mut out);
        out
    }

    /// Appends the event's JSON to `out`: byte for byte what `serde_json` makes of the
    /// `Serialize` impl (a test checks it), written directly because the collector does it for
    /// every event: the keys are constants, strings without characters to escape are copied
    /// as they are, and the nested objects are already JSON.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        out.push(b'{');
        write_key(out, b"message_id", true);
        write_str(out, &self.message_id);
        write_key(out, b"tenant", false);
        write_str(out, &self.tenant);
        write_key(out, b"type", false);
        write_str(out, self.kind.as_str());
        let texts = [
            (&b"event"[..], &self.event),
            (b"name", &self.name),
            (b"category", &self.category),
            (b"user_id", &self.user_id),
            (b"anonymous_id", &self.anonymous_id),
            (b"group_id", &self.group_id),
            (b"previous_id", &self.previous_id),
        ];
        for (key, text) in texts {
            if let Some(text) = text {
                write_key(out, key, false);
                write_str(out, text);
            }
        }
        let instants = [
            (&b"timestamp"[..], Some(self.timestamp)),
            (b"received_at", Some(self.received_at)),
            (b"sent_at", self.sent_at),
            (b"original_timestamp", self.original_timestamp),
        ];
        for (key, instant) in instants {
            if let Some(instant) = instant {
                write_key(out, key, false);
                // Formatting an integer into a vector cannot fail.
                let _ = write!(out, "{instant}");
            }
        }
        let objects = [
            (&b"properties"[..], &self.properties),
            (b"traits", &self.traits),
            (b"context", &self.context),
            (b"integrations", &self.integrations),
            (b"channel", &self.channel),
            (b"version", &self.version),
            (b"_metadata", &self.metadata),
            (b"schema_violations", &self.schema_violations),
        ];
        for (key, raw) in objects {
            if let Some(raw) = raw {
                write_key(out, key, false);
                out.extend_from_slice(raw.get().as_bytes());
            }
        }
        out.push(b'}');
    }

    /// The `(message_id, tenant)` of an event stored by [`Event::write_json`], read without
    /// parsing the rest of it: they are its first two fields. Other JSON objects with both
    /// fields are parsed whole; `None` when either is missing.
    pub fn stored_ids(json: &[u8]) -> Option<(String, String)> {
        fn leading_string(json: &[u8]) -> Option<(String, usize)> {
            let mut values = serde_json::Deserializer::from_slice(json).into_iter::<String>();
            let text = values.next()?.ok()?;
            Some((text, values.byte_offset()))
        }
        let fast = || {
            let rest = json.strip_prefix(br#"{"message_id":"#)?;
            let (message_id, end) = leading_string(rest)?;
            let (tenant, _) = leading_string(rest[end..].strip_prefix(br#","tenant":"#)?)?;
            Some((message_id, tenant))
        };
        fast().or_else(|| {
            #[derive(Deserialize)]
            struct Ids {
                message_id: String,
                tenant: String,
            }
            let ids: Ids = serde_json::from_slice(json).ok()?;
            Some((ids.message_id, ids.tenant))
        })
    }

    /// A copy that owns all its text.
    pub fn into_owned(self) -> Event<'static> {
        let own = |text: Option<Cow<'_, str>>| text.map(|t| Cow::Owned(t.into_owned()));
        let own_raw = |raw: Option<Cow<'_, RawValue>>| raw.map(|r| Cow::Owned(r.into_owned()));
        Event {
            message_id: Cow::Owned(self.message_id.into_owned()),
            tenant: Cow::Owned(self.tenant.into_owned()),
            kind: self.kind,
            event: own(self.event),
            name: own(self.name),
            category: own(self.category),
            user_id: own(self.user_id),
            anonymous_id: own(self.anonymous_id),
            group_id: own(self.group_id),
            previous_id: own(self.previous_id),
            timestamp: self.timestamp,
            received_at: self.received_at,
            sent_at: self.sent_at,
            original_timestamp: self.original_timestamp,
            properties: own_raw(self.properties),
            traits: own_raw(self.traits),
            context: own_raw(self.context),
            integrations: own_raw(self.integrations),
            channel: own_raw(self.channel),
            version: own_raw(self.version),
            metadata: own_raw(self.metadata),
            schema_violations: own_raw(self.schema_violations),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn text() -> impl Strategy<Value = Option<Cow<'static, str>>> {
        proptest::option::of(
            prop_oneof![
                "[a-zA-Z0-9 _.-]{0,20}",
                "\\PC{0,12}",
                proptest::collection::vec(0u8..0x80, 0..12)
                    .prop_map(|bytes| String::from_utf8(bytes).unwrap()),
            ]
            .prop_map(Cow::Owned),
        )
    }

    fn raw() -> impl Strategy<Value = Option<Cow<'static, RawValue>>> {
        proptest::option::of(
            prop_oneof![
                Just(r#"{}"#.to_owned()),
                Just(r#"{"url":"/a\"b","n":1.5,"deep":{"x":[1,null,true]}}"#.to_owned()),
                Just("{ \"spaced\" : \"é\\u0041\" }".to_owned()),
            ]
            .prop_map(|json| Cow::Owned(RawValue::from_string(json).unwrap())),
        )
    }

    /// Values clients send as `channel` or `version`.
    fn scalar() -> impl Strategy<Value = Option<Cow<'static, RawValue>>> {
        proptest::option::of(
            prop_oneof![
                Just(r#""browser""#.to_owned()),
                Just("2".to_owned()),
                Just(r#""1.84.3""#.to_owned()),
                Just(r#"{"odd":true}"#.to_owned()),
            ]
            .prop_map(|json| Cow::Owned(RawValue::from_string(json).unwrap())),
        )
    }

    prop_compose! {
        fn event()(
            message_id in "\\PC{0,24}",
            tenant in "[a-z0-9_-]{1,12}",
            kind in proptest::sample::select(EventType::ALL.to_vec()),
            texts in proptest::collection::vec(text(), 7),
            times in (any::<i64>(), any::<i64>(), any::<Option<i64>>(), any::<Option<i64>>()),
            objects in (raw(), raw(), raw()),
            kept in (raw(), scalar(), scalar(), raw(), raw()),
        ) -> Event<'static> {
            let mut texts = texts.into_iter();
            let mut next = || texts.next().flatten();
            Event {
                message_id: Cow::Owned(message_id),
                tenant: Cow::Owned(tenant),
                kind,
                event: next(),
                name: next(),
                category: next(),
                user_id: next(),
                anonymous_id: next(),
                group_id: next(),
                previous_id: next(),
                timestamp: times.0,
                received_at: times.1,
                sent_at: times.2,
                original_timestamp: times.3,
                properties: objects.0,
                traits: objects.1,
                context: objects.2,
                integrations: kept.0,
                channel: kept.1,
                version: kept.2,
                metadata: kept.3,
                schema_violations: kept.4,
            }
        }
    }

    proptest! {
        #[test]
        fn write_json_is_what_serde_json_writes(event in event()) {
            let mut direct = Vec::new();
            event.write_json(&mut direct);
            prop_assert_eq!(
                String::from_utf8(direct).unwrap(),
                serde_json::to_string(&event).unwrap()
            );
        }
    }

    #[test]
    fn strings_with_quotes_backslashes_and_control_characters_are_escaped() {
        let event = Event {
            message_id: Cow::Borrowed("a\"b\\c\n\u{1}\u{7f}é"),
            tenant: Cow::Borrowed("t"),
            kind: EventType::Track,
            event: Some(Cow::Borrowed("Tab\there")),
            name: None,
            category: None,
            user_id: None,
            anonymous_id: Some(Cow::Borrowed("anon")),
            group_id: None,
            previous_id: None,
            timestamp: -5,
            received_at: 7,
            sent_at: None,
            original_timestamp: None,
            properties: None,
            traits: None,
            context: None,
            integrations: None,
            channel: None,
            version: None,
            metadata: None,
            schema_violations: None,
        };
        assert_eq!(
            String::from_utf8(event.to_json()).unwrap(),
            // DEL (0x7f) needs no escape in JSON, and serde_json writes it as it is.
            concat!(
                r#"{"message_id":"a\"b\\c\n\u0001"#,
                "\u{7f}é",
                r#"","tenant":"t","type":"track","event":"Tab\there","anonymous_id":"anon","timestamp":-5,"received_at":7}"#
            )
        );
    }

    fn sample<'a>(message_id: &'a str, tenant: &'a str) -> Event<'a> {
        Event {
            message_id: message_id.into(),
            tenant: tenant.into(),
            kind: EventType::Track,
            event: Some("Order Completed".into()),
            name: None,
            category: None,
            user_id: Some("u1".into()),
            anonymous_id: None,
            group_id: None,
            previous_id: None,
            timestamp: 1_700_000_000_000,
            received_at: 1_700_000_000_100,
            sent_at: None,
            original_timestamp: None,
            properties: None,
            traits: None,
            context: None,
            integrations: None,
            channel: None,
            version: None,
            metadata: None,
            schema_violations: None,
        }
    }

    #[test]
    fn stored_ids_read_back_what_write_json_stored() {
        for (id, tenant) in [
            ("0190c2a4-7d3e-7000-8000-000000000001", "shop"),
            (r#"quo"te\back\slash"#, "t"),
            ("ünïcødé \u{1F600} \n", "tenant-2"),
            ("", "x"),
        ] {
            let json = sample(id, tenant).to_json();
            assert_eq!(
                Event::stored_ids(&json),
                Some((id.to_owned(), tenant.to_owned())),
                "{}",
                String::from_utf8_lossy(&json)
            );
        }
    }

    #[test]
    fn stored_ids_of_other_json() {
        // Fields in another order are parsed whole; missing fields and non-JSON give none.
        assert_eq!(
            Event::stored_ids(br#"{"tenant":"t","x":[1,{"a":2}],"message_id":"m"}"#),
            Some(("m".to_owned(), "t".to_owned()))
        );
        assert_eq!(Event::stored_ids(br#"{"message_id":"m"}"#), None);
        assert_eq!(Event::stored_ids(br#"{"message_id":"m","tenant":7}"#), None);
        assert_eq!(Event::stored_ids(b"not json"), None);
        assert_eq!(Event::stored_ids(b""), None);
    }
}
