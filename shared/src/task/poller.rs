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
//! leaves one next schedule (its name is deterministic); a state behind its Job's chain
//! of polls, a replay, is refused ([`crate::task::poll_chain`]).

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

/// Handles one poll: first checks that the worker wrote the state (its seal), then
/// polls.
///
/// A state the worker did not write (no seal, a seal that does not verify, a key that
/// is not the deployment's) is refused before anything is read, sent or deleted: the
/// invocation answers `{"refused": "EksTaskWorker.UnverifiedPollState", "reason"}` and
/// logs it, and succeeds, so that nothing delivers it again. A genuine state of an
/// attempt behind its Job's chain of polls (a replay) is refused the same way, as
/// `EksTaskWorker.ReplayedPollState`, once the Job is read.
///
/// # Errors
/// `EksTaskWorker.PollStateKeyError` when the seal could not be checked (the key
/// service busy or the key unusable: delivered again); `EksTaskWorker.InvalidInput`
/// for a sealed input that is not a poll state; otherwise only when neither an answer
/// nor the next schedule could be arranged (the invocation then fails so that Lambda
/// and Scheduler deliver it again).
pub async fn handle(delivered: Value, deps: &Deps) -> Result<Value, TaskError> {
    let payload = match verified(&delivered, deps).await? {
        Ok(state) => state,
        Err(reason) => {
            tracing::warn!(refused = names::UNVERIFIED_POLL_STATE, %reason, "refused a poll state the worker did not write");
            return Ok(json!({ "refused": names::UNVERIFIED_POLL_STATE, "reason": reason }));
        }
    };
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

/// The delivered state, its token in the clear and its seal gone, when its seal is the
/// worker's; else why not ([`crate::task::sealed_state::open`]).
async fn verified(delivered: &Value, deps: &Deps) -> Result<Result<Value, String>, TaskError> {
    // Not the state's fault (no key, the key refused, KMS busy): the invocation fails,
    // so that it is delivered again and, failing still, dead-lettered (redriven once the
    // key can be used).
    crate::task::sealed_state::open(deps.seal.as_ref(), delivered)
        .await
        .map_err(|e| TaskError::message(names::POLL_STATE_KEY, e.to_string()))
}

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
    if let Some(chain) = crate::task::poll_chain::ahead_of(&job, state.attempt) {
        let reason = format!(
            "attempt {} is behind its job's chain of polls, at attempt {chain}",
            state.attempt
        );
        tracing::warn!(refused = names::REPLAYED_POLL_STATE, %reason, "refused a replayed poll state");
        return Ok(json!({ "refused": names::REPLAYED_POLL_STATE, "reason": reason }));
    }
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
    crate::task::poll_chain::record(kube.as_ref(), &job_id(state), &job, state.attempt).await;
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::{json, Value};

    use crate::contract::error::names;
    use crate::contract::poll_state::NextPoll;
    use crate::task::deps::Deps;
    use crate::testing::{LocalSeal, NoCluster, RecordingCallback, RecordingHandOff};

    /// A forced delete's poll state, as the worker hands it off.
    fn state() -> Value {
        json!({ "Operation": "deleteCluster", "ClusterName": "c", "ForceDeleteCompute": true, "TaskToken": "t", "Attempt": 1, "NextDelaySeconds": 60, "Execution": "arn:aws:states:us-east-1:1:execution:m:e" })
    }

    /// `state` handed off through `deps` (sealed), as Scheduler delivers it.
    async fn delivered(deps: &Deps, state: &Value) -> Value {
        let handoff = Arc::new(RecordingHandOff::answering(vec![Ok(())]));
        let mut deps = deps.clone();
        deps.handoff = handoff.clone();
        let poll = NextPoll {
            key: "k".into(),
            attempt: 1,
            delay_seconds: 60,
            input: state.to_string(),
        };
        assert_eq!(deps.hand_off(&poll).await, Ok(()));
        let input = handoff.polls().pop().map(|p| p.input).unwrap_or_default();
        serde_json::from_str(&input).unwrap_or_else(|e| panic!("{e}: {input}"))
    }

    /// Only a state the worker sealed is acted on (its heartbeat sent); a state without
    /// a seal, with one field changed, sealed with another secret or naming another key
    /// is refused before anything is sent, by name, and the invocation succeeds (nothing
    /// delivers it again).
    #[tokio::test]
    async fn only_a_state_the_worker_sealed_is_polled() {
        let callback = Arc::new(RecordingCallback::default());
        let deps = Deps::test(Arc::new(NoCluster::default()), callback.clone());
        let genuine = delivered(&deps, &state()).await;
        assert!(genuine["Seal"]["Mac"].is_string(), "{genuine}");

        let mut changed = genuine.clone();
        changed["ClusterName"] = json!("victim");
        let mut unsealed = genuine.clone();
        if let Some(m) = unsealed.as_object_mut() {
            m.shift_remove("Seal");
        }
        let mut other_secret = deps.clone();
        other_secret.seal = Arc::new(LocalSeal::new("test-key", "the forger's secret"));
        let forged_mac = delivered(&other_secret, &state()).await;
        let mut other_key = genuine.clone();
        other_key["Seal"]["KeyId"] = json!("arn:aws:kms:us-east-1:999999999999:key/theirs");
        for (what, forged) in [
            ("one field changed", changed),
            ("no seal", unsealed),
            ("another secret", forged_mac),
            ("another key", other_key),
            ("not an object", json!("x")),
        ] {
            let out = super::handle(forged, &deps)
                .await
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_eq!(
                out["refused"],
                names::UNVERIFIED_POLL_STATE,
                "{what}: {out}"
            );
            assert_eq!(callback.heartbeats(), 0, "{what}: nothing sent");
        }
        // The genuine one is polled: its heartbeat is sent.
        let _ = super::handle(genuine, &deps).await;
        assert_eq!(callback.heartbeats(), 1);
    }

    /// A poller without a key cannot tell: the invocation fails (delivered again, then
    /// dead-lettered), nothing sent.
    #[tokio::test]
    async fn without_a_key_the_poll_fails_and_is_kept() {
        let callback = Arc::new(RecordingCallback::default());
        let mut deps = Deps::test(Arc::new(NoCluster::default()), callback.clone());
        let genuine = delivered(&deps, &state()).await;
        deps.seal = Arc::new(crate::testing::NoSeal);
        let e = super::handle(genuine, &deps).await.err().map(|e| e.name);
        assert_eq!(e.as_deref(), Some(names::POLL_STATE_KEY));
        assert_eq!(callback.heartbeats(), 0);
    }
}
