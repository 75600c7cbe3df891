//! From a Segment message to an [`Event`]: validation, limits and clock-skew correction.
//!
//! Every rule that rejects a message produces an [`EventError`] naming the field path as the
//! client wrote it (`batch[3].userId`) and what to change. The rules, in order:
//!
//! 1. the message is at most `limits.max-event-bytes` of JSON, and is a JSON object;
//! 2. `type` is one of the six Segment types (or implied by the endpoint, and then must match);
//! 3. `userId` or `anonymousId` is present (both may be); ids fit `limits.max-id-bytes`;
//!    `messageId` is kept when given, otherwise a time-ordered one is generated;
//! 4. per type: track needs `event`, group needs `groupId`, alias needs `previousId` and
//!    `userId`; names fit `limits.max-name-bytes`;
//! 5. `timestamp`, `originalTimestamp` and `sentAt` are ISO-8601;
//! 6. `properties`, `traits` and `context` are objects within `limits.max-depth` and
//!    `limits.max-string-bytes` (when set; by default a string is bounded only by its event,
//!    as in Segment);
//! 7. `integrations`, `channel`, `version` and `_metadata`, when present, are kept verbatim,
//!    within the same bounds (any JSON type: SDKs differ).
//!
//! **Clock skew.** A device's clock may be off by minutes or years. Segment's correction: the
//! client stamps each event (`timestamp`) and the request (`sentAt`) with the same clock, so
//! `sentAt - timestamp` is the true age of the event when it was sent, whatever the clock's
//! offset. The corrected event time is `receivedAt - (sentAt - timestamp)`. Without `sentAt`
//! the client's `timestamp` is used as is; without a timestamp, the event happened when it was
//! received.

use crate::event::{Event, EventType};
use crate::id::generate_message_id;
use crate::json::{self, Violation};
use crate::limits::Limits;
use crate::segment::{Id, RawBatch, RawMessage};
use crate::time::{Millis, parse_rfc3339_millis};
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::fmt;

/// Why a message was rejected, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct EventError {
    /// Field path as the client wrote it (`batch[2].properties.items[0]`); empty when the
    /// problem is the whole request.
    pub path: String,
    /// What is wrong.
    pub kind: EventErrorKind,
}

impl fmt::Display for EventError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.kind)
        } else {
            write!(f, "{}: {}", self.path, self.kind)
        }
    }
}

/// The rules a message can break.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventErrorKind {
    /// The body is not JSON.
    #[error("malformed JSON at line {line}, column {column}: {message}")]
    MalformedJson {
        line: usize,
        column: usize,
        message: String,
    },
    /// A field has the wrong JSON type.
    #[error("{0}")]
    WrongType(String),
    /// A required field is absent or empty.
    #[error("{0}")]
    Missing(&'static str),
    /// `type` is not a Segment type.
    #[error("unknown type {0:?}; expected one of track, page, screen, identify, group, alias")]
    UnknownType(String),
    /// `type` disagrees with the endpoint the message was sent to.
    #[error("type {found:?} was sent to /v1/{endpoint}; send it to /v1/{found} or /v1/batch")]
    TypeMismatch { endpoint: EventType, found: String },
    /// The message or request is larger than a limit.
    #[error("{what} is {size} bytes, larger than the limit of {limit} bytes ({setting})")]
    TooLarge {
        what: &'static str,
        size: usize,
        limit: usize,
        setting: &'static str,
    },
    /// Objects or arrays nest deeper than `limits.max-depth`.
    #[error("nested deeper than the limit of {limit} levels (limits.max-depth); flatten the data")]
    TooDeep { limit: usize },
    /// A string is longer than its limit.
    #[error("{what} is {len} bytes, longer than the limit of {limit} bytes ({setting})")]
    TooLong {
        what: &'static str,
        len: usize,
        limit: usize,
        setting: &'static str,
    },
    /// A timestamp does not parse.
    #[error("invalid timestamp: {0}")]
    InvalidTimestamp(String),
    /// `properties`, `traits` or `context` is not an object.
    #[error("expected an object, found {0}")]
    NotAnObject(&'static str),
}

impl EventErrorKind {
    /// A stable, low-cardinality label for metrics and dead-letter records.
    pub fn reason(&self) -> &'static str {
        match self {
            EventErrorKind::MalformedJson { .. } => "malformed_json",
            EventErrorKind::WrongType(_) => "wrong_type",
            EventErrorKind::Missing(_) => "missing_field",
            EventErrorKind::UnknownType(_) => "unknown_type",
            EventErrorKind::TypeMismatch { .. } => "type_mismatch",
            EventErrorKind::TooLarge { .. } => "too_large",
            EventErrorKind::TooDeep { .. } => "too_deep",
            EventErrorKind::TooLong { .. } => "too_long",
            EventErrorKind::InvalidTimestamp(_) => "invalid_timestamp",
            EventErrorKind::NotAnObject(_) => "not_an_object",
        }
    }

    /// Whether the error is about a request body as a whole (not JSON, or over a size limit)
    /// rather than about the one event a single-message body holds.
    pub fn is_about_the_body(&self) -> bool {
        matches!(
            self,
            EventErrorKind::MalformedJson { .. } | EventErrorKind::TooLarge { .. }
        )
    }
}

