//! The worker: long-polls the queue, answers each state-machine task with the same engine code
//! as local runs, and keeps the task alive while it works (SendTaskHeartbeat every third of
//! the task's heartbeat time, and the message's visibility extended with it).
//!
//! One message: receive (long poll, visibility `--visibility-seconds`) → parse (no token: drop;
//! unreadable: SendTaskFailure `Worker.BadMessage`) → a first SendTaskHeartbeat (a task that has
//! already ended, because the worker that had the message died, is dropped: the state machine
//! sent a fresh one) → keep-alive → wait for a free slot → work → SendTaskSuccess /
//! SendTaskFailure → delete.
//!
//! Queue wait: a task's heartbeat clock starts when the state machine sends its message, not when
//! a worker takes it, and only a holder of the token can heartbeat it. A message left in SQS
//! behind busy workers (more lanes than worker slots) would use up its HeartbeatSeconds there and
//! time out, again and again, until the lane gives up and the job ends unfinished. So a worker
//! takes up to `hold` messages beyond the `concurrency` it works on, heartbeats them (and keeps
//! them hidden) from the moment they arrive, and starts each as a slot frees, oldest first.
//! Only a worker with a free slot long-polls, for as many messages as it has free slots; one
//! whose slots are all busy looks with a short poll every `HOLD_POLL`, so a fresh message goes
//! to an idle worker's waiting long poll and a busy one holds only what nobody took. That
//! holds on AWS for any heartbeat: a held task is alive as long as its worker is, and a worker
//! that dies stops heartbeating what it held, so those tasks time out and are retried like a
//! crashed chunk. The alternatives do not hold: a longer HeartbeatSeconds covers a queue wait only
//! up to a guess and delays noticing a dead worker by as much; capping lanes at the worker slots
//! needs a fleet size the trigger does not know. The price: a held message waits for this worker
//! even when another worker's slot frees later, so `hold` is bounded (a fleet should have about
//! as many slots as the jobs have lanes), and a Lambda batch is held the same way while its
//! messages run one at a time.
//! If a heartbeat says the task is gone (timed out, execution stopped), the work stops at the next
//! page (the `Deadline` flag), the chunk is released at its checkpoint and nothing is answered.
//! SIGTERM does the same for every running task and answers `Worker.Retryable`. The transform
//! task runs `Engine::finish_job` (the same hand-off as a local run); the finalize task reports
//! the job's status, removes expired jobs and ships the logs it holds.
//!
//! Admission: a worker given the state machine's ARN (`AVESA_CLOUD_STATE_MACHINE_ARN`) runs
//! the fleet's admission pass (`engine::fleet`) every `ADMISSION_EVERY` and shortly after
//! each job's final step, so queued cloud jobs start when slots free without a scheduler
//! process of their own. One without it does not admit (it says so once).
//!
//! A worker killed mid-chunk loses nothing: its heartbeats stop, the task times out, the state
//! machine's Retry sends a new message, and whoever takes it claims the chunk once its lease
//! has expired (or at once when the dead holder was on the same host), continuing from the
//! checkpoint; parts written after the checkpoint are removed first. The crash is not a failed
//! attempt.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use aws_sdk_sfn::error::SdkError;
use aws_sdk_sfn::operation::send_task_heartbeat::SendTaskHeartbeatError;
use chrono::Utc;
use serde_json::{Value, json};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::CloudError;
use super::logs::{CurrentJobs, Shipper};
use super::message::{
    self, ChunkTask, ContinueTask, ERROR_BAD_MESSAGE, ERROR_FATAL, ERROR_JOB_NOT_FOUND,
    ERROR_RETRYABLE, JobTask, Parsed, Task, WorkMessage,
};
use super::ops::StepFunctions;
use super::sfn::{Dispatcher, ExecutionInput, execution_name, start_named};
use crate::domain::JobStatus;
use crate::engine::{Deadline, Engine, EngineError, Handoff, Step, wait_before_retry};
use crate::store::StoreError;

