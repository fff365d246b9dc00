//! The poller: invoked by a one-time schedule for a Job that outlived its run-job
//! invocation (a cluster operation's poll state goes to `cluster_ops::poll`). Each poll reads the Job with a fresh enough token, sends a heartbeat,
//! and then answers the task (the Job finished or vanished), stops (the execution is
//! gone: the Job is deleted), or schedules the next poll along the curve.
//!
//! Faults never lose a task: transient failures (the cluster unreachable, 5xx, 429,
//! STS) are retried within the poll, the heartbeat still sent, then the next poll is
//! scheduled with the failure counted; after `MAX_FAILED_POLLS` consecutive failures
//! the task fails with `EksTaskWorker.PollFailed`, counting them and naming the last
//! three. A poll delivered twice answers once (Step
//! Functions refuses a second answer, and a finished Job is never deleted for it) and
//! leaves one next schedule (its name is deterministic).

use std::sync::Arc;

use serde_json::{json, Value};
use tracing::Instrument;

use crate::contract::error::{names, TaskError};
use crate::contract::poll_state::PollState;
use crate::ports::kube::KubeApi;
use crate::task::answer::{heartbeat, send_answer, AnswerTurn, JobPlace};
use crate::task::deps::Deps;
use crate::task::finish::{finish, stand_down};
use crate::task::job::{self, JobId, Phase};
use crate::task::telemetry;

/// Handles one poll.
///
/// # Errors
/// `EksTaskWorker.InvalidInput` for an input that is not a poll state; otherwise only
/// when neither an answer nor the next schedule could be arranged (the invocation then
/// fails so that Lambda and Scheduler deliver it again).
pub async fn handle(payload: Value, deps: &Deps) -> Result<Value, TaskError> {
    if payload.get("Operation").is_some() {
        let state: crate::contract::poll_state::ClusterPoll = serde_json::from_value(payload)
            .map_err(|e| {
                TaskError::invalid_input("$", format!("is not a cluster poll state: {e}"))
            })?;
        return crate::task::cluster_ops::poll(state, deps).await;
    }
    let state: PollState = serde_json::from_value(payload)
        .map_err(|e| TaskError::invalid_input("$", format!("is not a poll state: {e}")))?;
    state.check_bounds()?;
    let span = telemetry::task_span(
        state.execution.as_deref(),
        &state.cluster.cluster_name,
        &state.namespace,
    );
    async {
        telemetry::record_job(&state.job_name, &state.job_uid);
        telemetry::record_attempt(state.attempt + 1);
        poll(&state, deps).await
    }
    .instrument(span)
    .await
}

pub use crate::task::retry::is_transient;

/// The Job a poll state names.
fn job_id(state: &PollState) -> JobId {
    JobId::new(&state.namespace, &state.job_name, &state.job_uid)
}

async fn read_job(deps: &Deps, state: &PollState) -> Result<(Arc<dyn KubeApi>, Value), TaskError> {
    let cluster = state.cluster.to_ref()?;
    let id = job_id(state);
    crate::task::retry::transient("reading the job", || async {
        let kube = deps.connector.connect(&cluster).await?;
        let job = id.read_for_task(kube.as_ref(), &state.task_token).await?;
        Ok((kube, job))
    })
    .await
}

async fn poll(state: &PollState, deps: &Deps) -> Result<Value, TaskError> {
    let token = state.task_token.as_str();
    let at = JobPlace {
        cluster: state.cluster.cluster_name.clone(),
        namespace: state.namespace.clone(),
        polls: state.attempt + 1,
    };
    let (kube, job) = match read_job(deps, state).await {
        Ok(found) => found,
        // A forged or corrupted state: nothing is touched, nobody is answered.
        Err(e)
            if e.name == names::NOT_OWNED
                || e.name == names::UNTRUSTED_ENDPOINT
                || e.name == names::UNTRUSTED_CA =>
        {
            tracing::warn!(error = %e, "refused a poll state");
            return Err(e);
        }
        Err(e) if is_transient(&e) => return failed_poll(state, deps, e).await,
        // The Job vanished, or the cluster refuses for good (403 after an RBAC change).
        Err(e) => return send_answer(deps, token, Err(e)).await,
    };
    let phase = job::phase(&job);
    if let Err(code) = heartbeat(deps, token).await {
        return stand_down(kube.as_ref(), &job_id(state), phase, &code, deps).await;
    }
    if phase == Phase::Running {
        let check = crate::task::finish::check_stuck(
            kube.as_ref(),
            &job_id(state),
            &job,
            state.stuck_policy,
            deps,
        )
        .await;
        match check {
            Err(e) if e.name == names::JOB_STUCK => {
                let turn = match AnswerTurn::take(kube.clone(), &job_id(state), deps, None).await {
                    Ok(turn) => turn,
                    Err(by) => {
                        return Ok(json!({ "answered": "by another delivery", "delivery": by }))
                    }
                };
                let facts = crate::task::finish::stuck_end(&job, deps);
                return turn.send(deps, token, Err(e), facts, &at).await;
            }
            Err(e) => tracing::warn!(error = %e, "could not read the job's pods"),
            Ok(()) => {}
        }
    }
    if phase != Phase::Running {
        // One answer, also when this poll was delivered twice at once.
        let turn = match AnswerTurn::take(kube.clone(), &job_id(state), deps, None).await {
            Ok(turn) => turn,
            Err(by) => return Ok(json!({ "answered": "by another delivery", "delivery": by })),
        };
        let options = (&state.log_options).into();
        let (answer, facts) = finish(kube, &job_id(state), &job, &options, deps).await;
        return turn.send(deps, token, answer, facts, &at).await;
    }
    schedule(deps, state.next()).await
}

/// A poll that could not read the Job: the task still gets its heartbeat (an outage
/// longer than the state's `HeartbeatSeconds` must not end a healthy Job's task; a
/// refused heartbeat is left to the next poll, which deletes the Job once it can reach
/// it), then the next poll is scheduled with the failure counted, or, after
/// `MAX_FAILED_POLLS` in a row, the task fails with `EksTaskWorker.PollFailed`.
async fn failed_poll(state: &PollState, deps: &Deps, e: TaskError) -> Result<Value, TaskError> {
    if let Err(code) = heartbeat(deps, &state.task_token).await {
        tracing::info!(
            code,
            "the task is gone; the next poll deletes the Job once it can read it"
        );
    }
    let next = state.failed(&format!("{}: {}", e.name, e.cause));
    if next.consecutive_failures() >= deps.settings.max_failed_polls {
        let cause = json!({
            "message": format!("{} consecutive polls could not read the Job {}/{}", next.consecutive_failures(), state.namespace, state.job_name),
            "failedPolls": next.consecutive_failures(),
            "failures": next.failures,
        });
        return send_answer(
            deps,
            &state.task_token,
            Err(TaskError::new(names::POLL_FAILED, cause)),
        )
        .await;
    }
    tracing::warn!(error = %e.name, failed = next.consecutive_failures(), "poll failed; the next one is scheduled");
    schedule(deps, next).await
}

async fn schedule(deps: &Deps, next: PollState) -> Result<Value, TaskError> {
    deps.hand_off(&next.next_poll()?).await?;
    Ok(
        json!({ "nextPoll": { "attempt": next.attempt, "inSeconds": next.next_delay_seconds, "failures": next.consecutive_failures() } }),
    )
}
