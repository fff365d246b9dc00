//! Every way a Job fails or waits, end to end: state machines in moto, their tasks done
//! by the real binaries on the local Lambda platform, Jobs run by the real API server
//! and controller-manager, pods by the pod simulator. Each case ends with the
//! documented error, the cause's `Reason` a state machine can branch on, and what a
//! person needs to act; a suspended Job keeps its task waiting, reported.

// Test helpers fail the test by panicking.
#![allow(clippy::panic)]

use std::panic::AssertUnwindSafe;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;
use serde_json::{json, Value};
use worker::ports::kube::KubeRequest;
use world_tests::{
    first_pod_logs, function_output, send, sim_job, unique, until_job, Platform, World,
};

/// Runs `job` through a run-job state whose Catch takes every error; returns the
/// execution's status, its output and, when caught, the error's name and parsed cause.
async fn run(
    world: &World,
    name: &str,
    job: Value,
    extra: Value,
    within: Duration,
) -> (String, Value, String, Value) {
    let mut payload = world.job_payload(job);
    for (k, v) in extra.as_object().cloned().unwrap_or_default() {
        payload[k] = v;
    }
    let catch = json!({ "Catch": [{ "ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Caught" }] });
    let (_, status, output, error) = world
        .run_state_machine(
            name,
            &world.run_job_machine(payload, catch),
            &json!({}),
            within,
        )
        .await
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(status, "SUCCEEDED", "{name}: {error:?}");
    let output: Value = serde_json::from_str(&output.unwrap_or_default()).unwrap_or_default();
    let error = output["error"]["Error"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let cause =
        serde_json::from_str(output["error"]["Cause"].as_str().unwrap_or("{}")).unwrap_or_default();
    (status, output, error, cause)
}

/// `job`'s pod template spec, changed by `change`.
fn with_pod_spec(mut job: Value, change: impl FnOnce(&mut Value)) -> Value {
    change(&mut job["spec"]["template"]["spec"]);
    job
}

fn says(cause: &Value, field: &str, part: &str) -> bool {
    cause[field].as_str().is_some_and(|s| s.contains(part))
}

/// Pods the Job controller cannot create (a service account that does not exist: the
/// admission plugin refuses each pod): no pod ever exists, and the Job's own
/// `FailedCreate` events say why.
async fn failed_create(world: &World) {
    let name = unique("held-create");
    let mut job = with_pod_spec(sim_job(&name, &["main"], json!({}), 1), |spec| {
        spec["serviceAccountName"] = json!("no-such-account");
    });
    // A TTL under the worker's floor: held while the worker follows the Job.
    job["spec"]["ttlSecondsAfterFinished"] = json!(30);
    let policy = json!({ "StuckPolicy": { "FailedCreateSeconds": 2 } });
    let (_, _, error, cause) = run(world, &name, job, policy, Duration::from_secs(90)).await;
    assert_eq!(error, "EksTaskWorker.JobStuck", "{cause}");
    assert_eq!(cause["Reason"], "FailedCreate", "{cause}");
    assert!(cause["pod"].is_null(), "{cause}");
    assert!(says(&cause, "detail", "no-such-account"), "{cause}");
    // Nobody follows it any more: its own TTL is back.
    let admin = world.admin_kube().unwrap_or_else(|e| panic!("{e}"));
    let path = format!(
        "/apis/batch/v1/namespaces/{}/jobs/{name}",
        world.namespace()
    );
    let r = send(&admin, KubeRequest::get(path))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let left: Value = serde_json::from_slice(&r.body).unwrap_or_default();
    assert_eq!(left["spec"]["ttlSecondsAfterFinished"], 30, "{left}");
    let kept = "/metadata/annotations/eks-task-worker.io~1ttl-seconds-after-finished";
    assert!(left.pointer(kept).is_none(), "{left}");
}

/// An image that cannot be pulled, found by the poller (the inline wait of 1 s ends
/// first), and a pod that cannot be scheduled, found inline.
async fn image_pull_and_unschedulable(world: &World) {
    let name = unique("held-pull");
    let job = sim_job(
        &name,
        &["main"],
        json!({ "sim.eks-task-worker.io/image-pull-error": "true" }),
        1,
    );
    let policy = json!({ "StuckPolicy": { "ImagePullSeconds": 3 }, "InlineWaitSeconds": 1 });
    let (_, _, error, cause) = run(world, &name, job, policy, Duration::from_secs(90)).await;
    assert_eq!(error, "EksTaskWorker.JobStuck", "{cause}");
    assert_eq!(
        (&cause["Reason"], &cause["reason"], &cause["container"]),
        (
            &json!("ImagePull"),
            &json!("ImagePullBackOff"),
            &json!("main")
        ),
        "{cause}"
    );
    // The poller writes its line once Step Functions took the answer: it may come a
    // moment after the execution ended.
    let by_poller = || {
        function_output().iter().any(|(file, text)| {
            file.starts_with("poller")
                && text.lines().any(|l| {
                    l.contains("task answered")
                        && l.contains("EksTaskWorker.JobStuck")
                        && l.contains(&name)
                })
        })
    };
    let mut answered = by_poller();
    for _ in 0..20 {
        if answered {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        answered = by_poller();
    }
    assert!(answered, "{name}: not answered by the poller");

    let name = unique("held-sched");
    let job = sim_job(
        &name,
        &["main"],
        json!({ "sim.eks-task-worker.io/unschedulable": "true" }),
        1,
    );
    let policy = json!({ "StuckPolicy": { "UnschedulableSeconds": 2 } });
    let (_, _, error, cause) = run(world, &name, job, policy, Duration::from_secs(90)).await;
    assert_eq!(error, "EksTaskWorker.JobStuck", "{cause}");
    assert_eq!(
        (&cause["Reason"], &cause["reason"]),
        (&json!("Unschedulable"), &json!("Unschedulable")),
        "{cause}"
    );
    assert!(says(&cause, "detail", "nodes are available"), "{cause}");
}

/// A volume whose ConfigMap does not exist: the pod stays in `ContainerCreating`, and
/// the kubelet's `FailedMount` event says which.
async fn container_creating(world: &World) {
    let name = unique("held-mount");
    let missing = format!("{name}-settings");
    let job = with_pod_spec(sim_job(&name, &["main"], json!({}), 1), |spec| {
        spec["volumes"] = json!([{ "name": "settings", "configMap": { "name": missing } }]);
        spec["containers"][0]["volumeMounts"] =
            json!([{ "name": "settings", "mountPath": "/etc/settings" }]);
    });
    let policy = json!({ "StuckPolicy": { "ContainerCreatingSeconds": 2 } });
    let (_, _, error, cause) = run(world, &name, job, policy, Duration::from_secs(90)).await;
    assert_eq!(error, "EksTaskWorker.JobStuck", "{cause}");
    assert_eq!(
        (&cause["Reason"], &cause["reason"], &cause["container"]),
        (
            &json!("ContainerCreating"),
            &json!("ContainerCreating"),
            &json!("main")
        ),
        "{cause}"
    );
    assert!(
        says(
            &cause,
            "detail",
            &format!("configmap \"{missing}\" not found")
        ),
        "{cause}"
    );

    // In a pod with init containers every container waits in PodInitializing.
    let name = unique("held-mount-init");
    let missing = format!("{name}-settings");
    let job = with_pod_spec(sim_job(&name, &["main"], json!({}), 1), |spec| {
        spec["volumes"] = json!([{ "name": "settings", "secret": { "secretName": missing } }]);
        spec["initContainers"] = json!([{ "name": "setup", "image": "busybox:1.36",
            "volumeMounts": [{ "name": "settings", "mountPath": "/etc/settings" }] }]);
    });
    let policy = json!({ "StuckPolicy": { "ContainerCreatingSeconds": 2 } });
    let (_, _, error, cause) = run(world, &name, job, policy, Duration::from_secs(90)).await;
    assert_eq!(error, "EksTaskWorker.JobStuck", "{cause}");
    assert_eq!(
        (&cause["Reason"], &cause["reason"]),
        (&json!("ContainerCreating"), &json!("PodInitializing")),
        "{cause}"
    );
    let secret = format!("secret \"{missing}\" not found");
    assert!(says(&cause, "detail", &secret), "{cause}");
}

/// An env var from a Secret that does not exist: `CreateContainerConfigError`.
async fn container_config(world: &World) {
    let name = unique("held-config");
    let missing = format!("{name}-credentials");
    let job = with_pod_spec(sim_job(&name, &["main"], json!({}), 1), |spec| {
        spec["containers"][0]["env"] = json!([{ "name": "PASSWORD", "valueFrom": { "secretKeyRef": { "name": missing, "key": "password" } } }]);
    });
    let policy = json!({ "StuckPolicy": { "ContainerConfigSeconds": 2 } });
    let (_, _, error, cause) = run(world, &name, job, policy, Duration::from_secs(90)).await;
    assert_eq!(error, "EksTaskWorker.JobStuck", "{cause}");
    assert_eq!(
        (&cause["Reason"], &cause["reason"]),
        (
            &json!("ContainerConfig"),
            &json!("CreateContainerConfigError")
        ),
        "{cause}"
    );
    assert!(
        says(&cause, "detail", &format!("secret \"{missing}\" not found")),
        "{cause}"
    );
}

/// restartPolicy OnFailure and a container that keeps failing: `CrashLoopBackOff`,
/// failed by the policy before the backoff limit ends the Job.
async fn crash_loop(world: &World) {
    let name = unique("held-crash");
    let mut job = with_pod_spec(
        sim_job(
            &name,
            &["main"],
            json!({ "sim.eks-task-worker.io/exit-code": "1" }),
            1,
        ),
        |spec| spec["restartPolicy"] = json!("OnFailure"),
    );
    job["spec"]["backoffLimit"] = json!(6);
    // Longer than one back-off (the simulator's are 10 s): the loop is counted from its
    // first back-off, not from its last crash.
    let policy = json!({ "StuckPolicy": { "CrashLoopSeconds": 15 } });
    let (_, _, error, cause) = run(world, &name, job, policy, Duration::from_secs(90)).await;
    assert_eq!(error, "EksTaskWorker.JobStuck", "{cause}");
    assert_eq!(
        (&cause["Reason"], &cause["reason"]),
        (&json!("CrashLoop"), &json!("CrashLoopBackOff")),
        "{cause}"
    );
}

/// Init containers: their logs come back beside the app containers' (a map of their
/// own), and one that fails is named in the failure, with its exit code and log.
async fn init_containers(world: &World) {
    let name = unique("init-ok");
    let job = with_pod_spec(
        sim_job(
            &name,
            &["main"],
            json!({ "sim.eks-task-worker.io/log.prepare": "schema migrated\n", "sim.eks-task-worker.io/log.main": "served\n" }),
            1,
        ),
        |spec| spec["initContainers"] = json!([{ "name": "prepare", "image": "busybox:1.36" }]),
    );
    let (_, output, error, _) = run(world, &name, job, json!({}), Duration::from_secs(60)).await;
    assert_eq!(error, "", "{output}");
    let pod = first_pod_logs(&output);
    assert_eq!(
        (
            &pod["initContainers"]["prepare"]["log"],
            &pod["containers"]["main"]["log"]
        ),
        (&json!("schema migrated\n"), &json!("served\n")),
        "{output}"
    );

    let name = unique("init-fail");
    let job = with_pod_spec(
        sim_job(
            &name,
            &["main"],
            json!({ "sim.eks-task-worker.io/exit-code.prepare": "2", "sim.eks-task-worker.io/log.prepare": "no schema\n" }),
            1,
        ),
        |spec| spec["initContainers"] = json!([{ "name": "prepare", "image": "busybox:1.36" }]),
    );
    let (_, _, error, cause) = run(world, &name, job, json!({}), Duration::from_secs(60)).await;
    assert_eq!(error, "EksTaskWorker.JobFailed", "{cause}");
    assert_eq!(
        (&cause["Reason"], &cause["ExitCodes"]),
        (&json!("BackoffLimitExceeded"), &json!([2])),
        "{cause}"
    );
    let failed = &cause["failedPods"][0]["containers"];
    assert!(
        failed
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c["container"] == "prepare"
                && c["initContainer"] == true
                && c["exitCode"] == 2)),
        "{cause}"
    );
    let tails = cause["logTails"].as_array().cloned().unwrap_or_default();
    assert!(
        tails.iter().any(|t| t["container"] == "prepare"
            && t["initContainer"] == true
            && t["log"] == "no schema\n"),
        "{cause}"
    );
}

