//! The console's one model: what is on screen, the engine's latest snapshot, modes, marks,
//! the logs pane, rates and the lifecycle events heard (`lifecycle`). Plain data: `update`
//! changes it, views read it.

pub mod failures;
pub mod lifecycle;

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};

use super::form::TriggerForm;
use super::keymap::Keymap;
use super::logs::LogPane;
use super::theme::Theme;
pub use super::view::View;
use crate::domain::{ChunkKey, Job, JobStatus, Service};
use crate::engine::detect::Check;
use crate::engine::handle::{Command, RateHealth, Snapshot};
pub use failures::Failures;
pub use lifecycle::Lifecycle;

/// A screen of the console; the stack of them is the breadcrumb trail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    Tenants,
    /// Jobs, optionally only one tenant's service (drilled in from Tenants).
    Jobs {
        scope: Option<(String, Service)>,
    },
    JobDetail {
        job_id: String,
    },
    Logs,
    Health,
    Pulse,
}

impl Route {
    pub fn crumb(&self) -> String {
        match self {
            Route::Tenants => "tenants".into(),
            Route::Jobs { scope: None } => "jobs".into(),
            Route::Jobs {
                scope: Some((t, s)),
            } => format!("jobs {t}/{s}"),
            Route::JobDetail { job_id } => job_id.clone(),
            Route::Logs => "logs".into(),
            Route::Health => "health".into(),
            Route::Pulse => "pulse".into(),
        }
    }

    /// The view kind, for the keymap and help.
    pub fn view(&self) -> View {
        match self {
            Route::Tenants => View::Tenants,
            Route::Jobs { .. } => View::Jobs,
            Route::JobDetail { .. } => View::Detail,
            Route::Logs => View::Logs,
            Route::Health => View::Health,
            Route::Pulse => View::Pulse,
        }
    }
}

/// How the keyboard is read right now.
#[derive(Clone, Debug, PartialEq)]
pub enum Mode {
    Normal,
    /// `:` typed: a command line with completion.
    Command {
        input: String,
    },
    /// `/` typed in a table view: the row filter being edited.
    Filter {
        input: String,
    },
    /// `/` typed in the logs pane: the search being edited.
    Search {
        input: String,
    },
    Help,
    Confirm(Confirm),
    Form(Box<TriggerForm>),
    /// `d` or `!`: every field of a chunk and its attempts, wrapped and scrollable.
    Describe {
        key: ChunkKey,
        scroll: u16,
    },
    /// `q` asked whether to quit while the console's jobs run or wait (`update::quit`).
    Quitting {
        prompt: String,
    },
    /// A change to a protected tenant waits for its id to be typed (`update::protect`).
    Protect(Protect),
}

/// The typed-id prompt of a protected tenant: the commands wait for `tenant_id`.
#[derive(Clone, Debug, PartialEq)]
pub struct Protect {
    pub tenant_id: String,
    /// The operations API's words: `tenant acme is protected: type the tenant id to …`.
    pub prompt: String,
    /// The confirm the commands came from, when they did (what they will do).
    pub context: Option<String>,
    pub input: String,
    pub commands: Vec<Command>,
}

/// A question before a mutating action; `y` runs the commands.
#[derive(Clone, Debug, PartialEq)]
pub struct Confirm {
    pub prompt: String,
    pub commands: Vec<Command>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatusKind {
    Info,
    Warn,
    Error,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Status {
    pub text: String,
    pub kind: StatusKind,
    pub at: DateTime<Utc>,
    /// The answer to the operator's own command: engine chatter does not replace it while
    /// it is fresh (`App::note`).
    pub answer: bool,
}

/// Columns the jobs table sorts by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobSort {
    Created,
    Job,
    Tenant,
    Status,
    Progress,
    Records,
    Rate,
    Failures,
}

impl JobSort {
    pub const ALL: [JobSort; 8] = [
        JobSort::Created,
        JobSort::Job,
        JobSort::Tenant,
        JobSort::Status,
        JobSort::Progress,
        JobSort::Records,
        JobSort::Rate,
        JobSort::Failures,
    ];

    pub fn label(self) -> &'static str {
        match self {
            JobSort::Created => "created",
            JobSort::Job => "job",
            JobSort::Tenant => "tenant",
            JobSort::Status => "status",
            JobSort::Progress => "progress",
            JobSort::Records => "records",
            JobSort::Rate => "rate",
            JobSort::Failures => "failures",
        }
    }

