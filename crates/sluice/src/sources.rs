//! Runs the `[[sources]]` (see `sluice_ingest::sources`): per source, a member of its consumer
//! group polls the topic, turns each record into a Segment message, hands the messages of a
//! poll to the collector as batches per tenant, and commits the offsets once they are stored.
//! A failed append is tried again (nothing is committed past it); a record that cannot be a
//! message, or whose tenant has no write key, is skipped with a warning and counted in
//! `sluice_source_records_skipped_total{source}`.

use serde_json::Value;
use sluice_api::registry::SchemaService;
use sluice_ingest::collector::{Collector, IngestError};
use sluice_ingest::sources::{SourceConfig, SourceEncoding};
use sluice_log::Log;
use sluice_log::kafka::source::TopicReader;
use sluice_schema::{ParsedSchema, parse, wire};
use std::collections::BTreeMap;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Records taken per poll.
const POLL_RECORDS: usize = 2_000;

/// Bytes of messages per batch handed to the collector (below `limits.max-batch-bytes`' default).
const BATCH_BYTES: usize = 256 * 1024;

/// Reads `source` through `reader` into `collector` until `stop`.
pub async fn run<L: Log>(
    source: SourceConfig,
    reader: TopicReader,
    collector: Arc<Collector<L>>,
    schemas: Arc<SchemaService>,
    stop: CancellationToken,
) {
    let mut decoder = Decoder::new(schemas, source.tenant.clone());
    let skipped =
        metrics::counter!("sluice_source_records_skipped_total", "source" => source.name.clone());
    let mut failing = false;
    loop {
        let polled = tokio::select! {
            () = stop.cancelled() => return,
            polled = reader.poll(POLL_RECORDS, Duration::from_millis(500)) => polled,
        };
        let records = match polled {
            Ok(records) => {
                failing = false;
                records
            }
            Err(error) => {
                if !failing {
                    tracing::warn!(source = %source.name, topic = %source.topic, %error, "cannot read the source topic; trying again every second");
                    failing = true;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if records.is_empty() {
            continue;
        }
        let mut next: BTreeMap<u32, u64> = BTreeMap::new();
        let mut tenants: BTreeMap<String, Vec<Value>> = BTreeMap::new();
        for record in &records {
            next.insert(record.partition, record.offset + 1);
            let message = match source.encoding {
                SourceEncoding::Json => {
                    source.message(&record.value, record.partition, record.offset)
                }
                SourceEncoding::Confluent => match decoder.decode(&record.value).await {
                    Ok(value) => source.message_from(value, record.partition, record.offset),
                    Err(reason) => Err(reason),
                },
            };
            match message {
                Ok((tenant, message)) => tenants.entry(tenant).or_default().push(message),
                Err(reason) => {
                    skipped.increment(1);
                    tracing::warn!(source = %source.name, topic = %source.topic, partition = record.partition, offset = record.offset, %reason, "source record skipped");
                }
            }
        }
        for (tenant, messages) in tenants {
            if !collector.takes_events_for(&tenant) {
                skipped.increment(messages.len() as u64);
                tracing::warn!(source = %source.name, topic = %source.topic, tenant, records = messages.len(), "source records skipped: their tenant has no write key; add the tenant to [[tenants]] (or through the admin API) with a write key");
                continue;
            }
            for body in batches(messages) {
                if !store(&source, &collector, &tenant, &body, &stop).await {
                    return;
                }
            }
        }
        let next: Vec<(u32, u64)> = next.into_iter().collect();
        if let Err(error) = reader.commit(&next).await {
            // The records are read again after a restart or rebalance: duplicates then.
            tracing::warn!(source = %source.name, %error, "could not commit the source's offsets; its records may be read again (their message ids make them duplicates)");
        }
    }
}

/// Decodes records in Confluent's wire format through the schema registry, keeping each
/// schema parsed once.
struct Decoder {
    schemas: Arc<SchemaService>,
    /// The source's tenant, whose schemas alone decode its records (`None`: a tenant field
    /// picks the tenant after decoding, so any tenant's id is taken).
    tenant: Option<String>,
    parsed: HashMap<u32, ParsedSchema>,
}

impl Decoder {
    fn new(schemas: Arc<SchemaService>, tenant: Option<String>) -> Self {
        Decoder {
            schemas,
            tenant,
            parsed: HashMap::new(),
        }
    }

    /// The record's value as JSON, or why it cannot be decoded.
    async fn decode(&mut self, record: &[u8]) -> Result<Value, String> {
        let framed = wire::split(record).map_err(|error| error.to_string())?;
        if !self.parsed.contains_key(&framed.schema_id) {
            let schema = match self.lookup(framed.schema_id) {
                Ok(schema) => schema,
                Err(_) => {
                    // Registered a moment ago on another node: read the registry again, once.
                    if let Err(error) = self.schemas.reload().await {
                        return Err(format!("the schema registry cannot be read: {error}"));
                    }
                    self.lookup(framed.schema_id)?
                }
            };
            self.parsed.insert(framed.schema_id, schema);
        }
        let schema = &self.parsed[&framed.schema_id];
        wire::decode(schema, framed.payload).map_err(|error| error.to_string())
    }

    fn lookup(&self, id: u32) -> Result<ParsedSchema, String> {
        let registry = self.schemas.snapshot();
        let version = registry
            .by_id(self.tenant.as_deref(), id)
            .map_err(|_| {
                format!("schema id {id} is not in the registry (of the source's tenant): register the schema with sluice's registry before producing")
            })?;
        parse::parse(version.schema_type, &version.schema, usize::MAX)
            .map(|checked| checked.parsed)
            .map_err(|error| format!("schema id {id}: {error}"))
    }
}

/// The messages as `{"batch": [...]}` bodies of at most [`BATCH_BYTES`] (one message each
/// at least).
fn batches(messages: Vec<Value>) -> Vec<Vec<u8>> {
    let mut bodies = Vec::new();
    let mut body = Vec::new();
    for message in messages {
        let encoded = message.to_string();
        if !body.is_empty() && body.len() + encoded.len() + 2 > BATCH_BYTES {
            body.extend_from_slice(b"]}");
            bodies.push(std::mem::take(&mut body));
        }
        body.extend_from_slice(if body.is_empty() {
            b"{\"batch\":["
        } else {
            b","
        });
        body.extend_from_slice(encoded.as_bytes());
    }
    if !body.is_empty() {
        body.extend_from_slice(b"]}");
        bodies.push(body);
    }
    bodies
}

/// Stores one batch, trying again while the collector cannot take it now; false when stopped
/// before it was stored.
async fn store<L: Log>(
    source: &SourceConfig,
    collector: &Collector<L>,
    tenant: &str,
    body: &[u8],
    stop: &CancellationToken,
) -> bool {
    let mut warned = false;
    loop {
        match collector.ingest_for_tenant(tenant, body).await {
            Ok(_) => return true,
            Err(
                error @ (IngestError::Busy
                | IngestError::Overloaded(_)
                | IngestError::Unavailable(_)),
            ) => {
                if !warned {
                    tracing::warn!(source = %source.name, tenant, %error, "source batch not stored yet; trying again");
                    warned = true;
                }
            }
            Err(error) => {
                // The batch as a whole is refused (its messages are dead letters already when
                // they can be): nothing to try again.
                tracing::error!(source = %source.name, tenant, %error, "source batch refused");
                return true;
            }
        }
        tokio::select! {
            () = stop.cancelled() => return false,
            () = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn messages_are_cut_into_batches_below_the_size() {
        let message = json!({"type": "track", "event": "x".repeat(100_000)});
        let bodies = batches(vec![message.clone(), message.clone(), message.clone()]);
        assert_eq!(bodies.len(), 2);
        for body in &bodies {
            let parsed: Value = serde_json::from_slice(body).unwrap();
            assert!(!parsed["batch"].as_array().unwrap().is_empty());
            assert!(body.len() <= BATCH_BYTES);
        }
    }
}