/// How often a worker runs an admission pass while it polls.
pub const ADMISSION_EVERY: Duration = Duration::from_secs(5);

/// After a job's final step, admission passes follow at these delays (its execution ends a
/// moment after the step is answered, and frees its slot then).
const ADMISSION_AFTER_END: [Duration; 3] = [
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(4),
];

/// How often a worker whose slots are all busy looks for messages left waiting in the queue
/// (a short poll), to hold them before their task's heartbeat time runs out.
pub const HOLD_POLL: Duration = Duration::from_secs(1);

#[derive(Clone, Debug)]
pub struct WorkerOptions {
    pub queue_url: String,
    /// Long-poll wait of one ReceiveMessage (1 to 20 s).
    pub wait_seconds: i32,
    /// How long a received message stays hidden from other workers; renewed with each heartbeat.
    pub visibility_seconds: i32,
    /// Messages worked on at once.
    pub concurrency: usize,
    /// Messages held beyond `concurrency`, heartbeated while they wait for a free slot.
    pub hold: usize,
    /// An execution older than this hands over to a new one.
    pub execution_window: Duration,
    /// How long one lane loop waits for a claimable chunk (another lane's table order, a
    /// backoff) before answering "more" and letting the state machine loop.
    pub claim_wait: Duration,
    /// The state machine admitted jobs start as; without it the worker does not admit.
    pub state_machine_arn: Option<String>,
}

impl WorkerOptions {
    pub fn new(queue_url: &str) -> Self {
        WorkerOptions {
            queue_url: queue_url.to_string(),
            wait_seconds: 20,
            visibility_seconds: 120,
            concurrency: 1,
            hold: 16,
            execution_window: message::EXECUTION_WINDOW,
            claim_wait: Duration::from_secs(300),
            state_machine_arn: None,
        }
    }
}

/// The port a worker's admission passes start executions with; `None` (said once) without
/// the state machine's ARN.
fn admitter(
    engine: &Engine,
    sfn: &aws_sdk_sfn::Client,
    opts: &WorkerOptions,
) -> Option<StepFunctions> {
    let Some(arn) = opts
        .state_machine_arn
        .as_deref()
        .filter(|a| !a.trim().is_empty())
    else {
        tracing::info!(
            "this worker does not admit queued jobs: AVESA_CLOUD_STATE_MACHINE_ARN is not set"
        );
        return None;
    };
    let dispatcher = Dispatcher::new(sfn.clone(), arn);
    Some(StepFunctions::new(
        dispatcher,
        "stopped by avesa-console",
        engine.clone(),
    ))
}

/// What became of one message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Handled {
    /// The task got its answer (success or failure).
    Answered,
    /// The task had already ended (timed out, execution stopped): nothing to answer.
    Stale,
    /// Nobody waits for this message (no task token).
    Dropped,
    /// The answer could not be delivered: keep the message so it comes back.
    Undelivered(String),
}

/// A task's failure, named as the state machine's Retry and Catch rules expect.
#[derive(Debug)]
struct Failure {
    error: &'static str,
    cause: String,
}

impl Failure {
    fn retryable(cause: impl std::fmt::Display) -> Self {
        Failure {
            error: ERROR_RETRYABLE,
            cause: cause.to_string(),
        }
    }
}

impl From<EngineError> for Failure {
    fn from(e: EngineError) -> Self {
        match &e {
            EngineError::Store(StoreError::JobNotFound(_)) => Failure {
                error: ERROR_JOB_NOT_FOUND,
                cause: e.to_string(),
            },
            EngineError::Plan(_) => Failure {
                error: ERROR_FATAL,
                cause: e.to_string(),
            },
            _ => Failure::retryable(e),
        }
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Failure::from(EngineError::Store(e))
    }
}

/// What SendTaskHeartbeat says about a task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TaskState {
    Alive,
    /// Timed out, or its execution ended.
    Ended,
    /// The token is not known (garbage, or not registered yet).
    Unknown,
}

