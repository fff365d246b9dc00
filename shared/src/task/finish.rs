//! A finished Job's answer: its result (with logs) or its failure, and the stuck check.

use std::sync::Arc;

use serde_json::{json, Value};

use crate::config::Cleanup;
use crate::contract::budget::serialized_len;
use crate::contract::error::{names, TaskError};
use crate::contract::payload::LogOptions;
use crate::contract::stuck_policy::StuckPolicy;
use crate::ports::kube::KubeApi;
use crate::task::answer::EndFacts;
use crate::task::deps::Deps;
use crate::task::job::{JobId, Phase};
use crate::task::logs::{archive, PlacedLog};
use crate::task::{diagnosis, job, logs};

/// Bytes of log tail per failed container in a JobFailed cause.
const FAILURE_LOG_BYTES: usize = 4096;
/// The longest error message put in the place of the pods' logs.
const POD_ERROR_CHARS: usize = 1024;
/// Warning events named in a diagnosis or a failure cause.
const WARNING_EVENTS: usize = 10;

/// Reads the Job's pods (and, while it has none or one may be held, its Warning events),
/// logs what holds it, and fails when the policy says stuck. Nothing is changed on the
/// Job: a stuck answer is sent with [`stuck_end`]'s facts, which delete the Job
/// (`JOB_CLEANUP=always`) or give it back its own TTL only once Step Functions has the
/// answer (an answer that fails and is tried again still finds its Job). `job` is the
/// Job as last read.
///
/// # Errors
/// `EksTaskWorker.JobStuck`, or an error reading the pods.
pub async fn check_stuck(
    kube: &dyn KubeApi,
    id: &JobId,
    job: &Value,
    policy: StuckPolicy,
    deps: &Deps,
) -> Result<(), TaskError> {
    let pods = job::pods(kube, id).await?;
    let events = if diagnosis::wants_events(&pods) {
        job::warning_events(kube, id, job, &pods, WARNING_EVENTS).await
    } else {
        Vec::new()
    };
    let now = deps.clock.now();
    let found = diagnosis::findings(job, &pods, &events, now);
    diagnosis::report(&found, if found.is_empty() { &[] } else { &events });
    match diagnosis::stuck(&found, policy, now, &id.display()) {
        None => Ok(()),
        Some(mut e) => {
            e.cause["warningEvents"] = Value::Array(events);
            Err(e)
        }
    }
}

/// The facts a stuck answer is sent with: the still-running Job is deleted once the
/// answer is sent when `JOB_CLEANUP=always`, else it is left, unfollowed, with its own
/// TTL given back.
#[must_use]
pub fn stuck_end(job: &Value, deps: &Deps) -> EndFacts {
    EndFacts {
        clean_up: deps.settings.job_cleanup == Cleanup::Always,
        held_ttl: job::held_ttl(job),
        ..EndFacts::default()
    }
}

/// The task is gone (its execution stopped or timed out, or the token is invalid):
/// nobody waits for it. A running Job is deleted (unless `DELETE_JOB_WHEN_STOPPED` is
/// `false`); a finished one is left alone, for it may be this very task's answered Job
/// seen by a duplicate delivery. The report is the invocation's result.
///
/// # Errors
/// The Job's deletion failed.
pub async fn stand_down(
    kube: &dyn KubeApi,
    id: &JobId,
    phase: Phase,
    code: &str,
    deps: &Deps,
) -> Result<Value, TaskError> {
    let deleted = phase == Phase::Running && deps.settings.delete_job_when_stopped;
    if deleted {
        job::delete(kube, id).await?;
    } else if let Ok(job) = id.read(kube).await {
        // Nobody waits for its answer any more: its own TTL applies again.
        job::release_ttl(kube, id, &job).await;
    }
    tracing::info!(job = %id.name, code, deleted, "the task is gone; the Job is no longer followed");
    Ok(json!({ "taskGone": code, "jobDeleted": deleted, "job": id.name }))
}

