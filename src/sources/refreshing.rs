//! A source whose credentials may change while it runs (an AWS secret rotated): each call
//! asks the feed for the current credentials (kept for `credentials_cache_seconds`) and
//! builds a new client when they differ. A refusal (`is_refusal`: a 401, or a login
//! refused) reads them again at once, through the same path the clients renew a session
//! on: when they changed, the client is rebuilt and the call answers `SessionRenewed`, so
//! the caller asks again through its rate budget; when they did not, or a client built by a
//! re-read is refused before anything it asked succeeded, the refusal stands.
//! Concurrent refusals read once: a call refused on a client that was replaced meanwhile
//! just asks again.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use futures::future::BoxFuture;

use super::{ApiUsage, Page, Source, SourceError};
use crate::config::{Credentials, EndpointDef};
use crate::domain::{Service, Window};

/// Where a connection's credentials come from: the current ones (possibly cached) and ones
/// read again now.
#[async_trait]
pub trait CredentialFeed: Send + Sync {
    async fn current(&self) -> Result<Credentials, SourceError>;
    async fn reread(&self) -> Result<Credentials, SourceError>;
}

/// Builds a client from credentials.
pub type Connect = Box<dyn Fn(Credentials) -> Result<Arc<dyn Source>, SourceError> + Send + Sync>;

pub struct Refreshing {
    service: Service,
    feed: Arc<dyn CredentialFeed>,
    connect: Connect,
    state: tokio::sync::Mutex<State>,
    /// The generation built by a re-read, plus one, until a call on it succeeds; 0 when none.
    unproven: AtomicU64,
}

#[derive(Default)]
struct State {
    current: Option<(Credentials, Arc<dyn Source>)>,
    /// Counts clients built, so a refusal is judged against the client it came from.
    generation: u64,
}

/// A refusal of the credentials: a 401, or a login refused (Salesforce answers a rotated
/// password with a 400 `invalid_grant`).
pub fn is_refusal(e: &SourceError) -> bool {
    match e {
        SourceError::Http {
            status, message, ..
        } => *status == 401 || (*status == 400 && message.starts_with("login failed")),
        _ => false,
    }
}

impl Refreshing {
    pub fn new(service: Service, feed: Arc<dyn CredentialFeed>, connect: Connect) -> Self {
        Refreshing {
            service,
            feed,
            connect,
            state: tokio::sync::Mutex::new(State::default()),
            unproven: AtomicU64::new(0),
        }
    }

    /// The client for the current credentials, and its generation.
    async fn client(&self) -> Result<(Arc<dyn Source>, u64), SourceError> {
        let mut state = self.state.lock().await;
        let creds = self.feed.current().await?;
        if let Some((held, client)) = &state.current
            && *held == creds
        {
            return Ok((client.clone(), state.generation));
        }
        let client = (self.connect)(creds.clone())?;
        state.generation += 1;
        state.current = Some((creds, client.clone()));
        Ok((client, state.generation))
    }

    /// What a refusal by the client of `generation` comes to (see the module header).
    async fn refused(&self, generation: u64, refusal: SourceError) -> SourceError {
        let mut state = self.state.lock().await;
        let renewed = |message: &str| SourceError::SessionRenewed {
            status: 401,
            message: message.into(),
        };
        if state.generation != generation {
            return renewed("the credentials were read again");
        }
        if self.unproven.load(Ordering::SeqCst) == generation + 1 {
            return refusal;
        }
        let fresh = match self.feed.reread().await {
            Ok(fresh) => fresh,
            Err(e) => {
                tracing::warn!(service = %self.service, "reading the credentials again failed: {e}");
                return refusal;
            }
        };
        if state
            .current
            .as_ref()
            .is_some_and(|(held, _)| *held == fresh)
        {
            self.unproven.store(generation + 1, Ordering::SeqCst);
            return refusal;
        }
        let client = match (self.connect)(fresh.clone()) {
            Ok(client) => client,
            Err(e) => return e,
        };
        state.generation += 1;
        state.current = Some((fresh, client));
        self.unproven.store(state.generation + 1, Ordering::SeqCst);
        tracing::info!(service = %self.service, "credentials changed: connecting with the new ones");
        renewed("the credentials were read again and had changed")
    }

    async fn call<'a, T: Send + 'a>(
        &'a self,
        f: impl FnOnce(Arc<dyn Source>) -> BoxFuture<'a, Result<T, SourceError>> + Send + 'a,
    ) -> Result<T, SourceError> {
        let (client, generation) = self.client().await?;
        match f(client).await {
            Ok(v) => {
                let _ = self.unproven.compare_exchange(
                    generation + 1,
                    0,
                    Ordering::SeqCst,
                    Ordering::SeqCst,
                );
                Ok(v)
            }
            Err(e) if is_refusal(&e) => Err(self.refused(generation, e).await),
            Err(e) => Err(e),
        }
    }
}

#[async_trait]
impl Source for Refreshing {
    fn service(&self) -> Service {
        self.service
    }

    async fn fetch_page(
        &self,
        endpoint: &EndpointDef,
        window: &Window,
        cursor: Option<&str>,
    ) -> Result<Page, SourceError> {
        self.call(|s| Box::pin(async move { s.fetch_page(endpoint, window, cursor).await }))
            .await
    }

    async fn count(&self, endpoint: &EndpointDef, window: &Window) -> Result<u64, SourceError> {
        self.call(|s| Box::pin(async move { s.count(endpoint, window).await }))
            .await
    }

