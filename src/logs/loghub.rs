//! Scoring template mining against the Loghub-2k benchmark's labels
//! (`../shared/data/loghub`: raw logs, corrected ground truth, the benchmark's settings).
//!
//! Two configurations per system: *benchmark* — the line format and the preprocessing
//! masks of `settings.json` (Spark with loghub-2.0's empty override), as every Loghub
//! parser is scored; and *default* — the line format only, nothing tuned. The metrics
//! are the Loghub evaluators': GA (a line counts when its predicted group is exactly its
//! true group) and PA (the predicted template equals the true one, whitespace and runs of
//! `<*>` normalised as `loghub_eval.py` does).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use regex::Regex;

use super::file::{self, FileOptions};
use super::miner::{Miner, MinerConfig};
use crate::decode::line::LineFormat;

/// One system of the benchmark.
#[derive(Debug, Clone)]
pub struct System {
    pub name: String,
    pub dir: PathBuf,
    pub format: String,
    pub masks: Vec<String>,
}

/// The systems `settings.json` lists whose logs are present.
pub fn systems(dir: &Path) -> Result<Vec<System>, String> {
    let path = dir.join("settings.json");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let strings = |v: &serde_json::Value| -> Vec<String> {
        v.as_array()
            .map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_string)).collect())
            .unwrap_or_default()
    };
    let mut out = Vec::new();
    for (name, s) in json["systems"].as_object().into_iter().flatten() {
        let masks = match s.get("loghub2_regex_override") {
            Some(o) => strings(o),
            None => strings(&s["regex"]),
        };
        let system = System {
            name: name.clone(),
            dir: dir.join(name),
            format: s["log_format"].as_str().unwrap_or("<Content>").to_string(),
            masks,
        };
        if system.log_path().exists() {
            out.push(system);
        }
    }
    Ok(out)
}

impl System {
    pub fn log_path(&self) -> PathBuf {
        self.dir.join(format!("{}_2k.log", self.name))
    }

    fn truth_path(&self) -> PathBuf {
        self.dir.join(format!("{}_2k.log_structured_corrected.csv", self.name))
    }

    /// The miner configuration: with the benchmark's masks, or the default.
    pub fn config(&self, benchmark: bool) -> Result<MinerConfig, String> {
        let mut config = MinerConfig::default();
        if benchmark {
            config.masks = self
                .masks
                .iter()
                .map(|m| Regex::new(m).map_err(|e| format!("{}: mask {m:?}: {e}", self.name)))
                .collect::<Result<_, _>>()?;
        }
        Ok(config)
    }

    pub fn options(&self) -> Result<FileOptions, String> {
        Ok(FileOptions {
            format: Some(LineFormat::parse(&self.format).map_err(|e| format!("{}: {e}", self.name))?),
            ..FileOptions::default()
        })
    }
}

/// How one configuration did on one system.
#[derive(Debug, Clone, PartialEq)]
pub struct Score {
    pub ga: f64,
    pub pa: f64,
    pub templates: usize,
    pub true_templates: usize,
}

/// Mines a system's log and scores it.
pub fn score(system: &System, benchmark: bool) -> Result<Score, String> {
    let truth = true_templates(&system.truth_path())?;
    let options = system.options()?;
    let mut miner = Miner::new(system.config(benchmark)?);
    let mined = file::mine(&system.log_path(), &options, &mut miner).map_err(|e| format!("{}: {e}", system.name))?;
    if mined.mined.len() != truth.len() {
        return Err(format!(
            "{}: {} lines, {} labels",
            system.name,
            mined.mined.len(),
            truth.len()
        ));
    }
    let mut ids = Vec::with_capacity(truth.len());
    let mut texts = Vec::with_capacity(truth.len());
    for &m in &mined.mined {
        let t = miner
            .current(m)
            .ok_or_else(|| format!("{}: a template was evicted", system.name))?;
        ids.push(t.id_hex());
        texts.push(t.text());
    }
    let mut distinct = truth.clone();
    distinct.sort_unstable();
    distinct.dedup();
    Ok(Score {
        ga: grouping_accuracy(&truth, &ids),
        pa: parsing_accuracy(&truth, &texts),
        templates: miner.len(),
        true_templates: distinct.len(),
    })
}

