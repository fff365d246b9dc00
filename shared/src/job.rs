//! A Job run on the cluster: create it (adopting the one a retried delivery already
//! created), watch it until it finishes or the window closes, and say how it ended.
//! The user's manifest passes through as JSON; the worker only adds its own labels.

use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use crate::error::{names, TaskError};
use crate::kube_api::{KubeApi, KubeRequest};

/// The label that marks a Job created for one task token (a hash of the token).
pub const TASK_LABEL: &str = "eks-task-worker.io/task";
/// The label that marks everything the worker creates.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// Its value.
pub const MANAGED_BY: &str = "eks-task-worker";

/// The collection path of Jobs in a namespace.
#[must_use]
pub fn jobs_path(namespace: &str) -> String {
    format!("/apis/batch/v1/namespaces/{namespace}/jobs")
}

/// The label value for a task token: 40 hex characters of its SHA-256.
#[must_use]
pub fn task_label(task_token: &str) -> String {
    let digest = Sha256::digest(task_token.as_bytes());
    digest.iter().take(20).map(|b| format!("{b:02x}")).collect()
}

/// The manifest as sent: the user's Job with the worker's labels added.
#[must_use]
pub fn prepare(job: &Value, task_token: Option<&str>) -> Value {
    let mut job = job.clone();
    if let Some(meta) = job.get_mut("metadata").and_then(Value::as_object_mut) {
        let labels = meta
            .entry("labels")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Some(labels) = labels.as_object_mut() {
            labels.insert(MANAGED_BY_LABEL.into(), json!(MANAGED_BY));
            if let Some(t) = task_token {
                labels.insert(TASK_LABEL.into(), json!(task_label(t)));
            }
        }
    }
    job
}

fn name_of(job: &Value) -> Option<&str> {
    job.pointer("/metadata/name").and_then(Value::as_str)
}

/// Creates the Job in `namespace` and returns it as the API server returned it. With a
/// task token, a Job already created for that token (a retried delivery) is adopted
/// instead of created twice.
///
/// # Errors
/// `EKS.<status>` when the API server refuses, transport errors otherwise.
pub async fn create(
    kube: &dyn KubeApi,
    namespace: &str,
    job: &Value,
    task_token: Option<&str>,
) -> Result<Value, TaskError> {
    let manifest = prepare(job, task_token);
    if let Some(token) = task_token {
        if let Some(existing) = find_by_task(kube, namespace, token).await? {
            tracing::info!(
                job = name_of(&existing).unwrap_or_default(),
                namespace,
                "adopted the job created by an earlier delivery"
            );
            return Ok(existing);
        }
    }
    // A 5xx, a 429 or a lost connection is tried again: should the first try have
    // created the Job after all, the 409 below adopts it by its task label.
    let response = crate::retry::transient("creating the job", || async {
        let r = kube
            .send(
                KubeRequest::json(http::Method::POST, jobs_path(namespace), &manifest),
                None,
            )
            .await?;
        if r.status == 429 || r.status >= 500 {
            return Err(r
                .ok()
                .err()
                .unwrap_or_else(|| TaskError::message(names::INTERNAL, "a failed status")));
        }
        Ok(r)
    })
    .await?;
    if response.status == 409 {
        if let (Some(token), Some(name)) = (task_token, name_of(job)) {
            let existing = get(kube, namespace, name).await?;
            if existing
                .pointer(&format!(
                    "/metadata/labels/{}",
                    TASK_LABEL.replace('/', "~1")
                ))
                .and_then(Value::as_str)
                == Some(task_label(token).as_str())
            {
                return Ok(existing);
            }
        }
    }
    let created = response.ok()?.json()?;
    tracing::info!(
        job = name_of(&created).unwrap_or_default(),
        namespace,
        "job created"
    );
    Ok(created)
}

