//! The Kafka side of [`crate::group`]: one consumer per process joins the group on the source
//! topic with the cooperative-sticky assignor, so a rebalance moves only the partitions that
//! must move and the others keep running.
//!
//! The member runs on a thread of its own that polls the consumer, which is what serves the
//! group's heartbeats and rebalance callbacks. It never reads records (the pipelines read with
//! their own consumers, at the offsets the store commits): every partition is paused as soon
//! as it is assigned, and no offset is committed to Kafka.
//!
//! A revocation blocks the callback until the process has stopped the partitions (bounded by
//! [`REVOKE_TIMEOUT`]): librdkafka hands them over only once the callback returns.

use super::{Inner, kafka_error};
use crate::group::{GroupEvent, Member, Membership, Rejoin};
use crate::{LogError, Result};
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::{ClientConfig, TopicPartitionList};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;

/// How long a revocation waits for the process to stop the partitions (last checkpoints
/// included) before it lets them go anyway; the store's epochs fence out what comes later.
const REVOKE_TIMEOUT: Duration = Duration::from_secs(30);

/// How long one poll of the member waits: the longest a stop waits for the thread.
const POLL: Duration = Duration::from_millis(100);

struct GroupContext {
    topic: String,
    events: mpsc::UnboundedSender<GroupEvent>,
}

impl ClientContext for GroupContext {}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(list) = rebalance else {
            return;
        };
        let partitions = partitions_of(list, &self.topic);
        if partitions.is_empty() {
            return;
        }
        let lost = consumer.assignment_lost();
        tracing::info!(topic = %self.topic, ?partitions, lost, "partitions leave this node");
        let (done, stopped) = std::sync::mpsc::sync_channel(1);
        let revoked = GroupEvent::Revoked {
            partitions,
            lost,
            done,
        };
        if self.events.send(revoked).is_err() {
            return;
        }
        if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
            stopped.recv_timeout(REVOKE_TIMEOUT)
        {
            tracing::warn!(topic = %self.topic, timeout = ?REVOKE_TIMEOUT, "revoked partitions did not stop in time; they are handed over anyway (the store fences out late commits)");
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(list) => {
                // This consumer only holds the assignment; the pipelines read the records.
                if let Err(error) = consumer.pause(list) {
                    tracing::warn!(topic = %self.topic, %error, "could not pause assigned partitions (the group member may fetch records it ignores)");
                }
                let partitions = partitions_of(list, &self.topic);
                if !partitions.is_empty() {
                    tracing::info!(topic = %self.topic, ?partitions, "partitions assigned to this node");
                    let _ = self.events.send(GroupEvent::Assigned(partitions));
                }
            }
            Rebalance::Error(error) => {
                tracing::warn!(topic = %self.topic, %error, "consumer group rebalance failed; it is tried again");
            }
            Rebalance::Revoke(_) => {}
        }
    }
}

fn partitions_of(list: &TopicPartitionList, topic: &str) -> Vec<u32> {
    let mut partitions: Vec<u32> = list
        .elements_for_topic(topic)
        .iter()
        .filter_map(|element| u32::try_from(element.partition()).ok())
        .collect();
    partitions.sort_unstable();
    partitions
}

/// Joins `group` (prefixed) on `topic` (prefixed).
pub(super) fn join(inner: &Inner, topic: &str, group: &str) -> Result<Membership> {
    let topic = format!("{}{topic}", inner.prefix);
    let group = format!("{}{group}", inner.prefix);
    let (events, events_rx) = mpsc::unbounded_channel();
    let context = GroupContext {
        topic: topic.clone(),
        events,
    };
    let session_timeout = inner.session_timeout.as_millis().to_string();
    let mut config = ClientConfig::clone(&inner.client);
    if config.get("partition.assignment.strategy").is_none() {
        config.set("partition.assignment.strategy", "cooperative-sticky");
    }
    let consumer: BaseConsumer<GroupContext> = config
        .set("group.id", &group)
        .set("session.timeout.ms", &session_timeout)
        .set(
            "heartbeat.interval.ms",
            (inner.session_timeout.as_millis() / 5).max(100).to_string(),
        )
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "latest")
        .create_with_context(context)
        .map_err(|e| kafka_error(&inner.brokers, "joining the consumer group", e))?;
    consumer
        .subscribe(&[&topic])
        .map_err(|e| kafka_error(&inner.brokers, "joining the consumer group", e))?;
    let stop = Arc::new(AtomicBool::new(false));
    let rejoin = Rejoin::default();
    let thread = {
        let stop = Arc::clone(&stop);
        let rejoin = rejoin.clone();
        let (brokers, group) = (inner.brokers.clone(), group.clone());
        std::thread::Builder::new()
            .name("sluice-group".into())
            .spawn(move || {
                let mut failing = false;
                while !stop.load(Ordering::Acquire) {
                    if rejoin.take() {
                        tracing::warn!(%group, "leaving and joining the consumer group again, for a new round of assignment");
                        consumer.unsubscribe();
                        if let Err(error) = consumer.subscribe(&[&topic]) {
                            tracing::warn!(%group, %error, "could not join the consumer group again; trying at the next request");
                        }
                    }
                    match consumer.poll(POLL) {
                        Some(Err(error)) if !failing => {
                            tracing::warn!(%group, %brokers, %error, "consumer group member cannot reach the brokers; it keeps trying");
                            failing = true;
                        }
                        Some(Ok(_)) => failing = false,
                        _ => {}
                    }
                }
                // Dropping the consumer leaves the group (revoking what it holds first).
                drop(consumer);
            })
            .map_err(|error| LogError::Unavailable {
                what: "starting the consumer group member's thread".into(),
                reason: error.to_string(),
            })?
    };
    Ok(Membership {
        group,
        events: events_rx,
        member: Member::new(stop, thread),
        rejoin,
        session_timeout: inner.session_timeout,
    })
}