#[derive(Clone)]
pub struct Worker {
    engine: Engine,
    sfn: aws_sdk_sfn::Client,
    sqs: aws_sdk_sqs::Client,
    opts: WorkerOptions,
    jobs: CurrentJobs,
    shutdown: Arc<AtomicBool>,
    /// Ships the worker's log lines to CloudWatch before it answers a job's final step.
    logs: Option<Shipper>,
    /// One permit per message worked on at once (`concurrency`); held messages wait for one.
    slots: Arc<Semaphore>,
    /// Told when a job's final step is answered: an admission pass follows.
    job_ended: Arc<Notify>,
    /// The same, for a worker without a polling loop (`admit_after_batch`).
    ended_since_pass: Arc<AtomicBool>,
    /// Starts the executions of the jobs its admission passes admit (`None`: no ARN given).
    admitter: Option<StepFunctions>,
}

impl Worker {
    pub fn new(
        engine: Engine,
        sfn: aws_sdk_sfn::Client,
        sqs: aws_sdk_sqs::Client,
        opts: WorkerOptions,
        jobs: CurrentJobs,
    ) -> Self {
        let slots = Arc::new(Semaphore::new(opts.concurrency.max(1)));
        let admitter = admitter(&engine, &sfn, &opts);
        Worker {
            engine,
            sfn,
            sqs,
            opts,
            jobs,
            shutdown: Arc::new(AtomicBool::new(false)),
            logs: None,
            slots,
            job_ended: Arc::new(Notify::new()),
            ended_since_pass: Arc::new(AtomicBool::new(false)),
            admitter,
        }
    }

    /// Ships the log lines written so far before answering a job's final step, so a job's
    /// logs are complete in CloudWatch when its execution ends.
    pub fn with_log_shipper(mut self, shipper: Shipper) -> Self {
        self.logs = Some(shipper);
        self
    }

    /// Raised to stop: no new message is taken; running chunks are released at their
    /// checkpoint and their tasks answered `Worker.Retryable`, so another worker goes on.
    pub fn shutdown_flag(&self) -> Arc<AtomicBool> {
        self.shutdown.clone()
    }

    fn stopping(&self) -> bool {
        self.shutdown.load(Ordering::SeqCst)
    }

    /// Receives and handles messages until the shutdown flag is raised.
    pub async fn run(&self) -> Result<(), CloudError> {
        tracing::info!(queue = %self.opts.queue_url, concurrency = self.opts.concurrency, "worker polling");
        let admissions = self
            .admitter
            .is_some()
            .then(|| tokio::spawn(self.clone().admit_loop()));
        let mut running = JoinSet::new();
        // Messages in hand: those worked on and those held waiting for a slot.
        let in_hand = self.opts.concurrency.max(1) + self.opts.hold;
        let slots = self.opts.concurrency.max(1);
        let long_poll = self
            .opts
            .wait_seconds
            .clamp(0, super::SQS_MAX_WAIT.as_secs() as i32);
        while !self.stopping() {
            while running.len() >= in_hand {
                running.join_next().await;
            }
            let (room, wait) = if running.len() < slots {
                (slots - running.len(), long_poll)
            } else {
                // Every slot is busy: look only now and then, for messages nobody took.
                tokio::select! {
                    _ = tokio::time::sleep(HOLD_POLL) => {}
                    _ = running.join_next() => continue,
                }
                (in_hand - running.len(), 0)
            };
            let received = self
                .sqs
                .receive_message()
                .queue_url(&self.opts.queue_url)
                .max_number_of_messages(room.min(10) as i32)
                .wait_time_seconds(wait)
                .visibility_timeout(self.opts.visibility_seconds)
                .send()
                .await;
            let messages = match received {
                Ok(out) => out.messages.unwrap_or_default(),
                Err(e) => {
                    tracing::warn!(error = %CloudError::aws("ReceiveMessage", e), "cannot read the queue; trying again");
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    continue;
                }
            };
            for m in messages {
                let (Some(body), Some(receipt)) = (m.body, m.receipt_handle) else {
                    continue;
                };
                let worker = self.clone();
                running.spawn(async move {
                    let handled = worker.handle_body(&body, Some(&receipt), None).await;
                    if !matches!(handled, Handled::Undelivered(_)) {
                        worker.delete(&receipt).await;
                    }
                });
            }
        }
        while running.join_next().await.is_some() {}
        if let Some(a) = admissions {
            a.abort();
        }
        tracing::info!("worker stopped");
        Ok(())
    }

