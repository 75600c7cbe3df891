//! Exact decimal numbers: what sums, minimums, maximums and averages are computed with.
//!
//! A [`Decimal`] is an `i128` mantissa and a decimal scale of 0 to [`MAX_SCALE`] digits:
//! `19.99` is `(1999, 2)`. JSON numbers are parsed from their text, never through `f64`, so
//! summing a million `19.99`s gives exactly `19990000.00`. A number with more than
//! [`MAX_SCALE`] fractional digits is rounded half-to-even to [`MAX_SCALE`] digits (the one
//! place precision is lost, documented); one whose magnitude does not fit (beyond about
//! `1.7e38 / 10^scale`, like `9.99e300`) is *out of range*: filters and group keys see NULL,
//! and aggregates skip it and count it (see [`crate::agg::Input::OutOfRange`]);
//! [`is_number_text`] tells such a number from text that is no number at all.
//!
//! Arithmetic aligns scales upward (the larger scale wins), so the scale of a sum is the
//! largest scale among its inputs whatever their order: sums are canonical, and merging
//! partial sums from different partitions gives the same representation as summing the
//! whole stream. Overflow is reported (`None`), never wrapped.

use std::cmp::Ordering;
use std::fmt;

/// The most fractional digits kept.
pub const MAX_SCALE: u8 = 18;

const POW10: [i128; 39] = {
    let mut table = [1i128; 39];
    let mut i = 1;
    while i < 39 {
        table[i] = table[i - 1] * 10;
        i += 1;
    }
    table
};

/// `10^exp` for `exp <= 38`.
fn pow10(exp: u32) -> Option<i128> {
    POW10.get(exp as usize).copied()
}

/// An exact decimal number: `mantissa / 10^scale`. Equality and hashing are by value:
/// `2.50 == 2.5`.
#[derive(Debug, Clone, Copy)]
pub struct Decimal {
    mantissa: i128,
    scale: u8,
}

impl Decimal {
    /// Zero at scale 0.
    pub const ZERO: Decimal = Decimal {
        mantissa: 0,
        scale: 0,
    };

    /// `mantissa / 10^scale`; `None` when `scale` exceeds [`MAX_SCALE`].
    pub fn new(mantissa: i128, scale: u8) -> Option<Decimal> {
        (scale <= MAX_SCALE).then_some(Decimal { mantissa, scale })
    }

    /// An integer.
    pub fn from_i64(value: i64) -> Decimal {
        Decimal {
            mantissa: i128::from(value),
            scale: 0,
        }
    }

    /// The mantissa.
    pub fn mantissa(self) -> i128 {
        self.mantissa
    }

    /// The number of fractional digits.
    pub fn scale(self) -> u8 {
        self.scale
    }

    /// Parses a JSON number (`-12`, `19.99`, `1.5e3`, `2E-4`); `None` for anything else or a
    /// magnitude that does not fit. Digits beyond [`MAX_SCALE`] are rounded half-to-even.
    pub fn parse(text: &[u8]) -> Option<Decimal> {
        if let Some(value) = Decimal::parse_short(text) {
            return Some(value);
        }
        let (negative, rest) = match text.split_first() {
            Some((b'-', rest)) => (true, rest),
            _ => (false, text),
        };
        let int_len = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        if int_len == 0 {
            return None;
        }
        let (int_digits, rest) = rest.split_at(int_len);
        let (frac_digits, rest) = match rest.split_first() {
            Some((b'.', after)) => {
                let len = after.iter().take_while(|b| b.is_ascii_digit()).count();
                if len == 0 {
                    return None;
                }
                after.split_at(len)
            }
            _ => (&rest[..0], rest),
        };
        let exponent = match rest.split_first() {
            None => 0i64,
            Some((b'e' | b'E', after)) => parse_exponent(after)?,
            Some(_) => return None,
        };
        // The value is the digit string `int_digits ++ frac_digits` × 10^-scale.
        let scale = frac_digits.len() as i64 - exponent;
        let digits = Digits {
            first: int_digits,
            second: frac_digits,
        };
        let value = digits.to_decimal(scale)?;
        Some(if negative { value.neg() } else { value })
    }