/// What normalization needs besides the message itself.
#[derive(Debug, Clone, Copy)]
pub struct NormalizeContext<'a> {
    /// The tenant of the write key.
    pub tenant: &'a str,
    /// When the request arrived.
    pub received_at: Millis,
    /// The bounds to enforce.
    pub limits: &'a Limits,
    /// The type implied by a single-message endpoint (`/v1/track`); `None` in a batch.
    pub endpoint: Option<EventType>,
    /// The batch's `sentAt`, used when a message has none of its own.
    pub batch_sent_at: Option<Millis>,
    /// The batch's `context`, merged under each message's own.
    pub batch_context: Option<&'a RawValue>,
    /// The message's position in a batch (its path is `batch[i]`); `None` for a single message.
    pub index: Option<usize>,
}

impl NormalizeContext<'_> {
    /// The message's own path: `batch[i]`, or empty for a single message. Built only when an
    /// error needs it.
    pub fn path(&self) -> String {
        self.index
            .map_or_else(String::new, |index| format!("batch[{index}]"))
    }

    fn at(&self, field: &str) -> String {
        match self.index {
            Some(index) => format!("batch[{index}].{field}"),
            None => field.to_owned(),
        }
    }

    fn error(&self, field: &str, kind: EventErrorKind) -> EventError {
        EventError {
            path: self.at(field),
            kind,
        }
    }
}

/// The corrected event time (see the module doc).
pub fn corrected_event_time(
    timestamp: Option<Millis>,
    sent_at: Option<Millis>,
    received_at: Millis,
) -> Millis {
    match (timestamp, sent_at) {
        (Some(timestamp), Some(sent_at)) => received_at
            .saturating_sub(sent_at.saturating_sub(timestamp))
            .max(0),
        (Some(timestamp), None) => timestamp,
        (None, _) => received_at,
    }
}

/// Checks the size of a whole request body against `limits.max-batch-bytes`.
pub fn check_request_size(len: usize, limits: &Limits) -> Result<(), EventError> {
    let limit = limits.max_batch_bytes.as_usize();
    if len > limit {
        return Err(EventError {
            path: String::new(),
            kind: EventErrorKind::TooLarge {
                what: "request body",
                size: len,
                limit,
                setting: "limits.max-batch-bytes",
            },
        });
    }
    Ok(())
}

/// Parses a `/v1/batch` body. Its messages stay raw: normalize each with [`normalize`], so one
/// bad message is reported on its own.
pub fn parse_batch<'a>(body: &'a [u8], limits: &Limits) -> Result<RawBatch<'a>, EventError> {
    check_request_size(body.len(), limits)?;
    if let Some(found) = not_an_object(body) {
        let message =
            format!("wrong type: found {found}, expected an object like {{\"batch\": [...]}}");
        return Err(EventError {
            path: String::new(),
            kind: EventErrorKind::WrongType(message),
        });
    }
    match serde_json::from_slice::<RawBatch<'a>>(body) {
        Ok(batch) => Ok(batch),
        Err(error) => Err(describe_json_error::<RawBatch<'_>>(body, error, "")),
    }
}

