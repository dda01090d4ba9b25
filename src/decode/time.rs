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
    if let Some(ms) = rfc3339(s.as_bytes()) {
        return Some(ms);
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
///
/// Written out by hand for years 0 to 9999 (every incident update formats a few hundred
/// of these; chrono's `format` parses its pattern each time and cost about as much as
/// the rest of the update), with chrono for the rest.
pub fn format_ms(ms: i64) -> String {
    const MIN: i64 = -62_167_219_200_000; // 0000-01-01T00:00:00Z
    const MAX: i64 = 253_402_300_800_000; // 10000-01-01T00:00:00Z
    if !(MIN..MAX).contains(&ms) {
        return match DateTime::from_timestamp_millis(ms) {
            Some(d) => d.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
            None => ms.to_string(),
        };
    }
    let (days, ms_of_day) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    let (y, m, d) = civil_from_days(days);
    let (h, min, sec, milli) = (
        ms_of_day / 3_600_000,
        ms_of_day / 60_000 % 60,
        ms_of_day / 1000 % 60,
        ms_of_day % 1000,
    );
    let mut b = *b"0000-00-00T00:00:00.000Z";
    let mut put = |at: usize, width: usize, mut v: i64| {
        for i in (at..at + width).rev() {
            b[i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, 4, y);
    put(5, 2, m);
    put(8, 2, d);
    put(11, 2, h);
    put(14, 2, min);
    put(17, 2, sec);
    put(20, 3, milli);
    b.iter().map(|&c| c as char).collect()
}

/// The usual RFC 3339 form, `YYYY-MM-DDTHH:MM:SS[.f{1,9}](Z|±HH:MM)`, read without
/// chrono: most records carry their time so, and chrono's general parser was 2% of
/// `lookout bench`'s CPU. `None` for anything else (chrono then decides), including
/// leap seconds and dates that do not exist.
fn rfc3339(b: &[u8]) -> Option<i64> {
    let num = |at: usize, width: usize| -> Option<i64> {
        let digits = b.get(at..at + width)?;
        digits
            .iter()
            .try_fold(0i64, |n, &d| d.is_ascii_digit().then(|| n * 10 + i64::from(d - b'0')))
    };
    let at = |i: usize, c: u8| b.get(i) == Some(&c);
    if !(at(4, b'-') && at(7, b'-') && at(10, b'T') && at(13, b':') && at(16, b':')) {
        return None;
    }
    let (y, m, d) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    let (h, min, sec) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
    let leap = y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
    let days_in_month = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    if !(1..=days_in_month).contains(&d) || h > 23 || min > 59 || sec > 59 {
        return None;
    }
    let mut i = 19;
    let mut milli = 0;
    if at(i, b'.') {
        let digits = b[i + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
        if !(1..=9).contains(&digits) {
            return None;
        }
        milli = b[i + 1..i + 1 + digits.min(3)]
            .iter()
            .fold(0, |n, &c| n * 10 + i64::from(c - b'0'))
            * 10i64.pow(3 - digits.min(3) as u32);
        i += 1 + digits;
    }
    let offset_min = match b.get(i..)? {
        b"Z" => 0,
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let (oh, om) = (num(i + 1, 2)?, num(i + 4, 2)?);
            if oh > 23 || om > 59 {
                return None;
            }
            if *sign == b'+' {
                oh * 60 + om
            } else {
                -(oh * 60 + om)
            }
        }
        _ => return None,
    };
    let days = days_from_civil(y, m, d);
    Some(((days * 24 + h) * 60 + min - offset_min) * 60_000 + sec * 1000 + milli)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Year, month, day of a day count since 1970-01-01 (proleptic Gregorian; Howard
/// Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_as_chrono_does() {
        let chrono = |ms: i64| {
            DateTime::from_timestamp_millis(ms)
                .unwrap()
                .format("%Y-%m-%dT%H:%M:%S%.3fZ")
                .to_string()
        };
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut cases = vec![
            0,
            -1,
            1,
            951_782_400_000,
            4_107_542_400_000,
            -62_167_219_200_000,
            253_402_300_799_999,
        ];
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            cases.push((x % 316_000_000_000_000) as i64 - 62_167_219_200_000);
        }
        for ms in cases {
            assert_eq!(format_ms(ms), chrono(ms), "{ms}");
        }
        assert_eq!(format_ms(253_402_300_800_000), chrono(253_402_300_800_000));
    }

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

    /// The hand-written RFC 3339 reader agrees with chrono on every string it accepts,
    /// and accepts the usual forms.
    #[test]
    fn rfc3339_agrees_with_chrono() {
        let years = [
            "0000", "0001", "1969", "1970", "1999", "2000", "2024", "2025", "2100", "9999", "20x5",
        ];
        let months = ["00", "01", "02", "04", "12", "13"];
        let days = ["00", "01", "28", "29", "30", "31", "32"];
        let times = [
            "T00:00:00",
            "T23:59:59",
            "T24:00:00",
            "T12:60:00",
            "T12:00:60",
            "t12:00:00",
            " 12:00:00",
            "T1:00:00",
        ];
        let fractions = [
            "",
            ".",
            ".1",
            ".12",
            ".123",
            ".1234",
            ".999999",
            ".123456789",
            ".1234567891",
            ",5",
        ];
        let zones = [
            "Z", "z", "+00:00", "-00:00", "+05:30", "-08:00", "+23:59", "+24:00", "+0530", "", "Z ", "+05:3",
        ];
        let (mut accepted, mut total) = (0, 0);
        for y in years {
            for m in months {
                for d in days {
                    for t in times {
                        for f in fractions {
                            for z in zones {
                                let s = format!("{y}-{m}-{d}{t}{f}{z}");
                                total += 1;
                                let Some(ms) = rfc3339(s.as_bytes()) else { continue };
                                accepted += 1;
                                let chrono = DateTime::parse_from_rfc3339(&s).map(|d| d.timestamp_millis());
                                assert_eq!(Ok(ms), chrono, "{s}");
                            }
                        }
                    }
                }
            }
        }
        assert!(accepted > 10_000, "{accepted} of {total}");
        for s in [
            "2025-03-04T16:33:24.801Z",
            "2025-03-04T17:33:24+01:00",
            "1969-12-31T23:59:59.999999999Z",
        ] {
            assert!(rfc3339(s.as_bytes()).is_some(), "{s}");
        }
    }

    #[test]
    fn refuses_nonsense() {
        assert_eq!(parse_str("yesterday"), None);
        assert_eq!(parse_str(""), None);
        assert_eq!(from_epoch(f64::NAN), None);
        assert_eq!(from_epoch(-5.0), None);
    }
}
