//! The shape of a log message: its tokens, and the segments that are values by their look.
//!
//! A message is split on whitespace into tokens and each token into segments at
//! punctuation (`= : , ( ) [ ] { } | # @ ; " ' < >`). A segment is a value when it is a
//! number, a version or a date (`42`, `-27`, `6.1.26`, `2015-10-18`, `384.0B`), hex
//! (`0x1f`, a hash, a uuid), an id with a run of three or more digits
//! (`blk_-1608999687919862906`), a path (`/var/log`, `\Windows\System32`), a host name with a number in it
//! (`msra-sa-41`, `node7.example.com`), a MAC or IPv6 address, or `true` / `false` /
//! `null`; or when a configured mask matches it. A word followed by dashes or dots and a
//! value keeps the word (`jetty-<*>`, `core.<*>`); `//` after a URL scheme stays.
//!
//! Everything else is left for the miner to judge from evidence. The scan makes one
//! pass over the bytes, allocates nothing once warm, and hashes the shape as it goes.

use regex::Regex;

use super::miner::PARAM;

/// The spans of one message, reused between messages.
#[derive(Default)]
pub(super) struct Scan {
    /// Whitespace tokens: byte range in the text, and the range of their value segments.
    pub(super) tokens: Vec<(u32, u32, u32, u32)>,
    /// Value segments (byte ranges), in order.
    pub(super) values: Vec<(u32, u32)>,
    /// Byte ranges matched by the configured masks, disjoint and in order.
    pub(super) masked: Vec<(u32, u32)>,
}

/// The byte ranges of `text` that the masks match, merged, in order.
pub(super) fn mask_spans(masks: &[Regex], text: &str, out: &mut Vec<(u32, u32)>) {
    out.clear();
    if masks.is_empty() {
        return;
    }
    for m in masks {
        out.extend(m.find_iter(text).map(|f| (f.start() as u32, f.end() as u32)));
    }
    out.sort_unstable();
    let mut merged: Vec<(u32, u32)> = Vec::with_capacity(out.len());
    for &(a, b) in out.iter() {
        match merged.last_mut() {
            Some(last) if a <= last.1 => last.1 = last.1.max(b),
            _ => merged.push((a, b)),
        }
    }
    *out = merged;
}

/// Punctuation that splits a token into segments.
const DELIMITERS: &[u8] = b"=:,()[]{}|#@;\"'<>";

/// Byte classes, looked up once per byte on the hot path.
const DELIMITER: u8 = 1;
const DIGIT: u8 = 2;
const SPACE: u8 = 4;
static CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let spaces = b" \t\n\x0c\r";
    let mut s = 0;
    while s < spaces.len() {
        t[spaces[s] as usize] = SPACE;
        s += 1;
    }
    let mut i = 0;
    while i < DELIMITERS.len() {
        t[DELIMITERS[i] as usize] = DELIMITER;
        i += 1;
    }
    let mut d = b'0';
    while d <= b'9' {
        t[d as usize] = DIGIT;
        d += 1;
    }
    t
};

fn is_delimiter(b: u8) -> bool {
    CLASS[b as usize] == DELIMITER
}

/// Splits `text` into tokens and value segments, and returns the hash of its shape.
pub(super) fn scan(text: &str, max_tokens: usize, out: &mut Scan) -> u64 {
    out.tokens.clear();
    out.values.clear();
    let bytes = text.as_bytes();
    let mut shape = Shape {
        bytes,
        masked: &out.masked,
        next_mask: 0,
        hash: 0xcbf2_9ce4_8422_2325,
        values: &mut out.values,
    };
    let trimmed = text.trim_end().len();
    let mut i = 0;
    while i < trimmed {
        while CLASS[bytes[i] as usize] == SPACE {
            i += 1;
        }
        let start = i;
        let v0 = shape.values.len() as u32;
        if out.tokens.len() + 1 >= max_tokens {
            // The rest of a very long message is one token, and a value if it has spaces.
            i = trimmed;
            if text[start..i].contains(char::is_whitespace) {
                shape.value(start, i);
            } else {
                shape.token(start, i);
            }
        } else {
            while i < trimmed && CLASS[bytes[i] as usize] != SPACE {
                i += 1;
            }
            shape.token(start, i);
        }
        shape.feed(0);
        out.tokens.push((start as u32, i as u32, v0, shape.values.len() as u32));
    }
    shape.hash
}

