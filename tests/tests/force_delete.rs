//! `deleteCluster` with `ForceDeleteCompute` releases what would outlive the cluster in
//! its VPC before the compute goes: Services of type LoadBalancer (a load balancer) and
//! PersistentVolumeClaims (a volume), whose controllers run on that compute. Against
//! moto and the local API server (which serves every cluster of the world). Its own
//! test binary: a forced delete lists Services and claims across the one local API
//! server, so no other forced delete may run beside it: the tests here take turns
//! ([`TURN`]), each starts by checking that nothing in the world is held, and each
//! cleans up what it made however it ends (the Service's finalizer lifted, its namespace
//! deleted), so a red run cannot hold the next forced delete for ten minutes.

// Test helpers fail the test by panicking.
#![allow(clippy::panic)]

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

use futures::FutureExt;
use serde_json::{json, Value};
use worker::config::cluster_access::WorkerAccess;
use worker::contract::poll_state::ClusterPoll;
use worker::task::cluster_ops::check;
use worker::task::force_delete::Stage;
use world_tests::{cluster_op, request, send, unique, World};

/// One forced delete at a time: each lists Services and claims across the API server.
static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn admin(method: http::Method, path: &str, body: Option<&Value>) -> (u16, Value) {
    let kube = World::get().admin_kube().unwrap_or_else(|e| panic!("{e}"));
    let r = send(&kube, request(method, path, body))
        .await
        .unwrap_or_else(|e| panic!("{path}: {e}"));
    (r.status, r.body_value())
}

/// What in the whole world would hold a forced delete: `LoadBalancer` Services and
/// PersistentVolumeClaims, by namespace and name.
async fn held_in_world() -> Vec<String> {
    let mut held = Vec::new();
    for (path, what) in [
        ("/api/v1/services", "Service"),
        ("/api/v1/persistentvolumeclaims", "PersistentVolumeClaim"),
    ] {
        let (code, list) = admin(http::Method::GET, path, None).await;
        assert_eq!(code, 200, "{path}: {list}");
        for o in list["items"].as_array().into_iter().flatten() {
            if what == "Service" && o["spec"]["type"] != "LoadBalancer" {
                continue;
            }
            held.push(format!(
                "{what} {}/{}",
                o["metadata"]["namespace"].as_str().unwrap_or_default(),
                o["metadata"]["name"].as_str().unwrap_or_default()
            ));
        }
    }
    held
}

/// Runs `body` on the cluster and namespace `ns` in the forced deletes' turn, after
/// checking that nothing in the world is held; then, however `body` ended, lifts the
/// finalizers of the namespace's Services, deletes the namespace, and deletes the
/// cluster and its nodegroup if they are still there (the world's access entries bind
/// the worker on the one API server until their cluster goes), and passes a panic on.
async fn in_turn<F: Future<Output = ()>>(ns: &str, body: F) {
    let _turn = TURN.lock().await;
    let held = held_in_world().await;
    assert!(
        held.is_empty(),
        "the world holds what would hold a forced delete (left by an earlier run?): {held:?}"
    );
    let ended = AssertUnwindSafe(body).catch_unwind().await;
    let (_, services) = admin(
        http::Method::GET,
        &format!("/api/v1/namespaces/{ns}/services"),
        None,
    )
    .await;
    for s in services["items"].as_array().into_iter().flatten() {
        let name = s["metadata"]["name"].as_str().unwrap_or_default();
        admin(
            http::Method::PATCH,
            &format!("/api/v1/namespaces/{ns}/services/{name}"),
            Some(&json!({ "metadata": { "finalizers": null } })),
        )
        .await;
    }
    admin(
        http::Method::DELETE,
        &format!("/api/v1/namespaces/{ns}"),
        None,
    )
    .await;
    let eks = World::get().cluster_deps().await.eks;
    for path in [
        format!("/clusters/{ns}/node-groups/ng"),
        format!("/clusters/{ns}"),
    ] {
        // Gone already when the test went green.
        let _ = eks.call(http::Method::DELETE, &path, None).await;
    }
    if let Err(panic) = ended {
        std::panic::resume_unwind(panic);
    }
}

