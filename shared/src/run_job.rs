//! The run-job function: `eks:runJob` (request/response: the created Job) and
//! `eks:runJob.sync` (callback pattern: the finished Job and its logs, on the task
//! token), handing Jobs that outlive the inline window to the poller.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde_json::{json, Value};

use tracing::Instrument;

use crate::archive;
use crate::budget::serialized_len;
use crate::callback::{with_retries, CallbackError};
use crate::config::Cleanup;
use crate::curve::PollCurve;
use crate::deps::Deps;
use crate::diagnosis::{self, StuckPolicy};
use crate::error::{names, TaskError};
use crate::handoff::PollState;
use crate::input::{self, LogOptions, RunJobInput};
use crate::job::{self, Phase, Waited};
use crate::kube_api::KubeApi;
use crate::logs::{self, PlacedLog};
use crate::telemetry::{self, Metric};

/// Bytes of log tail per failed container in a JobFailed cause.
const FAILURE_LOG_BYTES: usize = 4096;
/// Warning events named in a diagnosis or a failure cause.
const WARNING_EVENTS: usize = 10;

/// Handles one run-job payload. Without `TaskToken` the result is the created Job (an
/// error is a Lambda error named as in the README). With `TaskToken` the answer goes
/// back on the token and the Lambda result only reports what was done.
///
/// # Errors
/// Request/response: the task error. Callback: only when Step Functions cannot be
/// told (so that the invocation is retried).
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
                let input = input::run_job(&payload)?;
                let kube = deps.connector.connect(&input.cluster).await?;
                let created =
                    job::create(kube.as_ref(), &input.namespace, &input.job, None).await?;
                started(deps, &at, &created);
                Ok(created)
            }
            Some(token) => {
                let (answer, facts) = match run_with_callback(&payload, deps, deadline, &at).await {
                    Ok(Progress::HandedOff(state)) => {
                        return Ok(
                            json!({ "handedOff": { "job": state.job_name, "namespace": state.namespace, "nextPollSeconds": state.next_delay_seconds } }),
                        )
                    }
                    Ok(Progress::AnsweredElsewhere(by)) => {
                        return Ok(json!({ "answered": "by another delivery", "delivery": by }))
                    }
                    Ok(Progress::Finished(answer, facts, turn)) => {
                        return turn.answer(deps, &token, answer, facts, &at).await;
                    }
                    Err(e) => (Err(e), EndFacts::default()),
                };
                answer_task(deps, &token, answer, facts, &at).await
            }
        }
    }
    .instrument(span)
    .await
}

/// Where a Job runs, for its metrics, and how many polls it took.
#[derive(Debug, Clone)]
pub struct JobPlace {
    /// The cluster's name.
    pub cluster: String,
    /// The namespace.
    pub namespace: String,
    /// Polls the poller made (0 inline).
    pub polls: u32,
}

/// What the end of a Job tells the metrics besides the answer.
#[derive(Debug, Clone, Copy, Default)]
pub struct EndFacts {
    /// When the Job finished.
    pub finished_at: Option<SystemTime>,
    /// Bytes of log read but left out of the result.
    pub log_bytes_cut: u64,
}

fn started(deps: &Deps, at: &JobPlace, job: &Value) {
    let text = |p: &str| job.pointer(p).and_then(Value::as_str).unwrap_or_default();
    telemetry::record_job(text("/metadata/name"), text("/metadata/uid"));
    telemetry::emit(
        deps.settings.metrics_namespace.as_deref(),
        &at.cluster,
        &at.namespace,
        &[(Metric::JobsStarted, 1.0)],
    );
}

