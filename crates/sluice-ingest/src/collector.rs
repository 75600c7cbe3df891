//! The collector's core: from an authenticated, decoded request body to durable records, with
//! per-event errors, dead letters and deduplication. HTTP framing lives in [`crate::http`].
//!
//! One request, in order:
//! 1. parse the body (a batch, or one message) — a body that is not JSON fails as a whole;
//! 2. resolve the write key (header, else `writeKey` in the body) to a tenant, and admit the
//!    request under the key's request rate;
//! 3. normalize every message; invalid ones become [`Rejection`]s and dead letters; the events
//!    of erased users are dropped; valid ones are checked against the tenant's schemas, then
//!    enriched ([`crate::enrich`]);
//! 4. claim each client `messageId` in the dedup set: duplicates are skipped, ids another
//!    request is still appending make the whole request retry later (nothing was written);
//! 5. take the accepted events from the key's daily quota (all or none), then append them,
//!    grouped by partition (murmur2 of the partition key), and dead letters concurrently;
//!    return only once every append is durable under the log's ack mode;
//! 6. commit the ids of the partitions that were appended (even if another partition failed,
//!    so the client's retry does not duplicate them) and answer.
//!
//! Around it: at start the dedup set is restored ([`crate::dedup::restore`]), and
//! [`Collector::run_dedup_upkeep`] ([`crate::dedup::upkeep`]) saves it to a snapshot every
//! `ingest.dedup-snapshot-interval` and keeps its gauges current.

use crate::config::IngestConfig;
use crate::dedup::gate::AppendGate;
use crate::dedup::restore;
use crate::dedup::{Claim, Claims, Clock, Dedup, fingerprint};
use crate::enrich::Enricher;
use crate::telemetry::{DedupTelemetry, IngestTelemetry};
use bytes::Bytes;
use serde::Serialize;
use sluice_core::access::{Grant, KeyDirectory, Limited};
use sluice_core::erasure::ErasedUsers;
use sluice_core::normalize::{self, EventError, NormalizeContext};
use sluice_core::segment::{RawMessage, WriteKeyOnly};
use sluice_core::time::{Millis, now_millis};
use sluice_core::{Event, EventType, Limits};
use sluice_log::{Log, LogError, Record, partition_for_key};
use sluice_schema::validate::{SharedValidators, Verdict, Violation};
use std::borrow::Cow;
use std::net::IpAddr;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// One rejected message, as reported to the client and written to the dead-letter topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rejection {
    /// Position in the batch (0 for a single-message request; `None` only in the dead letter
    /// of a body that is not JSON at all).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<usize>,
    /// Field path (`batch[3].userId`).
    pub path: String,
    /// Stable reason code (`missing_field`, `too_large`, …).
    pub reason: &'static str,
    /// What is wrong and how to fix it.
    pub message: String,
    /// For a rejection by the tenant's schema: every violation, with its JSON pointer into
    /// the event, the schema keyword and a message.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub violations: Vec<Violation>,
}

impl Rejection {
    fn from_error(index: Option<usize>, error: &EventError) -> Self {
        Self {
            index,
            path: error.path.clone(),
            reason: error.kind.reason(),
            message: error.to_string(),
            violations: Vec::new(),
        }
    }
}

/// The result of a request whose body could be read.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Accepted {
    /// Events appended.
    pub accepted: usize,
    /// Events skipped because their `messageId` was already appended within the dedup window.
    pub duplicates: usize,
    /// Events refused, each also in the dead-letter topic.
    pub rejected: Vec<Rejection>,
    /// Events of erased users, dropped without being stored.
    pub suppressed: usize,
}

