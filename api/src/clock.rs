//! Wall-clock time as the pieces exchange it (unix milliseconds), RFC 3339
//! for people and for Docker's timestamps (the `time` crate), and the short
//! durations flags take (`90s`, `15m`, `1h`, `7d`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::OffsetDateTime;

/// Milliseconds since the unix epoch; 0 if the clock is before it.
pub fn now_unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn utc(unix_ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(unix_ms) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// `2026-11-22T18:45:01.123Z` (UTC, milliseconds).
pub fn rfc3339_ms(unix_ms: i64) -> String {
    let format =
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
    utc(unix_ms).format(format).unwrap_or_default()
}

/// `2024-05-01T12:00:00Z` (UTC, seconds).
pub fn rfc3339(unix_ms: i64) -> String {
    let format = format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    utc(unix_ms).format(format).unwrap_or_default()
}

/// An RFC 3339 time (Docker's `StartedAt`, any offset, up to nanoseconds);
/// `None` for malformed text and for times before the unix epoch (Docker's
/// zero time, `0001-01-01T00:00:00Z`, means "never").
pub fn parse_rfc3339(text: &str) -> Option<SystemTime> {
    let t = OffsetDateTime::parse(text, &Rfc3339).ok()?;
    let nanos = u64::try_from(t.unix_timestamp_nanos()).ok()?;
    UNIX_EPOCH.checked_add(Duration::from_nanos(nanos))
}

/// `90s`, `15m`, `1h`, `7d` (or plain seconds) as seconds; zero is refused.
pub fn parse_duration_secs(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (digits, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("invalid duration `{s}`: use e.g. 90s, 15m, 1h, 7d"))?;
    let mul = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("invalid duration `{s}`: use e.g. 90s, 15m, 1h, 7d")),
    };
    let secs = n
        .checked_mul(mul)
        .ok_or_else(|| format!("duration `{s}` is too long"))?;
    if secs == 0 {
        return Err(format!("duration `{s}` must be longer than zero"));
    }
    Ok(secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_formats_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_709_210_096_000), "2024-02-29T12:34:56Z");
        assert_eq!(rfc3339_ms(1_709_210_096_007), "2024-02-29T12:34:56.007Z");
        assert_eq!(rfc3339_ms(-1), "1969-12-31T23:59:59.999Z");
    }

    #[test]
    fn engine_timestamps_parse_and_zero_time_does_not() {
        let t = parse_rfc3339("2024-05-01T12:00:10.5Z").unwrap();
        let secs = t.duration_since(UNIX_EPOCH).unwrap();
        assert_eq!(secs, Duration::new(1_714_564_810, 500_000_000));
        let with_offset = parse_rfc3339("2024-05-01T14:00:10.5+02:00").unwrap();
        assert_eq!(t, with_offset);
        let nanos = parse_rfc3339("2024-05-01T12:00:10.123456789Z").unwrap();
        assert_eq!(
            nanos.duration_since(UNIX_EPOCH).unwrap().subsec_nanos(),
            123_456_789
        );
        assert_eq!(parse_rfc3339("0001-01-01T00:00:00Z"), None);
        assert_eq!(parse_rfc3339("garbage"), None);
        assert_eq!(parse_rfc3339("2024-13-01T00:00:00Z"), None);
        assert_eq!(parse_rfc3339("2024-05-01T12:00:10.Z"), None);
        assert_eq!(parse_rfc3339("2024-05-01T12:00:10ü"), None);
    }

    #[test]
    fn durations_take_one_unit() {
        assert_eq!(parse_duration_secs("90s"), Ok(90));
        assert_eq!(parse_duration_secs("15m"), Ok(900));
        assert_eq!(parse_duration_secs("1h"), Ok(3600));
        assert_eq!(parse_duration_secs("7d"), Ok(604_800));
        assert_eq!(parse_duration_secs("30"), Ok(30));
        assert!(parse_duration_secs("1w").is_err());
        assert!(parse_duration_secs("h").is_err());
        assert!(parse_duration_secs("0s").is_err());
    }
}
