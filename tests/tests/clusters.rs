//! Cluster operations and the orphan cleanup against moto's EKS (every resource is
//! ACTIVE at once there, and deletions are immediate).

// Test helpers fail the test by panicking.
#![allow(clippy::panic)]

use std::time::{Duration, SystemTime};

use serde_json::{json, Value};
use worker::contract::tags::{CREATED_TAG, EXECUTION_TAG, MANAGED_TAG};
use worker::task::cleanup::Options;
use worker::task::deps::Deps;
use world_tests::{cluster_op, unique, World};

fn create_cluster(world: &World, name: &str, extra: Value) -> Value {
    let mut p = json!({ "Operation": "createCluster", "Name": name, "RoleArn": world.cluster_role(), "ResourcesVpcConfig": { "SubnetIds": ["subnet-a", "subnet-b"] } });
    for (k, v) in extra.as_object().cloned().unwrap_or_default() {
        p[k] = v;
    }
    p
}

async fn exists(deps: &Deps, name: &str) -> bool {
    let eks = deps.eks.clone();
    match eks
        .call(http::Method::GET, &format!("/clusters/{name}"), None)
        .await
    {
        Ok(_) => true,
        Err(e) if e.is_not_found() => false,
        Err(e) => panic!("{e:?}"),
    }
}

#[tokio::test]
async fn create_cluster_returns_the_eks_response_with_ownership_tags() {
    let world = World::get();
    let deps = world.cluster_deps().await;
    let name = unique("cl");
    let out = cluster_op(
        &deps,
        create_cluster(
            &world,
            &name,
            json!({ "Tags": { "Team": "data" }, "Version": "1.30" }),
        ),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    // The native integration's shape: PascalCase throughout, tags as written.
    assert_eq!(out["Cluster"]["Name"], name.as_str(), "{out}");
    assert_eq!(out["Cluster"]["Version"], "1.30");
    assert_eq!(
        out["Cluster"]["ResourcesVpcConfig"]["SubnetIds"],
        json!(["subnet-a", "subnet-b"])
    );
    assert!(out.get("cluster").is_none(), "{out}");
    let tags = &out["Cluster"]["Tags"];
    assert_eq!(tags["Team"], "data");
    assert_eq!(tags[MANAGED_TAG], "eks-task-worker");
    assert!(tags[CREATED_TAG]
        .as_str()
        .is_some_and(|t| t.starts_with("20")));
    let again = cluster_op(&deps, create_cluster(&world, &name, json!({})))
        .await
        .err()
        .unwrap_or_else(|| panic!("a second create must fail"));
    assert_eq!(
        again.name, "EKS.ResourceInUseException",
        "EKS's own exception, as a native Catch names it"
    );
    assert_eq!(
        again.cause["error"], "ResourceInUseException",
        "{}",
        again.cause
    );
}

#[tokio::test]
async fn create_cluster_sync_answers_once_active() {
    let world = World::get();
    let deps = world.cluster_deps().await;
    let name = unique("cl-sync");
    let (execution, token) = world
        .waiting_execution(&name, Some(60))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let report = cluster_op(
        &deps,
        create_cluster(&world, &name, json!({ "TaskToken": token })),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report["answered"], "SendTaskSuccess", "{report}");
    let (status, output, _) = world
        .execution_end(&execution, Duration::from_secs(10))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(status, "SUCCEEDED");
    let output: Value = serde_json::from_str(&output.unwrap_or_default()).unwrap_or_default();
    assert_eq!(output["Cluster"]["Status"], "ACTIVE", "{output}");
}

/// A create delivered twice for one task (its answer lost, a Lambda retry) meets its
/// own cluster: adopted and answered, not `ResourceInUseException`; another task's
/// create of the same name still fails with it (RELIABILITY.md, "Never twice").
#[tokio::test]
async fn a_repeated_create_of_one_task_adopts_its_cluster() {
    let world = World::get();
    let deps = world.cluster_deps().await;
    let name = unique("cl-twice");
    let (execution, token) = world
        .waiting_execution(&name, Some(60))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let payload = create_cluster(
        &world,
        &name,
        json!({ "TaskToken": token, "WaitForCompletion": false }),
    );
    let eks = deps.eks.clone();
    // The first delivery's create reached EKS; its answer was lost.
    let first = worker::contract::cluster_op::parse(&payload, SystemTime::now())
        .unwrap_or_else(|e| panic!("{e}"));
    eks.call(http::Method::POST, "/clusters", Some(&first.body))
        .await
        .unwrap_or_else(|e| panic!("{e:?}"));
    let report = cluster_op(&deps, payload.clone())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report["answered"], "SendTaskSuccess", "{report}");
    let (status, output, error) = world
        .execution_end(&execution, Duration::from_secs(10))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(status, "SUCCEEDED", "{error:?}");
    let output: Value = serde_json::from_str(&output.unwrap_or_default()).unwrap_or_default();
    assert_eq!(output["Cluster"]["Name"], name.as_str(), "{output}");
    let (_, other_token) = world
        .waiting_execution(&unique("cl-twice-other"), Some(60))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut other = payload;
    other["TaskToken"] = json!(other_token);
    other["WaitForCompletion"] = json!(true);
    let theirs = worker::contract::cluster_op::parse(&other, SystemTime::now())
        .unwrap_or_else(|e| panic!("{e}"));
    let refused = eks
        .call(http::Method::POST, "/clusters", Some(&theirs.body))
        .await
        .err()
        .map(|e| e.task_error("CreateCluster").name);
    assert_eq!(refused.as_deref(), Some("EKS.ResourceInUseException"));
    let answered = cluster_op(&deps, other)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (answered["answered"].as_str(), answered["error"].as_str()),
        (Some("SendTaskFailure"), Some("EKS.ResourceInUseException")),
        "another task's create is not adopted: {answered}"
    );
    cluster_op(&deps, json!({ "Operation": "deleteCluster", "Name": name }))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test]
