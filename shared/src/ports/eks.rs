//! The EKS API port: a REST call and its error.

use crate::contract::error::{names, TaskError};
use async_trait::async_trait;
use serde_json::{json, Value};

/// An answer of the EKS API that is not a success.
#[derive(Debug, Clone, PartialEq)]
pub struct EksError {
    /// The HTTP status.
    pub status: u16,
    /// The error type (`ResourceNotFoundException`, `ResourceInUseException`, …).
    pub kind: String,
    /// EKS's message.
    pub message: String,
}

impl EksError {
    /// Whether the resource does not exist.
    #[must_use]
    pub fn is_not_found(&self) -> bool {
        self.kind.contains("ResourceNotFound") || self.status == 404
    }

    /// The task error for it, naming the operation.
    #[must_use]
    pub fn task_error(&self, operation: &str) -> TaskError {
        TaskError::new(
            names::EKS_API,
            json!({ "operation": operation, "error": self.kind, "status": self.status, "message": self.message }),
        )
    }
}

/// The EKS REST API.
#[async_trait]
pub trait EksApi: Send + Sync {
    /// Sends `method path` with a JSON body (camelCase, as the API takes it).
    ///
    /// # Errors
    /// `Err(Ok(EksError))` when EKS answers with an error, `Err(Err(TaskError))` when it
    /// cannot be reached or credentials fail.
    async fn call(
        &self,
        method: http::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, Result<EksError, TaskError>>;
}

/// The task error for a failed EKS call of operation `op`: EKS's own error named as
/// the contract names it, or the transport's.
pub fn eks_failure(op: &str) -> impl Fn(Result<EksError, TaskError>) -> TaskError + '_ {
    move |e| match e {
        Ok(eks) => eks.task_error(op),
        Err(t) => t,
    }
}

/// EKS access entries: the one EKS call the bootstrap makes.
#[async_trait]
pub trait AccessEntries: Send + Sync {
    /// Gives `principal_arn` the Kubernetes `username` on `cluster`; says "created", or
    /// "already there" when the entry exists.
    ///
    /// # Errors
    /// `EksTaskWorker.EksApiError` when EKS refuses.
    async fn create_access_entry(
        &self,
        cluster: &str,
        principal_arn: &str,
        username: &str,
    ) -> Result<&'static str, TaskError>;
}
