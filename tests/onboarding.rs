//! Onboarding a real tenant: README's `tenant add` block, run as written with the real binary
//! against a sandbox process, with the demo tenants removed; and what `tenant add` refuses.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};

use common::*;

/// The address README's block uses for the site; the test's sandbox replaces it.
const README_SITE: &str = "http://127.0.0.1:8080";

/// The first `sh` block after README's "## Onboarding a tenant" heading.
fn readme_onboarding_block() -> String {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let section = readme
        .split_once("## Onboarding a tenant")
        .expect("README has an onboarding section")
        .1;
    let block = section.split_once("```sh\n").expect("a sh block").1;
    block
        .split_once("```")
        .expect("the block ends")
        .0
        .to_string()
}

#[test]
fn readme_onboarding_commands_add_check_and_backfill_a_new_tenant_without_the_demo_ones() {
    let fx = Fixture::new();
    // As README starts it: its history ends today.
    let sandbox = SandboxProc::serve(&fx.config_dir(), &[]);
    let url = sandbox.url.clone();
    let block = readme_onboarding_block();
    assert!(block.contains(README_SITE), "{block}");
    let script = block.replace(README_SITE, &url);
    let bin_dir = Path::new(BIN).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("sh")
        .args(["-ec", &script])
        .env("PATH", path)
        .env("AVESA_WORKSPACE", fx.workspace())
        .env("AVESA_CONFIG_DIR", fx.config_dir())
        .env("AVESA_LOG", "warn")
        .env_remove("AVESA_SANDBOX_URL")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    drop(sandbox);
    assert!(
        out.status.success(),
        "the README block failed: {}",
        text(&out)
    );
    let registry: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fx.config_dir().join("tenants.json")).unwrap(),
    )
    .unwrap();
    let tenants = registry["tenants"].as_array().unwrap();
    assert_eq!(tenants.len(), 1, "{registry}");
    let cw = &tenants[0]["services"]["connectwise"];
    assert_eq!(tenants[0]["tenant_id"], "contoso");
    assert_eq!(
        cw["base_url"],
        format!("{url}/v4_6_release/apis/3.0"),
        "found from the codebase"
    );
    let creds = fx.config_dir().join("credentials/contoso-connectwise.json");
    let mode = std::fs::metadata(&creds).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let creds: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&creds).unwrap()).unwrap();
    assert_eq!(creds["company_id"], "acme_demo");
    // The overrides of a removed demo tenant went with it, the rest of the hand-written file
    // as it was; no warning on loading.
    let shipped = std::fs::read_to_string(repo_mappings().join("backfill_config.json")).unwrap();
    let now = std::fs::read_to_string(fx.config_dir().join("backfill_config.json")).unwrap();
    let (head, tail) = now
        .split_once("  \"tenant_overrides\": {},\n")
        .unwrap_or_else(|| panic!("{now}"));
    assert!(
        shipped.starts_with(head) && shipped.ends_with(tail),
        "{now}"
    );
    let all = text(&out);
    assert!(!all.contains("warning"), "{all}");
    let jobs = fx.cli(
        None,
        &["status", "--tenant-id", "contoso", "--output", "json"],
    );
    let jobs = String::from_utf8_lossy(&jobs.stdout).to_string();
    assert!(jobs.contains("\"completed\""), "{jobs}");
    let landed = Landed::read(&fx.data_dir(), "contoso", "tickets");
    assert!(!landed.rows.is_empty(), "tickets landed for contoso");
    // No secret was printed.
    assert!(!all.contains("sandbox-only-private-key-0000"), "{all}");
}

#[test]
fn tenant_add_refuses_what_it_cannot_write_and_names_the_flag_or_file() {
    let fx = Fixture::new();
    let add = |args: &[&str]| {
        let mut all = vec!["tenant", "add", "--no-check"];
        all.extend_from_slice(args);
        fx.cli(None, &all)
    };
    let out = add(&["--service", "servicenow"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("--tenant-id is required"),
        "{}",
        text(&out)
    );
    let base = [
        "--tenant-id",
        "acme",
        "--service",
        "servicenow",
        "--base-url",
        "https://x.service-now.com",
    ];
    let out = add(&[
        &base[..],
        &["--credential", "username=u", "--credential", "password=p"],
    ]
    .concat());
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out);
    assert!(
        err.contains("tenants.json") && err.contains("--replace"),
        "{err}"
    );
    let out = add(&[
        "--tenant-id",
        "new0",
        "--service",
        "servicenow",
        "--base-url",
        "https://x.service-now.com",
        "--credential",
        "nonsense=secret-value-1",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out);
    assert!(
        err.contains("'nonsense' is not a credential field"),
        "{err}"
    );
    assert!(!err.contains("secret-value-1"), "{err}");
    let out = add(&[
        "--tenant-id",
        "new1",
        "--service",
        "servicenow",
        "--base-url",
        "https://x.service-now.com",
        "--credential",
        "username=u",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("--credential password=… is required"),
        "{}",
        text(&out)
    );
    assert!(
        !fx.config_dir()
            .join("credentials/new1-servicenow.json")
            .exists()
    );
    let out = add(&[
        "--tenant-id",
        "new2",
        "--service",
        "servicenow",
        "--base-url",
        "https://x.service-now.com",
        "--credential-env",
        "username=NEW2_USER",
        "--credential-env",
        "password=NEW2_PASS",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let out = fx.cli(None, &["tenant", "remove", "nobody"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("no tenant 'nobody'"), "{}", text(&out));
}

#[test]
fn tenant_add_keeps_a_tenants_protection_and_sets_it_with_protected() {
    let fx = Fixture::new();
    fx.edit("tenants.json", |v| {
        v["tenants"][0]["protected"] = true.into()
    });
    let protected = |id: &str| {
        let file = fx.config_dir().join("tenants.json");
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
        let tenants = v["tenants"].as_array().unwrap().clone();
        let t = tenants.into_iter().find(|t| t["tenant_id"] == id).unwrap();
        t["protected"].as_bool().unwrap_or(false)
    };
    let add = |id: &str, extra: &[&str]| {
        let mut args = vec![
            "tenant",
            "add",
            "--no-check",
            "--tenant-id",
            id,
            "--service",
            "salesforce",
            "--base-url",
            "https://login.salesforce.com",
            "--credential-env",
            "client_id=SF_ID",
            "--credential-env",
            "client_secret=SF_SECRET",
        ];
        args.extend_from_slice(extra);
        let out = fx.cli(None, &args);
        assert!(out.status.success(), "{}", text(&out));
    };
    // A connection of acme replaced rewrites the registry: acme stays protected.
    add("acme", &["--replace"]);
    assert!(protected("acme"));
    add("newco", &["--protected", "true"]);
    assert!(protected("newco"));
    add("acme", &["--replace", "--protected", "false"]);
    assert!(!protected("acme"));
    let out = fx.cli(None, &["tenant", "add", "--protected", "maybe"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("--protected"), "{}", text(&out));
}
