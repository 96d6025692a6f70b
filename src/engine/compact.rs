//! Raw compaction: which parts to compact, decided from the job store, then handed to the
//! sink (`sink::compact` writes, records and deletes, and holds the listing every reader uses).
//!
//! A window (`{start}-{end}`) of a table is compacted only when some job's chunk of it
//! succeeded and no chunk of any job over the same window is pending, running or failed (it may
//! still be written, or retried; a cancelled job's chunks never run again). Windows whose live parts add up to
//! the target size (`compaction.target_file_mb`) or more are left as they are; the others are
//! taken in window order and gathered until a group reaches the target, and each group becomes
//! one compacted file (the last group holds what is left). A group of one file is not
//! rewritten. Runs after every completed job (the hand-off, before the canonical transform)
//! and by `avesa-console compact`.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use object_store::ObjectMeta;
use serde::Serialize;

use super::{Engine, EngineError};
use crate::domain::{ChunkStatus, Service};
use crate::sink::compact::{CompactedFile, CrashPoint, RawListing, file_stats};
use crate::sink::{RawSink, window_stamp};
use crate::store::JobFilter;

/// What to compact; `None` is every one.
#[derive(Clone, Debug, Default)]
pub struct CompactRequest {
    pub tenant_id: Option<String>,
    pub service: Option<Service>,
    pub table: Option<String>,
    /// Decide and report, change nothing.
    pub dry_run: bool,
}

/// Files readers see before and after, for one table.
#[derive(Clone, Debug, Default, Serialize)]
pub struct FileCounts {
    pub files: usize,
    pub bytes: u64,
    pub median_bytes: u64,
}

impl FileCounts {
    fn of(files: &[ObjectMeta]) -> Self {
        let (files, bytes, median_bytes) = file_stats(files);
        FileCounts {
            files,
            bytes,
            median_bytes,
        }
    }
}

/// The outcome for one table.
#[derive(Clone, Debug, Serialize)]
pub struct TableCompaction {
    pub tenant_id: String,
    pub service: Service,
    pub table: String,
    pub before: FileCounts,
    /// After the compaction (with `dry_run`: what it would leave, sizes estimated).
    pub after: FileCounts,
    /// Windows not compacted because a chunk over them is not completed.
    pub unfinished_windows: usize,
    pub compacted: Vec<CompactedFile>,
    /// Left-overs of interrupted compactions removed.
    pub cleaned: usize,
}

/// The windows of one table by the state of the chunks over them.
#[derive(Default)]
struct WindowStates {
    completed: HashSet<String>,
    unfinished: HashSet<String>,
}

/// Groups of windows to compact, each `(window, its live parts)` in window order.
pub fn plan_groups(
    listing: &RawListing,
    completed: &HashSet<String>,
    unfinished: &HashSet<String>,
    target_bytes: u64,
) -> Vec<Vec<(String, Vec<ObjectMeta>)>> {
    let mut groups = Vec::new();
    let mut group: Vec<(String, Vec<ObjectMeta>)> = Vec::new();
    let mut size = 0;
    for (stamp, parts) in listing.parts_by_window() {
        if !completed.contains(&stamp) || unfinished.contains(&stamp) {
            continue;
        }
        let bytes: u64 = parts.iter().map(|m| m.size).sum();
        if bytes >= target_bytes {
            continue;
        }
        size += bytes;
        group.push((stamp, parts));
        if size >= target_bytes {
            groups.push(std::mem::take(&mut group));
            size = 0;
        }
    }
    if group.iter().map(|(_, p)| p.len()).sum::<usize>() > 1 {
        groups.push(group);
    }
    groups
}

impl Engine {
    /// The configured size compacted files reach, in bytes.
    fn compact_target_bytes(&self) -> u64 {
        self.config().backfill.compaction.target_file_mb * 1024 * 1024
    }

    /// Per (tenant, service): per table, the windows of chunks in the store by state.
    async fn window_states(
        &self,
        req: &CompactRequest,
    ) -> Result<BTreeMap<(String, Service, String), WindowStates>, EngineError> {
        let filter = JobFilter {
            tenant_id: req.tenant_id.clone(),
            service: req.service,
            status: None,
        };
        let mut out: BTreeMap<(String, Service, String), WindowStates> = BTreeMap::new();
        for job in self.store().list_jobs(&filter).await? {
            for chunk in self.store().chunks(&job.job_id).await? {
                if req.table.as_ref().is_some_and(|t| *t != chunk.key.table) {
                    continue;
                }
                let key = (job.tenant_id.clone(), job.service, chunk.key.table.clone());
                let states = out.entry(key).or_default();
                let stamp = window_stamp(&chunk.window);
                match chunk.status {
                    ChunkStatus::Succeeded => {
                        states.completed.insert(stamp);
                    }
                    // A cancelled job never runs again.
                    ChunkStatus::Cancelled => {}
                    ChunkStatus::Pending | ChunkStatus::Running | ChunkStatus::Failed => {
                        states.unfinished.insert(stamp);
                    }
                }
            }
        }
        Ok(out)
    }

