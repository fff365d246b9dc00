//! The cluster ports: where a cluster is (its endpoint and CA, from EKS) and a Kubernetes
//! client connected to it with a bearer token.

use std::sync::Arc;

use async_trait::async_trait;
use url::Url;

use crate::contract::error::TaskError;
use crate::contract::payload::ClusterRef;
use crate::ports::kube::KubeApi;

/// What `eks:DescribeCluster` tells about a cluster.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterAccess {
    /// The API server endpoint.
    pub endpoint: Url,
    /// The CA, PEM.
    pub certificate_authority: String,
}

/// The EKS directory of clusters.
#[async_trait]
pub trait ClusterDirectory: Send + Sync {
    /// Endpoint and CA of `name` in `region` (the function's region when `None`), asked
    /// as `role_arn` when given (the role a payload's `RoleArn` names), else as the
    /// function.
    ///
    /// # Errors
    /// `EksTaskWorker.EksApiError` when EKS fails or the cluster is not ACTIVE;
    /// `EksTaskWorker.CredentialsError` when the role cannot be assumed.
    async fn describe(
        &self,
        name: &str,
        region: Option<&str>,
        role_arn: Option<&str>,
    ) -> Result<ClusterAccess, TaskError>;
}

/// Gives a connected [`KubeApi`] for a cluster.
#[async_trait]
pub trait Connector: Send + Sync {
    /// Connects to `cluster`, with a fresh enough bearer token.
    ///
    /// # Errors
    /// Whatever resolving, token minting or client setup fails with.
    async fn connect(&self, cluster: &ClusterRef) -> Result<Arc<dyn KubeApi>, TaskError>;
}
