//! Timestamps as the inputs write them, to epoch milliseconds (UTC).
//!
//! Accepted: RFC 3339 (with or without fraction, `Z` or an offset, `T` or a space), a
//! naive `YYYY-MM-DD HH:MM:SS[.fff]` read as UTC, and epoch numbers in seconds,
//! milliseconds, microseconds or nanoseconds, told apart by magnitude as most tools do.

use chrono::{DateTime, NaiveDateTime};

/// Reads an epoch number in s / ms / µs / ns.
pub fn from_epoch(x: f64) -> Option<i64> {
    if !x.is_finite() || x < 0.0 {
        return None;
    }
    let ms = if x > 1e17 {
        x / 1e6
    } else if x > 1e14 {
        x / 1e3
    } else if x > 1e11 {
        x
    } else {
        x * 1e3
    };
    Some(ms.round() as i64)
}

/// Reads a timestamp written as text.
pub fn parse_str(s: &str) -> Option<i64> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    if s.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return s.parse::<f64>().ok().and_then(from_epoch);
    }
    if let Ok(d) = DateTime::parse_from_rfc3339(s) {
        return Some(d.timestamp_millis());
    }
    if s.len() > 10 && s.as_bytes()[10] == b' ' {
        let t = s.replacen(' ', "T", 1);
        if let Ok(d) = DateTime::parse_from_rfc3339(&t) {
            return Some(d.timestamp_millis());
        }
    }
    const NAIVE: [&str; 6] = [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S,%f",
        "%Y/%m/%d %H:%M:%S%.f",
        "%d/%b/%Y:%H:%M:%S %z",
        "%a %b %d %H:%M:%S %Y",
    ];
    for f in NAIVE {
        if let Ok(d) = NaiveDateTime::parse_from_str(s, f) {
            return Some(d.and_utc().timestamp_millis());
        }
        if let Ok(d) = DateTime::parse_from_str(s, f) {
            return Some(d.timestamp_millis());
        }
    }
    None
}

/// Reads a JSON timestamp value: a string or a number.
pub fn parse_json(v: &super::value::Value) -> Option<i64> {
    match v {
        super::value::Value::String(s) => parse_str(s),
        super::value::Value::Number(n) => n.as_f64().and_then(from_epoch),
        _ => None,
    }
}

/// Formats epoch milliseconds as RFC 3339 with milliseconds and `Z`.
pub fn format_ms(ms: i64) -> String {
    match DateTime::from_timestamp_millis(ms) {
        Some(d) => d.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
        None => ms.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_every_documented_form() {
        let want = 1_741_106_004_801; // 2025-03-04T16:33:24.801Z
        assert_eq!(parse_str("2025-03-04T16:33:24.801Z"), Some(want));
        assert_eq!(parse_str("2025-03-04 16:33:24.801Z"), Some(want));
        assert_eq!(parse_str("2025-03-04T17:33:24.801+01:00"), Some(want));
        assert_eq!(parse_str("2025-03-04 16:33:24.801"), Some(want));
        assert_eq!(parse_str("1741106004.801"), Some(want));
        assert_eq!(parse_str("1741106004801"), Some(want));
        assert_eq!(parse_str("1741106004801000"), Some(want));
        assert_eq!(parse_str("1741106004801000000"), Some(want));
        assert_eq!(from_epoch(1_741_106_004.0), Some(1_741_106_004_000));
        assert_eq!(format_ms(want), "2025-03-04T16:33:24.801Z");
    }

    #[test]
    fn refuses_nonsense() {
        assert_eq!(parse_str("yesterday"), None);
        assert_eq!(parse_str(""), None);
        assert_eq!(from_epoch(f64::NAN), None);
        assert_eq!(from_epoch(-5.0), None);
    }
}
