//! Time as the receiver keeps it: epoch milliseconds (now, and of HubSpot's RFC 3339
//! timestamps).

use k8s_openapi::jiff::Timestamp;

/// This host's clock in epoch milliseconds.
pub fn now_ms() -> i64 {
    Timestamp::now().as_millisecond()
}

/// Epoch milliseconds of an RFC 3339 timestamp such as HubSpot's `2026-11-26T18:55:24.123Z`.
pub fn timestamp_ms(text: &str) -> Option<i64> {
    text.parse::<Timestamp>().ok().map(|t| t.as_millisecond())
}

/// RFC 3339 (UTC, milliseconds) of epoch milliseconds, the way HubSpot writes `updatedAt`.
/// Always a time: one before year 0, which RFC 3339 cannot write, is the start of year 0, and
/// one after the last time the clock library knows (late in 9999) is that time.
pub fn format_ms(ms: i64) -> String {
    let earliest = Timestamp::from_second(YEAR_0_SECOND).expect("year 0 is a time");
    let t = Timestamp::from_millisecond(ms).unwrap_or(if ms < 0 { earliest } else { Timestamp::MAX });
    format!("{:.3}", t.max(earliest))
}

/// 0000-01-01T00:00:00Z, the first time RFC 3339 writes.
const YEAR_0_SECOND: i64 = -62_167_219_200;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_parse_with_offsets_and_precision() {
        assert_eq!(timestamp_ms("1970-01-01T00:00:01Z"), Some(1000));
        assert_eq!(timestamp_ms("1970-01-01T01:00:01.5+01:00"), Some(1500));
        assert_eq!(timestamp_ms("yesterday"), None);
        assert_eq!(format_ms(1500), "1970-01-01T00:00:01.500Z");
        assert!(format_ms(i64::MAX).starts_with("9999-12-"), "{}", format_ms(i64::MAX));
        assert_eq!(format_ms(i64::MIN), "0000-01-01T00:00:00.000Z");
        assert_eq!(format_ms(-62_167_219_200_001), "0000-01-01T00:00:00.000Z");
        for ms in [i64::MAX, i64::MIN] {
            assert!(timestamp_ms(&format_ms(ms)).is_some(), "{}", format_ms(ms));
        }
    }
}
