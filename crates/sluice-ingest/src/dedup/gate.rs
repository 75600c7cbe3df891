//! Lets a snapshot wait until every append begun before a moment has committed its ids.
//!
//! A snapshot records the events topic's end offsets, then the remembered ids. A record below
//! those offsets was appended before they were read, but the request that appended it commits
//! its id a moment later: the snapshot must wait for such requests, or a retry of that record
//! after a restart would not be a duplicate. Requests hold a [`Pass`] from before their append
//! until their ids are committed; [`AppendGate::drain`] (called after the offsets were read)
//! waits until every pass taken before it was called is returned. New requests never wait:
//! passes are counted per epoch in a few slots, a drain moves to the next epoch and waits only
//! for the slots of earlier epochs.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::SeqCst};
use tokio::sync::Notify;

/// Slots of epochs: the current one and two before it, so that a drain cancelled midway (at
/// shutdown) leaves the next drain correct: it also waits for the stragglers of that one.
const SLOTS: usize = 3;

/// Counts appends in flight per epoch.
#[derive(Debug, Default)]
pub struct AppendGate {
    epoch: AtomicU64,
    in_flight: [AtomicUsize; SLOTS],
    drained: Notify,
}

/// Held by a request from before its append until its ids are committed or released.
#[derive(Debug)]
pub struct Pass<'a> {
    gate: &'a AppendGate,
    slot: usize,
}

impl AppendGate {
    /// Takes a pass (a few atomic operations; never waits).
    pub fn enter(&self) -> Pass<'_> {
        loop {
            let epoch = self.epoch.load(SeqCst);
            let slot = (epoch % SLOTS as u64) as usize;
            self.in_flight[slot].fetch_add(1, SeqCst);
            // If the epoch moved meanwhile, a drain may already have seen this slot empty:
            // count in the new epoch instead.
            if self.epoch.load(SeqCst) == epoch {
                return Pass { gate: self, slot };
            }
            self.leave(slot);
        }
    }

    fn leave(&self, slot: usize) {
        if self.in_flight[slot].fetch_sub(1, SeqCst) == 1 {
            self.drained.notify_waiters();
        }
    }

    /// Waits until every pass taken before this call is returned. One drain at a time (the
    /// snapshot task).
    pub async fn drain(&self) {
        let new = (self.epoch.fetch_add(1, SeqCst) + 1) % SLOTS as u64;
        for slot in (0..SLOTS).filter(|slot| *slot as u64 != new) {
            loop {
                let notified = self.drained.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                if self.in_flight[slot].load(SeqCst) == 0 {
                    break;
                }
                notified.await;
            }
        }
    }
}

impl Drop for Pass<'_> {
    fn drop(&mut self) {
        self.gate.leave(self.slot);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[tokio::test]
    async fn a_drain_waits_for_earlier_passes_but_not_for_later_ones() {
        let gate = Arc::new(AppendGate::default());
        let early = gate.enter();
        let drain = tokio::spawn({
            let gate = Arc::clone(&gate);
            async move { gate.drain().await }
        });
        // A pass taken after the drain began neither waits nor holds the drain.
        tokio::task::yield_now().await;
        let later_gate = Arc::clone(&gate);
        let later = later_gate.enter();
        tokio::time::timeout(Duration::from_millis(50), async {
            while !drain.is_finished() {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect_err("the drain waits for the early pass");
        drop(early);
        tokio::time::timeout(Duration::from_secs(10), drain)
            .await
            .expect("the drain ends once the early pass is returned")
            .unwrap();
        drop(later);
        tokio::time::timeout(Duration::from_secs(10), gate.drain())
            .await
            .expect("nothing in flight: the next drain ends at once");
    }
}
