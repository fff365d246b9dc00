//! Why a Job does not progress: what holds it ([`Hold`]: pods that cannot pull their
//! image, be made, mount their volumes, be scheduled or stay up; a Job whose pods
//! cannot be created; a suspended Job), reported and, by the stuck policy, failed.

use std::time::{Duration, SystemTime};

use serde::Serialize;
use serde_json::{json, Value};

use crate::contract::error::{names, TaskError};
use crate::contract::stuck_policy::{Hold, StuckPolicy};
use crate::contract::time::rfc3339 as time_of;

/// The hold a container waiting for `reason` is in, if any (`ContainerCreating` and
/// `PodInitializing` are how every container starts: a hold only with the kubelet's
/// word that something fails, [`MOUNT_EVENTS`]).
fn waiting_hold(reason: &str) -> Option<Hold> {
    match reason {
        "ErrImagePull" | "ImagePullBackOff" | "InvalidImageName" | "ErrImageNeverPull" => {
            Some(Hold::ImagePull)
        }
        "CreateContainerConfigError" | "CreateContainerError" => Some(Hold::ContainerConfig),
        "ContainerCreating" | "PodInitializing" => Some(Hold::ContainerCreating),
        "CrashLoopBackOff" => Some(Hold::CrashLoop),
        _ => None,
    }
}

/// The kubelet's Warning events that say a pod's containers cannot be created yet: its
/// volumes cannot be attached or mounted, or its sandbox cannot be made.
const MOUNT_EVENTS: [&str; 4] = [
    "FailedMount",
    "FailedAttachVolume",
    "FailedMapVolume",
    "FailedCreatePodSandBox",
];

/// How recently a kubelet mount or sandbox Warning event must have been seen to say why
/// a pod waits now: the kubelet tries a failing mount or sandbox again within about two
/// minutes and records each failure on the same event, whose `lastSeen` moves on; but its
/// event recorder lets only one a five minutes through about the same object once 25
/// have been, so twice that.
const RECENT_EVENT: Duration = Duration::from_secs(600);

/// A container that ran this long before it crashed starts a new crash loop: the
/// kubelet resets its restart back-off after ten minutes of running.
const BACKOFF_RESET: Duration = Duration::from_secs(600);

/// The label (or annotation) by which Kueue names the queue a Job waits in.
const QUEUE_NAME: &str = "kueue.x-k8s.io/queue-name";

/// One thing that holds the Job.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    /// What kind.
    pub hold: Hold,
    /// The pod, where a pod is held (none for `FailedCreate` and `Suspended`).
    pub pod: Option<String>,
    /// The container, where it is one.
    pub container: Option<String>,
    /// Kubernetes' reason (`ImagePullBackOff`, `Unschedulable`, `FailedCreate`, …).
    pub reason: String,
    /// Kubernetes' message (for a container without one, the newest Warning event's
    /// about its pod, e.g. `FailedMount`).
    pub message: String,
    /// Since when (the pod's scheduling, a container's last crash, the condition's
    /// transition, the first event).
    #[serde(skip)]
    pub since: Option<SystemTime>,
}

impl Finding {
    /// Where: `pod p container c`, `pod p`, or `the Job`.
    fn place(&self) -> String {
        match (&self.pod, &self.container) {
            (Some(p), Some(c)) => format!("pod {p} container {c}"),
            (Some(p), None) => format!("pod {p}"),
            _ => "the Job".to_owned(),
        }
    }
}

