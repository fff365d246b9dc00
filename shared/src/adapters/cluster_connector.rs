//! The cluster connector: a Kubernetes client per cluster with a fresh bearer token, only
//! for the cluster's own endpoint (or one the deployment trusts).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use serde_json::Value;
use tokio::sync::Mutex;
use url::Url;

use crate::adapters::kube_client::KubeClient;
use crate::adapters::token::{BearerTokens, ClusterBearer};
use crate::config::timeouts::Timeouts;
use crate::config::trusted_endpoints::TrustedEndpoint;
use crate::contract::certificates::parse_certificates;
use crate::contract::error::{names, TaskError};
use crate::contract::payload::ClusterRef;
use crate::ports::cluster::{ClusterAccess, ClusterDirectory, Connector};
use crate::ports::kube::{KubeApi, KubeRequest, KubeResponse, TransportError};

/// Whether two endpoints are the same server: scheme, host and port.
#[must_use]
pub fn same_server(a: &Url, b: &Url) -> bool {
    a.origin() == b.origin()
}

/// The real [`Connector`]: DescribeCluster where needed, and a kube client per
/// (endpoint, CA, token identity), kept across warm invocations, that asks for a fresh
/// enough bearer token before each request.
///
/// A bearer token goes only to the cluster's own endpoint, under its own CA: the ones
/// DescribeCluster reports for `ClusterName` (asked as the payload's `RoleArn` when it
/// names one), or the one the deployment's `TRUSTED_ENDPOINTS` lists for that cluster
/// name (with the payload's CA).
/// A payload `Endpoint` that is neither is `EksTaskWorker.UntrustedEndpoint`, and a
/// payload `CertificateAuthority` other than the described one
/// `EksTaskWorker.UntrustedCertificateAuthority`, before any token is made; for a
/// described cluster the request goes to the described origin, under the described CA.
/// (An `Endpoint` is an origin: one with a path is refused where it is parsed.)
///
/// A DescribeCluster answer is kept for [`DESCRIBED_FOR`], and asked again at once when
/// a payload's endpoint or CA disagrees with the kept one: a cluster deleted and made
/// again under the same name (a create → run → delete pipeline run twice on a warm
/// function) has a new endpoint and CA. So is a cluster that cannot be reached where
/// the kept answer says: a cluster made again answers elsewhere, and the
/// request goes once more to where EKS says it is now.
pub struct ClusterConnector(Arc<Inner>);

/// The connector's state, shared with the clients it hands out ([`Followed`]).
struct Inner {
    directory: Arc<dyn ClusterDirectory>,
    tokens: Arc<BearerTokens>,
    region: String,
    timeouts: Timeouts,
    trusted: Vec<TrustedEndpoint>,
    clients: Mutex<HashMap<ClientKey, KubeClient>>,
    described: Mutex<HashMap<DescribedKey, (Instant, ClusterAccess)>>,
    /// When a client last asked EKS again where a cluster it could not reach is.
    followed: Mutex<HashMap<DescribedKey, Instant>>,
}

/// How long a DescribeCluster answer is used. EKS takes minutes to delete a cluster and
/// more to make one, so a cluster made again under the same name is described afresh
/// before it can serve.
pub const DESCRIBED_FOR: Duration = Duration::from_secs(300);

/// Whether two CA bundles are the same certificates (as text when either is not PEM).
fn same_ca(a: &str, b: &str) -> bool {
    match (parse_certificates(a), parse_certificates(b)) {
        (Ok(x), Ok(y)) if !x.is_empty() && !y.is_empty() => x == y,
        _ => a.trim() == b.trim(),
    }
}

/// Whether a payload's endpoint and CA, where given, are the described cluster's.
fn agrees(cluster: &ClusterRef, found: &ClusterAccess) -> bool {
    cluster
        .endpoint
        .as_ref()
        .is_none_or(|e| same_server(e, &found.endpoint))
        && cluster
            .certificate_authority
            .as_deref()
            .is_none_or(|ca| same_ca(ca, &found.certificate_authority))
}