/// Parses a batch-level or message-level `sentAt`.
pub fn parse_sent_at(text: Option<&str>, path: &str) -> Result<Option<Millis>, EventError> {
    text.map(|text| {
        parse_rfc3339_millis(text).map_err(|reason| EventError {
            path: path.to_owned(),
            kind: EventErrorKind::InvalidTimestamp(reason),
        })
    })
    .transpose()
}

/// Validates and normalizes one Segment message (`raw` is its JSON text).
pub fn normalize<'a>(raw: &'a [u8], ctx: &NormalizeContext<'a>) -> Result<Event<'a>, EventError> {
    normalize_message(&parse_message(raw, ctx)?, ctx)
}

/// Parses one message (checking its size and shape) without normalizing it, for callers that
/// need a field (the `writeKey`) before they can build the [`NormalizeContext`]; `ctx.tenant`
/// is not used here.
pub fn parse_message<'a>(
    raw: &'a [u8],
    ctx: &NormalizeContext<'_>,
) -> Result<RawMessage<'a>, EventError> {
    let limit = ctx.limits.max_event_bytes.as_usize();
    if raw.len() > limit {
        return Err(EventError {
            path: ctx.path(),
            kind: EventErrorKind::TooLarge {
                what: "event",
                size: raw.len(),
                limit,
                setting: "limits.max-event-bytes",
            },
        });
    }
    if let Some(found) = not_an_object(raw) {
        let message = format!("wrong type: found {found}, expected an object (a Segment message)");
        return Err(EventError {
            path: ctx.path(),
            kind: EventErrorKind::WrongType(message),
        });
    }
    serde_json::from_slice::<RawMessage<'a>>(raw)
        .map_err(|error| describe_json_error::<RawMessage<'_>>(raw, error, &ctx.path()))
}

/// Validates and normalizes a parsed message: the steps of the module docs, in order.
pub fn normalize_message<'a>(
    message: &RawMessage<'a>,
    ctx: &NormalizeContext<'a>,
) -> Result<Event<'a>, EventError> {
    let kind = message_type(message, ctx)?;
    let ids = Ids::of(message, ctx)?;
    let names = Names::of(message, ctx)?;
    require_per_type(kind, &ids, &names, ctx)?;
    let times = Times::of(message, ctx)?;
    let bodies = Bodies::of(message, ctx)?;
    let kept = Kept::of(message, ctx)?;
    Ok(Event {
        message_id: ids.message_id,
        tenant: Cow::Borrowed(ctx.tenant),
        kind,
        event: if kind == EventType::Track {
            names.event
        } else {
            None
        },
        name: names.name,
        category: names.category,
        user_id: ids.user_id,
        anonymous_id: ids.anonymous_id,
        group_id: ids.group_id,
        previous_id: ids.previous_id,
        timestamp: times.timestamp,
        received_at: ctx.received_at,
        sent_at: times.sent_at,
        original_timestamp: times.original_timestamp,
        properties: bodies.properties,
        traits: bodies.traits,
        context: bodies.context,
        integrations: kept.integrations,
        channel: kept.channel,
        version: kept.version,
        metadata: kept.metadata,
        schema_violations: None,
    })
}

/// Step 2: the message's type, which the endpoint implies and a batch message must name.
fn message_type(
    message: &RawMessage<'_>,
    ctx: &NormalizeContext<'_>,
) -> Result<EventType, EventError> {
    match (&message.kind, ctx.endpoint) {
        (Some(found), Some(endpoint)) if found.as_ref() != endpoint.as_str() => {
            let kind = match found.parse::<EventType>() {
                Ok(_) => EventErrorKind::TypeMismatch {
                    endpoint,
                    found: found.to_string(),
                },
                Err(()) => EventErrorKind::UnknownType(found.to_string()),
            };
            Err(ctx.error("type", kind))
        }
        (_, Some(endpoint)) => Ok(endpoint),
        (Some(found), None) => found
            .parse()
            .map_err(|()| ctx.error("type", EventErrorKind::UnknownType(found.to_string()))),
        (None, None) => Err(ctx.error(
            "type",
            EventErrorKind::Missing(
                "type is required in a batch (track, page, screen, identify, group or alias)",
            ),
        )),
    }
}

