//! The cluster connector: a Kubernetes client per cluster with a fresh bearer token, only
//! for the cluster's own endpoint (or one the deployment trusts).

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::Mutex;
use url::Url;

use crate::adapters::kube_client::KubeClient;
use crate::adapters::token::{BearerTokens, ClusterBearer};
use crate::config::timeouts::Timeouts;
use crate::contract::certificates::parse_certificates;
use crate::contract::error::{names, TaskError};
use crate::contract::payload::ClusterRef;
use crate::ports::cluster::{ClusterAccess, ClusterDirectory, Connector};
use crate::ports::kube::KubeApi;

/// Whether two endpoints are the same server: scheme, host and port.
#[must_use]
pub fn same_server(a: &Url, b: &Url) -> bool {
    a.origin() == b.origin()
}

/// The real [`Connector`]: DescribeCluster where needed, and a kube client per
/// (endpoint, CA, token identity), kept across warm invocations, that asks for a fresh
/// enough bearer token before each request.
///
/// A bearer token goes only to the cluster's own endpoint: the one DescribeCluster
/// reports for `ClusterName` (asked as the payload's `RoleArn` when it names one), or
/// one of the deployment's `TRUSTED_ENDPOINTS`. A payload `Endpoint` that is neither is
/// `EksTaskWorker.UntrustedEndpoint`, before any token is made.
pub struct ClusterConnector {
    directory: Arc<dyn ClusterDirectory>,
    tokens: Arc<BearerTokens>,
    region: String,
    timeouts: Timeouts,
    trusted: Vec<Url>,
    clients: Mutex<HashMap<ClientKey, KubeClient>>,
    described: Mutex<HashMap<DescribedKey, ClusterAccess>>,
}

/// A client's key: the endpoint, the CA, and the region, cluster and role its tokens
/// are signed for.
type ClientKey = (String, String, String, String, Option<String>);

/// A described cluster's key: its name, region and the role it was asked as.
type DescribedKey = (String, Option<String>, Option<String>);

impl ClusterConnector {
    /// A connector for clusters in `region` unless a payload names another; `trusted`
    /// are the endpoints a payload may name besides the cluster's own.
    pub fn new(
        directory: Arc<dyn ClusterDirectory>,
        tokens: Arc<BearerTokens>,
        region: String,
        timeouts: Timeouts,
        trusted: Vec<Url>,
    ) -> Self {
        Self {
            directory,
            tokens,
            region,
            timeouts,
            trusted,
            clients: Mutex::new(HashMap::new()),
            described: Mutex::new(HashMap::new()),
        }
    }

    async fn described(&self, cluster: &ClusterRef) -> Result<ClusterAccess, TaskError> {
        let key = (
            cluster.name.clone(),
            cluster.region.clone(),
            cluster.role_arn.clone(),
        );
        let mut described = self.described.lock().await;
        if let Some(a) = described.get(&key) {
            return Ok(a.clone());
        }
        let a = self
            .directory
            .describe(
                &cluster.name,
                cluster.region.as_deref(),
                cluster.role_arn.as_deref(),
            )
            .await?;
        described.insert(key, a.clone());
        Ok(a)
    }

