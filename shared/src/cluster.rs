//! The cluster: where its API server is, which CA it presents, and a connected
//! [`KubeApi`] for it. `Endpoint` and `CertificateAuthority` come from the payload or,
//! when absent, from `eks:DescribeCluster`, so `ClusterName` alone is enough.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::Mutex;
use url::Url;

use crate::error::{error_chain, names, TaskError};
use crate::input::{self, ClusterRef};
use crate::kube_api::{KubeApi, KubeClient, Timeouts};
use crate::token::BearerTokens;

/// Parses PEM text into DER certificates, checking each is an X.509 certificate.
///
/// # Errors
/// A message saying what is wrong with the PEM.
pub fn parse_certificates(pem: &str) -> Result<Vec<Vec<u8>>, String> {
    use x509_cert::der::Decode;
    let mut out = Vec::new();
    for item in rustls_pemfile::certs(&mut pem.as_bytes()) {
        let der = item.map_err(|e| format!("is not valid PEM: {e}"))?;
        x509_cert::Certificate::from_der(der.as_ref())
            .map_err(|e| format!("holds a PEM block that is not an X.509 certificate: {e}"))?;
        out.push(der.as_ref().to_vec());
    }
    Ok(out)
}

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
    /// Endpoint and CA of `name` in `region` (the function's region when `None`).
    ///
    /// # Errors
    /// `EksTaskWorker.EksApiError` when EKS fails or the cluster is not ACTIVE.
    async fn describe(&self, name: &str, region: Option<&str>) -> Result<ClusterAccess, TaskError>;
}

/// [`ClusterDirectory`] over the EKS API.
#[derive(Debug, Clone)]
pub struct EksDirectory {
    config: aws_config::SdkConfig,
    client: aws_sdk_eks::Client,
}

impl EksDirectory {
    /// A directory using the SDK configuration loaded once at cold start.
    #[must_use]
    pub fn new(config: &aws_config::SdkConfig) -> Self {
        Self {
            config: config.clone(),
            client: aws_sdk_eks::Client::new(config),
        }
    }
}

#[async_trait]
impl ClusterDirectory for EksDirectory {
    async fn describe(&self, name: &str, region: Option<&str>) -> Result<ClusterAccess, TaskError> {
        let client = match region {
            Some(r) if Some(r) != self.config.region().map(|x| x.as_ref()) => {
                aws_sdk_eks::Client::from_conf(
                    aws_sdk_eks::config::Builder::from(&self.config)
                        .region(aws_config::Region::new(r.to_owned()))
                        .build(),
                )
            }
            _ => self.client.clone(),
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
            .map_err(|e| eks_error(error_chain(&e)))?;
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
        let endpoint = input::endpoint_url(endpoint)
            .map_err(|e| eks_error(format!("its endpoint is unusable: {}", e.cause)))?;
        let certificate_authority = input::certificate_pem(ca).map_err(|e| {
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

/// Gives a connected [`KubeApi`] for a cluster.
#[async_trait]
pub trait Connector: Send + Sync {
    /// Connects to `cluster`, with a fresh enough bearer token.
    ///
    /// # Errors
    /// Whatever resolving, token minting or client setup fails with.
    async fn connect(&self, cluster: &ClusterRef) -> Result<Arc<dyn KubeApi>, TaskError>;
}

/// The real [`Connector`]: DescribeCluster where needed, a cached bearer token, a
/// kube client per (endpoint, CA, token), kept across warm invocations.
pub struct ClusterConnector {
    directory: Arc<dyn ClusterDirectory>,
    tokens: Arc<BearerTokens>,
    region: String,
    timeouts: Timeouts,
    clients: Mutex<HashMap<(String, String), (String, KubeClient)>>,
    described: Mutex<HashMap<(String, Option<String>), ClusterAccess>>,
}

impl ClusterConnector {
    /// A connector for clusters in `region` unless a payload names another.
    pub fn new(
        directory: Arc<dyn ClusterDirectory>,
        tokens: Arc<BearerTokens>,
        region: String,
        timeouts: Timeouts,
    ) -> Self {
        Self {
            directory,
            tokens,
            region,
            timeouts,
            clients: Mutex::new(HashMap::new()),
            described: Mutex::new(HashMap::new()),
        }
    }

    async fn access(&self, cluster: &ClusterRef) -> Result<ClusterAccess, TaskError> {
        if let (Some(endpoint), Some(ca)) = (&cluster.endpoint, &cluster.certificate_authority) {
            return Ok(ClusterAccess {
                endpoint: endpoint.clone(),
                certificate_authority: ca.clone(),
            });
        }
        let key = (cluster.name.clone(), cluster.region.clone());
        let mut described = self.described.lock().await;
        let found = match described.get(&key) {
            Some(a) => a.clone(),
            None => {
                let a = self
                    .directory
                    .describe(&cluster.name, cluster.region.as_deref())
                    .await?;
                described.insert(key, a.clone());
                a
            }
        };
        Ok(ClusterAccess {
            endpoint: cluster.endpoint.clone().unwrap_or(found.endpoint),
            certificate_authority: cluster
                .certificate_authority
                .clone()
                .unwrap_or(found.certificate_authority),
        })
    }
}

#[async_trait]
impl Connector for ClusterConnector {
    async fn connect(&self, cluster: &ClusterRef) -> Result<Arc<dyn KubeApi>, TaskError> {
        let access = self.access(cluster).await?;
        let region = cluster.region.as_deref().unwrap_or(&self.region);
        let token = self
            .tokens
            .token(region, &cluster.name, cluster.role_arn.as_deref())
            .await?;
        let key = (
            access.endpoint.to_string(),
            access.certificate_authority.clone(),
        );
        let mut clients = self.clients.lock().await;
        if let Some((t, c)) = clients.get(&key) {
            if *t == token.token {
                return Ok(Arc::new(c.clone()));
            }
        }
        let ders = parse_certificates(&access.certificate_authority)
            .map_err(|m| TaskError::invalid_input("CertificateAuthority", m))?;
        let client = KubeClient::new(&access.endpoint, ders, &token.token, self.timeouts)?;
        clients.insert(key, (token.token, client.clone()));
        Ok(Arc::new(client))
    }
}