    async fn monthly_counts(
        &self,
        endpoint: &EndpointDef,
        window: &Window,
    ) -> Result<Option<Vec<(Window, u64)>>, SourceError> {
        self.call(|s| Box::pin(async move { s.monthly_counts(endpoint, window).await }))
            .await
    }

    async fn allocation(&self) -> Result<Option<ApiUsage>, SourceError> {
        self.call(|s| Box::pin(async move { s.allocation().await }))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Credentials stored as `key`, which the test changes; `current` answers what was read
    /// last, as a cache does, until `reread`.
    struct Feed {
        key: Mutex<String>,
        cached: Mutex<String>,
        rereads: Mutex<u32>,
    }

    fn creds(key: &str) -> Credentials {
        Credentials::from_pairs([("key".to_string(), key.to_string())])
    }

    #[async_trait]
    impl CredentialFeed for Feed {
        async fn current(&self) -> Result<Credentials, SourceError> {
            Ok(creds(&self.cached.lock().unwrap()))
        }
        async fn reread(&self) -> Result<Credentials, SourceError> {
            *self.rereads.lock().unwrap() += 1;
            let key = self.key.lock().unwrap().clone();
            *self.cached.lock().unwrap() = key.clone();
            Ok(creds(&key))
        }
    }

    /// A client that accepts only the key `valid`.
    struct Api {
        key: String,
        valid: Arc<Mutex<String>>,
    }

    #[async_trait]
    impl Source for Api {
        fn service(&self) -> Service {
            Service::Connectwise
        }
        async fn fetch_page(
            &self,
            _: &EndpointDef,
            _: &Window,
            _: Option<&str>,
        ) -> Result<Page, SourceError> {
            unreachable!()
        }
        async fn count(&self, _: &EndpointDef, _: &Window) -> Result<u64, SourceError> {
            if self.key == *self.valid.lock().unwrap() {
                Ok(7)
            } else {
                Err(SourceError::from_status(401, None, "refused".into(), None))
            }
        }
    }

    fn setup(valid: &str, stored: &str) -> (Refreshing, Arc<Feed>, Arc<Mutex<String>>) {
        let valid = Arc::new(Mutex::new(valid.to_string()));
        let feed = Arc::new(Feed {
            key: Mutex::new(stored.into()),
            cached: Mutex::new("cached".into()),
            rereads: Mutex::new(0),
        });
        let accepts = valid.clone();
        let connect: Connect = Box::new(move |c: Credentials| {
            Ok(Arc::new(Api {
                key: c.field("key")?,
                valid: accepts.clone(),
            }) as Arc<dyn Source>)
        });
        (
            Refreshing::new(Service::Connectwise, feed.clone(), connect),
            feed,
            valid,
        )
    }

    fn endpoint() -> EndpointDef {
        EndpointDef {
            path: "service/tickets".into(),
            table_name: "tickets".into(),
            id_field: "id".into(),
            incremental_field: "lastUpdated".into(),
            query_field: None,
            page_size: 10,
            columns: Vec::new(),
        }
    }

    fn window() -> Window {
        let start = chrono::DateTime::UNIX_EPOCH;
        Window::new(start, start + chrono::Duration::days(1))
    }

    #[tokio::test]
    async fn a_rotated_secret_is_read_again_once_and_the_call_asked_again() {
        let (src, feed, _) = setup("rotated", "rotated");
        let (ep, w) = (endpoint(), window());
        // The cached key is refused: the secret is read again, the client rebuilt.
        let e = src.count(&ep, &w).await.unwrap_err();
        assert!(matches!(e, SourceError::SessionRenewed { .. }), "{e:?}");
        assert!(e.is_retryable());
        assert_eq!(src.count(&ep, &w).await.unwrap(), 7);
        assert_eq!(*feed.rereads.lock().unwrap(), 1);
    }

    #[tokio::test]
    async fn a_second_refusal_after_the_reread_stands() {
        let (src, feed, valid) = setup("rotated", "rotated");
        let (ep, w) = (endpoint(), window());
        let _ = src.count(&ep, &w).await.unwrap_err();
        // The new key is refused too (revoked): that is the error, no further read.
        *valid.lock().unwrap() = "other".into();
        let e = src.count(&ep, &w).await.unwrap_err();
        assert!(matches!(e, SourceError::Http { status: 401, .. }), "{e:?}");
        assert_eq!(*feed.rereads.lock().unwrap(), 1);
        // Unchanged credentials after a re-read: the refusal stands at once.
        let (src, feed, _) = setup("good", "cached");
        let e = src.count(&ep, &w).await.unwrap_err();
        assert!(matches!(e, SourceError::Http { status: 401, .. }), "{e:?}");
        let e = src.count(&ep, &w).await.unwrap_err();
        assert!(matches!(e, SourceError::Http { status: 401, .. }), "{e:?}");
        assert_eq!(*feed.rereads.lock().unwrap(), 1);
    }

    #[tokio::test]
    async fn after_a_success_a_later_rotation_is_read_again() {
        let (src, feed, valid) = setup("k1", "k1");
        let (ep, w) = (endpoint(), window());
        let _ = src.count(&ep, &w).await.unwrap_err();
        assert_eq!(src.count(&ep, &w).await.unwrap(), 7);
        *valid.lock().unwrap() = "k2".into();
        *feed.key.lock().unwrap() = "k2".into();
        let e = src.count(&ep, &w).await.unwrap_err();
        assert!(matches!(e, SourceError::SessionRenewed { .. }), "{e:?}");
        assert_eq!(src.count(&ep, &w).await.unwrap(), 7);
        assert_eq!(*feed.rereads.lock().unwrap(), 2);
    }
}
