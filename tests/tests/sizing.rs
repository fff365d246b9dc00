//! The local Lambda platform sizes functions as Lambda does: CPU in proportion to
//! MemorySize, a process past its memory killed and named `Runtime.OutOfMemory`, and
//! concurrency limits that throttle a synchronous invocation
//! (`Lambda.TooManyRequestsException` to Step Functions) and hold an asynchronous one
//! until a unit is free. Shown with a function of the tests' own
//! (`tests/functions/hungry.py`), which holds memory, burns CPU or waits as asked.

// Test helpers fail the test by panicking.
#![allow(clippy::panic)]

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use serde_json::{json, Value};
use world_tests::{fire_at, unique, Platform, World};

/// `--test-function hungry=…`: the platform runs the tests' function beside the worker's.
fn hungry() -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("functions/hungry.py");
    format!("hungry={}", path.display())
}

fn hungry_arn(world: &World) -> String {
    format!(
        "arn:aws:lambda:{}:{}:function:hungry",
        world.fact("/region"),
        world.fact("/account")
    )
}

/// A one-task machine invoking hungry with `payload` (its token added), `extra` merged
/// into the Task state.
fn machine(world: &World, payload: &Value, extra: &Value) -> String {
    let mut p = payload.clone();
    p["TaskToken.$"] = json!("$$.Task.Token");
    let mut task = json!({
        "Type": "Task",
        "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken",
        "Parameters": { "FunctionName": hungry_arn(world), "Payload": p },
        "End": true
    });
    for (k, v) in extra.as_object().cloned().unwrap_or_default() {
        task[k] = v;
    }
    json!({ "StartAt": "Run", "States": { "Run": task } }).to_string()
}

/// How an execution ended, its output parsed (`null` when none).
struct End {
    status: String,
    output: Value,
    error: String,
    cause: String,
}

async fn end_of(world: &World, execution: &str, within: Duration) -> Result<End> {
    let ended = world.ended(execution, within).await?;
    Ok(End {
        status: ended.status,
        output: ended
            .output
            .and_then(|o| serde_json::from_str(&o).ok())
            .unwrap_or(Value::Null),
        error: ended.error.unwrap_or_default(),
        cause: ended.cause.unwrap_or_default(),
    })
}

async fn start(world: &World, prefix: &str, payload: &Value, extra: &Value) -> Result<String> {
    world
        .start_state_machine(&unique(prefix), &machine(world, payload, extra), &json!({}))
        .await
}