/// Answers the task with a Job's end and, once Step Functions took the answer, counts
/// it: succeeded, failed or stuck, the callback latency, polls, result bytes and log
/// bytes cut.
///
/// # Errors
/// As [`respond`].
pub async fn answer_task(
    deps: &Deps,
    token: &str,
    answer: Result<Value, TaskError>,
    facts: EndFacts,
    at: &JobPlace,
) -> Result<Value, TaskError> {
    let outcome = match &answer {
        Ok(_) => Some(Metric::JobsSucceeded),
        Err(e) if e.name == names::JOB_FAILED => Some(Metric::JobsFailed),
        Err(e) if e.name == names::JOB_STUCK => Some(Metric::JobsStuck),
        Err(_) => None,
    };
    let result_bytes = answer.as_ref().ok().map(serialized_len);
    let report = respond(deps, token, answer).await?;
    tracing::info!(answered = %report["answered"], error = %report["error"], "task answered");
    if let (Some(outcome), false) = (outcome, report["answered"] == "nobody") {
        let mut values = vec![(outcome, 1.0)];
        if let Some(t) = facts.finished_at {
            values.push((
                Metric::CallbackLatency,
                telemetry::millis_between(t, deps.clock.now()),
            ));
        }
        if at.polls > 0 {
            values.push((Metric::PollsPerJob, f64::from(at.polls)));
        }
        if let Some(bytes) = result_bytes {
            #[allow(clippy::cast_precision_loss)]
            values.extend([
                (Metric::ResultBytes, bytes as f64),
                (Metric::LogBytesCut, facts.log_bytes_cut as f64),
            ]);
        }
        telemetry::emit(
            deps.settings.metrics_namespace.as_deref(),
            &at.cluster,
            &at.namespace,
            &values,
        );
    }
    Ok(report)
}

/// The task token when the payload carries a usable one: with it even an invalid
/// payload is answered on the token rather than left to time out.
#[must_use]
pub fn callback_token(payload: &Value) -> Option<String> {
    payload
        .get("TaskToken")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty() && t.chars().count() <= input::MAX_TASK_TOKEN_CHARS)
        .map(str::to_owned)
}

/// Sends the final answer on the token and says what was sent.
///
/// # Errors
/// `EksTaskWorker.CallbackError` when Step Functions refused for a reason other than
/// the task being gone.
pub async fn respond(
    deps: &Deps,
    token: &str,
    answer: Result<Value, TaskError>,
) -> Result<Value, TaskError> {
    let (sent, report) = match &answer {
        Ok(result) => (
            with_retries(|| deps.callback.succeed(token, result)).await,
            json!({ "answered": "SendTaskSuccess", "bytes": serialized_len(result) }),
        ),
        Err(e) => (
            with_retries(|| deps.callback.fail(token, e)).await,
            json!({ "answered": "SendTaskFailure", "error": e.name }),
        ),
    };
    match sent {
        Ok(()) => Ok(report),
        Err(CallbackError::TaskGone { code, message }) => {
            tracing::warn!(code = %code, message = %message, "the task is gone; nobody waits for the answer");
            Ok(json!({ "answered": "nobody", "taskGone": code }))
        }
        Err(e) => Err(e.into()),
    }
}

enum Progress {
    Finished(Result<Value, TaskError>, EndFacts, AnswerTurn),
    HandedOff(Box<PollState>),
    AnsweredElsewhere(String),
}

/// How long an invocation may still work: until its deadline less the margin
/// (unbounded without a deadline).
fn time_left(deps: &Deps, deadline: Option<SystemTime>) -> Duration {
    deadline.map_or(Duration::MAX, |d| {
        d.duration_since(deps.clock.now())
            .unwrap_or_default()
            .saturating_sub(deps.settings.lambda_margin)
    })
}

/// This delivery's turn to answer a finished Job's task ([`job::take_turn`]), renewed
/// while the answer is built; [`AnswerTurn::answer`] sends it and marks it sent on the
/// Job.
pub struct AnswerTurn {
    kube: Arc<dyn KubeApi>,
    namespace: String,
    name: String,
    me: String,
    renewal: tokio::task::JoinHandle<()>,
}

impl Drop for AnswerTurn {
    fn drop(&mut self) {
        self.renewal.abort();
    }
}

