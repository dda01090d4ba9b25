//! Influx line protocol (Telegraf's default Kafka output):
//! `measurement,tag=v,tag2=v field=1.5,count=3i,ok=true 1741106004801000000`.
//!
//! Each numeric or boolean field is one sample named `measurement_field` (or
//! `measurement` for a field called `value`, as Telegraf's Prometheus naming does).
//! String fields are kept as labels. Timestamps are nanoseconds unless their magnitude
//! says otherwise; a payload can hold several lines.

use std::borrow::Cow;

use super::{json, time, Context, DecodeError, MetricRow, Text};

/// Influx when the first line has a fields part with `=` after the series part.
pub fn looks_like(s: &str) -> bool {
    let first = s
        .lines()
        .find(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .unwrap_or("");
    let parts = split_unescaped(first.trim(), ' ');
    parts.len() >= 2 && parts[1].contains('=') && !parts[0].contains('{')
}

pub fn decode<'a>(s: &'a str, ctx: &Context) -> Result<Vec<MetricRow<'a>>, DecodeError> {
    let mut out = Vec::new();
    for (n, line) in s.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        decode_line(line, ctx, &mut out).map_err(|e| DecodeError::Invalid(format!("influx line {}: {e}", n + 1)))?;
    }
    Ok(out)
}

fn decode_line<'a>(line: &'a str, ctx: &Context, out: &mut Vec<MetricRow<'a>>) -> Result<(), String> {
    let parts = split_unescaped(line, ' ');
    if parts.len() < 2 || parts.len() > 3 {
        return Err(format!(
            "expected `series fields [timestamp]`, got {} parts",
            parts.len()
        ));
    }
    let series = split_unescaped(parts[0], ',');
    let measurement = unescape(series[0]);
    if measurement.is_empty() {
        return Err("empty measurement".into());
    }
    let mut labels = Vec::new();
    for tag in &series[1..] {
        let kv = split_unescaped(tag, '=');
        if kv.len() != 2 {
            return Err(format!("bad tag {tag:?}"));
        }
        labels.push((unescape(kv[0]), unescape(kv[1])));
    }
    let ts = match parts.get(2) {
        Some(t) => {
            let n: f64 = t.parse().map_err(|_| format!("bad timestamp {t:?}"))?;
            time::from_epoch(n).ok_or_else(|| format!("bad timestamp {t:?}"))?
        }
        None => ctx.fallback_ts().map_err(|e| e.to_string())?,
    };
    let mut values = Vec::new();
    for field in split_unescaped(parts[1], ',') {
        let kv = split_unescaped(field, '=');
        if kv.len() != 2 {
            return Err(format!("bad field {field:?}"));
        }
        let (k, v) = (unescape(kv[0]), kv[1]);
        if let Some(q) = v.strip_prefix('"') {
            labels.push((k, unquote(q.trim_end_matches('"'))));
            continue;
        }
        let num = match v {
            "t" | "T" | "true" | "True" | "TRUE" => 1.0,
            "f" | "F" | "false" | "False" | "FALSE" => 0.0,
            _ => v
                .trim_end_matches(['i', 'u'])
                .parse::<f64>()
                .map_err(|_| format!("field {k} has non-numeric value {v:?}"))?,
        };
        values.push((k, num));
    }
    if values.is_empty() {
        return Err("no numeric field".into());
    }
    labels.sort();
    let service = json::label(&labels, &["service", "job", "app"]);
    let host = json::label(&labels, &["host", "hostname", "instance"]);
    for (field, value) in values {
        let name = if field == "value" {
            measurement.clone()
        } else {
            format!("{measurement}_{field}").into()
        };
        out.push(MetricRow {
            ts,
            name,
            value,
            service: service.clone(),
            host: host.clone(),
            labels: labels.clone(),
        });
    }
    Ok(())
}

/// Splits on `sep` where it is not escaped by `\` or inside double quotes.
fn split_unescaped(s: &str, sep: char) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut start, mut escaped, mut quoted) = (0, false, false);
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == '"' {
            quoted = !quoted;
        } else if c == sep && !quoted {
            out.push(&s[start..i]);
            start = i + c.len_utf8();
        }
    }
    out.push(&s[start..]);
    out
}

fn unescape(s: &str) -> Text<'_> {
    if !s.contains('\\') {
        return Cow::Borrowed(s);
    }
    s.replace("\\ ", " ").replace("\\,", ",").replace("\\=", "=").into()
}

/// A string field's value between its quotes, with `\"` unescaped.
fn unquote(s: &str) -> Text<'_> {
    if !s.contains('\\') {
        return Cow::Borrowed(s);
    }
    s.replace("\\\"", "\"").into()
}

#[cfg(test)]
mod tests {
    use super::super::tests::ctx;
    use super::*;

    #[test]
    fn telegraf_lines() {
        let s = "cpu,host=cart-1,service=cart usage_user=12.5,usage_idle=80i 1741106004801000000\nmem,host=a value=3";
        assert!(looks_like(s));
        let rows = decode(s, &ctx()).unwrap();
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0].name, "cpu_usage_user");
        assert_eq!(rows[0].ts, 1_741_106_004_801);
        assert_eq!(rows[0].service.as_deref(), Some("cart"));
        assert_eq!(rows[1].value, 80.0);
        assert_eq!(rows[2].name, "mem");
        assert_eq!(rows[2].ts, 1_000, "Kafka timestamp when the line has none");
    }

    #[test]
    fn escapes_and_strings() {
        let rows = decode(r#"disk\ io,path=/var\,log ok=true,msg="a b" 1741106004"#, &ctx()).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].name, "disk io_ok");
        assert!(rows[0].labels.contains(&("msg".into(), "a b".into())));
        assert!(rows[0].labels.contains(&("path".into(), "/var,log".into())));
    }

    #[test]
    fn bad_values_are_errors() {
        assert!(decode("cpu usage=abc", &ctx()).is_err());
        assert!(decode("cpu", &ctx()).is_err());
    }
}
