//! run-job against the local world: request/response returns the created Job; the
//! callback pattern ends a real (moto) Step Functions execution SUCCEEDED with the
//! finished Job and its logs, or FAILED with the worker's error.

// Test helpers fail the test by panicking.
#![allow(clippy::panic)]

use std::time::Duration;

use serde_json::{json, Value};
use worker::contract::budget::MAX_RESULT_BYTES;
use worker::contract::tags::{task_label, TASK_LABEL};
use worker::ports::kube::KubeRequest;
use world_tests::{send, sim_job, unique, World};

fn payload(world: &World, job: Value, extra: Value) -> Value {
    let mut p =
        json!({ "ClusterName": world.cluster(), "Namespace": world.namespace(), "Job": job });
    if let (Some(p), Some(extra)) = (p.as_object_mut(), extra.as_object()) {
        p.extend(extra.clone());
    }
    p
}

#[tokio::test]
async fn request_response_returns_the_created_job_found_by_cluster_name_alone() -> anyhow::Result<()>
{
    let world = World::get();
    let deps = world.deps(world.settings()).await?;
    let name = unique("rj-rr");
    let mut job = sim_job(&name, &["main"], json!({ "user/annotation": "kept" }), 1);
    job["metadata"]["labels"] = json!({ "team": "data" });
    // The Job as a string holding JSON is accepted too.
    let p = payload(&world, Value::String(job.to_string()), json!({}));
    let created = worker::task::run_job::handle(p, &deps, None)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    assert_eq!(created["kind"], "Job");
    assert_eq!(created["metadata"]["name"], name.as_str());
    assert_eq!(created["metadata"]["namespace"], world.namespace().as_str());
    assert!(created["metadata"]["uid"].is_string());
    assert_eq!(created["metadata"]["labels"]["team"], "data");
    assert_eq!(
        created["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "eks-task-worker"
    );
    assert_eq!(
        created["spec"]["template"]["metadata"]["annotations"]["user/annotation"],
        "kept"
    );
    assert!(created.get("status").is_some());
    Ok(())
}

#[tokio::test]
async fn callback_success_carries_the_finished_job_and_every_containers_log() -> anyhow::Result<()>
{
    let world = World::get();
    let deps = world.deps(world.settings()).await?;
    let name = unique("rj-ok");
    let (execution, token) = world.waiting_execution(&name, None).await?;
    let annotations = json!({
        "sim.eks-task-worker.io/log.json": "{\"result\": [1, 2, 3]}",
        "sim.eks-task-worker.io/log.text": "first\nsecond\nthird\n",
    });
    let p = payload(
        &world,
        sim_job(&name, &["json", "text"], annotations, 2),
        json!({ "TaskToken": token, "LogOptions": { "RetrieveLogs": true } }),
    );
    let report = worker::task::run_job::handle(p, &deps, None)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    assert_eq!(report["answered"], "SendTaskSuccess");
    let (status, output, _) = world
        .execution_end(&execution, Duration::from_secs(30))
        .await?;
    assert_eq!(status, "SUCCEEDED");
    let output: Value = serde_json::from_str(&output.unwrap_or_default())?;
    assert_eq!(output["kind"], "Job");
    assert_eq!(output["status"]["succeeded"], 2);
    let pods = output["logs"]["pods"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    assert_eq!(pods.len(), 2, "{output}");
    for (_, pod) in pods {
        assert_eq!(
            pod["containers"]["json"]["log"],
            json!({ "result": [1, 2, 3] }),
            "JSON logs are parsed"
        );
        assert_eq!(
            pod["containers"]["text"]["log"], "first\nsecond\nthird\n",
            "text stays text"
        );
    }
    Ok(())
}

#[tokio::test]
async fn raw_logs_and_log_parameters_are_honoured() -> anyhow::Result<()> {
    let world = World::get();
    let deps = world.deps(world.settings()).await?;
    let name = unique("rj-raw");
    let (execution, token) = world.waiting_execution(&name, None).await?;
    let annotations =
        json!({ "sim.eks-task-worker.io/log": "{\"a\": 1}\n{\"b\": 2}\n{\"c\": 3}\n" });
    let p = payload(
        &world,
        sim_job(&name, &["main", "other"], annotations, 1),
        json!({ "TaskToken": token, "LogOptions": { "RetrieveLogs": true, "RawLogs": true, "LogParameters": { "tailLines": ["1"], "container": ["main"] } } }),
    );
    worker::task::run_job::handle(p, &deps, None)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let (status, output, _) = world
        .execution_end(&execution, Duration::from_secs(30))
        .await?;
    assert_eq!(status, "SUCCEEDED");
    let output: Value = serde_json::from_str(&output.unwrap_or_default())?;
    let pods = output["logs"]["pods"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    let pod = pods.values().next().cloned().unwrap_or_default();
    assert_eq!(
        pod["containers"]["main"]["log"], "{\"c\": 3}\n",
        "tailLines=1, raw: {output}"
    );
    assert!(
        pod["containers"].get("other").is_none(),
        "only the named container"
    );
    Ok(())
}

#[tokio::test]
async fn a_failed_job_fails_the_execution_with_job_failed() -> anyhow::Result<()> {
    let world = World::get();
    let deps = world.deps(world.settings()).await?;
    let name = unique("rj-fail");
    let (execution, token) = world.waiting_execution(&name, None).await?;
    let annotations = json!({ "sim.eks-task-worker.io/exit-code": "2", "sim.eks-task-worker.io/log": "something broke\n" });
    let p = payload(
        &world,
        sim_job(&name, &["main"], annotations, 1),
        json!({ "TaskToken": token }),
    );
    let report = worker::task::run_job::handle(p, &deps, None)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    assert_eq!(report["answered"], "SendTaskFailure");
    assert_eq!(report["error"], "EksTaskWorker.JobFailed");
    world
        .expect_failed(&execution, "EksTaskWorker.JobFailed")
        .await;
    Ok(())
}

#[tokio::test]
async fn a_failed_jobs_cause_names_exit_codes_and_log_tails() -> anyhow::Result<()> {
    // moto drops SendTaskFailure's cause, so the cause is checked at the handler.
    let world = World::get();
    let deps = world.deps(world.settings()).await?;
    let name = unique("rj-cause");
    let annotations = json!({ "sim.eks-task-worker.io/exit-code": "7", "sim.eks-task-worker.io/log": "fatal: disk full\n" });
    let p = payload(&world, sim_job(&name, &["main"], annotations, 1), json!({}));
    worker::task::run_job::handle(p, &deps, None)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let kube = deps
        .connector
        .connect(
            &worker::contract::payload::cluster_ref(
                &world
                    .cluster_fields()
                    .as_object()
                    .cloned()
                    .unwrap_or_default(),
            )
            .map_err(|e| anyhow::anyhow!("{e}"))?,
        )
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let done = world_tests::until_job(
        kube.as_ref(),
        &world.namespace(),
        &name,
        Duration::from_secs(30),
        |j| worker::task::job::phase(j.unwrap_or(&Value::Null)) == worker::task::job::Phase::Failed,
    )
    .await?
    .unwrap_or_default();
    let err = worker::task::finish::finish(
        kube,
        &worker::task::job::JobId::of(&done, &world.namespace()),
        &done,
        &worker::contract::payload::LogOptions::default(),
        &deps,
    )
    .await
    .0
    .err()
    .ok_or_else(|| anyhow::anyhow!("a failed Job must be an error"))?;
    assert_eq!(err.name, "EksTaskWorker.JobFailed");
    assert_eq!(
        err.cause["failedPods"][0]["containers"][0]["exitCode"], 7,
        "{}",
        err.cause
    );
    assert_eq!(err.cause["logTails"][0]["log"], "fatal: disk full\n");
    assert!(err.cause_string().len() <= 32_768);
    Ok(())
}

#[tokio::test]
async fn huge_logs_are_cut_to_fit_and_the_execution_succeeds() -> anyhow::Result<()> {
    let world = World::get();
    let deps = world.deps(world.settings()).await?;
    let name = unique("rj-huge");
    let (execution, token) = world.waiting_execution(&name, None).await?;
    let annotations = json!({ "sim.eks-task-worker.io/log-bytes": "2000000", "sim.eks-task-worker.io/log.small": "tiny\n" });
    let p = payload(
        &world,
        sim_job(&name, &["big", "small"], annotations, 2),
        json!({ "TaskToken": token, "LogOptions": { "RetrieveLogs": true } }),
    );
    let report = worker::task::run_job::handle(p, &deps, None)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    assert_eq!(report["answered"], "SendTaskSuccess");
    assert!(report["bytes"].as_u64().unwrap_or(u64::MAX) <= MAX_RESULT_BYTES as u64);
    let (status, output, error) = world
        .execution_end(&execution, Duration::from_secs(30))
        .await?;
    assert_eq!(status, "SUCCEEDED", "{error:?}");
    let output = output.unwrap_or_default();
    assert!(output.len() <= MAX_RESULT_BYTES);
    let output: Value = serde_json::from_str(&output)?;
    for (pod, v) in output["logs"]["pods"]
        .as_object()
        .cloned()
        .unwrap_or_default()
    {
        let big = v["containers"]["big"]["log"].as_str().unwrap_or_default();
        assert!(
            big.starts_with("[eks-task-worker: cut, kept the last "),
            "{pod}: {}",
            &big[..80.min(big.len())]
        );
        let last_line = big.lines().last().unwrap_or_default();
        assert!(
            last_line.starts_with("000000019999 "),
            "the most recent line is kept: {last_line}"
        );
        assert!(
            big.len() > 50_000,
            "each big log gets a fair share: {}",
            big.len()
        );
        let small = v["containers"]["small"]["log"].as_str().unwrap_or_default();
        assert!(
            small == "tiny\n",
            "{pod}: the small log is kept whole, got {} bytes",
            small.len()
        );
    }
    Ok(())
}

#[tokio::test]
async fn a_redelivered_task_creates_one_job() -> anyhow::Result<()> {
    let world = World::get();
    let deps = world.deps(world.settings()).await?;
    let name = unique("rj-twice");
    let (execution, token) = world.waiting_execution(&name, None).await?;
    let mut job = sim_job(&name, &["main"], json!({}), 1);
    job["metadata"] = json!({ "generateName": format!("{name}-") });
    let p = payload(&world, job, json!({ "TaskToken": token }));
    let first = worker::task::run_job::handle(p.clone(), &deps, None)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    assert_eq!(first["answered"], "SendTaskSuccess");
    let second = worker::task::run_job::handle(p, &deps, None)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    assert_eq!(
        second["answered"], "by another delivery",
        "the task was already answered (the Job says so): nothing is sent again: {second}"
    );
    let kube = world.worker_kube()?;
    let list = send(
        &kube,
        KubeRequest::get(format!(
            "/apis/batch/v1/namespaces/{}/jobs",
            world.namespace()
        ))
        .param(
            "labelSelector",
            format!("{TASK_LABEL}={}", task_label(&token)),
        ),
    )
    .await?;
    let items = list.json().map_err(|e| anyhow::anyhow!("{e}"))?["items"]
        .as_array()
        .map_or(0, Vec::len);
    assert_eq!(items, 1);
    assert_eq!(
        world
            .execution_end(&execution, Duration::from_secs(10))
            .await?
            .0,
        "SUCCEEDED"
    );
    Ok(())
}

#[tokio::test]
async fn a_job_deleted_while_waited_on_fails_with_job_vanished() -> anyhow::Result<()> {
    let world = World::get();
    let deps = world.deps(world.settings()).await?;
    let name = unique("rj-gone");
    let (execution, token) = world.waiting_execution(&name, None).await?;
    let p = payload(
        &world,
        sim_job(
            &name,
            &["main"],
            json!({ "sim.eks-task-worker.io/run-seconds": "60" }),
            1,
        ),
        json!({ "TaskToken": token }),
    );
    let run = tokio::spawn(async move { worker::task::run_job::handle(p, &deps, None).await });
    let kube = world.worker_kube()?;
    world_tests::until_job(
        &kube,
        &world.namespace(),
        &name,
        Duration::from_secs(20),
        |j| j.is_some(),
    )
    .await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut delete = world_tests::request(
        http::Method::DELETE,
        &format!(
            "/apis/batch/v1/namespaces/{}/jobs/{name}",
            world.namespace()
        ),
        None,
    );
    delete
        .query
        .push(("propagationPolicy".into(), "Background".into()));
    assert_eq!(send(&kube, delete).await?.status, 200);
    let report = tokio::time::timeout(Duration::from_secs(20), run)
        .await??
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    assert_eq!(report["error"], "EksTaskWorker.JobVanished");
    world
        .expect_failed(&execution, "EksTaskWorker.JobVanished")
        .await;
    Ok(())
}

#[tokio::test]
async fn an_invalid_payload_with_a_token_fails_the_execution_at_once() -> anyhow::Result<()> {
    let world = World::get();
    let deps = world.deps(world.settings()).await?;
    let name = unique("rj-bad");
    let (execution, token) = world.waiting_execution(&name, None).await?;
    let p = json!({ "ClusterName": world.cluster(), "Job": { "apiVersion": "v1", "kind": "Pod" }, "TaskToken": token });
    let report = worker::task::run_job::handle(p, &deps, None)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    assert_eq!(report["error"], "EksTaskWorker.InvalidInput");
    world
        .expect_failed(&execution, "EksTaskWorker.InvalidInput")
        .await;
    Ok(())
}

/// A watch that outlives several token lifetimes. The local authenticator accepts this
/// cluster's tokens for 6 seconds (the cluster's `local-world/token-lifetime-seconds`
/// tag; EKS: 15 minutes) and this test's worker renews them after 3
/// (`TOKEN_RENEW_SECONDS`, shortened for this test in proportion), while the Job runs
/// 20 seconds watched inline and its final status and logs are read after. A token made
/// once per connect would be refused (401) from the 6th second on.
#[tokio::test]
async fn a_watch_outlives_several_token_lifetimes() -> anyhow::Result<()> {
    let world = World::get();
    let cluster = world
        .short_token_cluster(&unique("short-tokens"), 6)
        .await?;
    let deps = world
        .deps(world.settings_with(&[("TOKEN_RENEW_SECONDS", "3".into())]))
        .await?;
    let name = unique("rj-tokens");
    let (execution, token) = world.waiting_execution(&name, None).await?;
    let annotations = json!({
        "sim.eks-task-worker.io/run-seconds": "20",
        "sim.eks-task-worker.io/log": "read after the 20th second\n",
    });
    let p = json!({
        "ClusterName": cluster, "Namespace": world.namespace(),
        "Job": sim_job(&name, &["main"], annotations, 1),
        "TaskToken": token, "InlineWaitSeconds": 60,
        "LogOptions": { "RetrieveLogs": true },
    });
    let report = worker::task::run_job::handle(p, &deps, None).await;
    let deleted = world.delete_cluster(&cluster).await;
    let report = report.map_err(|e| anyhow::anyhow!("{e}"))?;
    assert_eq!(report["answered"], "SendTaskSuccess", "{report}");
    let (status, output, error) = world
        .execution_end(&execution, Duration::from_secs(30))
        .await?;
    assert_eq!(status, "SUCCEEDED", "{error:?}");
    let output: Value = serde_json::from_str(&output.unwrap_or_default())?;
    let logs: Vec<&Value> = output["logs"]["pods"]
        .as_object()
        .map(|pods| {
            pods.values()
                .map(|p| &p["containers"]["main"]["log"])
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(logs, [&json!("read after the 20th second\n")], "{output}");
    deleted?;
    Ok(())
}

/// A state with `HeartbeatSeconds` shorter than its Job: the invocation that watches the
/// Job inline sends heartbeats, so the task lives until the Job's answer. Scaled down
/// from `HeartbeatSeconds: 60` and the default `HEARTBEAT_SECONDS` of 30 to 8 and 3 (this
/// test's setting) and a Job of 24 s; without the heartbeats the task ends in
/// `States.HeartbeatTimeout` after 8 s.
#[tokio::test]
async fn heartbeats_keep_a_task_alive_while_its_job_runs_inline() -> anyhow::Result<()> {
    let world = World::get();
    let deps = world
        .deps(world.settings_with(&[("HEARTBEAT_SECONDS", "3".into())]))
        .await?;
    let name = unique("rj-beat");
    let (execution, token) = world.waiting_execution(&name, Some(8)).await?;
    let annotations = json!({ "sim.eks-task-worker.io/run-seconds": "24" });
    let p = payload(
        &world,
        sim_job(&name, &["main"], annotations, 1),
        json!({ "TaskToken": token, "InlineWaitSeconds": 60 }),
    );
    let report = worker::task::run_job::handle(p, &deps, None)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    assert_eq!(report["answered"], "SendTaskSuccess", "{report}");
    let (status, _, error) = world
        .execution_end(&execution, Duration::from_secs(30))
        .await?;
    assert_eq!(status, "SUCCEEDED", "{error:?}");
    Ok(())
}

/// An execution stopped while its Job runs inline: the next heartbeat is refused, the
/// watch ends and the Job is deleted, within a heartbeat interval (3 s here), not when
/// the inline window (60 s) closes. With `DELETE_JOB_WHEN_STOPPED=false` the Job stays,
/// unfollowed, and gets back its own TTL, which the worker held while it followed it.
#[tokio::test]
async fn a_task_stopped_during_the_inline_watch_has_its_job_deleted() -> anyhow::Result<()> {
    let world = World::get();
    let held = worker::task::job::HELD_TTL_ANNOTATION;
    for delete in [true, false] {
        let deps = world
            .deps(world.settings_with(&[
                ("HEARTBEAT_SECONDS", "3".into()),
                ("DELETE_JOB_WHEN_STOPPED", delete.to_string()),
            ]))
            .await?;
        let name = unique("rj-stop");
        let (execution, token) = world.waiting_execution(&name, None).await?;
        let annotations = json!({ "sim.eks-task-worker.io/run-seconds": "120" });
        let mut job = sim_job(&name, &["main"], annotations, 1);
        job["spec"]["ttlSecondsAfterFinished"] = json!(5);
        let p = payload(
            &world,
            job,
            json!({ "TaskToken": token, "InlineWaitSeconds": 60 }),
        );
        let watching =
            tokio::spawn(async move { worker::task::run_job::handle(p, &deps, None).await });
        let kube = world.admin_kube()?;
        let path = format!(
            "/apis/batch/v1/namespaces/{}/jobs/{name}",
            world.namespace()
        );
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while send(&kube, KubeRequest::get(&path)).await?.status != 200 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the Job was never created"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        world.stop_execution(&execution).await?;
        let stopped = tokio::time::Instant::now();
        let report = tokio::time::timeout(Duration::from_secs(15), watching)
            .await
            .map_err(|_| anyhow::anyhow!("the watch went on 15 s after the stop"))??
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        assert_eq!(report["jobDeleted"], delete, "{report}");
        assert!(report["taskGone"].is_string(), "{report}");
        let job = send(&kube, KubeRequest::get(&path)).await?;
        if delete {
            assert!(
                job.status == 404 || job.json()?.pointer("/metadata/deletionTimestamp").is_some(),
                "the Job is still there, not being deleted"
            );
        } else {
            let job = job.json()?;
            assert!(job["metadata"]["annotations"][held].is_null(), "{job}");
            assert_eq!(job["spec"]["ttlSecondsAfterFinished"], 5, "{job}");
        }
        assert!(
            stopped.elapsed() < Duration::from_secs(10),
            "{:?}",
            stopped.elapsed()
        );
    }
    Ok(())
}
