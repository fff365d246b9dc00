//! `deleteCluster` with `ForceDeleteCompute`: first what would outlive the cluster in its
//! VPC (the load balancers of `LoadBalancer` Services, the volumes of
//! PersistentVolumeClaims: their controllers run on the compute, so they are released
//! while it still runs), then the cluster's nodegroups (together), then its Fargate
//! profiles (one at a time: EKS refuses parallel Fargate deletes), then the cluster;
//! only what the worker made.

use std::time::{Duration, SystemTime};

use serde_json::{json, Value};

use crate::contract::cluster_op::{deleted, Operation};
use crate::contract::error::{names, TaskError};
use crate::contract::payload::ClusterRef;
use crate::contract::tags::{owned, tag, RETAIN_TAG};
use crate::contract::time::rfc3339;
use crate::ports::cluster::Connector;
use crate::ports::eks::{eks_failure, EksApi};
use crate::ports::kube::{KubeApi, KubeRequest};

/// The most names a waiting message lists.
const MAX_NAMED: usize = 10;

/// What a forced delete removes, said in its answer (`ForceDeleted`) as in the docs
/// (docs/cluster-operations.md): kinds, not names (the answer is made once the cluster
/// is gone, and a poll state has no room for a list of names).
pub const FORCE_DELETED: &[&str] = &[
    "every Service of type LoadBalancer (its cloud load balancer released)",
    "every PersistentVolumeClaim (its volume then goes by its reclaim policy) and every pod that mounts one",
    "every nodegroup",
    "every Fargate profile",
    "the cluster",
];

/// How a cluster operation stands.
#[derive(Debug, Clone, PartialEq)]
pub enum Stage {
    /// Finished: the answer.
    Done(Value),
    /// Still going; what it waits for.
    Pending(String),
}

/// A forced delete never takes a cluster its owner marked to keep (the tag that also
/// keeps the scheduled cleanup away); a plain `deleteCluster`, which names the cluster
/// and takes nothing else with it, still may.
fn not_retained(described: &Value, cluster: &str) -> Result<(), TaskError> {
    match tag(described, RETAIN_TAG) {
        None => Ok(()),
        Some(_) => Err(TaskError::new(
            names::RETAINED,
            json!({ "message": format!("the cluster {cluster} is tagged {RETAIN_TAG}: a forced delete releases and deletes nothing of it; remove the tag, or delete it with a plain deleteCluster"), "resource": format!("the cluster {cluster}"), "tags": described.get("tags").cloned().unwrap_or(Value::Null) }),
        )),
    }
}

