//! `deleteCluster` with `ForceDeleteCompute` releases what would outlive the cluster in
//! its VPC before the compute goes: Services of type LoadBalancer (a load balancer) and
//! PersistentVolumeClaims (a volume), whose controllers run on that compute. Against
//! moto and the local API server (which serves every cluster of the world). Its own
//! test binary: a forced delete lists Services and claims across the one local API
//! server, so no other forced delete may run beside it.

// Test helpers fail the test by panicking.
#![allow(clippy::panic)]

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use worker::config::cluster_access::WorkerAccess;
use worker::contract::poll_state::ClusterPoll;
use worker::task::cluster_ops::check;
use worker::task::force_delete::Stage;
use world_tests::{cluster_op, request, send, unique, World};

async fn admin(method: http::Method, path: &str, body: Option<&Value>) -> (u16, Value) {
    let kube = World::get().admin_kube().unwrap_or_else(|e| panic!("{e}"));
    let r = send(&kube, request(method, path, body))
        .await
        .unwrap_or_else(|e| panic!("{path}: {e}"));
    (r.status, r.body_value())
}

#[tokio::test]
async fn load_balancers_and_volumes_are_released_before_the_compute() {
    let world = World::get();
    let mut settings = world.poller_settings("1");
    settings.cluster_access = WorkerAccess::parse(Some(&world.fact("/worker/arn")), None)
        .unwrap_or_else(|e| panic!("{e:?}"));
    let deps = world.deps(settings).await.unwrap_or_else(|e| panic!("{e}"));
    let name = unique("fd-release");
    // A cluster the worker made (and let itself into), with a nodegroup.
    let (_, token) = world
        .waiting_execution(&name, Some(60))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let created = cluster_op(
        &deps,
        json!({ "Operation": "createCluster", "Name": name, "RoleArn": world.cluster_role(), "ResourcesVpcConfig": { "SubnetIds": ["subnet-a"] }, "TaskToken": token }),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(created["answered"], "SendTaskSuccess", "{created}");
    cluster_op(
        &deps,
        json!({ "Operation": "createNodegroup", "ClusterName": name, "NodegroupName": "ng", "NodeRole": world.cluster_role(), "Subnets": ["subnet-a"] }),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    // What the cluster's users made: a LoadBalancer Service (its controller's finalizer
    // held until the load balancer is gone) and a claim mounted by a running pod.
    let ns = name.clone();
    admin(
        http::Method::POST,
        "/api/v1/namespaces",
        Some(&json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": ns } })),
    )
    .await;
    let (code, _) = admin(http::Method::POST, &format!("/api/v1/namespaces/{ns}/services"), Some(&json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": { "name": "web", "finalizers": ["service.kubernetes.io/load-balancer-cleanup"] },
        "spec": { "type": "LoadBalancer", "ports": [{ "port": 80 }], "selector": { "app": "web" } } }))).await;
    assert_eq!(code, 201);
    let (code, _) = admin(
        http::Method::POST,
        &format!("/api/v1/namespaces/{ns}/services"),
        Some(
            &json!({ "apiVersion": "v1", "kind": "Service", "metadata": { "name": "inside" },
        "spec": { "ports": [{ "port": 80 }], "selector": { "app": "web" } } }),
        ),
    )
    .await;
    assert_eq!(code, 201);
    let (code, _) = admin(http::Method::POST, &format!("/api/v1/namespaces/{ns}/persistentvolumeclaims"), Some(&json!({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": { "name": "data" },
        "spec": { "accessModes": ["ReadWriteOnce"], "resources": { "requests": { "storage": "1Gi" } } } }))).await;
    assert_eq!(code, 201);
    let (code, _) = admin(http::Method::POST, &format!("/api/v1/namespaces/{ns}/pods"), Some(&json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": { "name": "db", "annotations": { "sim.eks-task-worker.io/run-seconds": "3600" } },
        "spec": { "containers": [{ "name": "db", "image": "postgres", "volumeMounts": [{ "name": "data", "mountPath": "/data" }] }],
                  "volumes": [{ "name": "data", "persistentVolumeClaim": { "claimName": "data" } }] } }))).await;
    assert_eq!(code, 201);

    let poll = ClusterPoll {
        operation: worker::contract::cluster_op::Operation::DeleteCluster,
        cluster_name: name.clone(),
        resource_name: None,
        force_delete_compute: true,
        task_token: String::new(),
        attempt: 0,
        next_delay_seconds: 1,
        curve: worker::contract::curve::PollCurve::default(),
        execution: None,
    };
    let step = || async {
        check(
            deps.eks.as_ref(),
            deps.connector.as_ref(),
            &poll,
            &deps.settings.cluster_access,
            std::time::SystemTime::now(),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"))
    };
    let nodegroup_there = || async {
        deps.eks
            .call(
                http::Method::GET,
                &format!("/clusters/{name}/node-groups/ng"),
                None,
            )
            .await
            .is_ok()
    };
    // Held by the Service's finalizer: the compute waits; the claim's pod is deleted,
    // then the claim (its protection finalizer lifted by the controller once no pod
    // uses it); the ClusterIP Service is left alone.
    let mut waited = String::new();
    for _ in 0..3 {
        match step().await {
            Stage::Pending(what) => waited = what,
            Stage::Done(v) => panic!("done while a load balancer is held: {v}"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert!(waited.contains(&format!("Service {ns}/web")), "{waited}");
    assert!(
        nodegroup_there().await,
        "the compute is kept while a load balancer is held"
    );
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let (code, _) = admin(
            http::Method::GET,
            &format!("/api/v1/namespaces/{ns}/persistentvolumeclaims/data"),
            None,
        )
        .await;
        if code == 404 {
            break;
        }
        assert!(
            Instant::now() < until,
            "the claim is still there: its pod was not deleted"
        );
        step().await;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    // Deleted by the worker: gone, or going (the claim's protection can lift as soon as
    // the pod has stopped, a moment before the pod object itself is removed).
    let (code, pod) = admin(
        http::Method::GET,
        &format!("/api/v1/namespaces/{ns}/pods/db"),
        None,
    )
    .await;
    assert!(
        code == 404 || pod.pointer("/metadata/deletionTimestamp").is_some(),
        "the pod that held the claim was deleted: {code} {pod}"
    );
    let (code, web) = admin(
        http::Method::GET,
        &format!("/api/v1/namespaces/{ns}/services/web"),
        None,
    )
    .await;
    assert_eq!(code, 200);
    assert!(
        web["metadata"]["deletionTimestamp"].is_string(),
        "the Service is being deleted: {web}"
    );
    // The load-balancer controller releases its load balancer: the finalizer goes.
    let (code, _) = admin(
        http::Method::PUT,
        &format!("/api/v1/namespaces/{ns}/services/web"),
        Some(&json!({ "apiVersion": "v1", "kind": "Service", "metadata": { "name": "web", "namespace": ns, "resourceVersion": web["metadata"]["resourceVersion"], "finalizers": [] }, "spec": web["spec"] })),
    )
    .await;
    assert_eq!(code, 200);
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        if let Stage::Done(v) = step().await {
            assert_eq!(v["cluster"]["status"], "DELETED", "{v}");
            break;
        }
        assert!(Instant::now() < until, "the forced delete did not finish");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert!(!nodegroup_there().await);
    let (code, _) = admin(
        http::Method::GET,
        &format!("/api/v1/namespaces/{ns}/services/inside"),
        None,
    )
    .await;
    assert_eq!(
        code, 200,
        "a Service without a load balancer is not touched"
    );
    admin(
        http::Method::DELETE,
        &format!("/api/v1/namespaces/{ns}"),
        None,
    )
    .await;
}
