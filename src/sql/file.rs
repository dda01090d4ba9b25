//! One pipeline SQL file: a header of `--!` lines (TOML) that declares the file's kind
//! and options, then exactly one SQL statement.
//!
//! ```sql
//! --! kind = "alert"
//! --! severity = "critical"
//! --! title = "FATAL log on {service}: {message}"
//! --! keys = ["service", "host"]
//! SELECT ts, service, host, message FROM logs WHERE level = 'FATAL'
//! ```
//!
//! Kinds: `view` (a named, stateless transform other files select from, under the file's
//! name), `signal` (a windowed aggregate: each numeric column per key is a time series
//! for the anomaly detectors) and `alert` (every row it returns is an alert). The file
//! name without `.sql` is the view's, signal's or rule's name. Windowed files also
//! declare how late a row may be (`lateness`), what happens to later ones (`late`), and
//! alert rules how many windows must fire (`for_windows`, `of_last`).

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::decode::Severity;

/// What a file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileKind {
    View,
    Signal,
    Alert,
}

/// What happens to a row whose window has already closed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LatePolicy {
    /// Drop it and count it (`lookout_late_records_total`).
    #[default]
    Drop,
    /// Fold it into the closed window while it is kept (`keep_closed`) and emit the
    /// window again as a correction.
    Update,
}

/// The `--!` header as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Header {
    pub kind: FileKind,
    #[serde(default)]
    pub description: String,
    /// Alert severity when the rows have no `severity` column.
    #[serde(default)]
    pub severity: Option<Severity>,
    /// Alert title; `{column}` is replaced by the row's value.
    #[serde(default)]
    pub title: Option<String>,
    /// Columns that identify one alert instance (its fingerprint). Default: `service`
    /// and `host` where the rows have them.
    #[serde(default)]
    pub keys: Option<Vec<String>>,
    /// How far behind the newest event a row may be and still count (`30s`, `2m`):
    /// windows close when the watermark, the newest event time minus this, passes
    /// their end.
    #[serde(default)]
    pub lateness: Option<String>,
    #[serde(default)]
    pub late: LatePolicy,
    /// With `late = "update"`: how long a closed window still takes late rows
    /// (default: one window).
    #[serde(default)]
    pub keep_closed: Option<String>,
    /// A windowed alert fires for a key only when the key's row came in this many of
    /// the last `of_last` windows (default `of_last` = `for_windows`: consecutive).
    #[serde(default)]
    pub for_windows: Option<u32>,
    #[serde(default)]
    pub of_last: Option<u32>,
    /// Signals: which way of departing from normal is an anomaly (default up).
    #[serde(default)]
    pub direction: Option<crate::model::Direction>,
    /// Signals: what an anomaly of this signal means to correlation (default symptom).
    #[serde(default)]
    pub role: Option<crate::model::Role>,
}

/// A parsed file.
#[derive(Debug, Clone)]
pub struct SqlFile {
    pub path: PathBuf,
    pub name: String,
    pub header: Header,
    pub sql: String,
    /// 1-based line of the file where `sql` starts.
    pub sql_line: usize,
    /// `lateness` and `keep_closed` in milliseconds.
    pub lateness_ms: i64,
    pub keep_closed_ms: Option<i64>,
}

/// A problem with a pipeline file, located in it.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
#[error("{file}:{line}:{column}: {message}{}", hint.as_ref().map(|h| format!("\n  hint: {h}")).unwrap_or_default())]
pub struct FileError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
    pub hint: Option<String>,
}