/// A client's key: the endpoint, the CA, and the region, cluster and role its tokens
/// are signed for.
type ClientKey = (String, String, String, String, Option<String>);

/// A described cluster's key: its name, region and the role it was asked as.
type DescribedKey = (String, Option<String>, Option<String>);

fn described_key(cluster: &ClusterRef) -> DescribedKey {
    (
        cluster.name.clone(),
        cluster.region.clone(),
        cluster.role_arn.clone(),
    )
}

impl ClusterConnector {
    /// A connector for clusters in `region` unless a payload names another; `trusted`
    /// are the endpoints a payload may name, each for one cluster, besides the cluster's own.
    pub fn new(
        directory: Arc<dyn ClusterDirectory>,
        tokens: Arc<BearerTokens>,
        region: String,
        timeouts: Timeouts,
        trusted: Vec<TrustedEndpoint>,
    ) -> Self {
        Self(Arc::new(Inner {
            directory,
            tokens,
            region,
            timeouts,
            trusted,
            clients: Mutex::new(HashMap::new()),
            described: Mutex::new(HashMap::new()),
            followed: Mutex::new(HashMap::new()),
        }))
    }

    #[cfg(test)]
    async fn access(&self, cluster: &ClusterRef) -> Result<ClusterAccess, TaskError> {
        self.0.access(cluster).await.map(|(a, _)| a)
    }
}

impl Inner {
    /// The cluster as DescribeCluster reports it: a kept answer unless `fresh` or older
    /// than [`DESCRIBED_FOR`].
    async fn described(
        &self,
        cluster: &ClusterRef,
        fresh: bool,
    ) -> Result<ClusterAccess, TaskError> {
        let key = described_key(cluster);
        let mut described = self.described.lock().await;
        if let Some((at, a)) = described.get(&key) {
            if !fresh && at.elapsed() < DESCRIBED_FOR {
                return Ok(a.clone());
            }
        }
        let a = self
            .directory
            .describe(
                &cluster.name,
                cluster.region.as_deref(),
                cluster.role_arn.as_deref(),
            )
            .await?;
        described.insert(key, (Instant::now(), a.clone()));
        Ok(a)
    }

    /// Where `cluster` is reached, and whether EKS said so (not a listed endpoint).
    async fn access(&self, cluster: &ClusterRef) -> Result<(ClusterAccess, bool), TaskError> {
        let listed = |e: &Url| {
            self.trusted
                .iter()
                .any(|t| t.cluster == cluster.name && same_server(&t.endpoint, e))
        };
        if let Some(endpoint) = cluster.endpoint.as_ref().filter(|e| listed(e)) {
            // A listed endpoint (a cluster that is not EKS, the local world) with its CA
            // needs no DescribeCluster.
            let ca = match &cluster.certificate_authority {
                Some(ca) => ca.clone(),
                None => self.described(cluster, false).await?.certificate_authority,
            };
            return Ok((
                ClusterAccess {
                    endpoint: endpoint.clone(),
                    certificate_authority: ca,
                },
                false,
            ));
        }
        let mut found = self.described(cluster, false).await?;
        if !agrees(cluster, &found) {
            found = self.described(cluster, true).await?;
        }
        if let Some(endpoint) = cluster
            .endpoint
            .as_ref()
            .filter(|e| !same_server(e, &found.endpoint))
        {
            return Err(TaskError::new(
                names::UNTRUSTED_ENDPOINT,
                serde_json::json!({
                    "message": format!("Endpoint {endpoint} is not the endpoint EKS reports for the \
                        cluster {} ({}), and not one TRUSTED_ENDPOINTS lists for it: no \
                        bearer token is sent to it", cluster.name, found.endpoint),
                    "endpoint": endpoint.as_str(),
                    "clusterEndpoint": found.endpoint.as_str(),
                    "hint": "pass the cluster's own endpoint (or leave Endpoint out: it is \
                        looked up), or add <cluster name>=<endpoint> to the \
                        deployment's TRUSTED_ENDPOINTS",
                }),
            ));
        }
        if cluster
            .certificate_authority
            .as_deref()
            .is_some_and(|ca| !same_ca(ca, &found.certificate_authority))
        {
            return Err(TaskError::new(
                names::UNTRUSTED_CA,
                serde_json::json!({
                    "message": format!("CertificateAuthority is not the one EKS reports for the \
                        cluster {}: no bearer token is sent under it", cluster.name),
                    "hint": "pass the cluster's own CertificateAuthority, or leave it out: it \
                        is looked up",
                }),
            ));
        }
        Ok((found, true))
    }

