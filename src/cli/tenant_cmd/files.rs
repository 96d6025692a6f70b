//! The files `tenant` writes: the registry (typed, so its layout stays the shipped one),
//! credential files (mode 0600), `tenant_overrides`, all replaced atomically (a temporary file
//! in the same folder, then a rename); and the ConnectWise codebase lookup.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use color_eyre::eyre::{Result, WrapErr, bail, eyre};
use serde::{Deserialize, Serialize};

use crate::config::{MAX_CONFIG_FILE_BYTES, TenantsRegistry, read_small_file};
use crate::domain::Service;

#[derive(Serialize, Deserialize, Debug)]
pub struct RegistryDoc {
    pub tenants: Vec<TenantDoc>,
}

#[derive(Serialize, Deserialize, Debug)]
pub struct TenantDoc {
    pub tenant_id: String,
    pub display_name: String,
    /// Kept as the registry has it (`tenant add` rewrites the whole file).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub protected: bool,
    pub services: BTreeMap<Service, ConnectionDoc>,
}

/// A connection as the registry holds it; `credentials` stays JSON, so every shape the
/// registry accepts passes through unchanged.
#[derive(Serialize, Deserialize, Debug)]
pub struct ConnectionDoc {
    #[serde(default = "yes")]
    pub enabled: bool,
    pub base_url: String,
    pub credentials: serde_json::Value,
}

fn yes() -> bool {
    true
}

impl RegistryDoc {
    pub fn read(file: &Path) -> Result<Self> {
        let text = read_small_file(file, MAX_CONFIG_FILE_BYTES)
            .wrap_err_with(|| format!("cannot read {}", file.display()))?;
        serde_json::from_str(&text).map_err(|e| eyre!("{}: {e}", file.display()))
    }

    /// Refuses to overwrite a tenant's existing connection without `--replace`.
    pub fn refuse_existing(
        &self,
        file: &Path,
        tenant_id: &str,
        service: Service,
        replace: bool,
    ) -> Result<()> {
        let at = self.tenants.iter().position(|t| t.tenant_id == tenant_id);
        if let Some(i) = at
            && self.tenants[i].services.contains_key(&service)
            && !replace
        {
            bail!(
                "{}: $.tenants[{i}].services.{service}: tenant '{tenant_id}' already connects {service} (--replace overwrites it)",
                file.display()
            );
        }
        Ok(())
    }

    pub fn upsert(
        &mut self,
        tenant_id: &str,
        display_name: Option<String>,
        protected: Option<bool>,
        service: Service,
        conn: ConnectionDoc,
    ) {
        match self.tenants.iter_mut().find(|t| t.tenant_id == tenant_id) {
            Some(t) => {
                if let Some(name) = display_name {
                    t.display_name = name;
                }
                t.protected = protected.unwrap_or(t.protected);
                t.services.insert(service, conn);
            }
            None => self.tenants.push(TenantDoc {
                tenant_id: tenant_id.to_string(),
                display_name: display_name.unwrap_or_else(|| tenant_id.to_string()),
                protected: protected.unwrap_or(false),
                services: BTreeMap::from([(service, conn)]),
            }),
        }
    }

    /// Writes the registry atomically, once the new text loads as every command loads it.
    pub fn write(&self, file: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self)? + "\n";
        let tmp = temp_path(file);
        write_new(&tmp, text.as_bytes(), None)?;
        if let Err(e) = TenantsRegistry::load(&tmp) {
            let _ = std::fs::remove_file(&tmp);
            // The message names the temporary file; name the real one.
            let msg = e
                .to_string()
                .replace(&tmp.display().to_string(), &file.display().to_string());
            bail!("{msg} (nothing was written)");
        }
        rename(&tmp, file)
    }
}

fn temp_path(file: &Path) -> PathBuf {
    let name = file.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    file.with_file_name(format!(".{name}.{}.tmp", std::process::id()))
}

