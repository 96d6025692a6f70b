//! Windows sized by the records they hold, the default way a backfill is cut. This module
//! decides
//! - whether a plan's windows are sized by counts (`sized_by_counts`): yes unless
//!   `smart_chunking.enabled` is off or the operator asked for a chunk size (then windows
//!   are that many days); `--smart-chunking` forces counts;
//! - how counts are fetched cheaply (`size_windows`): one grouped request per table where
//!   the API has one (`Source::monthly_counts`, Salesforce's SOQL `GROUP BY` on the month of
//!   `SystemModstamp`), otherwise one count of the table's whole range; a stretch holding
//!   more than `target_records_per_window` is halved (one count per split, the right half is
//!   the rest) down to `min_window_hours`; then neighbours are merged while together they
//!   hold at most the target. Every count goes through the request policy (breaker, budget);
//! - what happens when a table cannot be counted (`Engine::refine_plan`): it keeps
//!   `chunk_size_days` windows, with a warning, and the plan goes on; after an error that
//!   outlived its retries (the service is unwell) the remaining tables are not asked.
//!
//! `size_windows` takes any counter, so the rules are tested without a source.

use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use chrono::{Duration, DurationRound};

use super::planner::Plan;
use super::policy::{HasUsage, fetch_with_policy};
use super::{Engine, EngineError};
use crate::config::SmartChunking;
use crate::domain::Window;
use crate::sources::{ApiUsage, SourceError};

/// Whether a plan's windows are sized by counts: `forced` (`--smart-chunking`) always; else
/// when smart chunking is enabled and no chunk size was asked for explicitly.
pub fn sized_by_counts(rules: &SmartChunking, chunk_size_days: Option<u32>, forced: bool) -> bool {
    forced || (rules.enabled && chunk_size_days.is_none())
}

/// Counts the records of a window (the source, or a test's table).
#[async_trait]
pub trait WindowCounter: Send + Sync {
    async fn count(&self, window: &Window) -> Result<u64, CountError>;
    /// Counts per piece of `window` in one request, where the source can; `None` otherwise.
    async fn grouped(&self, _window: &Window) -> Result<Option<Vec<(Window, u64)>>, CountError> {
        Ok(None)
    }
}

/// A window whose records could not be counted, and the source's reason.
#[derive(Debug, thiserror::Error)]
#[error("count of {table} {window}: {error}")]
pub struct CountError {
    pub table: String,
    pub window: Window,
    pub error: SourceError,
}

/// Windows covering exactly `window`, each with its count: at most `target_records_per_window`
/// records each unless it could not be split below `min_window_hours`.
pub async fn size_windows(
    window: Window,
    rules: &SmartChunking,
    counter: &dyn WindowCounter,
) -> Result<Vec<(Window, u64)>, CountError> {
    let coarse = match counter.grouped(&window).await? {
        Some(pieces) => pieces,
        None => vec![(window, counter.count(&window).await?)],
    };
    let target = rules.target_records_per_window.max(1);
    let min_len = Duration::hours(i64::from(rules.min_window_hours.max(1)));
    let mut split: Vec<(Window, u64)> = Vec::new();
    for (w, n) in coarse {
        // Depth-first, left half first, so the output stays in time order.
        let mut stack = vec![(w, n)];
        while let Some((w, n)) = stack.pop() {
            let len = w.end - w.start;
            if n <= target || len < min_len * 2 {
                split.push((w, n));
                continue;
            }
            let half = w.start + len / 2;
            let mid = half.duration_trunc(Duration::seconds(1)).unwrap_or(half);
            let left = Window::new(w.start, mid);
            let left_n = counter.count(&left).await?;
            // The halves are disjoint and cover the window: the right one is the rest.
            stack.push((Window::new(mid, w.end), n.saturating_sub(left_n)));
            stack.push((left, left_n));
        }
    }
    Ok(merge(split, target))
}

/// Merges neighbours, left to right, while together they hold at most `target`.
fn merge(windows: Vec<(Window, u64)>, target: u64) -> Vec<(Window, u64)> {
    let mut merged: Vec<(Window, u64)> = Vec::new();
    for (w, n) in windows {
        match merged.last_mut() {
            // Counts come from the source: checked, so no answer overflows the sum.
            Some((last, m))
                if last.end == w.start && m.checked_add(n).is_some_and(|sum| sum <= target) =>
            {
                last.end = w.end;
                *m += n;
            }
            _ => merged.push((w, n)),
        }
    }
    merged
}