async fn find_by_task(
    kube: &dyn KubeApi,
    namespace: &str,
    token: &str,
) -> Result<Option<Value>, TaskError> {
    let request = KubeRequest::get(jobs_path(namespace)).param(
        "labelSelector",
        format!("{TASK_LABEL}={}", task_label(token)),
    );
    let list = kube.send(request, None).await?.ok()?.json()?;
    Ok(list
        .get("items")
        .and_then(Value::as_array)
        .and_then(|items| items.first())
        .cloned()
        .map(|mut job| {
            // List items carry no kind/apiVersion; give the adopted Job the create shape.
            if let Some(o) = job.as_object_mut() {
                o.insert("kind".into(), json!("Job"));
                o.insert("apiVersion".into(), json!("batch/v1"));
            }
            job
        }))
}

/// Reads the Job `name`.
///
/// # Errors
/// `EKS.<status>` (`EKS.404` when it is gone), transport errors.
pub async fn get(kube: &dyn KubeApi, namespace: &str, name: &str) -> Result<Value, TaskError> {
    kube.send(
        KubeRequest::get(format!("{}/{name}", jobs_path(namespace))),
        None,
    )
    .await?
    .ok()?
    .json()
}

/// Deletes the Job (`Foreground`: its pods go first), only if it is still the Job
/// with `uid`. A Job already gone is not an error.
///
/// # Errors
/// `EKS.<status>` other than 404/409, transport errors.
pub async fn delete(
    kube: &dyn KubeApi,
    namespace: &str,
    name: &str,
    uid: &str,
) -> Result<(), TaskError> {
    let options = json!({ "apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": "Foreground", "preconditions": { "uid": uid } });
    let request = KubeRequest::json(
        http::Method::DELETE,
        format!("{}/{name}", jobs_path(namespace)),
        &options,
    );
    let response = kube.send(request, None).await?;
    match response.status {
        404 | 409 => Ok(()),
        _ => response
            .ok()
            .map(|_| tracing::info!(job = name, namespace, "job deleted")),
    }
}

/// How a Job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Neither Complete nor Failed.
    Running,
    /// `Complete` condition is True.
    Complete,
    /// `Failed` condition is True.
    Failed,
}

/// The phase of a Job object, from its conditions. Newer API servers set
/// `FailureTarget` and `SuccessCriteriaMet` before `Failed` and `Complete` (while the
/// last pods terminate): they are final too.
#[must_use]
pub fn phase(job: &Value) -> Phase {
    let conditions = job
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let is_true = |kind: &str| {
        conditions
            .iter()
            .any(|c| c["type"] == kind && c["status"] == "True")
    };
    if is_true("Failed") || is_true("FailureTarget") {
        Phase::Failed
    } else if is_true("Complete") || is_true("SuccessCriteriaMet") {
        Phase::Complete
    } else {
        Phase::Running
    }
}

/// Watches in a row that may fail before [`wait`] leaves the Job to the poller.
const WATCH_FAILURES: u32 = 5;

/// When the Job finished: `status.completionTime`, else the time its final condition
/// turned true.
#[must_use]
pub fn finished_at(job: &Value) -> Option<std::time::SystemTime> {
    let parse = crate::clock::rfc3339;
    parse(&job["status"]["completionTime"]).or_else(|| {
        job.pointer("/status/conditions")
            .and_then(Value::as_array)?
            .iter()
            .filter(|c| {
                c["status"] == "True"
                    && ["Failed", "Complete", "FailureTarget", "SuccessCriteriaMet"]
                        .iter()
                        .any(|k| c["type"] == *k)
            })
            .find_map(|c| parse(&c["lastTransitionTime"]))
    })
}

/// How waiting on a Job ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Waited {
    /// It finished (Complete or Failed): the Job as last seen.
    Finished(Value),
    /// The window closed first: the Job as last seen.
    StillRunning(Value),
}

/// The error for a Job that disappeared while waited on.
#[must_use]
pub fn vanished(namespace: &str, name: &str) -> TaskError {
    TaskError::new(
        names::JOB_VANISHED,
        json!({ "message": format!("the Job {namespace}/{name} was deleted while the worker waited for it to finish"), "namespace": namespace, "job": name }),
    )
}

