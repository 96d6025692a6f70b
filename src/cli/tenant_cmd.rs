//! `tenant add` and `tenant remove`: onboarding a tenant's connection into `tenants.json`
//! and taking a tenant out again, without editing files by hand.
//!
//! `tenant add` connects one service per call (run it again for another service of the same
//! tenant). Every value comes from a flag; what is missing is asked on a terminal and is an
//! error naming the flag otherwise (stdin not a terminal: nothing waits for an answer).
//! ConnectWise's base URL is found from the site and company (`GET
//! https://{site}/login/companyinfo/{company}`, whose `Codebase` gives
//! `https://{site}/{Codebase}apis/3.0`) unless `--base-url` names it. Credentials go to a file
//! (`credentials/{tenant}-{service}.json`, mode 0600), environment variable names, a Secrets
//! Manager secret (`{"secret_id": ...}`) or an SSM parameter (`{"ssm_parameter": ...}`); which
//! fields a service needs is the table `fields_of`. Files are written atomically (a temporary
//! file renamed over the old one), the registry only after the new one validated as every
//! command loads it; an existing connection is replaced only with `--replace`. Then `check`
//! runs on the new connection and its exit code is the command's (`--no-check` skips it).
//!
//! `tenant remove` takes the tenant out of `tenants.json` and its `tenant_overrides` out of
//! `backfill_config.json`; its jobs and data stay, and so do its credential files (named).

mod files;
mod prompt;

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Duration;

use color_eyre::eyre::{Result, bail, eyre};

use super::{GlobalArgs, Output, check, runtime};
use crate::domain::{Service, validate_identifier};
use crate::workspace::Workspace;
use files::{ConnectionDoc, RegistryDoc, TenantDoc};
use prompt::Asker;

#[derive(clap::Args, Debug)]
pub struct TenantArgs {
    #[command(subcommand)]
    pub command: TenantCommand,
}

#[derive(clap::Subcommand, Debug)]
pub enum TenantCommand {
    /// Connect a service of a tenant (new or existing), then run `check` on it.
    Add(Box<AddArgs>),
    /// Take a tenant out of the registry, with its overrides (jobs and data stay).
    Remove(RemoveArgs),
}

#[derive(clap::Args, Debug, Default)]
pub struct AddArgs {
    #[arg(long)]
    pub tenant_id: Option<String>,
    /// Shown in the console and `summary` (default: the tenant id; kept for an existing tenant).
    #[arg(long)]
    pub display_name: Option<String>,
    /// connectwise, servicenow or salesforce.
    #[arg(long)]
    pub service: Option<String>,
    /// `true`: every change to the tenant's jobs or data needs its id typed (the console's
    /// prompt, `--confirm-tenant`); `false` lifts that (default: kept, off for a new tenant).
    #[arg(long, value_name = "BOOL")]
    pub protected: Option<bool>,
    /// ConnectWise: the site (`api-na.myconnectwise.net`, or a URL with its scheme).
    #[arg(long)]
    pub site: Option<String>,
    /// ConnectWise: the company id, used to find the codebase and as `company_id`.
    #[arg(long)]
    pub company: Option<String>,
    /// The API's base URL (ServiceNow instance, Salesforce login URL; ConnectWise without discovery).
    #[arg(long)]
    pub base_url: Option<String>,
    /// A credential value, written to the tenant's credentials file (mode 0600).
    #[arg(long = "credential", value_name = "FIELD=VALUE", conflicts_with_all = ["credential_env", "secret_id", "ssm_parameter"])]
    pub credential: Vec<String>,
    /// A credential read from an environment variable when the tenant's service runs.
    #[arg(long = "credential-env", value_name = "FIELD=VAR", conflicts_with_all = ["secret_id", "ssm_parameter"])]
    pub credential_env: Vec<String>,
    /// The credentials are a JSON object in this AWS Secrets Manager secret.
    #[arg(long, conflicts_with = "ssm_parameter")]
    pub secret_id: Option<String>,
    /// The credentials are a JSON object in this SSM parameter (SecureString).
    #[arg(long)]
    pub ssm_parameter: Option<String>,
    /// Overwrite the tenant's existing connection of this service (and its credentials file).
    #[arg(long)]
    pub replace: bool,
    /// Do not run `check` afterwards.
    #[arg(long)]
    pub no_check: bool,
    /// `check`'s limit for one request, and the codebase lookup's.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

#[derive(clap::Args, Debug)]
pub struct RemoveArgs {
    pub tenant_id: String,
}

/// One credential field of a service: its name, whether its value is a secret (never
/// echoed), and whether a connection needs it.
#[derive(Clone, Copy, Debug)]
pub struct Field {
    pub name: &'static str,
    pub secret: bool,
    pub required: bool,
}

const fn field(name: &'static str, secret: bool, required: bool) -> Field {
    Field {
        name,
        secret,
        required,
    }
}

/// The credential fields each service reads (`sources::connect`), in the order asked.
pub fn fields_of(service: Service) -> &'static [Field] {
    const CONNECTWISE: [Field; 4] = [
        field("company_id", false, true),
        field("public_key", false, true),
        field("private_key", true, true),
        field("client_id", false, true),
    ];
    const SERVICENOW: [Field; 4] = [
        field("username", false, true),
        field("password", true, true),
        field("client_id", false, false),
        field("client_secret", true, false),
    ];
    const SALESFORCE: [Field; 6] = [
        field("client_id", false, true),
        field("client_secret", true, true),
        field("username", false, false),
        field("password", true, false),
        field("security_token", true, false),
        field("refresh_token", true, false),
    ];
    match service {
        Service::Connectwise => &CONNECTWISE,
        Service::Servicenow => &SERVICENOW,
        Service::Salesforce => &SALESFORCE,
    }
}