fn write_new(path: &Path, bytes: &[u8], mode: Option<u32>) -> Result<()> {
    let mut open = std::fs::OpenOptions::new();
    open.write(true).create(true).truncate(true);
    if let Some(mode) = mode {
        open.mode(mode);
    }
    let mut f = open
        .open(path)
        .wrap_err_with(|| format!("cannot write {}", path.display()))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .wrap_err_with(|| format!("cannot write {}", path.display()))
}

fn rename(tmp: &Path, file: &Path) -> Result<()> {
    std::fs::rename(tmp, file).wrap_err_with(|| {
        let _ = std::fs::remove_file(tmp);
        format!("cannot replace {}", file.display())
    })
}

/// Writes a credentials file readable by its owner only, refusing an existing one unless
/// `replace`. Errors name the file, never a value.
pub fn write_credentials(
    file: &Path,
    values: &BTreeMap<String, String>,
    replace: bool,
) -> Result<()> {
    if file.exists() && !replace {
        bail!(
            "{}: exists already (--replace overwrites it)",
            file.display()
        );
    }
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir)
            .wrap_err_with(|| format!("cannot create {}", dir.display()))?;
    }
    let text = serde_json::to_string_pretty(values)? + "\n";
    let tmp = temp_path(file);
    write_new(&tmp, text.as_bytes(), Some(0o600))?;
    rename(&tmp, file)
}

/// Takes `tenant_overrides.{tenant}` out of `backfill_config.json`; false when it had none.
pub fn remove_overrides(file: &Path, tenant_id: &str) -> Result<bool> {
    let text = read_small_file(file, MAX_CONFIG_FILE_BYTES)
        .wrap_err_with(|| format!("cannot read {}", file.display()))?;
    let mut doc: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| eyre!("{}: {e}", file.display()))?;
    let removed = doc
        .get_mut("tenant_overrides")
        .and_then(|o| o.as_object_mut())
        .and_then(|o| o.remove(tenant_id))
        .is_some();
    if removed {
        // The file is written by hand: take the entry's text out and keep the rest as it is,
        // unless that would not read back as the document without the entry.
        let reread = |t: &str| serde_json::from_str::<serde_json::Value>(t).ok();
        let text = match cut_member(&text, "tenant_overrides", tenant_id) {
            Some(cut) if reread(&cut).as_ref() == Some(&doc) => cut,
            _ => serde_json::to_string_pretty(&doc)? + "\n",
        };
        let tmp = temp_path(file);
        write_new(&tmp, text.as_bytes(), None)?;
        rename(&tmp, file)?;
    }
    Ok(removed)
}

/// `text` without member `key` of the top-level member `parent` (an object), and the comma
/// that separated it; `None` when it is not where expected.
fn cut_member(text: &str, parent: &str, key: &str) -> Option<String> {
    let b = text.as_bytes();
    let (mut depth, mut i) = (0usize, 0usize);
    let (mut in_parent, mut open, mut member, mut sep) = (false, None, None, None);
    while i < b.len() {
        let c = b[i];
        if c == b'"' {
            let end = string_end(b, i)?;
            let is_key = text[end + 1..].trim_start().starts_with(':');
            if is_key && depth == 1 && &text[i + 1..end] == parent {
                in_parent = true;
            } else if is_key && depth == 2 && open.is_some() && &text[i + 1..end] == key {
                member = Some(i);
            }
            i = end + 1;
            continue;
        }
        if depth == 2 && open.is_some() && (c == b',' || c == b'}') {
            if let Some(start) = member {
                let (from, to) = match (c, sep) {
                    // Not the last: up to the next member's line.
                    (b',', _) => (line_start(b, start), line_start(b, skip_ws(b, i + 1))),
                    // The last after others: from the comma before it.
                    (_, Some(comma)) => (comma, trim_end(b, i)),
                    // The only one: the object becomes empty.
                    _ => (open? + 1, i),
                };
                return Some(format!("{}{}", &text[..from], &text[to..]));
            }
            if c == b'}' {
                return None;
            }
            sep = Some(i);
        }
        match c {
            b'{' | b'[' => {
                depth += 1;
                if depth == 2 && in_parent && open.is_none() {
                    open = Some(i);
                }
            }
            b'}' | b']' => depth = depth.checked_sub(1)?,
            _ => {}
        }
        i += 1;
    }
    None
}

