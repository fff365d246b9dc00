//! Answering a task: on its token (callback) or as the invocation's result
//! (request/response), once, with the turn that makes two deliveries answer once.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde_json::json;
use serde_json::Value;
use tracing::Instrument;

use crate::contract::budget::serialized_len;
use crate::contract::error::{names, TaskError};
use crate::ports::callback::CallbackError;
use crate::ports::kube::KubeApi;
use crate::task::deps::Deps;
use crate::task::job::{self, JobId};
use crate::task::telemetry;
use crate::task::telemetry::Metric;

/// Tries a callback up to three times while it fails for a reason other than the
/// task being gone (throttling, network), pausing 0.5 s, then 1 s.
///
/// # Errors
/// The last failure.
pub async fn with_retries<F, Fut>(call: F) -> Result<(), CallbackError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), CallbackError>>,
{
    let may_pass =
        |e: &CallbackError| matches!(e, CallbackError::Other(_) | CallbackError::NoReply(_));
    let policy = crate::task::retry::Policy::default();
    crate::task::retry::retry("the Step Functions call", policy, may_pass, |_| None, call).await
}

/// Sends the task's heartbeat, tried again as every callback is. `Err(code)` when Step
/// Functions says the task is gone (`TaskTimedOut`, `TaskDoesNotExist`,
/// `InvalidToken`); any other failure is logged and passes (the next heartbeat makes up
/// for it).
///
/// # Errors
/// The code of a task that is gone.
pub async fn heartbeat(deps: &Deps, task_token: &str) -> Result<(), String> {
    heartbeat_taken(deps, task_token).await.map(|_| ())
}

/// Sends the task's heartbeat as [`heartbeat`] does, and says whether Step Functions
/// took it: `Ok(false)` when it failed for another reason (throttled, denied, out of
/// reach), which proves nothing about the token. For a step that deletes: it goes on
/// only on `Ok(true)`.
///
/// # Errors
/// The code of a task that is gone.
pub async fn heartbeat_taken(deps: &Deps, task_token: &str) -> Result<bool, String> {
    match with_retries(|| deps.callback.heartbeat(task_token)).await {
        Err(CallbackError::TaskGone { code, .. }) => Err(code),
        Err(e) => {
            tracing::warn!(error = %e, "heartbeat failed; going on");
            Ok(false)
        }
        Ok(()) => Ok(true),
    }
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
    /// Delete the Job once the answer is sent (`JOB_CLEANUP`): never before, so that an
    /// answer that fails and is tried again still finds its Job.
    pub clean_up: bool,
    /// The Job's own TTL, held back while the worker followed it: given back once the
    /// answer is sent ([`job::answered`]).
    pub held_ttl: Option<u64>,
}