/// The answer for a finished Job: a Complete Job with its logs (per `LogOptions`), fitted
/// into the result budget; a Failed Job as `EksTaskWorker.JobFailed` (`Err`: or an error
/// reading the pods). With an archive location (`LogOptions.ArchiveUri` or
/// `LOG_ARCHIVE_URI`) every container's whole log is archived first, and each object's
/// URI and size go beside its log. Whether the Job is to be deleted (`JOB_CLEANUP`)
/// is in the facts: [`AnswerTurn::send`](crate::task::answer::AnswerTurn::send) deletes
/// it once the answer is sent (a failed deletion is logged, not fatal). How long it
/// took is logged: `"log phase"`, `millis`.
pub async fn finish(
    kube: Arc<dyn KubeApi>,
    id: &JobId,
    done: &Value,
    options: &LogOptions,
    deps: &Deps,
) -> (Result<Value, TaskError>, EndFacts) {
    let mut facts = EndFacts {
        finished_at: job::finished_at(done),
        log_bytes_cut: 0,
        clean_up: false,
        held_ttl: job::held_ttl(done),
    };
    // The log phase: the pods listed, their logs archived and read, the answer fitted.
    let started = std::time::Instant::now();
    let answer = job_answer(kube.clone(), id, done, options, deps, &mut facts).await;
    let millis = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    tracing::info!(millis, failed = answer.is_err(), "log phase");
    facts.clean_up = match deps.settings.job_cleanup {
        Cleanup::Never => false,
        Cleanup::OnSuccess => answer.is_ok(),
        Cleanup::Always => true,
    };
    (answer, facts)
}

async fn job_answer(
    kube: Arc<dyn KubeApi>,
    id: &JobId,
    done: &Value,
    options: &LogOptions,
    deps: &Deps,
    facts: &mut EndFacts,
) -> Result<Value, TaskError> {
    let namespace = id.namespace.as_str();
    // Watch events carry no kind/apiVersion; the result has the object's full shape.
    let done = job::with_create_shape(done.clone());
    let phase = job::phase(&done);
    let location = options
        .archive
        .as_ref()
        .or(deps.settings.log_archive.as_ref());
    // Best effort, as native log retrieval: pods that cannot be listed (after the
    // retries) cost the answer its logs, never the task its result.
    let mut pods_error = None;
    let pods = if options.retrieve_logs || phase == Phase::Failed || location.is_some() {
        job::pods(kube.as_ref(), id).await.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "could not list the job's pods: the answer goes without their logs");
            pods_error = Some(json!({ "error": e.name, "cause": error_message(&e) }));
            Vec::new()
        })
    } else {
        Vec::new()
    };
    let archived = match location {
        Some(location) => {
            let archive = deps.archive.clone();
            archive::archive_logs(kube.as_ref(), archive, location, id, &pods, options).await
        }
        None => Vec::new(),
    };
    if phase == Phase::Failed {
        let mut cause = job::failure_summary(&done, &pods);
        cause["warningEvents"] = Value::Array(
            job::warning_events(kube.as_ref(), id, &done, &pods, WARNING_EVENTS).await,
        );
        if !archived.is_empty() {
            cause["logArchive"] = Value::Array(
                archived
                    .iter()
                    .map(|a| json!({ "pod": a.target.pod, "container": a.target.container, "initContainer": a.target.init, "archive": a.entry }))
                    .collect(),
            );
        }
        let failed: Vec<Value> = job::failed_pods(&pods)
            .into_iter()
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
            crate::contract::budget::RESULT_BUDGET - FAILURE_LOG_BYTES * failed.len().max(1),
        )
        .await;
        cause["logTails"] = logs_summary(&tails);
        if let Some(unlisted) = pods_error {
            cause["podsError"] = unlisted;
        }
        return Err(TaskError::new(names::JOB_FAILED, cause));
    }
    if !options.retrieve_logs {
        return Ok(logs::result(&done, None, &archived));
    }
    let skeleton = serialized_len(&done);
    let placed = logs::read(kube.as_ref(), namespace, &pods, options, skeleton).await;
    let mut result = logs::result(&done, Some(&placed), &archived);
    facts.log_bytes_cut = logs::bytes_cut(&placed, &result);
    if let Some(unlisted) = pods_error {
        // `logs.error`/`logs.cause`: why `logs.pods` is empty (not a native field).
        result["logs"]["error"] = unlisted["error"].clone();
        result["logs"]["cause"] = unlisted["cause"].clone();
    }
    Ok(result)
}

/// An error's message, at most [`POD_ERROR_CHARS`] characters: what goes in the place
/// of logs that could not be read.
fn error_message(e: &TaskError) -> String {
    e.to_string().chars().take(POD_ERROR_CHARS).collect()
}

fn logs_summary(tails: &[PlacedLog]) -> Value {
    Value::Array(
        tails
            .iter()
            .map(|t| match &t.log {
                logs::ContainerLog::Text { text, .. } => json!({ "pod": t.target.pod, "container": t.target.container, "initContainer": t.target.init, "log": text }),
                logs::ContainerLog::Failed { error, cause } => json!({ "pod": t.target.pod, "container": t.target.container, "initContainer": t.target.init, "error": error, "cause": cause }),
            })
            .collect(),
    )
}
