//! Online log template mining: each message becomes a template id, a template and its
//! parameters.
//!
//! How a message is read, in two steps:
//!
//! 1. **Shape** ([`super::shape`]). Segments that are values by their look — numbers,
//!    ids, hex, paths, host names — are parameters wherever they appear: `uid=0` reads
//!    `uid=<*>`, `10.0.0.1:22` reads `<*>:<*>`. What is left is the message's shape;
//!    messages with the same shape share a template, found by one hash lookup (the hot
//!    path, the same cost whatever the number of templates).
//! 2. **Evidence.** A word is never a parameter on its own. A new shape becomes a template,
//!    which is then compared with the templates of the same length: when those that differ
//!    from it in exactly one position, and agree everywhere else, show enough distinct
//!    words there, that position becomes a parameter and they merge into the oldest of
//!    them, which keeps its id (and the merge may make it match others: it is checked
//!    again). "Enough" is two words when one contains a digit or is a value, when half of
//!    them were seen as parameters elsewhere, or when they are units after a number
//!    (`B`, `KB`); otherwise `word_threshold` (default 4): user names generalise, but
//!    `state FOLLOWING` / `LEADING` / `LOOKING` stay three templates, as operators read
//!    them. A merge never leaves fewer words with letters than parameters (`KILLING <*>`
//!    and `Launching <*>` are not one template `<*> <*>`), and a one-token message is
//!    its own template.
//!
//! Template ids are a hash of the shape that created the template, so the same input
//! gives the same ids in any run, and the state is saved and loaded ([`Miner::save`]).
//! Every change to a template is a [`TemplateChange`], handed to the pipeline and kept
//! in a history of the last thousand that is saved with the state. Memory is bounded: at
//! most `max_templates` templates (the least recently seen is evicted, and counted), a
//! shape cache and a set of known parameter words that are cleared when full, and at most
//! `max_tokens` tokens per message (the rest is one token).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};

use regex::Regex;
use serde::{Deserialize, Serialize};

use super::shape::{mask_spans, scan, shape_words, Scan};

/// The placeholder written for a parameter, as Loghub writes it.
pub const PARAM: &str = "<*>";

#[derive(Debug, Clone)]
pub struct MinerConfig {
    /// Patterns whose matches are values (a source's known value shapes); none by default.
    pub masks: Vec<Regex>,
    /// Distinct words needed at one position before it becomes a parameter.
    pub word_threshold: usize,
    pub max_templates: usize,
    pub max_tokens: usize,
    pub cache_capacity: usize,
}

impl Default for MinerConfig {
    fn default() -> Self {
        MinerConfig {
            masks: Vec::new(),
            word_threshold: 4,
            max_templates: 10_000,
            max_tokens: 128,
            cache_capacity: 1 << 16,
        }
    }
}

/// One position of a template.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Token {
    /// Text that every message of the template has here (it may contain `<*>` for
    /// segments that are values by their look).
    Word(String),
    /// A parameter learnt from the messages, with the text all of them shared around it.
    Param { prefix: String, suffix: String },
}