/// The failure reasons the controller and the pods give: a deadline, a container
/// killed for memory, an evicted pod.
async fn failure_reasons(world: &World) {
    let name = unique("reason-deadline");
    let mut job = sim_job(
        &name,
        &["main"],
        json!({ "sim.eks-task-worker.io/run-seconds": "60" }),
        1,
    );
    job["spec"]["activeDeadlineSeconds"] = json!(2);
    let (_, _, error, cause) = run(world, &name, job, json!({}), Duration::from_secs(60)).await;
    assert_eq!(
        (error.as_str(), &cause["Reason"]),
        ("EksTaskWorker.JobFailed", &json!("DeadlineExceeded")),
        "{cause}"
    );

    let name = unique("reason-oom");
    let job = sim_job(
        &name,
        &["main"],
        json!({ "sim.eks-task-worker.io/oom-killed": "true" }),
        1,
    );
    let (_, _, error, cause) = run(world, &name, job, json!({}), Duration::from_secs(60)).await;
    assert_eq!(
        (error.as_str(), &cause["Reason"], &cause["ExitCodes"]),
        (
            "EksTaskWorker.JobFailed",
            &json!("OOMKilled"),
            &json!([137])
        ),
        "{cause}"
    );

    let name = unique("reason-evicted");
    let job = sim_job(
        &name,
        &["main"],
        json!({ "sim.eks-task-worker.io/evicted": "true" }),
        1,
    );
    let (_, _, error, cause) = run(world, &name, job, json!({}), Duration::from_secs(60)).await;
    assert_eq!(
        (error.as_str(), &cause["Reason"]),
        ("EksTaskWorker.JobFailed", &json!("Evicted")),
        "{cause}"
    );
    assert_eq!(cause["failedPods"][0]["reason"], "Evicted", "{cause}");
}

