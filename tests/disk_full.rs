//! A full disk under the data directory stops the run with a clear error instead of burning
//! the chunks' attempts: no chunk is marked failed, and once space is freed `resume` lands
//! exactly the source. The data directory is a small tmpfs (mounting one needs root).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use avesa_console::sandbox::TableCounts;
use common::*;

const JOB: &str = TWO_YEARS_OF_TICKETS;

/// A tmpfs mounted at a directory, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(dir).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .is_ok_and(|o| o.status.success());
        ok.then(|| Tmpfs(dir.to_path_buf()))
    }

    fn resize(&self, size: &str) {
        let out = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out));
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_stops_the_run_fails_no_chunk_and_resume_lands_exact_data() {
    let fx = Fixture::new();
    fx.tune(6000, 50);
    let Some(disk) = Tmpfs::mount(&fx.data_dir(), "64k") else {
        skip::skip(
            "a_full_disk_stops_the_run_fails_no_chunk_and_resume_lands_exact_data",
            "mounting a tmpfs needs root",
        );
        return;
    };
    let sandbox = fx.start_sandbox(&[]);
    trigger_two_years_of_tickets(&fx, &sandbox);
    let out = fx.cli(Some(&sandbox), &["run"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("disk full"), "{stderr}");
    assert!(stderr.contains("no chunk was marked failed"), "{stderr}");
    let detail = job_status(&fx, JOB);
    assert_ne!(
        detail["job"]["status"], "completed",
        "the disk never filled"
    );
    assert_eq!(detail["job"]["failed_chunks"], 0, "{detail}");
    for c in detail["chunks"].as_array().unwrap() {
        assert_ne!(c["status"], "failed", "{c}");
        assert!(c["attempts"].as_u64().unwrap() <= 1, "{c}");
    }

    disk.resize("64m");
    let out = fx.cli(Some(&sandbox), &["resume", JOB]);
    assert_ok(&out);
    let detail = job_status(&fx, JOB);
    assert_eq!(detail["job"]["status"], "completed", "{detail}");
    let window = parse_window("2024-01-01T00:00:00Z", "2026-01-01T00:00:00Z");
    let cfg = fx.sandbox_config(TableCounts::demo());
    let landed = Landed::read(&fx.data_dir(), "acme", "tickets");
    assert_exact(&landed, &cfg, &company_of(&fx, "acme"), "tickets", &window);
}