    async fn access(&self, cluster: &ClusterRef) -> Result<ClusterAccess, TaskError> {
        let listed = |e: &Url| self.trusted.iter().any(|t| same_server(t, e));
        let found = match &cluster.endpoint {
            // A listed endpoint (a cluster that is not EKS, the local world) with its CA
            // needs no DescribeCluster.
            Some(endpoint) if listed(endpoint) => match &cluster.certificate_authority {
                Some(ca) => {
                    return Ok(ClusterAccess {
                        endpoint: endpoint.clone(),
                        certificate_authority: ca.clone(),
                    })
                }
                None => self.described(cluster).await?,
            },
            Some(endpoint) => {
                let found = self.described(cluster).await?;
                if !same_server(endpoint, &found.endpoint) {
                    return Err(TaskError::new(
                        names::UNTRUSTED_ENDPOINT,
                        serde_json::json!({
                            "message": format!("Endpoint {endpoint} is not the endpoint EKS reports for the \
                                cluster {} ({}), and not one of TRUSTED_ENDPOINTS: no bearer \
                                token is sent to it", cluster.name, found.endpoint),
                            "endpoint": endpoint.as_str(),
                            "clusterEndpoint": found.endpoint.as_str(),
                            "hint": "pass the cluster's own endpoint (or leave Endpoint out: it is \
                                looked up), or add this endpoint to the deployment's \
                                TRUSTED_ENDPOINTS",
                        }),
                    ));
                }
                found
            }
            None => self.described(cluster).await?,
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
        // Credentials that cannot sign a token fail the connect, before any request.
        self.tokens
            .token(region, &cluster.name, cluster.role_arn.as_deref())
            .await?;
        let key = (
            access.endpoint.to_string(),
            access.certificate_authority.clone(),
            region.to_owned(),
            cluster.name.clone(),
            cluster.role_arn.clone(),
        );
        let mut clients = self.clients.lock().await;
        if let Some(c) = clients.get(&key) {
            return Ok(Arc::new(c.clone()));
        }
        let ders = parse_certificates(&access.certificate_authority)
            .map_err(|m| TaskError::invalid_input("CertificateAuthority", m))?;
        let bearer = ClusterBearer::Renewed {
            tokens: self.tokens.clone(),
            region: region.to_owned(),
            cluster: cluster.name.clone(),
            role_arn: cluster.role_arn.clone(),
        };
        let client = KubeClient::new(&access.endpoint, ders, bearer, self.timeouts)?;
        clients.insert(key, client.clone());
        Ok(Arc::new(client))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;
    use crate::testing::FakeCredentials;

    struct Directory {
        endpoint: &'static str,
        asked: AtomicU32,
    }

    #[async_trait]
    impl ClusterDirectory for Directory {
        async fn describe(
            &self,
            _name: &str,
            _region: Option<&str>,
            _role_arn: Option<&str>,
        ) -> Result<ClusterAccess, TaskError> {
            self.asked.fetch_add(1, Ordering::SeqCst);
            Ok(ClusterAccess {
                endpoint: Url::parse(self.endpoint).unwrap_or_else(|e| panic!("{e}")),
                certificate_authority: "described CA".into(),
            })
        }
    }

    fn connector(trusted: &[&str]) -> (ClusterConnector, Arc<Directory>) {
        let directory = Arc::new(Directory {
            endpoint: "https://abc.gr7.us-east-1.eks.amazonaws.com",
            asked: AtomicU32::new(0),
        });
        let tokens = Arc::new(BearerTokens::new(
            Arc::new(FakeCredentials::none()),
            Arc::new(crate::ports::clock::SystemClock),
            crate::adapters::token::RENEW_AFTER,
        ));
        let c = ClusterConnector::new(
            directory.clone(),
            tokens,
            "us-east-1".into(),
            Timeouts {
                connect: std::time::Duration::from_secs(1),
                read: std::time::Duration::from_secs(1),
            },
            trusted
                .iter()
                .map(|t| Url::parse(t).unwrap_or_else(|e| panic!("{e}")))
                .collect(),
        );
        (c, directory)
    }

    fn cluster(endpoint: Option<&str>) -> ClusterRef {
        ClusterRef {
            name: "c".into(),
            endpoint: endpoint.map(|e| Url::parse(e).unwrap_or_else(|e| panic!("{e}"))),
            certificate_authority: Some("payload CA".into()),
            role_arn: None,
            region: None,
        }
    }

    #[tokio::test]
    async fn tokens_go_only_to_the_clusters_own_endpoint_or_a_listed_one() {
        let (c, directory) = connector(&["https://proxy.internal:8443"]);
        // The cluster's own endpoint, as EKS reports it (trailing slash or not).
        let own = c
            .access(&cluster(Some(
                "https://ABC.gr7.us-east-1.eks.amazonaws.com/",
            )))
            .await;
        assert!(own.is_ok(), "{own:?}");
        // Another host, or the right host on another port: refused, named, explained.
        for wrong in [
            "https://attacker.example",
            "https://abc.gr7.us-east-1.eks.amazonaws.com:8443",
        ] {
            let e = c.access(&cluster(Some(wrong))).await.err();
            assert_eq!(
                e.as_ref().map(|e| e.name.as_str()),
                Some(names::UNTRUSTED_ENDPOINT),
                "{wrong}: {e:?}"
            );
        }
        // Described once per warm container.
        assert_eq!(directory.asked.load(Ordering::SeqCst), 1);
        // A listed endpoint with its CA needs no DescribeCluster.
        let listed = c
            .access(&cluster(Some("https://proxy.internal:8443")))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(listed.certificate_authority, "payload CA");
        assert_eq!(directory.asked.load(Ordering::SeqCst), 1);
        // No Endpoint: the described one.
        let looked_up = c
            .access(&cluster(None))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            looked_up.endpoint.as_str(),
            "https://abc.gr7.us-east-1.eks.amazonaws.com/"
        );
    }
}
