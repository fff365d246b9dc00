//! The run-job function: `eks:runJob` (the created Job: request/response, or on the
//! task token with `WaitForCompletion: false`) and `eks:runJob.sync` (callback pattern:
//! the finished Job and its logs, on the task token), handing Jobs that outlive the
//! inline window to the poller.

use std::time::{Duration, SystemTime};

use serde_json::{json, Value};
use tracing::Instrument;

use crate::contract::curve::PollCurve;
use crate::contract::error::{names, TaskError};
use crate::contract::payload;
use crate::contract::payload::{callback_token, RunJobInput};
use crate::contract::poll_state::PollState;
use crate::contract::stuck_policy::StuckPolicy;
use crate::ports::handoff::HandOffError;
use crate::ports::kube::KubeApi;
use crate::task::answer::{
    heartbeat, send_answer, send_job_answer, AnswerTurn, EndFacts, JobPlace,
};
use crate::task::deps::Deps;
use crate::task::finish::{check_stuck, finish, stand_down, stuck_end};
use crate::task::job::{JobId, Phase, Waited};
use crate::task::telemetry::Metric;
use crate::task::{job, telemetry};

/// Handles one run-job payload. Without `TaskToken` the result is the created Job (an
/// error is a Lambda error named as in docs/errors.md). With `TaskToken` the answer goes
/// back on the token and the Lambda result only reports what was done.
///
/// # Errors
/// Request/response: the task error. Callback: only when Step Functions cannot be
/// told (the invocation then fails: Step Functions fails the task with the error, and a
/// state's `Retry` may name it).
pub async fn handle(
    payload: Value,
    deps: &Deps,
    deadline: Option<SystemTime>,
) -> Result<Value, TaskError> {
    // Where the payload says, before it is checked: the span and the metrics of even a
    // bad payload name what it names.
    let (_, cluster, namespace) = telemetry::payload_context(&payload);
    let at = JobPlace {
        cluster: cluster.to_owned(),
        namespace: namespace.to_owned(),
        polls: 0,
    };
    let span = telemetry::payload_span(&payload);
    async {
        match callback_token(&payload) {
            None => {
                let input = payload::parse_run_job(&payload)?;
                let kube = deps.connector.connect(&input.cluster).await?;
                let created =
                    job::create(kube.as_ref(), &input.namespace, &input.job, None, None).await?;
                started(deps, &at, &created);
                Ok(created)
            }
            Some(token) => {
                let (answer, facts) = match run_with_callback(&payload, deps, deadline, &at).await {
                    Ok(Inline::HandedOff(state)) => {
                        return Ok(
                            json!({ "handedOff": { "job": state.job_name, "namespace": state.namespace, "nextPollSeconds": state.next_delay_seconds } }),
                        )
                    }
                    Ok(Inline::AnsweredElsewhere(by)) => {
                        return Ok(json!({ "answered": "by another delivery", "delivery": by }))
                    }
                    Ok(Inline::Finished(answer, facts, turn)) => {
                        return turn.send(deps, &token, answer, facts, &at).await;
                    }
                    Ok(Inline::TaskGone(report)) => return Ok(*report),
                    Ok(Inline::Started(created)) => {
                        return send_answer(deps, &token, Ok(*created)).await;
                    }
                    Err(e) => (Err(e), EndFacts::default()),
                };
                send_job_answer(deps, &token, answer, facts, &at).await
            }
        }
    }
    .instrument(span)
    .await
}

/// How often the pods are read while a stuck policy is active.
const STUCK_CHECK_EVERY: Duration = Duration::from_secs(10);

/// What the inline phase of a callback task came to.
enum Inline {
    Finished(Result<Value, TaskError>, EndFacts, Box<AnswerTurn>),
    /// `WaitForCompletion: false`: the created Job is the answer (`eks:runJob`).
    Started(Box<Value>),
    HandedOff(Box<PollState>),
    AnsweredElsewhere(String),
    /// The task was gone while its Job ran: the report of [`stand_down`].
    TaskGone(Box<Value>),
}

