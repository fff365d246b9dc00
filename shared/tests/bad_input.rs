//! Every malformed payload gets `EksTaskWorker.InvalidInput` naming the field, before
//! anything reaches a cluster; with a task token the error goes back on the token.
//! Arbitrary JSON never panics a handler.

// Test helpers fail the test by panicking.
#![allow(clippy::panic)]

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use base64::Engine;
use proptest::prelude::*;
use serde_json::{json, Value};
use shared::callback::{CallbackError, TaskCallback};
use shared::clock::SystemClock;
use shared::cluster::Connector;
use shared::config::Settings;
use shared::deps::Deps;
use shared::error::{names, TaskError};
use shared::input::ClusterRef;
use shared::kube_api::KubeApi;

#[derive(Default)]
struct Recorder {
    connects: Mutex<usize>,
    failures: Mutex<Vec<(String, String)>>,
}

#[async_trait]
impl Connector for Recorder {
    async fn connect(&self, _cluster: &ClusterRef) -> Result<Arc<dyn KubeApi>, TaskError> {
        *self.connects.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        Err(TaskError::message(
            names::CLUSTER_UNREACHABLE,
            "test double: no cluster",
        ))
    }
}

#[async_trait]
impl TaskCallback for Recorder {
    async fn succeed(&self, _token: &str, _output: &Value) -> Result<(), CallbackError> {
        Ok(())
    }
    async fn fail(&self, token: &str, error: &TaskError) -> Result<(), CallbackError> {
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((token.to_owned(), error.name.clone()));
        Ok(())
    }
    async fn heartbeat(&self, _token: &str) -> Result<(), CallbackError> {
        Ok(())
    }
}

