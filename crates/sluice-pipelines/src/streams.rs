//! Derived streams (`CREATE STREAM`): pipelines whose operator emits records into a topic of
//! their own, exactly once, and the read-committed view their readers take of that topic.
//!
//! The protocol:
//! 1. A stream's pipeline partition *p* reads source partition *p* and appends the records it
//!    makes to partition *p* of the stream's topic as it goes (the partition task does, batch
//!    by batch, under the log's ack mode); each checkpoint carries the offset ranges appended
//!    since the previous one.
//! 2. The checkpoint's commit stores those ranges in the same store transaction as the
//!    source offset, fenced by the owner's epoch (`stream_ranges`, see
//!    [`Checkpoints::stream_ranges`](sluice_store::roles::Checkpoints::stream_ranges)). A
//!    range that starts where the last ended extends it.
//! 3. A crash between an append and its commit leaves records in the topic that no range
//!    covers. The next owner resumes from the committed source offset and appends them again,
//!    after them: the orphans stay in the topic, in a gap between two ranges. An owner fenced
//!    out while it still appends (a paused cluster node) adds orphans too, since its commit is
//!    refused; on Kafka its records could also land between the records of one of the new
//!    owner's appends, whose range is taken as consecutive (see ARCHITECTURE.md: noticed, not
//!    handled).
//! 4. Readers (metrics and streams `FROM` the stream) read inside the committed ranges only
//!    ([`StoreRanges`]): below the last committed end, skipping the gaps. So every derived
//!    record counts once, whatever the kills, and the records a reader sees are exactly those
//!    of committed checkpoints: the same events in the same order, whatever the output of an
//!    attempt that crashed was.
//!
//! Derived records become visible to readers one checkpoint after their events
//! (`store.checkpoint-interval`, 1 s by default).

use crate::PipelineError;
use sluice_log::{Log, TopicSpec};
use sluice_store::StoreBackend;
use sluice_store::error::StoreError;
use sluice_stream::plan::{MetricPlan, Output, Source};
use sluice_stream::sql::MetricDefaults;
use sluice_stream::task::{Committed, RangesFuture};

/// Committed ranges read per store query by a reader that has used up those it knew.
const RANGES_PER_READ: u32 = 64;

/// A derived stream's committed ranges, read from the store.
#[derive(Debug)]
pub struct StoreRanges {
    /// The store its writers commit to.
    pub store: StoreBackend,
    /// The stream (its topic).
    pub stream: String,
}

impl Committed for StoreRanges {
    fn ranges(&self, partition: u32, from: u64) -> RangesFuture<'_> {
        Box::pin(async move {
            self.store
                .stream_ranges(&self.stream, partition, from, RANGES_PER_READ)
                .await
                .map_err(|error| error.to_string())
        })
    }
}

/// The end of the last committed range of each partition of `stream` (as many as `starts`),
/// or `starts[p]` where none is: how far a reader can read now.
pub(crate) async fn committed_ends(
    store: &StoreBackend,
    stream: &str,
    starts: &[u64],
) -> Result<Vec<u64>, PipelineError> {
    let mut ends = Vec::with_capacity(starts.len());
    for (partition, &start) in starts.iter().enumerate() {
        let end = committed_end(store, stream, partition as u32).await?;
        ends.push(end.unwrap_or(start));
    }
    Ok(ends)
}

/// The end of the last committed range of one partition of `stream` (`None`: nothing
/// committed yet).
pub async fn committed_end(
    store: &StoreBackend,
    stream: &str,
    partition: u32,
) -> Result<Option<u64>, StoreError> {
    let mut end = None;
    loop {
        let page = store
            .stream_ranges(stream, partition, end.unwrap_or(0), RANGES_PER_READ)
            .await?;
        if let Some(&(_, last)) = page.last() {
            end = Some(last);
        }
        if page.len() < RANGES_PER_READ as usize {
            return Ok(end);
        }
    }
}

/// Whether the store defines `name` as a derived stream (or `name` is an identity's profile
/// changes, `<identity>.changes`).
pub async fn is_stored_stream(
    store: &StoreBackend,
    name: &str,
    defaults: &MetricDefaults,
) -> Result<bool, StoreError> {
    let changes_of = name.strip_suffix(sluice_stream::identity::CHANGES_SUFFIX);
    Ok(store.metrics().await?.iter().any(|record| {
        let parsed = || sluice_stream::sql::parse_metric(&record.sql, defaults);
        (record.name == name && parsed().is_ok_and(|plan| plan.is_stream()))
            || (Some(record.name.as_str()) == changes_of
                && parsed().is_ok_and(|plan| plan.output == Output::Identity))
    }))
}

/// Creates the topic of `plan`'s stream, and of the stream it reads, if missing: with the
/// events topic's partition count, so source partition *p* writes derived partition *p*.
pub(crate) async fn ensure_topics<L: Log>(
    log: &L,
    events: &str,
    plan: &MetricPlan,
) -> Result<(), PipelineError> {
    let partitions = log
        .describe(Some(events))
        .await?
        .first()
        .map_or(0, |topic| topic.partitions.len() as u32);
    let mut topics: Vec<String> = plan
        .is_stream()
        .then(|| plan.name.clone())
        .into_iter()
        .collect();
    if plan.output == Output::Identity {
        topics.push(sluice_stream::identity::changes_topic(&plan.name));
    }
    if let Source::Stream(name) = &plan.source {
        topics.push(name.clone());
    }
    for topic in &topics {
        log.create_topic(TopicSpec::new(topic, partitions.max(1)))
            .await?;
    }
    Ok(())
}

/// `plans` (name, source) in an order where each comes after the stream it reads, when that
/// stream is among them; plans reading a stream that is not, or a cycle, keep their place at
/// the end.
pub(crate) fn in_dependency_order<T>(plans: Vec<(T, String, Source)>) -> Vec<T> {
    let mut pending = plans;
    let mut done: Vec<String> = Vec::new();
    let mut ordered = Vec::with_capacity(pending.len());
    loop {
        let names: Vec<String> = pending.iter().map(|(_, name, _)| name.clone()).collect();
        let (ready, rest): (Vec<_>, Vec<_>) =
            pending
                .into_iter()
                .partition(|(_, _, source)| match source {
                    Source::Events => true,
                    Source::Stream(stream) => done.contains(stream) || !names.contains(stream),
                });
        if ready.is_empty() {
            ordered.extend(rest.into_iter().map(|(item, _, _)| item));
            return ordered;
        }
        for (item, name, _) in ready {
            done.push(name);
            ordered.push(item);
        }
        pending = rest;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_come_after_the_streams_they_read() {
        let stream = |name: &str| Source::Stream(name.into());
        let plans = vec![
            ("a_metric", "a_metric".to_owned(), stream("orders")),
            ("big", "big".to_owned(), stream("orders")),
            ("big_count", "big_count".to_owned(), stream("big")),
            ("orders", "orders".to_owned(), Source::Events),
            ("other", "other".to_owned(), stream("gone")),
        ];
        assert_eq!(
            in_dependency_order(plans),
            ["orders", "other", "a_metric", "big", "big_count"]
        );
    }
}
