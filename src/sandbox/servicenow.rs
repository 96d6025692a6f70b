//! The ServiceNow surface of the sandbox (being built).

use std::sync::Arc;

use axum::Router;
use chrono::{DateTime, Utc};

use super::Shared;

/// One ServiceNow account the sandbox accepts.
#[derive(Clone, Debug)]
pub struct SnAccount {}

impl SnAccount {
    /// The account the sandbox serves for a tenant whose registry entry points at it.
    pub fn from_credentials(
        _tenant_id: &str,
        _creds: &crate::config::Credentials,
        _counts: super::TableCounts,
    ) -> Result<Self, String> {
        Ok(SnAccount {})
    }
}

/// Per-sandbox ServiceNow state.
pub(crate) struct SnState {}

impl SnState {
    pub(crate) fn new(
        _accounts: &[SnAccount],
        _anchor: DateTime<Utc>,
        _history_days: u32,
        _rate_limit_per_minute: Option<u32>,
    ) -> std::io::Result<Self> {
        Ok(SnState {})
    }
}

pub(crate) fn routes() -> Router<Arc<Shared>> {
    Router::new()
}