async fn delete_cluster_with_force_deletes_its_compute_first() {
    let world = World::get();
    let deps = world.cluster_deps().await;
    let name = unique("cl-force");
    // The execution that makes the cluster and force-deletes it (a forced delete takes
    // only its own execution's cluster).
    let mine = format!(
        "arn:aws:states:{}:{}:execution:cl:{name}",
        world.fact("/region"),
        world.fact("/account")
    );
    cluster_op(
        &deps,
        create_cluster(&world, &name, json!({ "ExecutionArn": mine })),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    for ng in ["ng-a", "ng-b"] {
        let p = json!({ "Operation": "createNodegroup", "ClusterName": name, "NodegroupName": ng, "NodeRole": world.cluster_role(), "Subnets": ["subnet-a"], "ScalingConfig": { "MinSize": 1, "MaxSize": 2, "DesiredSize": 1 }, "Labels": { "Tier": "batch" } });
        let out = cluster_op(&deps, p).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            out["Nodegroup"]["Labels"]["Tier"], "batch",
            "labels keep their keys"
        );
    }
    for fp in ["fp-a", "fp-b"] {
        let p = json!({ "Operation": "createFargateProfile", "ClusterName": name, "FargateProfileName": fp, "PodExecutionRoleArn": world.cluster_role(), "Subnets": ["subnet-a"], "Selectors": [{ "Namespace": "jobs" }] });
        cluster_op(&deps, p).await.unwrap_or_else(|e| panic!("{e}"));
    }
    let plain = cluster_op(&deps, json!({ "Operation": "deleteCluster", "Name": name }))
        .await
        .err()
        .unwrap_or_else(|| panic!("EKS refuses to delete a cluster with compute"));
    assert_eq!(
        plain.cause["error"], "ResourceInUseException",
        "{}",
        plain.cause
    );

    let (execution, token) = world
        .waiting_execution(&name, Some(60))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let report = cluster_op(&deps, json!({ "Operation": "deleteCluster", "Name": name, "ForceDeleteCompute": true, "ExecutionArn": mine, "TaskToken": token })).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report["answered"], "SendTaskSuccess", "{report}");
    let (status, output, _) = world
        .execution_end(&execution, Duration::from_secs(10))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(status, "SUCCEEDED");
    let output: Value = serde_json::from_str(&output.unwrap_or_default()).unwrap_or_default();
    assert_eq!(output["Cluster"]["Status"], "DELETED", "{output}");
    // The answer says what a forced delete removes, as the docs do.
    let said = output["ForceDeleted"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        said.len(),
        worker::task::force_delete::FORCE_DELETED.len(),
        "{output}"
    );
    assert!(
        said.iter().any(|s| s
            .as_str()
            .is_some_and(|s| s.contains("PersistentVolumeClaim"))),
        "{output}"
    );
    assert!(!exists(&deps, &name).await, "the cluster is gone");
}

