//! Scalar value syntaxes of the config language: durations (`250ms`, `5s`, `2h`), sizes
//! (`2500k`, `2.5M`) and socket addresses (`0.0.0.0:5080`, `[::1]:0`).
//!
//! Each parser takes the raw YAML scalar and returns the typed value or a message that says what
//! was expected; the caller attaches the file position and the key name.

use std::net::SocketAddr;
use std::time::Duration;

/// Parses a duration: a number followed by a unit (`ms`, `s`, `m`, `h`, `d`). A fractional
/// number is allowed (`1.5s`). A bare number is refused: the unit is never guessed.
pub fn parse_duration(raw: &str) -> Result<Duration, String> {
    let text = raw.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| format!("invalid duration `{raw}`: missing unit (use ms, s, m, h or d)"))?;
    let (number, unit) = text.split_at(split);
    let value: f64 = number.parse().map_err(|_| {
        format!("invalid duration `{raw}`: expected a number then a unit, e.g. 250ms, 5s, 2h")
    })?;
    let scale = match unit {
        "ms" => 0.001,
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        "d" => 86400.0,
        _ => {
            return Err(format!(
                "invalid duration `{raw}`: unknown unit `{unit}` (use ms, s, m, h or d)"
            ));
        }
    };
    let seconds = value * scale;
    // Ten years is far beyond any timeout or interval this server has; it also keeps the
    // conversion below clear of float overflow.
    if !seconds.is_finite() || seconds > 315_360_000.0 {
        return Err(format!("invalid duration `{raw}`: too large"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// Parses a size or bit rate: a number with an optional decimal suffix `k` (1000), `M` (10^6)
/// or `G` (10^9). `2500k` = 2 500 000, `2.5M` = 2 500 000. Binary suffixes `Ki`, `Mi`, `Gi`
/// (1024-based) are accepted for byte sizes.
pub fn parse_size(raw: &str) -> Result<u64, String> {
    let text = raw.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("invalid size `{raw}`: expected a number with an optional k, M or G suffix, e.g. 2500k, 2.5M"))?;
    let scale: f64 = match suffix {
        "" => 1.0,
        "k" | "K" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        _ => {
            return Err(format!(
                "invalid size `{raw}`: unknown suffix `{suffix}` (use k, M, G, Ki, Mi or Gi)"
            ));
        }
    };
    let total = (value * scale).round();
    if !total.is_finite() || total > 1e15 {
        return Err(format!("invalid size `{raw}`: too large"));
    }
    // The bound above keeps the value exactly representable, so the cast cannot truncate.
    Ok(total as u64)
}

/// Parses `IP:PORT` (IPv6 in brackets). Port 0 means "let the OS pick"; the node reports the
/// real port on its readiness line.
pub fn parse_addr(raw: &str) -> Result<SocketAddr, String> {
    raw.trim().parse().map_err(|_| {
        format!("invalid address `{raw}`: expected IP:PORT, e.g. 0.0.0.0:5080 or [::1]:0")
    })
}

/// Formats a duration the way the config language writes it (for messages and the stats page).
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms.is_multiple_of(3_600_000) && ms > 0 {
        format!("{}h", ms / 3_600_000)
    } else if ms.is_multiple_of(1000) && ms > 0 {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("3m").unwrap(), Duration::from_secs(180));
        assert!(parse_duration("5").unwrap_err().contains("missing unit"));
        assert!(parse_duration("5x").unwrap_err().contains("unknown unit"));
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("-1s").is_err());
        assert!(
            parse_duration("99999999999h")
                .unwrap_err()
                .contains("too large")
        );
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("2500k").unwrap(), 2_500_000);
        assert_eq!(parse_size("2.5M").unwrap(), 2_500_000);
        assert_eq!(parse_size("300k").unwrap(), 300_000);
        assert_eq!(parse_size("64Ki").unwrap(), 65_536);
        assert_eq!(parse_size("1234").unwrap(), 1234);
        assert!(parse_size("12q").unwrap_err().contains("unknown suffix"));
        assert!(parse_size("k").is_err());
    }

    #[test]
    fn addresses() {
        assert_eq!(parse_addr("127.0.0.1:0").unwrap().port(), 0);
        assert!(parse_addr("[::1]:5080").unwrap().is_ipv6());
        assert!(parse_addr("localhost:80").is_err());
        assert!(parse_addr("1.2.3.4").is_err());
    }

    #[test]
    fn duration_formatting() {
        assert_eq!(format_duration(Duration::from_secs(7200)), "2h");
        assert_eq!(format_duration(Duration::from_secs(5)), "5s");
        assert_eq!(format_duration(Duration::from_millis(250)), "250ms");
    }
}
