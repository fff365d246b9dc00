//! Activity tasks, end to end under LocalStack (moto has no GetActivityTask): a state
//! machine whose Task is an activity runs a Job on the local cluster through the
//! activity function's path, and ends with the Job, or with the failure and its cause.

// Test helpers fail the test by panicking.
#![allow(clippy::panic)]

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde_json::{json, Value};
use worker::adapters::step_functions::activities::StepFunctionsActivities;
use worker::adapters::step_functions::StepFunctions;
use worker::config::activities::{Activity, Function};
use world_tests::{activity_end, activity_waiter, sim_job, unique, World};

/// Creates an activity and starts an execution waiting on it with `input`; returns
/// the activity ARN and the execution ARN.
async fn activity_execution(
    sfn: &aws_sdk_sfn::Client,
    name: &str,
    input: &Value,
) -> (String, String) {
    let activity = sfn
        .create_activity()
        .name(name)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e:?}"))
        .activity_arn()
        .to_owned();
    let execution = activity_waiter(sfn, &activity, name, input, None).await;
    (activity, execution)
}

async fn end(
    sfn: &aws_sdk_sfn::Client,
    execution: &str,
) -> aws_sdk_sfn::operation::describe_execution::DescribeExecutionOutput {
    activity_end(sfn, execution, Duration::from_secs(20)).await
}

async fn serve_once(world: &World, activity: &str, ls: &aws_config::SdkConfig) -> Value {
    let mut deps = world
        .deps(world.settings())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    deps.callback = Arc::new(StepFunctions::new(ls));
    let source = StepFunctionsActivities::new(ls);
    let activities = [Activity {
        function: Function::RunJob,
        arn: activity.to_owned(),
    }];
    // poll_until now: one round, whose first poll finds the waiting task.
    worker::task::activity::serve(
        &activities,
        &source,
        &deps,
        "test-worker",
        SystemTime::now(),
        None,
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test]
async fn an_activity_runs_a_job_end_to_end() {
    let world = World::get();
    let ls = world.localstack().await;
    let sfn = aws_sdk_sfn::Client::new(&ls);
    let name = unique("act-ok");
    let mut input = world.cluster_fields();
    input["Namespace"] = json!(world.namespace());
    input["LogOptions"] = json!({ "RetrieveLogs": true });
    input["Job"] = sim_job(
        &name,
        &["main"],
        json!({ "sim.eks-task-worker.io/log": "{\"from\": \"activity\"}" }),
        1,
    );
    let (activity, execution) = activity_execution(&sfn, &name, &input).await;
    let served = serve_once(&world, &activity, &ls).await;
    assert_eq!(served["tasks"], 1, "{served}");
    let d = end(&sfn, &execution).await;
    assert_eq!(d.status().as_str(), "SUCCEEDED", "{:?}", d.error());
    let output: Value = serde_json::from_str(d.output().unwrap_or_default()).unwrap_or_default();
    assert_eq!(output["status"]["succeeded"], 1);
    let pod = output["logs"]["pods"]
        .as_object()
        .and_then(|p| p.values().next().cloned())
        .unwrap_or_default();
    assert_eq!(
        pod["containers"]["main"]["log"],
        json!({ "from": "activity" })
    );
}

#[tokio::test]
async fn a_failed_activity_job_carries_its_cause() {
    let world = World::get();
    let ls = world.localstack().await;
    let sfn = aws_sdk_sfn::Client::new(&ls);
    let name = unique("act-fail");
    let mut input = world.cluster_fields();
    input["Namespace"] = json!(world.namespace());
    input["Job"] = sim_job(
        &name,
        &["main"],
        json!({ "sim.eks-task-worker.io/exit-code": "4", "sim.eks-task-worker.io/log": "no space left\n" }),
        1,
    );
    let (activity, execution) = activity_execution(&sfn, &name, &input).await;
    serve_once(&world, &activity, &ls).await;
    let d = end(&sfn, &execution).await;
    assert_eq!(d.status().as_str(), "FAILED");
    assert_eq!(d.error(), Some("EksTaskWorker.JobFailed"));
    let cause: Value = serde_json::from_str(d.cause().unwrap_or_default()).unwrap_or_default();
    assert_eq!(
        cause["failedPods"][0]["containers"][0]["exitCode"], 4,
        "{cause}"
    );
    assert_eq!(cause["logTails"][0]["log"], "no space left\n");
}

#[tokio::test]
async fn an_activity_input_that_is_not_a_payload_fails_at_once() {
    let world = World::get();
    let ls = world.localstack().await;
    let sfn = aws_sdk_sfn::Client::new(&ls);
    let name = unique("act-bad");
    let (activity, execution) = activity_execution(&sfn, &name, &json!({ "Method": "GET" })).await;
    serve_once(&world, &activity, &ls).await;
    let d = end(&sfn, &execution).await;
    assert_eq!(d.status().as_str(), "FAILED");
    assert_eq!(d.error(), Some("EksTaskWorker.InvalidInput"));
    let cause: Value = serde_json::from_str(d.cause().unwrap_or_default()).unwrap_or_default();
    assert_eq!(
        cause["field"], "Method",
        "a run-job activity's payload has no Method: {cause}"
    );
}
