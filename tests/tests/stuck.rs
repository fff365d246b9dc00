//! Stuck Jobs: a pod that cannot pull its image or cannot be scheduled is reported,
//! and with a stuck policy the task fails with `EksTaskWorker.JobStuck` naming the
//! pod, the container and the reason; without one the worker waits, as native.

// Test helpers fail the test by panicking.
#![allow(clippy::panic)]

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use world_tests::{sim_job, unique, World};

async fn run(
    world: &World,
    name: &str,
    annotations: Value,
    extra: Value,
) -> (Value, String, Duration) {
    let deps = world
        .deps(world.poller_settings("1"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let (execution, token) = world
        .waiting_execution(name, Some(60))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut p = json!({ "ClusterName": world.cluster(), "Namespace": world.namespace(), "Job": sim_job(name, &["main"], annotations, 1), "TaskToken": token });
    for (k, v) in extra.as_object().cloned().unwrap_or_default() {
        p[k] = v;
    }
    let started = Instant::now();
    let report = worker::task::run_job::handle(p, &deps, None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    (report, execution, started.elapsed())
}

#[tokio::test]
async fn an_image_that_cannot_be_pulled_fails_the_task_within_the_policy() {
    let world = World::get();
    let name = unique("stuck-pull");
    let (report, execution, took) = run(
        &world,
        &name,
        json!({ "sim.eks-task-worker.io/image-pull-error": "true" }),
        json!({ "StuckPolicy": { "ImagePullSeconds": 5 }, "InlineWaitSeconds": 60 }),
    )
    .await;
    assert_eq!(report["error"], "EksTaskWorker.JobStuck", "{report}");
    assert!(took < Duration::from_secs(30), "{took:?}");
    world
        .expect_failed(&execution, "EksTaskWorker.JobStuck")
        .await;
}

#[tokio::test]
async fn an_unschedulable_pod_fails_the_task_within_the_policy() {
    let world = World::get();
    let name = unique("stuck-sched");
    let (report, execution, _) = run(
        &world,
        &name,
        json!({ "sim.eks-task-worker.io/unschedulable": "true" }),
        json!({ "StuckPolicy": { "UnschedulableSeconds": 3 }, "InlineWaitSeconds": 60 }),
    )
    .await;
    assert_eq!(report["error"], "EksTaskWorker.JobStuck", "{report}");
    world
        .expect_failed(&execution, "EksTaskWorker.JobStuck")
        .await;
}

#[tokio::test]
async fn the_cause_names_pod_container_and_reason() {
    let world = World::get();
    let deps = world
        .deps(world.settings())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let name = unique("stuck-cause");
    let p = json!({ "ClusterName": world.cluster(), "Namespace": world.namespace(), "Job": sim_job(&name, &["main"], json!({ "sim.eks-task-worker.io/image-pull-error": "true" }), 1) });
    let created = worker::task::run_job::handle(p, &deps, None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let uid = created["metadata"]["uid"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let kube = world.worker_kube().unwrap_or_else(|e| panic!("{e}"));
    let id = worker::task::job::JobId::new(world.namespace(), &name, &uid);
    let policy = worker::contract::stuck_policy::StuckPolicy {
        image_pull_seconds: Some(0),
        ..worker::contract::stuck_policy::StuckPolicy::default()
    };
    let mut err = None;
    for _ in 0..50 {
        let job = id.read(&kube).await.unwrap_or_else(|e| panic!("{e}"));
        if let Err(e) = worker::task::finish::check_stuck(&kube, &id, &job, policy, &deps).await {
            err = Some(e);
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let e = err.unwrap_or_else(|| panic!("never stuck"));
    assert_eq!(e.name, "EksTaskWorker.JobStuck");
    assert_eq!(e.cause["container"], "main");
    assert_eq!(e.cause["reason"], "ImagePullBackOff");
    assert!(
        e.cause["pod"]
            .as_str()
            .is_some_and(|p| p.starts_with(&name)),
        "{}",
        e.cause
    );
    assert!(
        e.cause["detail"]
            .as_str()
            .is_some_and(|d| d.contains("busybox")),
        "{}",
        e.cause
    );
    // The kubelet's Warning event (the pod simulator records it) comes with the cause.
    let events = e.cause["warningEvents"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        events.iter().any(|ev| ev["reason"] == "Failed"
            && ev["object"]
                .as_str()
                .is_some_and(|o| o.starts_with(&format!("Pod/{name}")))
            && ev["message"]
                .as_str()
                .is_some_and(|m| m.contains("Failed to pull image"))),
        "{}",
        e.cause
    );
}

#[tokio::test]
async fn without_a_policy_a_stuck_job_is_waited_for_as_native() {
    let world = World::get();
    let name = unique("stuck-native");
    let (report, _, _) = run(
        &world,
        &name,
        json!({ "sim.eks-task-worker.io/image-pull-error": "true" }),
        json!({ "InlineWaitSeconds": 3 }),
    )
    .await;
    assert!(
        report.get("handedOff").is_some(),
        "handed to the poller, still waiting: {report}"
    );
}

/// A stuck answer changes the Job only once Step Functions has taken it: refused (the
/// invocation fails, and is delivered again), the Job stays with the TTL the worker
/// holds, so the next delivery finds it (never `JobVanished`); taken, the Job gets its
/// own TTL back, or is deleted with `JOB_CLEANUP=always`.
#[tokio::test]
async fn a_stuck_answer_changes_the_job_only_once_it_is_taken() {
    let world = World::get();
    let kube = world.worker_kube().unwrap_or_else(|e| panic!("{e}"));
    let held = worker::task::job::HELD_TTL_ANNOTATION;
    for (cleanup, refusals) in [("never", 100), ("never", 0), ("always", 100), ("always", 0)] {
        let mut deps = world
            .deps(world.settings_with(&[("JOB_CLEANUP", cleanup.to_owned())]))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let callback = std::sync::Arc::new(worker::testing::RecordingCallback::default());
        callback.refuse_answers(refusals);
        deps.callback = callback.clone();
        let name = unique("stuck-answer");
        let mut job = sim_job(
            &name,
            &["main"],
            json!({ "sim.eks-task-worker.io/image-pull-error": "true" }),
            1,
        );
        job["spec"]["ttlSecondsAfterFinished"] = json!(5);
        let p = json!({ "ClusterName": world.cluster(), "Namespace": world.namespace(), "Job": job,
            "TaskToken": format!("token-{name}"), "StuckPolicy": { "ImagePullSeconds": 2 }, "InlineWaitSeconds": 60 });
        let report = worker::task::run_job::handle(p, &deps, None).await;
        let case = format!("JOB_CLEANUP={cleanup}, {refusals} refusals: {report:?}");
        let left = world_tests::until_job(
            &kube,
            &world.namespace(),
            &name,
            Duration::from_secs(5),
            |_| true,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        if refusals > 0 {
            assert!(report.is_err(), "{case}");
            let left = left.unwrap_or_else(|| panic!("the Job is gone: {case}"));
            assert!(
                left["metadata"]["annotations"][held] == "5",
                "{case}: {left}"
            );
            assert!(
                left["spec"]["ttlSecondsAfterFinished"].as_u64() > Some(5),
                "{case}: {left}"
            );
            continue;
        }
        let answers = callback.failed();
        assert_eq!(answers.len(), 1, "{case}");
        assert_eq!(answers[0].1.name, "EksTaskWorker.JobStuck", "{case}");
        if cleanup == "always" {
            let gone = world_tests::until_job(
                &kube,
                &world.namespace(),
                &name,
                Duration::from_secs(30),
                |j| j.is_none(),
            )
            .await;
            assert!(gone.is_ok(), "{case}: {gone:?}");
            continue;
        }
        let left = left.unwrap_or_else(|| panic!("the Job is gone: {case}"));
        assert!(
            left["metadata"]["annotations"][held].is_null(),
            "{case}: {left}"
        );
        assert_eq!(left["spec"]["ttlSecondsAfterFinished"], 5, "{case}: {left}");
    }
}