    /// The common case in one pass: an optional `-`, at most 18 characters of digits and at
    /// most one `.`
    /// between digits, no exponent (fits an `i64`). Anything else goes to the general parser.
    #[inline]
    fn parse_short(text: &[u8]) -> Option<Decimal> {
        let (negative, digits) = match text.split_first() {
            Some((b'-', rest)) => (true, rest),
            _ => (false, text),
        };
        if digits.is_empty() || digits.len() > 18 {
            return None;
        }
        let mut mantissa: i64 = 0;
        let mut point: Option<usize> = None;
        for (index, &byte) in digits.iter().enumerate() {
            match byte {
                b'0'..=b'9' => mantissa = mantissa * 10 + i64::from(byte - b'0'),
                b'.' if point.is_none() && index > 0 && index + 1 < digits.len() => {
                    point = Some(index)
                }
                _ => return None,
            }
        }
        let scale = point.map_or(0, |p| digits.len() - p - 1) as u8;
        let mantissa = if negative { -mantissa } else { mantissa };
        Some(Decimal {
            mantissa: i128::from(mantissa),
            scale,
        })
    }

    /// Parses a decimal from text (SQL literals, JSON strings holding numbers).
    pub fn parse_str(text: &str) -> Option<Decimal> {
        Decimal::parse(text.as_bytes())
    }

    fn neg(self) -> Decimal {
        Decimal {
            mantissa: -self.mantissa,
            scale: self.scale,
        }
    }

    /// This number at a larger (or equal) scale; `None` on overflow or a smaller scale.
    pub fn rescale(self, scale: u8) -> Option<Decimal> {
        if scale < self.scale || scale > MAX_SCALE {
            return None;
        }
        let factor = pow10(u32::from(scale - self.scale))?;
        Some(Decimal {
            mantissa: self.mantissa.checked_mul(factor)?,
            scale,
        })
    }

    /// The exact sum; `None` on overflow.
    pub fn checked_add(self, other: Decimal) -> Option<Decimal> {
        if self.scale == other.scale {
            return Some(Decimal {
                mantissa: self.mantissa.checked_add(other.mantissa)?,
                scale: self.scale,
            });
        }
        let scale = self.scale.max(other.scale);
        let a = self.rescale(scale)?;
        let b = other.rescale(scale)?;
        Some(Decimal {
            mantissa: a.mantissa.checked_add(b.mantissa)?,
            scale,
        })
    }

    /// The same value with trailing fractional zeros removed: `1.50` → `1.5`, `2.0` → `2`.
    /// Equal numbers have equal normalized forms (used for group keys and distinct counts).
    pub fn normalized(self) -> Decimal {
        let mut value = self;
        while value.scale > 0 && value.mantissa % 10 == 0 {
            value.mantissa /= 10;
            value.scale -= 1;
        }
        value
    }

    /// The nearest `f64` (for percentile sketches and display of averages).
    pub fn to_f64(self) -> f64 {
        // Mantissas below 2^53 convert exactly either way; the 64-bit conversion is one
        // instruction, the 128-bit one a library call.
        let mantissa = match i64::try_from(self.mantissa) {
            Ok(small) if small.unsigned_abs() < 1 << 53 => small as f64,
            _ => self.mantissa as f64,
        };
        mantissa / POW10[self.scale as usize] as f64
    }