impl AnswerTurn {
    /// Takes the turn to answer for the finished Job `done`: `Ok(turn)` when this
    /// delivery answers, `Err(delivery)` when another one did. Waits at most until the
    /// invocation's deadline (less the margin), and never longer than a turn lasts.
    pub async fn take(
        kube: Arc<dyn KubeApi>,
        namespace: &str,
        done: &Value,
        deps: &Deps,
        deadline: Option<SystemTime>,
    ) -> Result<Self, String> {
        let text = |p: &str| done.pointer(p).and_then(Value::as_str).unwrap_or_default();
        let (name, uid) = (text("/metadata/name"), text("/metadata/uid"));
        let me = job::invocation_key();
        let until = tokio::time::Instant::now()
            + time_left(deps, deadline).min(Duration::from_secs(job::TURN_SECONDS + 10));
        let turn = job::take_turn(
            kube.as_ref(),
            namespace,
            name,
            uid,
            &me,
            deps.clock.as_ref(),
            until,
        )
        .await;
        if let job::Turn::Answered(by) = turn {
            tracing::info!(job = name, delivery = %by, "another delivery answers this task");
            return Err(by);
        }
        let renewal = {
            let (kube, clock) = (kube.clone(), deps.clock.clone());
            let (namespace, name, me) = (namespace.to_owned(), name.to_owned(), me.clone());
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_secs(job::TURN_SECONDS / 3)).await;
                    job::renew_turn(kube.as_ref(), &namespace, &name, &me, clock.as_ref()).await;
                }
            })
        };
        Ok(Self {
            kube,
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            me,
            renewal,
        })
    }

    /// Sends the answer ([`answer_task`]) and, once Step Functions has it, marks it sent
    /// on the Job, so that another delivery of the task sends nothing.
    ///
    /// # Errors
    /// As [`answer_task`].
    pub async fn answer(
        self,
        deps: &Deps,
        token: &str,
        answer: Result<Value, TaskError>,
        facts: EndFacts,
        at: &JobPlace,
    ) -> Result<Value, TaskError> {
        let report = answer_task(deps, token, answer, facts, at).await;
        self.renewal.abort();
        if report.is_ok() {
            job::answered(self.kube.as_ref(), &self.namespace, &self.name, &self.me).await;
        }
        report
    }
}

async fn run_with_callback(
    payload: &Value,
    deps: &Deps,
    deadline: Option<SystemTime>,
    at: &JobPlace,
) -> Result<Progress, TaskError> {
    let input = input::run_job(payload)?;
    let token = input.task_token.clone().unwrap_or_default();
    let curve = match &input.poll_curve_seconds {
        None => deps.settings.poll_curve.clone(),
        Some(delays) => PollCurve::new(delays.clone(), deps.settings.poll_min_seconds)
            .map_err(|m| TaskError::invalid_input("PollCurveSeconds", m))?,
    };
    let kube = deps.connector.connect(&input.cluster).await?;
    let created = job::create(kube.as_ref(), &input.namespace, &input.job, Some(&token)).await?;
    started(deps, at, &created);
    let name = created
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let uid = created
        .pointer("/metadata/uid")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let policy = input.stuck_policy.or(deps.settings.stuck_policy);
    let window = inline_window(deps, &input, deadline);
    match watch_for_stuck(
        kube.as_ref(),
        &input.namespace,
        &name,
        &uid,
        window,
        policy,
        deps,
    )
    .await?
    {
        Waited::Finished(done) => {
            match AnswerTurn::take(kube.clone(), &input.namespace, &done, deps, deadline).await {
                Err(by) => Ok(Progress::AnsweredElsewhere(by)),
                Ok(turn) => {
                    let (answer, facts) =
                        finish(kube, &input.namespace, &done, &input.log_options, deps).await;
                    Ok(Progress::Finished(answer, facts, turn))
                }
            }
        }
        Waited::StillRunning(_) => {
            let state = PollState {
                cluster: (&input.cluster).into(),
                namespace: input.namespace.clone(),
                job_name: name,
                job_uid: uid,
                task_token: token,
                log_options: (&input.log_options).into(),
                attempt: 0,
                next_delay_seconds: curve.delay(0),
                curve,
                stuck_policy: policy,
                failures: Vec::new(),
                execution: input.execution.clone(),
            };
            match &deps.handoff {
                Some(h) => {
                    h.hand_off(&state.next_poll()?).await?;
                    Ok(Progress::HandedOff(Box::new(state)))
                }
                None => Err(TaskError::new(
                    names::INTERNAL,
                    json!({ "message": format!("the Job {}/{} was still running when this invocation ran out of time, and no poller is configured to take it over", state.namespace, state.job_name), "job": state.job_name }),
                )),
            }
        }
    }
}

