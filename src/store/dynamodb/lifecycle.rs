//! `LifecycleStore` on the job store's two DynamoDB tables: markers, service states and
//! alerts in fixed partitions of the chunks table, a job's hints and verification results in
//! the job's own partition (layout in `items`).
//!
//! Each change is one conditional write, as the SQLite backend's is one transaction:
//! markers and service states are read, changed by the same pure rules SQLite applies
//! (`next_marker`, `observed`) and written back only if their write counter is still the one
//! read, else read again; finalisation and alerts are "only if not there yet" writes. What
//! cannot fit one write (a job's verification results, removing a job) has a single commit
//! point that makes the change visible at once (see `jobs`).

mod items;
mod jobs;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use self::items::{
    ALERTS, MARKERS, SERVICES, alert_item, decode_alert, decode_marker, decode_service, key_part,
    marker_item, marker_key, service_item, service_key,
};
use super::DynamoStore;
use super::codec::{Item, n, s};
use super::io::{backend, backoff, is_condition_failed, names, query_all, update_if, values};
use crate::domain::{Alert, ChunkVerification, JobMeta, Service, ServiceState, SyncMarker};
use crate::store::StoreError;
use crate::store::lifecycle::{
    AlertFilter, HandoffClaim, LifecycleStore, MarkerAdvance, next_marker, observed,
};

/// Rounds of "someone else wrote it since we read it" before giving up: with the jittered
/// backoff that is seconds of constant contention on one marker, which no workload has.
const MAX_ROUNDS: u32 = 16;