impl Token {
    fn render(&self, out: &mut String) {
        match self {
            Token::Word(w) => out.push_str(w),
            Token::Param { prefix, suffix } => {
                out.push_str(prefix);
                out.push_str(PARAM);
                out.push_str(suffix);
            }
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Template {
    #[serde(with = "hex_id")]
    pub id: u64,
    pub tokens: Vec<Token>,
    pub count: u64,
    /// Miner clock at creation and at the last message: merge order and eviction.
    created: u64,
    last_seen: u64,
}

impl Template {
    pub fn text(&self) -> String {
        let mut out = String::new();
        for (i, t) in self.tokens.iter().enumerate() {
            if i > 0 {
                out.push(' ');
            }
            t.render(&mut out);
        }
        out
    }

    /// The id as written in outputs: 16 hex digits.
    pub fn id_hex(&self) -> String {
        format!("{:016x}", self.id)
    }
}

const STATE_FORMAT: &str = "lookout.templates.v1";

/// What [`Miner::save`] writes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MinerState {
    pub format: String,
    pub clock: u64,
    pub templates: Vec<Template>,
    pub known_values: Vec<String>,
    /// The last changes, oldest first, with the miner clock (messages mined) at each and
    /// the template as it read right after.
    #[serde(default)]
    pub history: VecDeque<ChangeRecord>,
}

/// A recorded [`TemplateChange`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeRecord {
    pub at: u64,
    #[serde(flatten)]
    pub change: TemplateChange,
    pub template: String,
}

/// Changes kept in the history.
const HISTORY: usize = 1000;

/// Ids are written as 16 hex digits: JSON numbers above 2^53 lose digits in many readers.
mod hex_id {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(id: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{id:016x}"))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        let s = String::deserialize(d)?;
        u64::from_str_radix(&s, 16).map_err(serde::de::Error::custom)
    }
}

/// Something that happened to the set of templates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "change", rename_all = "lowercase")]
pub enum TemplateChange {
    Created {
        id: u64,
    },
    /// `merged` templates were folded into `into`, which generalised.
    Generalised {
        into: u64,
        merged: Vec<u64>,
    },
    Evicted {
        id: u64,
    },
}

#[derive(Debug, Default, Clone)]
pub struct MinerStats {
    pub messages: u64,
    pub shape_hits: u64,
    pub created: u64,
    pub merged: u64,
    pub evicted: u64,
    pub truncated: u64,
}

/// A place for a template; freed slots (merged, evicted) are reused.
enum Slot {
    Live(Template),
    Free,
}

pub struct Miner {
    config: MinerConfig,
    slots: Vec<Slot>,
    free: Vec<usize>,
    by_len: HashMap<usize, Vec<usize>>,
    /// Live templates by id, and where merged ids went (pruned past `MAX_ALIASES`).
    by_id: HashMap<u64, usize>,
    merged_into: HashMap<u64, u64>,
    /// Shape hash → slot and the id of the template it held then.
    cache: HashMap<u64, (usize, u64), BuildHasherDefault<Prehashed>>,
    /// Words seen as parameters: evidence that the same word elsewhere is one too.
    known_values: HashSet<String>,
    live: usize,
    clock: u64,
    scan: Scan,
    changes: Vec<TemplateChange>,
    history: VecDeque<ChangeRecord>,
    pub stats: MinerStats,
}

/// For maps whose keys are hashes already (the shape cache, template ids).
#[derive(Default)]
pub(crate) struct Prehashed(u64);

impl Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// What [`Miner::mine`] found for a message: a template that may later merge into
/// another (then [`Miner::current`] follows it) or be evicted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mined {
    slot: usize,
    id: u64,
}

/// Merged ids remembered, so that handles and cached shapes find where they went.
const MAX_ALIASES: usize = 1 << 20;

impl Miner {
    pub fn new(config: MinerConfig) -> Miner {
        Miner {
            config,
            slots: Vec::new(),
            free: Vec::new(),
            by_len: HashMap::new(),
            by_id: HashMap::new(),
            merged_into: HashMap::new(),
            cache: HashMap::default(),
            known_values: HashSet::new(),
            live: 0,
            clock: 0,
            scan: Scan::default(),
            changes: Vec::new(),
            history: VecDeque::new(),
            stats: MinerStats::default(),
        }
    }

    /// Finds (or creates) the template of a message.
    pub fn mine(&mut self, message: &str) -> Mined {
        self.clock += 1;
        self.stats.messages += 1;
        let text = message;
        mask_spans(&self.config.masks, text, &mut self.scan.masked);
        let hash = scan(text, self.config.max_tokens, &mut self.scan);
        if self.scan.tokens.len() >= self.config.max_tokens {
            self.stats.truncated += 1;
        }
        if let Some(&(slot, id)) = self.cache.get(&hash) {
            let found = match &self.slots[slot] {
                Slot::Live(t) if t.id == id => Some(slot),
                // Merged since: point the cache at where it went.
                _ => self.resolve(id).inspect(|&to| {
                    let to_id = self.live_template(to).id;
                    self.cache.insert(hash, (to, to_id));
                }),
            };
            if let Some(slot) = found {
                let Slot::Live(t) = &mut self.slots[slot] else {
                    unreachable!("resolve gives live slots")
                };
                self.stats.shape_hits += 1;
                t.count += 1;
                t.last_seen = self.clock;
                return Mined { slot, id: t.id };
            }
        }
        let words = shape_words(text, &self.scan);
        let slot = self.place(words);
        if self.cache.len() >= self.config.cache_capacity {
            self.cache.clear();
        }
        let id = self.live_template(slot).id;
        self.cache.insert(hash, (slot, id));
        Mined { slot, id }
    }

