//! A partition's event-time clock and the watermarks derived from it. Pure: processing time
//! comes in with each message, so tests drive it deterministically.
//!
//! - The clock is the newest event time seen in the partition.
//! - Each metric's watermark is the clock minus the metric's out-of-orderness: the engine
//!   assumes no event older than that will arrive. A window `[start, end)` fires when the
//!   watermark reaches `end`, and closes when it reaches `end + allowed_lateness`.
//! - **Idleness**: when no event arrived for `idle_timeout` of processing time, the clock
//!   advances with processing time from where it stood when the last event arrived
//!   (`clock = clock_then + (now − last_event_at)`), so windows of a quiet partition still
//!   close. A replay of old events is not disturbed: only the time *since the last event*
//!   counts, not the distance between event time and wall time.

use sluice_core::time::Millis;

/// The event-time clock of one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventClock {
    time: Option<Millis>,
    last_data_at: Option<Millis>,
    time_at_last_data: Millis,
    idle_timeout: Millis,
}

impl EventClock {
    /// A clock that has seen nothing.
    pub fn new(idle_timeout: Millis) -> EventClock {
        EventClock {
            time: None,
            last_data_at: None,
            time_at_last_data: Millis::MIN,
            idle_timeout,
        }
    }

    /// A clock restored at processing time `now` to `time`; it counts as having just seen an
    /// event, so idleness is measured from the restart.
    pub fn restored(idle_timeout: Millis, time: Option<Millis>, now: Millis) -> EventClock {
        let mut clock = EventClock::new(idle_timeout);
        clock.time = time;
        if let Some(time) = time {
            clock.last_data_at = Some(now);
            clock.time_at_last_data = time;
        }
        clock
    }

    /// Records an event time.
    #[inline]
    pub fn observe(&mut self, event_time: Millis) {
        if self.time.is_none_or(|time| event_time > time) {
            self.time = Some(event_time);
        }
    }

    /// Records that events arrived at processing time `now` (after observing them).
    pub fn arrived(&mut self, now: Millis) {
        if let Some(time) = self.time {
            self.last_data_at = Some(now);
            self.time_at_last_data = time;
        }
    }

    /// Advances the clock if the partition has been idle; returns whether it moved.
    pub fn tick(&mut self, now: Millis) -> bool {
        let Some(last) = self.last_data_at else {
            return false;
        };
        let idle = now.saturating_sub(last);
        if idle < self.idle_timeout {
            return false;
        }
        let advanced = self.time_at_last_data.saturating_add(idle);
        if self.time.is_some_and(|time| advanced > time) {
            self.time = Some(advanced);
            return true;
        }
        false
    }

    /// The clock: the newest event time (advanced while idle); `None` before any event.
    pub fn time(&self) -> Option<Millis> {
        self.time
    }

    /// The watermark for an out-of-orderness; `Millis::MIN` before any event.
    #[inline]
    pub fn watermark(&self, out_of_orderness: Millis) -> Millis {
        self.time
            .map_or(Millis::MIN, |time| time.saturating_sub(out_of_orderness))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_watermark_trails_the_newest_event_time() {
        let mut clock = EventClock::new(5_000);
        assert_eq!(clock.watermark(10_000), Millis::MIN);
        clock.observe(100_000);
        clock.observe(90_000);
        assert_eq!(clock.watermark(10_000), 90_000);
        clock.observe(120_000);
        assert_eq!(clock.watermark(10_000), 110_000);
        assert_eq!(clock.watermark(0), 120_000);
    }

    #[test]
    fn an_idle_partition_advances_with_processing_time() {
        let mut clock = EventClock::new(5_000);
        assert!(!clock.tick(1_000_000), "nothing seen: nothing to advance");
        clock.observe(100_000);
        clock.arrived(1_000_000);
        assert!(!clock.tick(1_004_999), "not idle yet");
        assert_eq!(clock.time(), Some(100_000));
        assert!(clock.tick(1_005_000));
        assert_eq!(clock.time(), Some(105_000));
        assert!(clock.tick(1_060_000));
        assert_eq!(clock.time(), Some(160_000));
        // New events reset idleness; an old event does not move the clock back.
        clock.observe(150_000);
        clock.arrived(1_061_000);
        assert_eq!(clock.time(), Some(160_000));
        assert!(!clock.tick(1_062_000));
        assert!(clock.tick(1_066_000));
        assert_eq!(clock.time(), Some(165_000));
    }

    #[test]
    fn a_restored_clock_measures_idleness_from_the_restart() {
        let mut clock = EventClock::restored(5_000, Some(100_000), 2_000_000);
        assert_eq!(clock.watermark(1_000), 99_000);
        assert!(!clock.tick(2_004_000));
        assert!(clock.tick(2_010_000));
        assert_eq!(clock.time(), Some(110_000));
        let empty = EventClock::restored(5_000, None, 0);
        assert_eq!(empty.time(), None);
    }
}
