//! The two functions a schedule starts (`ScheduleV2` in the template), through their
//! real binaries on the local Lambda platform, fired by a schedule as EventBridge
//! Scheduler fires them:
//!
//! - cleanup deletes a cluster the worker made whose execution is gone, its nodegroup
//!   and Fargate profile in one sweep, the cluster in the next, and leaves a cluster that
//!   is not the worker's;
//! - activity takes a task of a Step Functions activity (LocalStack: moto has no
//!   `GetActivityTask`), runs its Job (heartbeats on the way, its log archived), and
//!   answers on the activity's token; a task whose Job fails ends with the failure.
//!
//! One test, one platform: the platform runs one set of settings at a time.

// Test helpers fail the test by panicking.
#![allow(clippy::panic)]

use std::time::Duration;

use serde_json::{json, Value};
use world_tests::{activity_end, activity_waiter, cluster_op, sim_job, unique, Platform, World};

/// Fires `function` once with `input`, by a one-time schedule in moto's Scheduler.
async fn fire(world: &World, function: &str, input: &Value) {
    world_tests::fire(world, function, None, input).await;
}

async fn cluster_status(world: &World, name: &str) -> Option<String> {
    let eks = aws_sdk_eks::Client::new(&world.sdk("worker").await);
    match eks.describe_cluster().name(name).send().await {
        Ok(d) => d
            .cluster()
            .and_then(|c| c.status())
            .map(|s| s.as_str().to_owned()),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_not_found_exception()) =>
        {
            None
        }
        Err(e) => panic!("{e:?}"),
    }
}

/// (status, output, error) of a LocalStack execution once it has ended.
async fn execution_end(
    sfn: &aws_sdk_sfn::Client,
    execution: &str,
) -> (String, Value, Option<String>) {
    let d = activity_end(sfn, execution, Duration::from_secs(120)).await;
    let output = serde_json::from_str(d.output().unwrap_or("null")).unwrap_or_default();
    (
        d.status().as_str().to_owned(),
        output,
        d.error().map(str::to_owned),
    )
}

