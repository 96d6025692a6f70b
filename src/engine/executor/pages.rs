//! A chunk's pages between checkpoints: `Progress` (what is buffered since the last
//! checkpoint and when the next part is due) and `Fetcher` (one page at a time under the
//! pair's request policy, with a read-ahead).

use std::sync::Arc;

use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::Failure;
use crate::config::EndpointDef;
use crate::domain::{Checkpoint, Window};
use crate::engine::policy::fetch_with_policy;
use crate::engine::pulse::PulseJob;
use crate::engine::{Engine, EngineOptions};
use crate::sink::PartWriter;
use crate::sources::{Page, Source, SourceError};

/// A chunk's run between checkpoints: the checkpoint so far, the writer of the next part,
/// and the pages read since the last checkpoint. Up to `max_in_flight` windows buffer parts at
/// once, so each writes its part at its share (`1/share`) of `part_max_rows` and
/// `part_max_bytes`.
pub(super) struct Progress {
    pub(super) cp: Checkpoint,
    pub(super) writer: PartWriter,
    share: usize,
    pub(super) pages: u32,
    pub(super) bytes: u64,
    pub(super) since: Instant,
    /// Whose pulse the records landed count in.
    pub(super) who: Arc<PulseJob>,
}

impl Progress {
    pub(super) fn new(
        cp: Checkpoint,
        writer: PartWriter,
        windows_in_flight: usize,
        fetcher: &Fetcher,
    ) -> Self {
        let share = windows_in_flight.max(1);
        Progress {
            cp,
            // Beside other windows a part stays open while its window waits for the network:
            // it keeps encoded bytes only.
            writer: match share {
                1 => writer,
                _ => writer.row_group_per_page(),
            },
            share,
            pages: 0,
            bytes: 0,
            since: Instant::now(),
            who: fetcher.who.clone(),
        }
    }

    pub(super) fn add(&mut self, page: &Page) -> Result<(), Failure> {
        self.writer.append_json(&page.body, page.records_at)?;
        self.pages += 1;
        self.bytes += page.bytes as u64;
        Ok(())
    }

    /// Whether the buffered rows make a part, by size or by time since the last checkpoint.
    pub(super) fn part_due(&self, opts: &EngineOptions) -> bool {
        self.writer.buffered_rows() >= opts.part_max_rows / self.share
            || self.writer.buffered_bytes() >= opts.part_max_bytes / self.share
            || self.since.elapsed() >= opts.checkpoint_interval
    }
}

/// Fetches pages of one chunk, each under the tenant's rate budget, retrying what can be retried.
#[derive(Clone)]
pub(super) struct Fetcher {
    pub(super) engine: Engine,
    pub(super) source: Arc<dyn Source>,
    pub(super) endpoint: Arc<EndpointDef>,
    pub(super) window: Window,
    pub(super) tenant_id: String,
    /// Whose pulse its requests count in.
    pub(super) who: Arc<PulseJob>,
}

impl Fetcher {
    /// Starts reading the page at `cursor` while the caller encodes the current one (the
    /// cursor is already known). A task spawned from a worker waits in that worker's LIFO
    /// slot, where no other worker can steal it: yield once so the request goes out now and
    /// the response is handled while the page is being flattened.
    pub(super) async fn read_ahead(
        &self,
        cursor: Option<String>,
    ) -> JoinHandle<Result<Page, SourceError>> {
        let fetch = self.spawn(cursor);
        tokio::task::yield_now().await;
        fetch
    }

    pub(super) fn spawn(&self, cursor: Option<String>) -> JoinHandle<Result<Page, SourceError>> {
        let f = self.clone();
        tokio::spawn(async move { f.fetch(cursor).await })
    }

    pub(super) async fn fetch(&self, cursor: Option<String>) -> Result<Page, SourceError> {
        fetch_with_policy(
            &self.engine,
            &self.tenant_id,
            self.source.service(),
            &self.endpoint.table_name,
            || {
                let page = self
                    .source
                    .fetch_page(&self.endpoint, &self.window, cursor.as_deref());
                self.engine.counted_request(&self.who, page)
            },
        )
        .await
    }
}

/// Aborts the read-ahead request, if one is in flight.
pub(super) fn stop_reading(inflight: &mut Option<JoinHandle<Result<Page, SourceError>>>) {
    if let Some(h) = inflight.take() {
        h.abort();
    }
}
