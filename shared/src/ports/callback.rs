//! The callback port: how a task's answer reaches Step Functions.

use async_trait::async_trait;
use serde_json::Value;

use crate::contract::error::{names, TaskError};

/// The longest one callback or hand-off call may take (the answer, a heartbeat, a
/// schedule): well within the half margin its last act has
/// (`LAMBDA_TIME_MARGIN_SECONDS`), so a call that hangs still ends before Lambda does.
/// The adapters bound every call by it.
pub const CALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(8);

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
    /// No answer came, or a 5xx: the call may have been taken (a reply lost after Step
    /// Functions accepted it) or not; worth retrying.
    #[error("no reply from Step Functions to the callback: {0}")]
    NoReply(String),
    /// Any other failure (throttling, permissions); worth retrying.
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