    pub fn next(self) -> JobSort {
        let i = JobSort::ALL.iter().position(|s| *s == self).unwrap_or(0);
        JobSort::ALL[(i + 1) % JobSort::ALL.len()]
    }
}

/// A scrolled list: the selected row and the first row on screen.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ListState {
    pub selected: usize,
    pub offset: usize,
}

impl ListState {
    /// Moves by `delta` within `len` rows and keeps the selection inside `height` rows.
    pub fn step(&mut self, delta: isize, len: usize, height: usize) {
        if len == 0 {
            *self = ListState::default();
            return;
        }
        self.selected = self.selected.saturating_add_signed(delta).min(len - 1);
        self.settle(len, height);
    }

    pub fn settle(&mut self, len: usize, height: usize) {
        let height = height.max(1);
        self.selected = self.selected.min(len.saturating_sub(1));
        if self.selected < self.offset {
            self.offset = self.selected;
        } else if self.selected >= self.offset + height {
            self.offset = self.selected + 1 - height;
        }
        self.offset = self.offset.min(len.saturating_sub(height));
    }
}

/// One tenant's service as the Tenants view lists it.
#[derive(Clone, Debug, PartialEq)]
pub struct TenantRow {
    pub tenant_id: String,
    pub display_name: String,
    /// Mutating actions need the tenant id typed (`ops::guard`).
    pub protected: bool,
    pub service: Service,
    pub enabled: bool,
    /// The newest job of this tenant's service.
    pub latest: Option<usize>,
    /// Auto-detection selected it (or, before detection has reported, no backfill of it
    /// has completed).
    pub needs_backfill: bool,
    /// Why it was or was not selected.
    pub reason: String,
    /// The detection check that decided; `None` while detection has not reported on it.
    pub check: Option<Check>,
    pub jobs: usize,
}

/// Recent throughput of one job, from chunk progress events.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RateMeter {
    /// (when, records, requests) deltas.
    samples: VecDeque<(DateTime<Utc>, u64, u64)>,
    finished: VecDeque<DateTime<Utc>>,
    last: HashMap<(String, u32), (u64, u32)>,
    first_seen: Option<DateTime<Utc>>,
    pub retrying: u32,
    /// Pages read by the chunks finished so far, and their count: requests per chunk.
    done_pages: u64,
    done_chunks: u64,
}

/// Records per second are averaged over this window.
const RATE_WINDOW_SECS: i64 = 15;
/// Requests are counted over this window: REQ/M is the last minute's count, as the API's
/// limit counts them, never a few seconds' burst scaled up.
const REQUEST_WINDOW_SECS: i64 = 60;
/// Chunk completions are counted over this window for the ETA.
const ETA_WINDOW_SECS: i64 = 120;

impl RateMeter {
    pub fn progress(&mut self, at: DateTime<Utc>, table: &str, seq: u32, records: u64, pages: u32) {
        self.first_seen.get_or_insert(at);
        let (r0, p0) = self
            .last
            .insert((table.to_string(), seq), (records, pages))
            .unwrap_or((0, 0));
        let dr = records.saturating_sub(r0);
        let dp = u64::from(pages.saturating_sub(p0));
        if dr > 0 || dp > 0 {
            self.samples.push_back((at, dr, dp));
        }
        self.prune(at);
    }

    pub fn chunk_done(&mut self, at: DateTime<Utc>, table: &str, seq: u32) {
        self.first_seen.get_or_insert(at);
        let pages = self
            .last
            .remove(&(table.to_string(), seq))
            .map_or(1, |(_, p)| u64::from(p).max(1));
        self.done_pages += pages;
        self.done_chunks += 1;
        self.finished.push_back(at);
        self.prune(at);
    }

    pub fn prune(&mut self, now: DateTime<Utc>) {
        let cut = now - Duration::seconds(REQUEST_WINDOW_SECS);
        while self.samples.front().is_some_and(|(t, _, _)| *t < cut) {
            self.samples.pop_front();
        }
        let cut = now - Duration::seconds(ETA_WINDOW_SECS);
        while self.finished.front().is_some_and(|t| *t < cut) {
            self.finished.pop_front();
        }
    }

    fn span(&self, now: DateTime<Utc>, window: i64) -> f64 {
        let since = self
            .first_seen
            .map_or(window, |f| (now - f).num_seconds().clamp(1, window));
        since as f64
    }

