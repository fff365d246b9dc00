//! Step Functions executions: `DescribeExecution`.

use async_trait::async_trait;

use crate::contract::error::{error_chain, names, TaskError};
use crate::ports::executions::Executions;

#[async_trait]
impl Executions for aws_sdk_sfn::Client {
    async fn status(&self, execution_arn: &str) -> Result<Option<String>, TaskError> {
        match self.describe_execution().execution_arn(execution_arn).send().await {
            Ok(d) => Ok(Some(d.status().as_str().to_owned())),
            Err(e) if e.as_service_error().is_some_and(aws_sdk_sfn::operation::describe_execution::DescribeExecutionError::is_execution_does_not_exist) => Ok(None),
            Err(e) => Err(TaskError::message(names::CALLBACK, format!("DescribeExecution {execution_arn}: {}", error_chain(&e)))),
        }
    }
}
