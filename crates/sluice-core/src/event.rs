//! The normalized event: what the collector appends to the `events` topic and every consumer
//! reads back. It is JSON, so any tool can read the log; field names are the ones the metric
//! dialect uses (`type`, `event`, `user_id`, `timestamp`, `properties.…`), instants are epoch
//! milliseconds, and the nested objects are copied verbatim from the client's request.

use crate::time::Millis;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::fmt;
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

    /// Appends the event's JSON to `out`.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        // Serializing text and pre-validated raw JSON into memory cannot fail.
        let _ = serde_json::to_writer(out, self);
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
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event<'a>(message_id: &'a str, tenant: &'a str) -> Event<'a> {
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
            let json = event(id, tenant).to_json();
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
