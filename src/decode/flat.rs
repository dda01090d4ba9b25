//! The common JSON record read without serde: one object on one line whose values are
//! strings without escapes, numbers, booleans or null.
//!
//! Most log and metric records are that shape, and going through `serde_json`'s
//! deserializer cost them a visitor call per token and a UTF-8 check per string (the JSON
//! parse was 15% of the CPU of `lookout bench --streams logs`). Here the payload is
//! checked once for escapes, control characters and UTF-8, then scanned in one pass.
//! Anything else (nesting, escapes, line breaks, an array of records, malformed JSON) is
//! declined with `None` and read by `serde_json` as before, which also words the errors:
//! this path only has to agree with `serde_json` on what it accepts, and the tests hold
//! it to that.

use std::borrow::Cow;

use serde_json::Number;

use super::value::{Map, Value};

/// The payload as one flat object, or `None` when it is anything else.
pub fn object(payload: &[u8]) -> Option<Map<'_>> {
    object_of(std::str::from_utf8(payload).ok()?)
}

/// [`object`] of a payload already checked as UTF-8.
pub fn object_of(s: &str) -> Option<Map<'_>> {
    let b = s.as_bytes();
    // escapes and control characters (also pretty-printing's line breaks) are serde's
    // (a fold, not `any`: without the early exit it runs 32 bytes at a time)
    if b.iter().fold(false, |hit, &c| hit | (c < 0x20) | (c == b'\\')) {
        return None;
    }
    let mut i = expect(b, skip_ws(b, 0), b'{')?;
    let mut pairs = Vec::with_capacity(8);
    i = skip_ws(b, i);
    if b.get(i) == Some(&b'}') {
        i += 1;
    } else {
        loop {
            let (key, at) = string(s, i)?;
            i = expect(b, skip_ws(b, at), b':')?;
            let (value, at) = scalar(s, skip_ws(b, i))?;
            pairs.push((Cow::Borrowed(key), value));
            i = skip_ws(b, at);
            match b.get(i) {
                Some(b',') => i = skip_ws(b, i + 1),
                Some(b'}') => {
                    i += 1;
                    break;
                }
                _ => return None,
            }
        }
    }
    // a repeated key is merged as serde's path merges it
    (skip_ws(b, i) == b.len()).then(|| pairs.into_iter().collect())
}

/// Past the spaces at `i` (the only whitespace left: the others are control characters).
fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while b.get(i) == Some(&b' ') {
        i += 1;
    }
    i
}

/// The position after `c`, when `c` is at `i`.
fn expect(b: &[u8], i: usize, c: u8) -> Option<usize> {
    (b.get(i) == Some(&c)).then_some(i + 1)
}

/// A string at `i` (the payload holds no escapes), and the position after it.
fn string(s: &str, i: usize) -> Option<(&str, usize)> {
    let b = s.as_bytes();
    let start = expect(b, i, b'"')?;
    let end = start + memchr::memchr(b'"', &b[start..])?;
    // `"` is ASCII, so both ends are character boundaries of the checked text
    Some((&s[start..end], end + 1))
}

fn scalar(s: &str, i: usize) -> Option<(Value<'_>, usize)> {
    let b = s.as_bytes();
    let word = |w: &str, v: Value<'static>| b[i..].starts_with(w.as_bytes()).then(|| (v, i + w.len()));
    match *b.get(i)? {
        b'"' => string(s, i).map(|(t, at)| (Value::String(Cow::Borrowed(t)), at)),
        b't' => word("true", Value::Bool(true)),
        b'f' => word("false", Value::Bool(false)),
        b'n' => word("null", Value::Null),
        b'-' | b'0'..=b'9' => {
            let len = b[i..]
                .iter()
                .position(|c| !matches!(c, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'))
                .unwrap_or(b.len() - i);
            // serde_json reads the number itself: the same grammar, the same value
            let n: Number = serde_json::from_str(&s[i..i + len]).ok()?;
            Some((Value::Number(n), i + len))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serde_path(p: &[u8]) -> Option<Map<'_>> {
        match serde_json::from_slice(p) {
            Ok(Value::Object(m)) => Some(m),
            _ => None,
        }
    }

    #[test]
    fn flat_records_are_read_here_as_serde_reads_them() {
        for text in [
            r#"{"ts":"2026-12-07T02:31:19.520Z","service":"payments","host":"payments-1","level":"INFO","message":"GET /api/v1/x 200 31ms","logger":"com.shop.x.Handler"}"#,
            r#"{"name":"cpu","value":0.25,"n":-3,"big":18446744073709551615,"e":1e-7,"E":2.5E+3,"z":-0,"t":true,"f":false,"x":null}"#,
            r#"  { "a" : "b" , "c":1 }  "#,
            r#"{}"#,
            r#"{"k":1,"j":2,"k":3}"#,
            r#"{"ünï":"cödé ✓ 😀","":""}"#,
        ] {
            let ours = object(text.as_bytes()).unwrap_or_else(|| panic!("declined {text}"));
            assert_eq!(Some(&ours), serde_path(text.as_bytes()).as_ref(), "{text}");
            assert!(ours.iter().all(|(_, v)| !matches!(v, Value::String(Cow::Owned(_)))));
        }
    }

    #[test]
    fn everything_else_is_left_to_serde() {
        for text in [
            r#"{"a":"b\"c"}"#,
            r#"{"a\u0041":1}"#,
            r#"{"a":{"b":1}}"#,
            r#"{"a":[1,2]}"#,
            r#"[{"a":1}]"#,
            "{\"a\":\"tab\there\"}",
            "{\n  \"a\": 1\n}",
            r#"{"a":1,}"#,
            r#"{"a":1} x"#,
            r#"{"a":1"#,
            r#"{"a":01}"#,
            r#"{"a":1.}"#,
            r#"{"a":--1}"#,
            r#"{"a":1e999}"#,
            r#"{"a":tru}"#,
            r#"{"a":truex}"#,
            r#"{a:1}"#,
            r#"{"a" 1}"#,
            "\u{feff}{\"a\":1}",
            "",
            "{",
        ] {
            assert_eq!(object(text.as_bytes()), None, "{text}");
        }
        assert_eq!(object(b"{\"a\":\"\xff\"}"), None);
    }

    #[test]
    fn any_object_read_here_is_the_one_serde_reads() {
        // every object assembled from these pieces: whatever this path accepts, serde
        // reads the same; whatever serde refuses, this path declines
        let keys = ["\"k\"", "\"k2\"", "\"é\"", "\"a\\nb\"", "\"\""];
        let values = [
            "\"v\"",
            "\"\"",
            "0",
            "-1.5e3",
            "1E2",
            "12345678901234567890",
            "-9223372036854775809",
            "0.1",
            "true",
            "false",
            "null",
            "\"x\\\"y\"",
            "[]",
            "{}",
            "1.2.3",
            "+1",
            "-",
            "nul",
            "\"\t\"",
        ];
        let seps = ["", " ", "  "];
        let mut accepted = 0;
        for (ki, k) in keys.iter().enumerate() {
            for (vi, v) in values.iter().enumerate() {
                for sep in seps {
                    let other = values[(ki + vi) % values.len()];
                    let text = format!("{{{sep}{k}{sep}:{sep}{v}{sep},\"k\":{other}}}");
                    let ours = object(text.as_bytes());
                    if ours.is_some() {
                        accepted += 1;
                        assert_eq!(ours, serde_path(text.as_bytes()), "{text}");
                    }
                }
            }
        }
        assert!(accepted > 100, "only {accepted} accepted");
    }
}
