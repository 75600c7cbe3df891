//! Window assignment: which windows an event time belongs to. Pure functions.
//!
//! A window is the half-open interval `[start, end)` of event time in milliseconds.
//! Tumbling and hopping windows are aligned to the Unix epoch (a 1-minute window starts on a
//! whole minute, UTC). A session window starts as `[t, t + gap)` around each event; sessions
//! of one group key that overlap are merged ([`Window::overlaps`], [`Window::cover`]).

use crate::plan::WindowSpec;
use sluice_core::time::Millis;
use std::fmt;

/// The most windows one event may fall into (bounds the work per event for `HOP`).
pub const MAX_WINDOWS_PER_EVENT: usize = 100;

/// The latest event time the engine accepts: 9999-12-31T23:59:59.999Z. Together with the
/// 366-day cap on window sizes this keeps every window bound far from `i64` overflow.
pub const MAX_EVENT_TIME: Millis = 253_402_300_799_999;

/// An interval of event time, `[start, end)`, in epoch milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Window {
    /// First millisecond inside the window.
    pub start: Millis,
    /// First millisecond after the window.
    pub end: Millis,
}

impl Window {
    /// Whether `time` falls inside.
    pub fn contains(&self, time: Millis) -> bool {
        self.start <= time && time < self.end
    }

    /// Whether the two windows share at least one millisecond.
    pub fn overlaps(&self, other: &Window) -> bool {
        self.start < other.end && other.start < self.end
    }

    /// The smallest window covering both.
    pub fn cover(&self, other: &Window) -> Window {
        Window {
            start: self.start.min(other.start),
            end: self.end.max(other.end),
        }
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "[{}, {})",
            sluice_core::time::format_millis(self.start),
            sluice_core::time::format_millis(self.end)
        )
    }
}

/// The tumbling window of length `size` holding `time`.
pub fn tumble(time: Millis, size: Millis) -> Window {
    let start = time - time.rem_euclid(size);
    Window {
        start,
        end: start + size,
    }
}

/// The hopping windows (length `size`, one starting every `slide`) holding `time`, oldest
/// first.
pub fn hop(time: Millis, slide: Millis, size: Millis) -> impl Iterator<Item = Window> {
    let last = time - time.rem_euclid(slide);
    // The oldest start is the first multiple of `slide` after `time - size`.
    let first = (time - size).div_euclid(slide) * slide + slide;
    (0..)
        .map(move |k| first + k * slide)
        .take_while(move |&start| start <= last)
        .map(move |start| Window {
            start,
            end: start + size,
        })
}

/// The window a single event opens in a session of inactivity `gap`.
pub fn session(time: Millis, gap: Millis) -> Window {
    Window {
        start: time,
        end: time + gap,
    }
}

/// Calls `emit` with every window `time` belongs to under `spec`, oldest first. For sessions
/// this is the event's own window before merging.
pub fn assign(spec: &WindowSpec, time: Millis, mut emit: impl FnMut(Window)) {
    match *spec {
        WindowSpec::Tumble { size } => emit(tumble(time, size)),
        WindowSpec::Hop { slide, size } => hop(time, slide, size).for_each(emit),
        WindowSpec::Session { gap } => emit(session(time, gap)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn tumbling_windows_align_to_the_epoch() {
        assert_eq!(
            tumble(125_000, 60_000),
            Window {
                start: 120_000,
                end: 180_000
            }
        );
        assert_eq!(
            tumble(120_000, 60_000),
            Window {
                start: 120_000,
                end: 180_000
            }
        );
        assert_eq!(
            tumble(179_999, 60_000),
            Window {
                start: 120_000,
                end: 180_000
            }
        );
        assert_eq!(
            tumble(0, 60_000),
            Window {
                start: 0,
                end: 60_000
            }
        );
    }

    #[test]
    fn hopping_windows_list_every_window_holding_the_time() {
        let windows: Vec<Window> = hop(125_000, 60_000, 180_000).collect();
        assert_eq!(
            windows,
            [
                Window {
                    start: 0,
                    end: 180_000
                },
                Window {
                    start: 60_000,
                    end: 240_000
                },
                Window {
                    start: 120_000,
                    end: 300_000
                },
            ]
        );
        // A size that is not a multiple of the slide.
        let windows: Vec<Window> = hop(10, 4, 10).collect();
        assert_eq!(
            windows,
            [Window { start: 4, end: 14 }, Window { start: 8, end: 18 }]
        );
    }

    #[test]
    fn sessions_merge_when_they_overlap() {
        let a = session(1_000, 500);
        let b = session(1_400, 500);
        let c = session(1_500, 500);
        assert!(a.overlaps(&b));
        assert!(
            !a.overlaps(&c),
            "touching windows [1000,1500) and [1500,2000) do not overlap"
        );
        assert_eq!(
            a.cover(&b),
            Window {
                start: 1_000,
                end: 1_900
            }
        );
    }

    proptest! {
        #[test]
        fn assignment_matches_brute_force(time in 0i64..10_000, slide in 1i64..50, extra in 0i64..200) {
            let size = slide + extra;
            let fast: Vec<Window> = hop(time, slide, size).collect();
            let brute: Vec<Window> = (-(size / slide) - 2..=time / slide + 1)
                .map(|k| Window { start: k * slide, end: k * slide + size })
                .filter(|w| w.contains(time))
                .collect();
            prop_assert_eq!(&fast, &brute);
            prop_assert!(fast.len() as i64 == size / slide || fast.len() as i64 == size / slide + 1);
            let t = tumble(time, size);
            prop_assert!(t.contains(time) && t.start % size == 0);
        }
    }
}
