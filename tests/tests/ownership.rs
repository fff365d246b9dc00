//! Never someone else's: the worker deletes, follows and sends tokens only to what is
//! its own. Each test names the cell of RELIABILITY.md it is ("Ownership and trust"):
//! a forged poll state (a foreign Job, a foreign cluster, a foreign endpoint), and a
//! delete of a cluster the worker did not create through every path (the function,
//! request/response and `.sync`, forced or not, nodegroup and Fargate profile, the
//! poller, the cleanup). The handlers run in-process with the real adapters, against
//! moto and the local API server.

// Test helpers fail the test by panicking.
#![allow(clippy::panic)]

use std::time::{Duration, SystemTime};

use serde_json::json;
use worker::contract::error::names;
use worker::task::deps::Deps;
use world_tests::{cluster_op, request, send, sim_job, unique, until_job, World};

/// Someone else's cluster, made straight through the EKS API (no worker tags), with a
/// nodegroup and a Fargate profile of theirs.
async fn foreign_cluster(world: &World, deps: &Deps, name: &str) {
    let eks = deps.eks.clone();
    let made = [
        (
            "/clusters".to_owned(),
            json!({ "name": name, "roleArn": world.cluster_role(), "resourcesVpcConfig": { "subnetIds": ["subnet-a"] }, "tags": { "team": "other" } }),
        ),
        (
            format!("/clusters/{name}/node-groups"),
            json!({ "nodegroupName": "theirs", "nodeRole": world.cluster_role(), "subnets": ["subnet-a"], "tags": { "team": "other" } }),
        ),
        (
            format!("/clusters/{name}/fargate-profiles"),
            json!({ "fargateProfileName": "theirs", "podExecutionRoleArn": world.cluster_role(), "subnets": ["subnet-a"], "selectors": [{ "namespace": "x" }] }),
        ),
    ];
    for (path, body) in made {
        eks.call(http::Method::POST, &path, Some(&body))
            .await
            .unwrap_or_else(|e| panic!("{path}: {e:?}"));
    }
}

/// Whether the cluster, its nodegroup and its Fargate profile all still exist.
async fn all_still_there(deps: &Deps, name: &str) -> bool {
    let eks = deps.eks.clone();
    for path in [
        format!("/clusters/{name}"),
        format!("/clusters/{name}/node-groups/theirs"),
        format!("/clusters/{name}/fargate-profiles/theirs"),
    ] {
        match eks.call(http::Method::GET, &path, None).await {
            Ok(v) if !v.to_string().contains("DELETING") => {}
            _ => return false,
        }
    }
    true
}

