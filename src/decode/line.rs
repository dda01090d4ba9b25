//! Raw text lines split by a line format such as `<Date> <Time> <Level> <Component>:
//! <Content>` (the Loghub / logparser convention).
//!
//! Each `<Name>` captures a field lazily; the text between fields is a regex fragment in
//! which a run of spaces matches any whitespace; the whole is anchored. `<Content>` is the
//! message. `<Level>`, `<Service>` / `<Component>`, `<Host>` / `<Node>` fill their columns;
//! `<Timestamp>`, or `<Date>` and `<Time>` together, give the event time when they parse.
//! Every other field is kept in `attrs`. A line that does not match is kept whole as the
//! message, with `attrs["line_format"] = "unmatched"`, and counted by the caller.

use std::borrow::Cow;

use regex::Regex;

use super::{json, time, Context, DecodeError, LogRow, Pairs};

/// A compiled line format.
#[derive(Debug, Clone)]
pub struct LineFormat {
    source: String,
    regex: Regex,
    fields: Vec<String>,
}

impl LineFormat {
    pub fn parse(format: &str) -> Result<LineFormat, String> {
        let field = Regex::new(r"<([A-Za-z_][A-Za-z0-9_]*)>").expect("static regex");
        let mut pattern = String::from("^");
        let mut fields = Vec::new();
        let mut last = 0;
        for m in field.captures_iter(format) {
            let whole = m.get(0).expect("group 0");
            pattern.push_str(&spaces(&format[last..whole.start()]));
            let name = m[1].to_string();
            if fields.contains(&name) {
                return Err(format!("line format names <{name}> twice"));
            }
            pattern.push_str(&format!("(?P<{name}>.*?)"));
            fields.push(name);
            last = whole.end();
        }
        pattern.push_str(&spaces(&format[last..]));
        pattern.push('$');
        if !fields.iter().any(|f| f == "Content") {
            return Err("line format has no <Content> field".into());
        }
        let regex = Regex::new(&pattern).map_err(|e| format!("line format is not a valid pattern: {e}"))?;
        Ok(LineFormat {
            source: format.to_string(),
            regex,
            fields,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The names of the format's fields, in order.
    pub fn fields(&self) -> &[String] {
        &self.fields
    }

    /// The named fields of a line, or `None` when it does not match.
    pub fn split<'a>(&self, line: &'a str) -> Option<Vec<(&str, &'a str)>> {
        let caps = self.regex.captures(line.trim())?;
        Some(
            self.fields
                .iter()
                .map(|f| (f.as_str(), caps.name(f).map_or("", |m| m.as_str())))
                .collect(),
        )
    }

    /// The `<Content>` of a line, or the whole line when it does not match.
    pub fn content<'a>(&self, line: &'a str) -> (&'a str, bool) {
        match self.regex.captures(line.trim()) {
            Some(c) => (c.name("Content").map_or("", |m| m.as_str()), true),
            None => (line, false),
        }
    }
}

fn spaces(between: &str) -> String {
    let re = Regex::new(" +").expect("static regex");
    re.replace_all(between, r"\s+").into_owned()
}

pub fn log<'a>(line: &'a str, format: Option<&LineFormat>, ctx: &Context) -> Result<LogRow<'a>, DecodeError> {
    let line = line.trim_end_matches(['\r', '\n']);
    let Some(parts) = format.and_then(|f| f.split(line)) else {
        let attrs = ctx.attrs(|| match format {
            Some(_) => vec![("line_format".into(), "unmatched".into())],
            None => Vec::new(),
        });
        return Ok(LogRow {
            ts: ctx.fallback_ts()?,
            service: ctx.default_service(),
            host: None,
            level: super::Level::Info,
            message: line.into(),
            trace_id: None,
            attrs,
        });
    };
    let get = |name: &str| parts.iter().find(|(k, _)| *k == name).map(|(_, v)| *v);
    let ts = get("Timestamp")
        .and_then(time::parse_str)
        .or_else(|| match (get("Date"), get("Time")) {
            (Some(d), Some(t)) => time::parse_str(&format!("{d} {t}")),
            _ => None,
        })
        .map_or_else(|| ctx.fallback_ts(), Ok)?;
    let (level, unknown) = json::level_of(get("Level").map(Cow::Borrowed));
    let attrs = ctx.attrs(|| {
        let mut attrs: Pairs = parts
            .iter()
            .filter(|(k, _)| !matches!(*k, "Content" | "Level" | "Service" | "Host" | "Node" | "Timestamp"))
            .map(|(k, v)| (k.to_ascii_lowercase().into(), Cow::Borrowed(*v)))
            .collect();
        if let Some(raw) = unknown {
            attrs.push(("level_raw".into(), raw));
        }
        attrs
    });
    Ok(LogRow {
        ts,
        service: get("Service").map_or_else(|| ctx.default_service(), Cow::Borrowed),
        host: get("Host").or(get("Node")).map(Cow::Borrowed),
        level,
        message: get("Content").unwrap_or("").into(),
        trace_id: None,
        attrs,
    })
}

#[cfg(test)]
mod tests {
    use super::super::tests::ctx;
    use super::*;
    use crate::decode::Level;

    #[test]
    fn splits_a_loghub_format() {
        let f = LineFormat::parse("<Date> <Time> <Level> <Component>: <Content>").unwrap();
        let r = log(
            "2025-03-04 10:00:01 WARN  storage.Block: Block blk_1 lost",
            Some(&f),
            &ctx(),
        )
        .unwrap();
        assert_eq!(r.level, Level::Warn);
        assert_eq!(r.message, "Block blk_1 lost");
        assert_eq!(r.ts, 1_741_082_401_000);
        assert!(r.attrs.contains(&("component".into(), "storage.Block".into())));
    }

    #[test]
    fn unmatched_lines_are_kept_whole() {
        let f = LineFormat::parse(r"\[<Time>\] \[<Level>\] <Content>").unwrap();
        let r = log("no brackets here", Some(&f), &ctx()).unwrap();
        assert_eq!(r.message, "no brackets here");
        assert_eq!(r.attrs, vec![("line_format".into(), "unmatched".into())]);
    }

    #[test]
    fn formats_without_content_are_refused() {
        assert!(LineFormat::parse("<Date> <Time>").is_err());
        assert!(LineFormat::parse("<A> <A> <Content>").is_err());
    }
}
