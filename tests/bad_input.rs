//! Bad input gets a clear error naming what is wrong, a non-zero exit, and writes nothing.

mod common;

use common::*;

/// Runs `trigger` with `args` on a fresh fixture (after `prepare`) and checks the refusal.
fn refused(prepare: impl FnOnce(&Fixture), args: &[&str], needles: &[&str]) {
    let fx = Fixture::new();
    prepare(&fx);
    let mut full = vec!["trigger"];
    full.extend_from_slice(args);
    let out = fx.cli(None, &full);
    let shown = text(&out);
    assert!(!out.status.success(), "accepted: {shown}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    for n in needles {
        assert!(stderr.contains(n), "error lacks {n:?}: {shown}");
    }
    assert!(
        !fx.workspace().exists(),
        "something was written for a refused request: {shown}"
    );
}

const OK: [&str; 6] = [
    "--tenant-id",
    "acme",
    "--service",
    "connectwise",
    "--start-date",
    "2025-01-01",
];

fn with(overrides: &[(&str, &str)]) -> Vec<String> {
    let mut args: Vec<String> = OK.iter().map(|s| s.to_string()).collect();
    for (flag, value) in overrides {
        match args.iter().position(|a| a == flag) {
            Some(i) => args[i + 1] = value.to_string(),
            None => {
                args.push(flag.to_string());
                args.push(value.to_string());
            }
        }
    }
    args
}

/// `trigger` refused after `edit` changed configuration `file`.
fn refused_config(file: &str, edit: impl FnOnce(&mut serde_json::Value), needles: &[&str]) {
    refused(
        |fx| {
            fx.edit(file, edit);
        },
        &OK,
        needles,
    );
}

fn refused_args(overrides: &[(&str, &str)], needles: &[&str]) {
    let args = with(overrides);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    refused(|_| {}, &refs, needles);
}

#[test]
fn unknown_tenant() {
    refused_args(
        &[("--tenant-id", "nobody")],
        &["unknown tenant 'nobody'", "acme"],
    );
}

#[test]
fn unknown_service() {
    refused_args(
        &[("--service", "jira")],
        &["--service", "unknown service 'jira'"],
    );
}

#[test]
fn unknown_table() {
    refused_args(
        &[("--table", "service/nothing")],
        &["unknown table 'service/nothing'", "service/tickets"],
    );
}

#[test]
fn start_after_end() {
    refused_args(
        &[("--start-date", "2025-05-01"), ("--end-date", "2025-04-01")],
        &["start 2025-05-01", "is not before end 2025-04-01"],
    );
}

#[test]
fn end_in_the_future() {
    refused_args(
        &[("--end-date", "2999-01-01")],
        &["end 2999-01-01", "in the future"],
    );
}

#[test]
fn malformed_dates() {
    refused_args(
        &[("--start-date", "2025-13-01")],
        &["--start-date '2025-13-01'"],
    );
}

#[test]
fn zero_chunk_size() {
    refused_args(
        &[("--chunk-size-days", "0")],
        &["'--chunk-size-days", "0 is not in 1..=3650"],
    );
}

#[test]
fn tenant_ids_that_would_escape_their_folder() {
    refused_args(
        &[("--tenant-id", "acme/../globex")],
        &["tenant id", "contains '/'"],
    );
    refused_args(
        &[("--tenant-id", "..")],
        &["tenant id '..'", "contains '.'"],
    );
}

#[test]
fn malformed_json_config_names_file_and_line() {
    refused(
        |fx| {
            let p = fx.config_dir().join("backfill_config.json");
            let text = std::fs::read_to_string(&p).unwrap().replacen(
                "\"chunk_size_days\": 30,",
                "\"chunk_size_days\": 30,,",
                1,
            );
            std::fs::write(p, text).unwrap();
        },
        &OK,
        &["backfill_config.json", "line 3", "malformed JSON"],
    );
}