/// A Job whose only pod cannot pull its image and whose `activeDeadlineSeconds` (8 s)
/// ends it before an inline slice or a production poll would: it fails
/// `DeadlineExceeded`, and the Job controller deletes its pod, often before the answer
/// is made. The cause still says what held the pod: its Warning events outlive it. Four
/// at once: one answered inline (its pod often still terminating), three handed off
/// after 1 s and answered by a poll (the test curve's, seconds apart: their pods are
/// mostly gone by then), so that some are answered after their pod is gone.
async fn deadline_while_pulling(world: &World) {
    let one = |i: usize| async move {
        let handed_off = if i > 1 {
            json!({ "InlineWaitSeconds": 1 })
        } else {
            json!({})
        };
        let name = unique(&format!("deadline-pull-{i}"));
        let mut job = sim_job(
            &name,
            &["main"],
            json!({ "sim.eks-task-worker.io/image-pull-error": "true" }),
            1,
        );
        job["spec"]["activeDeadlineSeconds"] = json!(8);
        let (_, _, error, cause) =
            run(world, &name, job, handed_off, Duration::from_secs(90)).await;
        assert_eq!(
            (error.as_str(), &cause["Reason"]),
            ("EksTaskWorker.JobFailed", &json!("DeadlineExceeded")),
            "{cause}"
        );
        let pulled = cause["warningEvents"].as_array().is_some_and(|events| {
            events.iter().any(|e| {
                e["object"]
                    .as_str()
                    .is_some_and(|o| o.starts_with(&format!("Pod/{name}-")))
                    && e["message"]
                        .as_str()
                        .is_some_and(|m| m.contains("Failed to pull image"))
            })
        });
        assert!(
            pulled,
            "the cause says the pod could not pull its image: {cause}"
        );
    };
    futures::future::join_all((1..=4).map(one)).await;
}