/// The platform's state file: how it sized the functions.
fn platform_state() -> Value {
    let world_dir = std::env::var("LOCAL_WORLD_DIR").map_or_else(
        |_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.local-world"),
        PathBuf::from,
    );
    let text = std::fs::read_to_string(world_dir.join("lambda.json"))
        .unwrap_or_else(|e| panic!("the platform's state file: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test]
async fn a_function_past_its_memory_is_killed_and_named_as_lambda_names_it() -> Result<()> {
    let world = World::get();
    let _platform = Platform::start_with(&["--test-function", &hungry()]);
    assert_eq!(
        platform_state()["sizing"]["sized"],
        json!(true),
        "this machine must size functions: {}",
        platform_state()["sizing"]
    );
    assert_eq!(platform_state()["memory_mb"]["hungry"], json!(256));

    // 64 MiB fits in 256 MB beside the interpreter; 400 MiB does not.
    let fits = start(
        &world,
        "size-fits",
        &json!({ "allocate_mb": 64 }),
        &json!({}),
    )
    .await?;
    let past = start(
        &world,
        "size-past",
        &json!({ "allocate_mb": 400 }),
        &json!({}),
    )
    .await?;
    let fits = end_of(&world, &fits, Duration::from_secs(90)).await?;
    assert_eq!(fits.status, "SUCCEEDED", "{}: {}", fits.error, fits.cause);
    assert_eq!(fits.output["allocated_mb"], json!(64));
    let past = end_of(&world, &past, Duration::from_secs(90)).await?;
    assert_eq!(
        (past.status.as_str(), past.error.as_str()),
        ("FAILED", "Lambda.Unknown"),
        "{}",
        past.cause
    );
    let cause: Value = serde_json::from_str(&past.cause)?;
    assert_eq!(cause["errorType"], json!("Runtime.OutOfMemory"), "{cause}");

    // The environment is made again after the kill: the next invocation runs.
    let again = start(
        &world,
        "size-again",
        &json!({ "allocate_mb": 8 }),
        &json!({}),
    )
    .await?;
    let again = end_of(&world, &again, Duration::from_secs(90)).await?;
    assert_eq!(again.status, "SUCCEEDED", "{}", again.cause);
    Ok(())
}

#[tokio::test]
async fn a_function_gets_cpu_in_proportion_to_its_memory() -> Result<()> {
    let world = World::get();
    let _platform = Platform::start_with(&["--test-function", &hungry()]);
    // 256 MB: 256/1,769 of a core, so 300 ms of CPU take at least about 2 s on the
    // clock, however idle the machine (the kernel's quota, not the machine's speed).
    let run = start(
        &world,
        "size-cpu",
        &json!({ "burn_cpu_ms": 300 }),
        &json!({}),
    )
    .await?;
    let run = end_of(&world, &run, Duration::from_secs(90)).await?;
    assert_eq!(run.status, "SUCCEEDED", "{}", run.cause);
    let cpu = run.output["cpu_ms"].as_f64().unwrap_or(0.0);
    let wall = run.output["wall_ms"].as_f64().unwrap_or(0.0);
    assert!(cpu >= 300.0, "{}", run.output);
    assert!(
        wall >= cpu * 1769.0 / 256.0 * 0.7,
        "300 ms of CPU took {wall} ms: not held to 256/1,769 of a core ({})",
        run.output
    );
    Ok(())
}

#[tokio::test]
async fn a_synchronous_invocation_past_reserved_concurrency_is_throttled() -> Result<()> {
    let world = World::get();
    let _platform = Platform::start_with(&["--test-function", &hungry(), "--reserved", "hungry=1"]);
    assert_eq!(
        platform_state()["concurrency"]["reserved"]["hungry"],
        json!(1)
    );
    // Two at once against one unit: Lambda refuses the second, and Step Functions
    // fails its task with Lambda's error (no Retry).
    let a = start(&world, "size-one", &json!({ "sleep_s": 6 }), &json!({})).await?;
    let b = start(&world, "size-two", &json!({ "sleep_s": 6 }), &json!({})).await?;
    let mut ends = [
        end_of(&world, &a, Duration::from_secs(90)).await?,
        end_of(&world, &b, Duration::from_secs(90)).await?,
    ];
    ends.sort_by(|x, y| x.status.cmp(&y.status));
    assert_eq!(
        ends.iter()
            .map(|e| (e.status.as_str(), e.error.as_str()))
            .collect::<Vec<_>>(),
        [
            ("FAILED", "Lambda.TooManyRequestsException"),
            ("SUCCEEDED", "")
        ]
    );

    // The recipe the README gives: a Retry on the throttle lets both through.
    let retry = json!({ "Retry": [{ "ErrorEquals": ["Lambda.TooManyRequestsException"],
                                    "IntervalSeconds": 2, "MaxAttempts": 8, "BackoffRate": 1.5 }] });
    let a = start(&world, "size-retry-one", &json!({ "sleep_s": 3 }), &retry).await?;
    let b = start(&world, "size-retry-two", &json!({ "sleep_s": 3 }), &retry).await?;
    for execution in [a, b] {
        let end = end_of(&world, &execution, Duration::from_secs(120)).await?;
        assert_eq!(end.status, "SUCCEEDED", "{}: {}", end.error, end.cause);
    }
    Ok(())
}

#[tokio::test]
async fn an_asynchronous_invocation_past_reserved_concurrency_waits_its_turn() -> Result<()> {
    let world = World::get();
    let log = std::env::temp_dir().join(unique("sizing-invocations"));
    let log_arg = log.display().to_string();
    let _platform = Platform::start_with(&[
        "--test-function",
        &hungry(),
        "--reserved",
        "hungry=1",
        "--invocations",
        &log_arg,
    ]);
    // Two Scheduler deliveries at once against one unit: neither is lost, the second
    // starts when the first has ended.
    let (one, token_one) = world
        .waiting_execution(&unique("size-async-one"), None)
        .await?;
    let (two, token_two) = world
        .waiting_execution(&unique("size-async-two"), None)
        .await?;
    for token in [&token_one, &token_two] {
        fire_at(
            &world,
            &hungry_arn(&world),
            None,
            &json!({ "TaskToken": token, "sleep_s": 3 }),
        )
        .await;
    }
    for execution in [one, two] {
        let end = end_of(&world, &execution, Duration::from_secs(90)).await?;
        assert_eq!(end.status, "SUCCEEDED", "{}: {}", end.error, end.cause);
    }
    // The platform logs an invocation once its response is in, a moment after the task
    // was answered: until both are there (at most 10 s).
    let logged = |text: &str| {
        text.lines()
            .filter(|l| l.contains("\"function\": \"hungry\"") && l.contains("\"kind\": \"Event\""))
            .count()
    };
    let until = std::time::Instant::now() + Duration::from_secs(10);
    let mut text = std::fs::read_to_string(&log).unwrap_or_default();
    while logged(&text) < 2 && std::time::Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(200)).await;
        text = std::fs::read_to_string(&log).unwrap_or_default();
    }
    let mut runs: Vec<(f64, f64)> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["function"] == "hungry" && l["kind"] == "Event")
        .map(|l| {
            (
                l["started"].as_f64().unwrap_or(0.0),
                l["ended"].as_f64().unwrap_or(0.0),
            )
        })
        .collect();
    runs.sort_by(|a, b| a.0.total_cmp(&b.0));
    assert_eq!(runs.len(), 2, "{text}");
    assert!(
        runs[1].0 >= runs[0].1,
        "the second started before the first ended: {runs:?}"
    );
    let _ = std::fs::remove_file(&log);
    Ok(())
}
