//! The request shapes of the Segment HTTP Tracking API, as borrowed views of the request body.
//!
//! Field names follow Segment (`camelCase`). Nested objects stay raw ([`RawValue`]) so they can
//! be bounded by a byte scan and copied into the log without building a tree. `integrations`,
//! `channel`, `version` and `_metadata` are kept verbatim for the tools downstream; other
//! top-level fields (`writeKey`, `options`, anything an SDK adds) are accepted and dropped, as
//! Segment does, so every SDK's payload is welcome.

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::fmt;

/// One Segment message (`/v1/track` body, or one element of a batch).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RawMessage<'a> {
    /// `track`, `page`, … — required in a batch, implied by the endpoint otherwise.
    #[serde(rename = "type", borrow, default)]
    pub kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub message_id: Option<Id<'a>>,
    #[serde(borrow, default)]
    pub user_id: Option<Id<'a>>,
    #[serde(borrow, default)]
    pub anonymous_id: Option<Id<'a>>,
    #[serde(borrow, default)]
    pub group_id: Option<Id<'a>>,
    #[serde(borrow, default)]
    pub previous_id: Option<Id<'a>>,
    #[serde(borrow, default)]
    pub event: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub category: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub timestamp: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub original_timestamp: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub sent_at: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub properties: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub traits: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub context: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub integrations: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub channel: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub version: Option<&'a RawValue>,
    #[serde(rename = "_metadata", borrow, default)]
    pub metadata: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub write_key: Option<Cow<'a, str>>,
}

/// A `/v1/batch` body: `{"batch": [...], "sentAt": …, "context": …, "writeKey": …}`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RawBatch<'a> {
    /// The messages, each kept raw so one bad message does not reject its neighbours.
    #[serde(borrow)]
    pub batch: Vec<&'a RawValue>,
    #[serde(borrow, default)]
    pub sent_at: Option<Cow<'a, str>>,
    /// Context shared by every message (a message's own context keys win).
    #[serde(borrow, default)]
    pub context: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub write_key: Option<Cow<'a, str>>,
}

/// Only the `writeKey` of a body, for one whose rest is not a valid message or batch: a client
/// that sends its key in the body (`sendBeacon`, browser snippets) then hears what is wrong
/// with its events, not that its key is missing.
#[derive(Debug, Deserialize)]
pub struct WriteKeyOnly<'a> {
    #[serde(rename = "writeKey", borrow, default)]
    pub write_key: Option<Cow<'a, str>>,
}

/// An identifier: SDKs send strings, some servers send numbers; both become text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Id<'a>(pub Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Id<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct IdVisitor;
        impl<'de> Visitor<'de> for IdVisitor {
            type Value = Id<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or a number")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Id<'de>, E> {
                Ok(Id(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Id<'de>, E> {
                Ok(Id(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Id<'de>, E> {
                Ok(Id(Cow::Owned(v)))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Id<'de>, E> {
                Ok(Id(Cow::Owned(v.to_string())))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Id<'de>, E> {
                Ok(Id(Cow::Owned(v.to_string())))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Id<'de>, E> {
                Ok(Id(Cow::Owned(v.to_string())))
            }
        }
        deserializer.deserialize_any(IdVisitor)
    }
}
