//! The executions port: whether a Step Functions execution still runs.

use async_trait::async_trait;

use crate::contract::error::TaskError;

/// Whether an execution still runs.
#[async_trait]
pub trait Executions: Send + Sync {
    /// `Some(status)` (`RUNNING`, `SUCCEEDED`, `ABORTED`, …), `None` when it does not
    /// exist.
    ///
    /// # Errors
    /// When Step Functions cannot say.
    async fn status(&self, execution_arn: &str) -> Result<Option<String>, TaskError>;
}
