//! Detached runners: the console's jobs run in processes of their own, so quitting the
//! console (or losing its terminal) leaves them running.
//!
//! The console keeps its scheduler queue (`LocalRunner`, the same scheduling rules as `run`);
//! when the rules start a job, its run is a child process of this same binary,
//! `avesa-console run --job-id J --detached`: the `run` code, in a process group of its own,
//! its output appended to `runners/J.log` of the workspace and its pid written to
//! `runners/J.pid`. The child ignores SIGHUP, so a closed terminal or a lost SSH session
//! leaves it running. The console only waits for the child to exit, then reads the job from
//! the store; progress, cancel and pause go through the store, which both share (a cancelled
//! job's chunks lose their leases, which the runner notices at its next lease renewal).
//!
//! [`DetachedPort`] is the dispatch port over that queue: a job whose runner process still
//! lives (its pid file names a live process, maybe of an earlier console) is placed as
//! running "in runner process PID", so a second console does not start it twice.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;

use async_trait::async_trait;

use super::local::RunJob;
use super::{Dispatch, DispatchError, Halt, Halted, LocalRunner, Placement, Start};
use crate::domain::{Job, JobMeta, JobStatus};
use crate::engine::{Engine, EngineError, Handoff, RunOutcome, StopReason};

/// How to start a runner process: this binary with the console's own global arguments.
#[derive(Clone, Debug)]
pub struct RunnerCommand {
    pub program: PathBuf,
    /// Global arguments before the subcommand (`--workspace W --config-dir C …`).
    pub args: Vec<OsString>,
    /// Where pid files and runner output go (`WORKSPACE/runners`).
    pub dir: PathBuf,
}

impl RunnerCommand {
    fn pid_file(&self, job_id: &str) -> PathBuf {
        self.dir.join(format!("{job_id}.pid"))
    }

    /// Starts the runner of `job_id`, detached: its own process group, stdin closed, its
    /// output appended to `runners/J.log`; killing this process leaves it running.
    pub fn spawn(&self, job_id: &str) -> std::io::Result<tokio::process::Child> {
        std::fs::create_dir_all(&self.dir)?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("{job_id}.log")))?;
        let mut command = tokio::process::Command::new(&self.program);
        command
            .args(&self.args)
            .args(["run", "--job-id", job_id, "--detached"])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0)
            .kill_on_drop(false);
        let child = command.spawn()?;
        if let Some(pid) = child.id() {
            std::fs::write(self.pid_file(job_id), pid.to_string())?;
        }
        Ok(child)
    }

    /// The run of a job as the local runner sees it: a runner process, waited for, then the
    /// job as the store has it.
    pub fn run_job(self: Arc<Self>, engine: Engine) -> RunJob {
        Arc::new(move |job_id: String, _deadline| {
            let (command, engine) = (self.clone(), engine.clone());
            Box::pin(async move {
                let mut child = command.spawn(&job_id).map_err(|e| {
                    EngineError::Other(format!("cannot start a runner for {job_id}: {e}"))
                })?;
                let exit = child.wait().await;
                let _ = std::fs::remove_file(command.pid_file(&job_id));
                if let Err(e) = exit {
                    tracing::warn!(job_id, error = %e, "lost track of the runner process");
                }
                let job = engine
                    .store()
                    .get_job(&job_id)
                    .await?
                    .ok_or_else(|| EngineError::Other(format!("job '{job_id}' not found")))?;
                let open = job.status.is_active() && job.status != JobStatus::Paused;
                Ok(RunOutcome {
                    job_id,
                    status: job.status,
                    stop: if open {
                        StopReason::ContinuationNeeded
                    } else {
                        StopReason::Finished
                    },
                    handoff: Handoff::NotDue,
                })
            })
        })
    }

    /// Jobs whose runner process lives now, with its pid (stale pid files are skipped).
    pub fn live(&self) -> BTreeMap<String, u32> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return BTreeMap::new();
        };
        entries
            .filter_map(Result::ok)
            .filter_map(|e| {
                let path = e.path();
                let job_id = path.file_stem()?.to_str()?.to_string();
                (path.extension()? == "pid").then_some(())?;
                let pid = read_pid(&path)?;
                Some((job_id, pid))
            })
            .collect()
    }

    fn live_pid(&self, job_id: &str) -> Option<u32> {
        read_pid(&self.pid_file(job_id))
    }
}

/// The pid a pid file names, if that process lives.
fn read_pid(path: &Path) -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(path).ok()?.trim().parse().ok()?;
    (!crate::process::is_gone(pid)).then_some(pid)
}

/// Where a runner process runs a job, as a refusal names it.
pub fn in_runner(pid: u32) -> String {
    format!("in runner process {pid}")
}

/// The console's dispatch port: its scheduler queue, whose runs are runner processes.
#[derive(Clone)]
pub struct DetachedPort {
    pub queue: LocalRunner,
    pub command: Arc<RunnerCommand>,
}

#[async_trait]
impl Dispatch for DetachedPort {
    async fn placement(&self, job: &Job) -> Result<Placement, DispatchError> {
        let here = self.queue.placement(job).await?;
        if here != Placement::Idle {
            return Ok(here);
        }
        Ok(match self.command.live_pid(&job.job_id) {
            Some(pid) => Placement::Running { by: in_runner(pid) },
            None => Placement::Idle,
        })
    }

    async fn start(&self, job: &Job, meta: &JobMeta) -> Result<Start, DispatchError> {
        if let Some(pid) = self.command.live_pid(&job.job_id) {
            return Ok(Start::AlreadyRunning { by: in_runner(pid) });
        }
        self.queue.start(job, meta).await
    }

    async fn halt(&self, job_id: &str, halt: Halt) -> Halted {
        // A runner process stops through the store: the cancel took its chunks' leases, a
        // pause lets the chunks in flight finish.
        self.queue.halt(job_id, halt).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_live_runner_processes_count() {
        let dir = tempfile::tempdir().unwrap();
        let command = RunnerCommand {
            program: PathBuf::from("true"),
            args: Vec::new(),
            dir: dir.path().to_path_buf(),
        };
        std::fs::write(command.pid_file("live"), std::process::id().to_string()).unwrap();
        // Beyond Linux's pid_max: gone.
        std::fs::write(command.pid_file("gone"), "4294967290").unwrap();
        std::fs::write(dir.path().join("live.log"), "x").unwrap();
        let live = command.live();
        assert_eq!(
            live.into_iter().collect::<Vec<_>>(),
            vec![("live".to_string(), std::process::id())]
        );
        assert_eq!(command.live_pid("gone"), None);
    }
}
