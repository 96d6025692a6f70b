//! The logs pane's model: parsed log records in a bounded ring buffer, the filters (level,
//! chunk), search with matches and context lines, and the indexes the view draws from.
//!
//! Memory stays flat however many lines arrive: the ring drops the oldest record, and the
//! indexes hold record ids that are dropped with it. Filtering and searching are done when
//! lines arrive or a filter changes, never while drawing: a frame only reads the lines on
//! screen.

pub mod feed;

use std::collections::VecDeque;
use std::fmt;

pub use feed::{LogFeed, record};

/// Severity, ordered from least to most severe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

impl Level {
    pub fn parse(s: &str) -> Level {
        match s.to_ascii_uppercase().as_str() {
            "TRACE" => Level::Trace,
            "DEBUG" => Level::Debug,
            "WARN" | "WARNING" => Level::Warn,
            "ERROR" => Level::Error,
            _ => Level::Info,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Level::Trace => "TRACE",
            Level::Debug => "DEBUG",
            Level::Info => "INFO",
            Level::Warn => "WARN",
            Level::Error => "ERROR",
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One log line as the pane shows it, whatever source it came from.
#[derive(Clone, Debug, PartialEq)]
pub struct LogRecord {
    /// `HH:MM:SS` of the event (UTC), or empty when the line had none.
    pub time: Box<str>,
    pub level: Level,
    /// The message followed by its fields as `key=value`.
    pub text: Box<str>,
    pub job_id: Option<Box<str>>,
    pub table: Option<Box<str>>,
    pub seq: Option<u32>,
}

/// Which lines belong to a job, or to one chunk of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChunkFilter {
    pub job_id: String,
    pub table: Option<String>,
    pub seq: Option<u32>,
}

impl ChunkFilter {
    pub fn matches(&self, r: &LogRecord) -> bool {
        if r.job_id.as_deref() != Some(self.job_id.as_str()) {
            return false;
        }
        if let Some(t) = &self.table
            && r.table.as_deref() != Some(t.as_str())
        {
            return false;
        }
        self.seq.is_none() || r.seq == self.seq
    }

    pub fn label(&self) -> String {
        match (&self.table, self.seq) {
            (Some(t), Some(s)) => format!("{}/{t}#{s}", self.job_id),
            (Some(t), None) => format!("{}/{t}", self.job_id),
            _ => self.job_id.clone(),
        }
    }
}

/// Records with increasing ids; the oldest is dropped once `capacity` is reached.
#[derive(Clone, Debug)]
pub struct LogRing {
    records: VecDeque<LogRecord>,
    first_id: u64,
    capacity: usize,
}

impl LogRing {
    pub fn new(capacity: usize) -> LogRing {
        LogRing {
            records: VecDeque::with_capacity(capacity.min(4096)),
            first_id: 0,
            capacity: capacity.max(1),
        }
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Id of the oldest record kept.
    pub fn first_id(&self) -> u64 {
        self.first_id
    }

    /// Id the next record will get.
    pub fn next_id(&self) -> u64 {
        self.first_id + self.records.len() as u64
    }

    pub fn get(&self, id: u64) -> Option<&LogRecord> {
        id.checked_sub(self.first_id)
            .and_then(|i| self.records.get(i as usize))
    }

    /// Appends a record and returns its id.
    pub fn push(&mut self, r: LogRecord) -> u64 {
        if self.records.len() == self.capacity {
            self.records.pop_front();
            self.first_id += 1;
        }
        self.records.push_back(r);
        self.next_id() - 1
    }
}

/// The minimum level shown: cycles all → info → warn → error.
pub fn next_level(current: Option<Level>) -> Option<Level> {
    match current {
        None | Some(Level::Trace) | Some(Level::Debug) => Some(Level::Info),
        Some(Level::Info) => Some(Level::Warn),
        Some(Level::Warn) => Some(Level::Error),
        Some(Level::Error) => None,
    }
}

/// Everything the logs pane shows and how.
#[derive(Clone, Debug)]
pub struct LogPane {
    pub ring: LogRing,
    /// Keep the newest line in view as lines arrive.
    pub follow: bool,
    /// Long lines wrap (on by default: the fields that identify a line come last).
    pub wrap: bool,
    /// Lines below this level are hidden.
    pub min_level: Option<Level>,
    pub chunk: Option<ChunkFilter>,
    /// Lower-cased search text.
    pub search: Option<String>,
    /// Show only matching lines with this many lines of context around each.
    pub context: Option<usize>,
    /// Ids of the lines shown, oldest first.
    shown: VecDeque<u64>,
    /// Ids of shown lines that match the search, oldest first.
    matches: VecDeque<u64>,
    /// The match `n`/`N` last moved to.
    pub current_match: Option<u64>,
    /// When not following: index in `shown` of the top line.
    pub top: usize,
    /// Filtered lines just before the latest, for context before a match.
    recent: VecDeque<u64>,
    /// Lines still to show after the last match (context after).
    after_left: usize,
    /// Where the lines come from (shown in the title).
    pub source_name: String,
    /// The source is read one job at a time (CloudWatch Logs): without a job filter the pane
    /// says how to choose one.
    pub per_job: bool,
    pub source_error: Option<String>,
}

impl LogPane {
    pub fn new(capacity: usize) -> LogPane {
        LogPane {
            ring: LogRing::new(capacity),
            follow: true,
            wrap: true,
            min_level: None,
            chunk: None,
            search: None,
            context: None,
            shown: VecDeque::new(),
            matches: VecDeque::new(),
            current_match: None,
            top: 0,
            recent: VecDeque::new(),
            after_left: 0,
            source_name: String::new(),
            per_job: false,
            source_error: None,
        }
    }

    pub fn shown_len(&self) -> usize {
        self.shown.len()
    }

    pub fn shown_id(&self, index: usize) -> Option<u64> {
        self.shown.get(index).copied()
    }

    pub fn match_count(&self) -> usize {
        self.matches.len()
    }

    /// Position (1-based) of the current match among all matches.
    pub fn match_position(&self) -> Option<usize> {
        let id = self.current_match?;
        self.matches.binary_search(&id).ok().map(|i| i + 1)
    }

    fn passes(&self, r: &LogRecord) -> bool {
        self.min_level.is_none_or(|l| r.level >= l)
            && self.chunk.as_ref().is_none_or(|c| c.matches(r))
    }

    pub fn is_match(&self, r: &LogRecord) -> bool {
        self.search
            .as_deref()
            .is_some_and(|q| !q.is_empty() && contains_ignore_case(&r.text, q))
    }

    /// Takes new lines from a source.
    pub fn push(&mut self, records: impl IntoIterator<Item = LogRecord>) {
        for r in records {
            let passes = self.passes(&r);
            let matched = passes && self.is_match(&r);
            let id = self.ring.push(r);
            self.drop_evicted();
            if !passes {
                continue;
            }
            match self.context {
                None => {
                    self.shown.push_back(id);
                    if matched {
                        self.matches.push_back(id);
                    }
                }
                Some(n) => {
                    if matched {
                        // Context before: the filtered lines just before, not yet shown.
                        let last_shown = self.shown.back().copied();
                        for &prev in &self.recent {
                            if last_shown.is_none_or(|l| prev > l) {
                                self.shown.push_back(prev);
                            }
                        }
                        self.shown.push_back(id);
                        self.matches.push_back(id);
                        self.after_left = n;
                    } else if self.after_left > 0 {
                        self.shown.push_back(id);
                        self.after_left -= 1;
                    }
                    self.recent.push_back(id);
                    while self.recent.len() > n {
                        self.recent.pop_front();
                    }
                }
            }
        }
    }

    /// Forgets ids the ring no longer holds.
    fn drop_evicted(&mut self) {
        let first = self.ring.first_id();
        let mut dropped = 0;
        while self.shown.front().is_some_and(|&id| id < first) {
            self.shown.pop_front();
            dropped += 1;
        }
        while self.matches.front().is_some_and(|&id| id < first) {
            self.matches.pop_front();
        }
        while self.recent.front().is_some_and(|&id| id < first) {
            self.recent.pop_front();
        }
        if self.current_match.is_some_and(|id| id < first) {
            self.current_match = None;
        }
        self.top = self.top.saturating_sub(dropped);
    }

    /// Rebuilds the indexes after a filter, search or context change (one pass).
    pub fn reindex(&mut self) {
        let top_id = (!self.follow).then(|| self.shown_id(self.top)).flatten();
        let ring = std::mem::replace(&mut self.ring, LogRing::new(1));
        self.shown.clear();
        self.matches.clear();
        self.recent.clear();
        self.after_left = 0;
        let first = ring.first_id();
        // Replaying through `push` would copy; walk the ids and index in place instead.
        let mut pending_before: VecDeque<u64> = VecDeque::new();
        for id in first..ring.next_id() {
            let r = ring.get(id).expect("id inside the ring");
            if !self.passes(r) {
                continue;
            }
            let matched = self.is_match(r);
            match self.context {
                None => {
                    self.shown.push_back(id);
                    if matched {
                        self.matches.push_back(id);
                    }
                }
                Some(n) => {
                    if matched {
                        let last = self.shown.back().copied();
                        for &p in &pending_before {
                            if last.is_none_or(|l| p > l) {
                                self.shown.push_back(p);
                            }
                        }
                        self.shown.push_back(id);
                        self.matches.push_back(id);
                        self.after_left = n;
                    } else if self.after_left > 0 {
                        self.shown.push_back(id);
                        self.after_left -= 1;
                    }
                    pending_before.push_back(id);
                    while pending_before.len() > n {
                        pending_before.pop_front();
                    }
                }
            }
        }
        self.recent = pending_before;
        self.ring = ring;
        if self
            .current_match
            .is_some_and(|m| self.matches.binary_search(&m).is_err())
        {
            self.current_match = None;
        }
        self.top = match top_id {
            Some(id) => self.index_at_or_after(id),
            None => 0,
        };
    }

    /// Index in `shown` of the first line with an id at or after `id`.
    fn index_at_or_after(&self, id: u64) -> usize {
        match self.shown.binary_search(&id) {
            Ok(i) | Err(i) => i.min(self.shown.len().saturating_sub(1)),
        }
    }

    /// Moves to the next (or previous) match from the current one or from the top line;
    /// false when there is none. Stops following so the match stays in view.
    pub fn jump(&mut self, forward: bool, height: usize) -> bool {
        if self.matches.is_empty() {
            return false;
        }
        let from = self.current_match.or_else(|| {
            if self.follow {
                self.shown.back().copied()
            } else {
                self.shown_id(self.top)
            }
        });
        let next = match (from, forward) {
            (None, _) => self.matches.front().copied(),
            (Some(f), true) => self
                .matches
                .iter()
                .find(|&&m| m > f)
                .or(self.matches.front())
                .copied(),
            (Some(f), false) => self
                .matches
                .iter()
                .rev()
                .find(|&&m| m < f)
                .or(self.matches.back())
                .copied(),
        };
        let Some(id) = next else { return false };
        self.current_match = Some(id);
        self.follow = false;
        // A few lines above the match stay in view, like context.
        let at = self.index_at_or_after(id);
        self.top = at.saturating_sub((height / 3).min(3));
        true
    }

    /// Scrolls by `delta` lines; scrolling up stops following, reaching the end resumes it.
    pub fn scroll(&mut self, delta: isize, height: usize) {
        let max_top = self.shown.len().saturating_sub(height.max(1));
        let current = if self.follow {
            max_top
        } else {
            self.top.min(max_top)
        };
        let top = current.saturating_add_signed(delta).min(max_top);
        self.top = top;
        self.follow = delta > 0 && top == max_top;
    }

    /// The line `y` copies: the current search match, or else the last line on screen.
    pub fn current_line(&self, height: usize) -> Option<String> {
        let id = self.current_match.or_else(|| {
            let max_top = self.shown.len().saturating_sub(height.max(1));
            let top = if self.follow {
                max_top
            } else {
                self.top.min(max_top)
            };
            let last = (top + height.max(1)).min(self.shown.len()).checked_sub(1)?;
            self.shown.get(last).copied()
        })?;
        self.ring.get(id).map(line_text)
    }

    /// Every kept line of `filter` (every line without one) as text for `$PAGER`, with what
    /// it shows. The lines are as the engine wrote them, secrets already scrubbed.
    pub fn export(&self, filter: Option<&ChunkFilter>) -> (String, String) {
        let title = filter.map_or_else(|| "every job".to_string(), ChunkFilter::label);
        let mut text = String::new();
        let first = self.ring.first_id();
        for id in first..self.ring.next_id() {
            if let Some(r) = self.ring.get(id)
                && filter.is_none_or(|f| f.matches(r))
            {
                text.push_str(&line_text(r));
                text.push('\n');
            }
        }
        (title, text)
    }

    pub fn to_top(&mut self) {
        self.follow = false;
        self.top = 0;
    }

    pub fn to_bottom(&mut self) {
        self.follow = true;
    }
}

/// A log line as the pager and the clipboard get it: time, level, message and fields.
pub fn line_text(r: &LogRecord) -> String {
    format!("{} {:<5} {}", r.time, r.level.as_str(), r.text)
}

/// Case-insensitive substring test; `needle` is already lower-case.
pub fn contains_ignore_case(hay: &str, needle: &str) -> bool {
    if hay.is_ascii() && needle.is_ascii() {
        let (h, n) = (hay.as_bytes(), needle.as_bytes());
        if n.len() > h.len() {
            return false;
        }
        return h.windows(n.len()).any(|w| w.eq_ignore_ascii_case(n));
    }
    hay.to_lowercase().contains(needle)
}

/// Byte ranges of case-insensitive matches of `needle` (lower-case) in `hay`.
pub fn match_ranges(hay: &str, needle: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    if needle.is_empty() {
        return out;
    }
    // Lower-casing can change byte lengths outside ASCII; there the highlight is skipped.
    let lower = hay.to_lowercase();
    if lower.len() != hay.len() {
        return out;
    }
    let mut from = 0;
    while let Some(i) = lower[from..].find(needle) {
        let start = from + i;
        let end = start + needle.len();
        if hay.is_char_boundary(start) && hay.is_char_boundary(end) {
            out.push((start, end));
        }
        from = end;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(i: usize, level: Level, seq: Option<u32>) -> LogRecord {
        LogRecord {
            time: "00:00:00".into(),
            level,
            text: format!("line {i}").into(),
            job_id: seq.map(|_| "job".into()),
            table: seq.map(|_| "tickets".into()),
            seq,
        }
    }

    #[test]
    fn the_ring_keeps_the_newest_and_memory_flat() {
        let mut pane = LogPane::new(1000);
        for i in 0..100_000 {
            pane.push([rec(i, Level::Info, None)]);
        }
        assert_eq!(pane.ring.len(), 1000);
        assert_eq!(pane.shown_len(), 1000);
        assert_eq!(pane.ring.first_id(), 99_000);
        assert_eq!(&*pane.ring.get(99_999).unwrap().text, "line 99999");
        assert!(pane.ring.get(5).is_none());
    }

    #[test]
    fn level_and_chunk_filters_hide_lines() {
        let mut pane = LogPane::new(100);
        pane.push([
            rec(0, Level::Info, Some(1)),
            rec(1, Level::Error, Some(1)),
            rec(2, Level::Error, Some(2)),
            rec(3, Level::Warn, None),
        ]);
        pane.min_level = Some(Level::Warn);
        pane.reindex();
        assert_eq!(pane.shown_len(), 3);
        pane.chunk = Some(ChunkFilter {
            job_id: "job".into(),
            table: Some("tickets".into()),
            seq: Some(1),
        });
        pane.reindex();
        assert_eq!(pane.shown_len(), 1);
        assert_eq!(
            &*pane.ring.get(pane.shown_id(0).unwrap()).unwrap().text,
            "line 1"
        );
    }

    #[test]
    fn search_finds_matches_and_context_keeps_lines_around_them() {
        let mut pane = LogPane::new(100);
        for i in 0..20 {
            pane.push([rec(i, Level::Info, None)]);
        }
        pane.search = Some("line 1".into());
        pane.reindex();
        // "line 1" and "line 10".."line 19".
        assert_eq!(pane.match_count(), 11);
        pane.search = Some("line 5".into());
        pane.context = Some(2);
        pane.reindex();
        let texts: Vec<String> = (0..pane.shown_len())
            .map(|i| {
                pane.ring
                    .get(pane.shown_id(i).unwrap())
                    .unwrap()
                    .text
                    .to_string()
            })
            .collect();
        assert_eq!(texts, ["line 3", "line 4", "line 5", "line 6", "line 7"]);
        // Lines arriving later are indexed the same way.
        pane.push((20..30).map(|i| rec(i, Level::Info, None)));
        pane.push([LogRecord {
            text: "line 5 again".into(),
            ..rec(0, Level::Info, None)
        }]);
        pane.push((31..34).map(|i| rec(i, Level::Info, None)));
        let last: Vec<String> = (pane.shown_len() - 5..pane.shown_len())
            .map(|i| {
                pane.ring
                    .get(pane.shown_id(i).unwrap())
                    .unwrap()
                    .text
                    .to_string()
            })
            .collect();
        assert_eq!(
            last,
            ["line 28", "line 29", "line 5 again", "line 31", "line 32"]
        );
    }

    #[test]
    fn n_and_shift_n_cycle_through_matches() {
        let mut pane = LogPane::new(100);
        for i in 0..50 {
            let text = if i % 10 == 0 { "boom" } else { "ok" };
            pane.push([LogRecord {
                text: text.into(),
                ..rec(i, Level::Info, None)
            }]);
        }
        pane.search = Some("boom".into());
        pane.reindex();
        assert!(pane.jump(true, 10));
        assert_eq!(
            pane.current_match,
            Some(0),
            "from the newest, forward wraps to the first"
        );
        assert!(pane.jump(true, 10));
        assert_eq!(pane.current_match, Some(10));
        assert!(pane.jump(false, 10));
        assert!(pane.jump(false, 10));
        assert_eq!(pane.current_match, Some(40));
        assert_eq!(pane.match_position(), Some(5));
        assert!(!pane.follow);
    }

    #[test]
    fn match_ranges_ignore_case() {
        assert_eq!(match_ranges("Boom boom", "boom"), vec![(0, 4), (5, 9)]);
        assert!(contains_ignore_case("HTTP 400: Injected", "injected"));
    }
}