impl SqlFile {
    pub fn read(path: &Path) -> Result<SqlFile, FileError> {
        let text = std::fs::read_to_string(path).map_err(|e| FileError {
            file: path.display().to_string(),
            line: 0,
            column: 0,
            message: e.to_string(),
            hint: None,
        })?;
        SqlFile::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<SqlFile, FileError> {
        let file = path.display().to_string();
        let err = |line: usize, message: String, hint: Option<&str>| FileError {
            file: file.clone(),
            line,
            column: 1,
            message,
            hint: hint.map(str::to_string),
        };
        let mut header = String::new();
        let mut header_lines = Vec::new();
        let mut sql_line = 0;
        for (i, line) in text.lines().enumerate() {
            let t = line.trim_start();
            if let Some(h) = t.strip_prefix("--!") {
                header.push_str(h);
                header.push('\n');
                header_lines.push(i + 1);
            } else if t.is_empty() || t.starts_with("--") {
                continue;
            } else {
                sql_line = i + 1;
                break;
            }
        }
        if header_lines.is_empty() {
            return Err(err(
                1,
                "no `--!` header".into(),
                Some("start the file with --! kind = \"view\" or --! kind = \"alert\""),
            ));
        }
        let header: Header = toml::from_str(&header).map_err(|e| {
            let line = e.span().map_or(header_lines[0], |s| {
                header_lines[header[..s.start].matches('\n').count().min(header_lines.len() - 1)]
            });
            err(
                line,
                format!("header: {}", e.message()),
                Some("header lines are TOML: --! key = \"value\""),
            )
        })?;
        if sql_line == 0 {
            return Err(err(header_lines[0], "no SQL statement after the header".into(), None));
        }
        let sql: String = text.lines().skip(sql_line - 1).collect::<Vec<_>>().join("\n");
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .filter(|s| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
            .ok_or_else(|| {
                err(
                    1,
                    "file name must be letters, digits and _ (it names the view or rule)".into(),
                    None,
                )
            })?
            .to_string();
        let h = &header;
        let misplaced = match h.kind {
            FileKind::View => [
                ("severity", h.severity.is_some()),
                ("title", h.title.is_some()),
                ("keys", h.keys.is_some()),
                ("lateness", h.lateness.is_some()),
                ("keep_closed", h.keep_closed.is_some()),
                ("for_windows", h.for_windows.is_some()),
                ("direction", h.direction.is_some()),
                ("role", h.role.is_some()),
            ]
            .iter()
            .find(|(_, set)| *set)
            .map(|(k, _)| (*k, "views are stateless: no windows, alerts or series")),
            FileKind::Signal => [
                ("severity", h.severity.is_some()),
                ("title", h.title.is_some()),
                ("for_windows", h.for_windows.is_some()),
            ]
            .iter()
            .find(|(_, set)| *set)
            .map(|(k, _)| (*k, "signals make series, not alerts")),
            FileKind::Alert => [("direction", h.direction.is_some()), ("role", h.role.is_some())]
                .iter()
                .find(|(_, set)| *set)
                .map(|(k, _)| (*k, "direction and role belong to signals")),
        };
        if let Some((key, why)) = misplaced {
            return Err(err(
                header_lines[0],
                format!("{key} does not apply to a {:?} file: {why}", h.kind).to_lowercase(),
                None,
            ));
        }
        let duration = |v: &Option<String>, key: &str| -> Result<Option<i64>, FileError> {
            v.as_deref()
                .map(|d| {
                    super::window::parse_duration(d)
                        .map_err(|e| err(header_lines[0], format!("header: {key}: {e}"), None))
                })
                .transpose()
        };
        let lateness_ms = duration(&h.lateness, "lateness")?.unwrap_or(0);
        let keep_closed_ms = duration(&h.keep_closed, "keep_closed")?;
        if h.of_last.is_some() && h.for_windows.is_none() {
            return Err(err(header_lines[0], "of_last needs for_windows".into(), None));
        }
        if let Some(n) = h.for_windows {
            let m = h.of_last.unwrap_or(n);
            if n == 0 || m < n || m > 64 {
                return Err(err(
                    header_lines[0],
                    format!("for_windows = {n} of_last = {m}: need 1 <= for_windows <= of_last <= 64"),
                    None,
                ));
            }
        }
        Ok(SqlFile {
            path: path.to_path_buf(),
            name,
            header,
            sql,
            sql_line,
            lateness_ms,
            keep_closed_ms,
        })
    }

    /// Makes an error located at a line / column of the SQL statement.
    pub fn error_at(&self, sql_line: usize, column: usize, message: String, hint: Option<String>) -> FileError {
        FileError {
            file: self.path.display().to_string(),
            line: self.sql_line + sql_line.max(1) - 1,
            column: column.max(1),
            message,
            hint,
        }
    }

    /// Where `needle` first appears in the SQL, as (line, column) within it.
    pub fn locate(&self, needle: &str) -> Option<(usize, usize)> {
        if needle.is_empty() {
            return None;
        }
        self.sql
            .lines()
            .enumerate()
            .find_map(|(i, l)| l.find(needle).map(|c| (i + 1, c + 1)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_then_statement() {
        let f = SqlFile::parse(
            Path::new("p/fatal_logs.sql"),
            "-- why\n--! kind = \"alert\"\n--! severity = \"critical\"\n\nSELECT 1\nFROM logs\n",
        )
        .unwrap();
        assert_eq!(f.name, "fatal_logs");
        assert_eq!(f.header.severity, Some(Severity::Critical));
        assert_eq!(f.sql_line, 5);
        assert_eq!(f.error_at(2, 3, "x".into(), None).line, 6);
    }

    #[test]
    fn header_errors_point_at_their_line() {
        let e = SqlFile::parse(
            Path::new("a.sql"),
            "--! kind = \"alert\"\n--! sevrity = \"x\"\nSELECT 1",
        )
        .unwrap_err();
        assert_eq!(e.line, 2, "{e}");
        assert!(e.message.contains("sevrity"));
        let e = SqlFile::parse(Path::new("a.sql"), "SELECT 1").unwrap_err();
        assert!(e.message.contains("no `--!` header"));
        let e = SqlFile::parse(Path::new("a.sql"), "--! kind = \"table\"\nSELECT 1").unwrap_err();
        assert!(e.message.contains("unknown variant"), "{e}");
    }
}