    /// Records per second over the last few seconds, and the requests of the last minute.
    pub fn rates(&self, now: DateTime<Utc>) -> (f64, f64) {
        let span = self.span(now, RATE_WINDOW_SECS);
        let cut = now - Duration::seconds(RATE_WINDOW_SECS);
        let records: u64 = self
            .samples
            .iter()
            .filter(|(t, _, _)| *t >= cut)
            .map(|(_, dr, _)| dr)
            .sum();
        let cut = now - Duration::seconds(REQUEST_WINDOW_SECS);
        let requests: u64 = self
            .samples
            .iter()
            .filter(|(t, _, _)| *t >= cut)
            .map(|(_, _, dp)| dp)
            .sum();
        (records as f64 / span, requests as f64)
    }

    /// Time left at the recent pace of chunk completions, and never less than the API's
    /// limit allows for the requests the chunks left will take (`limit_per_minute`): a burst
    /// of quick chunks at the start does not promise what the rate limit will not give.
    pub fn eta(
        &self,
        now: DateTime<Utc>,
        chunks_left: u32,
        limit_per_minute: Option<u32>,
    ) -> Option<Duration> {
        if chunks_left == 0 || self.finished.is_empty() {
            return None;
        }
        let span = self.span(now, ETA_WINDOW_SECS);
        let per_sec = self.finished.len() as f64 / span;
        let pace = f64::from(chunks_left) / per_sec;
        let per_chunk = self.done_pages as f64 / self.done_chunks.max(1) as f64;
        let floor = limit_per_minute.filter(|l| *l > 0).map_or(0.0, |l| {
            f64::from(chunks_left) * per_chunk * 60.0 / f64::from(l)
        });
        Some(Duration::seconds(pace.max(floor).ceil() as i64))
    }
}

/// Which jobs the console shows and where `t` sends a backfill.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CloudMode {
    /// The workspace's jobs, run in this process; `why` says what choosing cloud needs (the
    /// missing settings, or `--cloud`).
    Off { why: String },
    /// The cloud deployment's jobs (DynamoDB); trigger, cancel and resume go to Step
    /// Functions as `trigger|cancel|resume --cloud` do, and logs come from CloudWatch Logs.
    On,
}

impl Default for CloudMode {
    fn default() -> Self {
        CloudMode::Off {
            why: "start the console with --cloud to dispatch and watch cloud jobs".into(),
        }
    }
}

/// The console's state.
#[derive(Clone, Debug)]
pub struct App {
    /// Never empty: the last route is on screen.
    pub stack: Vec<Route>,
    pub mode: Mode,
    pub snap: Arc<Snapshot>,
    /// The clock as the last message told it (a fake one in tests).
    pub now: DateTime<Utc>,
    pub theme: Theme,
    /// The keys in effect (defaults with `keys.toml` laid over them) and the mouse setting.
    pub keymap: Keymap,
    pub read_only: bool,
    pub cloud: CloudMode,
    pub status: Option<Status>,
    pub width: u16,
    pub height: u16,
    pub tenants: ListState,
    pub tenant_rows: Vec<TenantRow>,
    pub tenant_filter: String,
    pub jobs: ListState,
    /// Indexes into `snap.jobs`, filtered and sorted: recomputed on change, not per frame.
    pub job_rows: Vec<usize>,
    pub job_filter: String,
    pub sort: JobSort,
    pub sort_desc: bool,
    pub marks: BTreeSet<String>,
    /// Detail view: selected table and chunk index within it.
    pub detail_table: usize,
    pub detail_chunk: usize,
    /// The watched job's chunks grouped by table: name and index range in the chunk list.
    pub detail_groups: Vec<(String, std::ops::Range<usize>)>,
    pub health: ListState,
    /// What needs attention, most severe first (Health view).
    pub alerts: Vec<(StatusKind, String)>,
    pub logs: LogPane,
    pub rates: HashMap<String, RateMeter>,
    /// Marker moves, transforms, alerts and off-peak waits as events told them.
    pub life: Lifecycle,
    /// Redraw needed.
    pub dirty: bool,
    pub quit: bool,
    pub form_generation: u64,
    /// Job counts for the header, taken once per snapshot.
    pub counts: JobCounts,
    /// Failures heard of; the unacknowledged ones hold the alert bar.
    pub failures: Failures,
    /// The chunk the detail view selects once its job's chunks are read (back from its logs,
    /// or opened by `!`).
    pub detail_focus: Option<failures::Focus>,
    /// `!` on a failure known only from its job's counters: describe the chunk the focus finds.
    pub describe_focus: bool,
    /// The job each of `alerts` is about, if one is (Enter and R in the Health view).
    pub alert_jobs: Vec<Option<String>>,
    /// Tab's place among the `:` prompt's completions.
    pub command_cycle: Option<Cycle>,
}