/// Watches the Job for `window`, in slices of ten seconds while a stuck policy is
/// active, reading its pods after each slice: what holds them is logged, and a Job held
/// past the policy is `EksTaskWorker.JobStuck`.
async fn watch_for_stuck(
    kube: &dyn KubeApi,
    namespace: &str,
    name: &str,
    uid: &str,
    window: Duration,
    policy: StuckPolicy,
    deps: &Deps,
) -> Result<Waited, TaskError> {
    if !policy.is_active() {
        return job::wait(kube, namespace, name, uid, window).await;
    }
    let until = tokio::time::Instant::now() + window;
    loop {
        let left = until.saturating_duration_since(tokio::time::Instant::now());
        let waited = job::wait(
            kube,
            namespace,
            name,
            uid,
            left.min(Duration::from_secs(10)),
        )
        .await?;
        if matches!(waited, Waited::Finished(_)) || left <= Duration::from_secs(10) {
            return Ok(waited);
        }
        check_stuck(kube, namespace, name, uid, policy, deps).await?;
    }
}

/// Reads the Job's pods, logs what holds them, and fails when the policy says stuck
/// (deleting the Job first when `JOB_CLEANUP=always`).
///
/// # Errors
/// `EksTaskWorker.JobStuck`, or an error reading the pods.
pub async fn check_stuck(
    kube: &dyn KubeApi,
    namespace: &str,
    name: &str,
    uid: &str,
    policy: StuckPolicy,
    deps: &Deps,
) -> Result<(), TaskError> {
    let pods = job::pods(kube, namespace, uid).await?;
    let found = diagnosis::findings(&pods);
    let events = if found.is_empty() {
        Vec::new()
    } else {
        job::warning_events(kube, namespace, name, &pods, WARNING_EVENTS).await
    };
    diagnosis::report(&found, &events);
    match diagnosis::stuck(
        &found,
        policy,
        deps.clock.now(),
        &format!("{namespace}/{name}"),
    ) {
        None => Ok(()),
        Some(mut e) => {
            e.cause["warningEvents"] = Value::Array(events);
            if deps.settings.job_cleanup == Cleanup::Always {
                job::delete(kube, namespace, name, uid).await?;
            }
            Err(e)
        }
    }
}

/// How long this invocation watches its Job: the setting (or the payload's
/// `InlineWaitSeconds`), never past the Lambda deadline minus the margin.
fn inline_window(deps: &Deps, input: &RunJobInput, deadline: Option<SystemTime>) -> Duration {
    let wanted = input
        .inline_wait_seconds
        .map_or(deps.settings.inline_wait, Duration::from_secs);
    wanted.min(time_left(deps, deadline))
}