/// Answers the task with a Job's end and, once Step Functions took the answer, counts
/// it: succeeded, failed or stuck, the callback latency, polls, result bytes and log
/// bytes cut.
///
/// # Errors
/// As [`send_answer`].
pub async fn send_job_answer(
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
    let report = send_answer(deps, token, answer).await?;
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

/// Delivers a task's answer where the task waits for it: on its token (callback), or as
/// the invocation's result when it has none (request/response).
///
/// # Errors
/// Request/response: the task's error. Callback: as [`send_answer`].
pub async fn deliver(
    deps: &Deps,
    token: Option<&str>,
    answer: Result<Value, TaskError>,
) -> Result<Value, TaskError> {
    match token {
        None => answer,
        Some(token) => send_answer(deps, token, answer).await,
    }
}

/// Sends the final answer on the token and says what was sent.
///
/// # Errors
/// `EksTaskWorker.CallbackError` when Step Functions refused for a reason other than
/// the task being gone.
pub async fn send_answer(
    deps: &Deps,
    token: &str,
    answer: Result<Value, TaskError>,
) -> Result<Value, TaskError> {
    // Whether an attempt went unanswered (its reply lost, or a 5xx): Step Functions may
    // have taken it.
    let reply_lost = std::sync::atomic::AtomicBool::new(false);
    let noted = |sent: Result<(), CallbackError>| {
        if matches!(sent, Err(CallbackError::NoReply(_))) {
            reply_lost.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        sent
    };
    let (sent, mut report) = match &answer {
        Ok(result) => (
            crate::ports::clock::last_act(with_retries(|| async {
                noted(deps.callback.succeed(token, result).await)
            }))
            .await,
            json!({ "answered": "SendTaskSuccess", "bytes": serialized_len(result) }),
        ),
        Err(e) => (
            crate::ports::clock::last_act(with_retries(|| async {
                noted(deps.callback.fail(token, e).await)
            }))
            .await,
            json!({ "answered": "SendTaskFailure", "error": e.name }),
        ),
    };
    match sent {
        Ok(()) => Ok(report),
        // One answer is one Step Functions took: an attempt whose reply was lost was
        // taken, so the try after it finds the task closed. The answer stands as that
        // attempt's (the execution's history is the authority, should the task have
        // timed out in between instead).
        Err(CallbackError::TaskGone { code, message })
            if reply_lost.load(std::sync::atomic::Ordering::Relaxed) =>
        {
            tracing::warn!(code = %code, message = %message, "an attempt's reply was lost and the next found the task closed: answered by that attempt");
            report["replyLost"] = json!(true);
            report["retryRefused"] = json!(code);
            Ok(report)
        }
        Err(CallbackError::TaskGone { code, message }) => {
            tracing::warn!(code = %code, message = %message, "the task is gone; nobody waits for the answer");
            Ok(json!({ "answered": "nobody", "taskGone": code }))
        }
        Err(e) => Err(e.into()),
    }
}

/// This delivery's turn to answer a finished Job's task ([`job::take_turn`]), renewed
/// while the answer is built; [`AnswerTurn::send`] sends it and marks it sent on the
/// Job.
pub struct AnswerTurn {
    kube: Arc<dyn KubeApi>,
    job: JobId,
    me: String,
    renewal: tokio::task::JoinHandle<()>,
}

impl Drop for AnswerTurn {
    fn drop(&mut self) {
        self.renewal.abort();
    }
}

impl AnswerTurn {
    /// Takes the turn to answer for the finished Job `job`: `Ok(turn)` when this
    /// delivery answers, `Err(delivery)` when another one did. Waits at most until the
    /// invocation's deadline (less the margin), and never longer than a turn lasts.
    pub async fn take(
        kube: Arc<dyn KubeApi>,
        job: &JobId,
        deps: &Deps,
        deadline: Option<SystemTime>,
    ) -> Result<Self, String> {
        let me = job::invocation_key();
        let until = tokio::time::Instant::now()
            + deps
                .time_left(deadline)
                .min(Duration::from_secs(job::TURN_SECONDS + 10));
        let turn = job::take_turn(kube.as_ref(), job, &me, deps.clock.as_ref(), until).await;
        if let job::Turn::Answered(by) = turn {
            tracing::info!(job = job.name, delivery = %by, "another delivery answers this task");
            return Err(by);
        }
        let renewal = {
            let (kube, clock) = (kube.clone(), deps.clock.clone());
            let (job, me) = (job.clone(), me.clone());
            // In the invocation's span: its log lines carry the request and trace ids.
            tokio::spawn(
                async move {
                    loop {
                        tokio::time::sleep(Duration::from_secs(job::TURN_SECONDS / 3)).await;
                        job::renew_turn(kube.as_ref(), &job, &me, clock.as_ref()).await;
                    }
                }
                .in_current_span(),
            )
        };
        Ok(Self {
            kube,
            job: job.clone(),
            me,
            renewal,
        })
    }

    /// Sends the answer ([`send_job_answer`]) and, once Step Functions has it, marks it sent
    /// on the Job, so that another delivery of the task sends nothing.
    ///
    /// # Errors
    /// As [`send_job_answer`].
    pub async fn send(
        self,
        deps: &Deps,
        token: &str,
        answer: Result<Value, TaskError>,
        facts: EndFacts,
        at: &JobPlace,
    ) -> Result<Value, TaskError> {
        // The answer and its bookkeeping are the invocation's last act: they may use the
        // grace kept for it.
        crate::ports::clock::last_act(async {
            let (clean_up, held_ttl) = (facts.clean_up, facts.held_ttl);
            let report = send_job_answer(deps, token, answer, facts, at).await;
            self.renewal.abort();
            if report.is_ok() {
                let held_ttl = held_ttl.filter(|_| !clean_up);
                job::answered(self.kube.as_ref(), &self.job, &self.me, held_ttl).await;
                if clean_up {
                    if let Err(e) = job::delete(self.kube.as_ref(), &self.job).await {
                        tracing::warn!(job = self.job.name, namespace = self.job.namespace, error = %e, "could not clean up the finished job");
                    }
                }
            }
            report
        })
        .await
    }
}

#[cfg(test)]
mod cleanup_tests {
    use std::sync::Arc;

    use serde_json::json;

    use super::{AnswerTurn, EndFacts, JobPlace};
    use crate::task::deps::Deps;
    use crate::task::job::{self, JobId};
    use crate::testing::{FakeKube, NoCluster, RecordingCallback};

    /// `JOB_CLEANUP` deletes the Job only once its answer is sent: an answer Step
    /// Functions refuses (the invocation fails and is delivered again) leaves the Job for
    /// the next delivery, which would otherwise read it as vanished.
    #[tokio::test]
    async fn the_job_is_cleaned_up_only_after_its_answer_is_sent() {
        let place = JobPlace {
            cluster: "c".into(),
            namespace: "ns".into(),
            polls: 0,
        };
        let manifest = json!({ "apiVersion": "batch/v1", "kind": "Job", "metadata": { "generateName": "w-" }, "spec": {} });
        for (refusals, kept) in [(100, 1), (0, 0)] {
            let kube = Arc::new(FakeKube::default());
            let token = format!("token-{refusals}");
            let created = job::create(kube.as_ref(), "ns", &manifest, Some(&token), None)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            let id = JobId::of(&created, "ns");
            let callback = Arc::new(RecordingCallback::default());
            callback.refuse_answers(refusals);
            let deps = Deps::test(Arc::new(NoCluster::default()), callback.clone());
            let turn = AnswerTurn::take(kube.clone(), &id, &deps, None)
                .await
                .unwrap_or_else(|by| panic!("answered by {by}"));
            let facts = EndFacts {
                clean_up: true,
                ..EndFacts::default()
            };
            let sent = turn.send(&deps, &token, Ok(json!({})), facts, &place).await;
            assert_eq!(sent.is_ok(), refusals == 0, "{sent:?}");
            assert_eq!(kube.jobs().len(), kept, "refusals {refusals}: {sent:?}");
        }
    }
}

#[cfg(test)]
mod lost_reply_tests {
    use std::sync::Arc;

    use serde_json::json;

    use super::send_answer;
    use crate::contract::error::TaskError;
    use crate::task::deps::Deps;
    use crate::testing::{NoCluster, RecordingCallback};

    /// One answer is one Step Functions took. An answer taken whose reply was lost is
    /// tried again, the task is then closed: the answer stands as the first attempt's
    /// (two attempts, one taken), not "nobody waits"; a task closed with no attempt
    /// lost is nobody's.
    #[tokio::test(start_paused = true)]
    async fn an_answer_whose_reply_was_lost_stands() {
        for answer in [
            Ok(json!({ "done": true })),
            Err(TaskError::message("EksTaskWorker.JobFailed", "x")),
        ] {
            let callback = Arc::new(RecordingCallback::default());
            callback.lose_replies(1);
            let deps = Deps::test(Arc::new(NoCluster::default()), callback.clone());
            let report = send_answer(&deps, "t", answer.clone())
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(report["replyLost"], true, "{report}");
            assert_eq!(report["retryRefused"], "TaskTimedOut", "{report}");
            assert_ne!(report["answered"], "nobody", "{report}");
            assert_eq!(
                callback.succeeded().len() + callback.failed().len(),
                1,
                "taken once"
            );
        }
    }
}
