//! Prometheus text exposition samples:
//! `http_requests_total{service="cart",code="500"} 1027 1741106004801`.
//! `# HELP` / `# TYPE` lines are skipped; the optional timestamp is in milliseconds.

use super::{json, Context, DecodeError, MetricRow, Pairs};

pub fn looks_like(s: &str) -> bool {
    let first = s
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .unwrap_or("");
    let name_end = first
        .find(|c: char| c == '{' || c.is_whitespace())
        .unwrap_or(first.len());
    name_end > 0
        && first[..name_end]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':')
        && first.len() > name_end
}

pub fn decode<'a>(s: &'a str, ctx: &Context) -> Result<Vec<MetricRow<'a>>, DecodeError> {
    let mut out = Vec::new();
    for (n, line) in s.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        out.push(sample(line, ctx).map_err(|e| DecodeError::Invalid(format!("prometheus line {}: {e}", n + 1)))?);
    }
    Ok(out)
}

fn sample<'a>(line: &'a str, ctx: &Context) -> Result<MetricRow<'a>, String> {
    let name_end = line.find(|c: char| c == '{' || c.is_whitespace()).ok_or("no value")?;
    let name = &line[..name_end];
    if name.is_empty() {
        return Err("empty metric name".into());
    }
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(inner) = rest.strip_prefix('{') {
        let (pairs, after) = parse_labels(inner)?;
        labels = pairs;
        rest = after;
    }
    let mut parts = rest.split_whitespace();
    let v = parts.next().ok_or("no value")?;
    let value = match v {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        _ => v.parse::<f64>().map_err(|_| format!("bad value {v:?}"))?,
    };
    let ts = match parts.next() {
        Some(t) => t.parse::<i64>().map_err(|_| format!("bad timestamp {t:?}"))?,
        None => ctx.fallback_ts().map_err(|e| e.to_string())?,
    };
    if parts.next().is_some() {
        return Err("trailing text after the timestamp".into());
    }
    labels.sort();
    Ok(MetricRow {
        ts,
        name: name.into(),
        value,
        service: json::label(&labels, &["service", "job", "app"]),
        host: json::label(&labels, &["host", "hostname", "instance"]),
        labels,
    })
}

/// Reads `k="v",k2="v2"}` and returns the pairs and the text after `}`.
fn parse_labels(s: &str) -> Result<(Pairs<'_>, &str), String> {
    let mut out = Vec::new();
    let mut chars = s.char_indices().peekable();
    loop {
        while chars.peek().is_some_and(|(_, c)| c.is_whitespace() || *c == ',') {
            chars.next();
        }
        match chars.peek() {
            Some(&(i, '}')) => return Ok((out, &s[i + 1..])),
            None => return Err("unterminated label set".into()),
            _ => {}
        }
        let start = chars.peek().map(|(i, _)| *i).unwrap_or(0);
        let mut eq = None;
        for (i, c) in chars.by_ref() {
            if c == '=' {
                eq = Some(i);
                break;
            }
        }
        let eq = eq.ok_or("label without =")?;
        let key = s[start..eq].trim();
        let Some((quote, '"')) = chars.next() else {
            return Err(format!("label {key} value is not quoted"));
        };
        let value =
            super::read_quoted(s, quote + 1, &mut chars).ok_or_else(|| format!("label {key} value is not closed"))?;
        out.push((key.into(), value));
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::ctx;
    use super::*;

    #[test]
    fn samples_with_and_without_labels() {
        let s =
            "# HELP x y\n# TYPE up gauge\nup{job=\"cart\",instance=\"cart-1:9100\"} 1 1741106004801\nqueue_depth 17\n";
        assert!(looks_like(s));
        let rows = decode(s, &ctx()).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].service.as_deref(), Some("cart"));
        assert_eq!(rows[0].host.as_deref(), Some("cart-1:9100"));
        assert_eq!(rows[0].ts, 1_741_106_004_801);
        assert_eq!(
            (rows[1].name.as_ref(), rows[1].value, rows[1].ts),
            ("queue_depth", 17.0, 1_000)
        );
    }

    #[test]
    fn escaped_label_values() {
        let rows = decode(r#"m{path="a\"b,c"} 2"#, &ctx()).unwrap();
        assert_eq!(rows[0].labels, vec![("path".into(), "a\"b,c".into())]);
    }

    #[test]
    fn broken_samples() {
        assert!(decode("m{a=\"1\" 2", &ctx()).is_err());
        assert!(decode("m abc", &ctx()).is_err());
    }
}
