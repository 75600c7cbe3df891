//! Retries that reach another node of a cluster: each node remembers the ids the others append.
//!
//! Nodes on one Kafka cluster share the events topic, but each keeps its own dedup set. So
//! that a client retrying a batch through another node (a load balancer, a dead node) creates
//! no duplicate, every node follows every partition of the events topic from where its start-up
//! read of the window ended, and remembers the id of each record it reads — its own appends
//! too, which it remembers already. A retry is then recognized on any node that has read the
//! original's record: within one fetch of it being acknowledged (milliseconds). A retry sent
//! while the original is still being appended on another node (before its 200) can still be
//! stored twice; clients retry after an error or a timeout, later than that.
//!
//! A partition that cannot be read is tried again every second; what retention removed before
//! it was read is skipped.

use super::fingerprint;
use crate::collector::Collector;
use sluice_core::Event;
use sluice_log::{Log, LogError, ReadBuffer, ReadOptions};
use std::future::Future;
use std::time::Duration;

/// How long a follow read waits for new records.
const FOLLOW: ReadOptions = ReadOptions {
    max_bytes: 1 << 20,
    max_wait: Duration::from_millis(500),
};

impl<L: Log> Collector<L> {
    /// Remembers the ids of every record appended to the events topic after the start-up
    /// read, by any node, until `stop`.
    pub async fn follow_peer_appends(&self, stop: impl Future<Output = ()>) {
        let starts = self.restored_ends.lock().clone();
        let follows = starts
            .into_iter()
            .enumerate()
            .map(|(partition, from)| self.follow_partition(partition as u32, from));
        tokio::select! {
            () = stop => {}
            _ = futures::future::join_all(follows) => {}
        }
    }

    async fn follow_partition(&self, partition: u32, mut offset: u64) {
        let topic = &self.config.events_topic;
        let mut buffer = ReadBuffer::new();
        let mut failing = false;
        loop {
            match self
                .log
                .read_into(topic, partition, offset, FOLLOW, &mut buffer)
                .await
            {
                Ok(()) => {
                    failing = false;
                    let now = self.clock.now();
                    for record in buffer.iter() {
                        if let Some((message_id, tenant)) = Event::stored_ids(record.value) {
                            self.dedup.remember(fingerprint(&tenant, &message_id), now);
                        }
                    }
                    offset = buffer.next_offset(offset);
                }
                Err(LogError::OffsetOutOfRange { start, end, .. }) => {
                    offset = if offset < start { start } else { end };
                }
                Err(error) => {
                    if !failing {
                        tracing::warn!(topic, partition, offset, %error, "cannot follow the other nodes' appends; retries of their events reaching this node may be stored twice until it can (trying every second)");
                        failing = true;
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }
}