/// Step 3: the message's ids, each within `limits.max-id-bytes`; an empty id is no id.
struct Ids<'a> {
    message_id: Cow<'a, str>,
    user_id: Option<Cow<'a, str>>,
    anonymous_id: Option<Cow<'a, str>>,
    group_id: Option<Cow<'a, str>>,
    previous_id: Option<Cow<'a, str>>,
}

impl<'a> Ids<'a> {
    fn of(message: &RawMessage<'a>, ctx: &NormalizeContext<'_>) -> Result<Self, EventError> {
        let user_id = checked_id(&message.user_id, "userId", ctx)?;
        let anonymous_id = checked_id(&message.anonymous_id, "anonymousId", ctx)?;
        if user_id.is_none() && anonymous_id.is_none() {
            return Err(ctx.error(
                "userId",
                EventErrorKind::Missing(
                    "userId or anonymousId is required (send at least one, as a non-empty string)",
                ),
            ));
        }
        Ok(Ids {
            message_id: checked_id(&message.message_id, "messageId", ctx)?
                .unwrap_or_else(|| Cow::Owned(generate_message_id())),
            user_id,
            anonymous_id,
            group_id: checked_id(&message.group_id, "groupId", ctx)?,
            previous_id: checked_id(&message.previous_id, "previousId", ctx)?,
        })
    }
}

fn checked_id<'a>(
    value: &Option<Id<'a>>,
    field: &str,
    ctx: &NormalizeContext<'_>,
) -> Result<Option<Cow<'a, str>>, EventError> {
    let Some(Id(text)) = value else {
        return Ok(None);
    };
    if text.is_empty() {
        return Ok(None);
    }
    let limit = ctx.limits.max_id_bytes.as_usize();
    if text.len() > limit {
        let kind = EventErrorKind::TooLong {
            what: "id",
            len: text.len(),
            limit,
            setting: "limits.max-id-bytes",
        };
        return Err(ctx.error(field, kind));
    }
    Ok(Some(text.clone()))
}

/// Step 4, first half: the event, page or screen name and category, each within
/// `limits.max-name-bytes`; an empty name is no name.
struct Names<'a> {
    event: Option<Cow<'a, str>>,
    name: Option<Cow<'a, str>>,
    category: Option<Cow<'a, str>>,
}

impl<'a> Names<'a> {
    fn of(message: &RawMessage<'a>, ctx: &NormalizeContext<'_>) -> Result<Self, EventError> {
        Ok(Names {
            event: checked_name(&message.event, "event", ctx)?,
            name: checked_name(&message.name, "name", ctx)?,
            category: checked_name(&message.category, "category", ctx)?,
        })
    }
}

fn checked_name<'a>(
    value: &Option<Cow<'a, str>>,
    field: &str,
    ctx: &NormalizeContext<'_>,
) -> Result<Option<Cow<'a, str>>, EventError> {
    let Some(text) = value.as_ref().filter(|text| !text.is_empty()) else {
        return Ok(None);
    };
    let limit = ctx.limits.max_name_bytes.as_usize();
    if text.len() > limit {
        let kind = EventErrorKind::TooLong {
            what: "name",
            len: text.len(),
            limit,
            setting: "limits.max-name-bytes",
        };
        return Err(ctx.error(field, kind));
    }
    Ok(Some(text.clone()))
}

/// Step 4, second half: what each type needs.
fn require_per_type(
    kind: EventType,
    ids: &Ids<'_>,
    names: &Names<'_>,
    ctx: &NormalizeContext<'_>,
) -> Result<(), EventError> {
    let (field, missing) = match kind {
        EventType::Track if names.event.is_none() => (
            "event",
            "track calls need an event name, like \"Order Completed\"",
        ),
        EventType::Group if ids.group_id.is_none() => ("groupId", "group calls need a groupId"),
        EventType::Alias if ids.previous_id.is_none() => {
            ("previousId", "alias calls need the previousId being merged")
        }
        EventType::Alias if ids.user_id.is_none() => {
            ("userId", "alias calls need the userId to merge into")
        }
        _ => return Ok(()),
    };
    Err(ctx.error(field, EventErrorKind::Missing(missing)))
}

/// Step 5: the client's times, and the event time corrected for its clock's skew.
struct Times {
    original_timestamp: Option<Millis>,
    sent_at: Option<Millis>,
    timestamp: Millis,
}