fn string_end(b: &[u8], open: usize) -> Option<usize> {
    let mut j = open + 1;
    while j < b.len() {
        match b[j] {
            b'\\' => j += 2,
            b'"' => return Some(j),
            _ => j += 1,
        }
    }
    None
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && b[i].is_ascii_whitespace() {
        i += 1;
    }
    i
}

/// `at` moved back over the blanks and line ends before it.
fn trim_end(b: &[u8], mut at: usize) -> usize {
    while at > 0 && b[at - 1].is_ascii_whitespace() {
        at -= 1;
    }
    at
}

/// The start of `at`'s line when only blanks precede it there, else `at`.
fn line_start(b: &[u8], at: usize) -> usize {
    let mut i = at;
    while i > 0 && (b[i - 1] == b' ' || b[i - 1] == b'\t') {
        i -= 1;
    }
    if i == 0 || b[i - 1] == b'\n' { i } else { at }
}

/// ConnectWise's API base for a company: `GET {site}/login/companyinfo/{company}` answers
/// `Codebase` (`v4_6_release/`); the base is `{site}/{Codebase}apis/3.0`. A site without a
/// scheme is `https://`.
pub async fn discover_connectwise(site: &str, company: &str, timeout: Duration) -> Result<String> {
    let site = site.trim_end_matches('/');
    let site = match site.contains("://") {
        true => site.to_string(),
        false => format!("https://{site}"),
    };
    let url = url::Url::parse(&format!("{site}/login/companyinfo/"))
        .and_then(|u| u.join(company))
        .map_err(|e| eyre!("--site '{site}': {e}"))?;
    let answer = crate::sources::http_client()
        .get(url.clone())
        .timeout(timeout)
        .send()
        .await
        .map_err(|e| eyre!("--site '{site}': GET {url}: {e}"))?;
    let status = answer.status();
    let body = answer
        .text()
        .await
        .map_err(|e| eyre!("--site '{site}': GET {url}: {e}"))?;
    if !status.is_success() {
        let short: String = body.chars().take(200).collect();
        bail!(
            "--company '{company}': ConnectWise at {site} does not know it (GET {url}: HTTP {}: {short})",
            status.as_u16()
        );
    }
    let info: serde_json::Value =
        serde_json::from_str(&body).map_err(|e| eyre!("GET {url}: the answer is not JSON: {e}"))?;
    let Some(codebase) = info
        .get("Codebase")
        .and_then(|c| c.as_str())
        .filter(|c| !c.is_empty())
    else {
        bail!(
            "--company '{company}': GET {url}: $.Codebase is missing (the site knows no such company)"
        );
    };
    let codebase = codebase.trim_matches('/');
    Ok(format!("{site}/{codebase}/apis/3.0"))
}

#[cfg(test)]
mod tests {
    use super::cut_member;

    #[test]
    fn an_override_is_cut_out_and_the_rest_of_the_text_stays() {
        let only = "{\n  \"a\": 1,\n  \"tenant_overrides\": {\n    \"globex\": { \"x\": {\"y\": 1} }\n  },\n  \"z\": 2\n}\n";
        assert_eq!(
            cut_member(only, "tenant_overrides", "globex").unwrap(),
            "{\n  \"a\": 1,\n  \"tenant_overrides\": {},\n  \"z\": 2\n}\n"
        );
        let three =
            "{\"tenant_overrides\": {\n  \"a\": {\"k\": \"}\"},\n  \"b\": {},\n  \"c\": []\n}}";
        assert_eq!(
            cut_member(three, "tenant_overrides", "b").unwrap(),
            "{\"tenant_overrides\": {\n  \"a\": {\"k\": \"}\"},\n  \"c\": []\n}}"
        );
        assert_eq!(
            cut_member(three, "tenant_overrides", "c").unwrap(),
            "{\"tenant_overrides\": {\n  \"a\": {\"k\": \"}\"},\n  \"b\": {}\n}}"
        );
        assert_eq!(cut_member(three, "tenant_overrides", "nobody"), None);
    }
}
