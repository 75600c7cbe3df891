//! DDSketch for `APPROX_PERCENTILE(x, q)`.
//!
//! Relative accuracy α = **1 %**: the value returned for a quantile is within 1 % of the
//! exact value of the item at that rank (rank `⌊q·(n−1)⌋` of the sorted values, 0-based), for
//! every value whose bin was not collapsed. Values map to logarithmic bins
//! `i = ⌈ln|x| / ln γ⌉` with `γ = (1+α)/(1−α)`, positive and negative values in separate
//! stores, and values with `|x| <` [`MIN_VALUE`] count as zero.
//!
//! Each store keeps at most [`MAX_BINS`] bins (fixed size: at most 16 KiB per store). Once the
//! bins of a store span more than that, the lowest bins are collapsed into the lowest kept
//! one — with α = 1 % that happens only when values span more than 17 orders of magnitude, and
//! only the smallest magnitudes lose accuracy. Collapsing depends only on the largest index
//! ever seen, so the sketch is a function of the multiset of inserted values: inserts and
//! merges in any order give the same sketch.

use super::codec::{MAX_U64_BYTES, Reader, Writer};

/// The relative accuracy.
pub const RELATIVE_ACCURACY: f64 = 0.01;
/// The most bins per store.
pub const MAX_BINS: usize = 2048;
/// Values smaller than this in magnitude count as zero.
pub const MIN_VALUE: f64 = 1e-9;

const MAPPING_LOG_1PCT: u8 = 1;

fn gamma() -> f64 {
    (1.0 + RELATIVE_ACCURACY) / (1.0 - RELATIVE_ACCURACY)
}

fn index_of(magnitude: f64) -> i32 {
    (magnitude.ln() / gamma().ln()).ceil() as i32
}

fn value_of(index: i32) -> f64 {
    let gamma = gamma();
    2.0 * gamma.powi(index) / (gamma + 1.0)
}

/// Counts per bin index over a contiguous range `[offset, offset + bins.len())` whose first
/// and last bins are non-zero.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Store {
    offset: i32,
    bins: Vec<u64>,
}

impl Store {
    fn high(&self) -> i32 {
        self.offset + self.bins.len() as i32 - 1
    }

    fn add(&mut self, index: i32, count: u64) {
        if count == 0 {
            return;
        }
        if self.bins.is_empty() {
            self.offset = index;
            self.bins.push(count);
            return;
        }
        let high = self.high().max(index);
        let floor = high - MAX_BINS as i32 + 1;
        let low = self.offset.min(index).max(floor);
        if low != self.offset || high != self.high() {
            self.reshape(low, high);
        }
        let index = index.max(floor);
        self.bins[(index - self.offset) as usize] += count;
    }

    /// Re-bins over `[low, high]`, folding bins below `low` into `low`.
    fn reshape(&mut self, low: i32, high: i32) {
        if low <= self.offset && high >= self.high() {
            // Only growing: extend in place (amortized, like any vector).
            let below = (self.offset - low) as usize;
            let above = (high - self.high()) as usize;
            self.bins.resize(self.bins.len() + above, 0);
            if below > 0 {
                self.bins.splice(0..0, std::iter::repeat_n(0, below));
            }
            self.offset = low;
            return;
        }
        let mut bins = vec![0u64; (high - low + 1) as usize];
        for (i, &count) in self.bins.iter().enumerate() {
            let index = (self.offset + i as i32).max(low);
            bins[(index - low) as usize] += count;
        }
        self.offset = low;
        self.bins = bins;
    }

    fn merge(&mut self, other: &Store) {
        if other.bins.is_empty() {
            return;
        }
        if self.bins.is_empty() {
            *self = other.clone();
            return;
        }
        let high = self.high().max(other.high());
        let low = self
            .offset
            .min(other.offset)
            .max(high - MAX_BINS as i32 + 1);
        self.reshape(low, high);
        for (i, &count) in other.bins.iter().enumerate() {
            let index = (other.offset + i as i32).max(low);
            self.bins[(index - low) as usize] += count;
        }
    }

    fn total(&self) -> u64 {
        self.bins.iter().sum()
    }

    /// At least the bytes [`Store::encode`] appends.
    fn encoded_len_bound(&self) -> usize {
        MAX_U64_BYTES * (2 + self.bins.len())
    }

    fn encode(&self, out: &mut Writer) {
        out.u64(self.bins.len() as u64);
        if !self.bins.is_empty() {
            out.i64(i64::from(self.offset));
            self.bins.iter().for_each(|&count| out.u64(count));
        }
    }

    fn decode(input: &mut Reader<'_>) -> Result<Store, String> {
        let len = input.usize_at_most(MAX_BINS, "DDSketch bin count")?;
        if len == 0 {
            return Ok(Store::default());
        }
        let offset = i32::try_from(input.i64("DDSketch bin offset")?)
            .map_err(|_| "DDSketch bin offset out of range".to_owned())?;
        offset
            .checked_add(len as i32)
            .ok_or("DDSketch bins out of range")?;
        let bins = (0..len)
            .map(|_| input.u64("DDSketch bin count"))
            .collect::<Result<Vec<u64>, String>>()?;
        if bins[0] == 0 || bins[len - 1] == 0 {
            return Err("DDSketch bins are not trimmed".into());
        }
        Ok(Store { offset, bins })
    }
}

/// A DDSketch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DdSketch {
    positive: Store,
    negative: Store,
    zero: u64,
}

impl DdSketch {
    /// Adds a value (NaN and infinities are ignored: they never come from a decimal).
    pub fn insert(&mut self, value: f64) {
        if !value.is_finite() {
            return;
        }
        let magnitude = value.abs();
        if magnitude < MIN_VALUE {
            self.zero += 1;
        } else if value > 0.0 {
            self.positive.add(index_of(magnitude), 1);
        } else {
            self.negative.add(index_of(magnitude), 1);
        }
    }