#[tokio::test]
async fn scheduled_functions_run_through_their_binaries() {
    let world = World::get();
    let sfn = aws_sdk_sfn::Client::new(&world.localstack().await);
    let activity = sfn
        .create_activity()
        .name(unique("sched-act"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e:?}"))
        .activity_arn()
        .to_owned();
    let activities = format!("ACTIVITIES=run-job={activity}");
    // Changed, each for this test only: the cleanup deletes (the template ships it as a
    // dry run), and clusters made a moment ago count as old enough; one invocation polls
    // its activity for 20 s, not 240; an inline watch heartbeats every 2 s, so that a 5 s
    // Job shows it.
    let _platform = Platform::start_with(&[
        "--env",
        "CLEANUP_DRY_RUN=false",
        "--env",
        "CLEANUP_GRACE_SECONDS=0",
        "--env",
        &activities,
        "--env",
        "ACTIVITY_POLL_SECONDS=20",
        "--env",
        "HEARTBEAT_SECONDS=2",
    ]);

    // cleanup: an orphan of a gone execution (with a nodegroup), and a foreign cluster.
    let deps = world.cluster_deps().await;
    let gone = format!(
        "arn:aws:states:{}:{}:execution:nothing:{}",
        world.fact("/region"),
        world.fact("/account"),
        unique("gone")
    );
    let orphan = unique("sched-orphan");
    cluster_op(
        &deps,
        json!({ "Operation": "createCluster", "Name": orphan, "RoleArn": world.cluster_role(),
        "ResourcesVpcConfig": { "SubnetIds": ["subnet-a"] }, "ExecutionArn": gone }),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    cluster_op(
        &deps,
        json!({ "Operation": "createNodegroup", "ClusterName": orphan, "NodegroupName": "ng",
        "NodeRole": world.cluster_role(), "Subnets": ["subnet-a"], "ExecutionArn": gone }),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    cluster_op(&deps, json!({ "Operation": "createFargateProfile", "ClusterName": orphan, "FargateProfileName": "fp",
        "PodExecutionRoleArn": world.cluster_role(), "Selectors": [{ "Namespace": "batch" }], "ExecutionArn": gone }))
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let foreign = unique("sched-foreign");
    let eks = aws_sdk_eks::Client::new(&world.sdk("worker").await);
    eks.create_cluster()
        .name(&foreign)
        .role_arn(world.cluster_role())
        .resources_vpc_config(
            aws_sdk_eks::types::VpcConfigRequest::builder()
                .subnet_ids("subnet-a")
                .build(),
        )
        .tags(worker::contract::tags::EXECUTION_TAG, &gone)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e:?}"));
    // A sweep deletes the orphan's compute and moves on; a later one (the schedule's
    // rate) deletes the cluster once it has none. Each sweep is waited for to its end
    // (its result in the platform's log).
    let sweeps_done = || {
        std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../.local-world/logs/lambda-platform.log"),
        )
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("lambda-platform result cleanup "))
        .count()
    };
    let mut status = cluster_status(&world, &orphan).await;
    let mut sweeps = 0;
    while status.as_deref() == Some("ACTIVE") && sweeps < 6 {
        let before = sweeps_done();
        fire(&world, "cleanup", &json!({ "source": "aws.scheduler" })).await;
        sweeps += 1;
        for _ in 0..300 {
            if sweeps_done() > before {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        status = cluster_status(&world, &orphan).await;
    }
    assert!(
        matches!(status.as_deref(), None | Some("DELETING")),
        "the orphan is deleted by the cleanup function: {status:?}"
    );
    assert!(
        sweeps >= 2,
        "the compute first, then the cluster: {sweeps} sweep(s)"
    );
    assert_eq!(
        cluster_status(&world, &foreign).await.as_deref(),
        Some("ACTIVE"),
        "a cluster that is not the worker's is left alone"
    );

    // activity: a Job that succeeds (heartbeats, its log archived), one that fails, and
    // one whose payload's RoleArn (assumed with STS) the cluster does not let in.
    let mut input = world.cluster_fields();
    input["Namespace"] = json!(world.namespace());
    let bucket = world.fact("/log_bucket");
    input["LogOptions"] =
        json!({ "RetrieveLogs": true, "ArchiveUri": format!("s3://{bucket}/scheduled") });
    input["Job"] = sim_job(
        &unique("sched-ok"),
        &["main"],
        json!({ "sim.eks-task-worker.io/log": "{\"from\": \"activity\"}", "sim.eks-task-worker.io/run-seconds": "5" }),
        1,
    );
    let succeeded = activity_waiter(&sfn, &activity, &unique("sched-act"), &input, Some(600)).await;
    input["Job"] = sim_job(
        &unique("sched-fail"),
        &["main"],
        json!({ "sim.eks-task-worker.io/exit-code": "3" }),
        1,
    );
    let failed = activity_waiter(&sfn, &activity, &unique("sched-act"), &input, Some(600)).await;
    input["RoleArn"] = json!(world.cluster_role());
    input["Job"] = sim_job(&unique("sched-role"), &["main"], json!({}), 1);
    let refused = activity_waiter(&sfn, &activity, &unique("sched-act"), &input, Some(600)).await;
    fire(&world, "activity", &json!({ "source": "aws.scheduler" })).await;
    let (status, output, _) = execution_end(&sfn, &succeeded).await;
    assert_eq!(status, "SUCCEEDED", "{output}");
    assert_eq!(output["status"]["succeeded"], 1, "{output}");
    let pod = output["logs"]["pods"]
        .as_object()
        .and_then(|p| p.values().next().cloned())
        .unwrap_or_default();
    assert_eq!(
        pod["containers"]["main"]["log"],
        json!({ "from": "activity" })
    );
    assert!(
        pod["containers"]["main"]["archive"]["uri"]
            .as_str()
            .is_some_and(|u| u.starts_with(&format!("s3://{bucket}/scheduled/"))),
        "{output}"
    );
    let (status, _, error) = execution_end(&sfn, &failed).await;
    assert_eq!(status, "FAILED");
    assert_eq!(error.as_deref(), Some("EksTaskWorker.JobFailed"));
    let (status, _, error) = execution_end(&sfn, &refused).await;
    assert_eq!(
        (status.as_str(), error.as_deref()),
        ("FAILED", Some("EKS.403"))
    );
}