/// Why a request was refused as a whole.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// No valid write key (401).
    #[error("{0}")]
    Unauthorized(#[from] crate::auth::KeyError),
    /// The body as a whole is invalid: not JSON, not a batch, too large (400 / 413).
    #[error("{0}")]
    Invalid(EventError),
    /// Another request is appending some of these message ids right now (429).
    #[error("another request with the same messageIds is being processed; retry shortly")]
    Busy,
    /// The key's request rate or daily event quota is spent (429).
    #[error("{0}")]
    Limited(Limited),
    /// Too many bytes in flight (503).
    #[error("the collector is at capacity ({0} bytes in flight); retry shortly")]
    Overloaded(usize),
    /// The log did not take the events (503); nothing acknowledged is lost, retry.
    #[error("events could not be stored: {0}; retry shortly")]
    Unavailable(#[from] LogError),
}

/// The collector: validates, deduplicates and appends events.
#[derive(Debug)]
pub struct Collector<L> {
    pub(crate) log: Arc<L>,
    keys: Arc<KeyDirectory>,
    limits: Limits,
    pub(crate) config: IngestConfig,
    events_partitions: u32,
    dead_letter_partitions: u32,
    pub(crate) dedup: Dedup,
    pub(crate) clock: Clock,
    /// Appends whose ids are not committed yet, for snapshots.
    pub(crate) appends: AppendGate,
    /// Where the dedup snapshot is kept (`None`: no snapshots).
    pub(crate) snapshot_path: Option<PathBuf>,
    pub(crate) snapshot_writing: Arc<parking_lot::Mutex<()>>,
    budget: Arc<Semaphore>,
    budget_bytes: usize,
    telemetry: IngestTelemetry,
    pub(crate) dedup_telemetry: DedupTelemetry,
    /// Per partition of the events topic, where the start-up read of the dedup window ended
    /// (see [`Collector::follow_peer_appends`]).
    pub(crate) restored_ends: parking_lot::Mutex<Vec<u64>>,
    /// The schema registry's validators (none: nothing is validated).
    validators: Option<Arc<SharedValidators>>,
    /// What is added to each accepted event's context (see [`crate::enrich`]).
    enricher: Arc<Enricher>,
    /// Users whose events are dropped before anything is stored.
    erased: Arc<ErasedUsers>,
}

/// Budget held while a request is processed.
#[derive(Debug)]
pub struct Reservation(#[allow(dead_code)] OwnedSemaphorePermit);

impl<L: Log> Collector<L> {
    /// A collector appending to `log`, whose events and dead-letter topics must exist. With a
    /// `snapshot_path`, it restores its dedup set from the snapshot there (and the log after
    /// it), and [`Collector::save_snapshot`] writes it.
    pub async fn new(
        log: Arc<L>,
        keys: Arc<KeyDirectory>,
        limits: Limits,
        config: IngestConfig,
        snapshot_path: Option<PathBuf>,
    ) -> Result<Self, LogError> {
        let partitions_of = |topic: &str| {
            let log = Arc::clone(&log);
            let topic = topic.to_owned();
            async move {
                let topics = log.describe(Some(&topic)).await?;
                Ok::<u32, LogError>(
                    topics
                        .first()
                        .map_or(0, |info| info.partitions.len() as u32),
                )
            }
        };
        let events_partitions = partitions_of(&config.events_topic).await?;
        let dead_letter_partitions = partitions_of(&config.dead_letter_topic).await?;
        if events_partitions == 0 {
            return Err(LogError::UnknownTopic(config.events_topic.clone()));
        }
        if dead_letter_partitions == 0 {
            return Err(LogError::UnknownTopic(config.dead_letter_topic.clone()));
        }
        let budget_bytes = config
            .max_in_flight_bytes
            .as_usize()
            .min(Semaphore::MAX_PERMITS);
        let clock = Clock::new();
        let window = config.dedup_window.get();
        // Everything of the window before this start is read back below; what cannot be is
        // subtracted from the coverage there.
        let since = clock
            .now()
            .saturating_sub(Millis::try_from(window.as_millis()).unwrap_or(Millis::MAX));
        let collector = Self {
            dedup: Dedup::new(window, config.dedup_capacity, since),
            clock,
            appends: AppendGate::default(),
            snapshot_path,
            snapshot_writing: Arc::default(),
            budget: Arc::new(Semaphore::new(budget_bytes)),
            budget_bytes,
            telemetry: IngestTelemetry::new(),
            dedup_telemetry: DedupTelemetry::new(),
            restored_ends: parking_lot::Mutex::new(Vec::new()),
            validators: None,
            enricher: Arc::new(Enricher::none()),
            erased: Arc::default(),
            log,
            keys,
            limits,
            config,
            events_partitions,
            dead_letter_partitions,
        };
        collector.remember_appended().await?;
        Ok(collector)
    }

    /// Remembers the ids appended within the dedup window before this start (see
    /// [`restore`]): from the snapshot and the log after it, reading at most half the dedup
    /// capacity of records; then reports how much of the window is covered.
    async fn remember_appended(&self) -> Result<(), LogError> {
        let budget = (self.config.dedup_capacity / 2 / self.events_partitions as usize) as u64;
        let restored = restore::restore(
            &self.dedup,
            &*self.log,
            &self.config.events_topic,
            self.snapshot_path.as_deref(),
            self.clock.now(),
            budget,
        )
        .await?;
        self.report_coverage(&restored);
        *self.restored_ends.lock() = restored.next_offsets;
        Ok(())
    }

    /// Enriches accepted events with `enricher` from now on.
    pub fn with_enricher(mut self, enricher: Arc<Enricher>) -> Self {
        self.enricher = enricher;
        self
    }

    /// Drops the events of the users in `erased` from now on.
    pub fn with_erased_users(mut self, erased: Arc<ErasedUsers>) -> Self {
        self.erased = erased;
        self
    }

    /// What is added to each accepted event's context.
    pub fn enricher(&self) -> &Enricher {
        &self.enricher
    }

    /// Validates events with the schema registry's `validators` from now on.
    pub fn with_validators(mut self, validators: Arc<SharedValidators>) -> Self {
        self.validators = Some(validators);
        self
    }

    /// The limits events are checked against.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The set of recently appended message ids.
    pub fn dedup(&self) -> &Dedup {
        &self.dedup
    }

    /// The collector's configuration.
    pub fn config(&self) -> &IngestConfig {
        &self.config
    }

    /// Reserves `bytes` of the in-flight budget, or refuses at once when it is spent.
    pub fn reserve(&self, bytes: usize) -> Result<Reservation, IngestError> {
        let wanted = bytes.clamp(1, self.budget_bytes) as u32;
        match Arc::clone(&self.budget).try_acquire_many_owned(wanted) {
            Ok(permit) => Ok(Reservation(permit)),
            Err(_) => {
                self.telemetry.overloaded.increment(1);
                Err(IngestError::Overloaded(
                    self.budget_bytes - self.budget.available_permits(),
                ))
            }
        }
    }

    /// Ingests one decoded request body. `endpoint` is the single-message type, `None` for a
    /// batch; `header_key` the write key from the `Authorization` header, if any; `client`
    /// the address the request came from, if known. The steps of the module docs, in order.
    pub async fn ingest(
        &self,
        endpoint: Option<EventType>,
        header_key: Option<String>,
        client: Option<IpAddr>,
        body: &[u8],
    ) -> Result<Accepted, IngestError> {
        let received_at = now_millis();
        self.telemetry.bytes.increment(body.len() as u64);
        let base = self.normalize_context("", received_at, endpoint);
        let parsed = match endpoint {
            None => normalize::parse_batch(body, &self.limits).map(Parsed::Batch),
            Some(_) => normalize::parse_message(body, &base).map(|m| Parsed::Single(Box::new(m))),
        };
        let (grant, tenant) = self.admit(header_key, &parsed, body)?;
        self.admitted(
            Some(&grant),
            tenant,
            endpoint,
            parsed,
            body,
            received_at,
            client,
        )
        .await
    }

    /// Whether `tenant` has a write key (events for a tenant without one are refused).
    pub fn takes_events_for(&self, tenant: &str) -> bool {
        self.keys.takes_events_for(tenant)
    }

    /// Ingests a batch body (`{"batch": [...]}`) read from a source topic for `tenant`, as a
    /// request of one of its write keys would be — limits, dead letters, dedup, append —
    /// without a key: no request rate or daily quota applies.
    pub async fn ingest_for_tenant(
        &self,
        tenant: &str,
        body: &[u8],
    ) -> Result<Accepted, IngestError> {
        let received_at = now_millis();
        self.telemetry.bytes.increment(body.len() as u64);
        let parsed = normalize::parse_batch(body, &self.limits).map(Parsed::Batch);
        self.admitted(
            None,
            Arc::from(tenant),
            None,
            parsed,
            body,
            received_at,
            None,
        )
        .await
    }

    /// The steps after admission: normalize, validate, enrich, claim ids, append, dead-letter.
    #[allow(clippy::too_many_arguments)]
    async fn admitted(
        &self,
        grant: Option<&Arc<Grant>>,
        tenant: Arc<str>,
        endpoint: Option<EventType>,
        parsed: Result<Parsed<'_>, EventError>,
        body: &[u8],
        received_at: Millis,
        client: Option<IpAddr>,
    ) -> Result<Accepted, IngestError> {
        let counters = self.telemetry.tenant(&tenant);
        let parsed = match parsed {
            Ok(parsed) => parsed,
            // A single message that is JSON but not a valid message is an event rejected like
            // one in a batch (same answer shape); only a body that is not JSON, or too large,
            // is refused as a whole.
            Err(error) if endpoint.is_some() && !error.kind.is_about_the_body() => {
                Parsed::Invalid(error)
            }
            Err(error) => {
                let rejection = Rejection::from_error(None, &error);
                self.telemetry.rejected(rejection.reason, 1);
                self.dead_letters(&tenant, received_at, endpoint, &[(rejection, body)])
                    .await?;
                return Err(IngestError::Invalid(error));
            }
        };
        let base = self.normalize_context(&tenant, received_at, endpoint);
        let Normalized {
            mut events,
            mut rejected,
        } = normalize_all(&parsed, &base, body)?;
        let suppressed = self.drop_erased(&tenant, &mut events);
        self.validate(&tenant, &mut events, &mut rejected);
        for normalized in &mut events {
            self.enricher.enrich(&mut normalized.event, client);
        }
        let Claimed {
            mut claims,
            fresh,
            duplicates,
        } = self.claim(events, &tenant)?;

        let accepted = fresh.len();
        if let Some(grant) = grant
            && let Err(limited) = grant.take_events(accepted as u64, received_at)
        {
            return Err(self.limited(grant, &tenant, limited));
        }
        let rejections: Vec<Rejection> = rejected
            .iter()
            .map(|(rejection, _)| rejection.clone())
            .collect();
        for rejection in &rejections {
            self.telemetry.rejected(rejection.reason, 1);
        }
        // The sender hears of every rejection, but an erased user's raw input is not kept.
        if !self.erased.is_empty() {
            rejected.retain(|(_, raw)| !self.names_erased(&tenant, raw));
        }
        // From before the append until its ids are committed, a snapshot waits for this request.
        let pass = self.appends.enter();
        let (appended, dead) = tokio::join!(
            self.append_events(fresh, received_at),
            self.dead_letters(&tenant, received_at, endpoint, &rejected)
        );
        claims.commit(appended.committed, self.clock.now());
        drop(pass);
        if let Some(error) = appended.error {
            if let Some(grant) = grant {
                grant.refund_events((accepted - appended.events) as u64, received_at);
            }
            return Err(error.into());
        }
        dead?;
        counters.accepted.increment(accepted as u64);
        counters.duplicates.increment(duplicates as u64);
        counters.suppressed.increment(suppressed as u64);
        Ok(Accepted {
            accepted,
            duplicates,
            rejected: rejections,
            suppressed,
        })
    }

    /// Whether a rejected message's `userId` or `anonymousId` (when it has them as strings)
    /// is erased.
    fn names_erased(&self, tenant: &str, raw: &[u8]) -> bool {
        let Ok(message) = serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(raw)
        else {
            return false;
        };
        let ids = ["userId", "anonymousId"]
            .into_iter()
            .filter_map(|field| message.get(field)?.as_str());
        self.erased.any_erased(tenant, ids)
    }

    /// Step 3a: the events of erased users (by user id or anonymous id) leave the request
    /// before anything of them is stored or counted; how many.
    fn drop_erased(&self, tenant: &str, events: &mut Vec<NormalizedEvent<'_>>) -> usize {
        let Some(erased) = self.erased.of_tenant(tenant) else {
            return 0;
        };
        let before = events.len();
        events.retain(|normalized| {
            let event = &normalized.event;
            let ids = [event.user_id.as_deref(), event.anonymous_id.as_deref()];
            !erased.any_erased(ids.into_iter().flatten())
        });
        before - events.len()
    }

    /// Step 3b: every normalized event asked of the tenant's schemas. Rejected ones move to
    /// `rejected` with their violations; kept invalid ones carry theirs in
    /// `schema_violations`. Both are counted by tenant and event.
    fn validate<'a>(
        &self,
        tenant: &str,
        events: &mut Vec<NormalizedEvent<'a>>,
        rejected: &mut Vec<(Rejection, &'a [u8])>,
    ) {
        let Some(validators) = &self.validators else {
            return;
        };
        let validators = validators.current();
        events.retain_mut(|normalized| {
            let event = &mut normalized.event;
            let payload = match event.kind {
                EventType::Identify | EventType::Group => event.traits.as_deref(),
                _ => event.properties.as_deref(),
            };
            let name = event.event.as_deref();
            // Event names come from clients: only those a schema names are labels.
            let label = || match validators.schema_id(tenant, event.kind, name) {
                Some(_) => name.unwrap_or(event.kind.as_str()).to_owned(),
                None => "(unknown)".to_owned(),
            };
            match validators.check(tenant, event.kind, name, payload) {
                Verdict::Pass => true,
                Verdict::Warn(violations) => {
                    self.telemetry.schema_violation(tenant, label(), "warn");
                    let json = serde_json::to_string(&violations).unwrap_or_default();
                    event.schema_violations = serde_json::value::RawValue::from_string(json)
                        .ok()
                        .map(Cow::Owned);
                    true
                }
                Verdict::Reject {
                    reason,
                    subject,
                    violations,
                } => {
                    self.telemetry.schema_violation(tenant, label(), "enforce");
                    let index = normalized.index;
                    let field = match event.kind {
                        EventType::Identify | EventType::Group => "traits",
                        _ => "properties",
                    };
                    let at = index.map_or(String::new(), |i| format!("batch[{i}]."));
                    let message = match &subject {
                        Some(subject) => format!(
                            "{} violation(s) of the schema of subject {subject:?}: {}",
                            violations.len(),
                            violations
                                .iter()
                                .map(|v| format!("{} ({}): {}", v.path, v.keyword, v.message))
                                .collect::<Vec<_>>()
                                .join("; ")
                        ),
                        None => violations
                            .first()
                            .map(|v| v.message.clone())
                            .unwrap_or_default(),
                    };
                    let rejection = Rejection {
                        index: Some(index.unwrap_or(0)),
                        path: if subject.is_some() {
                            format!("{at}{field}")
                        } else {
                            format!("{at}event")
                        },
                        reason,
                        message,
                        violations,
                    };
                    rejected.push((rejection, normalized.raw));
                    false
                }
            }
        });
        rejected.sort_by_key(|(rejection, _)| rejection.index);
    }

    /// What normalizing one request's messages starts from.
    fn normalize_context<'c>(
        &'c self,
        tenant: &'c str,
        received_at: Millis,
        endpoint: Option<EventType>,
    ) -> NormalizeContext<'c> {
        NormalizeContext {
            tenant,
            received_at,
            limits: &self.limits,
            endpoint,
            batch_sent_at: None,
            batch_context: None,
            index: None,
        }
    }

    /// Step 2: the write key (the header's, else the body's `writeKey`) resolved to its grant
    /// and tenant, and the request admitted under the key's request rate. The key of a body
    /// that is not a valid message or batch is still read, so that its sender hears what is
    /// wrong with it rather than that its key is missing.
    fn admit(
        &self,
        header_key: Option<String>,
        parsed: &Result<Parsed<'_>, EventError>,
        body: &[u8],
    ) -> Result<(Arc<Grant>, Arc<str>), IngestError> {
        let body_key = || match parsed {
            Ok(Parsed::Batch(batch)) => batch.write_key.as_deref().map(str::to_owned),
            Ok(Parsed::Single(message)) => message.write_key.as_deref().map(str::to_owned),
            Ok(Parsed::Invalid(_)) | Err(_) => serde_json::from_slice::<WriteKeyOnly<'_>>(body)
                .ok()
                .and_then(|only| only.write_key)
                .map(Cow::into_owned),
        };
        let key = header_key
            .or_else(body_key)
            .ok_or(crate::auth::KeyError::Missing);
        let grant = match key.and_then(|key| {
            self.keys
                .write_grant(&key)
                .ok_or(crate::auth::KeyError::Unknown)
        }) {
            Ok(grant) => grant,
            Err(error) => {
                self.telemetry.unauthorized.increment(1);
                return Err(error.into());
            }
        };
        let Some(tenant) = grant.tenant().cloned() else {
            self.telemetry.unauthorized.increment(1);
            return Err(crate::auth::KeyError::Unknown.into());
        };
        if let Err(limited) = grant.admit_request() {
            return Err(self.limited(&grant, &tenant, limited));
        }
        Ok((grant, tenant))
    }

    /// Step 4: claims the client-provided ids in the dedup set (generated ones are unique by
    /// construction); duplicates are counted and dropped, an id another request is still
    /// appending makes the whole request busy.
    fn claim<'e>(
        &self,
        events: Vec<NormalizedEvent<'e>>,
        tenant: &str,
    ) -> Result<Claimed<'_, 'e>, IngestError> {
        let now = self.clock.now();
        let mut claims = Claims::with_capacity(&self.dedup, events.len());
        let mut duplicates = 0;
        let mut fresh = Vec::with_capacity(events.len());
        for NormalizedEvent {
            event, client_id, ..
        } in events
        {
            let id = client_id.then(|| fingerprint(tenant, &event.message_id));
            match id.map(|id| claims.claim(id, now)) {
                None | Some(Claim::Claimed) => fresh.push((event, id)),
                Some(Claim::Duplicate) => duplicates += 1,
                Some(Claim::Busy) => {
                    self.telemetry.busy.increment(1);
                    return Err(IngestError::Busy);
                }
            }
        }
        Ok(Claimed {
            claims,
            fresh,
            duplicates,
        })
    }

    /// Counts a refusal by a key's limit.
    fn limited(&self, grant: &Grant, tenant: &str, limited: Limited) -> IngestError {
        self.telemetry.limited(tenant, grant.id(), limited.kind);
        IngestError::Limited(limited)
    }

    /// Appends events grouped by partition; reports which ids became durable. Each partition's
    /// keys and values are written into one buffer, and records are slices of it.
    async fn append_events(
        &self,
        events: Vec<(Event<'_>, Option<u128>)>,
        received_at: Millis,
    ) -> Appended {
        struct Group {
            buffer: Vec<u8>,
            spans: Vec<(Range<usize>, Range<usize>)>,
            ids: Vec<u128>,
        }
        let partitions = self.events_partitions;
        let mut groups: Vec<Group> = (0..partitions)
            .map(|_| Group {
                buffer: Vec::new(),
                spans: Vec::new(),
                ids: Vec::new(),
            })
            .collect();
        for (event, id) in events {
            let key = event.partition_key();
            let group = &mut groups[partition_for_key(key.as_bytes(), partitions) as usize];
            let key_start = group.buffer.len();
            group.buffer.extend_from_slice(key.as_bytes());
            let value_start = group.buffer.len();
            event.write_json(&mut group.buffer);
            group
                .spans
                .push((key_start..value_start, value_start..group.buffer.len()));
            group.ids.extend(id);
        }
        let groups = groups
            .into_iter()
            .enumerate()
            .filter(|(_, group)| !group.spans.is_empty())
            .map(|(partition, group)| {
                let buffer = Bytes::from(group.buffer);
                let records: Vec<Record> = group
                    .spans
                    .into_iter()
                    .map(|(key, value)| {
                        Record::new(Some(buffer.slice(key)), buffer.slice(value), received_at)
                    })
                    .collect();
                (partition, (records, group.ids))
            });
        let topic = &self.config.events_topic;
        let appends = groups.map(|(partition, (records, ids))| async move {
            let count = records.len();
            (
                self.log.append(topic, partition as u32, records).await,
                ids,
                count,
            )
        });
        let mut result = Appended {
            committed: Vec::new(),
            events: 0,
            error: None,
        };
        for (outcome, ids, count) in futures::future::join_all(appends).await {
            match outcome {
                Ok(_) => {
                    result.committed.extend(ids);
                    result.events += count;
                }
                Err(error) => {
                    tracing::warn!(%error, topic, "append failed; the client is told to retry");
                    result.error.get_or_insert(error);
                }
            }
        }
        result
    }

    /// Appends rejected input, with its reason, to the dead-letter topic.
    async fn dead_letters(
        &self,
        tenant: &str,
        received_at: Millis,
        endpoint: Option<EventType>,
        rejected: &[(Rejection, &[u8])],
    ) -> Result<(), LogError> {
        if rejected.is_empty() {
            return Ok(());
        }
        let endpoint = endpoint.map_or("batch", EventType::as_str);
        let keep = self.limits.max_event_bytes.as_usize();
        let records = rejected
            .iter()
            .map(|(rejection, raw)| {
                let truncated = raw.len() > keep;
                let raw = String::from_utf8_lossy(&raw[..raw.len().min(keep)]);
                let letter = serde_json::json!({
                    "tenant": tenant,
                    "received_at": received_at,
                    "endpoint": format!("/v1/{endpoint}"),
                    "index": rejection.index,
                    "path": rejection.path,
                    "reason": rejection.reason,
                    "message": rejection.message,
                    "violations": rejection.violations,
                    "raw": raw,
                    "raw_truncated": truncated,
                });
                Record::new(
                    Some(Bytes::copy_from_slice(tenant.as_bytes())),
                    serde_json::to_vec(&letter).unwrap_or_default(),
                    received_at,
                )
            })
            .collect();
        let partition = partition_for_key(tenant.as_bytes(), self.dead_letter_partitions);
        self.log
            .append(&self.config.dead_letter_topic, partition, records)
            .await
            .map(|_| ())
    }
}

