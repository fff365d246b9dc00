//! call against the local world: every method, query parameters, bodies as JSON or
//! text, and API errors as `EKS.<status>` with the native cause.

// Test helpers fail the test by panicking.
#![allow(clippy::panic)]

use serde_json::{json, Value};
use worker::contract::error::TaskError;
use world_tests::{request, send, sim_job, unique, World};

async fn call(world: &World, fields: Value) -> Result<Value, TaskError> {
    let deps = world
        .deps(world.settings())
        .await
        .map_err(|e| TaskError::message("test", e.to_string()))?;
    let mut p = world.cluster_fields();
    if let (Some(p), Some(f)) = (p.as_object_mut(), fields.as_object()) {
        p.extend(f.clone());
    }
    worker::task::call::handle(p, &deps).await
}

fn ok(r: Result<Value, TaskError>) -> Value {
    r.unwrap_or_else(|e| panic!("call failed: {e}"))
}

#[tokio::test]
async fn every_method_works_on_a_config_map() {
    let world = World::get();
    let ns = world.namespace();
    let name = unique("cm");
    let base = format!("/api/v1/namespaces/{ns}/configmaps");
    let cm = json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": name }, "data": { "a": "1" } });

    let created = ok(call(
        &world,
        json!({ "Method": "POST", "Path": base, "RequestBody": cm }),
    )
    .await);
    assert_eq!(created["StatusCode"], 201);
    assert_eq!(created["StatusText"], "Created");
    assert_eq!(created["ResponseBody"]["data"]["a"], "1");
    assert!(created["Headers"]["content-type"]
        .as_str()
        .is_some_and(|c| c.contains("json")));

    let again = call(
        &world,
        json!({ "Method": "POST", "Path": base, "RequestBody": cm }),
    )
    .await
    .err()
    .unwrap_or_else(|| panic!("a second POST must conflict"));
    assert_eq!(again.name, "EKS.409");
    assert_eq!(again.cause["StatusCode"], 409);
    assert_eq!(again.cause["StatusText"], "Conflict");
    assert_eq!(again.cause["ResponseBody"]["kind"], "Status");
    assert_eq!(again.cause["ResponseBody"]["reason"], "AlreadyExists");

    let got = ok(call(
        &world,
        json!({ "Method": "GET", "Path": format!("{base}/{name}") }),
    )
    .await);
    let mut replaced = got["ResponseBody"].clone();
    replaced["data"] = json!({ "a": "2" });
    // A RequestBody given as a string is sent as written.
    let put = ok(call(&world, json!({ "Method": "PUT", "Path": format!("{base}/{name}"), "RequestBody": replaced.to_string() })).await);
    assert_eq!(put["StatusCode"], 200);
    assert_eq!(put["ResponseBody"]["data"]["a"], "2");

    let patched = ok(call(&world, json!({ "Method": "PATCH", "Path": format!("{base}/{name}"), "RequestBody": { "data": { "b": "3" } } })).await);
    assert_eq!(
        patched["ResponseBody"]["data"],
        json!({ "a": "2", "b": "3" }),
        "merge patch keeps a"
    );
    let json_patch = ok(call(&world, json!({ "Method": "PATCH", "Path": format!("{base}/{name}"), "PatchType": "json", "RequestBody": [{ "op": "remove", "path": "/data/a" }] })).await);
    assert_eq!(json_patch["ResponseBody"]["data"], json!({ "b": "3" }));

    // The API server does not serve HEAD on resources (RBAC knows no such verb): the
    // answer passes through as on EKS, and a HEAD answer has no body.
    let head = call(
        &world,
        json!({ "Method": "HEAD", "Path": format!("{base}/{name}") }),
    )
    .await
    .err()
    .unwrap_or_else(|| panic!("HEAD is refused"));
    assert_eq!(head.name, "EKS.405");
    assert_eq!(head.cause["ResponseBody"], "");

    let listed = ok(call(&world, json!({ "Method": "GET", "Path": base, "QueryParameters": { "fieldSelector": [format!("metadata.name={name}")] } })).await);
    assert_eq!(
        listed["ResponseBody"]["items"].as_array().map(Vec::len),
        Some(1)
    );

    let deleted = ok(call(
        &world,
        json!({ "Method": "DELETE", "Path": format!("{base}/{name}") }),
    )
    .await);
    assert_eq!(deleted["StatusCode"], 200);
    let gone = call(
        &world,
        json!({ "Method": "GET", "Path": format!("{base}/{name}") }),
    )
    .await
    .err()
    .unwrap_or_else(|| panic!("must be gone"));
    assert_eq!(gone.name, "EKS.404");
    assert_eq!(gone.cause["StatusText"], "Not Found");
    assert_eq!(gone.cause["ResponseBody"]["code"], 404);
}

