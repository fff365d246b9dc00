//! The local world behaves like EKS where the worker touches it: tokens made by
//! botocore (as `aws eks get-token` makes them) authenticate over verified TLS, Jobs
//! run and log through the real API server, bad tokens get 401 and a stranger 403.

// Test helpers fail the test by panicking.
#![allow(clippy::panic)]

use std::time::Duration;

use serde_json::{json, Value};
use worker::ports::kube::KubeRequest;
use world_tests::{request, send, sim_job, unique, until_job, World};

fn complete(job: Option<&Value>) -> bool {
    job.and_then(|j| j.pointer("/status/conditions"))
        .and_then(Value::as_array)
        .is_some_and(|c| {
            c.iter()
                .any(|c| c["type"] == "Complete" && c["status"] == "True")
        })
}

fn failed(job: Option<&Value>) -> bool {
    job.and_then(|j| j.pointer("/status/conditions"))
        .and_then(Value::as_array)
        .is_some_and(|c| {
            c.iter()
                .any(|c| c["type"] == "Failed" && c["status"] == "True")
        })
}

#[tokio::test]
async fn a_job_runs_to_complete_and_its_logs_are_readable() -> anyhow::Result<()> {
    let world = World::get();
    let kube = world.worker_kube()?;
    let ns = world.namespace();
    let name = unique("lw-ok");
    let log: String = (1..=5).map(|i| format!("line {i}\n")).collect();
    let job = sim_job(
        &name,
        &["main"],
        json!({ "sim.eks-task-worker.io/log": log }),
        1,
    );
    let created = send(
        &kube,
        request(
            http::Method::POST,
            &format!("/apis/batch/v1/namespaces/{ns}/jobs"),
            Some(&job),
        ),
    )
    .await?;
    assert_eq!(created.status, 201, "{}", created.body_value());
    until_job(&kube, &ns, &name, Duration::from_secs(30), complete).await?;

    let pods = send(
        &kube,
        KubeRequest::get(format!("/api/v1/namespaces/{ns}/pods"))
            .param("labelSelector", format!("job-name={name}")),
    )
    .await?
    .json()
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let pod = pods
        .pointer("/items/0/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let logs = |q: &[(&str, &str)]| {
        let mut r = KubeRequest::get(format!("/api/v1/namespaces/{ns}/pods/{pod}/log"));
        for (k, v) in q {
            r = r.param(k, *v);
        }
        r
    };
    let all = send(&kube, logs(&[])).await?;
    assert_eq!(all.status, 200);
    assert_eq!(std::str::from_utf8(&all.body)?, log);
    let tail = send(&kube, logs(&[("tailLines", "2")])).await?;
    assert_eq!(std::str::from_utf8(&tail.body)?, "line 4\nline 5\n");
    let limited = send(&kube, logs(&[("limitBytes", "9")])).await?;
    assert_eq!(std::str::from_utf8(&limited.body)?, "line 1\nli");
    let stamped = send(&kube, logs(&[("timestamps", "true"), ("tailLines", "1")])).await?;
    let text = std::str::from_utf8(&stamped.body)?;
    assert!(
        text.ends_with(" line 5\n") && text.starts_with("20"),
        "{text}"
    );
    let previous = send(&kube, logs(&[("previous", "true")])).await?;
    assert_eq!(previous.status, 400);
    Ok(())
}

#[tokio::test]
async fn a_failing_container_fails_the_job_and_foreground_deletion_completes() -> anyhow::Result<()>
{
    let world = World::get();
    let kube = world.worker_kube()?;
    let ns = world.namespace();
    let name = unique("lw-fail");
    let job = sim_job(
        &name,
        &["main", "side"],
        json!({ "sim.eks-task-worker.io/exit-code.side": "3" }),
        1,
    );
    let created = send(
        &kube,
        request(
            http::Method::POST,
            &format!("/apis/batch/v1/namespaces/{ns}/jobs"),
            Some(&job),
        ),
    )
    .await?;
    assert_eq!(created.status, 201);
    until_job(&kube, &ns, &name, Duration::from_secs(30), failed).await?;

    let mut delete = request(
        http::Method::DELETE,
        &format!("/apis/batch/v1/namespaces/{ns}/jobs/{name}"),
        None,
    );
    delete
        .query
        .push(("propagationPolicy".into(), "Foreground".into()));
    let deleted = send(&kube, delete).await?;
    assert_eq!(deleted.status, 200, "{}", deleted.body_value());
    until_job(&kube, &ns, &name, Duration::from_secs(30), |j| j.is_none()).await?;
    let pods = send(
        &kube,
        KubeRequest::get(format!("/api/v1/namespaces/{ns}/pods"))
            .param("labelSelector", format!("job-name={name}")),
    )
    .await?;
    assert_eq!(
        pods.json().map_err(|e| anyhow::anyhow!("{e}"))?["items"],
        json!([])
    );
    Ok(())
}