/// The `EventTemplate` column of a structured CSV, in line order.
fn true_templates(path: &Path) -> Result<Vec<String>, String> {
    let mut reader = csv::Reader::from_path(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let headers = reader
        .headers()
        .map_err(|e| format!("{}: {e}", path.display()))?
        .clone();
    let column = headers
        .iter()
        .position(|h| h == "EventTemplate")
        .ok_or_else(|| format!("{}: no EventTemplate column", path.display()))?;
    reader
        .records()
        .map(|r| {
            r.map(|r| r.get(column).unwrap_or("").to_string())
                .map_err(|e| format!("{}: {e}", path.display()))
        })
        .collect()
}

/// Grouping accuracy: the share of lines whose predicted group holds exactly the lines of
/// their true group.
pub fn grouping_accuracy(truth: &[String], predicted: &[String]) -> f64 {
    let mut predicted_size: HashMap<&str, usize> = HashMap::new();
    for p in predicted {
        *predicted_size.entry(p).or_default() += 1;
    }
    let mut groups: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, t) in truth.iter().enumerate() {
        groups.entry(t).or_default().push(i);
    }
    let correct: usize = groups
        .values()
        .filter(|lines| {
            let p = &predicted[lines[0]];
            lines.iter().all(|&i| &predicted[i] == p) && predicted_size[p.as_str()] == lines.len()
        })
        .map(Vec::len)
        .sum();
    correct as f64 / truth.len().max(1) as f64
}

/// Parsing accuracy: the share of lines whose template is the true one.
pub fn parsing_accuracy(truth: &[String], predicted: &[String]) -> f64 {
    let same = truth
        .iter()
        .zip(predicted)
        .filter(|(t, p)| normalise(t) == normalise(p))
        .count();
    same as f64 / truth.len().max(1) as f64
}

/// Whitespace runs to one space, `<*> <*>` to `<*>` (as `loghub_eval.py`).
fn normalise(t: &str) -> String {
    let mut s = t.split_whitespace().collect::<Vec<_>>().join(" ");
    while s.contains("<*> <*>") {
        s = s.replace("<*> <*>", "<*>");
    }
    s
}

/// The per-system table of both configurations, with averages.
pub fn table(rows: &[(String, Score, Score)]) -> String {
    let mut out = format!(
        "{:<11} {:>8} {:>8} {:>10} | {:>10} {:>10} {:>10}\n",
        "system", "GA", "PA", "templates", "GA default", "PA default", "true"
    );
    for (name, b, d) in rows {
        out.push_str(&format!(
            "{name:<11} {:>8.3} {:>8.3} {:>10} | {:>10.3} {:>10.3} {:>10}\n",
            b.ga, b.pa, b.templates, d.ga, d.pa, b.true_templates
        ));
    }
    let n = rows.len().max(1) as f64;
    let avg = |f: &dyn Fn(&(String, Score, Score)) -> f64| rows.iter().map(f).sum::<f64>() / n;
    out.push_str(&format!(
        "{:<11} {:>8.3} {:>8.3} {:>10} | {:>10.3} {:>10.3}\n",
        "average",
        avg(&|r| r.1.ga),
        avg(&|r| r.1.pa),
        "",
        avg(&|r| r.2.ga),
        avg(&|r| r.2.pa)
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn grouping_accuracy_counts_only_exact_groups() {
        let truth = v(&["a", "a", "b", "c"]);
        assert_eq!(grouping_accuracy(&truth, &v(&["1", "1", "2", "3"])), 1.0);
        // b and c predicted together: both wrong; a right.
        assert_eq!(grouping_accuracy(&truth, &v(&["1", "1", "2", "2"])), 0.5);
        // a split: a wrong.
        assert_eq!(grouping_accuracy(&truth, &v(&["1", "9", "2", "3"])), 0.5);
    }

    #[test]
    fn parsing_accuracy_normalises_like_the_loghub_scorer() {
        let truth = v(&["a <*> b", "x <*>"]);
        assert_eq!(parsing_accuracy(&truth, &v(&["a  <*> <*> b", "x y"])), 0.5);
    }
}