async fn run_with_callback(
    payload: &Value,
    deps: &Deps,
    deadline: Option<SystemTime>,
    at: &JobPlace,
) -> Result<Inline, TaskError> {
    let input = payload::parse_run_job(payload)?;
    let token = input.task_token.clone().unwrap_or_default();
    let curve = match &input.poll_curve_seconds {
        None => deps.settings.poll_curve.clone(),
        Some(delays) => PollCurve::new(delays.clone(), deps.settings.poll_min_seconds)
            .map_err(|m| TaskError::invalid_input("PollCurveSeconds", m))?,
    };
    let kube = deps.connector.connect(&input.cluster).await?;
    // A Job the worker follows is not deleted by its TTL before the worker has read it.
    let ttl_floor = input.wait_for_completion.then(|| {
        let event_age = deps
            .settings
            .schedule
            .as_ref()
            .map_or(0, |s| s.max_event_age_seconds);
        let longest = curve.delays().iter().copied().max().unwrap_or_default();
        job::ttl_floor(
            longest,
            u64::from(deps.settings.max_failed_polls),
            u64::try_from(event_age).unwrap_or_default(),
        )
    });
    let created = job::create(
        kube.as_ref(),
        &input.namespace,
        &input.job,
        Some(&token),
        ttl_floor,
    )
    .await?;
    started(deps, at, &created);
    if !input.wait_for_completion {
        return Ok(Inline::Started(Box::new(created)));
    }
    let id = JobId::of(&created, &input.namespace);
    let policy = input.stuck_policy.or(deps.settings.stuck_policy);
    let window = inline_window(deps, &input, deadline);
    let waited = match watch_inline(kube.as_ref(), &id, window, policy, &token, deps).await? {
        Watched::Waited(waited) => waited,
        Watched::TaskGone(code) => {
            let report = stand_down(kube.as_ref(), &id, Phase::Running, &code, deps).await?;
            return Ok(Inline::TaskGone(Box::new(report)));
        }
        Watched::Stuck(stuck, job) => {
            return Ok(
                match AnswerTurn::take(kube.clone(), &id, deps, deadline).await {
                    Err(by) => Inline::AnsweredElsewhere(by),
                    Ok(turn) => Inline::Finished(Err(stuck), stuck_end(&job, deps), Box::new(turn)),
                },
            );
        }
    };
    match waited {
        Waited::Finished(done) => match AnswerTurn::take(kube.clone(), &id, deps, deadline).await {
            Err(by) => Ok(Inline::AnsweredElsewhere(by)),
            Ok(turn) => {
                let (answer, facts) = finish(kube, &id, &done, &input.log_options, deps).await;
                Ok(Inline::Finished(answer, facts, Box::new(turn)))
            }
        },
        Waited::StillRunning | Waited::Unreadable => {
            let state = PollState {
                cluster: (&input.cluster).into(),
                namespace: id.namespace,
                job_name: id.name,
                job_uid: id.uid,
                task_token: token,
                log_options: (&input.log_options).into(),
                attempt: 0,
                next_delay_seconds: curve.delay(0),
                curve,
                stuck_policy: policy,
                failures: Vec::new(),
                failed_polls: 0,
                execution: input.execution.clone(),
            };
            state.check_room()?;
            match deps.hand_off(&state.next_poll()?).await {
                Ok(()) => Ok(Inline::HandedOff(Box::new(state))),
                Err(HandOffError::NoPoller) => Err(TaskError::new(
                    names::INTERNAL,
                    json!({ "message": format!("the Job {}/{} was still running when this invocation ran out of time, and no poller is configured to take it over", state.namespace, state.job_name), "job": state.job_name }),
                )),
                Err(e) => Err(e.into()),
            }
        }
    }
}

/// What the inline watch came to.
enum Watched {
    /// The Job finished, or the window closed.
    Waited(Waited),
    /// A heartbeat was refused: the task is gone (its code: `TaskTimedOut`, …).
    TaskGone(String),
    /// The Job (as read) is held past the policy: `EksTaskWorker.JobStuck`.
    Stuck(TaskError, Box<Value>),
}

/// Watches the Job for `window` in slices of `HEARTBEAT_SECONDS` (ten seconds at most
/// while a stuck policy is active). After each slice a heartbeat tells Step Functions
/// the task lives (a state's `HeartbeatSeconds` is met while the Job runs inline), and
/// the Job and its pods are read: what holds them is logged, and a Job held past the
/// policy ends the watch as [`Watched::Stuck`]. A refused heartbeat ends it too.
async fn watch_inline(
    kube: &dyn KubeApi,
    id: &JobId,
    window: Duration,
    policy: StuckPolicy,
    task_token: &str,
    deps: &Deps,
) -> Result<Watched, TaskError> {
    let slice = if policy.is_active() {
        deps.settings.heartbeat.min(STUCK_CHECK_EVERY)
    } else {
        deps.settings.heartbeat
    };
    let until = tokio::time::Instant::now() + window;
    loop {
        let left = until.saturating_duration_since(tokio::time::Instant::now());
        let waited = job::wait(kube, id, left.min(slice)).await?;
        if !matches!(waited, Waited::StillRunning) || left <= slice {
            return Ok(Watched::Waited(waited));
        }
        if let Err(code) = heartbeat(deps, task_token).await {
            return Ok(Watched::TaskGone(code));
        }
        // What holds the Job is logged after every slice; it fails the task only by
        // the policy. A Job that finished since the watch saw it is the next slice's.
        let checked = match id.read(kube).await {
            Ok(job) if job::phase(&job) == Phase::Running => {
                match check_stuck(kube, id, &job, policy, deps).await {
                    Err(e) if e.name == names::JOB_STUCK => {
                        return Ok(Watched::Stuck(e, Box::new(job)))
                    }
                    checked => checked,
                }
            }
            Ok(_) => Ok(()),
            Err(e) => Err(e),
        };
        if let Err(e) = checked {
            tracing::warn!(error = %e, "could not read the job and its pods");
        }
    }
}

/// How long this invocation watches its Job: the setting (or the payload's
/// `InlineWaitSeconds`), never past the Lambda deadline minus the margin.
fn inline_window(deps: &Deps, input: &RunJobInput, deadline: Option<SystemTime>) -> Duration {
    let wanted = input
        .inline_wait_seconds
        .map_or(deps.settings.inline_wait, Duration::from_secs);
    wanted.min(deps.time_left(deadline))
}

fn started(deps: &Deps, at: &JobPlace, job: &Value) {
    let id = JobId::of(job, &at.namespace);
    telemetry::record_job(&id.name, &id.uid);
    telemetry::emit(
        deps.settings.metrics_namespace.as_deref(),
        &at.cluster,
        &at.namespace,
        &[(Metric::JobsStarted, 1.0)],
    );
}