    /// Admission passes every `ADMISSION_EVERY`, and a few after each job's final step.
    async fn admit_loop(self) {
        loop {
            let after_end = tokio::select! {
                () = tokio::time::sleep(ADMISSION_EVERY) => false,
                () = self.job_ended.notified() => true,
            };
            self.admit(after_end).await;
        }
    }

    /// For a worker without a polling loop (the Lambda handler, after each batch): the passes
    /// that follow a job's final step, when the batch answered one.
    pub async fn admit_after_batch(&self) {
        if self.ended_since_pass.swap(false, Ordering::SeqCst) {
            self.admit(true).await;
        }
    }

    /// One admission pass, or (`after_end`) the few that follow a job's final step.
    async fn admit(&self, after_end: bool) {
        let Some(sfn) = &self.admitter else { return };
        let delays: &[Duration] = if after_end {
            &ADMISSION_AFTER_END
        } else {
            &[Duration::ZERO]
        };
        for delay in delays {
            tokio::time::sleep(*delay).await;
            match sfn.admission_pass(None).await {
                Ok(a) => {
                    for (job_id, started) in &a.launched {
                        tracing::info!(job_id = %job_id, started = ?started, "admitted a queued job");
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "admission pass failed; the next one tries again")
                }
            }
        }
    }

    async fn delete(&self, receipt: &str) {
        if let Err(e) = self
            .sqs
            .delete_message()
            .queue_url(&self.opts.queue_url)
            .receipt_handle(receipt)
            .send()
            .await
        {
            // It comes back after its visibility timeout, is found stale and deleted then.
            tracing::warn!(error = %CloudError::aws("DeleteMessage", e), "message not deleted");
        }
    }

    /// Handles one message body. `receipt`: the SQS message to keep hidden while working;
    /// `limit`: when the work must stop (a Lambda's remaining time).
    pub async fn handle_body(
        &self,
        body: &str,
        receipt: Option<&str>,
        limit: Option<Instant>,
    ) -> Handled {
        self.handle_parsed(message::parse(body), receipt, limit)
            .await
    }