fn deps(r: &Arc<Recorder>) -> Deps {
    Deps {
        settings: Settings::from_lookup(|_| None).unwrap_or_else(|e| panic!("{e}")),
        connector: r.clone(),
        callback: r.clone(),
        handoff: None,
        clock: Arc::new(SystemClock),
        eks: None,
        archive: None,
    }
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn job() -> Value {
    json!({ "apiVersion": "batch/v1", "kind": "Job", "metadata": { "name": "j" }, "spec": { "template": {} } })
}

fn run_job(change: Value) -> Value {
    let mut p = json!({ "ClusterName": "c", "Job": job() });
    for (k, v) in change.as_object().cloned().unwrap_or_default() {
        if v.is_null() {
            p.as_object_mut().map(|o| o.remove(&k));
        } else {
            p[k] = v;
        }
    }
    p
}

fn call(change: Value) -> Value {
    let mut p = json!({ "ClusterName": "c", "Method": "GET", "Path": "/api" });
    for (k, v) in change.as_object().cloned().unwrap_or_default() {
        if v.is_null() {
            p.as_object_mut().map(|o| o.remove(&k));
        } else {
            p[k] = v;
        }
    }
    p
}

fn job_with(path: &str, value: Value) -> Value {
    let mut j = job();
    if value.is_null() {
        j.as_object_mut().map(|o| o.remove(path));
    } else {
        j[path] = value;
    }
    j
}

fn logs(params: Value) -> Value {
    json!({ "LogOptions": { "RetrieveLogs": true, "LogParameters": params } })
}

/// (function, payload, the field the error must name)
fn cases() -> Vec<(&'static str, Value, &'static str)> {
    let garbage_pem = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
    vec![
        ("run-job", json!([]), "$"),
        ("run-job", json!("ClusterName"), "$"),
        (
            "run-job",
            run_job(json!({ "ClusterName": null })),
            "ClusterName",
        ),
        (
            "run-job",
            run_job(json!({ "ClusterName": "" })),
            "ClusterName",
        ),
        (
            "run-job",
            run_job(json!({ "ClusterName": 42 })),
            "ClusterName",
        ),
        (
            "run-job",
            run_job(json!({ "ClusterName": "bad name!" })),
            "ClusterName",
        ),
        (
            "run-job",
            run_job(json!({ "Endpoint": "not a url" })),
            "Endpoint",
        ),
        (
            "run-job",
            run_job(json!({ "Endpoint": "http://example.com" })),
            "Endpoint",
        ),
        (
            "run-job",
            run_job(json!({ "Endpoint": "https://example.com?x=1" })),
            "Endpoint",
        ),
        (
            "run-job",
            run_job(json!({ "CertificateAuthority": "%%% not base64 %%%" })),
            "CertificateAuthority",
        ),
        (
            "run-job",
            run_job(json!({ "CertificateAuthority": b64("hello, not a PEM") })),
            "CertificateAuthority",
        ),
        (
            "run-job",
            run_job(json!({ "CertificateAuthority": b64(garbage_pem) })),
            "CertificateAuthority",
        ),
        (
            "run-job",
            run_job(json!({ "Namespace": "Bad_Namespace" })),
            "Namespace",
        ),
        ("run-job", run_job(json!({ "Job": null })), "Job"),
        ("run-job", run_job(json!({ "Job": 42 })), "Job"),
        ("run-job", run_job(json!({ "Job": "{not json" })), "Job"),
        ("run-job", run_job(json!({ "Job": "[1, 2]" })), "Job"),
        (
            "run-job",
            run_job(json!({ "Job": job_with("apiVersion", json!("v1")) })),
            "Job.apiVersion",
        ),
        (
            "run-job",
            run_job(json!({ "Job": job_with("kind", json!("Pod")) })),
            "Job.kind",
        ),
        (
            "run-job",
            run_job(json!({ "Job": job_with("metadata", Value::Null) })),
            "Job.metadata",
        ),
        (
            "run-job",
            run_job(json!({ "Job": job_with("metadata", json!({ "labels": {} })) })),
            "Job.metadata",
        ),
        (
            "run-job",
            run_job(json!({ "Job": job_with("metadata", json!({ "name": "j", "labels": [] })) })),
            "Job.metadata.labels",
        ),
        (
            "run-job",
            run_job(json!({ "Job": job_with("spec", Value::Null) })),
            "Job.spec",
        ),
        (
            "run-job",
            run_job(json!({ "LogOptions": "yes" })),
            "LogOptions",
        ),
        (
            "run-job",
            run_job(json!({ "LogOptions": { "RetrieveLogs": "maybe" } })),
            "LogOptions.RetrieveLogs",
        ),
        (
            "run-job",
            run_job(json!({ "LogOptions": { "Retrieve": true } })),
            "LogOptions.Retrieve",
        ),
        (
            "run-job",
            run_job(logs(json!({ "tailLines": ["ten"] }))),
            "LogOptions.LogParameters.tailLines",
        ),
        (
            "run-job",
            run_job(logs(json!({ "tailLines": "10" }))),
            "LogOptions.LogParameters.tailLines",
        ),
        (
            "run-job",
            run_job(logs(json!({ "limitBytes": ["0"] }))),
            "LogOptions.LogParameters.limitBytes",
        ),
        (
            "run-job",
            run_job(logs(json!({ "follow": ["true"] }))),
            "LogOptions.LogParameters.follow",
        ),
        (
            "run-job",
            run_job(logs(json!({ "colour": ["red"] }))),
            "LogOptions.LogParameters.colour",
        ),
        (
            "run-job",
            run_job(logs(json!({ "timestamps": ["yes"] }))),
            "LogOptions.LogParameters.timestamps",
        ),
        (
            "run-job",
            run_job(logs(json!({ "sinceTime": ["yesterday"] }))),
            "LogOptions.LogParameters.sinceTime",
        ),
        (
            "run-job",
            run_job(logs(json!({ "tailLines": [{ "n": 1 }] }))),
            "LogOptions.LogParameters.tailLines[0]",
        ),
        ("run-job", run_job(json!({ "TaskToken": 42 })), "TaskToken"),
        ("run-job", run_job(json!({ "TaskToken": "" })), "TaskToken"),
        (
            "run-job",
            run_job(json!({ "TaskToken": "t".repeat(2049) })),
            "TaskToken",
        ),
        (
            "run-job",
            run_job(json!({ "Namspace": "typo" })),
            "Namspace",
        ),
        (
            "run-job",
            run_job(json!({ "RoleArn": "arn:aws:iam::123456789012:user/bob" })),
            "RoleArn",
        ),
        (
            "run-job",
            run_job(json!({ "Region": "Mars North" })),
            "Region",
        ),
        (
            "run-job",
            run_job(json!({ "InlineWaitSeconds": -1 })),
            "InlineWaitSeconds",
        ),
        (
            "run-job",
            run_job(json!({ "PollCurveSeconds": "60" })),
            "PollCurveSeconds",
        ),
        (
            "run-job",
            run_job(json!({ "PollCurveSeconds": [60, "x"] })),
            "PollCurveSeconds",
        ),
        (
            "run-job",
            run_job(json!({ "StuckPolicy": { "ImagePullSeconds": "soon" } })),
            "StuckPolicy.ImagePullSeconds",
        ),
        (
            "run-job",
            run_job(json!({ "StuckPolicy": { "PullSeconds": 5 } })),
            "StuckPolicy.PullSeconds",
        ),
        ("call", call(json!({ "Method": "FETCH" })), "Method"),
        ("call", call(json!({ "Method": null })), "Method"),
        ("call", call(json!({ "Method": 1 })), "Method"),
        ("call", call(json!({ "Path": "api/v1" })), "Path"),
        ("call", call(json!({ "Path": null })), "Path"),
        ("call", call(json!({ "Path": "/api?watch=1" })), "Path"),
        ("call", call(json!({ "Path": "/api/../secrets" })), "Path"),
        (
            "call",
            call(json!({ "QueryParameters": { "labelSelector": "a=b" } })),
            "QueryParameters.labelSelector",
        ),
        (
            "call",
            call(json!({ "QueryParameters": ["a"] })),
            "QueryParameters",
        ),
        (
            "call",
            call(json!({ "RequestBody": { "a": 1 } })),
            "RequestBody",
        ),
        (
            "call",
            call(json!({ "Method": "PATCH", "PatchType": "yaml" })),
            "PatchType",
        ),
        ("call", call(json!({ "Job": job() })), "Job"),
        (
            "call",
            call(json!({ "Endpoint": "ftp://example.com" })),
            "Endpoint",
        ),
    ]
}

async fn handle(function: &str, payload: Value, deps: &Deps) -> Result<Value, TaskError> {
    match function {
        "run-job" => shared::run_job::handle(payload, deps, None).await,
        _ => shared::call::handle(payload, deps).await,
    }
}

#[tokio::test]
async fn every_bad_input_names_its_field() {
    let cases = cases();
    assert!(cases.len() >= 25);
    for (function, payload, field) in cases {
        let r = Arc::new(Recorder::default());
        let e = handle(function, payload.clone(), &deps(&r))
            .await
            .err()
            .unwrap_or_else(|| panic!("{function} accepted {payload}"));
        assert_eq!(e.name, names::INVALID_INPUT, "{function} {payload}: {e}");
        assert_eq!(e.cause["field"], field, "{function} {payload}: {e}");
        assert!(
            e.cause["message"].as_str().is_some_and(|m| m.len() > 8),
            "{e}"
        );
        let unknown = [
            ("run-job", "Namspace"),
            ("call", "Job"),
            ("run-job", "LogOptions.Retrieve"),
            ("run-job", "StuckPolicy.PullSeconds"),
        ];
        let says_unknown = e.cause["message"]
            .as_str()
            .is_some_and(|m| m.contains("is not a known parameter"));
        assert_eq!(says_unknown, unknown.contains(&(function, field)), "{function} {payload}: the error must be the field's own, not an unknown parameter: {e}");
        assert_eq!(
            *r.connects.lock().unwrap_or_else(|e| e.into_inner()),
            0,
            "no cluster is contacted for bad input"
        );
    }
}

#[tokio::test]
async fn with_a_task_token_bad_input_fails_the_task() {
    for (function, mut payload, field) in cases() {
        if field == "TaskToken" || !payload.is_object() {
            continue;
        }
        payload["TaskToken"] = json!("token-1");
        let r = Arc::new(Recorder::default());
        let report = handle(function, payload.clone(), &deps(&r))
            .await
            .unwrap_or_else(|e| panic!("{function} {payload}: {e}"));
        assert_eq!(report["answered"], "SendTaskFailure", "{payload}");
        let failures = r.failures.lock().unwrap_or_else(|e| e.into_inner()).clone();
        assert_eq!(
            failures,
            vec![("token-1".to_owned(), names::INVALID_INPUT.to_owned())],
            "{payload}"
        );
    }
}

fn arbitrary_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        ".{0,12}".prop_map(Value::String),
        prop_oneof![
            Just("ClusterName"),
            Just("Job"),
            Just("GET"),
            Just("/api"),
            Just("batch/v1")
        ]
        .prop_map(|s| json!(s)),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("ClusterName".to_owned()),
                    Just("Job".to_owned()),
                    Just("Method".to_owned()),
                    Just("Path".to_owned()),
                    Just("LogOptions".to_owned()),
                    Just("metadata".to_owned()),
                    ".{0,6}".prop_map(String::from)
                ],
                inner,
                0..5
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn arbitrary_payloads_never_panic(payload in arbitrary_json()) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap_or_else(|e| panic!("{e}"));
        let r = Arc::new(Recorder::default());
        for function in ["run-job", "call"] {
            let out = rt.block_on(handle(function, payload.clone(), &deps(&r)));
            if let Err(e) = out {
                prop_assert!(e.name == names::INVALID_INPUT || e.name == names::CLUSTER_UNREACHABLE, "{}", e);
            }
        }
    }
}