/// Tab's place among the `:` prompt's completions of what was typed before the first Tab.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Cycle {
    pub typed: String,
    pub index: usize,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct JobCounts {
    pub total: usize,
    pub running: usize,
    /// Failed or completed with errors, or running with failed chunks.
    pub failed: usize,
    /// Failed chunks of jobs still active: failures that happen while a job runs.
    pub failing_chunks: u32,
}

/// How long the answer to a command holds the status bar against engine messages.
pub const ANSWER_SECS: i64 = 5;

/// Default lines the logs pane keeps.
pub const LOG_CAPACITY: usize = 100_000;

impl App {
    pub fn new(theme: Theme, read_only: bool, now: DateTime<Utc>) -> App {
        App {
            stack: vec![Route::Tenants],
            mode: Mode::Normal,
            snap: Arc::new(Snapshot::default()),
            now,
            theme,
            keymap: Keymap::default(),
            read_only,
            cloud: CloudMode::default(),
            status: None,
            width: 120,
            height: 40,
            tenants: ListState::default(),
            tenant_rows: Vec::new(),
            tenant_filter: String::new(),
            jobs: ListState::default(),
            job_rows: Vec::new(),
            job_filter: String::new(),
            sort: JobSort::Created,
            sort_desc: false,
            marks: BTreeSet::new(),
            detail_table: 0,
            detail_chunk: 0,
            detail_groups: Vec::new(),
            health: ListState::default(),
            alerts: Vec::new(),
            logs: LogPane::new(LOG_CAPACITY),
            rates: HashMap::new(),
            life: Lifecycle::default(),
            dirty: true,
            quit: false,
            form_generation: 0,
            counts: JobCounts::default(),
            failures: Failures::default(),
            detail_focus: None,
            describe_focus: false,
            alert_jobs: Vec::new(),
            command_cycle: None,
        }
    }

    pub fn route(&self) -> &Route {
        self.stack.last().expect("the route stack is never empty")
    }

    pub fn view(&self) -> View {
        self.route().view()
    }

    /// The key of `action` in the current view as messages name it (its name when unbound).
    pub fn key(&self, action: super::action::Action) -> String {
        self.keymap
            .key_label(self.view(), action)
            .unwrap_or_else(|| action.name())
    }

    /// Rows of the main table area: the screen less header, borders, column titles, status
    /// and the alert bar while it shows.
    pub fn body_rows(&self) -> usize {
        usize::from(self.height.saturating_sub(5 + self.alert_bar_rows())).max(1)
    }

    /// The alert bar's height: one row while a failure is unacknowledged.
    pub fn alert_bar_rows(&self) -> u16 {
        u16::from(self.failures.open().next().is_some())
    }

    /// Rows of the tenants table: the body less the reason block under it.
    pub fn tenant_body_rows(&self) -> usize {
        self.body_rows().saturating_sub(4).max(1)
    }

    pub fn job(&self, job_id: &str) -> Option<&Job> {
        self.snap.jobs.iter().find(|j| j.job_id == job_id)
    }

    /// The job under the cursor: the detail view's, or the selected row of the jobs table.
    pub fn selected_job(&self) -> Option<&Job> {
        match self.route() {
            Route::JobDetail { job_id } => self.job(job_id),
            Route::Jobs { .. } => self
                .job_rows
                .get(self.jobs.selected)
                .and_then(|&i| self.snap.jobs.get(i)),
            Route::Tenants => self
                .tenant_rows
                .get(self.tenants.selected)
                .and_then(|r| r.latest)
                .and_then(|i| self.snap.jobs.get(i)),
            Route::Health => self
                .alert_jobs
                .get(self.health.selected)
                .and_then(|id| id.as_deref())
                .and_then(|id| self.job(id)),
            Route::Logs | Route::Pulse => None,
        }
    }

    pub fn set_status(&mut self, kind: StatusKind, text: impl Into<String>) {
        self.status = Some(Status {
            text: text.into(),
            kind,
            at: self.now,
            answer: false,
        });
        self.dirty = true;
    }