pub async fn run(global: &GlobalArgs, ws: &Workspace, args: TenantArgs) -> Result<ExitCode> {
    match args.command {
        TenantCommand::Add(add) => self::add(global, ws, *add).await,
        TenantCommand::Remove(rm) => remove(global, ws, &rm),
    }
}

async fn add(global: &GlobalArgs, ws: &Workspace, args: AddArgs) -> Result<ExitCode> {
    // The configuration as it stands must load, as for every command.
    runtime::load_config(global, ws)?;
    let dir = runtime::config_dir(global, ws)?;
    let mut ask = Asker::new();
    let tenant_id = ask.value(args.tenant_id.clone(), "--tenant-id", "Tenant id", false)?;
    validate_identifier("tenant_id", &tenant_id).map_err(|r| eyre!("--tenant-id: {r}"))?;
    let service_name = ask.value(
        args.service.clone(),
        "--service",
        "Service (connectwise, servicenow, salesforce)",
        false,
    )?;
    let service: Service = service_name.parse().map_err(|_| {
        eyre!("--service '{service_name}': not connectwise, servicenow or salesforce")
    })?;
    let registry_file = dir.join("tenants.json");
    let mut registry = RegistryDoc::read(&registry_file)?;
    registry.refuse_existing(&registry_file, &tenant_id, service, args.replace)?;
    let base_url = base_url(&mut ask, &args, service).await?;
    let credentials = credentials(&mut ask, &args, &dir, &tenant_id, service)?;
    let display_name = args.display_name.clone();
    let conn = ConnectionDoc {
        enabled: true,
        base_url: base_url.clone(),
        credentials,
    };
    registry.upsert(&tenant_id, display_name, args.protected, service, conn);
    registry.write(&registry_file)?;
    println!("tenant '{tenant_id}': {service} connected at {base_url}");
    if args.no_check {
        return Ok(ExitCode::SUCCESS);
    }
    let check = check::CheckArgs {
        tenant_id,
        service: Some(service.to_string()),
        timeout: args.timeout,
        output: Output::Text,
    };
    check::run(global, ws, check).await
}

/// The connection's base URL: `--base-url`, else (ConnectWise) found from the site and company.
async fn base_url(ask: &mut Asker, args: &AddArgs, service: Service) -> Result<String> {
    if let Some(url) = &args.base_url {
        return Ok(url.trim_end_matches('/').to_string());
    }
    if service != Service::Connectwise {
        let what = match service {
            Service::Servicenow => "ServiceNow instance URL (https://INSTANCE.service-now.com)",
            _ => "Salesforce login URL (https://login.salesforce.com)",
        };
        let url = ask.value(None, "--base-url", what, false)?;
        return Ok(url.trim_end_matches('/').to_string());
    }
    let site = ask.value(
        args.site.clone(),
        "--site",
        "ConnectWise site (api-na.myconnectwise.net)",
        false,
    )?;
    let company = company(ask, args)?;
    files::discover_connectwise(&site, &company, args.timeout).await
}

