//! The trigger form's model: tenant, service, tables, dates, chunk size and target, turned
//! into a plan request; and the plan preview it shows before the confirm.

use chrono::{DateTime, NaiveDate, Utc};

use crate::domain::Service;
use crate::engine::handle::{PlanPreview, Target, TenantInfo};
use crate::engine::planner::PlanRequest;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    Tenant,
    Service,
    Tables,
    Start,
    End,
    ChunkDays,
    Target,
}

impl Field {
    pub const ALL: [Field; 7] = [
        Field::Tenant,
        Field::Service,
        Field::Tables,
        Field::Start,
        Field::End,
        Field::ChunkDays,
        Field::Target,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Field::Tenant => "tenant",
            Field::Service => "service",
            Field::Tables => "tables",
            Field::Start => "start date",
            Field::End => "end date",
            Field::ChunkDays => "chunk size (days)",
            Field::Target => "run",
        }
    }

    /// Choice fields cycle with ←/→; the others take typed text.
    pub fn is_choice(self) -> bool {
        matches!(self, Field::Tenant | Field::Service | Field::Target)
    }
}

/// What is wrong with the form's fields: why they describe no plan request.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FormError {
    #[error("no tenant has an enabled service")]
    NoTenant,
    #[error("this tenant has no enabled service")]
    NoService,
    #[error("chunk size '{0}' is not a whole number of days")]
    ChunkSize(String),
    /// A date field (start or end) holding neither a date nor an instant.
    #[error(
        "{} '{value}' is not a date like 2025-01-01 or an instant like 2025-01-01T00:00:00Z",
        .field.label()
    )]
    Date { field: Field, value: String },
}

/// What the preview shows: the plan's size and cost.
#[derive(Clone, Debug, PartialEq)]
pub struct PreviewSummary {
    pub window: String,
    pub chunks: usize,
    pub tables: Vec<(String, usize)>,
    pub api_calls: u64,
    pub duration_secs: Option<f64>,
    pub rate_per_minute: Option<u32>,
    /// The first few windows, as a taste of the chunk list.
    pub first_windows: Vec<String>,
    /// The calls as a share of the API allocation left, when the API states one.
    pub quota: Option<String>,
}