    fn live_template(&self, slot: usize) -> &Template {
        match &self.slots[slot] {
            Slot::Live(t) => t,
            Slot::Free => unreachable!("slot {slot} was just placed"),
        }
    }

    /// The template of a message just mined.
    pub fn template(&self, mined: Mined) -> &Template {
        self.current(mined)
            .expect("the template of the message just mined is live")
    }

    /// The template a message mined earlier belongs to now (after merges), if it was not
    /// evicted.
    pub fn current(&self, mined: Mined) -> Option<&Template> {
        let slot = match &self.slots[mined.slot] {
            Slot::Live(t) if t.id == mined.id => mined.slot,
            _ => self.resolve(mined.id)?,
        };
        match &self.slots[slot] {
            Slot::Live(t) => Some(t),
            _ => None,
        }
    }

    pub fn templates(&self) -> impl Iterator<Item = &Template> {
        self.slots.iter().filter_map(|s| match s {
            Slot::Live(t) => Some(t),
            _ => None,
        })
    }

    pub fn len(&self) -> usize {
        self.live
    }

    /// Template slots allocated, live or free: at most `max_templates` plus those a
    /// cascade of merges holds for a moment.
    pub fn slots_allocated(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Changes since the last call.
    pub fn take_changes(&mut self) -> Vec<TemplateChange> {
        std::mem::take(&mut self.changes)
    }

    /// The last changes (at most a thousand), oldest first; saved with the state.
    pub fn history(&self) -> impl Iterator<Item = &ChangeRecord> {
        self.history.iter()
    }

    /// Records a change; `template` is the template as it reads after it.
    fn record(&mut self, change: TemplateChange, template: String) {
        if self.history.len() >= HISTORY {
            self.history.pop_front();
        }
        self.history.push_back(ChangeRecord {
            at: self.clock,
            change: change.clone(),
            template,
        });
        self.changes.push(change);
    }

    /// The parameters of the message last passed to [`Miner::mine`], in order.
    pub fn params<'a>(&self, message: &'a str, mined: Mined) -> Vec<&'a str> {
        collect_params(message, &self.scan, self.template(mined))
    }

    /// The parameters of any message under a template (for a second pass over a file,
    /// once the templates have settled).
    pub fn params_for<'a>(&self, message: &'a str, template: &Template) -> Vec<&'a str> {
        let mut scratch = Scan::default();
        mask_spans(&self.config.masks, message, &mut scratch.masked);
        scan(message, self.config.max_tokens, &mut scratch);
        collect_params(message, &scratch, template)
    }

    /// The template a message would get, without learning from it (SQL's
    /// `log_template()`): its shape, else the most specific template that covers it.
    pub fn lookup(&self, message: &str) -> Option<&Template> {
        let mut scratch = Scan::default();
        mask_spans(&self.config.masks, message, &mut scratch.masked);
        let hash = scan(message, self.config.max_tokens, &mut scratch);
        if let Some(&(_, id)) = self.cache.get(&hash) {
            if let Some(slot) = self.resolve(id) {
                return Some(self.live_template(slot));
            }
        }
        let words = shape_words(message, &scratch);
        self.by_len
            .get(&words.len())?
            .iter()
            .filter_map(|&s| match &self.slots[s] {
                Slot::Live(t) => covers(t, &words).map(|exact| (exact, t)),
                _ => None,
            })
            .max_by_key(|(exact, t)| (*exact, std::cmp::Reverse(t.created)))
            .map(|(_, t)| t)
    }

    /// The state to save: templates and the words known to be parameters.
    pub fn state(&self) -> MinerState {
        let mut known: Vec<String> = self.known_values.iter().cloned().collect();
        known.sort_unstable();
        MinerState {
            format: STATE_FORMAT.to_string(),
            clock: self.clock,
            templates: self.templates().cloned().collect(),
            known_values: known,
            history: self.history.clone(),
        }
    }

    /// A miner that goes on from a saved state.
    pub fn restore(config: MinerConfig, state: MinerState) -> Result<Miner, String> {
        if state.format != STATE_FORMAT {
            return Err(format!(
                "template state format is {:?}, expected {STATE_FORMAT:?}",
                state.format
            ));
        }
        let mut miner = Miner::new(config);
        miner.clock = state.clock;
        for t in state.templates {
            if t.tokens.is_empty() && t.count == 0 {
                continue;
            }
            miner.by_len.entry(t.tokens.len()).or_default().push(miner.slots.len());
            miner.by_id.insert(t.id, miner.slots.len());
            miner.slots.push(Slot::Live(t));
            miner.live += 1;
        }
        miner.known_values = state.known_values.into_iter().collect();
        miner.history = state.history;
        Ok(miner)
    }

    /// Writes the state as JSON, atomically (a temporary file renamed over the old one).
    pub fn save(&self, path: &std::path::Path) -> std::io::Result<()> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = path.with_extension("json.tmp");
        let json = serde_json::to_vec(&self.state()).map_err(std::io::Error::other)?;
        std::fs::write(&tmp, json)?;
        std::fs::rename(&tmp, path)
    }

    /// Loads a state saved by [`Miner::save`].
    pub fn load(config: MinerConfig, path: &std::path::Path) -> Result<Miner, String> {
        let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let state: MinerState =
            serde_json::from_slice(&bytes).map_err(|e| format!("{}: not a template state: {e}", path.display()))?;
        Miner::restore(config, state).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// The live slot of a template id, following merges.
    fn resolve(&self, mut id: u64) -> Option<usize> {
        loop {
            if let Some(&slot) = self.by_id.get(&id) {
                return Some(slot);
            }
            id = *self.merged_into.get(&id)?;
        }
    }

    /// Frees a slot (its template merged or evicted) for reuse.
    fn release(&mut self, slot: usize) -> Option<Template> {
        let Slot::Live(t) = std::mem::replace(&mut self.slots[slot], Slot::Free) else {
            return None;
        };
        self.by_id.remove(&t.id);
        if let Some(v) = self.by_len.get_mut(&t.tokens.len()) {
            v.retain(|&s| s != slot);
        }
        self.free.push(slot);
        self.live -= 1;
        Some(t)
    }

    /// The cold path: a shape not in the cache.
    fn place(&mut self, words: Vec<String>) -> usize {
        let len = words.len();
        let candidates = self.by_len.get(&len).cloned().unwrap_or_default();
        // A template that already covers the shape; the most specific one wins.
        let mut best: Option<(usize, usize)> = None;
        for &slot in &candidates {
            let Slot::Live(t) = &self.slots[slot] else { continue };
            if let Some(exact) = covers(t, &words) {
                if best.is_none_or(|(_, e)| exact > e) {
                    best = Some((slot, exact));
                }
            }
        }
        if let Some((slot, _)) = best {
            self.widen(slot, &words);
            self.touch(slot);
            return slot;
        }
        let slot = self.create(words);
        let mut survivor = slot;
        while let Some(next) = self.generalise(survivor) {
            survivor = next;
        }
        survivor
    }

    /// Applies the merge rule to one template: among the templates of its length that
    /// differ from it in exactly one word position, and agree everywhere else, enough
    /// distinct words there make the position a parameter. Returns the merged template.
    fn generalise(&mut self, slot: usize) -> Option<usize> {
        let Slot::Live(t) = &self.slots[slot] else { return None };
        let tokens = &t.tokens;
        // A one-word message is its own template: nothing around the word says it is a value.
        if tokens.len() < 2 {
            return None;
        }
        // Ordered, so that a tie goes to the first position in every run.
        let mut by_position: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for &other in self.by_len.get(&tokens.len()).into_iter().flatten() {
            let Slot::Live(o) = &self.slots[other] else { continue };
            if other != slot {
                if let Some(p) = single_difference(&o.tokens, tokens) {
                    by_position.entry(p).or_default().push(other);
                }
            }
        }
        let mut chosen: Option<(usize, Vec<usize>)> = None;
        for (p, mut slots) in by_position {
            slots.push(slot);
            let values = self.words_at(p, &slots);
            let needed = if p > 0 && self.after_value(p - 1, &slots) && values.iter().all(|v| is_unit(v)) {
                2
            } else {
                self.words_needed(&values)
            };
            if values.len() >= needed
                && self.keeps_words(&slots, p)
                && chosen.as_ref().is_none_or(|(_, s)| slots.len() > s.len())
            {
                chosen = Some((p, slots));
            }
        }
        let (p, slots) = chosen?;
        Some(self.merge(p, slots))
    }

    /// Whether every template has a value at position `p` (then the word after it is
    /// likely a unit: `384.0 B`, `317.5 KB`).
    fn after_value(&self, p: usize, slots: &[usize]) -> bool {
        slots.iter().all(|&s| match &self.slots[s] {
            Slot::Live(t) => match &t.tokens[p] {
                Token::Word(w) => w == PARAM,
                Token::Param { .. } => true,
            },
            _ => false,
        })
    }

    /// The distinct words of some templates at a position.
    fn words_at(&self, p: usize, slots: &[usize]) -> Vec<&str> {
        let mut values: Vec<&str> = slots
            .iter()
            .filter_map(|&s| match &self.slots[s] {
                Slot::Live(t) => match &t.tokens[p] {
                    Token::Word(w) => Some(w.as_str()),
                    Token::Param { .. } => None,
                },
                _ => None,
            })
            .collect();
        values.sort_unstable();
        values.dedup();
        values
    }

    /// Whether the template that merging `slots` at `p` would make still has at least as
    /// many words with letters as learnt parameters: `KILLING <*>` and `Launching <*>` are
    /// not one template `<*> <*>`.
    fn keeps_words(&self, slots: &[usize], p: usize) -> bool {
        let templates: Vec<&Template> = slots
            .iter()
            .filter_map(|&s| match &self.slots[s] {
                Slot::Live(t) => Some(t),
                _ => None,
            })
            .collect();
        let Some(first) = templates.first() else { return false };
        let mut words = 0;
        let mut params = 0;
        for (i, tok) in first.tokens.iter().enumerate() {
            let param = i == p || templates.iter().any(|t| matches!(t.tokens[i], Token::Param { .. }));
            match tok {
                _ if param => params += 1,
                Token::Word(w) if w.bytes().any(|b| b.is_ascii_alphabetic()) => words += 1,
                _ => {}
            }
        }
        params <= words
    }

    /// How many distinct words make a position a parameter: two when they look like
    /// values (a digit, a value inside) or were seen as parameters elsewhere.
    fn words_needed(&self, values: &[&str]) -> usize {
        let looks = values
            .iter()
            .any(|v| *v == PARAM || v.bytes().any(|b| b.is_ascii_digit()));
        let known = values.iter().filter(|v| self.known_values.contains(**v)).count();
        if looks || 2 * known >= values.len() {
            2
        } else {
            self.config.word_threshold
        }
    }

    fn learn_value(&mut self, value: &str) {
        if self.known_values.len() >= self.config.cache_capacity {
            self.known_values.clear();
        }
        if !self.known_values.contains(value) {
            self.known_values.insert(value.to_string());
        }
    }

    fn create(&mut self, words: Vec<String>) -> usize {
        if self.live >= self.config.max_templates {
            self.evict_oldest();
        }
        let id = shape_id(&words);
        let len = words.len();
        let template = Template {
            id,
            tokens: words.into_iter().map(Token::Word).collect(),
            count: 1,
            created: self.clock,
            last_seen: self.clock,
        };
        let slot = match self.free.pop() {
            Some(s) => {
                self.slots[s] = Slot::Live(template);
                s
            }
            None => {
                self.slots.push(Slot::Live(template));
                self.slots.len() - 1
            }
        };
        self.by_len.entry(len).or_default().push(slot);
        self.by_id.insert(id, slot);
        self.live += 1;
        self.stats.created += 1;
        let text = self.live_template(slot).text();
        self.record(TemplateChange::Created { id }, text);
        slot
    }

    /// Folds `slots` into the oldest of them, with position `p` a parameter.
    fn merge(&mut self, p: usize, mut slots: Vec<usize>) -> usize {
        slots.sort_by_key(|&s| match &self.slots[s] {
            Slot::Live(t) => t.created,
            _ => u64::MAX,
        });
        let into = slots[0];
        let mut values: Vec<String> = Vec::new();
        let mut merged = Vec::new();
        let mut count = 0;
        let mut last_seen = 0;
        let mut params: Vec<usize> = Vec::new();
        for &s in &slots {
            let Slot::Live(t) = &self.slots[s] else { continue };
            if let Token::Word(w) = &t.tokens[p] {
                values.push(w.clone());
            }
            for (i, tok) in t.tokens.iter().enumerate() {
                if matches!(tok, Token::Param { .. }) {
                    params.push(i);
                }
            }
            last_seen = last_seen.max(t.last_seen);
            if s != into {
                merged.push(t.id);
                count += t.count;
            }
        }
        for v in &values {
            self.learn_value(v);
        }
        let into_id = self.live_template(into).id;
        if self.merged_into.len() >= MAX_ALIASES {
            // Only handles and cache entries older than a million merges miss it.
            self.merged_into.clear();
        }
        for &s in &slots[1..] {
            if let Some(gone) = self.release(s) {
                self.merged_into.insert(gone.id, into_id);
                self.stats.merged += 1;
            }
        }
        let Slot::Live(t) = &mut self.slots[into] else {
            unreachable!("sorted live first")
        };
        let refs: Vec<&str> = values.iter().map(String::as_str).collect();
        let (prefix, suffix) = shared_affixes(&refs);
        t.tokens[p] = Token::Param { prefix, suffix };
        for i in params {
            if !matches!(t.tokens[i], Token::Param { .. }) {
                t.tokens[i] = Token::Param {
                    prefix: String::new(),
                    suffix: String::new(),
                };
            }
        }
        t.count += count;
        t.last_seen = last_seen;
        let (id, text) = (t.id, t.text());
        self.record(TemplateChange::Generalised { into: id, merged }, text);
        into
    }

    /// Shortens the shared prefix or suffix of parameters a new shape does not have.
    fn widen(&mut self, slot: usize, words: &[String]) {
        let Slot::Live(t) = &mut self.slots[slot] else { return };
        let mut changed = false;
        for (tok, word) in t.tokens.iter_mut().zip(words) {
            if let Token::Param { prefix, suffix } = tok {
                if !(word.starts_with(prefix.as_str()) && word.ends_with(suffix.as_str())) {
                    let (p, s) = shared_affixes(&[&format!("{prefix}{PARAM}{suffix}"), word]);
                    *prefix = p;
                    *suffix = s;
                    changed = true;
                }
            }
        }
        if changed {
            let (id, text) = (t.id, t.text());
            self.record(
                TemplateChange::Generalised {
                    into: id,
                    merged: Vec::new(),
                },
                text,
            );
        }
    }

    fn touch(&mut self, slot: usize) {
        if let Slot::Live(t) = &mut self.slots[slot] {
            t.count += 1;
            t.last_seen = self.clock;
        }
    }

    fn evict_oldest(&mut self) {
        let Some(slot) = (0..self.slots.len())
            .filter_map(|s| match &self.slots[s] {
                Slot::Live(t) => Some((t.last_seen, s)),
                _ => None,
            })
            .min()
            .map(|(_, s)| s)
        else {
            return;
        };
        let Some(t) = self.release(slot) else { return };
        self.stats.evicted += 1;
        self.record(TemplateChange::Evicted { id: t.id }, t.text());
    }
}