/// Cell "untagged cluster, every delete path": nothing of the foreign cluster goes.
#[tokio::test]
async fn no_path_deletes_a_cluster_the_worker_did_not_create() {
    let world = World::get();
    let deps = world.cluster_deps().await;
    let name = unique("foreign");
    foreign_cluster(&world, &deps, &name).await;
    // The forced deletes name an execution, as they must: no execution made this cluster.
    let mine = format!(
        "arn:aws:states:{}:{}:execution:m:mine",
        world.fact("/region"),
        world.fact("/account")
    );

    // The function, request/response: each delete refused, named (the forced one first:
    // it is the one that would take everything).
    for payload in [
        json!({ "Operation": "deleteCluster", "Name": name, "ForceDeleteCompute": true, "ExecutionArn": mine }),
        json!({ "Operation": "deleteCluster", "Name": name }),
        json!({ "Operation": "deleteNodegroup", "ClusterName": name, "NodegroupName": "theirs" }),
        json!({ "Operation": "deleteFargateProfile", "ClusterName": name, "FargateProfileName": "theirs" }),
    ] {
        let refused = cluster_op(&deps, payload.clone()).await.err();
        assert!(
            all_still_there(&deps, &name).await,
            "{payload}: someone else's cluster, nodegroup and profile are all still there"
        );
        let e = refused.unwrap_or_else(|| panic!("{payload}: must be refused"));
        assert_eq!(e.name, names::NOT_OWNED, "{payload}: {e}");
        assert!(
            e.cause["message"]
                .as_str()
                .is_some_and(|m| m.contains("not created by eks-task-worker")),
            "{e}"
        );
    }

    // The function, .sync (callback): the task fails with the name; nothing deleted.
    let (execution, token) = world
        .waiting_execution(&unique("foreign-sync"), Some(60))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let report = cluster_op(&deps,
        json!({ "Operation": "deleteCluster", "Name": name, "ForceDeleteCompute": true, "ExecutionArn": mine, "TaskToken": token }),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report["error"], names::NOT_OWNED, "{report}");
    world.expect_failed(&execution, names::NOT_OWNED).await;
    assert!(all_still_there(&deps, &name).await);

    // The poller, given a (forged) forced-delete poll state for it with a live token:
    // refused before the heartbeat; nothing deleted, the task not answered.
    let (execution, token) = world
        .waiting_execution(&unique("foreign-poll"), Some(60))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let forged = json!({ "Operation": "deleteCluster", "ClusterName": name, "ForceDeleteCompute": true, "Execution": mine, "TaskToken": token, "Attempt": 0, "NextDelaySeconds": 1, "Curve": [1] });
    let e = world_tests::forged_poll(&deps, &forged)
        .await
        .unwrap_or_else(|| panic!("a forged cluster poll must be refused"));
    assert_eq!(e.name, names::NOT_OWNED, "{e}");
    assert!(all_still_there(&deps, &name).await);
    let status = world.execution_status(&execution).await;
    assert_eq!(status, "RUNNING", "the forged state's task is not answered");

    // The cleanup: an untagged cluster is never an orphan.
    let eks = deps.eks.clone();
    let sfn = world.sfn().await;
    let report = worker::task::cleanup::run(
        eks.as_ref(),
        deps.connector.as_ref(),
        &sfn,
        // A dry run: it reports what it would delete without deleting other tests'
        // clusters.
        worker::task::cleanup::Options {
            dry_run: true,
            grace: Duration::ZERO,
        },
        SystemTime::now() + Duration::from_secs(86_400),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(!report["orphans"].to_string().contains(&name), "{report}");
    assert!(all_still_there(&deps, &name).await);
}

/// Cell "another execution's cluster": a delete that names its execution deletes only a
/// cluster that execution created.
#[tokio::test]
async fn a_delete_naming_its_execution_spares_another_executions_cluster() {
    let world = World::get();
    let deps = world.cluster_deps().await;
    let name = unique("theirs-exec");
    let account = world.fact("/account");
    let theirs = format!(
        "arn:aws:states:{}:{account}:execution:m:theirs",
        world.fact("/region")
    );
    let mine = format!(
        "arn:aws:states:{}:{account}:execution:m:mine",
        world.fact("/region")
    );
    cluster_op(&deps,
        json!({ "Operation": "createCluster", "Name": name, "RoleArn": world.cluster_role(), "ResourcesVpcConfig": { "SubnetIds": ["subnet-a"] }, "ExecutionArn": theirs }),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let e = cluster_op(
        &deps,
        json!({ "Operation": "deleteCluster", "Name": name, "ExecutionArn": mine }),
    )
    .await
    .err()
    .unwrap_or_else(|| panic!("another execution's cluster must be spared"));
    assert_eq!(e.name, names::NOT_OWNED, "{e}");
    let eks = deps.eks.clone();
    assert!(
        eks.call(http::Method::GET, &format!("/clusters/{name}"), None)
            .await
            .is_ok(),
        "the refused delete left the cluster"
    );
    // Its own execution may delete it.
    cluster_op(
        &deps,
        json!({ "Operation": "deleteCluster", "Name": name, "ExecutionArn": theirs }),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
}

/// Cell "forged poll state, foreign Job": a poll state naming a Job another task (or a
/// person) created, with a token that is no longer valid, would have had the Job deleted
/// as "its execution is gone". It is refused; the Job runs on.
#[tokio::test]
async fn a_forged_poll_state_cannot_touch_a_foreign_job() {
    let world = World::get();
    let deps = world.cluster_deps().await;
    let name = unique("not-yours");
    let admin = world.admin_kube().unwrap_or_else(|e| panic!("{e}"));
    let ns = world.namespace();
    let job = sim_job(
        &name,
        &["main"],
        json!({ "sim.eks-task-worker.io/run-seconds": "30" }),
        1,
    );
    let made = send(
        &admin,
        request(
            http::Method::POST,
            &format!("/apis/batch/v1/namespaces/{ns}/jobs"),
            Some(&job),
        ),
    )
    .await
    .and_then(|r| r.json().map_err(|e| anyhow::anyhow!("{e}")))
    .unwrap_or_else(|e| panic!("{e}"));
    let uid = made["metadata"]["uid"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let forged = json!({
        "Cluster": { "ClusterName": world.cluster() },
        "Namespace": ns, "JobName": name, "JobUid": uid,
        "TaskToken": "a-token-of-a-task-that-is-long-gone",
        "LogOptions": { "RetrieveLogs": false, "RawLogs": false, "LogParameters": [] },
        "Attempt": 0, "NextDelaySeconds": 1, "Curve": [1]
    });
    let e = world_tests::forged_poll(&deps, &forged)
        .await
        .unwrap_or_else(|| panic!("a forged poll state must be refused"));
    assert_eq!(e.name, names::NOT_OWNED, "{e}");
    let still = until_job(&admin, &ns, &name, Duration::from_secs(3), |j| {
        j.is_some_and(|j| j["metadata"].get("deletionTimestamp").is_none())
    })
    .await;
    assert!(still.is_ok(), "the foreign Job is untouched: {still:?}");
    let gone = json!({ "propagationPolicy": "Background" });
    let _ = send(
        &admin,
        request(
            http::Method::DELETE,
            &format!("/apis/batch/v1/namespaces/{ns}/jobs/{name}"),
            Some(&gone),
        ),
    )
    .await;
}

/// Cell "forged poll state, foreign endpoint": a poll state (or a payload) naming an
/// endpoint that is not the cluster's gets no connection at all, so no bearer token.
#[tokio::test]
async fn no_token_goes_to_an_endpoint_that_is_not_the_clusters() {
    let world = World::get();
    let deps = world.cluster_deps().await;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
    listener
        .set_nonblocking(true)
        .unwrap_or_else(|e| panic!("{e}"));
    let port = listener.local_addr().map(|a| a.port()).unwrap_or_default();
    let endpoint = format!("https://127.0.0.1:{port}");
    let forged = json!({
        "Cluster": { "ClusterName": world.cluster(), "Endpoint": endpoint, "CertificateAuthority": world.fact("/certificate_authority") },
        "Namespace": world.namespace(), "JobName": "any", "JobUid": "00000000-0000-0000-0000-000000000000",
        "TaskToken": "a-token", "LogOptions": { "RetrieveLogs": false, "RawLogs": false, "LogParameters": [] },
        "Attempt": 0, "NextDelaySeconds": 1, "Curve": [1]
    });
    let e = world_tests::forged_poll(&deps, &forged)
        .await
        .unwrap_or_else(|| panic!("a foreign endpoint must be refused"));
    assert_eq!(e.name, names::UNTRUSTED_ENDPOINT, "{e}");
    let run_job = json!({ "ClusterName": world.cluster(), "Endpoint": endpoint, "CertificateAuthority": world.fact("/certificate_authority"),
        "Namespace": world.namespace(), "Job": sim_job(&unique("never"), &["main"], json!({}), 1) });
    let e = worker::task::run_job::handle(run_job, &deps, None)
        .await
        .err()
        .unwrap_or_else(|| panic!("run-job must refuse a foreign endpoint"));
    assert_eq!(e.name, names::UNTRUSTED_ENDPOINT, "{e}");
    assert!(
        e.cause["message"]
            .as_str()
            .is_some_and(|m| m.contains("TRUSTED_ENDPOINTS")),
        "{e}"
    );
    assert!(
        listener.accept().is_err(),
        "nothing connected to the foreign endpoint"
    );
}
