//! AWS credentials from the SDK's provider chain, or a role assumed with STS.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_credential_types::Credentials;
use tokio::sync::Mutex;

use crate::contract::error::error_chain;
use crate::ports::credentials::{CredentialSource, CredentialsError};

/// Assumed-role credentials are renewed this long before they expire.
const RENEW_BEFORE_EXPIRY: Duration = Duration::from_secs(5 * 60);
/// The session name the worker uses when it assumes a role (seen in CloudTrail).
pub const ROLE_SESSION_NAME: &str = "eks-task-worker";

/// Credentials from the AWS SDK: the default chain, and roles assumed through
/// `aws-config`'s `AssumeRoleProvider` (with the deployment's `ExternalId`, when it has
/// one), cached until shortly before they expire.
#[derive(Debug)]
pub struct AwsCredentials {
    base: SharedCredentialsProvider,
    config: aws_config::SdkConfig,
    external_id: Option<String>,
    assumed: Mutex<HashMap<String, Credentials>>,
}

impl AwsCredentials {
    /// Credentials from the SDK configuration loaded once at cold start.
    ///
    /// # Errors
    /// [`CredentialsError::Load`] when the configuration has no credentials provider.
    pub fn new(config: &aws_config::SdkConfig) -> Result<Self, CredentialsError> {
        let base = config
            .credentials_provider()
            .ok_or_else(|| CredentialsError::Load("no credentials provider configured".into()))?;
        Ok(Self {
            base,
            config: config.clone(),
            external_id: None,
            assumed: Mutex::new(HashMap::new()),
        })
    }

    /// The `ExternalId` every `AssumeRole` sends (`ASSUME_ROLE_EXTERNAL_ID`: roles in
    /// other accounts whose trust policy asks for one).
    #[must_use]
    pub fn with_external_id(mut self, external_id: Option<String>) -> Self {
        self.external_id = external_id.filter(|id| !id.is_empty());
        self
    }
}

fn fresh(c: &Credentials, now: SystemTime) -> bool {
    c.expiry().is_none_or(|exp| exp > now + RENEW_BEFORE_EXPIRY)
}

#[async_trait]
impl CredentialSource for AwsCredentials {
    async fn credentials(&self, role_arn: Option<&str>) -> Result<Credentials, CredentialsError> {
        let Some(role_arn) = role_arn else {
            return self
                .base
                .provide_credentials()
                .await
                .map_err(|e| CredentialsError::Load(error_chain(&e)));
        };
        let mut cache = self.assumed.lock().await;
        if let Some(c) = cache.get(role_arn).filter(|c| fresh(c, SystemTime::now())) {
            return Ok(c.clone());
        }
        let mut provider = aws_config::sts::AssumeRoleProvider::builder(role_arn)
            .session_name(ROLE_SESSION_NAME)
            .configure(&self.config);
        if let Some(id) = &self.external_id {
            provider = provider.external_id(id);
        }
        let creds = provider
            .build()
            .await
            .provide_credentials()
            .await
            .map_err(|e| CredentialsError::AssumeRole {
                role_arn: role_arn.to_owned(),
                message: error_chain(&e),
            })?;
        cache.insert(role_arn.to_owned(), creds.clone());
        Ok(creds)
    }
}
