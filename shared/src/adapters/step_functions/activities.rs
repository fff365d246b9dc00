//! Step Functions activities: `GetActivityTask` long polls.

use std::time::Duration;

use async_trait::async_trait;

use crate::contract::error::{error_chain, names, TaskError};
use crate::ports::activities::{ActivitySource, ActivityTask};

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