    /// The kept client for `access` (one per endpoint, CA and token identity), or a new one.
    async fn client(
        &self,
        cluster: &ClusterRef,
        access: &ClusterAccess,
    ) -> Result<KubeClient, TaskError> {
        let region = cluster.region.as_deref().unwrap_or(&self.region);
        let key = (
            access.endpoint.to_string(),
            access.certificate_authority.clone(),
            region.to_owned(),
            cluster.name.clone(),
            cluster.role_arn.clone(),
        );
        let mut clients = self.clients.lock().await;
        if let Some(c) = clients.get(&key) {
            return Ok(c.clone());
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
        Ok(client)
    }
}

#[async_trait]
impl Connector for ClusterConnector {
    async fn connect(&self, cluster: &ClusterRef) -> Result<Arc<dyn KubeApi>, TaskError> {
        let (access, described) = self.0.access(cluster).await?;
        let region = cluster.region.as_deref().unwrap_or(&self.0.region);
        // Credentials that cannot sign a token fail the connect, before any request.
        self.0
            .tokens
            .token(region, &cluster.name, cluster.role_arn.as_deref())
            .await?;
        let client = self.0.client(cluster, &access).await?;
        if !described {
            return Ok(Arc::new(client));
        }
        Ok(Arc::new(Followed {
            inner: self.0.clone(),
            cluster: cluster.clone(),
            current: std::sync::Mutex::new((access, client)),
        }))
    }
}

/// How often the connector asks EKS again where a cluster it cannot reach is: once,
/// then not again for this long, whichever invocation meets the failure (a long outage
/// costs one DescribeCluster every 10 s, not one a failed request).
pub const FOLLOW_EVERY: Duration = Duration::from_secs(10);

/// A described cluster's client that follows the cluster. When the cluster cannot be
/// reached (connect, TLS, I/O), EKS is asked again, at most every [`FOLLOW_EVERY`] per
/// cluster and never past the invocation's request deadline; when it now reports
/// another endpoint or CA (the cluster deleted and made again under its name), the
/// request is sent once more there, under the new CA, and the connector keeps the new
/// answer. Otherwise the failure stands as it was.
struct Followed {
    inner: Arc<Inner>,
    cluster: ClusterRef,
    current: std::sync::Mutex<(ClusterAccess, KubeClient)>,
}

impl Followed {
    fn current(&self) -> KubeClient {
        self.current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .1
            .clone()
    }