#[tokio::test]
async fn cleanup_deletes_only_orphans_of_gone_executions() {
    let world = World::get();
    let deps = world.cluster_deps().await;
    let eks = deps.eks.clone();
    let sfn = world.sfn().await;
    let gone = format!(
        "arn:aws:states:{}:{}:execution:nothing:{}",
        world.fact("/region"),
        world.fact("/account"),
        unique("gone")
    );
    let (running, _) = world
        .waiting_execution(&unique("cl-owner"), None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // An execution that has finished (SUCCEEDED) owns a cluster too.
    let (finished_execution, finished_token) = world
        .waiting_execution(&unique("cl-done"), None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    sfn.send_task_success()
        .task_token(&finished_token)
        .output("{}")
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(
        world
            .execution_end(&finished_execution, Duration::from_secs(10))
            .await
            .map(|e| e.0)
            .unwrap_or_default(),
        "SUCCEEDED"
    );
    let finished = unique("cl-finished");
    cluster_op(
        &deps,
        create_cluster(
            &world,
            &finished,
            json!({ "ExecutionArn": finished_execution }),
        ),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let orphan = unique("cl-orphan");
    cluster_op(
        &deps,
        create_cluster(&world, &orphan, json!({ "ExecutionArn": gone })),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let owned = unique("cl-owned");
    cluster_op(
        &deps,
        create_cluster(&world, &owned, json!({ "ExecutionArn": running })),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let retained = unique("cl-retained");
    cluster_op(
        &deps,
        create_cluster(
            &world,
            &retained,
            json!({ "ExecutionArn": gone, "Tags": { "eks-task-worker.io/retain": "yes" } }),
        ),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let foreign = unique("cl-foreign");
    let body = json!({ "name": foreign, "roleArn": world.cluster_role(), "resourcesVpcConfig": { "subnetIds": ["subnet-a"] }, "tags": { EXECUTION_TAG: gone } });
    eks.call(http::Method::POST, "/clusters", Some(&body))
        .await
        .unwrap_or_else(|e| panic!("{e:?}"));

    let report = |r: &Value, list: &str, name: &str| {
        r[list]
            .as_array()
            .and_then(|a| a.iter().find(|x| x["cluster"] == name).cloned())
    };
    let young = worker::task::cleanup::run(
        eks.as_ref(),
        deps.connector.as_ref(),
        &sfn,
        Options {
            dry_run: false,
            grace: Duration::from_secs(3600),
        },
        SystemTime::now(),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        report(&young, "skipped", &orphan).map(|s| s["reason"].clone()),
        Some(json!("younger than the grace period"))
    );

    let dry = worker::task::cleanup::run(
        eks.as_ref(),
        deps.connector.as_ref(),
        &sfn,
        Options {
            dry_run: true,
            grace: Duration::ZERO,
        },
        SystemTime::now(),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        report(&dry, "orphans", &orphan).map(|o| o["action"].clone()),
        Some(json!("would delete (dry run)")),
        "{dry}"
    );
    assert!(exists(&deps, &orphan).await, "a dry run deletes nothing");

    let real = worker::task::cleanup::run(
        eks.as_ref(),
        deps.connector.as_ref(),
        &sfn,
        Options {
            dry_run: false,
            grace: Duration::ZERO,
        },
        SystemTime::now(),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(report(&real, "orphans", &orphan).is_some(), "{real}");
    assert_eq!(
        report(&real, "skipped", &owned).map(|s| s["reason"].clone()),
        Some(json!("its execution is still running"))
    );
    assert_eq!(
        report(&real, "skipped", &retained).map(|s| s["reason"].clone()),
        Some(json!("retained"))
    );
    assert_eq!(
        report(&real, "skipped", &foreign).map(|s| s["reason"].clone()),
        Some(json!("not tagged by eks-task-worker"))
    );
    assert!(!exists(&deps, &orphan).await, "the orphan is deleted");
    assert_eq!(
        report(&real, "orphans", &finished).map(|o| o["why"].clone()),
        Some(json!("its execution is SUCCEEDED")),
        "{real}"
    );
    assert!(
        !exists(&deps, &finished).await,
        "the finished execution's cluster is deleted"
    );
    for kept in [&owned, &retained, &foreign] {
        assert!(exists(&deps, kept).await, "{kept} is kept");
    }
}

#[tokio::test]
async fn the_poller_answers_a_handed_off_cluster_operation() {
    let world = World::get();
    let deps = world.cluster_deps().await;
    let name = unique("cl-poll");
    cluster_op(&deps, create_cluster(&world, &name, json!({})))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let (execution, token) = world
        .waiting_execution(&name, Some(60))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    world.tag_as_made_for(&name, &token).await;
    let state = worker::contract::poll_state::ClusterPoll {
        operation: worker::contract::cluster_op::Operation::CreateCluster,
        cluster_name: name.clone(),
        resource_name: None,
        force_delete_compute: false,
        task_token: token,
        attempt: 2,
        next_delay_seconds: 1,
        curve: worker::contract::curve::PollCurve::new(vec![1], 1)
            .unwrap_or_else(|e| panic!("{e}")),
        execution: None,
    };
    let input: Value =
        serde_json::from_str(&state.next_poll().unwrap_or_else(|e| panic!("{e}")).input)
            .unwrap_or_default();
    let out = worker::task::poller::handle(world_tests::sealed(&deps, &input).await, &deps)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out["answered"], "SendTaskSuccess", "{out}");
    let (status, output, _) = world
        .execution_end(&execution, Duration::from_secs(10))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(status, "SUCCEEDED");
    assert!(output.unwrap_or_default().contains("\"ACTIVE\""));
}

/// A cluster deleted and made again under its name, while the function is warm: the
/// world's EKS gives every cluster an endpoint and a CA of its own, and closes the
/// endpoint with the cluster, as EKS does. The same function (one connector, its
/// DescribeCluster answer kept) reaches the new cluster with no `Endpoint` in the
/// payload: the old endpoint refuses, EKS is asked again, and the request goes where
/// the cluster is now (issue "Other people's state machines", break 2).
#[tokio::test]
async fn a_warm_function_follows_a_cluster_made_again_under_its_name() {
    let world = World::get();
    let deps = world
        .deps(world.settings())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let name = unique("made-again");
    let eks = aws_sdk_eks::Client::new(&world.sdk("cluster_admin").await);
    let make = || async {
        eks.create_cluster()
            .name(&name)
            .role_arn(world.cluster_role())
            .resources_vpc_config(
                aws_sdk_eks::types::VpcConfigRequest::builder()
                    .subnet_ids("subnet-a")
                    .build(),
            )
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e:?}"))
            .cluster()
            .and_then(|c| c.endpoint().map(str::to_owned))
            .unwrap_or_default()
    };
    let list = json!({ "ClusterName": name, "Method": "GET", "Path": format!("/apis/batch/v1/namespaces/{}/jobs", world.namespace()), "QueryParameters": { "limit": ["1"] } });
    let first = make().await;
    let answer = worker::task::call::handle(list.clone(), &deps)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(answer["StatusCode"], 200, "{answer}");
    eks.delete_cluster()
        .name(&name)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e:?}"));
    // A deleted cluster's endpoint no longer answers (looked at from outside the worker,
    // whose first failure would ask EKS, and then not again for FOLLOW_EVERY).
    let old = url::Url::parse(&first).unwrap_or_else(|e| panic!("{first}: {e}"));
    let refused = std::net::TcpStream::connect((
        old.host_str().unwrap_or_default(),
        old.port().unwrap_or(443),
    ));
    assert!(
        refused.is_err(),
        "a deleted cluster does not answer at {first}"
    );
    let again = make().await;
    assert_ne!(first, again, "made again, the cluster answers elsewhere");
    let answer = worker::task::call::handle(list, &deps)
        .await
        .unwrap_or_else(|e| panic!("the warm function reaches the cluster made again: {e}"));
    assert_eq!(answer["StatusCode"], 200, "{answer}");
    eks.delete_cluster()
        .name(&name)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e:?}"));
}
