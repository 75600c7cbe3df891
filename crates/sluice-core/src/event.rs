//! The normalized event: what the collector appends to the `events` topic and every consumer
//! reads back. It is JSON, so any tool can read the log; field names are the ones the metric
//! dialect uses (`type`, `event`, `user_id`, `timestamp`, `properties.…`), instants are epoch
//! milliseconds, and the nested objects are copied verbatim from the client's request.

use crate::time::Millis;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
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

/// One accepted, normalized event.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Event {
    /// The client's `messageId`, or a generated UUIDv7; retries of one event share it.
    pub message_id: String,
    /// The tenant of the write key the event arrived with.
    pub tenant: String,
    /// The call type.
    #[serde(rename = "type")]
    pub kind: EventType,
    /// Track: the action's name (`Order Completed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    /// Page and screen: the page or screen name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Page: the page category.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// The known user, when identified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// The device or browser identity; present when the user is anonymous.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anonymous_id: Option<String>,
    /// Group: the account or organization.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_id: Option<String>,
    /// Alias: the identity being merged into `user_id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_id: Option<String>,
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
    pub properties: Option<Box<RawValue>>,
    /// Identify and group traits, verbatim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traits: Option<Box<RawValue>>,
    /// Device, library, page and campaign context, verbatim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<Box<RawValue>>,
}

impl Event {
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
        // Serializing owned strings and pre-validated raw JSON cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }
}