    /// The engine's answer to the operator's command: held against engine chatter for
    /// `ANSWER_SECS`.
    pub fn answer(&mut self, kind: StatusKind, text: impl Into<String>) {
        self.set_status(kind, text);
        if let Some(s) = &mut self.status {
            s.answer = true;
        }
    }

    /// A message of the engine's own (a job finished, a marker moved): shown unless a fresh
    /// answer to the operator's command holds the status bar.
    pub fn note(&mut self, kind: StatusKind, text: impl Into<String>) {
        let held = self.status.as_ref().is_some_and(|s| {
            s.answer
                && kind != StatusKind::Error
                && self.now - s.at < Duration::seconds(ANSWER_SECS)
        });
        if !held {
            self.set_status(kind, text);
        }
    }

    pub fn is_cloud(&self) -> bool {
        self.cloud == CloudMode::On
    }

    /// Running in this console, or in a runner process (this console's or an earlier one's).
    pub fn running_here(&self, job_id: &str) -> bool {
        self.snap.running_here.contains(job_id) || self.snap.runners.contains_key(job_id)
    }

    /// Why a job the console started waits to run (scheduling limits, off-peak), if it does.
    /// Until when a job waits for its API quota (`waiting_for_quota`), if it does.
    pub fn quota_wait(&self, job_id: &str) -> Option<chrono::DateTime<chrono::Utc>> {
        self.snap.quota_waits.get(job_id).copied()
    }

    pub fn waiting(&self, job_id: &str) -> Option<String> {
        if let Some(why) = self.snap.waiting.get(job_id) {
            return Some(why.clone());
        }
        self.life.deferred.get(job_id).map(|(opens, _)| {
            format!(
                "waits for the off-peak window (opens {} UTC)",
                opens.format("%Y-%m-%d %H:%M")
            )
        })
    }

    /// Rebuilds the tenants' rows from the snapshot.
    pub fn rebuild_tenants(&mut self) {
        let filter = self.tenant_filter.to_lowercase();
        let mut rows = Vec::new();
        for t in self.snap.tenants.iter() {
            for s in &t.services {
                let mine = |j: &&Job| j.tenant_id == t.tenant_id && j.service == s.service;
                let latest = self
                    .snap
                    .jobs
                    .iter()
                    .enumerate()
                    .filter(|(_, j)| mine(j))
                    .max_by_key(|(_, j)| j.created_at)
                    .map(|(i, _)| i);
                let jobs = self.snap.jobs.iter().filter(mine).count();
                let decision = self
                    .snap
                    .detection
                    .iter()
                    .find(|d| d.tenant_id == t.tenant_id && d.service == s.service);
                // Until detection reports (and in cloud mode, where it does not run here),
                // the store's jobs are all there is to go by.
                let (needs_backfill, reason, check) = match decision {
                    Some(d) => (d.selected, d.reason.clone(), Some(d.check)),
                    None => {
                        let done = self
                            .snap
                            .jobs
                            .iter()
                            .filter(mine)
                            .find(|j| j.status == JobStatus::Completed);
                        match done {
                            Some(j) => (false, format!("backfill {} completed", j.job_id), None),
                            None if self.is_cloud() => (
                                true,
                                "no completed backfill in the job store (auto-detection runs \
                                 where the sources are: trigger --auto-detect)"
                                    .to_string(),
                                None,
                            ),
                            None => (
                                true,
                                "no completed backfill in the job store (auto-detection has \
                                 not reported yet)"
                                    .to_string(),
                                None,
                            ),
                        }
                    }
                };
                let row = TenantRow {
                    tenant_id: t.tenant_id.clone(),
                    display_name: t.display_name.clone(),
                    protected: t.protected,
                    service: s.service,
                    enabled: s.enabled,
                    latest,
                    needs_backfill,
                    reason,
                    check,
                    jobs,
                };
                let text = format!("{} {} {}", row.tenant_id, row.display_name, row.service);
                if filter.is_empty() || text.to_lowercase().contains(&filter) {
                    rows.push(row);
                }
            }
        }
        self.tenant_rows = rows;
        let h = self.tenant_body_rows();
        self.tenants.settle(self.tenant_rows.len(), h);
    }

