//! The Step Functions callback: the final answer of a callback-pattern task goes back
//! on its task token with `SendTaskSuccess` / `SendTaskFailure`, always within the
//! limits (output 262,144 bytes, error 256 and cause 32,768 characters).

use async_trait::async_trait;
use serde_json::Value;

use crate::budget::{fit_value_chars, serialized_len, RESULT_BUDGET};
use crate::error::{error_chain, names, TaskError};

/// Errors answering a task.
#[derive(Debug, thiserror::Error)]
pub enum CallbackError {
    /// Step Functions no longer knows the task: it timed out, the execution stopped,
    /// or the token is invalid. Nobody is waiting for an answer.
    #[error("the task is gone ({code}): {message}")]
    TaskGone {
        /// `TaskTimedOut`, `TaskDoesNotExist` or `InvalidToken`.
        code: String,
        /// What Step Functions said.
        message: String,
    },
    /// Any other failure (throttling, network, permissions); worth retrying.
    #[error("Step Functions refused the callback: {0}")]
    Other(String),
}

impl From<CallbackError> for TaskError {
    fn from(e: CallbackError) -> Self {
        TaskError::message(names::CALLBACK, e.to_string())
    }
}

/// Answers callback-pattern tasks.
#[async_trait]
pub trait TaskCallback: Send + Sync {
    /// `SendTaskSuccess` with `output` (at most 262,144 bytes once serialized).
    ///
    /// # Errors
    /// [`CallbackError`].
    async fn succeed(&self, task_token: &str, output: &Value) -> Result<(), CallbackError>;

    /// `SendTaskFailure` with the error's name and cause, trimmed to fit.
    ///
    /// # Errors
    /// [`CallbackError`].
    async fn fail(&self, task_token: &str, error: &TaskError) -> Result<(), CallbackError>;

    /// `SendTaskHeartbeat`.
    ///
    /// # Errors
    /// [`CallbackError`].
    async fn heartbeat(&self, task_token: &str) -> Result<(), CallbackError>;
}

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

/// Tries a callback up to three times while it fails for a reason other than the
/// task being gone (throttling, network), pausing 0.5 s, then 1 s.
///
/// # Errors
/// The last failure.
pub async fn with_retries<F, Fut>(mut call: F) -> Result<(), CallbackError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), CallbackError>>,
{
    let mut pause = std::time::Duration::from_millis(500);
    let mut tries = 0;
    loop {
        tries += 1;
        match call().await {
            Err(CallbackError::Other(m)) if tries < 3 => {
                tracing::warn!(error = %m, tries, "Step Functions call failed; trying again");
                tokio::time::sleep(pause).await;
                pause *= 2;
            }
            other => return other,
        }
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
