//! The activity port: tasks taken from Step Functions activities.

use async_trait::async_trait;

use crate::contract::error::TaskError;

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
