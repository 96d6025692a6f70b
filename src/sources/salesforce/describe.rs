//! Which declared fields the integration user can read. `GET /sobjects/{Object}/describe`
//! lists only the fields the user can see (field-level security leaves the others out), with
//! each reference field's `relationshipName` and `referenceTo`. A direct field is readable
//! when the object's describe shows it; a path such as `Owner.Name` when the object shows a
//! reference field whose relationship is `Owner` and one of its target objects (`User`) shows
//! `Name`. Each object is described once per source (the answers are kept).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use reqwest::Method;

use super::{API_VERSION, Salesforce, soql};
use crate::sources::{Pace, SourceError};

/// The fields of one object the integration user can see.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Described {
    /// Field names, lowercased (SOQL names are case-insensitive).
    fields: HashSet<String>,
    /// Relationship name (lowercased) → the objects it points at.
    relationships: HashMap<String, Vec<String>>,
}

impl Described {
    /// The fields of a describe answer (`{"name":..,"fields":[{"name","relationshipName",
    /// "referenceTo"},..]}`).
    pub fn parse(object: &str, body: &[u8]) -> Result<Described, SourceError> {
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Field {
            name: String,
            #[serde(default)]
            relationship_name: Option<String>,
            #[serde(default)]
            reference_to: Vec<String>,
        }
        #[derive(serde::Deserialize)]
        struct Body {
            fields: Vec<Field>,
        }
        let body: Body = serde_json::from_slice(body)
            .map_err(|e| super::wire::decode_error(&format!("describe of {object}"), e))?;
        let mut out = Described::default();
        for f in body.fields {
            if let Some(rel) = f.relationship_name.filter(|r| !r.is_empty()) {
                out.relationships
                    .entry(rel.to_ascii_lowercase())
                    .or_default()
                    .extend(f.reference_to);
            }
            out.fields.insert(f.name.to_ascii_lowercase());
        }
        Ok(out)
    }

    pub fn has_field(&self, name: &str) -> bool {
        self.fields.contains(&name.to_ascii_lowercase())
    }

    /// The objects relationship `name` points at, when the user can see it.
    pub fn targets(&self, name: &str) -> Option<&[String]> {
        self.relationships
            .get(&name.to_ascii_lowercase())
            .map(Vec::as_slice)
    }
}

/// Whether `path` (`Name`, `Owner.Name`) can be read from `object`, given each object's
/// describe (`None`: the object cannot be described, so nothing on it is readable).
pub async fn readable<F, Fut>(object: &str, path: &str, describe: F) -> Result<bool, SourceError>
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = Result<Option<Arc<Described>>, SourceError>>,
{
    let segments: Vec<&str> = path.split('.').collect();
    let mut objects = vec![object.to_string()];
    for (i, segment) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        let mut next = Vec::new();
        for o in &objects {
            let Some(d) = describe(o.clone()).await? else {
                continue;
            };
            if last && d.has_field(segment) {
                return Ok(true);
            }
            if let Some(targets) = d.targets(segment).filter(|_| !last) {
                next.extend(targets.iter().cloned());
            }
        }
        objects = next;
    }
    Ok(false)
}

impl Salesforce {
    /// The describe of `object`, asked once per source. A root object the API refuses is the
    /// API's error; a relationship's target the user may not describe (`NOT_FOUND`,
    /// `INSUFFICIENT_ACCESS`: 403/404) is `None`.
    pub(super) async fn described(
        &self,
        object: String,
        root: bool,
        pace: &dyn Pace,
    ) -> Result<Option<Arc<Described>>, SourceError> {
        if let Some(d) = self.lock_describes().get(&object.to_ascii_lowercase()) {
            return Ok(Some(d.clone()));
        }
        if !soql::is_name(&object) {
            return Ok(None);
        }
        let path = format!("/services/data/{API_VERSION}/sobjects/{object}/describe");
        let mut renewed = false;
        let reply = loop {
            pace.turn().await;
            match self
                .call(Method::GET, &path, "application/json", None, None)
                .await
                .map_err(|e| self.fail(e))
            {
                Err(SourceError::SessionRenewed { .. }) if !renewed => renewed = true,
                Err(SourceError::Http {
                    status: 403 | 404, ..
                }) if !root => return Ok(None),
                other => break other?,
            }
        };
        let d = Arc::new(Described::parse(&object, &reply.body)?);
        self.lock_describes()
            .insert(object.to_ascii_lowercase(), d.clone());
        Ok(Some(d))
    }

    pub(super) fn lock_describes(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Described>>> {
        self.describes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The declared columns of `endpoint` the user cannot read, in declared order.
    pub(super) async fn unreadable(
        &self,
        endpoint: &crate::config::EndpointDef,
        pace: &dyn Pace,
    ) -> Result<Vec<String>, SourceError> {
        let spec = soql::Spec::new(endpoint)?;
        let root = spec.sobject.to_ascii_lowercase();
        let mut out = Vec::new();
        for c in &endpoint.columns {
            let path = soql::soql_field(&c.name).map_err(|e| SourceError::Config(e.to_string()))?;
            let describe = |o: String| {
                let is_root = o.to_ascii_lowercase() == root;
                self.described(o, is_root, pace)
            };
            if !readable(&spec.sobject, &path, describe).await? {
                out.push(c.name.clone());
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account() -> Described {
        let body = br#"{"name":"Account","fields":[
            {"name":"Id","type":"id","relationshipName":null,"referenceTo":[]},
            {"name":"Name","type":"string","relationshipName":null,"referenceTo":[]},
            {"name":"OwnerId","type":"reference","relationshipName":"Owner","referenceTo":["User"]}]}"#;
        Described::parse("Account", body).unwrap()
    }

    async fn check(path: &str, user: &'static [u8]) -> bool {
        let describe = |o: String| async move {
            Ok(match o.as_str() {
                "Account" => Some(Arc::new(account())),
                "User" => Some(Arc::new(Described::parse("User", user).unwrap())),
                _ => None,
            })
        };
        readable("Account", path, describe).await.unwrap()
    }

    #[tokio::test]
    async fn a_path_is_readable_through_its_relationship_and_the_target_field() {
        let user: &[u8] = br#"{"fields":[{"name":"Name","relationshipName":null}]}"#;
        let no_name: &[u8] = br#"{"fields":[{"name":"Email"}]}"#;
        assert!(check("Name", user).await);
        assert!(check("name", user).await, "names are case-insensitive");
        assert!(!check("Industry", user).await, "absent from the describe");
        assert!(check("Owner.Name", user).await);
        assert!(!check("Owner.Name", no_name).await, "User.Name hidden");
        assert!(!check("Parent.Name", user).await, "no such relationship");
        assert!(
            !check("OwnerId.Name", user).await,
            "a field is not a relationship"
        );
    }
}