/// A Job that makes no pods by design (parallelism 0: the local API server, v1.20,
/// predates `spec.suspend`, which takes the same path) keeps its task waiting through
/// the poller, each poll saying why; it runs once let go. With `SuspendedSeconds` it
/// fails as stuck.
async fn suspended(world: &World) {
    let name = unique("held-suspended");
    let mut job = sim_job(&name, &["main"], json!({}), 1);
    job["spec"]["parallelism"] = json!(0);
    let mut payload = world.job_payload(job.clone());
    payload["InlineWaitSeconds"] = json!(2);
    let execution = world
        .start_state_machine(
            &name,
            &world.run_job_machine(payload, json!({ "HeartbeatSeconds": 60 })),
            &json!({}),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // Handed to the poller, which says at each poll what holds the Job: three polls
    // (2, 2, 3 s apart on the test's curve), the task waiting all along.
    let mut reported = 0;
    for _ in 0..90 {
        reported = function_output()
            .iter()
            .filter(|(file, _)| file.starts_with("poller"))
            .flat_map(|(_, text)| text.lines().map(str::to_owned).collect::<Vec<_>>())
            .filter(|l| {
                l.contains("job is held")
                    && l.contains("Suspended")
                    && l.contains("ParallelismZero")
                    && l.contains(&name)
            })
            .count();
        if reported >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        reported >= 3,
        "{reported} poller lines say the Job {name} is held"
    );

    let still = world
        .execution_end(&execution, Duration::from_secs(1))
        .await;
    assert!(
        still.is_err(),
        "{name}: the task of a suspended Job ended: {still:?}"
    );
    // Let go: it runs, and the task succeeds.
    let admin = world.admin_kube().unwrap_or_else(|e| panic!("{e}"));
    let patch = KubeRequest {
        method: http::Method::PATCH,
        path: format!(
            "/apis/batch/v1/namespaces/{}/jobs/{name}",
            world.namespace()
        ),
        query: Vec::new(),
        body: Some((
            json!({ "spec": { "parallelism": 1 } })
                .to_string()
                .into_bytes(),
            "application/merge-patch+json",
        )),
    };
    let r = send(&admin, patch).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.status, 200, "{:?}", r.body);
    let (status, _, error) = world
        .execution_end(&execution, Duration::from_secs(90))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(status, "SUCCEEDED", "{error:?}");

    let name = unique("held-suspended-policy");
    let mut job = sim_job(&name, &["main"], json!({}), 1);
    job["spec"]["parallelism"] = json!(0);
    let policy = json!({ "StuckPolicy": { "SuspendedSeconds": 2 } });
    let (_, _, error, cause) = run(world, &name, job, policy, Duration::from_secs(90)).await;
    assert_eq!(
        (error.as_str(), &cause["Reason"]),
        ("EksTaskWorker.JobStuck", &json!("Suspended")),
        "{cause}"
    );
}