    /// The client for where the cluster is now, when EKS says it moved.
    async fn moved(&self) -> Option<KubeClient> {
        let until = crate::ports::clock::request_deadline();
        if until.is_some_and(|at| tokio::time::Instant::now() >= at) {
            return None;
        }
        {
            let mut followed = self.inner.followed.lock().await;
            let key = described_key(&self.cluster);
            if followed
                .get(&key)
                .is_some_and(|at| at.elapsed() < FOLLOW_EVERY)
            {
                return None;
            }
            followed.insert(key, Instant::now());
        }
        let describe = self.inner.described(&self.cluster, true);
        let found = match until {
            Some(at) => tokio::time::timeout_at(at, describe).await.ok()?,
            None => describe.await,
        };
        let found = match found {
            Ok(found) => found,
            Err(e) => {
                tracing::warn!(cluster = %self.cluster.name, error = %e, "the cluster cannot be reached, and EKS cannot say where it is now");
                return None;
            }
        };
        let was = self
            .current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .0
            .clone();
        if same_server(&was.endpoint, &found.endpoint)
            && same_ca(&was.certificate_authority, &found.certificate_authority)
        {
            return None;
        }
        // A payload that names the old endpoint or CA is not sent elsewhere: the next
        // invocation refuses it by name.
        if !agrees(&self.cluster, &found) {
            return None;
        }
        let client = self.inner.client(&self.cluster, &found).await.ok()?;
        tracing::warn!(
            cluster = %self.cluster.name,
            was = %was.endpoint,
            now = %found.endpoint,
            "the cluster answers elsewhere now (made again under its name): following it"
        );
        *self
            .current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = (found, client.clone());
        Some(client)
    }

    /// `work` on the current client, and once more on the new one when the cluster
    /// could not be reached and has moved.
    async fn followed<T, F, Fut>(&self, work: F) -> Result<T, TransportError>
    where
        F: Fn(KubeClient) -> Fut + Send + Sync,
        Fut: std::future::Future<Output = Result<T, TransportError>> + Send,
        T: Send,
    {
        match work(self.current()).await {
            Err(e @ TransportError::Unreachable { .. }) => match self.moved().await {
                Some(client) => work(client).await,
                None => Err(e),
            },
            other => other,
        }
    }
}

#[async_trait]
impl KubeApi for Followed {
    async fn send(
        &self,
        request: KubeRequest,
        keep_tail: Option<usize>,
    ) -> Result<KubeResponse, TransportError> {
        self.followed(|c| {
            let request = request.clone();
            async move { c.send(request, keep_tail).await }
        })
        .await
    }

    async fn send_capped(
        &self,
        request: KubeRequest,
        cap: usize,
    ) -> Result<KubeResponse, TransportError> {
        self.followed(|c| {
            let request = request.clone();
            async move { c.send_capped(request, cap).await }
        })
        .await
    }

    async fn stream(
        &self,
        request: KubeRequest,
    ) -> Result<
        Result<BoxStream<'static, Result<Bytes, TransportError>>, KubeResponse>,
        TransportError,
    > {
        self.followed(|c| {
            let request = request.clone();
            async move { c.stream(request).await }
        })
        .await
    }

