//! Step Functions: task answers (`SendTaskSuccess`, `SendTaskFailure`,
//! `SendTaskHeartbeat`), activities and executions.

pub mod activities;
pub mod executions;

use async_trait::async_trait;
use serde_json::Value;

use crate::contract::budget::{fit_value_chars, serialized_len, RESULT_BUDGET};
use crate::contract::error::{error_chain, TaskError};
use crate::ports::callback::{CallbackError, TaskCallback, CALL_TIMEOUT};

/// [`TaskCallback`] over the Step Functions API.
#[derive(Debug, Clone)]
pub struct StepFunctions {
    client: aws_sdk_sfn::Client,
}

impl StepFunctions {
    /// Step Functions through the SDK configuration loaded at cold start, without the
    /// SDK's own retry: the worker's ([`crate::task::answer`]) is the one policy, bounded
    /// by the invocation's deadline; the SDK's would try each of its tries three times
    /// more, unseen and unbounded. Each call ends after [`CALL_TIMEOUT`].
    #[must_use]
    pub fn new(config: &aws_config::SdkConfig) -> Self {
        Self::from_client(aws_sdk_sfn::Client::from_conf(
            aws_sdk_sfn::config::Builder::from(config)
                .retry_config(aws_sdk_sfn::config::retry::RetryConfig::disabled())
                .timeout_config(
                    aws_sdk_sfn::config::timeout::TimeoutConfig::builder()
                        .operation_timeout(CALL_TIMEOUT)
                        .build(),
                )
                .build(),
        ))
    }

    /// Step Functions through `client`.
    #[must_use]
    pub fn from_client(client: aws_sdk_sfn::Client) -> Self {
        Self { client }
    }
}

/// The answer operations' errors that say the task is gone (timed out, unknown, or its
/// token invalid), by their modeled variant: no one waits for an answer any more.
trait TaskGone {
    /// The error's name when it says the task is gone.
    fn gone(&self) -> Option<&'static str>;
}

macro_rules! task_gone {
    ($($error:ty),*) => {$(
        impl TaskGone for $error {
            fn gone(&self) -> Option<&'static str> {
                if self.is_task_timed_out() {
                    Some("TaskTimedOut")
                } else if self.is_task_does_not_exist() {
                    Some("TaskDoesNotExist")
                } else if self.is_invalid_token() {
                    Some("InvalidToken")
                } else {
                    None
                }
            }
        }
    )*};
}

task_gone!(
    aws_sdk_sfn::operation::send_task_success::SendTaskSuccessError,
    aws_sdk_sfn::operation::send_task_failure::SendTaskFailureError,
    aws_sdk_sfn::operation::send_task_heartbeat::SendTaskHeartbeatError
);

fn classify<E>(e: &aws_sdk_sfn::error::SdkError<E>) -> CallbackError
where
    E: TaskGone + std::error::Error + 'static,
{
    let message = error_chain(e);
    let status = e.raw_response().map(|r| r.status().as_u16());
    match e.as_service_error().and_then(TaskGone::gone) {
        Some(code) => CallbackError::TaskGone {
            code: code.to_owned(),
            message,
        },
        // A request that may have reached Step Functions without its reply coming back
        // (a timeout, a cut connection, an unreadable response), or a 5xx: taken or not,
        // nobody knows. One that never left (it could not be built or signed) was not.
        None if sent_unanswered(e) || status.is_some_and(|s| s >= 500) => {
            CallbackError::NoReply(message)
        }
        None => CallbackError::Other(message),
    }
}

/// Whether the call may have reached Step Functions and no reply came back.
fn sent_unanswered<E, R>(e: &aws_sdk_sfn::error::SdkError<E, R>) -> bool {
    use aws_sdk_sfn::error::SdkError;
    match e {
        SdkError::TimeoutError(_) | SdkError::ResponseError(_) => true,
        SdkError::DispatchFailure(d) => d.is_io() || d.is_timeout(),
        _ => false,
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

#[cfg(test)]
mod tests {
    //! The callback adapter against a mocked Step Functions client (`aws-smithy-mocks`).
    use aws_sdk_sfn::operation::send_task_failure::{SendTaskFailureError, SendTaskFailureOutput};
    use aws_sdk_sfn::operation::send_task_heartbeat::SendTaskHeartbeatError;
    use aws_sdk_sfn::operation::send_task_success::SendTaskSuccessOutput;
    use aws_sdk_sfn::types::error::{InvalidToken, TaskTimedOut};
    use aws_smithy_mocks::{mock, mock_client, Rule, RuleMode};
    use serde_json::json;

    use super::*;
    use crate::contract::error::names;

    fn callback(rule: &Rule) -> StepFunctions {
        StepFunctions::from_client(mock_client!(aws_sdk_sfn, RuleMode::MatchAny, [rule], |c| c
            .retry_config(aws_sdk_sfn::config::retry::RetryConfig::disabled())))
    }

    #[tokio::test]
    async fn an_answer_goes_on_its_token_as_sent() {
        let success = mock!(aws_sdk_sfn::Client::send_task_success)
            .match_requests(|r| {
                r.task_token() == Some("token-1") && r.output() == Some("{\"a\":1}")
            })
            .then_output(|| SendTaskSuccessOutput::builder().build());
        assert!(callback(&success)
            .succeed("token-1", &json!({ "a": 1 }))
            .await
            .is_ok());
        let failure = mock!(aws_sdk_sfn::Client::send_task_failure)
            .match_requests(|r| {
                r.error() == Some(names::JOB_FAILED)
                    && r.cause().is_some_and(|c| c.contains("exit"))
            })
            .then_output(|| SendTaskFailureOutput::builder().build());
        let e = TaskError::message(names::JOB_FAILED, "exit 1");
        assert!(callback(&failure).fail("token-1", &e).await.is_ok());
    }

    #[tokio::test]
    async fn a_task_that_is_gone_is_told_apart_from_a_failing_call() {
        let timed_out = mock!(aws_sdk_sfn::Client::send_task_failure).then_error(|| {
            SendTaskFailureError::TaskTimedOut(TaskTimedOut::builder().message("late").build())
        });
        let e = TaskError::message(names::JOB_FAILED, "x");
        match callback(&timed_out).fail("t", &e).await {
            Err(CallbackError::TaskGone { code, .. }) => assert_eq!(code, "TaskTimedOut"),
            other => panic!("{other:?}"),
        }
        let invalid = mock!(aws_sdk_sfn::Client::send_task_heartbeat).then_error(|| {
            SendTaskHeartbeatError::InvalidToken(InvalidToken::builder().message("forged").build())
        });
        match callback(&invalid).heartbeat("t").await {
            Err(CallbackError::TaskGone { code, .. }) => assert_eq!(code, "InvalidToken"),
            other => panic!("{other:?}"),
        }
        let refused = mock!(aws_sdk_sfn::Client::send_task_heartbeat).then_error(|| {
            SendTaskHeartbeatError::generic(
                aws_sdk_sfn::error::ErrorMetadata::builder()
                    .code("ThrottlingException")
                    .message("rate exceeded")
                    .build(),
            )
        });
        assert!(matches!(
            callback(&refused).heartbeat("t").await,
            Err(CallbackError::Other(_))
        ));
    }
}
