//! The history a rule keeps per key, and the robust statistics over it: medians, the MAD
//! band of `anomaly(…)`.
//!
//! History is a ring of the last `depth` windows (by window index, not by arrival), each
//! holding the rule's history columns. A missing window, or a NULL value, is stored as NaN
//! and reads as `None`. Position `p` always holds the window `w ≡ p (mod depth)` among the
//! last `depth` windows, or NaN: when the newest window moves forward, the positions of the
//! windows it skipped are cleared.

use super::check::AnomalyShape;

/// Consistency constant of the MAD for normally distributed data: 1.4826 × MAD estimates the
/// standard deviation.
const MAD_SCALE: f64 = 1.4826;

/// The same for the mean absolute deviation (√(π/2)), used when the MAD is 0 (more than half
/// of the baseline equals its median, as in sparse counts) but not every point does.
const MEAN_AD_SCALE: f64 = 1.2533;

/// The last windows of one key.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct History {
    /// Windows kept, the newest included.
    depth: usize,
    /// Values per window.
    columns: usize,
    /// The first window written: position 0. The ring grows up to `depth` windows from it.
    first: i64,
    /// The newest window written (`None`: nothing yet).
    newest: Option<i64>,
    /// `columns` values per position; NaN where missing.
    data: Vec<f64>,
}

impl History {
    pub(super) fn new(depth: usize, columns: usize) -> History {
        History {
            depth,
            columns,
            first: 0,
            newest: None,
            data: Vec::new(),
        }
    }

    /// Whether anything is kept at all (rules that only read the current window keep nothing).
    fn keeps(&self) -> bool {
        self.depth > 1 && self.columns > 0
    }

    fn position(&self, window: i64) -> usize {
        (window - self.first).rem_euclid(self.depth as i64) as usize * self.columns
    }

    /// Stores the values of `window` (`aggregates[c]` is the aggregate of column `c`).
    pub(super) fn put(&mut self, window: i64, values: &[Option<f64>], aggregates: &[usize]) {
        if !self.keeps() {
            return;
        }
        let newest = match self.newest {
            None => {
                self.first = window;
                window
            }
            Some(newest) if window > newest => {
                let skipped_from = (newest + 1).max(window - self.depth as i64 + 1);
                for skipped in skipped_from..window {
                    let position = self.position(skipped);
                    if let Some(cells) = self.data.get_mut(position..position + self.columns) {
                        cells.fill(f64::NAN);
                    }
                }
                window
            }
            Some(newest) if newest - window >= self.depth as i64 => return,
            Some(newest) => newest,
        };
        self.newest = Some(newest);
        let position = self.position(window);
        if self.data.len() < position + self.columns {
            self.data.resize(position + self.columns, f64::NAN);
        }
        for (cell, &aggregate) in self.data[position..].iter_mut().zip(aggregates) {
            *cell = values
                .get(aggregate)
                .copied()
                .flatten()
                .filter(|v| v.is_finite())
                .unwrap_or(f64::NAN);
        }
    }

    /// The value of history column `column` in `window`, if kept and present.
    #[inline]
    pub(super) fn get(&self, window: i64, column: usize) -> Option<f64> {
        let newest = self.newest?;
        if window > newest || newest - window >= self.depth as i64 || column >= self.columns {
            return None;
        }
        self.data
            .get(self.position(window) + column)
            .copied()
            .filter(|v| !v.is_nan())
    }

    /// Appends the present values of history column `column` in windows `from..=to` (the
    /// kept ones), in window order: [`History::get`] over the range, walking the ring once.
    pub(super) fn extend_range(&self, from: i64, to: i64, column: usize, out: &mut Vec<f64>) {
        let Some(newest) = self.newest else {
            return;
        };
        let from = from.max(newest - self.depth as i64 + 1);
        let to = to.min(newest);
        if from > to || column >= self.columns {
            return;
        }
        let wrap = self.depth * self.columns;
        let mut position = self.position(from) + column;
        for _ in from..=to {
            if let Some(&value) = self.data.get(position)
                && !value.is_nan()
            {
                out.push(value);
            }
            position += self.columns;
            if position >= wrap {
                position -= wrap;
            }
        }
    }

    /// The ring's state as exact bit patterns, for snapshots (NaN: missing).
    pub(super) fn to_parts(&self) -> (i64, Option<i64>, Vec<u64>) {
        (
            self.first,
            self.newest,
            self.data.iter().map(|v| v.to_bits()).collect(),
        )
    }

    /// The ring from [`History::to_parts`]; `None` if it does not fit `depth` × `columns`.
    pub(super) fn from_parts(
        depth: usize,
        columns: usize,
        first: i64,
        newest: Option<i64>,
        bits: &[u64],
    ) -> Option<History> {
        let fits = bits.len() <= depth * columns
            && (columns == 0 || bits.len().is_multiple_of(columns))
            && (newest.is_some() || bits.is_empty());
        fits.then(|| History {
            depth,
            columns,
            first,
            newest,
            data: bits.iter().map(|&b| f64::from_bits(b)).collect(),
        })
    }
}

/// The median of `values` (reordered); `None` when empty.
pub(super) fn median(values: &mut [f64]) -> Option<f64> {
    let n = values.len();
    if n == 0 {
        return None;
    }
    let (below, upper, _) = values.select_nth_unstable_by(n / 2, f64::total_cmp);
    let upper = *upper;
    if n % 2 == 1 {
        return Some(upper);
    }
    let lower = below.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    Some(lower + (upper - lower) / 2.0)
}

/// What `anomaly(…)` expects of the current value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Band {
    /// The baseline's median.
    pub(super) median: f64,
    /// Half the band's width: `max(sensitivity × robust deviation, min_deviation)`.
    pub(super) half_width: f64,
    /// Baseline windows it was computed from.
    pub(super) points: usize,
}

impl Band {
    /// Whether `value` is outside the band (its edges are inside).
    pub(super) fn outside(&self, value: f64) -> bool {
        (value - self.median).abs() > self.half_width
    }
}

/// The band for the value in history column `column` at `window`, from the baseline windows
/// `shape` names; `None` with fewer than [`AnomalyShape::needed`] of them present.
/// `scratch` is reused between calls.
pub(super) fn band(
    history: &History,
    window: i64,
    column: usize,
    shape: &AnomalyShape,
    scratch: &mut Vec<f64>,
) -> Option<Band> {
    scratch.clear();
    for (nearest, farthest) in shape.ranges() {
        history.extend_range(window - farthest, window - nearest, column, scratch);
    }
    let points = scratch.len();
    if points < shape.needed() {
        return None;
    }
    let median = median(scratch)?;
    let mut mean_deviation = 0.0;
    for value in scratch.iter_mut() {
        *value = (*value - median).abs();
        mean_deviation += *value;
    }
    mean_deviation /= points as f64;
    let mad = self::median(scratch)?;
    let deviation = if mad > 0.0 {
        MAD_SCALE * mad
    } else {
        MEAN_AD_SCALE * mean_deviation
    };
    let options = &shape.options;
    Some(Band {
        median,
        half_width: (options.sensitivity * deviation).max(options.min_deviation),
        points,
    })
}