/// Watches the Job until it finishes or `window` passes (the watch API, re-opened
/// when the server ends it). A Job that disappears is `EksTaskWorker.JobVanished`.
///
/// # Errors
/// `EksTaskWorker.JobVanished`, `EKS.<status>`, transport errors.
pub async fn wait(
    kube: &dyn KubeApi,
    namespace: &str,
    name: &str,
    uid: &str,
    window: Duration,
) -> Result<Waited, TaskError> {
    let deadline = Instant::now() + window;
    let mut last = crate::retry::transient("reading the job", || {
        read_or_vanished(kube, namespace, name, uid)
    })
    .await?;
    // Watches that failed in a row (cut, timed out, refused for a while): the next
    // watch resumes from the last version seen; past WATCH_FAILURES the Job is left to
    // the poller (the caller hands it off) rather than failing a task time can mend.
    let mut failures = 0;
    loop {
        if phase(&last) != Phase::Running {
            return Ok(Waited::Finished(last));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(Waited::StillRunning(last));
        }
        let rv = last
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        // The server ends a watch after timeoutSeconds; keep it under the read timeout.
        let seconds = left.as_secs().clamp(1, 25);
        let request = KubeRequest::get(jobs_path(namespace))
            .param("watch", "1")
            .param("fieldSelector", format!("metadata.name={name}"))
            .param("resourceVersion", rv)
            .param("timeoutSeconds", seconds.to_string());
        let started = match kube.watch(request).await {
            Ok(Ok(events)) => Ok(events),
            Ok(Err(response)) if response.status == 410 => {
                last = read_or_vanished(kube, namespace, name, uid).await?;
                continue;
            }
            Ok(Err(response)) => Err(response
                .ok()
                .err()
                .unwrap_or_else(|| TaskError::message(names::INTERNAL, "watch failed"))),
            Err(transport) => Err(transport.into()),
        };
        let mut events = match started {
            Ok(events) => events,
            Err(e) if crate::retry::is_transient(&e) => {
                failures += 1;
                tracing::warn!(job = name, error = %e.name, failures, "watch failed; watching again");
                if failures >= WATCH_FAILURES {
                    return Ok(Waited::StillRunning(last));
                }
                tokio::time::sleep(Duration::from_millis(500) * failures).await;
                continue;
            }
            Err(e) => return Err(e),
        };
        let watch_end = tokio::time::sleep(left);
        tokio::pin!(watch_end);
        loop {
            let event = tokio::select! {
                e = events.next() => e,
                () = &mut watch_end => None,
            };
            let Some(event) = event else { break };
            let event = match event {
                Ok(event) => event,
                Err(e) => {
                    // Cut in the middle: watch again from the last version seen.
                    failures += 1;
                    tracing::warn!(job = name, error = %e, failures, "watch cut; watching again");
                    if failures >= WATCH_FAILURES {
                        return Ok(Waited::StillRunning(last));
                    }
                    break;
                }
            };
            failures = 0;
            let object = event.get("object").cloned().unwrap_or(Value::Null);
            match event.get("type").and_then(Value::as_str) {
                Some("ADDED" | "MODIFIED")
                    if object.pointer("/metadata/uid").and_then(Value::as_str) == Some(uid) =>
                {
                    last = object;
                    if phase(&last) != Phase::Running {
                        break;
                    }
                }
                Some("DELETED")
                    if object.pointer("/metadata/uid").and_then(Value::as_str) == Some(uid) =>
                {
                    return Err(vanished(namespace, name));
                }
                Some("ERROR") => {
                    // Usually 410 Gone: the resourceVersion is too old; re-read and go on.
                    last = read_or_vanished(kube, namespace, name, uid).await?;
                    break;
                }
                _ => {}
            }
        }
    }
}