/// Grouped counts are usable only when they cover the window exactly, in order.
fn checked_cover(window: &Window, pieces: &[(Window, u64)]) -> Result<(), String> {
    let mut at = window.start;
    for (w, _) in pieces {
        if w.start != at || w.end <= w.start {
            return Err(format!("grouped counts leave a gap or overlap at {at}"));
        }
        at = w.end;
    }
    if at != window.end {
        return Err(format!("grouped counts end at {at}, not at {}", window.end));
    }
    Ok(())
}

/// The grouped counts' answer carries no quota word of its own.
impl HasUsage for Option<Vec<(Window, u64)>> {
    fn usage(&self) -> Option<&ApiUsage> {
        None
    }
}

struct SourceCounter<'a> {
    engine: &'a Engine,
    tenant_id: &'a str,
    table: &'a str,
    source: std::sync::Arc<dyn crate::sources::Source>,
    endpoint: crate::config::EndpointDef,
    /// Count requests answered.
    calls: AtomicU64,
}

impl SourceCounter<'_> {
    fn error(&self, window: &Window, error: SourceError) -> CountError {
        CountError {
            table: self.table.to_string(),
            window: *window,
            error,
        }
    }
}

#[async_trait]
impl WindowCounter for SourceCounter<'_> {
    async fn count(&self, window: &Window) -> Result<u64, CountError> {
        let n = fetch_with_policy(
            self.engine,
            self.tenant_id,
            self.source.service(),
            self.table,
            || self.source.count(&self.endpoint, window),
        )
        .await
        .map_err(|e| self.error(window, e))?;
        self.calls.fetch_add(1, Ordering::Relaxed);
        Ok(n)
    }

    async fn grouped(&self, window: &Window) -> Result<Option<Vec<(Window, u64)>>, CountError> {
        let pieces = fetch_with_policy(
            self.engine,
            self.tenant_id,
            self.source.service(),
            self.table,
            || self.source.monthly_counts(&self.endpoint, window),
        )
        .await
        .map_err(|e| self.error(window, e))?;
        if let Some(p) = &pieces {
            self.calls.fetch_add(1, Ordering::Relaxed);
            checked_cover(window, p).map_err(|message| {
                self.error(
                    window,
                    SourceError::Decode {
                        message,
                        truncated: false,
                    },
                )
            })?;
        }
        Ok(pieces)
    }
}

impl Engine {
    /// Sizes `plan`'s windows by counts when `sized_by_counts` says so (no `--smart-chunking`
    /// here: the console and other front ends follow the configuration and the chunk size
    /// asked for).
    pub async fn size_plan(&self, plan: &mut Plan, chunk_size_days: Option<u32>) {
        let rules = &self.config().backfill.smart_chunking;
        if !sized_by_counts(rules, chunk_size_days, false) {
            return;
        }
        if let Err(e) = self.refine_plan(plan).await {
            tracing::warn!(error = %e, "windows could not be sized by counts");
        }
    }

