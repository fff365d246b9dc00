//! The cluster directory on EKS `DescribeCluster`, asked with the task's role when one is
//! given.

use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_eks::error::ProvideErrorMetadata;

use crate::contract::error::{error_chain, names, TaskError};
use crate::contract::payload;
use crate::ports::cluster::{ClusterAccess, ClusterDirectory};

/// [`ClusterDirectory`] over the EKS API.
pub struct EksDirectory {
    config: aws_config::SdkConfig,
    client: aws_sdk_eks::Client,
    credentials: Arc<dyn crate::ports::credentials::CredentialSource>,
}

impl EksDirectory {
    /// A directory using the SDK configuration loaded once at cold start, and
    /// `credentials` for the roles payloads name.
    #[must_use]
    pub fn new(
        config: &aws_config::SdkConfig,
        credentials: Arc<dyn crate::ports::credentials::CredentialSource>,
    ) -> Self {
        Self {
            config: config.clone(),
            client: aws_sdk_eks::Client::new(config),
            credentials,
        }
    }
}

#[async_trait]
impl ClusterDirectory for EksDirectory {
    async fn describe(
        &self,
        name: &str,
        region: Option<&str>,
        role_arn: Option<&str>,
    ) -> Result<ClusterAccess, TaskError> {
        let other_region = region.filter(|r| Some(*r) != self.config.region().map(|x| x.as_ref()));
        let client = if other_region.is_none() && role_arn.is_none() {
            self.client.clone()
        } else {
            let mut conf = aws_sdk_eks::config::Builder::from(&self.config);
            if let Some(r) = other_region {
                conf = conf.region(aws_config::Region::new(r.to_owned()));
            }
            if let Some(role) = role_arn {
                let assumed = self.credentials.credentials(Some(role)).await?;
                conf = conf.credentials_provider(assumed);
            }
            aws_sdk_eks::Client::from_conf(conf.build())
        };
        let eks_error = |message: String| {
            TaskError::new(
                names::EKS_API,
                serde_json::json!({ "operation": "DescribeCluster", "cluster": name, "message": message }),
            )
        };
        let out = client
            .describe_cluster()
            .name(name)
            .send()
            .await
            .map_err(|e| match e.as_service_error() {
                // EKS named its exception: the native name (`EKS.ResourceNotFoundException`).
                Some(service) if service.code().is_some() => TaskError::eks_exception(
                    service.code().unwrap_or_default(),
                    e.raw_response().map_or(0, |r| r.status().as_u16()),
                    "DescribeCluster",
                    &error_chain(&e),
                ),
                _ => eks_error(error_chain(&e)),
            })?;
        let cluster = out
            .cluster()
            .ok_or_else(|| eks_error("the answer has no cluster".into()))?;
        let endpoint = cluster
            .endpoint()
            .ok_or_else(|| eks_error("the cluster has no endpoint yet; is it ACTIVE?".into()))?;
        let ca = cluster
            .certificate_authority()
            .and_then(|c| c.data())
            .ok_or_else(|| {
                eks_error("the cluster has no certificate authority yet; is it ACTIVE?".into())
            })?;
        let endpoint = payload::endpoint_url(endpoint)
            .map_err(|e| eks_error(format!("its endpoint is unusable: {}", e.cause)))?;
        let certificate_authority = payload::certificate_pem(ca).map_err(|e| {
            eks_error(format!(
                "its certificate authority is unusable: {}",
                e.cause
            ))
        })?;
        Ok(ClusterAccess {
            endpoint,
            certificate_authority,
        })
    }
}