async fn read_or_vanished(
    kube: &dyn KubeApi,
    namespace: &str,
    name: &str,
    uid: &str,
) -> Result<Value, TaskError> {
    match get(kube, namespace, name).await {
        Ok(job) if job.pointer("/metadata/uid").and_then(Value::as_str) == Some(uid) => Ok(job),
        Ok(_) => Err(vanished(namespace, name)),
        Err(e) if e.name == "EKS.404" => Err(vanished(namespace, name)),
        Err(e) => Err(e),
    }
}

/// The pods of a Job (by its controller uid), as the API lists them.
///
/// # Errors
/// `EKS.<status>`, transport errors.
pub async fn pods(kube: &dyn KubeApi, namespace: &str, uid: &str) -> Result<Vec<Value>, TaskError> {
    let request = KubeRequest::get(format!("/api/v1/namespaces/{namespace}/pods"))
        .param("labelSelector", format!("controller-uid={uid}"));
    let list = kube.send(request, None).await?.ok()?.json()?;
    let mut items = list
        .get("items")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    items.sort_by(|a, b| {
        a.pointer("/metadata/name")
            .and_then(Value::as_str)
            .cmp(&b.pointer("/metadata/name").and_then(Value::as_str))
    });
    Ok(items)
}

/// Warning events the cluster recorded about the Job and its pods, newest first, at
/// most `limit`: `{object, reason, message, count, lastSeen}`. Empty when events cannot
/// be read (the worker's role may not grant them): they add to a diagnosis, never
/// replace it.
pub async fn warning_events(
    kube: &dyn KubeApi,
    namespace: &str,
    job: &str,
    pods: &[Value],
    limit: usize,
) -> Vec<Value> {
    // One list of the namespace's Warning events, bounded (a busy namespace may hold
    // thousands): the events of this Job and its pods are picked from it.
    let request = KubeRequest::get(format!("/api/v1/namespaces/{namespace}/events"))
        .param("fieldSelector", "type=Warning".to_owned())
        .param("limit", "500".to_owned());
    let read = async { kube.send(request, None).await?.ok()?.json() };
    let list: Value = match read.await {
        Ok(list) => list,
        Err(e) => {
            tracing::info!(error = %e.name, "warning events not read");
            return Vec::new();
        }
    };
    let names: Vec<&str> = std::iter::once(job)
        .chain(
            pods.iter()
                .filter_map(|p| p.pointer("/metadata/name").and_then(Value::as_str)),
        )
        .collect();
    let mut events: Vec<Value> = list
        .get("items")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter(|e| {
            e.pointer("/involvedObject/name")
                .and_then(Value::as_str)
                .is_some_and(|n| names.contains(&n))
        })
        .map(|e| {
            json!({
                "object": format!("{}/{}", e.pointer("/involvedObject/kind").and_then(Value::as_str).unwrap_or_default(), e.pointer("/involvedObject/name").and_then(Value::as_str).unwrap_or_default()),
                "reason": e["reason"], "message": e["message"], "count": e["count"],
                "lastSeen": e.get("lastTimestamp").filter(|t| !t.is_null()).or_else(|| e.get("eventTime")).cloned().unwrap_or(Value::Null),
            })
        })
        .collect();
    events.sort_by(|a, b| b["lastSeen"].as_str().cmp(&a["lastSeen"].as_str()));
    events.truncate(limit);
    events
}