impl Times {
    fn of(message: &RawMessage<'_>, ctx: &NormalizeContext<'_>) -> Result<Self, EventError> {
        let original_timestamp = match parsed_time(&message.timestamp, "timestamp", ctx)? {
            Some(timestamp) => Some(timestamp),
            None => parsed_time(&message.original_timestamp, "originalTimestamp", ctx)?,
        };
        let sent_at = parsed_time(&message.sent_at, "sentAt", ctx)?.or(ctx.batch_sent_at);
        Ok(Times {
            original_timestamp,
            sent_at,
            timestamp: corrected_event_time(original_timestamp, sent_at, ctx.received_at),
        })
    }
}

/// The error's path is built only when there is an error (this runs for every event).
fn parsed_time(
    value: &Option<Cow<'_, str>>,
    field: &str,
    ctx: &NormalizeContext<'_>,
) -> Result<Option<Millis>, EventError> {
    value
        .as_deref()
        .map(|text| {
            parse_rfc3339_millis(text)
                .map_err(|reason| ctx.error(field, EventErrorKind::InvalidTimestamp(reason)))
        })
        .transpose()
}

/// Step 6: `properties`, `traits` and `context` (a batch's shared context merged under the
/// message's own), each an object within the depth and string limits.
struct Bodies<'a> {
    properties: Option<Cow<'a, RawValue>>,
    traits: Option<Cow<'a, RawValue>>,
    context: Option<Cow<'a, RawValue>>,
}

impl<'a> Bodies<'a> {
    fn of(message: &RawMessage<'a>, ctx: &NormalizeContext<'a>) -> Result<Self, EventError> {
        let properties = message
            .properties
            .map(|raw| check_object(raw, "properties", ctx))
            .transpose()?;
        let traits = message
            .traits
            .map(|raw| check_object(raw, "traits", ctx))
            .transpose()?;
        let context = match (message.context, ctx.batch_context) {
            (Some(own), Some(shared)) => {
                check_object(own, "context", ctx)?;
                Some(merge_objects(shared, own, ctx)?)
            }
            (Some(own), None) => Some(check_object(own, "context", ctx)?),
            (None, Some(shared)) => Some(check_object(
                shared,
                "context",
                &NormalizeContext {
                    index: None,
                    ..*ctx
                },
            )?),
            (None, None) => None,
        };
        Ok(Bodies {
            properties,
            traits,
            context,
        })
    }
}

/// Step 7: the top-level fields kept verbatim for the tools downstream, each within the depth
/// and string limits; `null` is absent.
struct Kept<'a> {
    integrations: Option<Cow<'a, RawValue>>,
    channel: Option<Cow<'a, RawValue>>,
    version: Option<Cow<'a, RawValue>>,
    metadata: Option<Cow<'a, RawValue>>,
}

impl<'a> Kept<'a> {
    fn of(message: &RawMessage<'a>, ctx: &NormalizeContext<'_>) -> Result<Self, EventError> {
        let kept = |raw: Option<&'a RawValue>, field: &str| {
            raw.map(|raw| check_bounds(raw, field, ctx).map(|()| Cow::Borrowed(raw)))
                .transpose()
        };
        Ok(Kept {
            integrations: kept(message.integrations, "integrations")?,
            channel: kept(message.channel, "channel")?,
            version: kept(message.version, "version")?,
            metadata: kept(message.metadata, "_metadata")?,
        })
    }
}

/// What a JSON text that is not an object starts as; `None` for an object or for text that is
/// not JSON at all (the parser reports that with its position).
fn not_an_object(raw: &[u8]) -> Option<&'static str> {
    match raw.iter().find(|b| !b.is_ascii_whitespace())? {
        b'[' => Some("an array"),
        b'"' => Some("a string"),
        b't' | b'f' => Some("a boolean"),
        b'n' => Some("null"),
        b'-' | b'0'..=b'9' => Some("a number"),
        _ => None,
    }
}

/// Checks that `raw` is an object within the depth and string limits.
fn check_object<'a>(
    raw: &'a RawValue,
    field: &str,
    ctx: &NormalizeContext<'_>,
) -> Result<Cow<'a, RawValue>, EventError> {
    if let Some(found) = not_an_object(raw.get().as_bytes()) {
        return Err(ctx.error(field, EventErrorKind::NotAnObject(found)));
    }
    check_bounds(raw, field, ctx)?;
    Ok(Cow::Borrowed(raw))
}