/// Moves a forced cluster deletion on, idempotently: first what the compute would
/// leave behind in the VPC (LoadBalancer Services, PersistentVolumeClaims), then the
/// nodegroups (together), the Fargate profiles (one at a time), then the cluster. (The cluster is looked at first:
/// besides saving calls, moto answers 500 to listing the nodegroups of a cluster that
/// is gone.) Nothing is released or deleted unless the cluster, and each nodegroup and
/// Fargate profile in it, is the worker's ([`owned`]; the cluster of `execution`, and not
/// retained): all are looked at before anything is done.
///
/// # Errors
/// `EksTaskWorker.NotOwned`, `EksTaskWorker.Retained`; EKS errors other than "already gone" or "already
/// deleting"; the API server's errors other than a refusal or an unreachable cluster
/// while releasing.
pub async fn advance_force_delete(
    eks: &dyn EksApi,
    connector: &dyn Connector,
    cluster: &str,
    execution: &str,
    now: SystemTime,
) -> Result<Stage, TaskError> {
    let fail = eks_failure("deleteCluster");
    let list = |path: String, field: &'static str| async move {
        match eks.call(http::Method::GET, &path, None).await {
            Ok(v) => Ok(v[field]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect::<Vec<_>>()),
            Err(e) if e.is_not_found() => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    };
    // Describes a nodegroup or profile and checks it is the worker's: its status, or
    // `None` when it is gone.
    let look = |path: String, field: &'static str, what: String| async move {
        match eks.call(http::Method::GET, &path, None).await {
            Ok(d) => {
                owned(&d[field], &what, None)?;
                Ok(Some(
                    d[field]["status"].as_str().unwrap_or_default().to_owned(),
                ))
            }
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(eks_failure("deleteCluster")(e)),
        }
    };
    let gone = || {
        let mut done = deleted(Operation::DeleteCluster, cluster, None);
        done["forceDeleted"] = json!(FORCE_DELETED);
        Stage::Done(done)
    };
    let status = match eks
        .call(http::Method::GET, &format!("/clusters/{cluster}"), None)
        .await
    {
        Err(e) if e.is_not_found() => return Ok(gone()),
        Ok(d) => {
            owned(
                &d["cluster"],
                &format!("the cluster {cluster}"),
                Some(execution),
            )?;
            not_retained(&d["cluster"], cluster)?;
            if d["cluster"]["status"] == "DELETING" {
                return Ok(Stage::Pending("the cluster is deleting".into()));
            }
            d["cluster"]["status"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        }
        Err(e) => return Err(fail(e)),
    };
    let nodegroups = list(format!("/clusters/{cluster}/node-groups"), "nodegroups")
        .await
        .map_err(&fail)?;
    let mut compute = Vec::new();
    for ng in &nodegroups {
        let path = format!("/clusters/{cluster}/node-groups/{ng}");
        let what = format!("the nodegroup {cluster}/{ng}");
        if let Some(s) = look(path.clone(), "nodegroup", what).await? {
            compute.push((path, s, false));
        }
    }
    let profiles = list(
        format!("/clusters/{cluster}/fargate-profiles"),
        "fargateProfileNames",
    )
    .await
    .map_err(&fail)?;
    for fp in &profiles {
        let path = format!("/clusters/{cluster}/fargate-profiles/{fp}");
        let what = format!("the Fargate profile {cluster}/{fp}");
        if let Some(s) = look(path.clone(), "fargateProfile", what).await? {
            compute.push((path, s, true));
        }
    }
    // Only a cluster that serves its API has anything to release (a FAILED or CREATING
    // one has no endpoint yet).
    if matches!(status.as_str(), "ACTIVE" | "UPDATING") {
        match release(connector, cluster, now).await {
            Ok(held) if !held.is_empty() => {
                let more = held.len().saturating_sub(MAX_NAMED);
                let mut named = held
                    .into_iter()
                    .take(MAX_NAMED)
                    .collect::<Vec<_>>()
                    .join(", ");
                if more > 0 {
                    named.push_str(&format!(" and {more} more"));
                }
                return Ok(Stage::Pending(format!(
                    "releasing the load balancers and volumes of {named} before the compute goes"
                )));
            }
            Ok(_) => {}
            Err(e)
                if matches!(e.kubernetes_status_code(), Some(401 | 403))
                    || e.name == names::CLUSTER_UNREACHABLE =>
            {
                tracing::warn!(cluster, error = %e, "the worker cannot list the cluster's Services and PersistentVolumeClaims: their load balancers and volumes are not released before the compute goes (see docs/cluster-operations.md)");
            }
            Err(e) => return Err(e),
        }
    }
    let deleting_profile = compute
        .iter()
        .any(|(_, s, fargate)| *fargate && s == "DELETING");
    let mut first_profile = !deleting_profile;
    for (path, s, fargate) in &compute {
        // Nodegroups together; Fargate profiles one at a time (EKS refuses parallel ones).
        let now_or_never = if *fargate {
            std::mem::replace(&mut first_profile, false)
        } else {
            s != "DELETING"
        };
        if now_or_never {
            match eks.call(http::Method::DELETE, path, None).await {
                Ok(_) => {}
                Err(e) if e.is_not_found() || e.is_in_use() => {}
                Err(e) => return Err(fail(e)),
            }
        }
    }
    if !compute.is_empty() {
        return Ok(Stage::Pending(format!(
            "deleting {} nodegroup(s) and {} Fargate profile(s)",
            compute.iter().filter(|c| !c.2).count(),
            compute.iter().filter(|c| c.2).count()
        )));
    }
    match eks
        .call(http::Method::DELETE, &format!("/clusters/{cluster}"), None)
        .await
    {
        Ok(_) => Ok(Stage::Pending("the cluster is deleting".into())),
        Err(e) if e.is_not_found() => Ok(gone()),
        Err(e) => Err(fail(e)),
    }
}

/// How long a forced deletion waits for one load balancer or volume to be released
/// (from the deletion's start, as the object's `deletionTimestamp` says) before it
/// leaves it behind, with a log line, and deletes the compute: a controller that is
/// gone (unhealthy nodes) never releases it.
pub const RELEASE_PATIENCE: Duration = Duration::from_secs(600);

