//! One log file through the miner: what `lookout templates` does.
//!
//! Two passes over the file. The first mines every line's message (the `<Content>` of
//! the line format, or the whole line when it does not match, counted) and keeps only a
//! 16-byte handle per line; the second reads the file again and writes each line with the
//! template it belongs to once all lines are seen, in the shape of Loghub's
//! `_structured.csv`: `LineId`, the format's fields, `EventId`, `EventTemplate`,
//! `ParameterList` (a JSON array). Lines longer than `max_line_bytes` are cut there (counted); bytes
//! that are not UTF-8 are replaced (counted); an empty line is a message with no tokens.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;

use crate::decode::line::LineFormat;

use super::miner::{Mined, Miner};

/// How a file's lines are read.
#[derive(Debug, Clone)]
pub struct FileOptions {
    pub format: Option<LineFormat>,
    pub max_line_bytes: usize,
}

impl Default for FileOptions {
    fn default() -> Self {
        FileOptions {
            format: None,
            max_line_bytes: 1 << 20,
        }
    }
}

/// What reading and mining a file counted.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FileCounts {
    pub lines: usize,
    pub unmatched: usize,
    pub invalid_utf8: usize,
    pub cut: usize,
}

/// The first pass: every line's template handle.
pub struct MinedFile {
    pub mined: Vec<Mined>,
    pub counts: FileCounts,
}

/// Reads a file line by line: each line without its end, cut at `max` bytes, as text.
pub fn for_each_line(path: &Path, max: usize, mut f: impl FnMut(&str, &mut FileCounts)) -> std::io::Result<FileCounts> {
    let mut reader = BufReader::new(File::open(path)?);
    let mut counts = FileCounts::default();
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let n = read_line(&mut reader, &mut buf, max)?;
        if n == 0 {
            break;
        }
        counts.lines += 1;
        if buf.len() >= max {
            counts.cut += 1;
        }
        while matches!(buf.last(), Some(b'\n' | b'\r')) {
            buf.pop();
        }
        let text = match std::str::from_utf8(&buf) {
            Ok(s) => std::borrow::Cow::Borrowed(s),
            Err(_) => {
                counts.invalid_utf8 += 1;
                String::from_utf8_lossy(&buf)
            }
        };
        f(&text, &mut counts);
    }
    Ok(counts)
}

/// Reads up to and including the next `\n`, keeping at most `max` bytes of it; returns
/// the bytes consumed (0 at the end).
fn read_line(reader: &mut impl BufRead, buf: &mut Vec<u8>, max: usize) -> std::io::Result<usize> {
    let mut consumed = 0;
    loop {
        let available = reader.fill_buf()?;
        if available.is_empty() {
            return Ok(consumed);
        }
        let (take, done) = match available.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (available.len(), false),
        };
        let room = max.saturating_sub(buf.len());
        buf.extend_from_slice(&available[..take.min(room)]);
        reader.consume(take);
        consumed += take;
        if done {
            return Ok(consumed);
        }
    }
}

/// The format's fields of a line and its message, or no fields and the whole line when
/// it does not match.
fn split<'f, 'a>(format: Option<&'f LineFormat>, line: &'a str) -> (Option<Vec<(&'f str, &'a str)>>, &'a str) {
    let Some(fields) = format.and_then(|f| f.split(line)) else {
        return (None, line);
    };
    let content = fields.iter().find(|(n, _)| *n == "Content").map_or("", |(_, v)| *v);
    (Some(fields), content)
}

/// The first pass: mines every line.
pub fn mine(path: &Path, options: &FileOptions, miner: &mut Miner) -> std::io::Result<MinedFile> {
    let mut mined = Vec::new();
    let counts = for_each_line(path, options.max_line_bytes, |line, counts| {
        let (fields, content) = split(options.format.as_ref(), line);
        if options.format.is_some() && fields.is_none() {
            counts.unmatched += 1;
        }
        mined.push(miner.mine(content));
    })?;
    Ok(MinedFile { mined, counts })
}

/// The second pass: writes the structured CSV.
pub fn write_csv(
    path: &Path,
    options: &FileOptions,
    miner: &Miner,
    file: &MinedFile,
    out: &Path,
) -> std::io::Result<()> {
    let mut csv = csv::Writer::from_writer(std::io::BufWriter::new(File::create(out)?));
    let names: Vec<&str> = options
        .format
        .as_ref()
        .map_or(vec!["Content"], |f| f.fields().iter().map(String::as_str).collect());
    let mut header = vec!["LineId"];
    header.extend(&names);
    header.extend(["EventId", "EventTemplate", "ParameterList"]);
    csv.write_record(&header)?;
    let mut i = 0;
    let mut result = Ok(());
    for_each_line(path, options.max_line_bytes, |line, _| {
        if result.is_err() || i >= file.mined.len() {
            return;
        }
        let (fields, content) = split(options.format.as_ref(), line);
        let mut row = vec![(i + 1).to_string()];
        for name in &names {
            let value = match &fields {
                Some(f) => f.iter().find(|(n, _)| n == name).map_or("", |(_, v)| *v),
                None if *name == "Content" => content,
                None => "",
            };
            row.push(value.to_string());
        }
        match miner.current(file.mined[i]) {
            Some(t) => {
                row.push(t.id_hex());
                row.push(t.text());
                row.push(serde_json::to_string(&miner.params_for(content, t)).unwrap_or_default());
            }
            None => row.extend([String::new(), String::new(), String::new()]),
        }
        result = csv.write_record(&row).map_err(std::io::Error::from);
        i += 1;
    })?;
    result?;
    csv.into_inner().map_err(|e| e.into_error())?.flush()
}

/// The terminal summary: counts, then the `top` templates by number of lines.
pub fn summary(miner: &Miner, counts: &FileCounts, top: usize) -> String {
    let mut out = format!(
        "{} lines ({} not matching the line format, {} not UTF-8, {} cut) -> {} templates\n",
        counts.lines,
        counts.unmatched,
        counts.invalid_utf8,
        counts.cut,
        miner.len()
    );
    let mut templates: Vec<_> = miner.templates().collect();
    templates.sort_by(|a, b| b.count.cmp(&a.count).then(a.id.cmp(&b.id)));
    out.push_str(&format!("{:>9}  {:<16}  template\n", "lines", "template_id"));
    for t in templates.iter().take(top) {
        out.push_str(&format!("{:>9}  {}  {}\n", t.count, t.id_hex(), t.text()));
    }
    if templates.len() > top {
        out.push_str(&format!(
            "      ...  {} more (--top N to see them)\n",
            templates.len() - top
        ));
    }
    out
}