impl DynamoStore {
    /// One lifecycle item of the chunks table, strongly consistent.
    async fn get_chunks_item(&self, key: Item, what: &str) -> Result<Option<Item>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.chunks)
            .set_key(Some(key))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| backend(what, e))?;
        Ok(out.item)
    }

    /// Every item of a lifecycle partition whose `sk` starts with `prefix`, strongly consistent.
    async fn partition(
        &self,
        pk: &str,
        prefix: &str,
        filter: Option<(&str, Vec<(&str, aws_sdk_dynamodb::types::AttributeValue)>)>,
        what: &str,
    ) -> Result<Vec<Item>, StoreError> {
        let key = if prefix.is_empty() {
            "#job_id = :pk"
        } else {
            "#job_id = :pk AND begins_with(#sk, :prefix)"
        };
        let mut vals = vec![(":pk", s(pk))];
        if !prefix.is_empty() {
            vals.push((":prefix", s(prefix)));
        }
        let filter_expr = filter.as_ref().map(|(f, _)| f.to_string());
        vals.extend(filter.into_iter().flat_map(|(_, v)| v));
        let q = self
            .client
            .query()
            .table_name(&self.chunks)
            .consistent_read(true)
            .key_condition_expression(key)
            .set_filter_expression(filter_expr.clone())
            .set_expression_attribute_names(names(&[key, filter_expr.as_deref().unwrap_or("")]))
            .set_expression_attribute_values(values(vals));
        query_all(q, what).await
    }

    /// Puts `item` only if the stored item's write counter is still `read` (`None`: only if
    /// there is none yet). False when someone else wrote it meanwhile.
    pub(super) async fn put_if_unchanged(
        &self,
        item: Item,
        read: Option<u64>,
        what: &str,
    ) -> Result<bool, StoreError> {
        let (cond, vals) = match read {
            None => ("attribute_not_exists(#job_id)", None),
            Some(v) => ("#v = :v", values([(":v", n(v))])),
        };
        match self
            .client
            .put_item()
            .table_name(&self.chunks)
            .set_item(Some(item))
            .condition_expression(cond)
            .set_expression_attribute_names(names(&[cond]))
            .set_expression_attribute_values(vals)
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if is_condition_failed(&e) => Ok(false),
            Err(e) => Err(backend(what, e)),
        }
    }

    async fn move_marker(&self, adv: &MarkerAdvance) -> Result<SyncMarker, StoreError> {
        let tenant = key_part("tenant id", &adv.tenant_id)?;
        key_part("table name", &adv.table)?;
        let key = marker_key(tenant, adv.service, &adv.table);
        for round in 0..MAX_ROUNDS {
            let (existing, read) = match self
                .get_chunks_item(key.clone(), "GetItem sync marker")
                .await?
            {
                Some(item) => {
                    let (m, v) = decode_marker(&item)?;
                    (Some(m), Some(v))
                }
                None => (None, None),
            };
            // A refused move (a gap) is refused whatever happens meanwhile: markers only grow.
            let next = next_marker(existing, adv)?;
            let item = marker_item(&next, read.map_or(1, |v| v + 1));
            if self
                .put_if_unchanged(item, read, "PutItem sync marker")
                .await?
            {
                return Ok(next);
            }
            backoff(round).await;
        }
        Err(StoreError::Backend(format!(
            "moving the sync marker of {} {} {} kept racing other writers",
            adv.tenant_id, adv.service, adv.table
        )))
    }

    async fn list_markers(
        &self,
        tenant_id: Option<&str>,
        service: Option<Service>,
    ) -> Result<Vec<SyncMarker>, StoreError> {
        // Tenant ids have no '#', so the prefix matches exactly one tenant (and service).
        let (prefix, filter) = match (tenant_id, service) {
            (Some(t), Some(svc)) => (format!("{t}#{svc}#"), None),
            (Some(t), None) => (format!("{t}#"), None),
            (None, Some(svc)) => (
                String::new(),
                Some(("#service = :service", vec![(":service", s(svc.as_str()))])),
            ),
            (None, None) => (String::new(), None),
        };
        let mut markers = self
            .partition(MARKERS, &prefix, filter, "Query sync markers")
            .await?
            .iter()
            .map(|i| decode_marker(i).map(|(m, _)| m))
            .collect::<Result<Vec<_>, _>>()?;
        markers.sort_by(|a, b| {
            (&a.tenant_id, a.service.as_str(), &a.table).cmp(&(
                &b.tenant_id,
                b.service.as_str(),
                &b.table,
            ))
        });
        Ok(markers)
    }

    async fn observe(
        &self,
        tenant_id: &str,
        service: Service,
        enabled: bool,
        now: DateTime<Utc>,
    ) -> Result<ServiceState, StoreError> {
        let key = service_key(key_part("tenant id", tenant_id)?, service);
        for round in 0..MAX_ROUNDS {
            let (existing, read) = match self
                .get_chunks_item(key.clone(), "GetItem service state")
                .await?
            {
                Some(item) => {
                    let (st, v) = decode_service(&item)?;
                    (Some(st), Some(v))
                }
                None => (None, None),
            };
            let Some(next) = observed(existing.as_ref(), tenant_id, service, enabled, now) else {
                return existing
                    .ok_or_else(|| StoreError::Backend("service state vanished".into()));
            };
            let item = service_item(&next, read.map_or(1, |v| v + 1));
            if self
                .put_if_unchanged(item, read, "PutItem service state")
                .await?
            {
                return Ok(next);
            }
            backoff(round).await;
        }
        Err(StoreError::Backend(format!(
            "recording the state of {tenant_id} {service} kept racing other writers"
        )))
    }

    async fn list_service_states(&self) -> Result<Vec<ServiceState>, StoreError> {
        let mut states = self
            .partition(SERVICES, "", None, "Query service states")
            .await?
            .iter()
            .map(|i| decode_service(i).map(|(st, _)| st))
            .collect::<Result<Vec<_>, _>>()?;
        states.sort_by(|a, b| {
            (&a.tenant_id, a.service.as_str()).cmp(&(&b.tenant_id, b.service.as_str()))
        });
        Ok(states)
    }

    async fn clear_reenabling(&self, tenant_id: &str, service: Service) -> Result<(), StoreError> {
        // Bumping `v` makes an `observe` that read the flag before this write read again,
        // instead of putting the flag back.
        // Never observed (the condition fails): there is nothing to clear, as in SQLite.
        update_if(
            &self.client,
            &self.chunks,
            service_key(key_part("tenant id", tenant_id)?, service),
            "REMOVE #reenabled_at ADD #v :one",
            "attribute_exists(#job_id)",
            values([(":one", n(1))]),
            "UpdateItem service state",
        )
        .await
        .map(|_| ())
    }

    async fn raise(&self, alert: &Alert) -> Result<bool, StoreError> {
        let cond = "attribute_not_exists(#job_id)";
        match self
            .client
            .put_item()
            .table_name(&self.chunks)
            .set_item(Some(alert_item(alert)))
            .condition_expression(cond)
            .set_expression_attribute_names(names(&[cond]))
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if is_condition_failed(&e) => Ok(false),
            Err(e) => Err(backend("PutItem alert", e)),
        }
    }

    /// Alerts, newest first. They live in one partition, kept small: one per kind and
    /// subject, and a removed job takes its alerts with it.
    async fn list_alerts(&self, filter: &AlertFilter) -> Result<Vec<Alert>, StoreError> {
        let prefix = filter.kind.map(|k| format!("{k}#")).unwrap_or_default();
        let mut conds = Vec::new();
        let mut vals = Vec::new();
        if let Some(tenant) = &filter.tenant_id {
            conds.push("#tenant_id = :tenant");
            vals.push((":tenant", s(tenant)));
        }
        if let Some(job) = &filter.job_id {
            conds.push("#alert_job = :job");
            vals.push((":job", s(job)));
        }
        let expr = conds.join(" AND ");
        let filter = (!conds.is_empty()).then_some((expr.as_str(), vals));
        let mut alerts = self
            .partition(ALERTS, &prefix, filter, "Query alerts")
            .await?
            .iter()
            .map(decode_alert)
            .collect::<Result<Vec<_>, _>>()?;
        alerts.sort_by(|a, b| {
            b.raised_at
                .cmp(&a.raised_at)
                .then_with(|| a.kind.as_str().cmp(b.kind.as_str()))
                .then_with(|| a.subject.cmp(&b.subject))
        });
        Ok(alerts)
    }
}

