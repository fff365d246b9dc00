//! The credentials port: AWS credentials, the function's own or a role's.

use async_trait::async_trait;
use aws_credential_types::Credentials;

use crate::contract::error::{names, TaskError};

/// Errors getting credentials.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    /// The function's own credentials could not be loaded.
    #[error("could not load the function's AWS credentials: {0}")]
    Load(String),
    /// STS refused to let the worker assume the role.
    #[error("sts:AssumeRole of {role_arn} failed: {message}")]
    AssumeRole {
        /// The role that was asked for.
        role_arn: String,
        /// What STS said.
        message: String,
    },
}

impl From<CredentialsError> for TaskError {
    fn from(e: CredentialsError) -> Self {
        let hint = match &e {
            CredentialsError::Load(_) => "check the function's execution role",
            CredentialsError::AssumeRole { .. } => {
                "the role's trust policy must allow the worker's execution role to call \
                    sts:AssumeRole"
            }
        };
        TaskError::new(
            names::CREDENTIALS,
            serde_json::json!({ "message": e.to_string(), "hint": hint }),
        )
    }
}

/// Where the worker's AWS credentials come from.
#[async_trait]
pub trait CredentialSource: Send + Sync {
    /// Credentials of the function itself (`None`) or of `role_arn` after AssumeRole.
    ///
    /// # Errors
    /// [`CredentialsError`] when they cannot be had.
    async fn credentials(&self, role_arn: Option<&str>) -> Result<Credentials, CredentialsError>;
}
