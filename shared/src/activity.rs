//! Activity tasks: a state whose `Resource` is an activity ARN waits for a worker to
//! call `GetActivityTask`. The activity function, run on a schedule, long-polls the
//! configured activities while its invocation has time and runs each task through the
//! same run-job and call paths, with the activity's task token: everything after is
//! as in the callback pattern.

use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use serde_json::{json, Value};

use crate::deps::Deps;
use crate::error::{error_chain, names, TaskError};

/// The function an activity's tasks go to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Function {
    /// run-job.
    RunJob,
    /// call.
    Call,
}

/// An activity the worker serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Activity {
    /// What its tasks are.
    pub function: Function,
    /// Its ARN.
    pub arn: String,
}

/// Parses `ACTIVITIES`: `run-job=<activity ARN>,call=<activity ARN>,…`.
///
/// # Errors
/// A message naming the malformed entry.
pub fn parse_activities(text: &str) -> Result<Vec<Activity>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(|entry| {
            let (function, arn) = entry
                .split_once('=')
                .ok_or_else(|| format!("{entry:?} is not <function>=<activity ARN>"))?;
            let function = match function.trim() {
                "run-job" => Function::RunJob,
                "call" => Function::Call,
                other => return Err(format!("{other:?} is not run-job or call")),
            };
            let arn = arn.trim();
            if !(arn.starts_with("arn:") && arn.contains(":activity:")) {
                return Err(format!("{arn:?} is not an activity ARN"));
            }
            Ok(Activity {
                function,
                arn: arn.to_owned(),
            })
        })
        .collect()
}

/// A task handed out by `GetActivityTask`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivityTask {
    /// Its token.
    pub task_token: String,
    /// Its input, as given (JSON text).
    pub input: String,
}

/// Where activity tasks come from.
#[async_trait]
pub trait ActivitySource: Send + Sync {
    /// Long-polls one activity (Step Functions holds the call up to 60 s); `None`
    /// when no task came.
    ///
    /// # Errors
    /// When Step Functions refuses.
    async fn next_task(
        &self,
        activity_arn: &str,
        worker_name: &str,
    ) -> Result<Option<ActivityTask>, TaskError>;
}

/// [`ActivitySource`] over the Step Functions API.
#[derive(Debug, Clone)]
pub struct StepFunctionsActivities {
    client: aws_sdk_sfn::Client,
}

impl StepFunctionsActivities {
    /// Activities through the SDK configuration loaded at cold start. The client's read
    /// timeout must exceed the 60-second long poll.
    #[must_use]
    pub fn new(config: &aws_config::SdkConfig) -> Self {
        let timeouts = aws_sdk_sfn::config::timeout::TimeoutConfig::builder()
            .read_timeout(Duration::from_secs(70))
            .operation_timeout(Duration::from_secs(75))
            .build();
        let conf = aws_sdk_sfn::config::Builder::from(config)
            .timeout_config(timeouts)
            .build();
        Self {
            client: aws_sdk_sfn::Client::from_conf(conf),
        }
    }
}

#[async_trait]
impl ActivitySource for StepFunctionsActivities {
    async fn next_task(
        &self,
        activity_arn: &str,
        worker_name: &str,
    ) -> Result<Option<ActivityTask>, TaskError> {
        let out = self
            .client
            .get_activity_task()
            .activity_arn(activity_arn)
            .worker_name(worker_name)
            .send()
            .await
            .map_err(|e| {
                TaskError::message(
                    names::CALLBACK,
                    format!("GetActivityTask {activity_arn}: {}", error_chain(&e)),
                )
            })?;
        Ok(out
            .task_token()
            .filter(|t| !t.is_empty())
            .map(|t| ActivityTask {
                task_token: t.to_owned(),
                input: out.input().unwrap_or("{}").to_owned(),
            }))
    }
}

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
            Function::RunJob => crate::run_job::handle(p, deps, deadline).await,
            Function::Call => crate::call::handle(p, deps).await,
        },
        Err(e) => crate::run_job::respond(deps, &task.task_token, Err(e)).await,
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