    /// Rebuilds the jobs table's row order from the snapshot, filter and sort, keeping the
    /// selected job selected.
    pub fn rebuild_jobs(&mut self) {
        let keep = self.selected_job_row_id();
        let scope = self
            .stack
            .iter()
            .rev()
            .find_map(|r| match r {
                Route::Jobs { scope } => Some(scope.clone()),
                _ => None,
            })
            .unwrap_or_default();
        let filter = self.job_filter.to_lowercase();
        let jobs = &self.snap.jobs;
        self.counts = JobCounts {
            total: jobs.len(),
            running: jobs
                .iter()
                .filter(|j| j.status == JobStatus::Running)
                .count(),
            failed: jobs
                .iter()
                .filter(|j| {
                    matches!(j.status, JobStatus::Failed | JobStatus::CompletedWithErrors)
                        || (j.failed_chunks > 0 && j.status.is_active())
                })
                .count(),
            failing_chunks: jobs
                .iter()
                .filter(|j| j.status.is_active())
                .map(|j| j.failed_chunks)
                .sum(),
        };
        let mut rows: Vec<usize> = (0..jobs.len())
            .filter(|&i| {
                let j = &jobs[i];
                scope
                    .as_ref()
                    .is_none_or(|(t, s)| j.tenant_id == *t && j.service == *s)
                    && (filter.is_empty()
                        || j.job_id.to_lowercase().contains(&filter)
                        || j.status.as_str().contains(&filter)
                        || j.tenant_id.to_lowercase().contains(&filter))
            })
            .collect();
        let rate = |i: usize| {
            self.rates
                .get(&jobs[i].job_id)
                .map_or(0.0, |m| m.rates(self.now).0)
        };
        match self.sort {
            // The store lists newest first; "created" keeps that order.
            JobSort::Created => {}
            JobSort::Job => rows.sort_by(|&a, &b| jobs[a].job_id.cmp(&jobs[b].job_id)),
            JobSort::Tenant => rows.sort_by(|&a, &b| {
                (&jobs[a].tenant_id, jobs[a].service).cmp(&(&jobs[b].tenant_id, jobs[b].service))
            }),
            JobSort::Status => rows.sort_by_key(|&i| status_rank(jobs[i].status)),
            JobSort::Progress => {
                rows.sort_by(|&a, &b| progress(&jobs[a]).total_cmp(&progress(&jobs[b])))
            }
            JobSort::Records => rows.sort_by_key(|&i| std::cmp::Reverse(jobs[i].records)),
            JobSort::Rate => rows.sort_by(|&a, &b| rate(b).total_cmp(&rate(a))),
            JobSort::Failures => rows.sort_by_key(|&i| std::cmp::Reverse(jobs[i].failed_chunks)),
        }
        if self.sort_desc {
            rows.reverse();
        }
        self.job_rows = rows;
        if let Some(id) = keep
            && let Some(pos) = self.job_rows.iter().position(|&i| jobs[i].job_id == id)
        {
            self.jobs.selected = pos;
        }
        let h = self.body_rows();
        self.jobs.settle(self.job_rows.len(), h);
        self.marks.retain(|m| jobs.iter().any(|j| &j.job_id == m));
    }

    /// Rebuilds the alerts list: stored and live alerts, open breakers, recent 429s, failed
    /// chunks, stalled jobs; and the job each is about (`alert_jobs`).
    pub fn rebuild_alerts(&mut self) {
        let mut out: Vec<(StatusKind, String, Option<String>)> = Vec::new();
        if let Some(e) = &self.snap.error {
            out.push((StatusKind::Error, format!("job store: {e}"), None));
        }
        if let Some(e) = &self.snap.detection_error {
            out.push((StatusKind::Warn, format!("auto-detection: {e}"), None));
        }
        for a in self.life.alerts(&self.snap.alerts) {
            let text = format!(
                "{} {}: {}",
                a.raised_at.format("%m-%d %H:%M"),
                a.kind,
                a.message
            );
            out.push((lifecycle::severity(a.kind), text, a.job_id.clone()));
        }
        for h in self.snap.health.iter() {
            out.extend(self.rate_alerts(h).into_iter().map(|(k, t)| (k, t, None)));
        }
        out.extend(self.job_alerts());
        out.sort_by_key(|(k, _, _)| match k {
            StatusKind::Error => 0,
            StatusKind::Warn => 1,
            StatusKind::Info => 2,
        });
        self.alert_jobs = out.iter().map(|(_, _, j)| j.clone()).collect();
        self.alerts = out.into_iter().map(|(k, t, _)| (k, t)).collect();
        let h = self.body_rows();
        self.health.settle(self.alerts.len(), h);
    }