#[test]
fn invalid_config_values_name_the_json_path() {
    refused_config(
        "backfill_config.json",
        |v| v["service_settings"]["connectwise"]["chunk_size_days"] = 0.into(),
        &[
            "backfill_config.json",
            "$.service_settings.connectwise.chunk_size_days",
            "at least 1",
        ],
    );
    refused_config(
        "backfill_config.json",
        |v| v["default_settings"]["retry_attempts"] = "three".into(),
        &[
            "backfill_config.json",
            "$.default_settings.retry_attempts",
            "invalid type",
        ],
    );
    refused_config(
        "tenants.json",
        |v| v["tenants"][1]["tenant_id"] = "glo/bex".into(),
        &["tenants.json", "$.tenants[1].tenant_id", "contains '/'"],
    );
    refused_config(
        "tenants.json",
        |v| v["tenants"][0]["protected"] = "yes".into(),
        &["tenants.json", "$.tenants[0].protected", "invalid type"],
    );
    refused_config(
        "endpoints/connectwise.json",
        |v| v["endpoints"][0]["incremental_field"] = "summary".into(),
        &[
            "connectwise.json",
            "$.endpoints[0].incremental_field",
            "timestamp",
        ],
    );
    refused_config(
        "backfill_config.json",
        |v| v["service_settings"]["connectwise"]["priority_endpoints"][1] = "time/nothing".into(),
        &[
            "$.service_settings.connectwise.priority_endpoints[1]",
            "'time/nothing'",
        ],
    );
}

#[test]
fn missing_credentials_are_named_without_values() {
    let fx = Fixture::new();
    fx.edit("tenants.json", |v| {
        v["tenants"][0]["services"]["connectwise"]["credentials"] =
            serde_json::json!({"env": {"company_id": "AVESA_TEST_NO_SUCH_COMPANY", "public_key": "AVESA_TEST_NO_SUCH_PUBLIC", "private_key": "AVESA_TEST_NO_SUCH_PRIVATE", "client_id": "AVESA_TEST_NO_SUCH_CLIENT"}});
    });
    let sandbox = fx.start_sandbox(&[]);
    let out = fx.cli(
        Some(&sandbox),
        &trigger_args(
            "acme",
            Some("companies"),
            "2025-11-01",
            Some("2025-12-01"),
            &["--run"],
        ),
    );
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let detail = job_status(&fx, "backfill_acme_connectwise_20251101");
    let err = detail["chunks"][0]["last_error"].as_str().unwrap();
    assert!(
        err.contains("environment variable AVESA_TEST_NO_SUCH_") && err.contains("not set"),
        "{err}"
    );
    assert_eq!(
        detail["chunks"][0]["attempts"], 1,
        "a configuration error is not retried"
    );
}