    pub async fn handle_parsed(
        &self,
        parsed: Parsed,
        receipt: Option<&str>,
        limit: Option<Instant>,
    ) -> Handled {
        let msg = match parsed {
            Parsed::Work(m) => m,
            Parsed::Stray { reason } => {
                tracing::warn!(reason, "message without a task token dropped");
                return Handled::Dropped;
            }
            Parsed::Unreadable { task_token, reason } => {
                tracing::error!(reason, "unreadable task message");
                let failure = Failure {
                    error: ERROR_BAD_MESSAGE,
                    cause: reason,
                };
                return self.answer(&task_token, Err(failure)).await;
            }
        };
        // A message that comes back after its task ended (the worker that had it died) must
        // not run anything: the state machine has already sent a fresh one.
        match self.first_heartbeat(&msg.task_token).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::info!(
                    kind = msg.task.kind(),
                    job_id = msg.task.job_id(),
                    "task already ended; message dropped"
                );
                return Handled::Stale;
            }
            Err(e) => return Handled::Undelivered(e.to_string()),
        }
        let gone = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let keepalive = tokio::spawn(self.clone().keepalive(
            msg.clone(),
            receipt.map(str::to_string),
            gone.clone(),
            stop.clone(),
        ));
        let job_id = msg.task.job_id().to_string();
        let result = match self.wait_for_slot(&stop).await {
            Some(slot) => {
                self.jobs.enter(&job_id);
                let result = self.execute(&msg.task, limit, &stop).await;
                self.jobs.leave(&job_id);
                drop(slot);
                result
            }
            // The task ended, or the worker stops, before a slot freed: nothing ran.
            None => Err(Failure::retryable(
                "worker stopping before the task started",
            )),
        };
        keepalive.abort();
        if gone.load(Ordering::SeqCst) {
            tracing::warn!(
                kind = msg.task.kind(),
                job_id,
                "the task ended while it ran (timed out or stopped); no answer sent"
            );
            return Handled::Stale;
        }
        let result = match result {
            // Stopped early (shutdown): the work is saved; let Retry hand it on.
            Ok(_) if stop.load(Ordering::SeqCst) => Err(Failure::retryable(
                "worker stopping; state saved for the next attempt",
            )),
            other => other,
        };
        self.answer(&msg.task_token, result).await
    }

    /// A free slot, once one is (the keep-alive heartbeats the task meanwhile); `None` when
    /// the task ended or the worker stops first.
    async fn wait_for_slot(&self, stop: &AtomicBool) -> Option<OwnedSemaphorePermit> {
        loop {
            tokio::select! {
                permit = self.slots.clone().acquire_owned() => return permit.ok(),
                () = tokio::time::sleep(Duration::from_millis(200)) => {
                    if stop.load(Ordering::SeqCst) || self.stopping() {
                        return None;
                    }
                }
            }
        }
    }

    /// Ok(false) when the task has ended (timed out, execution stopped, unknown token).
    async fn heartbeat(&self, token: &str) -> Result<bool, CloudError> {
        Ok(self.heartbeat_state(token).await? == TaskState::Alive)
    }

    async fn heartbeat_state(&self, token: &str) -> Result<TaskState, CloudError> {
        match self
            .sfn
            .send_task_heartbeat()
            .task_token(token)
            .send()
            .await
        {
            Ok(_) => Ok(TaskState::Alive),
            Err(SdkError::ServiceError(e)) => match e.err() {
                SendTaskHeartbeatError::TaskTimedOut(_)
                | SendTaskHeartbeatError::TaskDoesNotExist(_) => Ok(TaskState::Ended),
                SendTaskHeartbeatError::InvalidToken(_) => Ok(TaskState::Unknown),
                _ => Err(CloudError::aws(
                    "SendTaskHeartbeat",
                    SdkError::ServiceError(e),
                )),
            },
            Err(e) => Err(CloudError::aws("SendTaskHeartbeat", e)),
        }
    }

    /// The heartbeat that checks a new message's task is still waiting. A token the service
    /// does not know is asked about again for a moment: the emulator registers a task's token
    /// just after it sends the message, and a fresh task must not be taken for a stale one.
    async fn first_heartbeat(&self, token: &str) -> Result<bool, CloudError> {
        for _ in 0..10 {
            match self.heartbeat_state(token).await? {
                TaskState::Alive => return Ok(true),
                TaskState::Ended => return Ok(false),
                TaskState::Unknown => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
        Ok(false)
    }

    /// Heartbeats every third of the task's heartbeat time and keeps the message hidden;
    /// raises `gone` (and `stop`) when the task has ended, `stop` when the worker shuts down.
    async fn keepalive(
        self,
        msg: WorkMessage,
        receipt: Option<String>,
        gone: Arc<AtomicBool>,
        stop: Arc<AtomicBool>,
    ) {
        let every = Duration::from_secs(msg.task.heartbeat_seconds().max(1)).div_f64(3.0);
        let mut next = Instant::now() + every;
        loop {
            tokio::time::sleep(Duration::from_millis(200).min(every)).await;
            if self.stopping() {
                stop.store(true, Ordering::SeqCst);
            }
            if Instant::now() < next {
                continue;
            }
            next = Instant::now() + every;
            match self.heartbeat(&msg.task_token).await {
                Ok(true) => {}
                Ok(false) => {
                    gone.store(true, Ordering::SeqCst);
                    stop.store(true, Ordering::SeqCst);
                    return;
                }
                Err(e) => tracing::warn!(error = %e, "heartbeat not delivered; trying again"),
            }
            if let Some(receipt) = &receipt
                && let Err(e) = self
                    .sqs
                    .change_message_visibility()
                    .queue_url(&self.opts.queue_url)
                    .receipt_handle(receipt)
                    .visibility_timeout(self.opts.visibility_seconds)
                    .send()
                    .await
            {
                tracing::warn!(error = %CloudError::aws("ChangeMessageVisibility", e), "message visibility not extended");
            }
        }
    }

    async fn answer(&self, token: &str, result: Result<Value, Failure>) -> Handled {
        let sent = match result {
            Ok(output) => self
                .sfn
                .send_task_success()
                .task_token(token)
                .output(output.to_string())
                .send()
                .await
                .map(|_| ())
                .map_err(|e| CloudError::aws("SendTaskSuccess", e)),
            Err(f) => {
                tracing::warn!(error = f.error, cause = %f.cause, "task failed");
                // SendTaskFailure takes at most 32,768 characters of cause.
                let cause: String = f.cause.chars().take(32_000).collect();
                self.sfn
                    .send_task_failure()
                    .task_token(token)
                    .error(f.error)
                    .cause(cause)
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| CloudError::aws("SendTaskFailure", e))
            }
        };
        match sent {
            Ok(()) => Handled::Answered,
            Err(e) => {
                tracing::warn!(error = %e, "answer not delivered");
                Handled::Undelivered(e.to_string())
            }
        }
    }

    async fn execute(
        &self,
        task: &Task,
        limit: Option<Instant>,
        stop: &Arc<AtomicBool>,
    ) -> Result<Value, Failure> {
        match task {
            Task::Chunk(t) => self.chunk(t, limit, stop).await,
            Task::Continue(t) => self.continue_as_new(t).await,
            Task::Transform(t) => self.transform(t).await,
            Task::Finalize(t) => self.finalize(t).await,
        }
    }

    /// One lane loop: claim the job's next chunk and run it, or wait a while for one.
    async fn chunk(
        &self,
        t: &ChunkTask,
        limit: Option<Instant>,
        stop: &Arc<AtomicBool>,
    ) -> Result<Value, Failure> {
        if let Some(err) = t.previous_error.as_ref().filter(|e| !e.is_null()) {
            tracing::warn!(job_id = %t.job_id, lane = t.lane, iteration = t.iteration, error = %err,
                "the previous loop of this lane failed; going on");
        }
        // A chunk pauses at its checkpoint when the execution's window ends (or the worker's
        // own limit comes first), so the execution can hand over in time.
        let window_end = message::chunk_deadline(t, self.opts.execution_window);
        let window_at = Instant::now() + (window_end - Utc::now()).to_std().unwrap_or_default();
        let at = limit.map_or(window_at, |l| l.min(window_at));
        let deadline = Deadline::at(Some(at)).with_flag(stop.clone());
        let started = Instant::now();
        let mut ran = None;
        while !deadline.reached() {
            match self.engine.step_job(&t.job_id, &deadline).await? {
                Step::Ran { key, stop: _ } => {
                    ran = Some(format!("{}#{}", key.table, key.seq));
                    break;
                }
                Step::Done(_) => break,
                Step::Wait { until } => {
                    if started.elapsed() >= self.opts.claim_wait {
                        break;
                    }
                    let poll = self.engine.options().poll_interval;
                    tokio::time::sleep(wait_before_retry(until, poll)).await;
                }
            }
        }
        // The message's pulse counts go to the store before the answer: a worker may not
        // live (or be thawed) to flush them later.
        self.engine.flush_pulse().await;
        let more = self.engine.has_open_chunks(&t.job_id).await?;
        let window_over = Instant::now() >= window_at;
        let result = message::chunk_result(
            t,
            more,
            window_over,
            ran,
            Utc::now(),
            self.opts.execution_window,
        );
        Ok(json!(result))
    }

    /// Starts the next execution (`{name}-c{n}`); idempotent by name.
    async fn continue_as_new(&self, t: &ContinueTask) -> Result<Value, Failure> {
        let input = ExecutionInput {
            job_id: t.job_id.clone(),
            execution_name: t.execution_name.clone(),
            lanes: t.lanes.clone(),
            max_concurrency: t.max_concurrency,
            heartbeat_seconds: t.heartbeat_seconds,
            max_iterations: t.max_iterations,
            continuation: t.continuation,
        };
        let name = execution_name(&t.execution_name, t.continuation);
        let started = start_named(&self.sfn, &t.state_machine_arn, &name, &input)
            .await
            .map_err(Failure::retryable)?;
        tracing::info!(job_id = %t.job_id, execution = %started.name, "continued as a new execution");
        Ok(json!({"execution_arn": started.arn, "existing": started.existing}))
    }

    /// Sends the log lines this worker holds to CloudWatch Logs now.
    async fn ship_logs(&self) {
        if let Some(logs) = &self.logs {
            logs.ship_now().await;
        }
    }

    /// The canonical transform step, after every chunk has settled.
    async fn transform(&self, t: &JobTask) -> Result<Value, Failure> {
        let job = self
            .engine
            .store()
            .get_job(&t.job_id)
            .await?
            .ok_or_else(|| StoreError::JobNotFound(t.job_id.clone()))?;
        if !matches!(
            job.status,
            JobStatus::Completed | JobStatus::CompletedWithErrors
        ) {
            tracing::info!(job_id = %job.job_id, status = %job.status, "transform step skipped: the job did not complete");
            return Ok(json!({"transformed": false, "skipped": true, "status": job.status}));
        }
        // The same hand-off as a local run: markers move to the job's end in the DynamoDB
        // lifecycle store (`worker` wires it; `finalize_job` makes this happen once per job)
        // and the canonical tables fed by the job's tables are rebuilt from the raw parts in
        // the bucket. Every step is idempotent, so a retried task is safe.
        let transformed = job.status == JobStatus::Completed;
        let handoff = self
            .engine
            .finish_job(&job.job_id)
            .await
            .map_err(Failure::retryable)?;
        // Another worker holds the hand-off (a retried step whose first try still runs, or
        // died): the state machine's Retry asks again, after its claim lapses at the latest.
        if let Handoff::Held { owner, until } = handoff {
            return Err(Failure::retryable(format!(
                "the hand-off of {} is held by {owner} until {}",
                job.job_id,
                until.to_rfc3339()
            )));
        }
        tracing::info!(job_id = %job.job_id, records = job.records, transformed, "transform step done");
        // The final step may run on another worker: ship this step's lines before answering,
        // so the job's logs are whole once its execution has ended.
        self.ship_logs().await;
        Ok(json!({"transformed": transformed, "skipped": false, "status": job.status}))
    }

    /// Settles the job and records its final status.
    async fn finalize(&self, t: &JobTask) -> Result<Value, Failure> {
        let job = self
            .engine
            .store()
            .get_job(&t.job_id)
            .await?
            .ok_or_else(|| StoreError::JobNotFound(t.job_id.clone()))?;
        let open = self.engine.has_open_chunks(&t.job_id).await?;
        if open {
            tracing::warn!(job_id = %job.job_id, status = %job.status, "execution ends with chunks still open; resume continues from the checkpoints");
        } else {
            tracing::info!(job_id = %job.job_id, status = %job.status, records = job.records,
                completed = job.completed_chunks, failed = job.failed_chunks, "job finished");
            if let Err(e) = self.engine.report_job_ended(&job.job_id, Utc::now()).await {
                tracing::warn!(job_id = %job.job_id, error = %e, "end-of-job metrics and alerts failed");
            }
            // As `run` does after its passes: old completed jobs leave DynamoDB.
            self.engine.cleanup_expired(Utc::now()).await;
        }
        self.ship_logs().await;
        self.ended_since_pass.store(true, Ordering::SeqCst);
        self.job_ended.notify_one();
        Ok(json!({
            "status": job.status,
            "records": job.records,
            "total_chunks": job.total_chunks,
            "completed_chunks": job.completed_chunks,
            "failed_chunks": job.failed_chunks,
            "open": open,
        }))
    }
}