    /// Re-cuts every table's windows of `plan` by record counts (`smart_chunking` rules),
    /// keeping each table's range; records the counts and the count requests in the plan. A
    /// table that cannot be counted keeps its windows (a warning says why).
    pub async fn refine_plan(&self, plan: &mut Plan) -> Result<(), EngineError> {
        let rules = self.config().backfill.smart_chunking.clone();
        let (tenant_id, service) = (plan.tenant_id.clone(), plan.service);
        let source = match self.source(&tenant_id, service) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(%tenant_id, %service, error = %e,
                    "no source to count records with; windows are chunk_size_days long");
                return Ok(());
            }
        };
        for t in &mut plan.tables {
            let (Some(first), Some(last)) = (t.windows.first(), t.windows.last()) else {
                continue;
            };
            let range = Window::new(first.start, last.end);
            let endpoint = self
                .config()
                .endpoints(service)
                .and_then(|e| e.find(&t.table))
                .cloned()
                .ok_or_else(|| {
                    EngineError::Other(format!("table {} is not configured", t.table))
                })?;
            let counter = SourceCounter {
                engine: self,
                tenant_id: &tenant_id,
                table: &t.table,
                source: source.clone(),
                endpoint,
                calls: AtomicU64::new(0),
            };
            let sized = size_windows(range, &rules, &counter).await;
            plan.count_calls += counter.calls.load(Ordering::Relaxed);
            match sized {
                Ok(sized) => {
                    tracing::info!(table = %t.table, before = t.windows.len(), after = sized.len(),
                        "windows sized by record counts");
                    t.windows = sized.iter().map(|(w, _)| *w).collect();
                    t.records = Some(sized.into_iter().map(|(_, n)| n).collect());
                }
                Err(e) => {
                    let unwell = e.error.is_retryable();
                    tracing::warn!(%tenant_id, %service, table = %t.table, error = %e,
                        "records could not be counted; the table's windows are chunk_size_days long");
                    if unwell {
                        break;
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, TimeZone, Utc};
    use std::sync::Mutex;

    #[test]
    fn neighbours_whose_counts_overflow_are_not_merged() {
        let day = |d| Utc.with_ymd_and_hms(2024, 1, d, 0, 0, 0).unwrap();
        let (a, b) = (Window::new(day(1), day(2)), Window::new(day(2), day(3)));
        let out = merge(vec![(a, u64::MAX), (b, 1)], u64::MAX);
        assert_eq!(out, vec![(a, u64::MAX), (b, 1)]);
    }

    /// Records at fixed instants; remembers every request.
    struct Table {
        at: Vec<DateTime<Utc>>,
        /// Month pieces to answer `grouped` with, if the "API" has a grouped count.
        months: Option<Vec<Window>>,
        asked: Mutex<Vec<Window>>,
    }

    impl Table {
        fn new(at: Vec<DateTime<Utc>>) -> Table {
            Table {
                at,
                months: None,
                asked: Mutex::new(Vec::new()),
            }
        }
        fn n(&self, w: &Window) -> u64 {
            self.at.iter().filter(|t| w.contains(**t)).count() as u64
        }
        fn requests(&self) -> usize {
            self.asked.lock().unwrap().len()
        }
    }

    #[async_trait]
    impl WindowCounter for Table {
        async fn count(&self, w: &Window) -> Result<u64, CountError> {
            self.asked.lock().unwrap().push(*w);
            Ok(self.n(w))
        }
        async fn grouped(&self, w: &Window) -> Result<Option<Vec<(Window, u64)>>, CountError> {
            let Some(months) = &self.months else {
                return Ok(None);
            };
            self.asked.lock().unwrap().push(*w);
            Ok(Some(months.iter().map(|m| (*m, self.n(m))).collect()))
        }
    }

    fn day(d: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 1, d, 0, 0, 0).unwrap()
    }

    fn month(y: i32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, 1, 0, 0, 0).unwrap()
    }

    fn rules(target: u64) -> SmartChunking {
        SmartChunking {
            enabled: true,
            target_records_per_window: target,
            min_window_hours: 1,
        }
    }

    fn assert_cover(outer: Window, out: &[(Window, u64)]) {
        assert_eq!(out.first().unwrap().0.start, outer.start);
        assert_eq!(out.last().unwrap().0.end, outer.end);
        for pair in out.windows(2) {
            assert_eq!(pair[0].0.end, pair[1].0.start, "gap or overlap: {out:?}");
        }
    }

    #[tokio::test]
    async fn crowded_stretches_split_and_sparse_ones_merge_covering_the_same_range() {
        // 400 records on Jan 3 (spread over its hours), 3 records elsewhere.
        let mut at: Vec<_> = (0..400)
            .map(|i| day(3) + Duration::seconds(i * 200))
            .collect();
        at.extend([
            day(1) + Duration::hours(5),
            day(6),
            day(9) + Duration::hours(1),
        ]);
        let table = Table::new(at);
        let outer = Window::new(day(1), day(10));
        let out = size_windows(outer, &rules(100), &table).await.unwrap();
        assert_cover(outer, &out);
        assert!(out.iter().all(|(_, n)| *n <= 100), "{out:?}");
        for (w, n) in &out {
            assert_eq!(*n, table.n(w), "the count of {w} is the table's");
        }
        assert_eq!(out.iter().map(|(_, n)| n).sum::<u64>(), 403);
        assert!(out.len() >= 4, "Jan 3 split into at least 4: {out:?}");
        // The sparse days after Jan 3 end up in one window with the crowd's tail.
        assert_eq!(out.last().unwrap().0.end, day(10));
        assert!(out.last().unwrap().0.start <= day(4), "{out:?}");
    }

    #[tokio::test]
    async fn a_sparse_table_is_one_window_for_one_count() {
        let at: Vec<_> = (0..50)
            .map(|i| month(2023, 2) + Duration::days(i * 13))
            .collect();
        let table = Table::new(at);
        let outer = Window::new(month(2023, 1), month(2025, 1));
        let out = size_windows(outer, &rules(100), &table).await.unwrap();
        assert_eq!(out, vec![(outer, 50)]);
        assert_eq!(table.requests(), 1, "one count of the whole range");
    }

    #[tokio::test]
    async fn grouped_counts_cost_one_request_and_only_crowded_months_are_counted_again() {
        // 30 records in each of 24 months, 250 more in March 2024.
        let months: Vec<Window> = (0..24)
            .map(|i| {
                Window::new(month(2023 + i / 12, 1 + i as u32 % 12), {
                    let j = i + 1;
                    month(2023 + j / 12, 1 + j as u32 % 12)
                })
            })
            .collect();
        let mut at: Vec<_> = months
            .iter()
            .flat_map(|m| (0..30).map(move |k| m.start + Duration::hours(k * 7)))
            .collect();
        at.extend((0..250).map(|k| month(2024, 3) + Duration::hours(k * 2)));
        let mut table = Table::new(at);
        table.months = Some(months);
        let outer = Window::new(month(2023, 1), month(2025, 1));
        let out = size_windows(outer, &rules(100), &table).await.unwrap();
        assert_cover(outer, &out);
        assert!(out.iter().all(|(_, n)| *n <= 100), "{out:?}");
        assert_eq!(out.iter().map(|(_, n)| n).sum::<u64>(), 24 * 30 + 250);
        let asked = table.asked.lock().unwrap().clone();
        assert_eq!(asked[0], outer, "the grouped request first");
        assert!(
            asked[1..]
                .iter()
                .all(|w| w.start >= month(2024, 3) && w.end <= month(2024, 4)),
            "only March 2024 is split: {asked:?}"
        );
        // Neighbouring months merge three at a time (90 records), not one window each.
        assert!(out.len() <= 8 + 4 + 2, "{} windows: {out:?}", out.len());
    }

    #[tokio::test]
    async fn a_window_is_not_split_below_the_minimum_length() {
        let table = Table::new(vec![day(1); 500]);
        let out = size_windows(Window::new(day(1), day(2)), &rules(100), &table)
            .await
            .unwrap();
        let smallest = out.iter().map(|(w, _)| w.end - w.start).min().unwrap();
        assert!(smallest >= Duration::hours(1), "{out:?}");
        assert_eq!(out.iter().map(|(_, n)| n).sum::<u64>(), 500);
    }

    #[test]
    fn an_explicit_chunk_size_means_fixed_windows_unless_counts_are_forced() {
        let on = rules(100);
        let off = SmartChunking {
            enabled: false,
            ..rules(100)
        };
        assert!(sized_by_counts(&on, None, false));
        assert!(!sized_by_counts(&on, Some(7), false));
        assert!(!sized_by_counts(&off, None, false));
        assert!(sized_by_counts(&off, Some(7), true));
    }

    #[test]
    fn grouped_counts_must_cover_the_window() {
        let outer = Window::new(day(1), day(10));
        assert!(checked_cover(&outer, &[(outer, 1)]).is_ok());
        let gap = [
            (Window::new(day(1), day(3)), 1),
            (Window::new(day(4), day(10)), 1),
        ];
        assert!(checked_cover(&outer, &gap).is_err());
        assert!(checked_cover(&outer, &[(Window::new(day(1), day(9)), 1)]).is_err());
    }

    /// Windows sized by counts cover `[start, end)` exactly, in order, with no overlap and no
    /// empty window, and keep every record, for arbitrary ranges, record times, targets,
    /// minimum lengths and grouped pieces.
    mod properties {
        use proptest::prelude::*;

        use super::*;

        fn at(secs: i64) -> DateTime<Utc> {
            DateTime::from_timestamp(1_600_000_000 + secs, 0).unwrap()
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(200))]
            #[test]
            fn sized_windows_cover_the_range_exactly(
                start in 0i64..1_000_000,
                len in 1i64..200_000_000,
                offsets in proptest::collection::vec(0.0f64..1.0, 0..400),
                target in 1u64..200,
                min_hours in 1u32..72,
                cuts in proptest::collection::btree_set(0u32..1000, 0..6),
                grouped in any::<bool>(),
            ) {
                let outer = Window::new(at(start), at(start + len));
                let times = offsets.iter().map(|f| at(start + (f * len as f64) as i64)).collect();
                let mut table = Table::new(times);
                if grouped {
                    let mut edges = vec![outer.start];
                    edges.extend(cuts.iter().map(|p| at(start + len * i64::from(*p) / 1000)));
                    edges.push(outer.end);
                    edges.dedup();
                    table.months = Some(edges.windows(2).map(|e| Window::new(e[0], e[1])).collect());
                }
                let rules = SmartChunking { enabled: true, target_records_per_window: target, min_window_hours: min_hours };
                let out = tokio::runtime::Builder::new_current_thread()
                    .build()
                    .unwrap()
                    .block_on(size_windows(outer, &rules, &table))
                    .unwrap();
                prop_assert!(checked_cover(&outer, &out).is_ok(), "{:?}", out);
                for (w, n) in &out {
                    prop_assert_eq!(*n, table.n(w), "{:?}", w);
                }
                prop_assert_eq!(out.iter().map(|(_, n)| n).sum::<u64>(), offsets.len() as u64);
            }
        }
    }
}