/// A message's parameters under a template: whole tokens at learnt parameters (less the
/// prefix and suffix the template keeps), value segments elsewhere.
fn collect_params<'a>(text: &'a str, scan: &Scan, template: &Template) -> Vec<&'a str> {
    let mut out = Vec::new();
    for (i, &(start, end, v0, v1)) in scan.tokens.iter().enumerate() {
        match template.tokens.get(i) {
            Some(Token::Param { prefix, suffix }) => {
                let tok = &text[start as usize..end as usize];
                let inner = tok.strip_prefix(prefix.as_str()).unwrap_or(tok);
                out.push(inner.strip_suffix(suffix.as_str()).unwrap_or(inner));
            }
            _ => {
                for &(a, b) in &scan.values[v0 as usize..v1 as usize] {
                    out.push(&text[a as usize..b as usize]);
                }
            }
        }
    }
    out
}

/// Whether a template covers a shape, and then with how many exact words.
fn covers(t: &Template, words: &[String]) -> Option<usize> {
    let mut exact = 0;
    for (tok, w) in t.tokens.iter().zip(words) {
        match tok {
            Token::Word(x) if x == w => exact += 1,
            Token::Word(_) => return None,
            Token::Param { .. } => {}
        }
    }
    Some(exact)
}

/// The one position where two templates have different words, if there is exactly one
/// (a parameter on either side matches anything).
fn single_difference(a: &[Token], b: &[Token]) -> Option<usize> {
    let mut diff = None;
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        if let (Token::Word(x), Token::Word(y)) = (x, y) {
            if x != y {
                if diff.is_some() {
                    return None;
                }
                diff = Some(i);
            }
        }
    }
    diff
}

