//! The activity function: takes tasks from Step Functions activities and runs each as
//! run-job or call would, answering on its token.

use std::time::{Duration, SystemTime};

use serde_json::{json, Value};

use crate::config::activities::{Activity, Function};
use crate::contract::error::{names, TaskError};
use crate::ports::activities::{ActivitySource, ActivityTask};
use crate::task::deps::Deps;

/// The payload an activity task runs with: its input, with its task token.
fn payload(task: &ActivityTask) -> Result<Value, TaskError> {
    let mut input: Value = serde_json::from_str(&task.input).map_err(|e| {
        TaskError::invalid_input("$", format!("the activity input is not JSON: {e}"))
    })?;
    let fields = input
        .as_object_mut()
        .ok_or_else(|| TaskError::invalid_input("$", "the activity input must be a JSON object"))?;
    fields.insert("TaskToken".into(), Value::String(task.task_token.clone()));
    Ok(input)
}

/// Handles one invocation of the activity function: serves the configured activities
/// for `ACTIVITY_POLL_SECONDS`, never past `deadline` minus the margin and one long
/// poll (70 s).
///
/// # Errors
/// As [`serve`].
pub async fn handle(
    source: &dyn ActivitySource,
    deps: &Deps,
    worker_name: &str,
    deadline: Option<SystemTime>,
) -> Result<Value, TaskError> {
    let now = deps.clock.now();
    let mut until = now + deps.settings.activity_poll;
    if let Some(d) = deadline {
        until = until.min(
            d.checked_sub(deps.settings.lambda_margin + Duration::from_secs(70))
                .unwrap_or(now),
        );
    }
    serve(
        &deps.settings.activities,
        source,
        deps,
        worker_name,
        until,
        deadline,
    )
    .await
}

/// Runs one activity task to its answer on the token.
///
/// # Errors
/// Only when Step Functions cannot be told.
pub async fn run_task(
    function: Function,
    task: &ActivityTask,
    deps: &Deps,
    deadline: Option<SystemTime>,
) -> Result<Value, TaskError> {
    match payload(task) {
        Ok(p) => match function {
            Function::RunJob => crate::task::run_job::handle(p, deps, deadline).await,
            Function::Call => crate::task::call::handle(p, deps).await,
        },
        Err(e) => crate::task::answer::send_answer(deps, &task.task_token, Err(e)).await,
    }
}

/// Serves `activities` until `poll_until` (each at least once): each takes its turn at
/// a long poll; every task that comes runs at once, beside the polling. Returns what was done.
///
/// # Errors
/// Never for a task's own failure (that goes back on its token); only when the
/// activities keep refusing to be polled.
pub async fn serve(
    activities: &[Activity],
    source: &dyn ActivitySource,
    deps: &Deps,
    worker_name: &str,
    poll_until: SystemTime,
    deadline: Option<SystemTime>,
) -> Result<Value, TaskError> {
    use futures::StreamExt;
    let mut running = futures::stream::FuturesUnordered::new();
    let mut errors = Vec::new();
    let mut tasks = 0;
    let mut refusals = 0;
    let mut first_round = true;
    'polling: while !activities.is_empty() {
        for activity in activities {
            // Every activity is polled at least once per invocation.
            if !first_round && deps.clock.now() >= poll_until {
                break 'polling;
            }
            let poll = source.next_task(&activity.arn, worker_name);
            tokio::pin!(poll);
            // Drive the running tasks while the long poll waits.
            let polled = loop {
                tokio::select! {
                    r = &mut poll => break r,
                    Some(done) = running.next(), if !running.is_empty() => {
                        if let Err(e) = done { errors.push(format!("{e}")); }
                    }
                }
            };
            match polled {
                Ok(Some(task)) => {
                    tasks += 1;
                    tracing::info!(activity = %activity.arn, "activity task received");
                    let function = activity.function;
                    running.push(async move { run_task(function, &task, deps, deadline).await });
                }
                Ok(None) => {}
                Err(e) => {
                    refusals += 1;
                    tracing::warn!(activity = %activity.arn, error = %e, "GetActivityTask failed");
                    errors.push(e.cause.to_string());
                    if refusals > 10 * activities.len() {
                        break 'polling;
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
        first_round = false;
    }
    while let Some(done) = running.next().await {
        if let Err(e) = done {
            errors.push(format!("{e}"));
        }
    }
    if tasks == 0 && refusals > 10 * activities.len() {
        return Err(TaskError::new(
            names::CALLBACK,
            json!({ "message": "the activities keep refusing to be polled", "errors": errors }),
        ));
    }
    Ok(json!({ "tasks": tasks, "errors": errors }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::activities::parse_activities;

    #[test]
    fn activities_parse_and_bad_ones_are_named() {
        let a = parse_activities("run-job=arn:aws:states:us-east-1:1:activity:jobs, call=arn:aws:states:us-east-1:1:activity:calls").unwrap_or_default();
        assert_eq!(a.len(), 2);
        assert_eq!(a[1].function, Function::Call);
        assert!(parse_activities("run=arn:aws:states:us-east-1:1:activity:x").is_err());
        assert!(parse_activities("run-job=arn:aws:lambda:us-east-1:1:function:x").is_err());
        assert!(parse_activities("run-job").is_err());
        assert_eq!(parse_activities(""), Ok(vec![]));
    }

    #[test]
    fn the_payload_is_the_input_with_the_token() {
        let t = ActivityTask {
            task_token: "tok".into(),
            input: "{\"ClusterName\":\"c\"}".into(),
        };
        assert_eq!(
            payload(&t).unwrap_or_default(),
            json!({"ClusterName": "c", "TaskToken": "tok"})
        );
        let bad = ActivityTask {
            task_token: "tok".into(),
            input: "[1]".into(),
        };
        assert_eq!(
            payload(&bad).err().map(|e| e.name),
            Some(names::INVALID_INPUT.to_owned())
        );
    }
}