    async fn watch(
        &self,
        request: KubeRequest,
    ) -> Result<
        Result<BoxStream<'static, Result<Value, TransportError>>, KubeResponse>,
        TransportError,
    > {
        self.followed(|c| {
            let request = request.clone();
            async move { c.watch(request).await }
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;
    use crate::testing::FakeCredentials;

    /// EKS's answer: `endpoint`, under "described CA" (a cluster made again under the
    /// same name: another endpoint).
    struct Directory {
        endpoint: std::sync::Mutex<&'static str>,
        ca: &'static str,
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
            let endpoint = *self.endpoint.lock().unwrap_or_else(|e| panic!("{e}"));
            Ok(ClusterAccess {
                endpoint: Url::parse(endpoint).unwrap_or_else(|e| panic!("{e}")),
                certificate_authority: self.ca.into(),
            })
        }
    }

    const OWN: &str = "https://abc.gr7.us-east-1.eks.amazonaws.com";

    fn connector(trusted: &[&str]) -> (ClusterConnector, Arc<Directory>) {
        described_as(trusted, OWN, "described CA")
    }

    fn described_as(
        trusted: &[&str],
        endpoint: &'static str,
        ca: &'static str,
    ) -> (ClusterConnector, Arc<Directory>) {
        let directory = Arc::new(Directory {
            endpoint: std::sync::Mutex::new(endpoint),
            ca,
            asked: AtomicU32::new(0),
        });
        let credentials = if ca == TEST_CA {
            FakeCredentials::fixed(aws_credential_types::Credentials::new(
                "AKIDEXAMPLE",
                "secret",
                None,
                None,
                "test",
            ))
        } else {
            FakeCredentials::none()
        };
        let tokens = Arc::new(BearerTokens::new(
            Arc::new(credentials),
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
            crate::config::trusted_endpoints::parse(&trusted.join(","))
                .unwrap_or_else(|e| panic!("{e}")),
        );
        (c, directory)
    }

    fn cluster(endpoint: Option<&str>, ca: Option<&str>) -> ClusterRef {
        ClusterRef {
            name: "c".into(),
            endpoint: endpoint.map(|e| Url::parse(e).unwrap_or_else(|e| panic!("{e}"))),
            certificate_authority: ca.map(str::to_owned),
            role_arn: None,
            region: None,
        }
    }

    fn refused(a: Result<ClusterAccess, TaskError>) -> Option<String> {
        a.err().map(|e| e.name)
    }

    #[tokio::test]
    async fn tokens_go_only_to_the_clusters_own_endpoint_or_a_listed_one() {
        let (c, directory) = connector(&["c=https://proxy.internal:8443", "d=https://d.internal"]);
        // The cluster's own endpoint, as EKS reports it (trailing slash or not).
        let own = c
            .access(&cluster(
                Some("https://ABC.gr7.us-east-1.eks.amazonaws.com/"),
                None,
            ))
            .await;
        assert!(own.is_ok(), "{own:?}");
        assert_eq!(directory.asked.load(Ordering::SeqCst), 1);
        // Another host, or the right host on another port: refused, named, explained
        // (EKS asked again first, in case the cluster was made again).
        for wrong in [
            "https://attacker.example",
            "https://abc.gr7.us-east-1.eks.amazonaws.com:8443",
        ] {
            let e = refused(c.access(&cluster(Some(wrong), None)).await);
            assert_eq!(e.as_deref(), Some(names::UNTRUSTED_ENDPOINT), "{wrong}");
        }
        assert_eq!(directory.asked.load(Ordering::SeqCst), 3);
        // A listed endpoint with its CA needs no DescribeCluster.
        let listed = c
            .access(&cluster(
                Some("https://proxy.internal:8443"),
                Some("proxy CA"),
            ))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(listed.certificate_authority, "proxy CA");
        assert_eq!(directory.asked.load(Ordering::SeqCst), 3);
        // An endpoint listed for another cluster is not this one's.
        let e = refused(
            c.access(&cluster(Some("https://d.internal"), Some("d CA")))
                .await,
        );
        assert_eq!(e.as_deref(), Some(names::UNTRUSTED_ENDPOINT));
        assert_eq!(directory.asked.load(Ordering::SeqCst), 4);
        // No Endpoint: the described one, kept.
        let looked_up = c
            .access(&cluster(None, None))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(looked_up.endpoint.as_str(), format!("{OWN}/"));
        assert_eq!(directory.asked.load(Ordering::SeqCst), 4);
    }

    /// A described cluster's token goes only under the CA EKS reports: a payload's other
    /// CA is refused (with the endpoint given or looked up).
    #[tokio::test]
    async fn a_described_cluster_is_reached_only_under_its_own_ca() {
        let (c, _) = connector(&[]);
        for endpoint in [Some(OWN), None] {
            let e = refused(c.access(&cluster(endpoint, Some("attacker CA"))).await);
            assert_eq!(e.as_deref(), Some(names::UNTRUSTED_CA), "{endpoint:?}");
            let same = c
                .access(&cluster(endpoint, Some("described CA")))
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(same.certificate_authority, "described CA");
        }
    }

    /// A cluster deleted and made again under the same name while the function is warm:
    /// its new endpoint is taken at once (EKS asked again when the payload disagrees
    /// with the kept answer), the old one refused.
    #[tokio::test]
    async fn a_cluster_made_again_under_its_name_is_described_afresh() {
        let (c, directory) = connector(&[]);
        assert!(c.access(&cluster(Some(OWN), None)).await.is_ok());
        let again = "https://def.gr7.us-east-1.eks.amazonaws.com";
        *directory.endpoint.lock().unwrap_or_else(|e| panic!("{e}")) = again;
        let new = c
            .access(&cluster(Some(again), None))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(new.endpoint.as_str(), format!("{again}/"));
        let looked_up = c
            .access(&cluster(None, None))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(looked_up.endpoint.as_str(), format!("{again}/"));
        let old = refused(c.access(&cluster(Some(OWN), None)).await);
        assert_eq!(old.as_deref(), Some(names::UNTRUSTED_ENDPOINT));
    }

    /// A self-signed CA, for clients that are made (and refused a connection).
    use crate::contract::certificates::TEST_CA;

    fn unreachable_at(got: &Result<KubeResponse, TransportError>) -> String {
        match got {
            Err(TransportError::Unreachable { endpoint, .. }) => endpoint.clone(),
            other => panic!("not unreachable: {other:?}"),
        }
    }

    /// A described cluster that cannot be reached is described again; when it answers
    /// elsewhere now (made again under its name), the request goes there, the
    /// connector keeps the new place, and EKS is not asked again on every failure.
    #[tokio::test]
    async fn a_client_follows_a_cluster_made_again_elsewhere() {
        // Nothing listens on ports 1 and 2 of 127.0.0.1: every connect is refused.
        let (c, directory) = described_as(&[], "https://127.0.0.1:1", TEST_CA);
        // As if FOLLOW_EVERY had passed since the connector last asked.
        let later = || async { c.0.followed.lock().await.clear() };
        let kube = c
            .connect(&cluster(None, None))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(directory.asked.load(Ordering::SeqCst), 1);
        // Unreachable, and still there as EKS says: the failure stands, EKS asked once.
        let got = kube.send(KubeRequest::get("/version"), None).await;
        assert_eq!(unreachable_at(&got), "https://127.0.0.1:1/");
        assert_eq!(directory.asked.load(Ordering::SeqCst), 2);
        // Made again elsewhere: within FOLLOW_EVERY EKS is not asked again, on this
        // client or another invocation's...
        *directory.endpoint.lock().unwrap_or_else(|e| panic!("{e}")) = "https://127.0.0.1:2";
        let got = kube.send(KubeRequest::get("/version"), None).await;
        assert_eq!(unreachable_at(&got), "https://127.0.0.1:1/");
        let other = c
            .connect(&cluster(None, None))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let got = other.send(KubeRequest::get("/version"), None).await;
        assert_eq!(unreachable_at(&got), "https://127.0.0.1:1/");
        assert_eq!(directory.asked.load(Ordering::SeqCst), 2);
        // ...after it, the first failure asks, and the request goes again to where the
        // cluster is now.
        later().await;
        let got = other.send(KubeRequest::get("/version"), None).await;
        assert_eq!(unreachable_at(&got), "https://127.0.0.1:2/");
        assert_eq!(directory.asked.load(Ordering::SeqCst), 3);
        // The connector keeps the new place: the next client goes there first.
        let kube = c
            .connect(&cluster(None, None))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(directory.asked.load(Ordering::SeqCst), 3);
        let got = kube.send(KubeRequest::get("/version"), None).await;
        assert_eq!(unreachable_at(&got), "https://127.0.0.1:2/");
        // A payload naming the old endpoint is not sent to the new one.
        *directory.endpoint.lock().unwrap_or_else(|e| panic!("{e}")) = "https://127.0.0.1:3";
        later().await;
        let pinned = c
            .connect(&cluster(Some("https://127.0.0.1:2"), None))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let got = pinned.send(KubeRequest::get("/version"), None).await;
        assert_eq!(unreachable_at(&got), "https://127.0.0.1:2/");
        assert_eq!(directory.asked.load(Ordering::SeqCst), 4);
    }
}
