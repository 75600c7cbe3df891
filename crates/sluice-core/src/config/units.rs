//! Newtypes for sizes and durations in the config: written for people (`32KiB`, `10s`),
//! validated at parse time, so a typo is reported with its path instead of misread.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// A number of bytes: an integer, or a string with a unit (`512B`, `32KiB`, `500KB`, `1MiB`,
/// `2GB`). `K`, `M`, `G` are powers of 1000; `Ki`, `Mi`, `Gi` powers of 1024.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ByteSize(pub u64);

impl ByteSize {
    /// The size in bytes.
    pub fn bytes(self) -> u64 {
        self.0
    }

    /// The size in bytes as `usize` (saturating on 32-bit targets).
    pub fn as_usize(self) -> usize {
        usize::try_from(self.0).unwrap_or(usize::MAX)
    }
}

impl FromStr for ByteSize {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let trimmed = text.trim();
        let split = trimmed
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(trimmed.len());
        let (digits, unit) = trimmed.split_at(split);
        let bad = || {
            format!(
                "{text:?} is not a size: write a number of bytes with an optional unit, like 32KiB, 500KB or 1048576"
            )
        };
        let number: u64 = digits.parse().map_err(|_| bad())?;
        let multiplier: u64 = match unit.trim() {
            "" | "B" | "b" => 1,
            "K" | "KB" | "kB" | "kb" => 1_000,
            "Ki" | "KiB" | "kib" => 1 << 10,
            "M" | "MB" | "mb" => 1_000_000,
            "Mi" | "MiB" | "mib" => 1 << 20,
            "G" | "GB" | "gb" => 1_000_000_000,
            "Gi" | "GiB" | "gib" => 1 << 30,
            "T" | "TB" | "tb" => 1_000_000_000_000,
            "Ti" | "TiB" | "tib" => 1 << 40,
            _ => return Err(bad()),
        };
        number
            .checked_mul(multiplier)
            .map(ByteSize)
            .ok_or_else(|| format!("{text:?} is too large"))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [(u64, &str); 4] = [
            (1 << 40, "TiB"),
            (1 << 30, "GiB"),
            (1 << 20, "MiB"),
            (1 << 10, "KiB"),
        ];
        for (size, unit) in UNITS {
            if self.0 >= size && self.0.is_multiple_of(size) {
                return write!(f, "{}{unit}", self.0 / size);
            }
        }
        write!(f, "{}B", self.0)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(u64),
            Text(String),
        }
        match Raw::deserialize(deserializer).map_err(|_| {
            serde::de::Error::custom(
                "expected a size: a number of bytes, or a string like \"32KiB\"",
            )
        })? {
            Raw::Int(bytes) => Ok(ByteSize(bytes)),
            Raw::Text(text) => text.parse().map_err(serde::de::Error::custom),
        }
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// A duration written with units: `250ms`, `10s`, `5m`, `1h`, `7d`, or several (`1m30s`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HumanDuration(pub Duration);

impl HumanDuration {
    /// The duration.
    pub fn get(self) -> Duration {
        self.0
    }
}

impl FromStr for HumanDuration {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "{text:?} is not a duration: write a number with a unit, like 250ms, 10s, 5m, 1h or 7d"
            )
        };
        let mut rest = text.trim();
        if rest.is_empty() {
            return Err(bad());
        }
        let mut total = Duration::ZERO;
        while !rest.is_empty() {
            let split = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
            let (digits, tail) = rest.split_at(split);
            let number: u64 = digits.parse().map_err(|_| bad())?;
            let unit_len = tail
                .find(|c: char| c.is_ascii_digit())
                .unwrap_or(tail.len());
            let (unit, tail) = tail.split_at(unit_len);
            let part = match unit.trim() {
                "ms" => Duration::from_millis(number),
                "s" => Duration::from_secs(number),
                "m" | "min" => Duration::from_secs(number.saturating_mul(60)),
                "h" => Duration::from_secs(number.saturating_mul(3600)),
                "d" => Duration::from_secs(number.saturating_mul(86_400)),
                _ => return Err(bad()),
            };
            total = total.saturating_add(part);
            rest = tail.trim_start();
        }
        Ok(HumanDuration(total))
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let millis = self.0.as_millis();
        if millis == 0 {
            return write!(f, "0s");
        }
        for (size, unit) in [
            (86_400_000, "d"),
            (3_600_000, "h"),
            (60_000, "m"),
            (1000, "s"),
        ] {
            if millis.is_multiple_of(size) {
                return write!(f, "{}{unit}", millis / size);
            }
        }
        write!(f, "{millis}ms")
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer).map_err(|_| {
            serde::de::Error::custom("expected a duration string with a unit, like \"10s\"")
        })?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_decimal_and_binary_units() {
        assert_eq!("32KiB".parse::<ByteSize>().unwrap().bytes(), 32 * 1024);
        assert_eq!("500KB".parse::<ByteSize>().unwrap().bytes(), 500_000);
        assert_eq!("1 MiB".parse::<ByteSize>().unwrap().bytes(), 1 << 20);
        assert_eq!("4096".parse::<ByteSize>().unwrap().bytes(), 4096);
        let error = "lots".parse::<ByteSize>().unwrap_err();
        assert!(error.contains("like 32KiB"), "{error}");
        assert!("12XB".parse::<ByteSize>().is_err());
        assert_eq!(ByteSize(32 * 1024).to_string(), "32KiB");
        assert_eq!(ByteSize(500_000).to_string(), "500000B");
    }

    #[test]
    fn durations_parse_with_units_and_compound_forms() {
        assert_eq!(
            "10s".parse::<HumanDuration>().unwrap().get(),
            Duration::from_secs(10)
        );
        assert_eq!(
            "250ms".parse::<HumanDuration>().unwrap().get(),
            Duration::from_millis(250)
        );
        assert_eq!(
            "1m30s".parse::<HumanDuration>().unwrap().get(),
            Duration::from_secs(90)
        );
        assert_eq!(
            "7d".parse::<HumanDuration>().unwrap().get(),
            Duration::from_secs(7 * 86_400)
        );
        for bad in ["", "10", "ten seconds", "5 fortnights"] {
            let error = bad.parse::<HumanDuration>().unwrap_err();
            assert!(error.contains("like 250ms"), "{bad:?}: {error}");
        }
        assert_eq!(HumanDuration(Duration::from_secs(90)).to_string(), "90s");
        assert_eq!(HumanDuration(Duration::from_secs(3600)).to_string(), "1h");
    }
}
