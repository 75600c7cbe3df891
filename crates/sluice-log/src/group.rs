//! Membership in a group of processes that share a topic's partitions: which partitions this
//! process works on, told as they move.
//!
//! The file log belongs to one process, which works on every partition, so it has no group.
//! On Kafka, the nodes of a cluster join one consumer group on the source topic (see
//! `kafka::group`): the brokers' group protocol assigns each partition to one member, and moves
//! partitions when a member joins, leaves or stops answering.
//!
//! The protocol between the group and the process:
//! 1. [`GroupEvent::Assigned`]: the partitions are this process's from now on (added to those
//!    it has). It starts working on them.
//! 2. [`GroupEvent::Revoked`]: the partitions are leaving. The process stops working on them —
//!    after a last checkpoint, unless `lost` says another member may own them already — and
//!    then answers through `done` (or drops it). The group waits for that answer (up to a
//!    bound) before it lets the partitions go, so the next owner starts where this one
//!    stopped rather than redoing what it did since its last checkpoint.
//!
//! The group is not what keeps results exact: an owner that stopped answering (a pause past
//! the session timeout) may still believe it owns a partition when the next one starts. The
//! store's epochs fence it out (see `sluice-pipelines`); the group only keeps such overlaps
//! rare and short.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::mpsc;

/// How long leaving the group may take at shutdown.
pub const LEAVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// A change of the partitions this process works on.
#[derive(Debug)]
pub enum GroupEvent {
    /// These partitions are this process's now, besides those it had.
    Assigned(Vec<u32>),
    /// These partitions leave this process.
    Revoked {
        /// The partitions.
        partitions: Vec<u32>,
        /// The group lost them (this process stopped answering for too long): another member
        /// may own them already, so a last checkpoint would be fenced out anyway.
        lost: bool,
        /// Answer (or drop) once the work on them has stopped.
        done: std::sync::mpsc::SyncSender<()>,
    },
}

/// This process's membership of a group: its changes, and the member that leaves the group
/// when this is dropped.
pub struct Membership {
    /// The group's name, for logs and the status.
    pub group: String,
    /// The changes, in order.
    pub events: mpsc::UnboundedReceiver<GroupEvent>,
    /// The member, which leaves the group when told to or dropped.
    pub member: Member,
    /// Asks the member to leave and join again.
    pub rejoin: Rejoin,
    /// How long a member may be silent before the group moves its partitions.
    pub session_timeout: std::time::Duration,
}

/// Asks a group member to leave the group and join it again, which starts a new round of
/// assignment among every member. A repair: when a partition makes no progress while no member
/// seems to own it (a member that died was not noticed by every other, as happens with some
/// Kafka-compatible brokers), a fresh round gives it an owner.
#[derive(Debug, Clone, Default)]
pub struct Rejoin(pub(crate) Arc<AtomicBool>);

impl Rejoin {
    /// Asks for a rejoin (the member does it at its next poll).
    pub fn request(&self) {
        self.0.store(true, Ordering::Release);
    }

    /// Whether one was asked for since the last call (and clears it).
    #[cfg_attr(not(feature = "kafka"), allow(dead_code))]
    pub(crate) fn take(&self) -> bool {
        self.0.swap(false, Ordering::AcqRel)
    }
}

/// The part of a group membership that runs on its own thread (the member's heartbeats).
#[derive(Debug)]
pub struct Member {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Member {
    #[cfg_attr(not(feature = "kafka"), allow(dead_code))]
    pub(crate) fn new(stop: Arc<AtomicBool>, thread: std::thread::JoinHandle<()>) -> Member {
        Member {
            stop,
            thread: Some(thread),
        }
    }

    /// Leaves the group, and returns once the other members were told (partitions it still
    /// holds are revoked first, through the events, if their receiver still listens), or after
    /// [`LEAVE_TIMEOUT`] if the brokers do not answer (the others then notice the session
    /// timing out).
    pub async fn leave(mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            let joined = tokio::task::spawn_blocking(move || thread.join());
            if tokio::time::timeout(LEAVE_TIMEOUT, joined).await.is_err() {
                tracing::warn!(timeout = ?LEAVE_TIMEOUT, "the consumer group member did not leave in time (are the brokers down?); the group notices when its session times out");
            }
        }
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        // The thread leaves the group by itself; nobody waits for it.
        self.stop.store(true, Ordering::Release);
    }
}

impl std::fmt::Debug for Membership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Membership")
            .field("group", &self.group)
            .finish_non_exhaustive()
    }
}
