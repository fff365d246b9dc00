//! Why a Job does not progress: pods that cannot pull their image or be scheduled,
//! reported and, by the stuck policy, failed.

use std::time::{Duration, SystemTime};

use serde::Serialize;
use serde_json::{json, Value};

use crate::contract::error::{names, TaskError};
use crate::contract::stuck_policy::StuckPolicy;
use crate::contract::time::rfc3339 as time_of;

/// Container waiting reasons that mean the container cannot start.
const START_FAILURES: [&str; 6] = [
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
    "ErrImageNeverPull",
];

/// What holds a pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Kind {
    /// A container cannot start: its image cannot be pulled, or its config is wrong.
    ContainerStart,
    /// The pod cannot be scheduled.
    Unschedulable,
    /// A container keeps crashing (reported; the Job's backoff limit decides).
    CrashLoop,
}

/// One thing that holds a pod.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    /// What kind.
    pub kind: Kind,
    /// The pod.
    pub pod: String,
    /// The container, where it is one.
    pub container: Option<String>,
    /// Kubernetes' reason (`ImagePullBackOff`, `Unschedulable`, …).
    pub reason: String,
    /// Kubernetes' message.
    pub message: String,
    /// Since when (the pod's creation, or the condition's transition).
    #[serde(skip)]
    pub since: Option<SystemTime>,
}

/// What holds each of `pods` (pods as the API lists them).
#[must_use]
pub fn findings(pods: &[Value]) -> Vec<Finding> {
    let mut out = Vec::new();
    for pod in pods {
        let name = pod
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let created = time_of(&pod["metadata"]["creationTimestamp"]);
        for c in pod
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            if c["type"] == "PodScheduled" && c["status"] == "False" {
                out.push(Finding {
                    kind: Kind::Unschedulable,
                    pod: name.clone(),
                    container: None,
                    reason: c["reason"].as_str().unwrap_or("Unschedulable").to_owned(),
                    message: c["message"].as_str().unwrap_or_default().to_owned(),
                    since: time_of(&c["lastTransitionTime"]).or(created),
                });
            }
        }
        let statuses = ["/status/initContainerStatuses", "/status/containerStatuses"];
        for cs in statuses
            .iter()
            .filter_map(|p| pod.pointer(p).and_then(Value::as_array))
            .flatten()
        {
            let Some(waiting) = cs.pointer("/state/waiting") else {
                continue;
            };
            let reason = waiting["reason"].as_str().unwrap_or_default();
            let kind = if START_FAILURES.contains(&reason) {
                Kind::ContainerStart
            } else if reason == "CrashLoopBackOff" {
                Kind::CrashLoop
            } else {
                continue;
            };
            out.push(Finding {
                kind,
                pod: name.clone(),
                container: cs["name"].as_str().map(str::to_owned),
                reason: reason.to_owned(),
                message: waiting["message"].as_str().unwrap_or_default().to_owned(),
                since: created,
            });
        }
    }
    out
}

/// `EksTaskWorker.JobStuck` for the first finding held longer than the policy allows.
#[must_use]
pub fn stuck(
    findings: &[Finding],
    policy: StuckPolicy,
    now: SystemTime,
    job: &str,
) -> Option<TaskError> {
    findings.iter().find_map(|f| {
        let limit = match f.kind {
            Kind::ContainerStart => policy.image_pull_seconds?,
            Kind::Unschedulable => policy.unschedulable_seconds?,
            Kind::CrashLoop => return None,
        };
        let held = f.since.and_then(|s| now.duration_since(s).ok()).unwrap_or_default();
        (held >= Duration::from_secs(limit)).then(|| {
            TaskError::new(
                names::JOB_STUCK,
                json!({
                    "message": format!("the Job {job} is stuck: pod {}{} {} for {} s (limit {limit} s)", f.pod, f.container.as_ref().map(|c| format!(" container {c}")).unwrap_or_default(), f.reason, held.as_secs()),
                    "pod": f.pod, "container": f.container, "reason": f.reason, "detail": f.message, "seconds": held.as_secs(),
                }),
            )
        })
    })
}

/// Logs what holds the Job's pods, one structured line per finding, and the latest
/// Warning events (the task's span gives the execution, cluster, namespace and Job).
pub fn report(findings: &[Finding], events: &[Value]) {
    for f in findings {
        tracing::warn!(pod = %f.pod, container = f.container.as_deref().unwrap_or(""), reason = %f.reason, message = %f.message, "job is held");
    }
    for e in events {
        tracing::warn!(object = %e["object"], reason = %e["reason"], message = %e["message"], count = %e["count"], "warning event");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(s)
    }

    fn pulling() -> Value {
        json!({ "metadata": { "name": "p", "creationTimestamp": "1970-01-01T00:00:00Z" }, "status": { "phase": "Pending", "containerStatuses": [{ "name": "main", "state": { "waiting": { "reason": "ImagePullBackOff", "message": "Back-off pulling image \"nope\"" } } }] } })
    }

    #[test]
    fn image_pull_and_unschedulable_pods_are_found() {
        let unschedulable = json!({ "metadata": { "name": "q" }, "status": { "conditions": [{ "type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "0/3 nodes are available", "lastTransitionTime": "1970-01-01T00:00:10Z" }] } });
        let f = findings(&[
            pulling(),
            unschedulable,
            json!({ "metadata": { "name": "ok" }, "status": { "phase": "Running" } }),
        ]);
        assert_eq!(f.len(), 2);
        assert_eq!(
            (f[0].kind, f[0].container.as_deref(), f[0].reason.as_str()),
            (Kind::ContainerStart, Some("main"), "ImagePullBackOff")
        );
        assert_eq!((f[1].kind, f[1].since), (Kind::Unschedulable, Some(at(10))));
    }

    #[test]
    fn the_policy_decides_when_stuck_is_stuck() {
        let f = findings(&[pulling()]);
        assert!(
            stuck(&f, StuckPolicy::default(), at(10_000), "j").is_none(),
            "off by default, as native"
        );
        let policy = StuckPolicy {
            image_pull_seconds: Some(60),
            unschedulable_seconds: None,
        };
        assert!(stuck(&f, policy, at(59), "j").is_none());
        let e = stuck(&f, policy, at(61), "j").unwrap_or_else(|| panic!("stuck"));
        assert_eq!(e.name, names::JOB_STUCK);
        assert_eq!(e.cause["container"], "main");
        assert_eq!(e.cause["reason"], "ImagePullBackOff");
        assert_eq!(
            StuckPolicy {
                image_pull_seconds: None,
                unschedulable_seconds: Some(5)
            }
            .or(policy),
            StuckPolicy {
                image_pull_seconds: Some(60),
                unschedulable_seconds: Some(5)
            }
        );
    }
}