    /// Compacts the small raw parts of finished windows (see the module header), stopping
    /// where `AVESA_TEST_COMPACT_CRASH` says (`CrashPoint::from_env`).
    pub async fn compact(&self, req: &CompactRequest) -> Result<Vec<TableCompaction>, EngineError> {
        self.compact_with(req, CrashPoint::from_env()).await
    }

    /// `compact`, stopping at `crash` (tests of what an interrupted compaction leaves).
    pub async fn compact_with(
        &self,
        req: &CompactRequest,
        crash: Option<CrashPoint>,
    ) -> Result<Vec<TableCompaction>, EngineError> {
        let mut out = Vec::new();
        for ((tenant_id, service, table), states) in self.window_states(req).await? {
            let at = (tenant_id.as_str(), service, table.as_str());
            out.push(self.compact_table(at, &states, req.dry_run, crash).await?);
        }
        Ok(out)
    }

    async fn compact_table(
        &self,
        (tenant_id, service, table): (&str, Service, &str),
        states: &WindowStates,
        dry_run: bool,
        crash: Option<CrashPoint>,
    ) -> Result<TableCompaction, EngineError> {
        let sink = self.sink();
        let listing = sink.resolve_table(tenant_id, service, table).await?;
        let groups = plan_groups(
            &listing,
            &states.completed,
            &states.unfinished,
            self.compact_target_bytes(),
        );
        let mut report = TableCompaction {
            tenant_id: tenant_id.to_string(),
            service,
            table: table.to_string(),
            before: FileCounts::of(&listing.live),
            after: FileCounts::of(&listing.live),
            unfinished_windows: listing
                .parts_by_window()
                .keys()
                .filter(|w| states.unfinished.contains(*w))
                .count(),
            compacted: Vec::new(),
            cleaned: 0,
        };
        if dry_run {
            report.after = FileCounts::of(&projected(&listing, &groups));
            return Ok(report);
        }
        report.cleaned = sink.remove_stale(&listing).await?;
        let prefix = RawSink::table_prefix(tenant_id, service, table);
        report.cleaned += sink.remove_compaction_staging(&prefix).await? as usize;
        for group in groups {
            // Chunks may have been created over these windows since the plan was made.
            let scope = CompactRequest {
                tenant_id: Some(tenant_id.to_string()),
                service: Some(service),
                table: Some(table.to_string()),
                dry_run,
            };
            let unfinished: BTreeSet<String> = self
                .window_states(&scope)
                .await?
                .into_values()
                .flat_map(|s| s.unfinished)
                .collect();
            if group.iter().any(|(w, _)| unfinished.contains(w)) {
                tracing::info!(tenant_id, %service, table, "a window of the group is being written again; group left as it is");
                continue;
            }
            let generation = sink
                .resolve_table(tenant_id, service, table)
                .await?
                .next_gen;
            let files = sink
                .compact_windows(&prefix, &group, generation, crash)
                .await?;
            report.compacted.extend(files);
        }
        let after = sink.resolve_table(tenant_id, service, table).await?;
        report.after = FileCounts::of(&after.live);
        Ok(report)
    }
}

/// The files readers would see after `groups` were compacted (each group one file of the
/// size of its sources).
fn projected(listing: &RawListing, groups: &[Vec<(String, Vec<ObjectMeta>)>]) -> Vec<ObjectMeta> {
    let gone: HashSet<&object_store::path::Path> = groups
        .iter()
        .flatten()
        .flat_map(|(_, parts)| parts.iter().map(|m| &m.location))
        .collect();
    let mut files: Vec<ObjectMeta> = listing
        .live
        .iter()
        .filter(|m| !gone.contains(&m.location))
        .cloned()
        .collect();
    for group in groups {
        let parts: Vec<&ObjectMeta> = group.iter().flat_map(|(_, p)| p).collect();
        if let Some(first) = parts.first() {
            files.push(ObjectMeta {
                size: parts.iter().map(|m| m.size).sum(),
                ..(*first).clone()
            });
        }
    }
    files
}
