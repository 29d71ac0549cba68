//! `EXT-X-PROGRAM-DATE-TIME` values: unix milliseconds to ISO 8601 UTC with milliseconds.
//!
//! The civil-date conversion is Howard Hinnant's `civil_from_days` algorithm (proleptic
//! Gregorian calendar, exact for every `i64` day count used here); the caller supplies the
//! instant, so nothing reads a clock.

use std::fmt::Write;

/// Milliseconds per day.
const MS_PER_DAY: i64 = 86_400_000;

/// Converts days since 1970-01-01 into (year, month 1..=12, day 1..=31).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // day of era, 0..=146096
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365; // year of era, 0..=399
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // day of year from March 1, 0..=365
    let mp = (5 * doy + 2) / 153; // month from March, 0..=11
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Appends `unix_ms` as e.g. `2026-11-27T06:50:53.123Z`.
pub fn write_program_date_time(unix_ms: i64, out: &mut String) {
    let days = unix_ms.div_euclid(MS_PER_DAY);
    let ms_of_day = unix_ms.rem_euclid(MS_PER_DAY);
    let (year, month, day) = civil_from_days(days);
    let (hour, minute) = (ms_of_day / 3_600_000, ms_of_day / 60_000 % 60);
    let (second, milli) = (ms_of_day / 1_000 % 60, ms_of_day % 1_000);
    // Writing into a String cannot fail.
    let _ = write!(
        out,
        "{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}.{milli:03}Z"
    );
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
        assert_eq!(format(-1), "1969-12-31T23:59:59.999Z");
    }

    #[test]
    fn agrees_with_day_counting_over_centuries() {
        // Walk day by day from 1900 to 2200 and check the date advances like a calendar.
        let leap = |y: i64| (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
        let (mut y, mut m, mut d) = (1900, 1, 1);
        for days in -25_567..(-25_567 + 300 * 366) {
            assert_eq!(civil_from_days(days), (y, m, d), "day {days}");
            let month_len = match m {
                2 if leap(y) => 29,
                2 => 28,
                4 | 6 | 9 | 11 => 30,
                _ => 31,
            };
            d += 1;
            if d > month_len {
                (d, m) = (1, m + 1);
                if m > 12 {
                    (m, y) = (1, y + 1);
                }
            }
        }
    }

    #[test]
    fn extreme_values_do_not_panic() {
        assert!(!format(i64::MAX).is_empty());
        assert!(!format(i64::MIN).is_empty());
    }
}