/// Checks that `raw` (any JSON value) is within the depth and string limits.
fn check_bounds(raw: &RawValue, field: &str, ctx: &NormalizeContext<'_>) -> Result<(), EventError> {
    let text = raw.get();
    // The event itself is one level; its objects start at the second.
    let max_depth = ctx.limits.max_depth.saturating_sub(1);
    let max_len = ctx.limits.max_string_len();
    let shape = json::scan(text.as_bytes());
    if shape.depth > max_depth || shape.longest_string > max_len {
        let value: serde_json::Value = serde_json::from_str(text).unwrap_or_default();
        let violation = json::find_violation(&value, &ctx.at(field), max_depth, max_len);
        return Err(match violation {
            Some(Violation::TooDeep { path }) => EventError {
                path,
                kind: EventErrorKind::TooDeep {
                    limit: ctx.limits.max_depth,
                },
            },
            Some(Violation::StringTooLong { path, len, is_key }) => EventError {
                path,
                kind: EventErrorKind::TooLong {
                    what: if is_key { "key" } else { "string" },
                    len,
                    limit: max_len,
                    setting: "limits.max-string-bytes",
                },
            },
            None => ctx.error(
                field,
                EventErrorKind::TooDeep {
                    limit: ctx.limits.max_depth,
                },
            ),
        });
    }
    Ok(())
}

/// The batch's shared context with the message's own keys on top.
fn merge_objects(
    shared: &RawValue,
    own: &RawValue,
    ctx: &NormalizeContext<'_>,
) -> Result<Cow<'static, RawValue>, EventError> {
    type Object = serde_json::Map<String, serde_json::Value>;
    let shared: Object = serde_json::from_str(shared.get()).map_err(|_| EventError {
        path: "context".into(),
        kind: EventErrorKind::NotAnObject("another type"),
    })?;
    let own: Object = serde_json::from_str(own.get()).unwrap_or_default();
    let mut merged = shared;
    merged.extend(own);
    let text = serde_json::to_string(&merged).unwrap_or_else(|_| "{}".into());
    let merged = RawValue::from_string(text)
        .unwrap_or_else(|_| RawValue::from_string("{}".into()).expect("valid"));
    check_object(&merged, "context", ctx)?;
    Ok(Cow::Owned(merged))
}

/// Turns a serde_json error into a precise [`EventError`]: syntax errors keep their position,
/// type errors get the field path (found by parsing again, which only bad input pays for).
fn describe_json_error<'a, T: serde::Deserialize<'a>>(
    raw: &'a [u8],
    error: serde_json::Error,
    base: &str,
) -> EventError {
    use serde_json::error::Category;
    let strip_position = |message: String| match message.rfind(" at line ") {
        Some(index) => message[..index].to_owned(),
        None => message,
    };
    match error.classify() {
        Category::Syntax | Category::Eof | Category::Io => EventError {
            path: base.to_owned(),
            kind: EventErrorKind::MalformedJson {
                line: error.line(),
                column: error.column(),
                message: strip_position(error.to_string()),
            },
        },
        Category::Data => {
            let mut deserializer = serde_json::Deserializer::from_slice(raw);
            let (path, message) = match serde_path_to_error::deserialize::<_, T>(&mut deserializer)
            {
                Err(error) => (
                    error.path().to_string(),
                    strip_position(error.into_inner().to_string()),
                ),
                Ok(_) => (String::from("."), strip_position(error.to_string())),
            };
            let message = message
                .replace("invalid type: ", "wrong type: found ")
                .replace("struct RawMessage", "an object (a Segment message)")
                .replace("struct RawBatch", "an object like {\"batch\": [...]}")
                .replace("a borrowed string", "a string")
                .replace(
                    "missing field `batch`",
                    "missing field `batch`: a batch request is {\"batch\": [...]}",
                );
            let path = match (base, path.as_str()) {
                (base, ".") => base.to_owned(),
                ("", path) => path.to_owned(),
                (base, path) => format!("{base}.{path}"),
            };
            EventError {
                path,
                kind: EventErrorKind::WrongType(message),
            }
        }
    }
}

#[cfg(test)]
mod tests;
