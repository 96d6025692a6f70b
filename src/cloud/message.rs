//! What the state machine sends workers and what they answer: message parsing, the error
//! names its `Retry`/`Catch` rules know, and the pure decisions a worker makes after a chunk
//! (are there more chunks? is it time to continue as a new execution?).
//!
//! History budget: one loop of a lane (RunChunk Task → NextIteration Pass → MoreWork Choice)
//! writes 10 events: TaskStateEntered, TaskScheduled, TaskStarted, TaskSubmitted,
//! TaskSucceeded, TaskStateExited, and entered/exited for the Pass and the Choice. A failed
//! attempt that is retried adds about 4 (Scheduled, Started, Submitted, Failed/TimedOut), and a
//! caught failure adds the RecordFailure Pass and TooManyFailures Choice (4). Counting 30
//! events for the worst loop (three retries, then caught) keeps an execution of
//! `HISTORY_BUDGET / 30` loops at most 20,000 events, under the 25,000 limit with room for the
//! Map's own events (2 per lane and ~20 around it).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A retryable worker failure (store or S3 unavailable, the worker shutting down): the
/// state machine's `Retry` sends the task again.
pub const ERROR_RETRYABLE: &str = "Worker.Retryable";
/// The job does not exist in the store: no retry helps; `Catch` records it.
pub const ERROR_JOB_NOT_FOUND: &str = "Worker.JobNotFound";
/// The message could not be read: no retry helps; `Catch` records it.
pub const ERROR_BAD_MESSAGE: &str = "Worker.BadMessage";
/// Anything else that will fail the same way again.
pub const ERROR_FATAL: &str = "Worker.Fatal";

/// Events written per successful lane loop, and the worst loop counted for the budget.
pub const EVENTS_PER_LOOP: u32 = 10;
pub const WORST_EVENTS_PER_LOOP: u32 = 30;
/// Events one execution may spend on lane loops before it continues as a new execution.
pub const HISTORY_BUDGET: u32 = 20_000;
/// An execution hands over to a new one once it is this old (the window is 24 hours).
pub const EXECUTION_WINDOW: std::time::Duration = std::time::Duration::from_secs(23 * 3600);

/// Loops each lane may run in one execution when `lanes` lanes share the budget.
pub fn max_iterations_per_lane(lanes: u32) -> u32 {
    (HISTORY_BUDGET / WORST_EVENTS_PER_LOOP / lanes.max(1)).max(1)
}

/// "Claim and run the next chunk of this job" (one loop of one lane).
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct ChunkTask {
    pub job_id: String,
    pub lane: u32,
    pub iteration: u32,
    pub continuation: u32,
    pub max_iterations: u32,
    pub heartbeat_seconds: u64,
    pub execution_start: DateTime<Utc>,
    /// The failure the previous loop of this lane caught (`{"Error":…,"Cause":…}`).
    #[serde(default)]
    pub previous_error: Option<Value>,
}

/// "Start the next execution": the input it gets is this execution's, one continuation on.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct ContinueTask {
    pub job_id: String,
    pub state_machine_arn: String,
    pub execution_name: String,
    pub continuation: u32,
    pub lanes: Vec<u32>,
    pub max_concurrency: u32,
    pub heartbeat_seconds: u64,
    pub max_iterations: u32,
}

/// "Transform the job's data" or "settle and record the job's final status".
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct JobTask {
    pub job_id: String,
    pub heartbeat_seconds: u64,
}

/// One task of the state machine, by the message's `type`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Task {
    Chunk(ChunkTask),
    Continue(ContinueTask),
    Transform(JobTask),
    Finalize(JobTask),
}

impl Task {
    pub fn job_id(&self) -> &str {
        match self {
            Task::Chunk(t) => &t.job_id,
            Task::Continue(t) => &t.job_id,
            Task::Transform(t) | Task::Finalize(t) => &t.job_id,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Task::Chunk(_) => "chunk",
            Task::Continue(_) => "continue",
            Task::Transform(_) => "transform",
            Task::Finalize(_) => "finalize",
        }
    }

    /// How often the state machine expects a heartbeat for this task.
    pub fn heartbeat_seconds(&self) -> u64 {
        match self {
            Task::Chunk(t) => t.heartbeat_seconds,
            Task::Continue(t) => t.heartbeat_seconds,
            Task::Transform(t) | Task::Finalize(t) => t.heartbeat_seconds,
        }
    }
}

/// A message read from the queue.
#[derive(Clone, Debug, PartialEq)]
pub struct WorkMessage {
    pub task_token: String,
    pub task: Task,
}

/// What to do with a message body.
#[derive(Clone, Debug, PartialEq)]
pub enum Parsed {
    Work(WorkMessage),
    /// There is a task token but the rest cannot be read: answer with a failure.
    Unreadable {
        task_token: String,
        reason: String,
    },
    /// No task token: nobody waits for an answer; drop the message.
    Stray {
        reason: String,
    },
}

pub fn parse(body: &str) -> Parsed {
    let value: Value = match serde_json::from_str(body) {
        Ok(v) => v,
        Err(e) => {
            return Parsed::Stray {
                reason: format!("not JSON: {e}"),
            };
        }
    };
    let Some(token) = value
        .get("task_token")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
    else {
        return Parsed::Stray {
            reason: "no task_token".into(),
        };
    };
    match serde_json::from_value::<Task>(value.clone()) {
        Ok(task) => Parsed::Work(WorkMessage {
            task_token: token.to_string(),
            task,
        }),
        Err(e) => Parsed::Unreadable {
            task_token: token.to_string(),
            reason: format!("unreadable task: {e}"),
        },
    }
}