#[async_trait]
impl LifecycleStore for DynamoStore {
    async fn advance_marker(&self, adv: &MarkerAdvance) -> Result<SyncMarker, StoreError> {
        self.move_marker(adv).await
    }

    async fn markers(
        &self,
        tenant_id: Option<&str>,
        service: Option<Service>,
    ) -> Result<Vec<SyncMarker>, StoreError> {
        self.list_markers(tenant_id, service).await
    }

    async fn observe_service(
        &self,
        tenant_id: &str,
        service: Service,
        enabled: bool,
        now: DateTime<Utc>,
    ) -> Result<ServiceState, StoreError> {
        self.observe(tenant_id, service, enabled, now).await
    }

    async fn service_states(&self) -> Result<Vec<ServiceState>, StoreError> {
        self.list_service_states().await
    }

    async fn clear_reenabled(&self, tenant_id: &str, service: Service) -> Result<(), StoreError> {
        self.clear_reenabling(tenant_id, service).await
    }

    async fn put_job_meta(&self, meta: &JobMeta) -> Result<(), StoreError> {
        self.put_meta(meta).await
    }

    async fn job_metas(&self, job_ids: &[String]) -> Result<Vec<JobMeta>, StoreError> {
        self.metas(job_ids).await
    }

    async fn set_quota_wait(
        &self,
        job_id: &str,
        until: Option<DateTime<Utc>>,
    ) -> Result<(), StoreError> {
        self.quota_wait(job_id, until).await
    }

    async fn finalize_job(&self, job_id: &str, now: DateTime<Utc>) -> Result<bool, StoreError> {
        self.finalize(job_id, now).await
    }

    async fn claim_handoff(
        &self,
        job_id: &str,
        owner: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
        breaking: Option<&str>,
    ) -> Result<HandoffClaim, StoreError> {
        self.handoff_claim(job_id, owner, now, until, breaking)
            .await
    }

    async fn release_handoff(&self, job_id: &str, owner: &str) -> Result<(), StoreError> {
        self.handoff_release(job_id, owner).await
    }

    async fn raise_alert(&self, alert: &Alert) -> Result<bool, StoreError> {
        self.raise(alert).await
    }

    async fn alerts(&self, filter: &AlertFilter) -> Result<Vec<Alert>, StoreError> {
        self.list_alerts(filter).await
    }

    async fn save_verification(
        &self,
        job_id: &str,
        results: &[ChunkVerification],
    ) -> Result<(), StoreError> {
        self.save_results(job_id, results).await
    }

    async fn verification(&self, job_id: &str) -> Result<Vec<ChunkVerification>, StoreError> {
        self.results(job_id).await
    }

    async fn chunk_attempt_ended(&self, job_id: &str, failed: bool) -> Result<u32, StoreError> {
        self.count_attempt(job_id, failed).await
    }

    async fn delete_job(&self, job_id: &str) -> Result<bool, StoreError> {
        self.remove_job(job_id).await
    }
}