async fn status_with(world: &World, token: &str) -> anyhow::Result<(u16, Value)> {
    let kube = world.kube(token)?;
    let r = send(
        &kube,
        KubeRequest::get(format!(
            "/apis/batch/v1/namespaces/{}/jobs",
            world.namespace()
        )),
    )
    .await?;
    Ok((r.status, r.body_value()))
}

async fn webhook_says(world: &World, token: &str) -> anyhow::Result<Value> {
    let review = json!({ "apiVersion": "authentication.k8s.io/v1beta1", "kind": "TokenReview", "spec": { "token": token } });
    let out = std::process::Command::new("curl")
        .args([
            "-sS",
            "-X",
            "POST",
            "-H",
            "Content-Type: application/json",
            "--data",
            &review.to_string(),
            &format!("{}/authenticate", world.fact("/webhook")),
        ])
        .output()?;
    Ok(serde_json::from_slice(&out.stdout)?)
}

fn reencode_url(token: &str, edit: impl Fn(String) -> String) -> String {
    use base64::Engine;
    let url = worker::adapters::token::decode(token).unwrap_or_default();
    format!(
        "k8s-aws-v1.{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(edit(url))
    )
}

#[tokio::test]
async fn bad_tokens_get_401_with_the_standard_status() -> anyhow::Result<()> {
    let world = World::get();
    let cluster = world.cluster();
    let good = world.botocore_token("worker", &cluster, None)?;
    assert_eq!(
        status_with(&world, &good).await?.0,
        200,
        "the good token works"
    );

    let stale_date = (time::OffsetDateTime::now_utc() - time::Duration::minutes(16)).format(
        &time::macros::format_description!("[year][month][day]T[hour][minute][second]Z"),
    )?;
    let sig_pos = |u: &str| {
        u.rfind("X-Amz-Signature=")
            .map_or(0, |i| i + "X-Amz-Signature=".len())
    };
    let cases = [
        (
            "wrong signature",
            reencode_url(&good, |u| {
                let i = sig_pos(&u);
                let flipped = if &u[i..=i] == "0" { "1" } else { "0" };
                format!("{}{flipped}{}", &u[..i], &u[i + 1..])
            }),
            "signature mismatch",
        ),
        (
            "wrong cluster id",
            world.botocore_token("worker", "another-cluster", None)?,
            "signature mismatch",
        ),
        (
            "stale date",
            world.botocore_token("worker", &cluster, Some(&stale_date))?,
            "expired",
        ),
        (
            "foreign host",
            reencode_url(&good, |u| {
                u.replace("sts.us-east-1.amazonaws.com", "sts.us-east-1.evil.example")
            }),
            "hostname",
        ),
        (
            "extra parameter",
            reencode_url(&good, |u| format!("{u}&X-Amz-Extra=1")),
            "non-whitelisted",
        ),
        ("not a token", "k8s-aws-v1.!!!".to_owned(), "base64"),
    ];
    for (what, token, reason) in cases {
        let (status, body) = status_with(&world, &token).await?;
        assert_eq!(status, 401, "{what}: {body}");
        assert_eq!(body["kind"], "Status", "{what}");
        assert_eq!(body["reason"], "Unauthorized", "{what}");
        assert_eq!(body["code"], 401, "{what}");
        let review = webhook_says(&world, &token).await?;
        assert_eq!(review["status"]["authenticated"], false, "{what}");
        let error = review["status"]["error"].as_str().unwrap_or_default();
        assert!(error.contains(reason), "{what}: the webhook said {error:?}");
    }
    Ok(())
}

#[tokio::test]
async fn an_identity_without_rbac_gets_403() -> anyhow::Result<()> {
    let world = World::get();
    let token = world.botocore_token("intruder", &world.cluster(), None)?;
    let (status, body) = status_with(&world, &token).await?;
    assert_eq!(status, 403, "{body}");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(&world.fact("/intruder/arn")),
        "the username is the caller's ARN: {message}"
    );
    Ok(())
}

#[tokio::test]
async fn the_worker_cannot_leave_its_namespace() -> anyhow::Result<()> {
    let world = World::get();
    let kube = world.worker_kube()?;
    let r = send(
        &kube,
        KubeRequest::get("/api/v1/namespaces/kube-system/pods"),
    )
    .await?;
    assert_eq!(r.status, 403);
    Ok(())
}

#[tokio::test]
async fn describe_cluster_in_moto_points_at_the_local_api_server() -> anyhow::Result<()> {
    let world = World::get();
    let eks = aws_sdk_eks::Client::new(&world.sdk("worker").await);
    let c = eks.describe_cluster().name(world.cluster()).send().await?;
    let cluster = c.cluster().ok_or_else(|| anyhow::anyhow!("no cluster"))?;
    assert_eq!(
        cluster.endpoint(),
        Some(world.fact("/api_endpoint").as_str())
    );
    assert_eq!(
        cluster.certificate_authority().and_then(|c| c.data()),
        Some(world.fact("/certificate_authority").as_str())
    );
    Ok(())
}