/// What a failed Job's cause says: its conditions and, per failed pod, each
/// container's terminated reason and exit code.
#[must_use]
pub fn failure_summary(job: &Value, pods: &[Value]) -> Value {
    let conditions = job
        .pointer("/status/conditions")
        .cloned()
        .unwrap_or(Value::Null);
    let failed_pods: Vec<Value> = pods
        .iter()
        .filter(|p| p.pointer("/status/phase").and_then(Value::as_str) == Some("Failed"))
        .map(|p| {
            let containers: Vec<Value> = p
                .pointer("/status/containerStatuses")
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .map(|c| {
                    let t = c.pointer("/state/terminated");
                    json!({
                        "container": c["name"],
                        "exitCode": t.and_then(|t| t.get("exitCode")).cloned().unwrap_or(Value::Null),
                        "reason": t.and_then(|t| t.get("reason")).cloned().unwrap_or(Value::Null),
                        "message": t.and_then(|t| t.get("message")).cloned().unwrap_or(Value::Null),
                    })
                })
                .collect();
            json!({ "pod": p.pointer("/metadata/name").cloned().unwrap_or(Value::Null), "reason": p.pointer("/status/reason").cloned().unwrap_or(Value::Null), "containers": containers })
        })
        .collect();
    json!({
        "message": format!(
            "the Job {}/{} failed",
            job.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or_default(),
            job.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default()
        ),
        "conditions": conditions,
        "failedPods": failed_pods,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prepare_adds_labels_and_keeps_everything_else() {
        let job = json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j", "labels": {"a": "b"}}, "spec": {"futureField": {"x": 1}}});
        let p = prepare(&job, Some("token"));
        assert_eq!(p["metadata"]["labels"]["a"], "b");
        assert_eq!(p["metadata"]["labels"][MANAGED_BY_LABEL], MANAGED_BY);
        assert_eq!(p["metadata"]["labels"][TASK_LABEL], task_label("token"));
        assert_eq!(p["spec"]["futureField"]["x"], 1);
        assert_eq!(task_label("token").len(), 40);
        assert!(prepare(&job, None)["metadata"]["labels"]
            .get(TASK_LABEL)
            .is_none());
    }

    #[test]
    fn failure_target_and_success_criteria_met_are_final() {
        let with = |kind: &str| json!({"status": {"conditions": [{"type": kind, "status": "True", "lastTransitionTime": "2026-01-02T03:04:05Z"}]}});
        assert_eq!(phase(&with("FailureTarget")), Phase::Failed);
        assert_eq!(phase(&with("SuccessCriteriaMet")), Phase::Complete);
        assert_eq!(
            finished_at(&with("FailureTarget")),
            Some(std::time::UNIX_EPOCH + Duration::from_secs(1_767_323_045))
        );
        let completed = json!({"status": {"completionTime": "1970-01-01T00:00:10Z", "conditions": [{"type": "Complete", "status": "True", "lastTransitionTime": "1970-01-01T00:00:20Z"}]}});
        assert_eq!(
            finished_at(&completed),
            Some(std::time::UNIX_EPOCH + Duration::from_secs(10))
        );
        assert_eq!(finished_at(&json!({"status": {}})), None);
    }

    #[test]
    fn phase_reads_conditions() {
        assert_eq!(phase(&json!({"status": {}})), Phase::Running);
        assert_eq!(
            phase(&json!({"status": {"conditions": [{"type": "Complete", "status": "True"}]}})),
            Phase::Complete
        );
        assert_eq!(
            phase(&json!({"status": {"conditions": [{"type": "Failed", "status": "True"}]}})),
            Phase::Failed
        );
        assert_eq!(
            phase(&json!({"status": {"conditions": [{"type": "Complete", "status": "False"}]}})),
            Phase::Running
        );
    }

    #[test]
    fn failure_summary_names_failed_containers() {
        let job = json!({"metadata": {"name": "j", "namespace": "n"}, "status": {"conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]}});
        let pods = vec![
            json!({"metadata": {"name": "j-1"}, "status": {"phase": "Failed", "containerStatuses": [{"name": "main", "state": {"terminated": {"exitCode": 3, "reason": "Error"}}}]}}),
        ];
        let s = failure_summary(&job, &pods);
        assert_eq!(s["failedPods"][0]["containers"][0]["exitCode"], 3);
        assert_eq!(s["conditions"][0]["reason"], "BackoffLimitExceeded");
        assert_eq!(s["message"], "the Job n/j failed");
    }
}
