//! Values JSON has no type for, written as text: bytes as base64, decimals in plain notation,
//! dates and timestamps in RFC 3339. Each returns why it cannot when the value has no such form.

/// The longest decimal, in bytes of its unscaled value (about 300 digits).
const MAX_DECIMAL_BYTES: usize = 128;

/// Standard base64 with padding.
pub(super) fn base64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A two's-complement big-endian unscaled value and a scale, in plain notation.
pub(super) fn decimal_text(unscaled: &[u8], scale: u64) -> Result<String, String> {
    if unscaled.len() > MAX_DECIMAL_BYTES {
        let reason = format!(
            "a decimal of {} bytes is longer than {MAX_DECIMAL_BYTES}",
            unscaled.len()
        );
        return Err(reason);
    }
    let negative = unscaled.first().is_some_and(|b| b & 0x80 != 0);
    // Magnitude, big-endian: negate a negative two's complement value.
    let mut magnitude: Vec<u8> = if negative {
        unscaled.iter().map(|b| !b).collect()
    } else {
        unscaled.to_vec()
    };
    if negative {
        for byte in magnitude.iter_mut().rev() {
            let (sum, carry) = byte.overflowing_add(1);
            *byte = sum;
            if !carry {
                break;
            }
        }
    }
    // Repeated division by 10 gives the digits, least significant first.
    let mut digits = Vec::new();
    while magnitude.iter().any(|&b| b != 0) {
        let mut remainder = 0u32;
        for byte in &mut magnitude {
            let current = remainder << 8 | u32::from(*byte);
            *byte = (current / 10) as u8;
            remainder = current % 10;
        }
        digits.push(b'0' + remainder as u8);
    }
    let scale = usize::try_from(scale).unwrap_or(usize::MAX);
    if scale > 4 * MAX_DECIMAL_BYTES {
        return Err(format!("decimal scale {scale} is too large"));
    }
    while digits.len() <= scale {
        digits.push(b'0');
    }
    digits.reverse();
    let (whole, fraction) = digits.split_at(digits.len() - scale);
    let mut text = String::from(if negative { "-" } else { "" });
    text.push_str(std::str::from_utf8(whole).unwrap_or("0"));
    if scale > 0 {
        text.push('.');
        text.push_str(std::str::from_utf8(fraction).unwrap_or("0"));
    }
    Ok(text)
}

/// The civil date `days` after 1970-01-01 (proleptic Gregorian), as `YYYY-MM-DD`.
pub(super) fn date(days: i64) -> Result<String, String> {
    let (year, month, day) = civil(days);
    if !(0..=9999).contains(&year) {
        return Err(format!("year {year} is outside 0000–9999"));
    }
    Ok(format!("{year:04}-{month:02}-{day:02}"))
}

/// Howard Hinnant's `civil_from_days`.
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// `value` units (`per_milli` of them a millisecond) after the epoch, as RFC 3339 UTC with
/// milliseconds.
pub(super) fn timestamp(value: i64, per_milli: i64) -> Result<String, String> {
    let millis = value.div_euclid(per_milli);
    let (days, of_day) = (millis.div_euclid(86_400_000), millis.rem_euclid(86_400_000));
    let day = date(days)?;
    let (hours, minutes) = (of_day / 3_600_000, of_day / 60_000 % 60);
    let (seconds, millis) = (of_day / 1000 % 60, of_day % 1000);
    Ok(format!(
        "{day}T{hours:02}:{minutes:02}:{seconds:02}.{millis:03}Z"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logical_types_map_to_timestamps_dates_and_exact_decimals() {
        let at = |micros: i64| timestamp(micros, 1000).ok();
        assert_eq!(at(0), Some(String::from("1970-01-01T00:00:00.000Z")));
        assert_eq!(at(-1), Some(String::from("1969-12-31T23:59:59.999Z")));
        assert_eq!(
            timestamp(1_796_551_200_123, 1).ok(),
            Some(String::from("2026-12-06T10:00:00.123Z"))
        );
        assert_eq!(date(0).ok().as_deref(), Some("1970-01-01"));
        assert_eq!(date(-719_528).ok().as_deref(), Some("0000-01-01"));
        assert!(date(2_932_897) == Err("year 10000 is outside 0000–9999".to_string()));
        let text = |bytes: &[u8], scale| decimal_text(bytes, scale).ok();
        assert_eq!(text(&[0x04, 0xd2], 2).as_deref(), Some("12.34"));
        assert_eq!(text(&[0xfb, 0x2e], 2).as_deref(), Some("-12.34"));
        assert_eq!(text(&[0x05], 3).as_deref(), Some("0.005"));
        assert_eq!(text(&[], 1).as_deref(), Some("0.0"));
        assert_eq!(text(&[0xff], 0).as_deref(), Some("-1"));
        assert_eq!(text(&[0x80, 0x00], 0).as_deref(), Some("-32768"));
    }

    #[test]
    fn base64_is_standard_with_padding() {
        let encoded = [b"".as_slice(), b"f", b"fo", b"foo", &[0xfb, 0xff]].map(base64);
        assert_eq!(encoded, ["", "Zg==", "Zm8=", "Zm9v", "+/8="]);
    }
}
