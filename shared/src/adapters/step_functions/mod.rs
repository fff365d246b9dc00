//! Step Functions: task answers (`SendTaskSuccess`, `SendTaskFailure`,
//! `SendTaskHeartbeat`), activities and executions.

pub mod activities;
pub mod executions;

use async_trait::async_trait;
use serde_json::Value;

use crate::contract::budget::{fit_value_chars, serialized_len, RESULT_BUDGET};
use crate::contract::error::{error_chain, TaskError};
use crate::ports::callback::{CallbackError, TaskCallback};

/// [`TaskCallback`] over the Step Functions API.
#[derive(Debug, Clone)]
pub struct StepFunctions {
    client: aws_sdk_sfn::Client,
}

impl StepFunctions {
    /// Step Functions through the SDK configuration loaded at cold start.
    #[must_use]
    pub fn new(config: &aws_config::SdkConfig) -> Self {
        Self {
            client: aws_sdk_sfn::Client::new(config),
        }
    }
}

fn classify<E>(e: &aws_sdk_sfn::error::SdkError<E>) -> CallbackError
where
    E: aws_sdk_sfn::error::ProvideErrorMetadata + std::error::Error + 'static,
{
    let code = e
        .as_service_error()
        .and_then(|s| s.code())
        .unwrap_or_default()
        .to_owned();
    let message = error_chain(e);
    match code.as_str() {
        "TaskTimedOut" | "TaskDoesNotExist" | "InvalidToken" => {
            CallbackError::TaskGone { code, message }
        }
        _ => CallbackError::Other(message),
    }
}

/// The output as sent: the value itself when it fits, else the value with its strings
/// cut to fit (a safety net; callers fit their results first).
#[must_use]
pub fn output_string(output: &Value) -> String {
    if serialized_len(output) <= RESULT_BUDGET {
        output.to_string()
    } else {
        fit_value_chars(output, RESULT_BUDGET)
    }
}

#[async_trait]
impl TaskCallback for StepFunctions {
    async fn succeed(&self, task_token: &str, output: &Value) -> Result<(), CallbackError> {
        self.client
            .send_task_success()
            .task_token(task_token)
            .output(output_string(output))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| classify(&e))
    }

    async fn fail(&self, task_token: &str, error: &TaskError) -> Result<(), CallbackError> {
        self.client
            .send_task_failure()
            .task_token(task_token)
            .error(error.name_for_callback())
            .cause(error.cause_string())
            .send()
            .await
            .map(|_| ())
            .map_err(|e| classify(&e))
    }

    async fn heartbeat(&self, task_token: &str) -> Result<(), CallbackError> {
        self.client
            .send_task_heartbeat()
            .task_token(task_token)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| classify(&e))
    }
}