#[tokio::test]
async fn list_a_jobs_pods_then_delete_it_in_the_foreground() {
    let world = World::get();
    let ns = world.namespace();
    let name = unique("call-job");
    let deps = world
        .deps(world.settings())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let run = json!({ "ClusterName": world.cluster(), "Namespace": ns, "Job": sim_job(&name, &["main"], json!({ "sim.eks-task-worker.io/run-seconds": "30" }), 1) });
    ok(worker::task::run_job::handle(run, &deps, None).await);
    let mut pods = Value::Null;
    for _ in 0..50 {
        pods = ok(call(&world, json!({ "Method": "GET", "Path": format!("/api/v1/namespaces/{ns}/pods"), "QueryParameters": { "labelSelector": [format!("job-name={name}")] } })).await);
        if pods["ResponseBody"]["items"]
            .as_array()
            .is_some_and(|i| !i.is_empty())
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(
        pods["ResponseBody"]["items"].as_array().map(Vec::len),
        Some(1),
        "{pods}"
    );
    let deleted = ok(call(&world, json!({ "Method": "DELETE", "Path": format!("/apis/batch/v1/namespaces/{ns}/jobs/{name}"), "QueryParameters": { "propagationPolicy": ["Foreground"] } })).await);
    assert_eq!(deleted["StatusCode"], 200);
    assert!(
        deleted["ResponseBody"]["metadata"]["finalizers"]
            .as_array()
            .is_some_and(|f| f.iter().any(|x| x == "foregroundDeletion")),
        "{deleted}"
    );
}

#[tokio::test]
async fn forbidden_paths_are_eks_403() {
    let world = World::get();
    let e = call(
        &world,
        json!({ "Method": "GET", "Path": "/api/v1/namespaces/kube-system/secrets" }),
    )
    .await
    .err()
    .unwrap_or_else(|| panic!("must be forbidden"));
    assert_eq!(e.name, "EKS.403");
    assert_eq!(e.cause["StatusText"], "Forbidden");
    assert_eq!(e.cause["ResponseBody"]["reason"], "Forbidden");
}

#[tokio::test]
async fn a_token_for_another_cluster_is_eks_401_with_the_native_cause() {
    let world = World::get();
    // The API server belongs to the local cluster; a token made for another name fails.
    // (EKS knows no cluster "someone-elses", so its endpoint must be listed as trusted
    // for the worker to send it a token at all.)
    let settings = world.settings_with(&[(
        "TRUSTED_ENDPOINTS",
        format!("someone-elses={}", world.fact("/api_endpoint")),
    )]);
    let deps = world.deps(settings).await.unwrap_or_else(|e| panic!("{e}"));
    let mut payload = world.cluster_fields();
    payload["ClusterName"] = json!("someone-elses");
    payload["Method"] = json!("GET");
    payload["Path"] = json!("/api");
    let e = worker::task::call::handle(payload, &deps)
        .await
        .err()
        .unwrap_or_else(|| panic!("must be unauthorized"));
    assert_eq!(e.name, "EKS.401");
    assert_eq!(
        e.cause,
        json!({
            "ResponseBody": { "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": "Unauthorized", "reason": "Unauthorized", "code": 401 },
            "StatusCode": 401,
            "StatusText": "Unauthorized"
        }),
        "the one native example, verbatim"
    );
}

#[tokio::test]
async fn an_unreachable_endpoint_is_cluster_unreachable() {
    let world = World::get();
    // Listed as trusted (else it is refused before any connection: ownership.rs).
    let settings = worker::config::Settings::from_lookup(|k| match k {
        "AWS_REGION" => Some(world.fact("/region")),
        "TRUSTED_ENDPOINTS" => Some(format!("{}=https://127.0.0.1:1", world.cluster())),
        _ => None,
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let deps = world.deps(settings).await.unwrap_or_else(|e| panic!("{e}"));
    let mut payload = world.cluster_fields();
    payload["Endpoint"] = json!("https://127.0.0.1:1");
    payload["Method"] = json!("GET");
    payload["Path"] = json!("/api");
    let e = worker::task::call::handle(payload, &deps)
        .await
        .err()
        .unwrap_or_else(|| panic!("nothing listens on port 1"));
    assert_eq!(e.name, "EksTaskWorker.ClusterUnreachable");
    assert_eq!(e.cause["endpoint"], "https://127.0.0.1:1/");
}

/// A CA other than the one EKS reports for the cluster is refused before any token is
/// made (`EksTaskWorker.UntrustedCertificateAuthority`); under an endpoint the deployment
/// trusts, whose CA is the payload's, a CA that does not verify the server is
/// `EksTaskWorker.ClusterUnreachable`.
#[tokio::test]
async fn a_wrong_ca_is_refused_or_cluster_unreachable() {
    let world = World::get();
    // The kubelet's self-signed certificate is a certificate, but not the cluster's CA.
    let other =
        std::fs::read(world.fact("/ca_file").replace("ca.crt", "kubelet.crt")).unwrap_or_default();
    use base64::Engine;
    let wrong = json!({ "CertificateAuthority": base64::engine::general_purpose::STANDARD.encode(other), "Method": "GET", "Path": "/api" });
    let e = call(&world, wrong.clone())
        .await
        .err()
        .unwrap_or_else(|| panic!("the wrong CA must be refused"));
    assert_eq!(e.name, "EksTaskWorker.UntrustedCertificateAuthority", "{e}");
    let trusted = world
        .deps(world.settings_with(&[(
            "TRUSTED_ENDPOINTS",
            format!("{}={}", world.cluster(), world.fact("/api_endpoint")),
        )]))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut p = world.cluster_fields();
    if let (Some(p), Some(f)) = (p.as_object_mut(), wrong.as_object()) {
        p.extend(f.clone());
    }
    let e = worker::task::call::handle(p, &trusted)
        .await
        .err()
        .unwrap_or_else(|| panic!("TLS must fail"));
    assert_eq!(e.name, "EksTaskWorker.ClusterUnreachable", "{e}");
}

/// A response longer than a call reads (8 MiB: nine ConfigMaps of 1 MB) is not read on:
/// `EksTaskWorker.ResponseTooLarge`, with how to page it. A page of two (2 MB) is read,
/// but its list does not fit a Step Functions result: refused by the same name (natively
/// `States.DataLimitExceeded`), never cut into a string. A POST whose answer (the 1 MB
/// object) does not fit is made, and refused by that name with its status.
#[tokio::test]
async fn a_response_past_the_cap_or_the_result_is_refused_by_name() {
    let world = World::get();
    let ns = world.namespace();
    let set = unique("big");
    let base = format!("/api/v1/namespaces/{ns}/configmaps");
    let filler = "x".repeat(1_000_000);
    let admin = world.admin_kube().unwrap_or_else(|e| panic!("{e}"));
    for i in 0..9 {
        let cm = json!({ "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": { "name": format!("{set}-{i}"), "labels": { "set": set } },
            "data": { "filler": filler } });
        if i == 0 {
            let e = call(
                &world,
                json!({ "Method": "POST", "Path": base, "RequestBody": cm }),
            )
            .await
            .err()
            .unwrap_or_else(|| panic!("a 1 MB answer must not be a result"));
            assert_eq!(e.name, "EksTaskWorker.ResponseTooLarge", "{e}");
            assert_eq!(e.cause["StatusCode"], 201, "made: {e}");
        } else {
            let made = send(&admin, request(http::Method::POST, &base, Some(&cm)))
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(made.status, 201);
        }
    }
    let selector = json!([format!("set={set}")]);
    let whole = call(
        &world,
        json!({ "Method": "GET", "Path": base, "QueryParameters": { "labelSelector": selector } }),
    )
    .await;
    let paged = call(
        &world,
        json!({ "Method": "GET", "Path": base, "QueryParameters": { "labelSelector": selector, "limit": ["2"] } }),
    )
    .await;
    for i in 0..9 {
        let path = format!("{base}/{set}-{i}");
        let gone = send(&admin, request(http::Method::DELETE, &path, None))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(gone.status, 200, "{path}");
    }
    let e = whole
        .err()
        .unwrap_or_else(|| panic!("a 9 MB response must be refused"));
    assert_eq!(e.name, "EksTaskWorker.ResponseTooLarge", "{e}");
    assert_eq!(e.cause["limitBytes"], 8 * 1024 * 1024);
    assert!(e.cause["hint"]
        .as_str()
        .is_some_and(|h| h.contains("continue")));
    let e = paged
        .err()
        .unwrap_or_else(|| panic!("a 2 MB page must not be answered"));
    assert_eq!(e.name, "EksTaskWorker.ResponseTooLarge", "{e}");
    assert_eq!(e.cause["StatusCode"], 200, "{e}");
    assert!(
        e.cause["limitBytes"].as_u64().is_some_and(|l| l <= 262_144),
        "{e}"
    );
}

/// A call answers once: a watch or a followed log is refused before anything is sent.
#[tokio::test]
async fn watches_and_followed_logs_are_refused() {
    let world = World::get();
    let ns = world.namespace();
    for (path, query) in [
        (
            format!("/api/v1/namespaces/{ns}/pods"),
            json!({ "watch": ["true"] }),
        ),
        (
            format!("/api/v1/namespaces/{ns}/pods/p/log"),
            json!({ "follow": ["1"] }),
        ),
        (
            format!("/apis/batch/v1/watch/namespaces/{ns}/jobs"),
            json!({}),
        ),
    ] {
        let e = call(
            &world,
            json!({ "Method": "GET", "Path": path, "QueryParameters": query }),
        )
        .await
        .err()
        .unwrap_or_else(|| panic!("{path} must be refused"));
        assert_eq!(
            (e.name.as_str(), &e.cause["field"]),
            ("EksTaskWorker.InvalidInput", &json!("QueryParameters")),
            "{path}: {e}"
        );
    }
}