    /// `self / count`, rounded half-to-even at `max(scale, 6)` fractional digits (fewer if the
    /// larger scale would overflow): how averages are computed from an exact sum and count.
    pub fn div_count(self, count: u64) -> Option<Decimal> {
        if count == 0 {
            return None;
        }
        let mut scale = self.scale.clamp(6, MAX_SCALE);
        let numerator = loop {
            if let Some(value) = self.rescale(scale) {
                break value.mantissa;
            }
            if scale == self.scale {
                return None;
            }
            scale -= 1;
        };
        let divisor = i128::from(count);
        let quotient = numerator / divisor;
        let remainder = (numerator % divisor).abs();
        let twice = remainder * 2;
        let round_up = twice > divisor || (twice == divisor && quotient % 2 != 0);
        let mantissa = if round_up {
            quotient + numerator.signum()
        } else {
            quotient
        };
        Some(Decimal { mantissa, scale })
    }

    fn split(self) -> (i128, i128) {
        let unit = POW10[self.scale as usize];
        (self.mantissa / unit, self.mantissa % unit)
    }
}

/// Whether `text` is written like a number [`Decimal::parse`] reads (`-12`, `19.99`, `1.5e3`):
/// when it is but does not parse, the number is out of range.
pub fn is_number_text(text: &[u8]) -> bool {
    let digits = |text: &[u8]| text.iter().take_while(|b| b.is_ascii_digit()).count();
    let rest = text.strip_prefix(b"-").unwrap_or(text);
    let int = digits(rest);
    if int == 0 {
        return false;
    }
    let mut rest = &rest[int..];
    if let Some(after) = rest.strip_prefix(b".") {
        let frac = digits(after);
        if frac == 0 {
            return false;
        }
        rest = &after[frac..];
    }
    if let Some(after) = rest.strip_prefix(b"e").or_else(|| rest.strip_prefix(b"E")) {
        let after = after
            .strip_prefix(b"+")
            .or_else(|| after.strip_prefix(b"-"))
            .unwrap_or(after);
        let exponent = digits(after);
        return exponent > 0 && exponent == after.len();
    }
    rest.is_empty()
}

fn parse_exponent(text: &[u8]) -> Option<i64> {
    let (negative, digits) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        Some((b'+', rest)) => (false, rest),
        _ => (false, text),
    };
    if digits.is_empty() || digits.len() > 6 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let value = digits
        .iter()
        .fold(0i64, |acc, d| acc * 10 + i64::from(d - b'0'));
    Some(if negative { -value } else { value })
}

/// A digit string split over two slices (integer and fractional digits of a literal).
struct Digits<'a> {
    first: &'a [u8],
    second: &'a [u8],
}

impl Digits<'_> {
    fn len(&self) -> usize {
        self.first.len() + self.second.len()
    }

    fn get(&self, index: usize) -> u8 {
        if index < self.first.len() {
            self.first[index] - b'0'
        } else {
            self.second[index - self.first.len()] - b'0'
        }
    }

    /// The digits × 10^-scale as a decimal, rounding beyond [`MAX_SCALE`].
    fn to_decimal(&self, scale: i64) -> Option<Decimal> {
        let total = self.len();
        let leading_zeros = (0..total).take_while(|&i| self.get(i) == 0).count();
        if leading_zeros == total {
            return Some(Decimal::ZERO);
        }
        let max_scale = i64::from(MAX_SCALE);
        // How many trailing digits are dropped (scale too large) or zeros appended (negative).
        let (keep, final_scale, append) = if scale > max_scale {
            let drop = usize::try_from(scale - max_scale).ok()?;
            if drop > total {
                // Every digit lies below 10^-19: the value rounds to zero.
                return Some(Decimal {
                    mantissa: 0,
                    scale: MAX_SCALE,
                });
            }
            (total - drop, MAX_SCALE, 0u32)
        } else if scale < 0 {
            let append = u32::try_from(-scale).ok().filter(|&n| n <= 38)?;
            (total, 0, append)
        } else {
            (total, scale as u8, 0)
        };
        let mut mantissa: i128 = 0;
        for index in leading_zeros.min(keep)..keep {
            mantissa = mantissa
                .checked_mul(10)?
                .checked_add(i128::from(self.get(index)))?;
        }
        if keep < total {
            let first_dropped = self.get(keep);
            let sticky = (keep + 1..total).any(|i| self.get(i) != 0);
            let round_up =
                first_dropped > 5 || (first_dropped == 5 && (sticky || mantissa % 2 != 0));
            if round_up {
                mantissa = mantissa.checked_add(1)?;
            }
        }
        if append > 0 {
            mantissa = mantissa.checked_mul(pow10(append)?)?;
        }
        Some(Decimal {
            mantissa,
            scale: final_scale,
        })
    }
}