/// The answer for a finished Job: a Complete Job with its logs (per `LogOptions`), fitted
/// into the result budget; a Failed Job as `EksTaskWorker.JobFailed` (`Err`: or an error
/// reading the pods). With an archive location (`LogOptions.ArchiveUri` or
/// `LOG_ARCHIVE_URI`) every container's whole log is archived first, and each object's
/// URI and size go beside its log. The Job is then deleted when `JOB_CLEANUP` says so
/// (a failed deletion is logged, not fatal).
pub async fn finish(
    kube: Arc<dyn KubeApi>,
    namespace: &str,
    done: &Value,
    options: &LogOptions,
    deps: &Deps,
) -> (Result<Value, TaskError>, EndFacts) {
    let mut facts = EndFacts {
        finished_at: job::finished_at(done),
        log_bytes_cut: 0,
    };
    let answer = answer(kube.clone(), namespace, done, options, deps, &mut facts).await;
    let delete = match deps.settings.job_cleanup {
        Cleanup::Never => false,
        Cleanup::OnSuccess => answer.is_ok(),
        Cleanup::Always => true,
    };
    if delete {
        let name = done
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let uid = done
            .pointer("/metadata/uid")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if let Err(e) = job::delete(kube.as_ref(), namespace, name, uid).await {
            tracing::warn!(job = name, namespace, error = %e, "could not clean up the finished job");
        }
    }
    (answer, facts)
}

async fn answer(
    kube: Arc<dyn KubeApi>,
    namespace: &str,
    done: &Value,
    options: &LogOptions,
    deps: &Deps,
    facts: &mut EndFacts,
) -> Result<Value, TaskError> {
    let uid = done
        .pointer("/metadata/uid")
        .and_then(Value::as_str)
        .unwrap_or_default();
    // Watch events carry no kind/apiVersion; the result has the object's full shape.
    let done = job::with_create_shape(done.clone());
    let phase = job::phase(&done);
    let location = options
        .archive
        .as_ref()
        .or(deps.settings.log_archive.as_ref());
    let pods = if options.retrieve_logs || phase == Phase::Failed || location.is_some() {
        job::pods(kube.as_ref(), namespace, uid).await?
    } else {
        Vec::new()
    };
    let name = done
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let archived = match (location, &deps.archive) {
        (Some(location), Some(archive)) => {
            let id = archive::JobId {
                namespace,
                name: &name,
                uid,
            };
            archive::archive_logs(kube.as_ref(), archive.clone(), location, id, &pods, options)
                .await
        }
        (Some(_), None) => {
            tracing::warn!("an archive location is set but this deployment has no archive client");
            Vec::new()
        }
        (None, _) => Vec::new(),
    };
    if phase == Phase::Failed {
        let mut cause = job::failure_summary(&done, &pods);
        cause["warningEvents"] = Value::Array(
            job::warning_events(kube.as_ref(), namespace, &name, &pods, WARNING_EVENTS).await,
        );
        if !archived.is_empty() {
            cause["logArchive"] = Value::Array(
                archived
                    .iter()
                    .map(|a| json!({ "pod": a.pod, "container": a.container, "archive": a.entry }))
                    .collect(),
            );
        }
        let failed: Vec<Value> = pods
            .iter()
            .filter(|p| p.pointer("/status/phase").and_then(Value::as_str) == Some("Failed"))
            .take(8)
            .cloned()
            .collect();
        let tails = logs::read(
            kube.as_ref(),
            namespace,
            &failed,
            &LogOptions {
                raw_logs: true,
                ..LogOptions::default()
            },
            crate::budget::RESULT_BUDGET - FAILURE_LOG_BYTES * failed.len().max(1),
        )
        .await;
        cause["logTails"] = logs_summary(&tails);
        return Err(TaskError::new(names::JOB_FAILED, cause));
    }
    if !options.retrieve_logs {
        return Ok(logs::result(&done, None, &archived));
    }
    let skeleton = serialized_len(&done);
    let placed = logs::read(kube.as_ref(), namespace, &pods, options, skeleton).await;
    let result = logs::result(&done, Some(&placed), &archived);
    facts.log_bytes_cut = logs::bytes_cut(&placed, &result);
    Ok(result)
}

fn logs_summary(tails: &[PlacedLog]) -> Value {
    Value::Array(
        tails
            .iter()
            .map(|t| match &t.log {
                logs::ContainerLog::Text { text, .. } => json!({ "pod": t.pod, "container": t.container, "log": text }),
                logs::ContainerLog::Failed { error, cause } => json!({ "pod": t.pod, "container": t.container, "error": error, "cause": cause }),
            })
            .collect(),
    )
}