/// The answer to a chunk task: the lane's Choice loops while `more`, and the execution hands
/// over to a new one when a lane says `continue_as_new`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ChunkResult {
    pub more: bool,
    pub continue_as_new: bool,
    /// `table#seq` of the chunk this loop ran, if any.
    pub chunk: Option<String>,
}

/// Decides the answer once a loop's work is over. `more`: the job still has open chunks;
/// `paused_at_deadline`: the chunk was released because the execution's window ended.
pub fn chunk_result(
    task: &ChunkTask,
    more: bool,
    paused_at_deadline: bool,
    chunk: Option<String>,
    now: DateTime<Utc>,
    window: std::time::Duration,
) -> ChunkResult {
    let age = (now - task.execution_start).to_std().unwrap_or_default();
    let out_of_loops = task.iteration.saturating_add(1) >= task.max_iterations;
    ChunkResult {
        more,
        continue_as_new: more && (out_of_loops || age >= window || paused_at_deadline),
        chunk,
    }
}

/// When a chunk must pause so its execution can hand over inside the window.
pub fn chunk_deadline(task: &ChunkTask, window: std::time::Duration) -> DateTime<Utc> {
    task.execution_start + chrono::Duration::from_std(window).unwrap_or(chrono::Duration::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn chunk_body(extra: &str) -> String {
        format!(
            r#"{{"type":"chunk","job_id":"j1","lane":0,"iteration":4,"continuation":0,"max_iterations":5,
            "heartbeat_seconds":60,"execution_start":"2026-11-29T12:51:57.921506+00:00",
            "previous_error":null{extra}}}"#
        )
    }

    #[test]
    fn messages_parse_by_type_and_keep_their_token() {
        let Parsed::Work(m) = parse(&chunk_body(r#","task_token":"tok""#)) else {
            panic!("not work")
        };
        assert_eq!(m.task_token, "tok");
        assert_eq!(m.task.kind(), "chunk");
        assert_eq!(m.task.job_id(), "j1");
        let Task::Chunk(c) = &m.task else { panic!() };
        assert_eq!(c.iteration, 4);
        assert_eq!(
            c.execution_start.to_rfc3339(),
            "2026-11-29T12:51:57.921506+00:00"
        );
        // AWS writes the start time with a Z.
        let aws = chunk_body(r#","task_token":"t""#).replace("+00:00", "Z");
        assert!(matches!(parse(&aws), Parsed::Work(_)));

        let fin = parse(
            r#"{"type":"finalize","job_id":"j1","heartbeat_seconds":5,"gave_up":false,"task_token":"t2"}"#,
        );
        assert!(matches!(
            fin,
            Parsed::Work(WorkMessage {
                task: Task::Finalize(_),
                ..
            })
        ));
    }

    #[test]
    fn unreadable_messages_are_answered_only_when_someone_waits() {
        assert!(matches!(parse("garbage"), Parsed::Stray { .. }));
        assert!(matches!(parse(&chunk_body("")), Parsed::Stray { .. }));
        let p = parse(r#"{"type":"explode","task_token":"t"}"#);
        let Parsed::Unreadable { task_token, reason } = p else {
            panic!("{p:?}")
        };
        assert_eq!(task_token, "t");
        assert!(reason.contains("explode"), "{reason}");
        assert!(matches!(
            parse(r#"{"type":"chunk","job_id":"j","task_token":"t"}"#),
            Parsed::Unreadable { .. }
        ));
    }

    #[test]
    fn continue_as_new_only_with_work_left_and_near_a_limit() {
        let Parsed::Work(WorkMessage {
            task: Task::Chunk(mut t),
            ..
        }) = parse(&chunk_body(r#","task_token":"t""#))
        else {
            panic!()
        };
        let start = t.execution_start;
        let window = Duration::from_secs(23 * 3600);
        // Iteration 4 of 5 is the last loop this execution may run.
        let r = chunk_result(&t, true, false, Some("tickets#0".into()), start, window);
        assert!(r.more && r.continue_as_new);
        let r = chunk_result(&t, false, false, None, start, window);
        assert!(!r.more && !r.continue_as_new, "a finished job just ends");
        t.iteration = 1;
        assert!(!chunk_result(&t, true, false, None, start, window).continue_as_new);
        let late = start + chrono::Duration::hours(23);
        assert!(chunk_result(&t, true, false, None, late, window).continue_as_new);
        assert!(chunk_result(&t, true, true, None, start, window).continue_as_new);
        assert_eq!(chunk_deadline(&t, window), late);
    }

    #[test]
    fn the_loop_budget_keeps_history_under_the_limit() {
        for lanes in [1, 2, 3, 8, 50] {
            let per_lane = max_iterations_per_lane(lanes);
            let worst = per_lane * lanes * WORST_EVENTS_PER_LOOP + lanes * 2 + 20;
            assert!(worst <= 25_000 - 4_000, "{lanes} lanes: {worst} events");
            assert!(per_lane >= 1);
        }
        assert_eq!(max_iterations_per_lane(1), 666);
        assert_eq!(max_iterations_per_lane(0), 666);
    }
}