impl PartialEq for Decimal {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Decimal {}

impl std::hash::Hash for Decimal {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        let normal = self.normalized();
        normal.mantissa.hash(state);
        normal.scale.hash(state);
    }
}

impl Ord for Decimal {
    fn cmp(&self, other: &Self) -> Ordering {
        let (a_int, a_frac) = self.split();
        let (b_int, b_frac) = other.split();
        a_int.cmp(&b_int).then_with(|| {
            let a = a_frac * POW10[(MAX_SCALE - self.scale) as usize];
            let b = b_frac * POW10[(MAX_SCALE - other.scale) as usize];
            a.cmp(&b)
        })
    }
}

impl PartialOrd for Decimal {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.mantissa < 0 { "-" } else { "" };
        let magnitude = self.mantissa.unsigned_abs();
        if self.scale == 0 {
            return write!(f, "{sign}{magnitude}");
        }
        let unit = POW10[self.scale as usize] as u128;
        write!(
            f,
            "{sign}{}.{:0width$}",
            magnitude / unit,
            magnitude % unit,
            width = self.scale as usize
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn d(text: &str) -> Decimal {
        Decimal::parse_str(text).unwrap_or_else(|| panic!("{text} parses"))
    }

    #[test]
    fn parses_json_numbers_exactly() {
        assert_eq!(d("19.99"), Decimal::new(1999, 2).unwrap());
        assert_eq!(d("-0.5"), Decimal::new(-5, 1).unwrap());
        assert_eq!(d("1.5e3"), Decimal::new(1500, 0).unwrap());
        assert_eq!(d("2E-4"), Decimal::new(2, 4).unwrap());
        assert_eq!(d("0"), Decimal::ZERO);
        assert_eq!(d("0.000"), Decimal::ZERO);
        assert_eq!(d("12e+2").to_string(), "1200");
        for bad in [
            "",
            "-",
            "1.",
            ".5",
            "1e",
            "abc",
            "1.2.3",
            "1e1000000",
            "+1",
            " 1",
        ] {
            assert!(Decimal::parse_str(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn rounds_half_even_beyond_the_maximum_scale() {
        assert_eq!(
            d("0.1234567890123456785").to_string(),
            "0.123456789012345678"
        );
        assert_eq!(
            d("0.1234567890123456775").to_string(),
            "0.123456789012345678"
        );
        assert_eq!(
            d("0.12345678901234567851").to_string(),
            "0.123456789012345679"
        );
        assert_eq!(d("1e-30"), Decimal::new(0, 18).unwrap());
        assert_eq!(d("6e-20"), Decimal::new(0, 18).unwrap());
        assert_eq!(d("6e-19"), Decimal::new(1, 18).unwrap());
        assert_eq!(d("5e-19"), Decimal::new(0, 18).unwrap());
        assert_eq!(d("-1e-30").to_string(), "0.000000000000000000");
    }

    #[test]
    fn out_of_range_is_not_a_number() {
        assert!(Decimal::parse_str("1e39").is_none());
        assert!(Decimal::parse_str("1000000000000000000000000000000000000000").is_none());
        assert!(Decimal::parse_str("1e38").is_some());
    }

    #[test]
    fn numbers_out_of_range_are_told_from_text_that_is_no_number() {
        for out_of_range in [
            "9.99e300",
            "-1e39",
            "1e1000000",
            "1E+39",
            "1000000000000000000000000000000000000000",
        ] {
            assert!(Decimal::parse_str(out_of_range).is_none(), "{out_of_range}");
            assert!(is_number_text(out_of_range.as_bytes()), "{out_of_range}");
        }
        for text in [
            "", "-", "1.", ".5", "1e", "1e+", "abc", "1.2.3", "+1", " 1", "1 ", "0x10", "NaN",
            "1e5x",
        ] {
            assert!(!is_number_text(text.as_bytes()), "{text:?}");
        }
        for number in ["0", "-12", "19.99", "1.5e3", "2E-4"] {
            assert!(is_number_text(number.as_bytes()), "{number}");
        }
    }

    #[test]
    fn a_million_prices_sum_exactly() {
        let price = d("19.99");
        let mut sum = Decimal::ZERO;
        for _ in 0..1_000_000 {
            sum = sum.checked_add(price).unwrap();
        }
        assert_eq!(sum.to_string(), "19990000.00");
        let float: f64 = (0..1_000_000).map(|_| 19.99f64).sum();
        assert_ne!(float, 19_990_000.0, "floats drift; decimals must not");
    }

    #[test]
    fn averages_round_half_even() {
        assert_eq!(d("10").div_count(3).unwrap().to_string(), "3.333333");
        assert_eq!(d("2").div_count(3).unwrap().to_string(), "0.666667");
        assert_eq!(d("-2").div_count(3).unwrap().to_string(), "-0.666667");
        assert_eq!(
            d("0.0000005").div_count(2).unwrap().to_string(),
            "0.0000002"
        );
        assert_eq!(
            d("0.0000015").div_count(2).unwrap().to_string(),
            "0.0000008"
        );
        assert!(d("1").div_count(0).is_none());
    }

    #[test]
    fn orders_across_scales_and_normalizes() {
        assert!(d("1.5") > d("1.49"));
        assert!(d("-1.5") < d("-1.49"));
        assert!(d("-0.5") < d("0.3"));
        assert_eq!(d("2.50").cmp(&d("2.5")), Ordering::Equal);
        assert_eq!(d("2.50").normalized(), d("2.5"));
        assert_eq!(d("100").normalized(), d("100"));
        assert!(d("1e38") > d("0.000000000000000001"));
    }

    proptest! {
        #[test]
        fn sums_are_exact_and_order_independent(values in prop::collection::vec((any::<i64>(), 0u8..=6), 0..50)) {
            let decimals: Vec<Decimal> = values.iter().map(|&(m, s)| Decimal::new(i128::from(m), s).unwrap()).collect();
            let forward = decimals.iter().try_fold(Decimal::ZERO, |acc, &v| acc.checked_add(v)).unwrap();
            let backward = decimals.iter().rev().try_fold(Decimal::ZERO, |acc, &v| acc.checked_add(v)).unwrap();
            // Canonical: the same mantissa and scale whatever the order, not only the same value.
            prop_assert_eq!((forward.mantissa(), forward.scale()), (backward.mantissa(), backward.scale()));
            // The same sum computed in micro-units with plain integers.
            let micros: i128 = values.iter().map(|&(m, s)| i128::from(m) * 10i128.pow(6 - u32::from(s))).sum();
            prop_assert_eq!(forward.rescale(6).unwrap().mantissa(), micros);
        }

        #[test]
        fn display_round_trips(mantissa in any::<i64>(), scale in 0u8..=18) {
            let value = Decimal::new(i128::from(mantissa), scale).unwrap();
            prop_assert_eq!(Decimal::parse_str(&value.to_string()), Some(value));
        }

        #[test]
        fn order_matches_float_order(a in -1_000_000i64..1_000_000, sa in 0u8..4, b in -1_000_000i64..1_000_000, sb in 0u8..4) {
            let x = Decimal::new(i128::from(a), sa).unwrap();
            let y = Decimal::new(i128::from(b), sb).unwrap();
            let exact = (i128::from(a) * 10i128.pow(u32::from(4 - sa))).cmp(&(i128::from(b) * 10i128.pow(u32::from(4 - sb))));
            prop_assert_eq!(x.cmp(&y), exact);
        }
    }
}
