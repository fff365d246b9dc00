//! State machines in the shape of published native pipelines (tests/native/published,
//! its README names each source), migrated with `eks-task-worker migrate` and nothing
//! else, run through the worker's real binaries on the local Lambda platform: what
//! their downstream states read is what a native run gives them (issue "Other people's
//! state machines").

// Test helpers fail the test by panicking.
#![allow(clippy::panic)]

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{json, Value};
use world_tests::{request, send, unique, until_job, Platform, World};

fn native(file: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("native")
        .join(file);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `definition` with the build-time values of the local world put in, migrated by the
/// CLI, as docs/migration.md says.
fn migrated(world: &World, definition: &str) -> String {
    world.migrated(
        &definition
            .replace("${ClusterName}", &world.cluster())
            .replace("${Endpoint}", &world.fact("/api_endpoint"))
            .replace(
                "${CertificateAuthority}",
                &world.fact("/certificate_authority"),
            )
            .replace("${Namespace}", &world.namespace()),
    )
}

async fn run(world: &World, name: &str, file: &str, input: &Value, within: u64) -> Value {
    let (execution, status, output, error) = world
        .run_state_machine(
            name,
            &migrated(world, &native(file)),
            input,
            Duration::from_secs(within),
        )
        .await
        .unwrap_or_else(|e| panic!("{file}: {e}"));
    assert_eq!(
        status, "SUCCEEDED",
        "{file} {execution}: {error:?} {output:?}"
    );
    serde_json::from_str(&output.unwrap_or_default()).unwrap_or_default()
}

/// AWS's "Manage an Amazon EKS cluster" sample, run twice under one cluster name on
/// warm functions: the cluster made again answers on another endpoint under another CA
/// (as every cluster the world makes), and the second run goes through as the first.
async fn the_same_cluster_name_twice(world: &World) {
    let cluster = unique("published-twice");
    let account = world.fact("/account");
    let role = format!("arn:aws:iam::{account}:role/eks-task-worker-cluster");
    let admin = world.admin_kube().unwrap_or_else(|e| panic!("{e}"));
    let mut endpoints = Vec::new();
    for round in 1..=2 {
        // The sample's Job has a fixed name: the previous run's must be gone first.
        let path = "/apis/batch/v1/namespaces/default/jobs/native-pipeline";
        send(
            &admin,
            request(
                http::Method::DELETE,
                path,
                Some(&json!({ "propagationPolicy": "Background" })),
            ),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        until_job(
            &admin,
            "default",
            "native-pipeline",
            Duration::from_secs(30),
            |j| j.is_none(),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        let input = json!({ "ClusterName": cluster, "ClusterRoleArn": role, "NodeRoleArn": role, "SubnetIds": ["subnet-a"] });
        let out = run(
            world,
            &unique(&format!("published-twice-{round}")),
            "eks-pipeline.asl.json",
            &input,
            180,
        )
        .await;
        assert!(
            out.get("error").is_none(),
            "round {round}: {}",
            out["error"]
        );
        assert_eq!(out["eks"]["Status"], "ACTIVE", "round {round}: {out}");
        assert_eq!(out["job"]["Succeeded"], 1, "round {round}: {out}");
        assert_eq!(
            out["job"]["Logs"],
            json!(["pi is 3.14159"]),
            "round {round}: {out}"
        );
        assert_eq!(out["jobDeleted"]["StatusCode"], 200, "round {round}: {out}");
        endpoints.push((
            out["eks"]["Endpoint"].clone(),
            out["eks"]["CertificateAuthority"].clone(),
        ));
    }
    assert_ne!(
        endpoints[0].0, endpoints[1].0,
        "the cluster made again has another endpoint"
    );
    assert_ne!(
        endpoints[0].1, endpoints[1].1,
        "the cluster made again has another CA"
    );
}

async fn fargate_process(world: &World) {
    let out = run(
        world,
        &unique("published-fargate"),
        "published/fargate-process.asl.json",
        &json!({}),
        60,
    )
    .await;
    assert_eq!(out["outcome"], "success", "{out}");
    assert!(
        out["job"]
            .as_str()
            .is_some_and(|j| j.starts_with("process-")),
        "{out}"
    );
    assert_eq!(out["succeeded"], 1, "{out}");
    assert_eq!(out["logs"], json!(["processed 42 records"]), "{out}");
    assert_eq!(
        out["deletedStatus"]["succeeded"], 1,
        "the deleted Job's status, as the DELETE answered it: {out}"
    );
}

async fn wait_for_pods(world: &World) {
    let job = unique("published-pods");
    let out = run(
        world,
        &job,
        "published/wait-for-pods.asl.json",
        &json!({ "JobName": job, "SandboxId": job, "retries": ["retry"] }),
        120,
    )
    .await;
    assert_eq!(out["error-info"]["Error"], "EKS.409", "{out}");
    let pod = out["waited"][0]["name"].as_str().unwrap_or_default();
    assert!(pod.starts_with(&job), "the pod the Map waited for: {out}");
    assert_eq!(out["waited"][0]["phase"], "Succeeded", "{out}");
    assert_eq!(out["deleted"], json!([{ "deleted": job }]), "{out}");
    assert_eq!(out["deletedAgain"], json!(["gone"]), "{out}");
}

async fn patch_and_check(world: &World) {
    // Small objects: created, one patched, a missing one skipped by EKS.404 after its
    // States.TaskFailed retries; the check finds them.
    let selector = unique("published-patch");
    let input = json!({ "EKS": {
        "ClusterName": world.cluster(), "Namespace": world.namespace(), "Selector": selector,
        "Data": "small",
        "Objects": [{ "Name": format!("{selector}-a") }],
        "Services": [{ "Name": format!("{selector}-a"), "Replicas": "3" }, { "Name": format!("{selector}-missing"), "Replicas": "1" }]
    } });
    let out = run(
        world,
        &selector,
        "published/patch-and-check.asl.json",
        &input,
        90,
    )
    .await;
    assert_eq!(out["branch"], "some left", "{out}");
    assert_eq!(
        out["created"],
        json!([{ "name": format!("{selector}-a") }]),
        "{out}"
    );
    assert_eq!(
        out["scaled"],
        json!([{ "name": format!("{selector}-a"), "replicas": "3" }, { "skipped": format!("{selector}-missing"), "error": "EKS.404" }]),
        "{out}"
    );

    // Objects whose list cannot fit a result: the check fails by name into the Catch,
    // never the "none left" branch a cut list would take.
    let selector = unique("published-big");
    let objects: Vec<Value> = (1..=3)
        .map(|i| json!({ "Name": format!("{selector}-{i}") }))
        .collect();
    let input = json!({ "EKS": {
        "ClusterName": world.cluster(), "Namespace": world.namespace(), "Selector": selector,
        "Data": "x".repeat(120_000),
        "Objects": objects,
        "Services": []
    } });
    let out = run(
        world,
        &selector,
        "published/patch-and-check.asl.json",
        &input,
        90,
    )
    .await;
    assert_eq!(out["branch"], "could not check", "{out}");
    assert_eq!(out["error"], "EksTaskWorker.ResponseTooLarge", "{out}");
    assert!(
        out["cause"]
            .as_str()
            .is_some_and(|c| c.contains("limit") && c.contains("continue")),
        "the cause says how to page: {out}"
    );
    assert_eq!(out["created"].as_array().map(Vec::len), Some(3), "{out}");
}

async fn train_and_promote(world: &World) {
    let name = unique("published-train");
    let out = run(
        world,
        &name,
        "published/train-and-promote.asl.json",
        &json!({ "ClusterName": world.cluster(), "Namespace": world.namespace() }),
        90,
    )
    .await;
    assert!(out.get("error").is_none(), "{out}");
    assert_eq!(out["training"]["status"]["succeeded"], 1, "{out}");
    assert_eq!(out["evaluation"]["job"], format!("train-{name}"), "{out}");
    assert_eq!(
        out["evaluation"]["apiVersion"], "batch/v1",
        "the Job without an apiVersion, taken as the API server takes it: {out}"
    );
    assert_eq!(out["evaluation"]["succeeded"], 1, "{out}");
    assert_eq!(
        out["evaluation"]["log"],
        json!(["epoch 1 loss 0.9\nepoch 2 loss 0.5\nepoch 3 loss 0.2\n"]),
        "{out}"
    );
    // The promotion ran (its result was dropped with ResultPath null): its Job succeeded.
    let kube = world.worker_kube().unwrap_or_else(|e| panic!("{e}"));
    let promoted = until_job(
        &kube,
        &world.namespace(),
        &format!("promote-{name}"),
        Duration::from_secs(5),
        |j| j.is_some(),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        promoted.and_then(|j| j.pointer("/status/succeeded").cloned()),
        Some(json!(1))
    );
}

#[tokio::test]
async fn published_pipelines_run_migrated() {
    let world = World::get();
    let _platform = Platform::start();
    // The cluster pipeline first, alone: every cluster of the world is the one API
    // server, so the access a created cluster gives the worker would reach the others'
    // namespaces while it lasts.
    the_same_cluster_name_twice(&world).await;
    tokio::join!(
        fargate_process(&world),
        wait_for_pods(&world),
        patch_and_check(&world),
        train_and_promote(&world),
    );
}
