//! logfmt (`ts=... level=info msg="hello world" service=cart k=v`), as written by Go's
//! logfmt, Heroku and many Go services. Keys map like JSON's aliases; values may be
//! quoted with `"` and use `\"` and `\\` escapes.

use std::borrow::Cow;

use super::value::{Map, Value};

use super::{json, Context, DecodeError, LogRow, Pairs};

/// A line is logfmt when its first token is `key=value`.
pub fn looks_like(s: &str) -> bool {
    let first = s.split_whitespace().next().unwrap_or("");
    match first.find('=') {
        Some(i) => {
            i > 0
                && first[..i]
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_.@-".contains(&b))
        }
        None => false,
    }
}

/// Splits a logfmt line into pairs, borrowing from the line what needs no unescaping.
pub fn pairs(s: &str) -> Result<Pairs<'_>, DecodeError> {
    if s.is_ascii() {
        ascii_pairs(s)
    } else {
        char_pairs(s)
    }
}

/// [`pairs`] of an ASCII line, a byte at a time (the same pairs and errors as
/// [`char_pairs`], tested; going char by char through a peekable iterator cost a
/// logfmt record as much as the JSON parse cost a JSON one).
fn ascii_pairs(s: &str) -> Result<Pairs<'_>, DecodeError> {
    // `char::is_whitespace` on ASCII
    let ws = |c: u8| matches!(c, b' ' | b'\t' | b'\n' | b'\x0B' | b'\x0C' | b'\r');
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    loop {
        while i < b.len() && ws(b[i]) {
            i += 1;
        }
        if i == b.len() {
            break;
        }
        let start = i;
        while i < b.len() && b[i] != b'=' && !ws(b[i]) {
            i += 1;
        }
        let key = &s[start..i];
        if key.is_empty() {
            return Err(DecodeError::Invalid(format!("logfmt: empty key at byte {start}")));
        }
        let value = if b.get(i) != Some(&b'=') {
            Cow::Borrowed("")
        } else if b.get(i + 1) == Some(&b'"') {
            let from = i + 2;
            match memchr::memchr2(b'"', b'\\', &b[from..]) {
                Some(n) if b[from + n] == b'"' => {
                    i = from + n + 1;
                    Cow::Borrowed(&s[from..from + n])
                }
                _ => {
                    // escapes (or no closing quote): read as the char path reads them
                    let mut it = s[from..].char_indices().map(|(k, c)| (from + k, c)).peekable();
                    let value = super::read_quoted(s, from, &mut it)
                        .ok_or_else(|| DecodeError::Invalid(format!("logfmt: unterminated quote in {key}")))?;
                    i = it.peek().map_or(s.len(), |&(k, _)| k);
                    value
                }
            }
        } else {
            let from = i + 1;
            i = from;
            while i < b.len() && !ws(b[i]) {
                i += 1;
            }
            Cow::Borrowed(&s[from..i])
        };
        out.push((Cow::Borrowed(key), value));
    }
    Ok(out)
}

/// [`pairs`] of any line, char by char (Unicode whitespace separates).
fn char_pairs(s: &str) -> Result<Pairs<'_>, DecodeError> {
    let mut out = Vec::new();
    let mut it = s.char_indices().peekable();
    loop {
        while it.peek().is_some_and(|(_, c)| c.is_whitespace()) {
            it.next();
        }
        let Some(&(start, _)) = it.peek() else { break };
        let mut key_end = s.len();
        let mut has_value = false;
        while let Some(&(i, c)) = it.peek() {
            if c == '=' {
                key_end = i;
                has_value = true;
                it.next();
                break;
            }
            if c.is_whitespace() {
                key_end = i;
                break;
            }
            it.next();
        }
        let key = &s[start..key_end];
        if key.is_empty() {
            return Err(DecodeError::Invalid(format!("logfmt: empty key at byte {start}")));
        }
        let value = match it.peek() {
            _ if !has_value => Cow::Borrowed(""),
            Some(&(quote, '"')) => {
                it.next();
                super::read_quoted(s, quote + 1, &mut it)
                    .ok_or_else(|| DecodeError::Invalid(format!("logfmt: unterminated quote in {key}")))?
            }
            Some(&(from, _)) => {
                let mut end = s.len();
                while let Some(&(i, c)) = it.peek() {
                    if c.is_whitespace() {
                        end = i;
                        break;
                    }
                    it.next();
                }
                Cow::Borrowed(&s[from..end])
            }
            None => Cow::Borrowed(""),
        };
        out.push((Cow::Borrowed(key), value));
    }
    Ok(out)
}

pub fn log<'a>(s: &'a str, ctx: &Context) -> Result<LogRow<'a>, DecodeError> {
    let o: Map = pairs(s)?.into_iter().map(|(k, v)| (k, Value::String(v))).collect();
    json::log(o, ctx)
}

#[cfg(test)]
mod tests {
    use super::super::tests::ctx;
    use super::*;
    use crate::decode::Level;

    #[test]
    fn quoted_values_and_aliases() {
        let line =
            r#"time=2025-03-04T00:00:00Z level=error app=cart msg="payment \"declined\" for order 7" attempt=2 flag"#;
        assert!(looks_like(line));
        let r = log(line, &ctx()).unwrap();
        assert_eq!(r.level, Level::Error);
        assert_eq!(r.service, "cart");
        assert_eq!(r.message, r#"payment "declined" for order 7"#);
        assert_eq!(
            r.attrs,
            vec![("attempt".into(), "2".into()), ("flag".into(), "".into())]
        );
    }

    #[test]
    fn ascii_lines_split_as_the_char_path_splits_them() {
        let pieces = [
            "k=v",
            "k=",
            "k",
            "=v",
            "k=\"a b\"",
            "k=\"a \\\"q\\\" b\"",
            "k=\"a\\nb\"",
            "k=\"open",
            "k=\"\"",
            "k=a=b",
            "k=a\"b",
            "msg=\"x\"y=1",
            " ",
            "\t",
            "\x0B",
            "\x0C",
        ];
        let mut lines = 0;
        for a in pieces {
            for b in pieces {
                for c in pieces {
                    let line = format!("{a} {b}{c}");
                    let (fast, slow) = (ascii_pairs(&line), char_pairs(&line));
                    assert_eq!(format!("{fast:?}"), format!("{slow:?}"), "{line:?}");
                    lines += 1;
                }
            }
        }
        assert_eq!(lines, pieces.len().pow(3));
        // a line with other than ASCII goes char by char: a no-break space separates
        assert_eq!(pairs("a=1\u{a0}b=2").unwrap().len(), 2);
        assert_eq!(pairs("a=\"é ü\" b=2").unwrap()[0].1, "é ü");
    }

    #[test]
    fn plain_text_is_not_logfmt() {
        assert!(!looks_like("User logged in: id=5"));
        assert!(log(r#"msg="never closed"#, &ctx()).is_err());
    }
}
