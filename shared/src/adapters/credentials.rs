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

/// Credentials from the AWS SDK: the default chain, and STS for assumed roles,
/// cached until shortly before they expire.
#[derive(Debug)]
pub struct AwsCredentials {
    base: SharedCredentialsProvider,
    sts: aws_sdk_sts::Client,
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
            sts: aws_sdk_sts::Client::new(config),
            assumed: Mutex::new(HashMap::new()),
        })
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
        let fail = |message: String| CredentialsError::AssumeRole {
            role_arn: role_arn.to_owned(),
            message,
        };
        let out = self
            .sts
            .assume_role()
            .role_arn(role_arn)
            .role_session_name(ROLE_SESSION_NAME)
            .send()
            .await
            .map_err(|e| fail(error_chain(&e)))?;
        let c = out
            .credentials()
            .ok_or_else(|| fail("the answer carried no credentials".into()))?;
        let expiry = SystemTime::try_from(*c.expiration()).ok();
        let creds = Credentials::new(
            c.access_key_id(),
            c.secret_access_key(),
            Some(c.session_token().to_owned()),
            expiry,
            "sts:AssumeRole",
        );
        cache.insert(role_arn.to_owned(), creds.clone());
        Ok(creds)
    }
}