/// Step 3: every message of the request normalized for `base.tenant`; the invalid ones as
/// rejections with their raw text (for the dead letters).
fn normalize_all<'a>(
    parsed: &'a Parsed<'a>,
    base: &NormalizeContext<'a>,
    body: &'a [u8],
) -> Result<Normalized<'a>, IngestError> {
    let mut events = Vec::new();
    let mut rejected = Vec::new();
    match parsed {
        Parsed::Single(message) => match normalize::normalize_message(message, base) {
            Ok(event) => events.push(NormalizedEvent {
                event,
                client_id: has_id(message),
                index: None,
                raw: body,
            }),
            Err(error) => rejected.push((Rejection::from_error(Some(0), &error), body)),
        },
        Parsed::Invalid(error) => {
            rejected.push((Rejection::from_error(Some(0), error), body));
        }
        Parsed::Batch(batch) => {
            let sent_at = normalize::parse_sent_at(batch.sent_at.as_deref(), "sentAt")
                .map_err(IngestError::Invalid)?;
            events.reserve(batch.batch.len());
            for (index, raw) in batch.batch.iter().enumerate() {
                let ctx = NormalizeContext {
                    batch_sent_at: sent_at,
                    batch_context: batch.context,
                    index: Some(index),
                    ..*base
                };
                let raw = raw.get().as_bytes();
                let normalized = normalize::parse_message(raw, &ctx).and_then(|message| {
                    Ok((
                        normalize::normalize_message(&message, &ctx)?,
                        has_id(&message),
                    ))
                });
                match normalized {
                    Ok((event, client_id)) => events.push(NormalizedEvent {
                        event,
                        client_id,
                        index: Some(index),
                        raw,
                    }),
                    Err(error) => rejected.push((Rejection::from_error(Some(index), &error), raw)),
                }
            }
        }
    }
    Ok(Normalized { events, rejected })
}

/// One valid message of a request.
struct NormalizedEvent<'a> {
    event: Event<'a>,
    /// Whether its messageId came from the client.
    client_id: bool,
    /// Its place in the batch (`None`: a single-message request).
    index: Option<usize>,
    /// Its text, for a dead letter.
    raw: &'a [u8],
}

/// A request's messages after step 3.
struct Normalized<'a> {
    events: Vec<NormalizedEvent<'a>>,
    rejected: Vec<(Rejection, &'a [u8])>,
}

/// A request's events after step 4: the ids it holds, and the events to append with their
/// client id's fingerprint.
struct Claimed<'d, 'e> {
    claims: Claims<'d>,
    fresh: Vec<(Event<'e>, Option<u128>)>,
    duplicates: usize,
}

enum Parsed<'a> {
    Single(Box<RawMessage<'a>>),
    /// A single message that is JSON but not a valid message.
    Invalid(EventError),
    Batch(sluice_core::segment::RawBatch<'a>),
}

struct Appended {
    committed: Vec<u128>,
    /// Events appended.
    events: usize,
    error: Option<LogError>,
}

fn has_id(message: &RawMessage<'_>) -> bool {
    message
        .message_id
        .as_ref()
        .is_some_and(|id| !id.0.is_empty())
}