/// A Job whose `ttlSecondsAfterFinished` (0) is shorter than the next poll: the worker
/// holds it until it has answered (its result and logs, through the poller), then gives
/// it its own TTL back, and Kubernetes deletes it.
async fn ttl_shorter_than_a_poll(world: &World) {
    let name = unique("ttl-short");
    let mut job = sim_job(
        &name,
        &["main"],
        json!({ "sim.eks-task-worker.io/run-seconds": "3", "sim.eks-task-worker.io/log": "done early\n" }),
        1,
    );
    job["spec"]["ttlSecondsAfterFinished"] = json!(0);
    let extra = json!({ "InlineWaitSeconds": 1 });
    let (_, output, error, cause) = run(world, &name, job, extra, Duration::from_secs(90)).await;
    assert_eq!(error, "", "not JobVanished: {cause}");
    assert_eq!(output["status"]["succeeded"], 1, "{output}");
    let pod = first_pod_logs(&output);
    assert_eq!(pod["containers"]["main"]["log"], "done early\n", "{output}");
    // Its own TTL back, the Job is deleted by Kubernetes.
    let kube = world.admin_kube().unwrap_or_else(|e| panic!("{e}"));
    until_job(
        &kube,
        &world.namespace(),
        &name,
        Duration::from_secs(30),
        |j| j.is_none(),
    )
    .await
    .unwrap_or_else(|e| panic!("{name}: still there after its answer: {e}"));
}