impl PreviewSummary {
    pub fn from_preview(p: &PlanPreview) -> PreviewSummary {
        let first = p.plan.tables.first();
        PreviewSummary {
            window: p.plan.window.to_string(),
            chunks: p.plan.total_chunks(),
            tables: p
                .plan
                .tables
                .iter()
                .map(|t| (t.table.clone(), t.windows.len()))
                .collect(),
            api_calls: p.estimate.api_calls,
            duration_secs: p.estimate.duration_secs,
            rate_per_minute: p.plan.rate_limit_per_minute,
            first_windows: first
                .map(|t| {
                    let records = |i: usize| t.records.as_ref().and_then(|r| r.get(i));
                    (t.windows.iter().enumerate().take(3))
                        .map(|(i, w)| match records(i) {
                            Some(n) => format!("{w}  {n} records"),
                            None => w.to_string(),
                        })
                        .collect()
                })
                .unwrap_or_default(),
            quota: p.allocation.as_ref().map(|a| match a {
                Ok(share) => share.to_string(),
                Err(e) => format!("API allocation not read: {e}"),
            }),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct TriggerForm {
    pub focus: Field,
    /// Tenants with their enabled services.
    pub choices: Vec<(String, Vec<Service>)>,
    pub tenant: usize,
    pub service: usize,
    pub tables: String,
    pub start: String,
    pub end: String,
    pub chunk_days: String,
    pub target: Target,
    /// The plan, or why there is none (the form's or the planner's words), as shown.
    pub preview: Option<Result<PreviewSummary, String>>,
    /// Answers to older requests are ignored.
    pub generation: u64,
}

impl TriggerForm {
    /// A form for `tenants`, preset to `tenant` and `service` when given.
    pub fn new(tenants: &[TenantInfo], tenant: Option<&str>, service: Option<Service>) -> Self {
        let choices: Vec<(String, Vec<Service>)> = tenants
            .iter()
            .map(|t| {
                (
                    t.tenant_id.clone(),
                    t.services
                        .iter()
                        .filter(|s| s.enabled)
                        .map(|s| s.service)
                        .collect(),
                )
            })
            .filter(|(_, s): &(String, Vec<Service>)| !s.is_empty())
            .collect();
        let ti = tenant
            .and_then(|t| choices.iter().position(|(id, _)| id == t))
            .unwrap_or(0);
        let si = choices
            .get(ti)
            .and_then(|(_, ss)| service.and_then(|s| ss.iter().position(|x| *x == s)))
            .unwrap_or(0);
        TriggerForm {
            focus: Field::Tenant,
            choices,
            tenant: ti,
            service: si,
            tables: String::new(),
            start: String::new(),
            end: String::new(),
            chunk_days: String::new(),
            target: Target::Local,
            preview: None,
            generation: 0,
        }
    }

    pub fn tenant_id(&self) -> Option<&str> {
        self.choices.get(self.tenant).map(|(t, _)| t.as_str())
    }

    pub fn service(&self) -> Option<Service> {
        self.choices
            .get(self.tenant)
            .and_then(|(_, s)| s.get(self.service).copied())
    }

    pub fn focus_step(&mut self, delta: isize) {
        let i = Field::ALL
            .iter()
            .position(|f| *f == self.focus)
            .unwrap_or(0) as isize;
        let n = Field::ALL.len() as isize;
        self.focus = Field::ALL[((i + delta).rem_euclid(n)) as usize];
    }

    /// ←/→ on a choice field.
    pub fn cycle(&mut self, delta: isize) {
        let step =
            |i: usize, n: usize| ((i as isize + delta).rem_euclid(n.max(1) as isize)) as usize;
        match self.focus {
            Field::Tenant => {
                self.tenant = step(self.tenant, self.choices.len());
                self.service = 0;
            }
            Field::Service => {
                let n = self.choices.get(self.tenant).map_or(1, |(_, s)| s.len());
                self.service = step(self.service, n);
            }
            Field::Target => {
                self.target = match self.target {
                    Target::Local => Target::Cloud,
                    Target::Cloud => Target::Local,
                }
            }
            _ => {}
        }
    }

    fn text_mut(&mut self) -> Option<&mut String> {
        match self.focus {
            Field::Tables => Some(&mut self.tables),
            Field::Start => Some(&mut self.start),
            Field::End => Some(&mut self.end),
            Field::ChunkDays => Some(&mut self.chunk_days),
            _ => None,
        }
    }

    /// Typed text goes to the focused text field; false when the field takes no text.
    pub fn type_char(&mut self, c: char) -> bool {
        match self.text_mut() {
            Some(t) => {
                t.push(c);
                true
            }
            None => false,
        }
    }

    /// Ctrl-U: empties the focused text field; false when it was empty or takes no text.
    pub fn clear_field(&mut self) -> bool {
        match self.text_mut() {
            Some(t) if !t.is_empty() => {
                t.clear();
                true
            }
            _ => false,
        }
    }

    pub fn backspace(&mut self) -> bool {
        match self.text_mut() {
            Some(t) => t.pop().is_some(),
            None => false,
        }
    }

    /// The plan request the fields describe, or what is wrong with them.
    pub fn request(&self) -> Result<PlanRequest, FormError> {
        let tenant_id = self.tenant_id().ok_or(FormError::NoTenant)?.to_string();
        let service = self.service().ok_or(FormError::NoService)?;
        let chunk_size_days = match self.chunk_days.trim() {
            "" => None,
            s => Some(
                s.parse::<u32>()
                    .map_err(|_| FormError::ChunkSize(s.to_string()))?,
            ),
        };
        Ok(PlanRequest {
            tenant_id,
            service,
            tables: self
                .tables
                .split([',', ' '])
                .filter(|t| !t.is_empty())
                .map(str::to_string)
                .collect(),
            start: parse_date(Field::Start, &self.start)?,
            end: parse_date(Field::End, &self.end)?,
            chunk_size_days,
        })
    }
}

/// The date `field` holds: empty → `None` (the default); else an RFC 3339 instant or a UTC
/// date.
pub fn parse_date(field: Field, value: &str) -> Result<Option<DateTime<Utc>>, FormError> {
    let v = value.trim();
    if v.is_empty() {
        return Ok(None);
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(v) {
        return Ok(Some(t.with_timezone(&Utc)));
    }
    if let Ok(d) = NaiveDate::parse_from_str(v, "%Y-%m-%d") {
        return Ok(Some(
            d.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc(),
        ));
    }
    Err(FormError::Date {
        field,
        value: v.to_string(),
    })
}