#[test]
fn resume_of_an_unknown_job_fails() {
    let fx = Fixture::new();
    let out = fx.cli(None, &["resume", "backfill_nobody_connectwise_20250101"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("job 'backfill_nobody_connectwise_20250101' not found"),
        "{}",
        text(&out)
    );
}

#[test]
fn huge_chunk_size_is_refused_with_its_range() {
    refused_args(
        &[("--chunk-size-days", "4294967295")],
        &["'--chunk-size-days", "4294967295 is not in 1..=3650"],
    );
}

/// Every integer setting is range-checked: a huge one names its file, JSON path and range
/// instead of overflowing later in the planner.
#[test]
fn huge_config_integers_name_file_path_and_range() {
    for (edit, path, range) in [
        (
            &(|v: &mut serde_json::Value| {
                v["service_settings"]["connectwise"]["default_lookback_days"] = 4294967295u32.into()
            }) as &dyn Fn(&mut serde_json::Value),
            "$.service_settings.connectwise.default_lookback_days",
            "at most 36500",
        ),
        (
            &|v: &mut serde_json::Value| {
                v["service_settings"]["connectwise"]["chunk_size_days"] = 4294967295u32.into()
            },
            "$.service_settings.connectwise.chunk_size_days",
            "at most 3650",
        ),
        (
            &|v: &mut serde_json::Value| {
                v["default_settings"]["lookback_days"] = 4294967295u32.into()
            },
            "$.default_settings.lookback_days",
            "at most 36500",
        ),
        (
            &|v: &mut serde_json::Value| {
                v["service_settings"]["connectwise"]["rate_limit_requests_per_minute"] =
                    4294967295u32.into()
            },
            "$.service_settings.connectwise.rate_limit_requests_per_minute",
            "at most 1000000",
        ),
    ] {
        let fx = Fixture::new();
        fx.edit("backfill_config.json", |v| edit(v));
        let out = fx.cli(None, &[&["trigger"][..], &OK[..]].concat());
        let shown = text(&out);
        assert!(
            matches!(out.status.code(), Some(1) | Some(2)),
            "not a clean refusal: {shown}"
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        for n in ["backfill_config.json", path, range] {
            assert!(stderr.contains(n), "error lacks {n:?}: {shown}");
        }
        assert!(
            !fx.workspace().exists(),
            "wrote for a refused request: {shown}"
        );
    }
}

/// `max_daily_api_share` is a share: above 0, at most 1; anything else names the file, the
/// JSON path and the range.
#[test]
fn an_api_share_out_of_range_names_file_path_and_range() {
    for bad in [0.0, 1.5, -0.2] {
        let fx = Fixture::new();
        fx.edit("backfill_config.json", |v| {
            v["service_settings"]["salesforce"]["max_daily_api_share"] = bad.into()
        });
        let out = fx.cli(None, &[&["trigger"][..], &OK[..]].concat());
        let shown = text(&out);
        assert!(
            matches!(out.status.code(), Some(1) | Some(2)),
            "not a clean refusal: {shown}"
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        for n in [
            "backfill_config.json",
            "$.service_settings.salesforce.max_daily_api_share",
            "above 0 and at most 1",
        ] {
            assert!(stderr.contains(n), "{bad}: error lacks {n:?}: {shown}");
        }
    }
    let fx = Fixture::new();
    fx.edit("backfill_config.json", |v| {
        v["service_settings"]["salesforce"]["max_daily_api_share"] = 1.into()
    });
    assert!(
        fx.cli(None, &[&["trigger"][..], &OK[..]].concat())
            .status
            .success()
    );
}

#[test]
fn bad_value_under_a_service_key_names_the_service() {
    refused_config(
        "backfill_config.json",
        |v| v["service_settings"]["connectwise"]["chunk_size_days"] = "thirty".into(),
        &[
            "$.service_settings.connectwise.chunk_size_days",
            "invalid type",
        ],
    );
    refused_config(
        "backfill_config.json",
        |v| {
            v["tenant_overrides"] =
                serde_json::json!({"acme": {"connectwise": {"chunk_size_days": "x"}}})
        },
        &[
            "$.tenant_overrides.acme.connectwise.chunk_size_days",
            "invalid type",
        ],
    );
    refused_config(
        "tenants.json",
        |v| v["tenants"][0]["services"]["connectwise"]["base_url"] = 5.into(),
        &[
            "tenants.json",
            "$.tenants[0].services.connectwise.base_url",
            "invalid type",
        ],
    );
    refused_config(
        "canonical/tickets.json",
        |v| v["sources"]["connectwise"]["table"] = 5.into(),
        &[
            "tickets.json",
            "$.sources.connectwise.table",
            "invalid type",
        ],
    );
}

/// A first retry delay so long that the retry's date would overflow is refused on load.
#[test]
fn a_retry_backoff_past_any_date_names_its_path_and_range() {
    refused_config(
        "backfill_config.json",
        |v| v["default_settings"]["retry_backoff_seconds"] = 1e300.into(),
        &[
            "backfill_config.json",
            "$.default_settings.retry_backoff_seconds",
            "between 0 and 86400",
        ],
    );
}

/// Every whole-number flag has a range that argument parsing enforces: out of it, the
/// command exits 2 with clap's message naming the flag, the value and the range, and writes
/// nothing (not even a log).
#[test]
fn integer_flags_out_of_range_are_refused_before_anything_is_written() {
    let trigger = |flag: &'static str, value: &'static str| {
        let mut args = vec!["trigger"];
        args.extend_from_slice(&OK);
        args.extend([flag, value]);
        args
    };
    for (args, flag, value, range) in [
        (
            vec!["run", "--concurrency", "0"],
            "--concurrency",
            "0",
            "1..=64",
        ),
        (
            vec!["run", "--concurrency", "65"],
            "--concurrency",
            "65",
            "1..=64",
        ),
        (
            vec![
                "run",
                "--job-id",
                "backfill_acme_connectwise_20250101",
                "--concurrency",
                "0",
            ],
            "--concurrency",
            "0",
            "1..=64",
        ),
        (
            vec![
                "resume",
                "backfill_acme_connectwise_20250101",
                "--concurrency",
                "65",
            ],
            "--concurrency",
            "65",
            "1..=64",
        ),
        (
            trigger("--chunk-size-days", "0"),
            "--chunk-size-days",
            "0",
            "1..=3650",
        ),
        (trigger("--lanes", "0"), "--lanes", "0", "1..=64"),
        (
            trigger("--heartbeat-seconds", "0"),
            "--heartbeat-seconds",
            "0",
            "1..=86400",
        ),
        (
            trigger("--max-iterations", "0"),
            "--max-iterations",
            "0",
            "1..=25000",
        ),
        (
            vec![
                "plan",
                "--tenant-id",
                "acme",
                "--service",
                "connectwise",
                "--chunk-size-days",
                "4294967295",
            ],
            "--chunk-size-days",
            "4294967295",
            "1..=3650",
        ),
        (
            vec!["cleanup", "--older-than-days", "4294967295"],
            "--older-than-days",
            "4294967295",
            "0..=36500",
        ),
        (
            vec!["sandbox", "--history-days", "0"],
            "--history-days",
            "0",
            "1..=36500",
        ),
        (
            vec!["sandbox", "--rate-limit", "0"],
            "--rate-limit",
            "0",
            "1..=1000000",
        ),
        (
            vec!["sandbox", "--tickets", "18446744073709551615"],
            "--tickets",
            "18446744073709551615",
            "0..=1000000000",
        ),
        (
            vec!["bench", "--records", "0"],
            "--records",
            "0",
            "1..=1000000000",
        ),
        (
            vec!["bench", "--concurrency", "0"],
            "--concurrency",
            "0",
            "1..=64",
        ),
        (
            vec!["bench", "--transform-bucket-mb", "0"],
            "--transform-bucket-mb",
            "0",
            "1..=1048576",
        ),
        (
            vec!["worker", "--wait-seconds", "21"],
            "--wait-seconds",
            "21",
            "0..=20",
        ),
        (
            vec!["worker", "--visibility-seconds", "0"],
            "--visibility-seconds",
            "0",
            "1..=43200",
        ),
        (
            vec!["worker", "--concurrency", "0"],
            "--concurrency",
            "0",
            "1..=64",
        ),
    ] {
        let fx = Fixture::new();
        let out = fx.cli(None, &args);
        let shown = text(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {shown}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let expected = format!("invalid value '{value}' for '{flag}");
        assert!(stderr.contains(&expected), "{args:?}: {shown}");
        let expected = format!("{value} is not in {range}");
        assert!(stderr.contains(&expected), "{args:?}: {shown}");
        assert!(
            !fx.workspace().exists(),
            "{args:?} wrote for a refused request: {shown}"
        );
    }
}

/// Commands on one job, each naming `no_such_job`.
const ONE_JOB: [&[&str]; 9] = [
    &["resume", "no_such_job"],
    &["resume", "--retry-failed", "no_such_job"],
    &["cancel", "no_such_job"],
    &["pause", "no_such_job"],
    &["unpause", "no_such_job"],
    &["run", "--job-id", "no_such_job"],
    &["status", "--job-id", "no_such_job"],
    &["logs", "no_such_job"],
    &["verify", "no_such_job"],
];

/// Runs `args` and checks it exits 1 saying `no_such_job` is not found; returns the output.
fn says_not_found(fx: &Fixture, args: &[&str]) -> String {
    let out = fx.cli(None, args);
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(1), "{args:?}: {shown}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("job 'no_such_job' not found"),
        "{args:?}: {shown}"
    );
    shown
}

#[test]
fn job_commands_on_an_empty_workspace_create_no_store() {
    for args in ONE_JOB
        .iter()
        .chain([&&["alerts", "--job-id", "no_such_job"][..]])
    {
        let fx = Fixture::new();
        let shown = says_not_found(&fx, args);
        assert!(
            !fx.workspace().join("state.db").exists(),
            "{args:?} created a job store: {shown}"
        );
    }
}

/// In a workspace that has a store, a job it does not know is named as not found, with a
/// non-zero exit, by the commands on one job.
#[test]
fn job_commands_on_a_missing_job_say_so() {
    let fx = Fixture::new();
    assert_ok(&fx.cli(None, &[&["trigger"][..], &OK[..]].concat()));
    for args in ONE_JOB {
        says_not_found(&fx, args);
    }
}

/// A credentials path that is not a regular file (a device that never ends, a FIFO nobody
/// writes) or is too large is refused with its path instead of hanging or filling memory.
#[test]
fn credentials_that_are_not_a_small_regular_file_are_refused_with_their_path() {
    let fx = Fixture::new();
    let fifo = fx.dir.path().join("creds.fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let big = fx.dir.path().join("big.json");
    std::fs::write(&big, vec![b' '; 2 * 1024 * 1024]).unwrap();
    for (path, reason) in [
        (std::path::PathBuf::from("/dev/zero"), "not a regular file"),
        (fifo, "not a regular file"),
        (big, "larger than the 1048576 bytes allowed"),
    ] {
        fx.edit("tenants.json", |v| {
            v["tenants"][0]["services"]["connectwise"]["credentials"] =
                serde_json::json!({ "file": path });
        });
        let mut child = fx
            .command(
                None,
                &["check", "--tenant-id", "acme", "--service", "connectwise"],
            )
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let started = std::time::Instant::now();
        while child.try_wait().unwrap().is_none() {
            if started.elapsed() > std::time::Duration::from_secs(30) {
                child.kill().unwrap();
                panic!("check still reading {} after 30 s", path.display());
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let out = child.wait_with_output().unwrap();
        let shown = text(&out);
        assert_eq!(out.status.code(), Some(1), "{shown}");
        let expected = format!("cannot read credentials file {}: {reason}", path.display());
        assert!(shown.contains(&expected), "{shown}");
    }
}

/// A job store that is not a database (garbage bytes, a folder in its place) is an error
/// naming the file, from every command that opens it.
#[test]
fn a_broken_job_store_is_named_by_its_path() {
    let trigger = [&["trigger"][..], &OK[..]].concat();
    for garbage in [true, false] {
        let fx = Fixture::new();
        let db = fx.workspace().join("state.db");
        if garbage {
            std::fs::create_dir_all(fx.workspace()).unwrap();
            std::fs::write(&db, vec![0x5a; 8192]).unwrap();
        } else {
            std::fs::create_dir_all(&db).unwrap();
        }
        for args in [&["status"][..], &trigger, &["resume", "no_such_job"][..]] {
            let out = fx.cli(None, args);
            let shown = text(&out);
            assert_eq!(out.status.code(), Some(1), "{args:?}: {shown}");
            let expected = format!("job store: {}: ", db.display());
            assert!(
                String::from_utf8_lossy(&out.stderr).contains(&expected),
                "{args:?}: {shown}"
            );
        }
    }
}

/// Removing a tenant from the registry needs no other edit: its overrides in
/// `backfill_config.json` are ignored with a warning naming the file and path.
#[test]
fn overrides_of_a_removed_tenant_are_a_warning_not_a_load_failure() {
    let fx = Fixture::new();
    fx.edit("tenants.json", |v| {
        v["tenants"]
            .as_array_mut()
            .unwrap()
            .retain(|t| t["tenant_id"] != "globex");
    });
    let out = fx.cli(
        None,
        &trigger_args(
            "acme",
            Some("tickets"),
            "2025-01-01",
            Some("2025-02-01"),
            &["--dry-run"],
        ),
    );
    assert_ok(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("warning: ")
            && stderr.contains("backfill_config.json: $.tenant_overrides.globex: tenant 'globex' is not in the tenants registry"),
        "{stderr}"
    );
}

/// `status` works with a configuration `trigger` refuses, and says what `trigger` would say.
#[test]
fn status_warns_of_a_configuration_trigger_refuses() {
    let fx = Fixture::new();
    fx.edit("canonical/tickets.json", |v| {
        v["sources"]["connectwise"]["columns"]["summary"] = "no_such_column".into();
    });
    let trigger = fx.cli(
        None,
        &trigger_args(
            "acme",
            Some("tickets"),
            "2025-01-01",
            Some("2025-02-01"),
            &["--dry-run"],
        ),
    );
    assert_eq!(trigger.status.code(), Some(1), "{}", text(&trigger));
    let refusal =
        "$.sources.connectwise.columns.summary: 'no_such_column' is not a declared column";
    assert!(text(&trigger).contains(refusal), "{}", text(&trigger));
    let status = fx.cli(None, &["status"]);
    assert_ok(&status);
    let stderr = String::from_utf8_lossy(&status.stderr);
    assert!(
        stderr.contains("warning: ") && stderr.contains(refusal),
        "{stderr}"
    );
}

/// The settings of a cloud deployment, none of which these tests give.
const CLOUD_VARIABLES: [&str; 5] = [
    "AVESA_CLOUD_STATE_MACHINE_ARN",
    "AVESA_CLOUD_QUEUE_URL",
    "AVESA_CLOUD_BUCKET",
    "AVESA_CLOUD_TABLE_PREFIX",
    "AVESA_CLOUD_LOG_GROUP",
];

/// Runs `args` with no cloud setting in the environment; the refusal's stderr.
fn refused_cloud(fx: &Fixture, args: &[&str], needles: &[&str]) -> String {
    let mut cmd = fx.command(None, args);
    for var in CLOUD_VARIABLES {
        cmd.env_remove(var);
    }
    let out = cmd.output().unwrap();
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(2), "{args:?} not refused: {shown}");
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {shown}");
    for n in needles {
        assert!(stderr.contains(n), "{args:?}: error lacks {n:?}: {shown}");
    }
    assert!(
        !fx.workspace().exists(),
        "{args:?} wrote to the workspace: {shown}"
    );
    stderr
}

#[test]
fn cloud_commands_without_settings_say_what_to_set_and_never_run_locally() {
    let fx = Fixture::new();
    let jobs = [
        "--table-prefix",
        "AVESA_CLOUD_TABLE_PREFIX",
        "--state-machine-arn",
        "AVESA_CLOUD_STATE_MACHINE_ARN",
    ];
    let job = "backfill_acme_connectwise_20250101";
    let mut trigger = vec!["trigger", "--cloud"];
    trigger.extend_from_slice(&OK);
    let cases: Vec<(Vec<&str>, Vec<&str>)> = vec![
        (
            vec!["trigger", "--auto-detect", "--cloud"],
            [&jobs[..], &["--bucket", "AVESA_CLOUD_BUCKET"]].concat(),
        ),
        (
            vec!["trigger", "--auto-detect", "--cloud", "--dry-run"],
            jobs.to_vec(),
        ),
        (trigger, jobs.to_vec()),
        (vec!["resume", job, "--cloud"], jobs.to_vec()),
        (vec!["cancel", job, "--cloud"], jobs.to_vec()),
        (vec!["pause", job, "--cloud"], jobs.to_vec()),
        (vec!["unpause", job, "--cloud"], jobs.to_vec()),
        (vec!["status", "--cloud"], vec!["AVESA_CLOUD_TABLE_PREFIX"]),
        (vec!["logs", job, "--cloud"], vec!["AVESA_CLOUD_LOG_GROUP"]),
        (
            vec!["verify", job, "--cloud"],
            vec!["--bucket", "--table-prefix"],
        ),
        (vec!["cleanup", "--cloud"], vec!["--table-prefix"]),
        (vec!["alerts", "--cloud"], vec!["--table-prefix"]),
    ];
    for (args, needles) in &cases {
        let e = refused_cloud(&fx, args, needles);
        assert!(
            e.contains(&format!("{} ", args[0])),
            "names the command: {e}"
        );
    }
    // Only what is missing is named.
    let e = refused_cloud(
        &fx,
        &["trigger", "--auto-detect", "--cloud", "--table-prefix", "p"],
        &["--state-machine-arn", "--bucket"],
    );
    assert!(!e.contains("--table-prefix"), "{e}");
}
