//! Event time. sluice keeps every instant as milliseconds since the Unix epoch (UTC) in an
//! `i64`: compact in the log, cheap to compare in the window engine. Text from clients is
//! ISO-8601 in its RFC 3339 profile (what every Segment SDK sends).

use ::time::OffsetDateTime;
use ::time::format_description::well_known::Rfc3339;

/// Milliseconds since 1970-01-01T00:00:00Z.
pub type Millis = i64;

/// The current wall-clock time.
pub fn now_millis() -> Millis {
    (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as Millis
}

/// Parses an RFC 3339 timestamp (`2024-05-01T12:00:00.123Z`, `…+02:00`) into epoch millis.
/// Instants before 1970 are rejected: no event source produces them, and they are a common
/// sign of an uninitialized clock.
pub fn parse_rfc3339_millis(text: &str) -> Result<Millis, String> {
    let parsed = OffsetDateTime::parse(text, &Rfc3339).map_err(|error| {
        format!("{text:?} is not an ISO-8601 timestamp like 2024-05-01T12:00:00.000Z ({error})")
    })?;
    let millis = (parsed.unix_timestamp_nanos() / 1_000_000) as Millis;
    if millis < 0 {
        return Err(format!("{text:?} is before 1970-01-01T00:00:00Z"));
    }
    Ok(millis)
}

/// Formats epoch millis as RFC 3339 in UTC with millisecond precision.
pub fn format_millis(millis: Millis) -> String {
    let nanos = i128::from(millis) * 1_000_000;
    match OffsetDateTime::from_unix_timestamp_nanos(nanos) {
        Ok(instant) => {
            let (y, mo, d) = (instant.year(), instant.month() as u8, instant.day());
            let (h, mi, s) = (instant.hour(), instant.minute(), instant.second());
            format!(
                "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{:03}Z",
                instant.millisecond()
            )
        }
        Err(_) => format!("{millis}ms"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_utc_and_offsets_to_the_same_instant() {
        let utc = parse_rfc3339_millis("2024-05-01T12:00:00.123Z").unwrap();
        let offset = parse_rfc3339_millis("2024-05-01T14:00:00.123+02:00").unwrap();
        assert_eq!(utc, offset);
        assert_eq!(utc, 1_714_564_800_123);
        assert_eq!(format_millis(utc), "2024-05-01T12:00:00.123Z");
    }

    #[test]
    fn rejects_non_timestamps_with_an_example() {
        let error = parse_rfc3339_millis("yesterday").unwrap_err();
        assert!(
            error.contains("\"yesterday\" is not an ISO-8601 timestamp"),
            "{error}"
        );
        let error = parse_rfc3339_millis("1969-12-31T23:59:59Z").unwrap_err();
        assert!(error.contains("before 1970"), "{error}");
    }
}
