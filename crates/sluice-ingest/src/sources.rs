//! `[[sources]]`: topics a team already has (in the Kafka cluster sluice runs on), read into the
//! pipeline without going through the HTTP collector.
//!
//! Each record becomes a Segment message — as it is (`format = "segment-json"`), or built from
//! a plain JSON object through a field mapping (`format = "json"`) — and the messages of a
//! poll go through the collector as a batch of the source's tenant: the same limits, dead
//! letters, dedup and append as a request, without a write key (no request rate or daily quota).
//! A message without a `messageId` gets `<topic>-<partition>-<offset>`, so a record read twice
//! (after a crash before its offset was committed, or by the next owner after a rebalance) is a
//! duplicate, not a second event. The source's consumer-group offsets are committed once the
//! batch is appended: at least once from the topic, once into the events topic.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sluice_core::config::{ConfigProblem, Validate, join};
use sluice_core::tenant::check_tenant_name;
use std::collections::BTreeMap;

/// How a source's records are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SourceFormat {
    /// Each record is a Segment message (`{"type": "track", "event": …}`).
    #[default]
    SegmentJson,
    /// Each record is a JSON object; `fields` says which of its fields are which message field,
    /// and the rest become `properties`.
    Json,
}

/// How a source's record values are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SourceEncoding {
    /// JSON text.
    #[default]
    Json,
    /// Confluent's wire format: a magic byte, the schema's id in sluice's registry, then an
    /// Avro datum or JSON text (what Confluent's `AvroSerializer` and `JSONSerializer` write),
    /// decoded to JSON through the registry (see `sluice_schema::wire`).
    Confluent,
}

/// Message fields a `json` source can map, as `fields` names them, with their Segment names.
const MAPPABLE: [(&str, &str); 10] = [
    ("type", "type"),
    ("event", "event"),
    ("name", "name"),
    ("user-id", "userId"),
    ("anonymous-id", "anonymousId"),
    ("message-id", "messageId"),
    ("timestamp", "timestamp"),
    ("properties", "properties"),
    ("traits", "traits"),
    ("context", "context"),
];

/// A `[[sources]]` table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct SourceConfig {
    /// The source's name: its consumer group is `sluice-source-<name>` (with the topic prefix).
    pub name: String,
    /// The topic, as named in Kafka (the topic prefix does not apply).
    pub topic: String,
    /// `segment-json` (default) or `json`.
    #[serde(default)]
    pub format: SourceFormat,
    /// `json` (default) or `confluent` (the schema registry's wire format).
    #[serde(default)]
    pub encoding: SourceEncoding,
    /// The tenant of every record.
    #[serde(default)]
    pub tenant: Option<String>,
    /// Or the record's field (a dotted path) that names its tenant.
    #[serde(default)]
    pub tenant_field: Option<String>,
    /// `json` format: message field (`event`, `user-id`, `anonymous-id`, `timestamp`,
    /// `message-id`, `type`, `name`, `properties`, `traits`, `context`) ← the record's field (a
    /// dotted path). Without `type` a message is a `track`; without `properties`, the record's
    /// unmapped top-level fields are its properties.
    #[serde(default)]
    pub fields: BTreeMap<String, String>,
}

impl SourceConfig {
    /// The consumer group the nodes read the source in.
    pub fn group(&self) -> String {
        format!("sluice-source-{}", self.name)
    }

    /// The record at `partition`/`offset` as a Segment message of its tenant, or why it cannot
    /// be one.
    pub fn message(
        &self,
        value: &[u8],
        partition: u32,
        offset: u64,
    ) -> Result<(String, Value), String> {
        let record: Value = serde_json::from_slice(value)
            .map_err(|error| format!("the record is not JSON ({error})"))?;
        self.message_from(record, partition, offset)
    }

    /// A record's decoded value at `partition`/`offset` as a Segment message of its tenant,
    /// or why it cannot be one.
    pub fn message_from(
        &self,
        record: Value,
        partition: u32,
        offset: u64,
    ) -> Result<(String, Value), String> {
        let Value::Object(record) = record else {
            return Err("the record is not a JSON object".into());
        };
        let tenant = match (&self.tenant, &self.tenant_field) {
            (Some(tenant), _) => tenant.clone(),
            (None, Some(field)) => match lookup(&record, field) {
                Some(Value::String(tenant)) => {
                    check_tenant_name(tenant)
                        .map_err(|reason| format!("its field {field:?}: {reason}"))?;
                    tenant.clone()
                }
                _ => return Err(format!("the record has no tenant in its field {field:?}")),
            },
            (None, None) => return Err("the source names no tenant".into()),
        };
        let mut message = match self.format {
            SourceFormat::SegmentJson => record,
            SourceFormat::Json => self.mapped(record),
        };
        message
            .entry("messageId")
            .or_insert_with(|| Value::String(format!("{}-{partition}-{offset}", self.topic)));
        Ok((tenant, Value::Object(message)))
    }

    fn mapped(&self, mut record: Map<String, Value>) -> Map<String, Value> {
        let mut message = Map::new();
        for (field, segment) in MAPPABLE {
            if let Some(path) = self.fields.get(field)
                && let Some(value) = lookup(&record, path).cloned()
            {
                message.insert(segment.to_owned(), value);
            }
        }
        message
            .entry("type")
            .or_insert_with(|| Value::String("track".into()));
        if !message.contains_key("properties") {
            for path in self.fields.values() {
                if !path.contains('.') {
                    record.remove(path);
                }
            }
            if let Some(field) = &self.tenant_field
                && !field.contains('.')
            {
                record.remove(field);
            }
            message.insert("properties".into(), Value::Object(record));
        }
        message
    }
}