/// The longest prefix and suffix all values share, cut at punctuation so that a
/// parameter never starts or ends inside a word (`MININT-<*>`, `user=<*>`, not `rdd_<*>`).
fn shared_affixes(values: &[&str]) -> (String, String) {
    let first = values[0];
    let mut pre = first.len();
    let mut suf = first.len();
    for v in &values[1..] {
        pre = pre.min(first.bytes().zip(v.bytes()).take_while(|(a, b)| a == b).count());
        suf = suf.min(
            first
                .bytes()
                .rev()
                .zip(v.bytes().rev())
                .take_while(|(a, b)| a == b)
                .count(),
        );
    }
    let shortest = values.iter().map(|v| v.len()).min().unwrap_or(0);
    let bytes = first.as_bytes();
    // Cut the prefix back to just after its last punctuation mark.
    while pre > 0 && !is_affix_mark(bytes[pre - 1]) {
        pre -= 1;
    }
    // Cut the suffix forward to start at its first punctuation mark.
    while suf > 0 && !is_affix_mark(bytes[first.len() - suf]) {
        suf -= 1;
    }
    if pre + suf > shortest {
        suf = shortest.saturating_sub(pre);
        while suf > 0 && !is_affix_mark(bytes[first.len() - suf]) {
            suf -= 1;
        }
    }
    (first[..pre].to_string(), first[first.len() - suf..].to_string())
}

/// A short word of letters, maybe with trailing punctuation: a unit such as `KB,`.
fn is_unit(word: &str) -> bool {
    let letters = word.trim_end_matches(|c: char| c.is_ascii_punctuation());
    (1..=3).contains(&letters.len()) && letters.bytes().all(|b| b.is_ascii_alphabetic())
}

fn is_affix_mark(b: u8) -> bool {
    matches!(
        b,
        b'=' | b':' | b'-' | b'.' | b'/' | b'(' | b')' | b'[' | b']' | b'{' | b'}' | b'@' | b'#' | b',' | b'|'
    )
}

/// A template's id: the FNV-1a hash of the shape that created it.
fn shape_id(words: &[String]) -> u64 {
    let parts: Vec<&str> = words.iter().map(String::as_str).collect();
    crate::correlate::alert::fnv1a(&parts)
}
