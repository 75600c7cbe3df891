//! The shapes of the collector's requests and answers, for the OpenAPI description (the
//! collector itself reads requests with the zero-copy views of `sluice_core::segment`).

use serde::Serialize;
use utoipa::ToSchema;

/// One Segment message (`track`, `page`, `screen`, `identify`, `group`, `alias`); every field
/// of Segment's HTTP Tracking API is accepted.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SegmentMessage {
    /// `track`, `page`, `screen`, `identify`, `group` or `alias` (in a batch; implied by the
    /// route otherwise).
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// Deduplication id: a retry with the same id within `ingest.dedup-window` is not stored twice.
    pub message_id: Option<String>,
    /// The user's id (this or `anonymousId` is required).
    pub user_id: Option<String>,
    /// The device's id.
    pub anonymous_id: Option<String>,
    /// The event's name (`track`).
    pub event: Option<String>,
    /// The page or screen name (`page`, `screen`).
    pub name: Option<String>,
    /// When it happened (ISO 8601); corrected for clock skew with `sentAt`.
    pub timestamp: Option<String>,
    /// When the client sent it.
    pub sent_at: Option<String>,
    /// The event's properties.
    pub properties: Option<serde_json::Value>,
    /// The user's or group's traits (`identify`, `group`).
    pub traits: Option<serde_json::Value>,
    /// Context (library, device, locale…).
    pub context: Option<serde_json::Value>,
    /// The group (`group`).
    pub group_id: Option<String>,
    /// The previous id (`alias`).
    pub previous_id: Option<String>,
    /// The write key, when not sent as the HTTP Basic username.
    pub write_key: Option<String>,
}

/// `POST /v1/batch`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SegmentBatch {
    /// The messages.
    pub batch: Vec<SegmentMessage>,
    /// When the batch was sent (clock-skew correction of every message).
    pub sent_at: Option<String>,
    /// Context merged into every message.
    pub context: Option<serde_json::Value>,
    /// The write key, when not sent as the HTTP Basic username.
    pub write_key: Option<String>,
}

/// The answer to a request whose body could be read.
#[derive(Debug, Serialize, ToSchema)]
pub struct Answer {
    /// False when every event was refused.
    pub success: bool,
    /// Events stored.
    pub accepted: u64,
    /// Events skipped as retries of stored ones.
    pub duplicates: u64,
    /// Events refused, each with where and why.
    pub rejected: Vec<Rejected>,
    /// Events of erased users (`DELETE /v1/users/{id}`), dropped without being stored;
    /// present only when some were.
    pub suppressed: Option<u64>,
}

/// One refused event.
#[derive(Debug, Serialize, ToSchema)]
pub struct Rejected {
    /// Its position in the batch.
    pub index: Option<u64>,
    /// The field at fault (`batch[3].userId`).
    pub path: String,
    /// A stable reason code (`missing_field`, `too_large`, …).
    pub reason: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

/// A request refused as a whole.
#[derive(Debug, Serialize, ToSchema)]
pub struct Refusal {
    /// Always false.
    pub success: bool,
    /// Why.
    pub error: RefusalDetail,
}

/// Why a request was refused.
#[derive(Debug, Serialize, ToSchema)]
pub struct RefusalDetail {
    /// A stable code (`unauthorized`, `too_large`, `busy`, `requests_per_second`, …).
    pub code: String,
    /// What to do.
    pub message: String,
}