    /// Adds every value `other` saw.
    pub fn merge(&mut self, other: &DdSketch) {
        self.positive.merge(&other.positive);
        self.negative.merge(&other.negative);
        self.zero += other.zero;
    }

    /// Number of values inserted.
    pub fn count(&self) -> u64 {
        self.positive.total() + self.negative.total() + self.zero
    }

    /// The estimated `quantile` (in `[0, 1]`): within [`RELATIVE_ACCURACY`] of the item at
    /// rank `⌊quantile·(n−1)⌋`; `None` when empty.
    pub fn quantile(&self, quantile: f64) -> Option<f64> {
        let count = self.count();
        if count == 0 {
            return None;
        }
        let rank = (quantile.clamp(0.0, 1.0) * (count - 1) as f64).floor() as u64;
        let mut seen = 0u64;
        for (i, &bin) in self.negative.bins.iter().enumerate().rev() {
            seen += bin;
            if seen > rank {
                return Some(-value_of(self.negative.offset + i as i32));
            }
        }
        seen += self.zero;
        if seen > rank {
            return Some(0.0);
        }
        for (i, &bin) in self.positive.bins.iter().enumerate() {
            seen += bin;
            if seen > rank {
                return Some(value_of(self.positive.offset + i as i32));
            }
        }
        Some(value_of(self.positive.high()))
    }

    /// At least the bytes [`DdSketch::encode`] appends.
    pub(crate) fn encoded_len_bound(&self) -> usize {
        1 + MAX_U64_BYTES + self.positive.encoded_len_bound() + self.negative.encoded_len_bound()
    }

    pub(crate) fn encode(&self, out: &mut Writer) {
        out.u8(MAPPING_LOG_1PCT);
        out.u64(self.zero);
        self.positive.encode(out);
        self.negative.encode(out);
    }

    pub(crate) fn decode(input: &mut Reader<'_>) -> Result<DdSketch, String> {
        let mapping = input.u8("DDSketch mapping")?;
        if mapping != MAPPING_LOG_1PCT {
            return Err(format!("unknown DDSketch mapping {mapping}"));
        }
        let zero = input.u64("DDSketch zero count")?;
        let positive = Store::decode(input)?;
        let negative = Store::decode(input)?;
        Ok(DdSketch {
            positive,
            negative,
            zero,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn exact(values: &[f64], q: f64) -> f64 {
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        sorted[(q * (sorted.len() - 1) as f64).floor() as usize]
    }

    proptest! {
        #[test]
        fn quantiles_are_within_the_relative_accuracy(
            values in prop::collection::vec(prop_oneof![-1e6f64..1e6, 0.001f64..10.0, Just(0.0)], 1..300),
            q in 0.0f64..=1.0,
        ) {
            let mut sketch = DdSketch::default();
            values.iter().for_each(|&v| sketch.insert(v));
            let estimate = sketch.quantile(q).unwrap();
            let truth = exact(&values, q);
            let tolerance = RELATIVE_ACCURACY * truth.abs() + MIN_VALUE + 1e-12 * truth.abs();
            prop_assert!((estimate - truth).abs() <= tolerance, "q={} estimate {} truth {}", q, estimate, truth);
        }

        #[test]
        fn merging_is_order_independent(a in prop::collection::vec(-1e3f64..1e3, 0..100), b in prop::collection::vec(1e-3f64..1e9, 0..100)) {
            let mut whole = DdSketch::default();
            a.iter().chain(b.iter()).for_each(|&v| whole.insert(v));
            let mut left = DdSketch::default();
            a.iter().for_each(|&v| left.insert(v));
            let mut right = DdSketch::default();
            b.iter().rev().for_each(|&v| right.insert(v));
            let mut lr = left.clone();
            lr.merge(&right);
            let mut rl = right.clone();
            rl.merge(&left);
            prop_assert_eq!(&lr, &whole);
            prop_assert_eq!(&rl, &whole);
        }
    }

    #[test]
    fn huge_ranges_collapse_the_smallest_values_and_stay_bounded() {
        let mut sketch = DdSketch::default();
        let mut other = DdSketch::default();
        for exponent in -8..30 {
            sketch.insert(10f64.powi(exponent));
            other.insert(10f64.powi(29 - exponent + -8));
        }
        assert!(sketch.positive.bins.len() <= MAX_BINS);
        let top = sketch.quantile(1.0).unwrap();
        assert!((top - 1e29).abs() <= 0.01 * 1e29);
        let mut merged = sketch.clone();
        merged.merge(&other);
        let mut reversed = other.clone();
        reversed.merge(&sketch);
        assert_eq!(merged, reversed);
        assert_eq!(merged.count(), 76);
    }

    #[test]
    fn encoding_round_trips_and_rejects_corruption() {
        let mut sketch = DdSketch::default();
        for v in [-5.0, 0.0, 1.5, 1.5, 1e6] {
            sketch.insert(v);
        }
        let mut out = Writer::default();
        sketch.encode(&mut out);
        assert_eq!(
            DdSketch::decode(&mut Reader::new(&out.bytes)).unwrap(),
            sketch
        );
        assert!(
            DdSketch::decode(&mut Reader::new(&[9]))
                .unwrap_err()
                .contains("mapping 9")
        );
        let untrimmed = [MAPPING_LOG_1PCT, 0, 2, 0, 0, 1, 0];
        assert!(
            DdSketch::decode(&mut Reader::new(&untrimmed))
                .unwrap_err()
                .contains("trimmed")
        );
    }
}