fn company(ask: &mut Asker, args: &AddArgs) -> Result<String> {
    ask.value(
        args.company.clone(),
        "--company",
        "ConnectWise company id",
        false,
    )
}

/// `FIELD=VALUE` pairs of a repeated flag, each field one the service reads.
fn pairs(flag: &str, given: &[String], service: Service) -> Result<BTreeMap<String, String>> {
    let known = fields_of(service);
    let mut out = BTreeMap::new();
    for pair in given {
        let Some((name, value)) = pair.split_once('=') else {
            // The value may be a secret: name only what was expected.
            bail!("{flag}: expected FIELD=VALUE (no '=' given)");
        };
        if !known.iter().any(|f| f.name == name) {
            let names: Vec<&str> = known.iter().map(|f| f.name).collect();
            bail!(
                "{flag} '{name}=…': '{name}' is not a credential field of {service} ({})",
                names.join(", ")
            );
        }
        out.insert(name.to_string(), value.to_string());
    }
    Ok(out)
}

/// Where the connection's credentials come from, as its registry JSON; a credentials file is
/// written here (mode 0600).
fn credentials(
    ask: &mut Asker,
    args: &AddArgs,
    dir: &std::path::Path,
    tenant_id: &str,
    service: Service,
) -> Result<serde_json::Value> {
    if let Some(id) = &args.secret_id {
        return Ok(serde_json::json!({ "secret_id": id }));
    }
    if let Some(name) = &args.ssm_parameter {
        return Ok(serde_json::json!({ "ssm_parameter": name }));
    }
    let mut env = pairs("--credential-env", &args.credential_env, service)?;
    let mut values = pairs("--credential", &args.credential, service)?;
    if service == Service::Connectwise && env.is_empty() && !values.contains_key("company_id") {
        values.insert("company_id".into(), company(ask, args)?);
    }
    let use_env = !env.is_empty() || (args.credential.is_empty() && ask.prefers_env()?);
    for f in fields_of(service) {
        let (map, secret) = if use_env {
            (&mut env, false)
        } else {
            (&mut values, f.secret)
        };
        if map.contains_key(f.name) {
            continue;
        }
        let flag = if use_env {
            "--credential-env"
        } else {
            "--credential"
        };
        let question = match use_env {
            true => format!("Environment variable holding {}", f.name),
            false => format!(
                "{}{}",
                f.name,
                if f.required { "" } else { " (Enter: none)" }
            ),
        };
        if let Some(v) = ask.field(flag, f, &question, secret)? {
            map.insert(f.name.to_string(), v);
        }
    }
    if use_env {
        return Ok(serde_json::json!({ "env": env }));
    }
    let name = format!("credentials/{tenant_id}-{service}.json");
    files::write_credentials(&dir.join(&name), &values, args.replace)?;
    Ok(serde_json::json!({ "file": name }))
}

fn remove(global: &GlobalArgs, ws: &Workspace, args: &RemoveArgs) -> Result<ExitCode> {
    runtime::load_config(global, ws)?;
    let dir = runtime::config_dir(global, ws)?;
    let registry_file = dir.join("tenants.json");
    let mut registry = RegistryDoc::read(&registry_file)?;
    let Some(at) = registry
        .tenants
        .iter()
        .position(|t| t.tenant_id == args.tenant_id)
    else {
        bail!(
            "{}: no tenant '{}'",
            registry_file.display(),
            args.tenant_id
        );
    };
    let gone: TenantDoc = registry.tenants.remove(at);
    registry.write(&registry_file)?;
    let overrides = files::remove_overrides(&dir.join("backfill_config.json"), &args.tenant_id)?;
    println!(
        "tenant '{}' removed{}",
        args.tenant_id,
        if overrides {
            " with its tenant_overrides"
        } else {
            ""
        }
    );
    for conn in gone.services.values() {
        if let Some(file) = conn.credentials.get("file").and_then(|f| f.as_str()) {
            println!("  its credentials file {file} stays: delete it when no longer needed");
        }
    }
    Ok(ExitCode::SUCCESS)
}