/// The value at a dotted path of an object.
fn lookup<'a>(record: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    let mut parts = path.split('.');
    let mut value = record.get(parts.next()?)?;
    for part in parts {
        value = value.as_object()?.get(part)?;
    }
    Some(value)
}

impl Validate for SourceConfig {
    fn validate(&self, path: &str, problems: &mut Vec<ConfigProblem>) {
        let mut problem = |key: &str, message: String| {
            problems.push(ConfigProblem::new(join(path, key), message));
        };
        let name_ok = !self.name.is_empty()
            && self.name.len() <= 64
            && self
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !name_ok {
            problem(
                "name",
                format!(
                    "{:?} must be 1 to 64 letters, digits, '-' or '_'",
                    self.name
                ),
            );
        }
        if let Err(reason) = sluice_log::record::check_topic_name(&self.topic) {
            problem("topic", format!("{reason}; name the Kafka topic to read"));
        }
        if let Some(Err(reason)) = self.tenant.as_deref().map(check_tenant_name) {
            problem("tenant", reason);
        }
        match (&self.tenant, &self.tenant_field) {
            (Some(_), Some(_)) => problem(
                "tenant",
                "give either tenant (one tenant for every record) or tenant-field, not both".into(),
            ),
            (None, None) => problem(
                "tenant",
                "is missing: give tenant (one tenant for every record) or tenant-field (the record's field naming it)".into(),
            ),
            _ => {}
        }
        if self.format == SourceFormat::SegmentJson && !self.fields.is_empty() {
            problem(
                "fields",
                "applies to format = \"json\" only (a segment-json record is a message already)"
                    .into(),
            );
        }
        let paths = self.fields.values().chain(&self.tenant_field);
        if let Some(path) = paths
            .into_iter()
            .find(|path| path.split('.').any(str::is_empty))
        {
            problem(
                "fields",
                format!(
                    "{path:?} is not a field path: write names joined by '.', e.g. \"account.id\""
                ),
            );
        }
        for field in self.fields.keys() {
            if !MAPPABLE.iter().any(|(name, _)| name == field) {
                let known: Vec<&str> = MAPPABLE.iter().map(|(name, _)| *name).collect();
                problem(
                    &format!("fields.{field}"),
                    format!(
                        "is not a message field; the fields are: {}",
                        known.join(", ")
                    ),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn json_source() -> SourceConfig {
        SourceConfig {
            name: "web".into(),
            topic: "web-events".into(),
            format: SourceFormat::Json,
            encoding: SourceEncoding::Json,
            tenant: None,
            tenant_field: Some("site".into()),
            fields: [
                ("event", "action"),
                ("anonymous-id", "visitor"),
                ("timestamp", "at"),
                ("user-id", "account.id"),
            ]
            .into_iter()
            .map(|(a, b)| (a.to_owned(), b.to_owned()))
            .collect(),
        }
    }

    #[test]
    fn a_json_record_becomes_a_track_message_of_its_tenant_with_the_rest_as_properties() {
        let record = json!({"site": "shop", "action": "Clicked", "visitor": "v1",
            "at": "2026-12-06T10:00:00Z", "account": {"id": "u7"}, "button": "buy"});
        let (tenant, message) = json_source()
            .message(record.to_string().as_bytes(), 3, 41)
            .unwrap();
        assert_eq!(tenant, "shop");
        assert_eq!(
            message,
            json!({"type": "track", "event": "Clicked", "anonymousId": "v1", "userId": "u7",
                "timestamp": "2026-12-06T10:00:00Z", "messageId": "web-events-3-41",
                "properties": {"account": {"id": "u7"}, "button": "buy"}})
        );
    }

    #[test]
    fn a_segment_record_keeps_its_message_id_and_gets_one_when_it_has_none() {
        let source = SourceConfig {
            format: SourceFormat::SegmentJson,
            tenant: Some("shop".into()),
            tenant_field: None,
            fields: BTreeMap::new(),
            ..json_source()
        };
        let with = json!({"type": "page", "anonymousId": "a", "messageId": "m1"});
        let (_, message) = source.message(with.to_string().as_bytes(), 0, 5).unwrap();
        assert_eq!(message["messageId"], "m1");
        let without = json!({"type": "page", "anonymousId": "a"});
        let (_, message) = source
            .message(without.to_string().as_bytes(), 0, 5)
            .unwrap();
        assert_eq!(message["messageId"], "web-events-0-5");
    }

    #[test]
    fn records_that_cannot_be_messages_say_why() {
        let source = json_source();
        assert!(
            source
                .message(b"not json", 0, 0)
                .unwrap_err()
                .contains("not JSON")
        );
        assert!(
            source
                .message(b"[1]", 0, 0)
                .unwrap_err()
                .contains("not a JSON object")
        );
        let error = source.message(br#"{"action": "x"}"#, 0, 0).unwrap_err();
        assert!(error.contains("no tenant in its field \"site\""), "{error}");
        let error = source
            .message(br#"{"site": "Not A Tenant!", "action": "x"}"#, 0, 0)
            .unwrap_err();
        assert!(error.contains("not a valid tenant name"), "{error}");
    }

    #[test]
    fn bad_sources_are_reported_with_their_keys() {
        let mut source = json_source();
        source.name = "no spaces".into();
        source.topic = "a topic?".into();
        source.tenant = Some("Shop".into());
        source.fields.insert("colour".into(), "c".into());
        source.fields.insert("event".into(), "a..b".into());
        let mut problems = Vec::new();
        source.validate("sources[0]", &mut problems);
        let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "sources[0].name",
                "sources[0].topic",
                "sources[0].tenant",
                "sources[0].tenant",
                "sources[0].fields",
                "sources[0].fields.colour"
            ]
        );
    }
}