/// The running state of [`scan`]: value segments found so far and the shape's hash.
struct Shape<'a> {
    bytes: &'a [u8],
    masked: &'a [(u32, u32)],
    next_mask: usize,
    hash: u64,
    values: &'a mut Vec<(u32, u32)>,
}

impl Shape<'_> {
    fn feed(&mut self, b: u8) {
        self.hash ^= u64::from(b);
        self.hash = self.hash.wrapping_mul(0x0000_0100_0000_01b3);
    }

    /// Feeds a run of bytes, eight at a time.
    fn literal(&mut self, start: usize, end: usize) {
        let mut chunks = self.bytes[start..end].chunks_exact(8);
        for c in &mut chunks {
            let word = u64::from_le_bytes(c.try_into().expect("eight bytes"));
            self.hash = (self.hash ^ word).wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(29);
        }
        for &b in chunks.remainder() {
            self.feed(b);
        }
    }

    fn value(&mut self, start: usize, end: usize) {
        self.values.push((start as u32, end as u32));
        self.feed(0xff);
    }

    /// How much of `[start, end)` the masks cover: none, part or all of it.
    fn mask_cover(&mut self, start: usize, end: usize) -> Cover {
        while self.next_mask < self.masked.len() && self.masked[self.next_mask].1 as usize <= start {
            self.next_mask += 1;
        }
        match self.masked.get(self.next_mask) {
            Some(&(a, b)) if (a as usize) < end => {
                if a as usize <= start && b as usize >= end {
                    Cover::All
                } else {
                    Cover::Part
                }
            }
            _ => Cover::None,
        }
    }

    fn token(&mut self, start: usize, end: usize) {
        let tok = &self.bytes[start..end];
        if tok.len() >= 7 && is_hex_address(tok) {
            return self.value(start, end);
        }
        let mut i = start;
        while i < end {
            let b = self.bytes[i];
            if b == b'<' && self.bytes[i..end].starts_with(PARAM.as_bytes()) {
                self.value(i, i + 3);
                i += 3;
                continue;
            }
            if is_delimiter(b) {
                self.feed(b);
                i += 1;
                continue;
            }
            let seg_start = i;
            let mut classes = 0;
            while i < end {
                let c = CLASS[self.bytes[i] as usize];
                if c == DELIMITER {
                    break;
                }
                classes |= c;
                i += 1;
            }
            let seg = &self.bytes[seg_start..i];
            let range = match self.mask_cover(seg_start, i) {
                // Most segments are words: without a digit only a path or a constant is a
                // value.
                Cover::None if classes & DIGIT == 0 => {
                    matches!(seg[0], b'/' | b'\\' | b't' | b'f' | b'n' | b'T' | b'F' | b'N')
                        .then(|| value_range(seg))
                        .flatten()
                }
                Cover::None => value_range(seg),
                Cover::All => value_range(seg).or(Some((0, seg.len()))),
                Cover::Part => Some((0, seg.len())),
            };
            match range {
                Some((a, z)) => {
                    self.literal(seg_start, seg_start + a);
                    self.value(seg_start + a, seg_start + z);
                    self.literal(seg_start + z, i);
                }
                None => self.literal(seg_start, i),
            }
        }
    }
}

enum Cover {
    None,
    Part,
    All,
}

/// A MAC or IPv6 address: four or more groups of hex digits joined by colons, with a
/// letter among them (a time of day has none).
fn is_hex_address(tok: &[u8]) -> bool {
    let groups = tok.split(|&b| b == b':');
    let mut n = 0;
    for g in groups {
        if g.len() > 4 || !g.iter().all(u8::is_ascii_hexdigit) {
            return false;
        }
        n += 1;
    }
    n >= 4 && tok.iter().any(|b| b.is_ascii_alphabetic())
}