/// What holds the Job: its own state (suspended; pods it cannot create, from its
/// Warning `events` as [`crate::task::job::warning_events`] gives them, counted only
/// while it has no pods), and each of its `pods` (as the API lists them).
#[must_use]
pub fn findings(job: &Value, pods: &[Value], events: &[Value], now: SystemTime) -> Vec<Finding> {
    let mut out = Vec::new();
    let name = job
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let created = time_of(&job["metadata"]["creationTimestamp"]);
    let suspended = job.pointer("/spec/suspend") == Some(&json!(true));
    let paused = job.pointer("/spec/parallelism") == Some(&json!(0));
    if suspended || paused {
        let queue = ["labels", "annotations"]
            .iter()
            .find_map(|m| {
                job.pointer(&format!("/metadata/{m}"))
                    .and_then(|m| m.get(QUEUE_NAME))
            })
            .and_then(Value::as_str);
        let condition = job
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .and_then(|c| {
                c.iter()
                    .find(|c| c["type"] == "Suspended" && c["status"] == "True")
            });
        let why = if suspended {
            "the Job is suspended (spec.suspend)"
        } else {
            "the Job's parallelism is 0"
        };
        out.push(Finding {
            hold: Hold::Suspended,
            pod: None,
            container: None,
            reason: if suspended {
                "JobSuspended"
            } else {
                "ParallelismZero"
            }
            .to_owned(),
            message: match queue {
                Some(q) => format!("{why}: it waits in the queue {q}"),
                None => format!("{why}: the Job controller makes no pods"),
            },
            since: condition
                .and_then(|c| time_of(&c["lastTransitionTime"]))
                .or(created),
        });
    }
    if pods.is_empty() {
        let object = format!("Job/{name}");
        // Newest first: the last is the first seen.
        let failed: Vec<&Value> = events
            .iter()
            .filter(|e| e["object"] == object.as_str() && e["reason"] == "FailedCreate")
            .collect();
        if let Some(newest) = failed.first() {
            out.push(Finding {
                hold: Hold::FailedCreate,
                pod: None,
                container: None,
                reason: "FailedCreate".to_owned(),
                message: newest["message"].as_str().unwrap_or_default().to_owned(),
                since: failed.iter().filter_map(|e| time_of(&e["firstSeen"])).min(),
            });
        }
    }
    for pod in pods {
        out.extend(pod_findings(pod, events, now));
    }
    out
}

fn pod_findings(pod: &Value, events: &[Value], now: SystemTime) -> Vec<Finding> {
    let mut out = Vec::new();
    let name = pod
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let conditions = list(pod, "/status/conditions");
    let created = time_of(&pod["metadata"]["creationTimestamp"]);
    let since_true = |kind: &str| {
        conditions
            .iter()
            .find(|c| c["type"] == kind && c["status"] == "True")
            .and_then(|c| time_of(&c["lastTransitionTime"]))
    };
    // Time unschedulable is its own hold: containers wait from the pod's scheduling.
    let scheduled = since_true("PodScheduled").or(created);
    // The Warning events about the pod, newest first: what a waiting reason alone does
    // not say.
    let object = format!("Pod/{name}");
    let about_pod: Vec<&Value> = events
        .iter()
        .filter(|e| e["object"] == object.as_str())
        .collect();
    // The kubelet's mount and sandbox failures that still repeat, and since when the
    // first of them: an older one is history (a sandbox that once failed while no IP
    // was free), not why the pod waits now.
    let mounts: Vec<&Value> = about_pod
        .iter()
        .copied()
        .filter(|e| MOUNT_EVENTS.iter().any(|r| e["reason"] == *r))
        .filter(|e| {
            time_of(&e["lastSeen"])
                .is_some_and(|t| now.duration_since(t).unwrap_or_default() <= RECENT_EVENT)
        })
        .collect();
    let mount_since = mounts.iter().filter_map(|e| time_of(&e["firstSeen"])).min();
    if let Some(c) = unscheduled(pod) {
        out.push(Finding {
            hold: Hold::Unschedulable,
            pod: Some(name.clone()),
            container: None,
            reason: c["reason"].as_str().unwrap_or("Unschedulable").to_owned(),
            message: c["message"].as_str().unwrap_or_default().to_owned(),
            since: time_of(&c["lastTransitionTime"]).or(created),
        });
    }
    // When each container could first start: an init container once the one before it
    // ended, an app container once the pod was initialized.
    let initialized = since_true("Initialized").max(scheduled);
    let inits = list(pod, "/status/initContainerStatuses");
    let apps = list(pod, "/status/containerStatuses");
    let mut ready = scheduled;
    let starts = inits.iter().map(move |cs| {
        let at = ready;
        // The next one starts once this one ended, or (a sidecar, restartPolicy
        // Always) once it started.
        ready = ready
            .max(time_of(&cs["state"]["terminated"]["finishedAt"]))
            .max(time_of(&cs["state"]["running"]["startedAt"]));
        (cs, at)
    });
    for (cs, ready) in starts.chain(apps.iter().map(|cs| (cs, initialized))) {
        let Some(waiting) = cs.pointer("/state/waiting") else {
            continue;
        };
        let reason = waiting["reason"].as_str().unwrap_or_default();
        let Some(hold) = waiting_hold(reason) else {
            continue;
        };
        let container = cs["name"].as_str().unwrap_or_default();
        let crashed = time_of(&cs["lastState"]["terminated"]["finishedAt"]);
        let (event, since) = match hold {
            // Starting, unless the kubelet says a mount fails: held since it first said
            // so; one finding per pod.
            Hold::ContainerCreating => match mounts.first() {
                Some(e) if !out.iter().any(|f: &Finding| f.hold == hold) => {
                    (Some(*e), ready.max(mount_since))
                }
                _ => continue,
            },
            Hold::CrashLoop => (
                about_pod.first().copied(),
                crash_loop_since(cs, &about_pod, ready),
            ),
            // Waiting since it could start, or since it last ended (a restart).
            _ => (about_pod.first().copied(), ready.max(crashed)),
        };
        let message = waiting["message"]
            .as_str()
            .filter(|m| !m.is_empty())
            .or_else(|| event.and_then(|e| e["message"].as_str()))
            .unwrap_or_default();
        out.push(Finding {
            hold,
            pod: Some(name.clone()),
            container: Some(container.to_owned()),
            reason: reason.to_owned(),
            message: message.to_owned(),
            since,
        });
    }
    out
}

