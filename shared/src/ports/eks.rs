//! The EKS API ports: a REST call and its error ([`EksApi`], [`EksCallError`]), and the
//! access entries the bootstrap creates ([`AccessEntries`]).

use async_trait::async_trait;
use serde_json::Value;

use crate::contract::error::TaskError;

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
        TaskError::eks_exception(&self.kind, self.status, operation, &self.message)
    }
}

/// Why an EKS call failed.
#[derive(Debug, Clone, PartialEq)]
pub enum EksCallError {
    /// EKS answered with an error.
    Refused(EksError),
    /// EKS could not be reached, or the credentials failed.
    Unreachable(TaskError),
}

impl EksCallError {
    /// Whether EKS said the resource does not exist.
    #[must_use]
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::Refused(e) if e.is_not_found())
    }

    /// Whether EKS said the resource is busy (`ResourceInUseException`: being deleted
    /// already, or in use by another resource).
    #[must_use]
    pub fn is_in_use(&self) -> bool {
        matches!(self, Self::Refused(e) if e.kind.contains("ResourceInUse"))
    }

    /// The task error for it, naming the operation: EKS's own error, or the transport's.
    #[must_use]
    pub fn task_error(self, operation: &str) -> TaskError {
        match self {
            Self::Refused(e) => e.task_error(operation),
            Self::Unreachable(e) => e,
        }
    }
}

/// The EKS REST API.
#[async_trait]
pub trait EksApi: Send + Sync {
    /// Sends `method path` with a JSON body (camelCase, as the API takes it).
    ///
    /// # Errors
    /// [`EksCallError::Refused`] when EKS answers with an error,
    /// [`EksCallError::Unreachable`] when it cannot be reached or the credentials fail.
    async fn call(
        &self,
        method: http::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, EksCallError>;
}

/// The task error for a failed EKS call of operation `op` (for `map_err`).
pub fn eks_failure(op: &str) -> impl Fn(EksCallError) -> TaskError + '_ {
    move |e| e.task_error(op)
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
