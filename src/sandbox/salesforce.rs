//! The Salesforce surface of the sandbox (being built).

use std::sync::Arc;

use axum::Router;
use chrono::{DateTime, Utc};

use super::Shared;

/// One Salesforce account the sandbox accepts.
#[derive(Clone, Debug)]
pub struct SfAccount {}

impl SfAccount {
    /// The account the sandbox serves for a tenant whose registry entry points at it.
    pub fn from_credentials(
        _tenant_id: &str,
        _creds: &crate::config::Credentials,
        _counts: super::TableCounts,
    ) -> Result<Self, String> {
        Ok(SfAccount {})
    }
}

/// Per-sandbox Salesforce state.
pub(crate) struct SfState {}

impl SfState {
    pub(crate) fn new(
        _accounts: &[SfAccount],
        _anchor: DateTime<Utc>,
        _history_days: u32,
        _rate_limit_per_minute: Option<u32>,
    ) -> std::io::Result<Self> {
        Ok(SfState {})
    }
}

pub(crate) fn routes() -> Router<Arc<Shared>> {
    Router::new()
}