/// Since when a container has crash looped: since the kubelet first said it backs off
/// restarting it (its `BackOff` event, repeated on one event while the loop lasts,
/// keeps its first time; however long ago it was last seen, as the container waits in
/// `CrashLoopBackOff` now), never before it could start; from its last crash when that
/// event is not in sight, or when its last run lasted [`BACKOFF_RESET`] (the kubelet
/// then starts its back-off afresh: a new loop).
fn crash_loop_since(
    cs: &Value,
    about_pod: &[&Value],
    ready: Option<SystemTime>,
) -> Option<SystemTime> {
    let last = &cs["lastState"]["terminated"];
    let crashed = time_of(&last["finishedAt"]);
    let ran = crashed
        .zip(time_of(&last["startedAt"]))
        .and_then(|(end, start)| end.duration_since(start).ok())
        .unwrap_or_default();
    if ran >= BACKOFF_RESET {
        return crashed.or(ready);
    }
    let name = cs["name"].as_str().unwrap_or_default();
    let said = format!("restarting failed container {name} ");
    let first = about_pod
        .iter()
        .filter(|e| e["reason"] == "BackOff")
        .filter(|e| e["message"].as_str().is_some_and(|m| m.contains(&said)))
        .filter_map(|e| time_of(&e["firstSeen"]))
        .min();
    match first {
        Some(first) => Some(first).max(ready),
        None => crashed.or(ready),
    }
}

/// The array at `pointer` in `v` (empty when there is none).
fn list<'a>(v: &'a Value, pointer: &str) -> &'a [Value] {
    v.pointer(pointer)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

/// The pod's `PodScheduled=False` condition: the scheduler found no node for it.
fn unscheduled(pod: &Value) -> Option<&Value> {
    list(pod, "/status/conditions")
        .iter()
        .find(|c| c["type"] == "PodScheduled" && c["status"] == "False")
}

/// Whether the Job's Warning events are needed to say what holds it: it has no pods
/// (its `FailedCreate` events), or a pod is unscheduled or has a container waiting for
/// a reason that may be a hold (its kubelet's events say which).
#[must_use]
pub fn wants_events(pods: &[Value]) -> bool {
    pods.is_empty()
        || pods.iter().any(|pod| {
            unscheduled(pod).is_some()
                || crate::task::job::container_statuses(pod).any(|cs| {
                    cs.pointer("/state/waiting/reason")
                        .and_then(Value::as_str)
                        .and_then(waiting_hold)
                        .is_some()
                })
        })
}

/// `EksTaskWorker.JobStuck` for the first finding held longer than the policy allows
/// (`Reason`: the hold's stable name).
#[must_use]
pub fn stuck(
    findings: &[Finding],
    policy: StuckPolicy,
    now: SystemTime,
    job: &str,
) -> Option<TaskError> {
    findings.iter().find_map(|f| {
        let limit = policy.limit(f.hold)?;
        let held = f.since.and_then(|s| now.duration_since(s).ok()).unwrap_or_default();
        (held >= Duration::from_secs(limit)).then(|| {
            TaskError::new(
                names::JOB_STUCK,
                json!({
                    "message": format!("the Job {job} is stuck: {} {} for {} s (limit {limit} s)", f.place(), f.reason, held.as_secs()),
                    "Reason": f.hold.reason(),
                    "pod": f.pod, "container": f.container, "reason": f.reason, "detail": f.message, "seconds": held.as_secs(),
                }),
            )
        })
    })
}

