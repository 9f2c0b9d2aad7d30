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
pub fn format_ms(ms: i64) -> String {
    match Timestamp::from_millisecond(ms) {
        Ok(t) => format!("{t:.3}"),
        Err(_) => ms.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_parse_with_offsets_and_precision() {
        assert_eq!(timestamp_ms("1970-01-01T00:00:01Z"), Some(1000));
        assert_eq!(timestamp_ms("1970-01-01T01:00:01.5+01:00"), Some(1500));
        assert_eq!(timestamp_ms("yesterday"), None);
        assert_eq!(format_ms(1500), "1970-01-01T00:00:01.500Z");
    }
}
