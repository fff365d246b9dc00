//! Every malformed payload gets `EksTaskWorker.InvalidInput` naming the field, before
//! anything reaches a cluster; with a task token the error goes back on the token.
//! Arbitrary JSON never panics a handler.

// Test helpers fail the test by panicking.
#![allow(clippy::panic)]

use std::sync::Arc;

use proptest::prelude::*;
use serde_json::{json, Value};
use worker::contract::error::{names, TaskError};
use worker::task::deps::Deps;
use worker::testing::{NoCluster, RecordingCallback, ScriptedEks};

/// The doubles a case runs against: a recording callback, a cluster nobody can reach,
/// and an EKS with no script (any call fails the test).
struct Doubles {
    callback: Arc<RecordingCallback>,
    cluster: Arc<NoCluster>,
    eks: Arc<ScriptedEks>,
}

impl Doubles {
    fn new() -> Self {
        Self {
            callback: Arc::new(RecordingCallback::default()),
            cluster: Arc::new(NoCluster::default()),
            eks: Arc::new(ScriptedEks::new(&[])),
        }
    }

    fn deps(&self) -> Deps {
        let mut deps = Deps::test(self.cluster.clone(), self.callback.clone());
        deps.eks = self.eks.clone();
        deps
    }
}

/// The bad-input corpus: `tests/corpus/<function>--<what>.json`, each
/// `{"function", "payload", "error", "field"}` (for the activity function the payload is
/// the task's input text, as `GetActivityTask` hands it over).
fn corpus() -> Vec<(String, Value)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/corpus");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(Result::ok)
        .map(|f| f.path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let text =
                std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            let case: Value =
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (
                p.file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned(),
                case,
            )
        })
        .collect()
}

/// The run-job and call cases, as (function, payload, field).
fn cases() -> Vec<(String, Value, String)> {
    corpus()
        .into_iter()
        .map(|(_, c)| c)
        .filter(|c| c["function"] == "run-job" || c["function"] == "call")
        .map(|c| {
            (
                c["function"].as_str().unwrap_or_default().to_owned(),
                c["payload"].clone(),
                c["field"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// Runs one corpus case through the function's real handler: the error it ended with.
async fn run_case(function: &str, payload: Value, doubles: &Doubles) -> Option<TaskError> {
    let deps = doubles.deps();
    let activity = |f| {
        let deps = deps.clone();
        let input = payload.as_str().unwrap_or_default().to_owned();
        async move {
            let task = worker::ports::activities::ActivityTask {
                task_token: "activity-token".into(),
                input,
            };
            worker::task::activity::run_task(f, &task, &deps, None).await
        }
    };
    let answered = match function {
        "run-job" | "call" => return handle(function, payload, &deps).await.err(),
        "poller" => {
            // Delivered as the worker writes poll states: sealed (an array cannot be).
            // A refused state answers the invocation with its refusal, by name.
            let payload = match payload.as_object() {
                Some(_) => worker::testing::sealed(&deps, &payload).await,
                None => payload,
            };
            return match worker::task::poller::handle(payload, &deps).await {
                Err(e) => Some(e),
                Ok(v) => v["refused"].as_str().map(|name| {
                    TaskError::new(
                        name,
                        serde_json::json!({ "field": "$", "message": v["reason"] }),
                    )
                }),
            };
        }
        "cluster-ops" => {
            return worker::task::cluster_ops::handle(payload, &deps, None)
                .await
                .err()
        }
        "activity-run-job" => activity(worker::config::activities::Function::RunJob).await,
        "activity-call" => activity(worker::config::activities::Function::Call).await,
        other => panic!("unknown function {other} in the corpus"),
    };
    // Activity tasks answer on their token: the error is what was sent.
    answered.unwrap_or_else(|e| panic!("{e}"));
    let failures = doubles.callback.failed();
    assert_eq!(failures.len(), 1, "one answer per task: {failures:?}");
    failures.into_iter().next().map(|(_, e)| e)
}

#[tokio::test]
async fn every_corpus_payload_is_a_named_documented_error_and_touches_nothing() {
    let readme = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/errors.md"),
    )
    .unwrap_or_default();
    let corpus = corpus();
    assert!(
        corpus.len() >= 50,
        "the corpus has {} payloads",
        corpus.len()
    );
    let functions: std::collections::BTreeSet<String> = corpus
        .iter()
        .map(|(_, c)| c["function"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        functions.into_iter().collect::<Vec<_>>(),
        [
            "activity-call",
            "activity-run-job",
            "call",
            "cluster-ops",
            "poller",
            "run-job"
        ]
    );
    for (file, case) in corpus {
        let doubles = Doubles::new();
        let function = case["function"].as_str().unwrap_or_default();
        let e = run_case(function, case["payload"].clone(), &doubles)
            .await
            .unwrap_or_else(|| panic!("{file}: accepted"));
        assert_eq!(
            e.name,
            case["error"].as_str().unwrap_or_default(),
            "{file}: {e}"
        );
        assert!(
            readme.contains(&format!("`{}`", e.name)),
            "{file}: {} is not in docs/errors.md",
            e.name
        );
        assert_eq!(e.cause["field"], case["field"], "{file}: {e}");
        assert!(
            e.cause["message"].as_str().is_some_and(|m| m.len() > 8),
            "{file}: the message says what to fix: {e}"
        );
        assert_eq!(
            doubles.cluster.connects(),
            0,
            "{file}: a cluster was contacted"
        );
        assert_eq!(
            doubles.eks.calls(),
            Vec::<String>::new(),
            "{file}: EKS was called"
        );
    }
}

async fn handle(function: &str, payload: Value, deps: &Deps) -> Result<Value, TaskError> {
    match function {
        "run-job" => worker::task::run_job::handle(payload, deps, None).await,
        _ => worker::task::call::handle(payload, deps).await,
    }
}

#[tokio::test]
async fn every_bad_input_names_its_field() {
    let cases = cases();
    assert!(cases.len() >= 25);
    for (function, payload, field) in cases {
        let (function, field) = (function.as_str(), field.as_str());
        let doubles = Doubles::new();
        let e = handle(function, payload.clone(), &doubles.deps())
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
            doubles.cluster.connects(),
            0,
            "no cluster is contacted for bad input"
        );
    }
}

#[tokio::test]
async fn with_a_task_token_bad_input_fails_the_task() {
    for (function, mut payload, field) in cases() {
        let function = function.as_str();
        if field == "TaskToken" || !payload.is_object() {
            continue;
        }
        payload["TaskToken"] = json!("token-1");
        let doubles = Doubles::new();
        let report = handle(function, payload.clone(), &doubles.deps())
            .await
            .unwrap_or_else(|e| panic!("{function} {payload}: {e}"));
        assert_eq!(report["answered"], "SendTaskFailure", "{payload}");
        let failures: Vec<(String, String)> = doubles
            .callback
            .failed()
            .into_iter()
            .map(|(token, e)| (token, e.name))
            .collect();
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
        let doubles = Doubles::new();
        for function in ["run-job", "call"] {
            let out = rt.block_on(handle(function, payload.clone(), &doubles.deps()));
            if let Err(e) = out {
                prop_assert!(e.name == names::INVALID_INPUT || e.name == names::CLUSTER_UNREACHABLE, "{}", e);
            }
        }
    }
}