/// Deletes the cluster's `LoadBalancer` Services and PersistentVolumeClaims with the
/// pods that mount them (scheduled or not), and names each that is still
/// there and within [`RELEASE_PATIENCE`]. Idempotent: what is already being deleted is
/// only waited for.
///
/// # Errors
/// The API server's refusal (`EKS.403` when the worker may not list them), transport.
async fn release(
    connector: &dyn Connector,
    cluster: &str,
    now: SystemTime,
) -> Result<Vec<String>, TaskError> {
    let kube = connector
        .connect(&ClusterRef {
            name: cluster.to_owned(),
            endpoint: None,
            certificate_authority: None,
            role_arn: None,
            region: None,
        })
        .await?;
    let kube = kube.as_ref();
    let mut held = Vec::new();
    let mut wait_for = |object: &Value, what: String| {
        let since = rfc3339(&object["metadata"]["deletionTimestamp"]).unwrap_or(now);
        if now.duration_since(since).unwrap_or_default() < RELEASE_PATIENCE {
            held.push(what);
        } else {
            tracing::warn!(cluster, object = %what, "not released after {} s: left behind, the compute is deleted", RELEASE_PATIENCE.as_secs());
        }
    };
    for service in items(kube, "/api/v1/services").await? {
        if service["spec"]["type"] != "LoadBalancer" {
            continue;
        }
        let (ns, name) = place(&service);
        if service["metadata"]["deletionTimestamp"].is_null() {
            delete(kube, &format!("/api/v1/namespaces/{ns}/services/{name}")).await?;
        }
        wait_for(&service, format!("Service {ns}/{name}"));
    }
    let claims = items(kube, "/api/v1/persistentvolumeclaims").await?;
    let pods = if claims.is_empty() {
        Vec::new()
    } else {
        items(kube, "/api/v1/pods").await?
    };
    for claim in claims {
        let (ns, name) = place(&claim);
        if claim["metadata"]["deletionTimestamp"].is_null() {
            delete(
                kube,
                &format!("/api/v1/namespaces/{ns}/persistentvolumeclaims/{name}"),
            )
            .await?;
        }
        // Every pod that mounts it, scheduled or not: a scheduled one keeps the claim
        // (its protection finalizer) until it is gone; one not yet scheduled does not
        // keep it (the protection counts only pods with a node), can never start on a
        // claim being deleted, and would keep it the moment it is scheduled.
        for pod in pods.iter().filter(|p| mounts_claim(p, &ns, &name)) {
            if pod["metadata"]["deletionTimestamp"].is_null() {
                let (_, pod_name) = place(pod);
                delete(kube, &format!("/api/v1/namespaces/{ns}/pods/{pod_name}")).await?;
            }
        }
        wait_for(&claim, format!("PersistentVolumeClaim {ns}/{name}"));
    }
    Ok(held)
}

/// Whether `pod` (of any phase or scheduling) mounts the claim `ns`/`name`.
fn mounts_claim(pod: &Value, ns: &str, name: &str) -> bool {
    pod["metadata"]["namespace"] == ns
        && pod["spec"]["volumes"].as_array().is_some_and(|v| {
            v.iter()
                .any(|v| v["persistentVolumeClaim"]["claimName"] == name)
        })
}

/// The items of a list.
async fn items(kube: &dyn KubeApi, path: &str) -> Result<Vec<Value>, TaskError> {
    let list = kube
        .send(KubeRequest::get(path), None)
        .await?
        .ok()?
        .json()?;
    Ok(list["items"].as_array().cloned().unwrap_or_default())
}

/// An object's namespace and name.
fn place(object: &Value) -> (String, String) {
    let field = |k: &str| {
        object["metadata"][k]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    (field("namespace"), field("name"))
}

/// Deletes an object; one already gone is fine.
async fn delete(kube: &dyn KubeApi, path: &str) -> Result<(), TaskError> {
    let answer = kube
        .send(
            KubeRequest::json(
                http::Method::DELETE,
                path,
                &json!({ "apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": "Background" }),
            ),
            None,
        )
        .await?;
    if answer.status == 404 {
        return Ok(());
    }
    answer.ok().map(|_| ())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::{Duration, SystemTime};

    use async_trait::async_trait;
    use serde_json::json;

    use super::{release, RELEASE_PATIENCE};
    use crate::contract::error::TaskError;
    use crate::contract::payload::ClusterRef;
    use crate::ports::cluster::Connector;
    use crate::ports::kube::{KubeApi, KubeRequest, KubeResponse, TransportError};
    use crate::testing::{answer, no_watch, WatchAnswer};

    /// A cluster holding one LoadBalancer Service whose deletion started at `since`.
    struct Held(SystemTime);

    #[async_trait]
    impl Connector for Held {
        async fn connect(&self, _c: &ClusterRef) -> Result<Arc<dyn KubeApi>, TaskError> {
            Ok(Arc::new(HeldKube(self.0)))
        }
    }

    struct HeldKube(SystemTime);

    #[async_trait]
    impl KubeApi for HeldKube {
        async fn send(
            &self,
            request: KubeRequest,
            _keep_tail: Option<usize>,
        ) -> Result<KubeResponse, TransportError> {
            let since = crate::contract::time::utc_seconds(self.0);
            Ok(match request.path.as_str() {
                "/api/v1/services" => answer(
                    200,
                    &json!({ "items": [{ "metadata": { "namespace": "shop", "name": "web", "deletionTimestamp": format!("{since}Z") }, "spec": { "type": "LoadBalancer" } }] }),
                ),
                _ => answer(200, &json!({ "items": [] })),
            })
        }

        async fn watch(&self, _request: KubeRequest) -> WatchAnswer {
            no_watch()
        }
    }

    /// A load balancer its controller never releases (the controller died with the
    /// nodes) holds the compute for [`RELEASE_PATIENCE`], then is left behind: a forced
    /// deletion never waits forever.
    #[tokio::test]
    async fn a_load_balancer_never_released_is_left_behind_after_the_patience() {
        let since = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let held = release(&Held(since), "c", since + Duration::from_secs(60)).await;
        assert_eq!(held.ok(), Some(vec!["Service shop/web".to_owned()]));
        let later = since + RELEASE_PATIENCE + Duration::from_secs(1);
        let held = release(&Held(since), "c", later).await;
        assert_eq!(held.ok(), Some(Vec::new()));
    }
}