#[tokio::test]
async fn every_way_a_job_fails_or_waits_is_named() {
    let world = World::get();
    let _platform = Platform::start();
    let w = &world;
    let cases: Vec<(&str, BoxFuture<'_, ()>)> = vec![
        ("failed_create", failed_create(w).boxed()),
        (
            "image_pull_and_unschedulable",
            image_pull_and_unschedulable(w).boxed(),
        ),
        ("container_creating", container_creating(w).boxed()),
        ("container_config", container_config(w).boxed()),
        ("crash_loop", crash_loop(w).boxed()),
        ("init_containers", init_containers(w).boxed()),
        ("failure_reasons", failure_reasons(w).boxed()),
        ("deadline_while_pulling", deadline_while_pulling(w).boxed()),
        ("suspended", suspended(w).boxed()),
        (
            "ttl_shorter_than_a_poll",
            ttl_shorter_than_a_poll(w).boxed(),
        ),
    ];
    // All at once, each to its end: a case that fails is named, and the others still run.
    let ended = futures::future::join_all(cases.into_iter().map(|(name, case)| async move {
        (name, AssertUnwindSafe(case).catch_unwind().await.is_ok())
    }))
    .await;
    let failed: Vec<&str> = ended
        .iter()
        .filter(|(_, ok)| !ok)
        .map(|(n, _)| *n)
        .collect();
    assert!(failed.is_empty(), "failed: {failed:?}");
}

/// The crash case of the held TTL: the worker held a Job's TTL and never answered (it
/// died): the held TTL still ends, and Kubernetes deletes the Job; nothing is left.
#[tokio::test]
async fn a_held_ttl_still_ends_when_the_worker_never_answers() {
    let world = World::get();
    let kube = world.worker_kube().unwrap_or_else(|e| panic!("{e}"));
    let name = unique("ttl-crash");
    let mut job = sim_job(&name, &["main"], json!({}), 1);
    job["spec"]["ttlSecondsAfterFinished"] = json!(0);
    let created =
        worker::task::job::create(&kube, &world.namespace(), &job, Some("a token"), Some(8))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(created["spec"]["ttlSecondsAfterFinished"], 8, "{created}");
    assert_eq!(worker::task::job::held_ttl(&created), Some(0));
    let finished = until_job(
        &kube,
        &world.namespace(),
        &name,
        Duration::from_secs(30),
        |j| j.is_some_and(|j| j.pointer("/status/succeeded") == Some(&json!(1))),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(finished.is_some());
    // Held: still there well past its own TTL of 0 s.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let r = send(
        &kube,
        KubeRequest::get(format!(
            "/apis/batch/v1/namespaces/{}/jobs/{name}",
            world.namespace()
        )),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.status, 200, "deleted while held");
    // Nobody answers: the held TTL ends, and the Job goes.
    until_job(
        &kube,
        &world.namespace(),
        &name,
        Duration::from_secs(40),
        |j| j.is_none(),
    )
    .await
    .unwrap_or_else(|e| panic!("{name}: never deleted: {e}"));
}