/// The part of a segment that is a value by its look, if any.
fn value_range(seg: &[u8]) -> Option<(usize, usize)> {
    let mut end = seg.len();
    while end > 0 && seg[end - 1] == b'.' {
        end -= 1;
    }
    // `//host:port` after a URL scheme: the slashes stay.
    let start = if seg.starts_with(b"//") { 2 } else { 0 };
    if start >= end {
        return None;
    }
    let core = &seg[start..end];
    if !core.iter().any(u8::is_ascii_digit) {
        // Most segments are words: only a constant or a path is a value without digits.
        return is_literal_value(core).then_some((start, end));
    }
    // `jetty-6.1.26`, `core.1234`, `depth.......0`: a word, dashes or dots, then a value.
    let word = seg[start..end].iter().take_while(|b| b.is_ascii_alphabetic()).count();
    let marks = seg[start + word..end]
        .iter()
        .take_while(|b| matches!(b, b'-' | b'.'))
        .count();
    let rest = &seg[start + word + marks..end];
    if word >= 2 && marks >= 1 && !rest.is_empty() && is_literal_value(rest) {
        return Some((start + word + marks, end));
    }
    is_value(&seg[start..end]).then_some((start, end))
}

fn is_value(s: &[u8]) -> bool {
    is_literal_value(s) || is_host_name(s)
}

/// A constant, a path, a number, an id or a hash.
fn is_literal_value(s: &[u8]) -> bool {
    if matches!(
        s,
        b"true" | b"false" | b"null" | b"True" | b"False" | b"TRUE" | b"FALSE" | b"NULL"
    ) {
        return true;
    }
    // A path, Unix or Windows (`C:` is split off at the colon).
    if matches!(s[0], b'/' | b'\\') && s.len() > 1 {
        return s[1].is_ascii_alphanumeric() || s[1] == s[0];
    }
    let digits = s.iter().filter(|b| b.is_ascii_digit()).count();
    if digits == 0 {
        return false;
    }
    // Hex with a prefix.
    if s.len() > 2 && (s.starts_with(b"0x") || s.starts_with(b"0X")) && s[2..].iter().all(u8::is_ascii_hexdigit) {
        return true;
    }
    // A number, a version or a date, maybe signed, maybe with a short unit.
    let body = s.strip_prefix(b"-").or_else(|| s.strip_prefix(b"+")).unwrap_or(s);
    if !body.is_empty() && body[0].is_ascii_digit() {
        let numeric = body
            .iter()
            .take_while(|b| b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'+' | b'_' | b'/'))
            .count();
        let unit = &body[numeric..];
        if unit.len() <= 3 && unit.iter().all(|b| b.is_ascii_alphabetic() || *b == b'%') {
            return true;
        }
    }
    // An id: a run of three or more digits.
    let mut run = 0;
    for &b in s {
        run = if b.is_ascii_digit() { run + 1 } else { 0 };
        if run >= 3 {
            return true;
        }
    }
    // Long hex (hashes, uuids).
    s.len() >= 8 && s.iter().all(|b| b.is_ascii_hexdigit() || *b == b'-')
}

/// A host name with a number in it: `msra-sa-41`, `ip-10-0-0-1`, `node7.example.com`.
/// (Dotted names without a digit in the first label are left alone: they are as often
/// class names.)
fn is_host_name(s: &[u8]) -> bool {
    if !s.iter().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.')) {
        return false;
    }
    let first = s.split(|&b| b == b'.').next().unwrap_or_default();
    let last = s.rsplit(|&b| b == b'.').next().unwrap_or_default();
    // Dotted: three labels or more, none empty, ending in letters (`6.1.26` is a version).
    let dotted = s.iter().filter(|&&b| b == b'.').count() >= 2
        && !first.is_empty()
        && !s.windows(2).any(|w| w == b"..")
        && last.iter().any(u8::is_ascii_alphabetic);
    if dotted && first.iter().any(u8::is_ascii_digit) {
        return true;
    }
    let last = first.rsplit(|&b| b == b'-').next().unwrap_or_default();
    first.contains(&b'-') && !last.is_empty() && last.iter().all(u8::is_ascii_digit)
}

/// The words of a shape: each token with its value segments written as `<*>`.
pub(super) fn shape_words(text: &str, scan: &Scan) -> Vec<String> {
    scan.tokens
        .iter()
        .map(|&(start, end, v0, v1)| {
            let mut word = String::new();
            let mut at = start as usize;
            for &(a, b) in &scan.values[v0 as usize..v1 as usize] {
                word.push_str(&text[at..a as usize]);
                word.push_str(PARAM);
                at = b as usize;
            }
            word.push_str(&text[at..end as usize]);
            word
        })
        .collect()
}