    /// A tenant's service with its breaker not closed, or rate limited in the last minute.
    fn rate_alerts(&self, h: &RateHealth) -> Vec<(StatusKind, String)> {
        let mut out = Vec::new();
        if h.breaker != crate::engine::BreakerState::Closed {
            out.push((
                StatusKind::Error,
                format!(
                    "{} {}: circuit breaker {:?} after {} failure(s){}",
                    h.tenant_id,
                    h.service,
                    h.breaker,
                    h.consecutive_failures,
                    h.breaker_reason
                        .as_deref()
                        .map(|r| format!(": {r}"))
                        .unwrap_or_default()
                )
                .replace("HalfOpen", "half-open")
                .replace("Open", "open"),
            ));
        }
        if let Some(at) = h.last_429
            && self.now - at < Duration::seconds(60)
        {
            out.push((
                StatusKind::Warn,
                format!(
                    "{} {}: rate limited at {} (Retry-After {} ms, {} in all)",
                    h.tenant_id,
                    h.service,
                    at.format("%H:%M:%S"),
                    h.retry_after_ms.unwrap_or(0),
                    h.rate_limited_total
                ),
            ));
        }
        out
    }

    /// The troubled jobs, the first 50 of them and a count of the rest.
    fn job_alerts(&self) -> Vec<(StatusKind, String, Option<String>)> {
        const SHOWN: usize = 50;
        let mut out = Vec::new();
        let mut troubled = 0;
        for j in self.snap.jobs.iter() {
            let Some((kind, text)) = self.job_trouble(j) else {
                continue;
            };
            troubled += 1;
            if troubled <= SHOWN {
                out.push((kind, text, Some(j.job_id.clone())));
            }
        }
        if troubled > SHOWN {
            out.push((
                StatusKind::Warn,
                format!("... and {} more job(s)", troubled - SHOWN),
                None,
            ));
        }
        out
    }

    /// What is wrong with a job, if anything: failed chunks, or no change in five minutes
    /// while it runs elsewhere.
    fn job_trouble(&self, j: &Job) -> Option<(StatusKind, String)> {
        let stalled = j.status == JobStatus::Running
            && !self.running_here(&j.job_id)
            && self.now - j.updated_at > Duration::minutes(5);
        // Enter opens the job at its failed chunk and R retries, here as in the jobs view.
        if j.failed_chunks > 0 && j.status.is_active() {
            Some((
                StatusKind::Error,
                format!(
                    "{}: {} so far (Enter opens it · R retries)",
                    j.job_id,
                    plural(j.failed_chunks as usize, "failed chunk")
                ),
            ))
        } else if j.failed_chunks > 0 && j.status != JobStatus::Cancelled {
            Some((
                StatusKind::Error,
                format!(
                    "{}: {} with {} (Enter opens it · R retries)",
                    j.job_id,
                    match j.status {
                        JobStatus::CompletedWithErrors => "completed",
                        s => s.as_str(),
                    },
                    plural(j.failed_chunks as usize, "failed chunk")
                ),
            ))
        } else if stalled {
            Some((
                StatusKind::Warn,
                format!(
                    "{}: running elsewhere or stalled, no change since {}",
                    j.job_id,
                    j.updated_at.format("%Y-%m-%d %H:%M:%S")
                ),
            ))
        } else {
            None
        }
    }

    fn selected_job_row_id(&self) -> Option<String> {
        self.job_rows
            .get(self.jobs.selected)
            .and_then(|&i| self.snap.jobs.get(i))
            .map(|j| j.job_id.clone())
    }
}

/// `1 job`, `2 jobs`: a count with its noun in the right number.
pub fn plural(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// Running and troubled jobs first when sorting by status.
fn status_rank(s: JobStatus) -> u8 {
    match s {
        JobStatus::Running => 0,
        JobStatus::Failed => 1,
        JobStatus::CompletedWithErrors => 2,
        JobStatus::Paused => 3,
        JobStatus::Pending => 4,
        JobStatus::Cancelled => 5,
        JobStatus::Completed => 6,
    }
}

pub fn progress(j: &Job) -> f64 {
    if j.total_chunks == 0 {
        return 0.0;
    }
    f64::from(j.completed_chunks + j.failed_chunks) / f64::from(j.total_chunks)
}
