//! logfmt (`ts=... level=info msg="hello world" service=cart k=v`), as written by Go's
//! logfmt, Heroku and many Go services. Keys map like JSON's aliases; values may be
//! quoted with `"` and use `\"` and `\\` escapes.

use std::borrow::Cow;

use super::value::{Map, Value};

use super::{json, Context, DecodeError, LogRow};

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

/// Splits a logfmt line into pairs, each handed to `push` as it is split, borrowing
/// from the line what needs no unescaping. It goes a byte at a time ([`skip`]) and
/// decodes only what is not ASCII (Unicode spaces separate too): char by char through a
/// peekable iterator, splitting had cost a logfmt record as much as the JSON parse cost
/// a JSON one.
fn pairs<'a>(s: &'a str, mut push: impl FnMut(Cow<'a, str>, Cow<'a, str>)) -> Result<(), DecodeError> {
    let b = s.as_bytes();
    let mut i = 0;
    loop {
        i = skip(s, i, true, false);
        if i == b.len() {
            break;
        }
        let start = i;
        i = skip(s, i, false, true);
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
                    // escapes (or no closing quote)
                    let mut it = s[from..].char_indices().map(|(k, c)| (from + k, c)).peekable();
                    let value = super::read_quoted(s, from, &mut it)
                        .ok_or_else(|| DecodeError::Invalid(format!("logfmt: unterminated quote in {key}")))?;
                    i = it.peek().map_or(s.len(), |&(k, _)| k);
                    value
                }
            }
        } else {
            let from = i + 1;
            i = skip(s, from, false, false);
            Cow::Borrowed(&s[from..i])
        };
        push(Cow::Borrowed(key), value);
    }
    Ok(())
}

/// Byte classes: ASCII whitespace, `=`, the other ASCII characters, and the bytes of
/// wider characters.
const SPACE: u8 = 1;
const EQUALS: u8 = 2;
const OTHER: u8 = 4;
const WIDE: u8 = 8;
static CLASS: [u8; 256] = {
    let mut t = [WIDE; 256];
    let mut c = 0;
    while c < 0x80 {
        t[c] = match c as u8 {
            b' ' | b'\t' | b'\n' | b'\x0B' | b'\x0C' | b'\r' => SPACE,
            b'=' => EQUALS,
            _ => OTHER,
        };
        c += 1;
    }
    t
};

/// Past the characters of `s` from byte `i` (a character boundary) that are whitespace
/// (`white`) or are not, stopping also at `=` when `at_equals`. ASCII bytes go through
/// [`CLASS`], one lookup each; only wider characters are decoded.
fn skip(s: &str, mut i: usize, white: bool, at_equals: bool) -> usize {
    let b = s.as_bytes();
    // the ASCII classes that end the run
    let ends = match (white, at_equals) {
        (true, _) => EQUALS | OTHER,
        (false, true) => SPACE | EQUALS,
        (false, false) => SPACE,
    };
    while let Some(&c) = b.get(i) {
        let class = CLASS[c as usize];
        if class & ends != 0 {
            break;
        }
        if class == WIDE {
            let ch = s[i..].chars().next().expect("a character boundary");
            if ch.is_whitespace() != white {
                break;
            }
            i += ch.len_utf8();
        } else {
            i += 1;
        }
    }
    i
}

pub fn log<'a>(s: &'a str, ctx: &Context) -> Result<LogRow<'a>, DecodeError> {
    // split straight into the map's pairs: splitting into a list of text pairs and
    // converting them took an allocation and a copy per record
    let mut o = Vec::with_capacity(8);
    pairs(s, |k, v| o.push((k, Value::String(v))))?;
    json::log(o.into_iter().collect::<Map>(), ctx)
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
    fn lines_split_into_pairs_as_logfmt_writers_mean_them() {
        // (line, its pairs as `key=value;...`, or the error it gives)
        let cases = [
            ("k=v", Ok("k=v")),
            ("k= j", Ok("k=;j=")),
            ("k=a=b x=a\"b", Ok("k=a=b;x=a\"b")),
            (r#"k="a b" j="""#, Ok("k=a b;j=")),
            (r#"k="a \"q\" b\\ \n""#, Ok("k=a \"q\" b\\ \n")),
            (r#"msg="x"y=1"#, Ok("msg=x;y=1")),
            ("a=1\tb=2\x0Bc=3\x0Cd=4\r\ne=5", Ok("a=1;b=2;c=3;d=4;e=5")),
            // Unicode spaces separate; other characters are kept whole
            ("a=1\u{a0}b=2\u{2028}é=ü", Ok("a=1;b=2;é=ü")),
            (r#"k="é \"ü\"" j=ÿ"#, Ok("k=é \"ü\";j=ÿ")),
            ("k=v =w", Err("logfmt: empty key at byte 4")),
            (r#"k="open"#, Err("logfmt: unterminated quote in k")),
            (r#"k="open \"x"#, Err("logfmt: unterminated quote in k")),
        ];
        for (line, want) in cases {
            let mut split = Vec::new();
            let got = pairs(line, |k, v| split.push(format!("{k}={v}"))).map(|()| split.join(";"));
            match (got, want) {
                (Ok(got), Ok(want)) => assert_eq!(got, want, "{line:?}"),
                (Err(e), Err(want)) => assert_eq!(e.to_string(), want, "{line:?}"),
                (got, _) => panic!("{line:?}: {got:?}"),
            }
        }
    }

    #[test]
    fn plain_text_is_not_logfmt() {
        assert!(!looks_like("User logged in: id=5"));
        assert!(log(r#"msg="never closed"#, &ctx()).is_err());
    }
}
