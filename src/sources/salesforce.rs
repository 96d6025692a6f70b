//! Salesforce source (being built).

use async_trait::async_trait;

use super::{Page, Source, SourceError, SourceSettings};
use crate::config::{Credentials, EndpointDef};
use crate::domain::{Service, Window};

pub struct Salesforce;

impl Salesforce {
    pub fn new(
        _base_url: &str,
        _creds: Credentials,
        _http: reqwest::Client,
        _settings: &SourceSettings,
    ) -> Result<Self, SourceError> {
        Err(SourceError::Config(
            "the salesforce source is not built yet".into(),
        ))
    }
}

#[async_trait]
impl Source for Salesforce {
    fn service(&self) -> Service {
        Service::Salesforce
    }
    async fn fetch_page(
        &self,
        _endpoint: &EndpointDef,
        _window: &Window,
        _cursor: Option<&str>,
    ) -> Result<Page, SourceError> {
        unreachable!()
    }
    async fn count(&self, _endpoint: &EndpointDef, _window: &Window) -> Result<u64, SourceError> {
        unreachable!()
    }
}
