//! Smart chunking: windows sized by the records they hold. A window holding more than
//! `max_records_per_chunk` is halved until it does not (or reaches `min_window_hours`);
//! then runs of adjacent windows holding together at most `min_records_per_chunk` are
//! merged, so empty or sparse stretches cost one chunk instead of many.
//!
//! `refine` takes any counter, so the rules are tested without a source.

use async_trait::async_trait;
use chrono::{Duration, DurationRound};

use super::planner::Plan;
use super::policy::fetch_with_policy;
use super::{Engine, EngineError};
use crate::config::SmartChunking;
use crate::domain::Window;
use crate::sources::SourceError;

/// Counts the records of a window (the source, or a test's table).
#[async_trait]
pub trait WindowCounter: Send + Sync {
    async fn count(&self, window: &Window) -> Result<u64, CountError>;
}

/// A window whose records could not be counted, and the source's reason.
#[derive(Debug, thiserror::Error)]
#[error("count of {table} {window}: {error}")]
pub struct CountError {
    pub table: String,
    pub window: Window,
    pub error: SourceError,
}

/// Refined windows with their counts, covering exactly what `windows` covered.
pub async fn refine(
    windows: &[Window],
    rules: &SmartChunking,
    counter: &dyn WindowCounter,
) -> Result<Vec<(Window, u64)>, CountError> {
    let min_len = Duration::hours(i64::from(rules.min_window_hours.max(1)));
    let mut split: Vec<(Window, u64)> = Vec::new();
    for w in windows {
        // Depth-first, left half first, so the output stays in time order.
        let mut stack = vec![(*w, counter.count(w).await?)];
        while let Some((w, n)) = stack.pop() {
            let len = w.end - w.start;
            if n <= rules.max_records_per_chunk || len < min_len * 2 {
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
    let mut merged: Vec<(Window, u64)> = Vec::new();
    for (w, n) in split {
        match merged.last_mut() {
            Some((last, m)) if last.end == w.start && *m + n <= rules.min_records_per_chunk => {
                last.end = w.end;
                *m += n;
            }
            _ => merged.push((w, n)),
        }
    }
    Ok(merged)
}

struct SourceCounter<'a> {
    engine: &'a Engine,
    tenant_id: &'a str,
    table: &'a str,
    source: std::sync::Arc<dyn crate::sources::Source>,
    endpoint: crate::config::EndpointDef,
}

#[async_trait]
impl WindowCounter for SourceCounter<'_> {
    async fn count(&self, window: &Window) -> Result<u64, CountError> {
        fetch_with_policy(
            self.engine,
            self.tenant_id,
            self.source.service(),
            self.table,
            || self.source.count(&self.endpoint, window),
        )
        .await
        .map_err(|error| CountError {
            table: self.table.to_string(),
            window: *window,
            error,
        })
    }
}

impl Engine {
    /// Re-cuts every table's windows of `plan` by record counts (`smart_chunking` rules).
    pub async fn refine_plan(&self, plan: &mut Plan) -> Result<(), EngineError> {
        let rules = self.config().backfill.smart_chunking.clone();
        let source = self.source(&plan.tenant_id, plan.service).map_err(|e| {
            EngineError::Other(format!("tenant '{}' {}: {e}", plan.tenant_id, plan.service))
        })?;
        for t in &mut plan.tables {
            let endpoint = self
                .config()
                .endpoints(plan.service)
                .and_then(|e| e.find(&t.table))
                .cloned()
                .ok_or_else(|| {
                    EngineError::Other(format!("table {} is not configured", t.table))
                })?;
            let counter = SourceCounter {
                engine: self,
                tenant_id: &plan.tenant_id,
                table: &t.table,
                source: source.clone(),
                endpoint,
            };
            let refined = refine(&t.windows, &rules, &counter).await.map_err(|e| {
                EngineError::Other(format!("{} {}: {e}", plan.tenant_id, plan.service))
            })?;
            tracing::info!(table = %t.table, before = t.windows.len(), after = refined.len(), "windows sized by record counts");
            t.windows = refined.into_iter().map(|(w, _)| w).collect();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, TimeZone, Utc};

    /// Records at fixed instants.
    struct Table(Vec<DateTime<Utc>>);

    #[async_trait]
    impl WindowCounter for Table {
        async fn count(&self, w: &Window) -> Result<u64, CountError> {
            Ok(self.0.iter().filter(|t| w.contains(**t)).count() as u64)
        }
    }

    fn day(d: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 1, d, 0, 0, 0).unwrap()
    }

    fn rules() -> SmartChunking {
        SmartChunking {
            enabled: true,
            max_records_per_chunk: 100,
            min_records_per_chunk: 10,
            min_window_hours: 1,
        }
    }

    #[tokio::test]
    async fn crowded_windows_split_and_sparse_ones_merge_covering_the_same_range() {
        // 400 records on Jan 3 (spread over its hours), 3 records elsewhere.
        let mut at: Vec<_> = (0..400)
            .map(|i| day(3) + Duration::seconds(i * 200))
            .collect();
        at.extend([
            day(1) + Duration::hours(5),
            day(6),
            day(9) + Duration::hours(1),
        ]);
        let table = Table(at);
        let windows: Vec<Window> = (1..10).map(|d| Window::new(day(d), day(d + 1))).collect();
        let out = refine(&windows, &rules(), &table).await.unwrap();
        assert_eq!(out.first().unwrap().0.start, day(1));
        assert_eq!(out.last().unwrap().0.end, day(10));
        for pair in out.windows(2) {
            assert_eq!(pair[0].0.end, pair[1].0.start, "gap or overlap");
        }
        assert!(out.iter().all(|(_, n)| *n <= 100), "{out:?}");
        assert_eq!(out.iter().map(|(_, n)| n).sum::<u64>(), 403);
        // Jan 1-2 merged (1 record), and Jan 4-9 + more merged (2 records).
        assert_eq!(out[0].0, Window::new(day(1), day(3)));
        assert_eq!(out.last().unwrap().0, Window::new(day(4), day(10)));
        assert!(out.len() >= 6, "Jan 3 split into at least 4: {out:?}");
    }

    #[tokio::test]
    async fn a_window_is_not_split_below_the_minimum_length() {
        let table = Table(vec![day(1); 500]);
        let out = refine(&[Window::new(day(1), day(2))], &rules(), &table)
            .await
            .unwrap();
        let smallest = out.iter().map(|(w, _)| w.end - w.start).min().unwrap();
        assert!(smallest >= Duration::hours(1), "{out:?}");
        assert_eq!(out.iter().map(|(_, n)| n).sum::<u64>(), 500);
    }
}
