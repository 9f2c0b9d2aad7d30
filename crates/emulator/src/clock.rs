//! Wall-clock time as HubSpot writes it: epoch milliseconds and ISO 8601 with milliseconds;
//! and the adjustable clock token expiry reads.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// `2024-05-01T09:30:00.123Z`.
pub fn iso8601(epoch_ms: i64) -> String {
    let days = epoch_ms.div_euclid(86_400_000);
    let ms_of_day = epoch_ms.rem_euclid(86_400_000);
    let (y, m, d) = civil_from_days(days);
    let (h, rest) = (ms_of_day / 3_600_000, ms_of_day % 3_600_000);
    let (min, rest) = (rest / 60_000, rest % 60_000);
    let (s, ms) = (rest / 1000, rest % 1000);
    format!("{y:04}-{m:02}-{d:02}T{h:02}:{min:02}:{s:02}.{ms:03}Z")
}

/// Days since 1970-01-01 of midnight UTC starting the day that contains `epoch_ms`.
pub fn epoch_day(epoch_ms: i64) -> i64 {
    epoch_ms.div_euclid(86_400_000)
}

/// Epoch milliseconds of `2024-05-01`, `2024-05-01T09:30:00Z` or `2024-05-01T09:30:00.123Z`
/// (UTC; a `+00:00` suffix is accepted too), or of a plain millisecond count.
pub fn parse_instant_ms(s: &str) -> Option<i64> {
    if let Ok(ms) = s.parse::<i64>() {
        return Some(ms);
    }
    let s = s.trim_end_matches('Z').trim_end_matches("+00:00");
    let (date, time) = s.split_once('T').unwrap_or((s, "00:00:00"));
    let mut d = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    if !(1..=12).contains(&m) || !(1..=31).contains(&day) {
        return None;
    }
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let mut t = hms.splitn(3, ':').map(|p| p.parse::<i64>().ok());
    let (h, min, sec) = (t.next()??, t.next().unwrap_or(Some(0))?, t.next().unwrap_or(Some(0))?);
    let ms: i64 = format!("{frac:0<3}").get(..3)?.parse().ok()?;
    Some(days_from_civil(y, m, day) * 86_400_000 + h * 3_600_000 + min * 60_000 + sec * 1000 + ms)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Proleptic Gregorian date of a day count (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// The emulator's clock for token expiry: wall-clock time plus an offset that
/// `POST /_emulator/clock/advance` moves forward, so tests can expire tokens without waiting.
#[derive(Default)]
pub struct Clock {
    offset_ms: AtomicI64,
}

impl Clock {
    pub fn now_ms(&self) -> i64 {
        now_ms() + self.offset_ms.load(Ordering::SeqCst)
    }

    pub fn advance(&self, ms: i64) -> i64 {
        self.offset_ms.fetch_add(ms, Ordering::SeqCst) + ms
    }

    pub fn offset_ms(&self) -> i64 {
        self.offset_ms.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso8601(1_564_113_600_000), "2019-07-26T04:00:00.000Z");
        assert_eq!(iso8601(1_709_251_199_999), "2024-02-29T23:59:59.999Z");
        assert_eq!(iso8601(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn parses_what_it_formats() {
        for ms in [0, 1_564_113_600_000, 1_709_251_199_999, 951_782_400_000, 1_893_456_000_123] {
            assert_eq!(parse_instant_ms(&iso8601(ms)), Some(ms));
        }
        assert_eq!(parse_instant_ms("2019-07-26"), Some(1_564_099_200_000));
        assert_eq!(parse_instant_ms("2019-07-26T04:00:00Z"), Some(1_564_113_600_000));
        assert_eq!(parse_instant_ms("1564113600000"), Some(1_564_113_600_000));
        assert_eq!(parse_instant_ms("soon"), None);
        assert_eq!(parse_instant_ms("2019-13-01"), None);
    }

    #[test]
    fn the_clock_moves_forward_on_request() {
        let clock = Clock::default();
        let before = clock.now_ms();
        assert_eq!(clock.advance(3_600_000), 3_600_000);
        assert!(clock.now_ms() >= before + 3_600_000);
        assert_eq!(clock.offset_ms(), 3_600_000);
    }
}