/// Waits up to 60 s for the pod `ns`/`name` to be bound to the node and running.
async fn running(ns: &str, name: &str) {
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, pod) = admin(
            http::Method::GET,
            &format!("/api/v1/namespaces/{ns}/pods/{name}"),
            None,
        )
        .await;
        if pod["spec"]["nodeName"].is_string() && pod["status"]["phase"] == "Running" {
            return;
        }
        assert!(
            Instant::now() < until,
            "the pod {ns}/{name} is not running: {pod}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn load_balancers_and_volumes_are_released_before_the_compute() {
    let name = unique("fd-release");
    in_turn(&name, released_before_the_compute(name.clone())).await;
}

/// A cluster the worker made (and let itself into), with a nodegroup, and the namespace
/// `name` in it; the forced delete's poll of it, moved on one step at a time.
struct Forced {
    deps: worker::task::deps::Deps,
    poll: ClusterPoll,
}

impl Forced {
    async fn make(name: &str) -> Forced {
        let world = World::get();
        let mut settings = world.poller_settings("1");
        settings.cluster_access = WorkerAccess::parse(Some(&world.fact("/worker/arn")), None)
            .unwrap_or_else(|e| panic!("{e:?}"));
        let deps = world.deps(settings).await.unwrap_or_else(|e| panic!("{e}"));
        let (_, token) = world
            .waiting_execution(name, Some(60))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let execution = format!(
            "arn:aws:states:{}:{}:execution:force:{name}",
            world.fact("/region"),
            world.fact("/account")
        );
        let created = cluster_op(
            &deps,
            json!({ "Operation": "createCluster", "Name": name, "RoleArn": world.cluster_role(), "ResourcesVpcConfig": { "SubnetIds": ["subnet-a"] }, "ExecutionArn": execution, "TaskToken": token }),
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
        admin(
            http::Method::POST,
            "/api/v1/namespaces",
            Some(&json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": name } })),
        )
        .await;
        let poll = ClusterPoll {
            operation: worker::contract::cluster_op::Operation::DeleteCluster,
            cluster_name: name.to_owned(),
            resource_name: None,
            force_delete_compute: true,
            task_token: String::new(),
            attempt: 0,
            next_delay_seconds: 1,
            curve: worker::contract::curve::PollCurve::default(),
            execution: Some(execution),
        };
        Forced { deps, poll }
    }

    async fn step(&self) -> Stage {
        check(
            self.deps.eks.as_ref(),
            self.deps.connector.as_ref(),
            &self.poll,
            &self.deps.settings.cluster_access,
            std::time::SystemTime::now(),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"))
    }

    async fn nodegroup_there(&self) -> bool {
        let name = &self.poll.cluster_name;
        self.deps
            .eks
            .call(
                http::Method::GET,
                &format!("/clusters/{name}/node-groups/ng"),
                None,
            )
            .await
            .is_ok()
    }

    /// Steps until the forced delete is done (60 s at most): the cluster DELETED, the
    /// nodegroup gone.
    async fn finish(&self) {
        let until = Instant::now() + Duration::from_secs(60);
        loop {
            if let Stage::Done(v) = self.step().await {
                assert_eq!(v["cluster"]["status"], "DELETED", "{v}");
                break;
            }
            assert!(Instant::now() < until, "the forced delete did not finish");
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        assert!(!self.nodegroup_there().await);
    }
}

/// Makes the claim `claim` in `ns` and the pod `pod` mounting it (with the pod
/// simulator's `annotations`).
async fn claim_and_pod(ns: &str, claim: &str, pod: &str, annotations: Value) {
    let (code, _) = admin(http::Method::POST, &format!("/api/v1/namespaces/{ns}/persistentvolumeclaims"), Some(&json!({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": { "name": claim },
        "spec": { "accessModes": ["ReadWriteOnce"], "resources": { "requests": { "storage": "1Gi" } } } }))).await;
    assert_eq!(code, 201);
    let (code, _) = admin(http::Method::POST, &format!("/api/v1/namespaces/{ns}/pods"), Some(&json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": { "name": pod, "annotations": annotations },
        "spec": { "containers": [{ "name": "db", "image": "postgres", "volumeMounts": [{ "name": "data", "mountPath": "/data" }] }],
                  "volumes": [{ "name": "data", "persistentVolumeClaim": { "claimName": claim } }] } }))).await;
    assert_eq!(code, 201);
}

/// Whether the pod `ns`/`name` is gone or being deleted.
async fn deleted(ns: &str, name: &str) -> (bool, String) {
    let (code, pod) = admin(
        http::Method::GET,
        &format!("/api/v1/namespaces/{ns}/pods/{name}"),
        None,
    )
    .await;
    (
        code == 404 || pod.pointer("/metadata/deletionTimestamp").is_some(),
        format!("{code} {pod}"),
    )
}

async fn released_before_the_compute(name: String) {
    let forced = Forced::make(&name).await;
    // What the cluster's users made: a LoadBalancer Service (its controller's finalizer
    // held until the load balancer is gone) and a claim mounted by a running pod.
    let ns = name.clone();
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
    claim_and_pod(
        &ns,
        "data",
        "db",
        json!({ "sim.eks-task-worker.io/run-seconds": "3600" }),
    )
    .await;
    // Scheduled and running before the forced delete starts: the claim's protection
    // holds it while the pod is there.
    running(&ns, "db").await;

    // Held by the Service's finalizer: the compute waits; the claim's pod is deleted,
    // then the claim (its protection finalizer lifted by the controller once no pod
    // uses it); the ClusterIP Service is left alone.
    let mut waited = String::new();
    for _ in 0..3 {
        match forced.step().await {
            Stage::Pending(what) => waited = what,
            Stage::Done(v) => panic!("done while a load balancer is held: {v}"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert!(waited.contains(&format!("Service {ns}/web")), "{waited}");
    assert!(
        forced.nodegroup_there().await,
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
        forced.step().await;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    // Deleted by the worker: gone, or going (the claim's protection can lift as soon as
    // the pod has stopped, a moment before the pod object itself is removed).
    let (gone, pod) = deleted(&ns, "db").await;
    assert!(gone, "the pod that held the claim was deleted: {pod}");
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
    forced.finish().await;
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
}

/// A pod that mounts a claim but is not scheduled does not hold the claim (Kubernetes'
/// protection counts only pods with a node), so the claim goes at once; the pod, which
/// could never start on a deleted claim and would hold it once scheduled, is deleted
/// with it, in the same step.
#[tokio::test]
async fn a_pod_not_yet_scheduled_is_deleted_with_its_claim() {
    let name = unique("fd-unscheduled");
    in_turn(&name, unscheduled(name.clone())).await;
}

async fn unscheduled(name: String) {
    let forced = Forced::make(&name).await;
    let ns = name.clone();
    claim_and_pod(
        &ns,
        "scratch",
        "waiting",
        json!({ "sim.eks-task-worker.io/unschedulable": "true" }),
    )
    .await;
    let (_, pod) = admin(
        http::Method::GET,
        &format!("/api/v1/namespaces/{ns}/pods/waiting"),
        None,
    )
    .await;
    assert!(pod["spec"]["nodeName"].is_null(), "not scheduled: {pod}");
    forced.step().await;
    let (gone, pod) = deleted(&ns, "waiting").await;
    assert!(
        gone,
        "the unscheduled pod was deleted with its claim: {pod}"
    );
    forced.finish().await;
    let (code, claim) = admin(
        http::Method::GET,
        &format!("/api/v1/namespaces/{ns}/persistentvolumeclaims/scratch"),
        None,
    )
    .await;
    assert_eq!(code, 404, "the claim is gone: {claim}");
}