/// Logs what holds the Job, one structured line per finding, and the latest Warning
/// events (the task's span gives the execution, cluster, namespace and Job).
pub fn report(findings: &[Finding], events: &[Value]) {
    for f in findings {
        tracing::warn!(hold = f.hold.reason(), pod = f.pod.as_deref().unwrap_or(""), container = f.container.as_deref().unwrap_or(""), reason = %f.reason, detail = %f.message, "job is held");
    }
    for e in events {
        tracing::warn!(object = %e["object"], reason = %e["reason"], detail = %e["message"], count = %e["count"], "warning event");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// When the tests' findings are made.
    const NOW: u64 = 1000;

    fn at(s: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(s)
    }

    fn job() -> Value {
        json!({ "metadata": { "name": "j", "creationTimestamp": "1970-01-01T00:00:00Z" }, "spec": {} })
    }

    fn waiting(reason: &str, message: &str) -> Value {
        json!({ "metadata": { "name": "p", "creationTimestamp": "1970-01-01T00:00:00Z" }, "status": { "phase": "Pending", "containerStatuses": [{ "name": "main", "state": { "waiting": { "reason": reason, "message": message } } }] } })
    }

    #[test]
    fn each_waiting_reason_is_its_hold() {
        for (reason, hold) in [
            ("ImagePullBackOff", Some(Hold::ImagePull)),
            ("ErrImagePull", Some(Hold::ImagePull)),
            ("CreateContainerConfigError", Some(Hold::ContainerConfig)),
            ("CrashLoopBackOff", Some(Hold::CrashLoop)),
            // How every container starts: not a hold without a failing mount.
            ("ContainerCreating", None),
            ("PodInitializing", None),
        ] {
            let f = findings(&job(), &[waiting(reason, "m")], &[], at(NOW));
            assert_eq!(f.first().map(|f| f.hold), hold, "{reason}");
        }
    }

    #[test]
    fn image_pull_and_unschedulable_pods_are_found() {
        let unschedulable = json!({ "metadata": { "name": "q" }, "status": { "conditions": [{ "type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "0/3 nodes are available", "lastTransitionTime": "1970-01-01T00:00:10Z" }] } });
        let f = findings(
            &job(),
            &[
                waiting("ImagePullBackOff", "Back-off pulling image"),
                unschedulable,
                json!({ "metadata": { "name": "ok" }, "status": { "phase": "Running" } }),
            ],
            &[],
            at(NOW),
        );
        assert_eq!(f.len(), 2);
        assert_eq!(
            (f[0].hold, f[0].container.as_deref(), f[0].reason.as_str()),
            (Hold::ImagePull, Some("main"), "ImagePullBackOff")
        );
        assert_eq!((f[1].hold, f[1].since), (Hold::Unschedulable, Some(at(10))));
    }

    #[test]
    fn a_container_creating_is_held_only_by_a_failing_mount_and_says_which() {
        let mount = [
            json!({ "object": "Pod/p", "reason": "FailedMount", "message": "configmap \"c\" not found", "firstSeen": "1970-01-01T00:10:00Z", "lastSeen": "1970-01-01T00:15:00Z" }),
            // Seen again within the recorder's five minutes of a busy object's events.
            json!({ "object": "Pod/p", "reason": "FailedAttachVolume", "message": "attach", "firstSeen": "1970-01-01T00:09:00Z", "lastSeen": "1970-01-01T00:12:00Z" }),
        ];
        let other = [
            json!({ "object": "Pod/p", "reason": "BackOff", "message": "slow", "firstSeen": "1970-01-01T00:10:00Z", "lastSeen": "1970-01-01T00:15:00Z" }),
        ];
        // A sandbox that failed once, long ago (no IP was free), then a long init
        // container: history, not why the pod waits now.
        let old = [
            json!({ "object": "Pod/p", "reason": "FailedCreatePodSandBox", "message": "no IP", "firstSeen": "1970-01-01T00:00:30Z", "lastSeen": "1970-01-01T00:01:00Z" }),
        ];
        for reason in ["ContainerCreating", "PodInitializing"] {
            let f = findings(&job(), &[waiting(reason, "")], &mount, at(NOW));
            assert_eq!(
                (f.len(), f[0].hold, f[0].message.as_str(), f[0].since),
                (
                    1,
                    Hold::ContainerCreating,
                    "configmap \"c\" not found",
                    Some(at(540))
                ),
                "{reason}: held since the kubelet first said so"
            );
            assert!(findings(&job(), &[waiting(reason, "")], &other, at(NOW)).is_empty());
            assert!(findings(&job(), &[waiting(reason, "")], &old, at(NOW)).is_empty());
            assert!(
                wants_events(&[waiting(reason, "")]),
                "its events say if it is held"
            );
        }
        let running = json!({ "metadata": { "name": "p" }, "status": { "phase": "Running" } });
        assert!(!wants_events(&[running]));
        assert!(wants_events(&[]), "no pods: the Job's own events");
    }

    #[test]
    fn containers_wait_from_when_they_could_start() {
        let mut pod = waiting("ImagePullBackOff", "m");
        pod["status"]["conditions"] = json!([{ "type": "PodScheduled", "status": "True", "lastTransitionTime": "1970-01-01T00:01:00Z" }]);
        assert_eq!(
            findings(&job(), &[pod.clone()], &[], at(NOW))[0].since,
            Some(at(60)),
            "from the pod's scheduling"
        );
        // After a long init container: from the pod's initialization.
        pod["status"]["conditions"] = json!([
            { "type": "PodScheduled", "status": "True", "lastTransitionTime": "1970-01-01T00:01:00Z" },
            { "type": "Initialized", "status": "True", "lastTransitionTime": "1970-01-01T00:10:00Z" },
        ]);
        assert_eq!(
            findings(&job(), &[pod.clone()], &[], at(NOW))[0].since,
            Some(at(600))
        );
        // An init container after another: from the other's end.
        pod["status"]["initContainerStatuses"] = json!([
            { "name": "first", "state": { "terminated": { "exitCode": 0, "finishedAt": "1970-01-01T00:08:20Z" } } },
            { "name": "second", "state": { "waiting": { "reason": "ErrImagePull" } } },
        ]);
        let f = findings(&job(), &[pod.clone()], &[], at(NOW));
        assert_eq!(
            (f[0].container.as_deref(), f[0].since),
            (Some("second"), Some(at(500)))
        );
        // After a sidecar (restartPolicy Always): from its start.
        pod["status"]["initContainerStatuses"][0] = json!({ "name": "proxy", "state": { "running": { "startedAt": "1970-01-01T00:08:20Z" } } });
        let f = findings(&job(), &[pod.clone()], &[], at(NOW));
        assert_eq!(f[0].since, Some(at(500)));
        // A restarted container: from its last end.
        pod["status"]["containerStatuses"][0] = json!({ "name": "main", "restartCount": 1,
            "state": { "waiting": { "reason": "CreateContainerConfigError" } },
            "lastState": { "terminated": { "exitCode": 1, "finishedAt": "1970-01-01T00:11:40Z" } } });
        let f = findings(&job(), &[pod], &[], at(NOW));
        assert_eq!(
            (f[1].hold, f[1].since),
            (Hold::ContainerConfig, Some(at(700)))
        );
    }

    #[test]
    fn a_crash_loop_is_held_from_its_first_back_off() {
        let crash_loop = |started: &str| {
            let mut pod = waiting(
                "CrashLoopBackOff",
                "back-off 5m0s restarting failed container=main",
            );
            pod["status"]["containerStatuses"][0]["lastState"] = json!({ "terminated": { "exitCode": 1, "startedAt": started, "finishedAt": "1970-01-01T02:00:00Z" } });
            pod
        };
        let back_off = [
            // Last let through twelve minutes ago: the recorder lets one a five minutes through
            // about a busy object, and the loop goes on.
            json!({ "object": "Pod/p", "reason": "BackOff", "message": "Back-off restarting failed container main in pod p_ns(u)", "firstSeen": "1970-01-01T01:36:40Z", "lastSeen": "1970-01-01T01:48:00Z" }),
        ];
        let another = [
            json!({ "object": "Pod/p", "reason": "BackOff", "message": "Back-off restarting failed container main-2 in pod p_ns(u)", "firstSeen": "1970-01-01T01:00:00Z", "lastSeen": "1970-01-01T02:00:00Z" }),
        ];
        let now = at(7210);
        let policy = StuckPolicy::default().with(Hold::CrashLoop, Some(60));
        // Runs of 10 s between back-offs: a loop since its first back-off, 1400 s before
        // its last crash.
        let f = findings(
            &job(),
            &[crash_loop("1970-01-01T01:59:50Z")],
            &back_off,
            now,
        );
        assert_eq!((f[0].hold, f[0].since), (Hold::CrashLoop, Some(at(5800))));
        assert!(stuck(&f, policy, now, "j").is_some(), "looping for 1410 s");
        // Without its event in sight: from its last crash.
        for events in [&[][..], &another[..]] {
            let f = findings(&job(), &[crash_loop("1970-01-01T01:59:50Z")], events, now);
            assert_eq!(f[0].since, Some(at(7200)));
        }
        // One crash after a run of an hour: a new loop, from that crash.
        let f = findings(
            &job(),
            &[crash_loop("1970-01-01T01:00:00Z")],
            &back_off,
            now,
        );
        assert_eq!(f[0].since, Some(at(7200)));
        assert!(
            stuck(&f, policy, now, "j").is_none(),
            "one crash after a long run"
        );
        assert!(
            stuck(&f, policy, at(7260), "j").is_some(),
            "a back-off of a minute"
        );
    }

    #[test]
    fn a_job_without_pods_is_held_by_its_failed_creates() {
        let events = [
            json!({ "object": "Job/j", "reason": "FailedCreate", "message": "newest", "firstSeen": "1970-01-01T00:00:30Z" }),
            json!({ "object": "Job/j", "reason": "FailedCreate", "message": "older", "firstSeen": "1970-01-01T00:00:20Z" }),
            json!({ "object": "Job/other", "reason": "FailedCreate", "message": "x", "firstSeen": "1970-01-01T00:00:01Z" }),
        ];
        let f = findings(&job(), &[], &events, at(NOW));
        assert_eq!(f.len(), 1);
        assert_eq!(
            (f[0].hold, f[0].message.as_str(), f[0].since),
            (Hold::FailedCreate, "newest", Some(at(20)))
        );
        assert!(
            findings(
                &job(),
                &[json!({ "metadata": { "name": "p" } })],
                &events,
                at(NOW)
            )
            .is_empty(),
            "a Job that has pods is not held by its old failed creates"
        );
        let policy = StuckPolicy::default().with(Hold::FailedCreate, Some(30));
        assert!(stuck(&f, policy, at(49), "n/j").is_none());
        let e = stuck(&f, policy, at(50), "n/j").unwrap_or_else(|| panic!("stuck"));
        assert_eq!(
            (e.cause["Reason"].as_str(), e.cause["pod"].is_null()),
            (Some("FailedCreate"), true)
        );
    }

    #[test]
    fn a_suspended_job_is_held_and_names_its_queue_but_is_not_failed_by_default() {
        let mut suspended = job();
        suspended["spec"]["suspend"] = json!(true);
        suspended["metadata"]["labels"] = json!({ QUEUE_NAME: "team-a" });
        suspended["status"] = json!({ "conditions": [{ "type": "Suspended", "status": "True", "lastTransitionTime": "1970-01-01T00:00:05Z" }] });
        let f = findings(&suspended, &[], &[], at(NOW));
        assert_eq!((f[0].hold, f[0].since), (Hold::Suspended, Some(at(5))));
        assert!(f[0].message.contains("team-a"), "{}", f[0].message);
        let all_but_suspended = Hold::ALL
            .iter()
            .filter(|h| **h != Hold::Suspended)
            .fold(StuckPolicy::default(), |p, h| p.with(*h, Some(0)));
        assert!(stuck(&f, all_but_suspended, at(100_000), "j").is_none());
        let e = stuck(
            &f,
            StuckPolicy::default().with(Hold::Suspended, Some(60)),
            at(65),
            "j",
        );
        assert_eq!(
            e.map(|e| e.cause["Reason"].clone()),
            Some(json!("Suspended"))
        );
        let mut paused = job();
        paused["spec"]["parallelism"] = json!(0);
        assert_eq!(
            findings(&paused, &[], &[], at(NOW))[0].reason,
            "ParallelismZero"
        );
    }

    #[test]
    fn the_policy_decides_when_stuck_is_stuck() {
        let f = findings(&job(), &[waiting("ImagePullBackOff", "m")], &[], at(NOW));
        assert!(
            stuck(&f, StuckPolicy::default(), at(10_000), "j").is_none(),
            "off by default, as native"
        );
        let policy = StuckPolicy::default().with(Hold::ImagePull, Some(60));
        assert!(stuck(&f, policy, at(59), "j").is_none());
        let e = stuck(&f, policy, at(61), "j").unwrap_or_else(|| panic!("stuck"));
        assert_eq!(e.name, names::JOB_STUCK);
        assert_eq!(e.cause["container"], "main");
        assert_eq!(e.cause["reason"], "ImagePullBackOff");
        assert_eq!(e.cause["Reason"], "ImagePull");
    }
}
