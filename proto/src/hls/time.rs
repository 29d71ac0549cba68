//! `EXT-X-PROGRAM-DATE-TIME` values: unix milliseconds to ISO 8601 UTC with milliseconds
//! (RFC 3339, through `humantime`); the caller supplies the instant, so nothing reads a clock.

use std::fmt::Write;
use std::time::{Duration, UNIX_EPOCH};

/// The last millisecond of year 9999, the last RFC 3339 can write.
const MAX_UNIX_MS: i64 = 253_402_300_799_999;

/// Appends `unix_ms` as e.g. `2026-11-27T06:50:53.123Z`. Instants outside years 1970-9999 (a
/// clock gone wrong) are written as the nearest one inside.
pub fn write_program_date_time(unix_ms: i64, out: &mut String) {
    let ms = u64::try_from(unix_ms.clamp(0, MAX_UNIX_MS)).unwrap_or(0);
    let at = UNIX_EPOCH + Duration::from_millis(ms);
    // Within that range humantime always writes, and writing into a String cannot fail.
    let _ = write!(out, "{}", humantime::format_rfc3339_millis(at));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn format(unix_ms: i64) -> String {
        let mut out = String::new();
        write_program_date_time(unix_ms, &mut out);
        out
    }

    #[test]
    fn formats_known_instants() {
        assert_eq!(format(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(format(1_795_762_253_123), "2026-11-27T06:50:53.123Z");
        assert_eq!(format(951_782_400_000), "2000-02-29T00:00:00.000Z"); // leap day of a 400-year
        assert_eq!(format(4_107_542_399_999), "2100-02-28T23:59:59.999Z"); // 2100 is no leap year
        assert_eq!(format(-1), "1970-01-01T00:00:00.000Z");
        assert_eq!(format(i64::MAX), "9999-12-31T23:59:59.999Z");
    }
}