/// The world's Step Functions refuses the answers AWS refuses (docs/local-world.md): an
/// output over 262,144 bytes (`ValidationException`, the task still waiting), a second
/// answer to a task already answered while its execution runs on, and any answer once
/// the execution has ended (`TaskTimedOut`).
#[tokio::test]
async fn step_functions_refuses_the_answers_aws_refuses() -> anyhow::Result<()> {
    use aws_sdk_sfn::error::ProvideErrorMetadata;
    let world = World::get();
    let sfn = world.sfn().await;
    let name = unique("strict-answers");
    let definition = json!({ "StartAt": "Run", "States": {
        "Run": { "Type": "Task", "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken",
                 "Parameters": { "FunctionName": world.waiter_function(), "Payload": { "TaskToken.$": "$$.Task.Token" } },
                 "Next": "Linger" },
        "Linger": { "Type": "Wait", "Seconds": 4, "End": true } } });
    let (execution, token) = world.execution_waiting_on(&name, &definition).await?;
    let token = token.as_str();

    let too_big = json!({ "log": "x".repeat(262_144) }).to_string();
    let refused = sfn
        .send_task_success()
        .task_token(token)
        .output(too_big)
        .send()
        .await;
    assert_eq!(
        refused.as_ref().err().and_then(|e| e.code()),
        Some("ValidationException"),
        "{refused:?}"
    );
    let still = sfn
        .describe_execution()
        .execution_arn(&execution)
        .send()
        .await?;
    assert_eq!(
        still.status().as_str(),
        "RUNNING",
        "the task goes on waiting"
    );

    sfn.send_task_success()
        .task_token(token)
        .output("{\"first\":true}")
        .send()
        .await?;
    let again = sfn
        .send_task_success()
        .task_token(token)
        .output("{\"second\":true}")
        .send()
        .await;
    assert_eq!(
        again.as_ref().err().and_then(|e| e.code()),
        Some("TaskTimedOut"),
        "{again:?}"
    );
    let late = sfn
        .send_task_failure()
        .task_token(token)
        .error("Late")
        .send()
        .await;
    assert_eq!(
        late.as_ref().err().and_then(|e| e.code()),
        Some("TaskTimedOut"),
        "{late:?}"
    );

    let (status, output, _) = world
        .execution_end(&execution, Duration::from_secs(20))
        .await?;
    let output: Value = serde_json::from_str(output.as_deref().unwrap_or("null"))?;
    assert_eq!(
        (status.as_str(), output),
        ("SUCCEEDED", json!({ "first": true })),
        "the first answer stands"
    );
    let ended = sfn
        .send_task_failure()
        .task_token(token)
        .error("Late")
        .send()
        .await;
    assert_eq!(
        ended.as_ref().err().and_then(|e| e.code()),
        Some("TaskTimedOut"),
        "{ended:?}"
    );
    Ok(())
}

/// The world's Step Functions keeps an answer that comes the moment a task is scheduled
/// (docs/local-world.md): moto set up a task's heartbeat timer only after its Lambda
/// answered, and an answer in between was stored and then waited past until
/// `States.HeartbeatTimeout`. Several tasks are answered as soon as their TaskScheduled
/// event shows, each must end with its answer.
#[tokio::test]
async fn an_answer_the_moment_a_task_is_scheduled_is_kept() -> anyhow::Result<()> {
    let world = World::get();
    let sfn = world.sfn().await;
    let definition = json!({ "StartAt": "Run", "States": {
        "Run": { "Type": "Task", "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken",
                 "Parameters": { "FunctionName": world.waiter_function(), "Payload": { "TaskToken.$": "$$.Task.Token" } },
                 "HeartbeatSeconds": 60, "End": true } } });
    let mut executions = Vec::new();
    for _ in 0..6 {
        // The token from TaskScheduled, read while the waiter's invoke still runs (it
        // takes a second): the answer goes out before the task waits on its token.
        let (execution, token) = world
            .execution_waiting_on(&unique("early-answer"), &definition)
            .await?;
        sfn.send_task_success()
            .task_token(token)
            .output(r#"{"early":true}"#)
            .send()
            .await?;
        executions.push(execution);
    }
    for execution in executions {
        let (status, output, _) = world
            .execution_end(&execution, Duration::from_secs(10))
            .await?;
        let output: Option<Value> = output.as_deref().map(serde_json::from_str).transpose()?;
        assert_eq!(
            (status.as_str(), output),
            ("SUCCEEDED", Some(json!({ "early": true }))),
            "{execution}"
        );
    }
    Ok(())
}
