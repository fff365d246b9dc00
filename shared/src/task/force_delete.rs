//! `deleteCluster` with `ForceDeleteCompute`: first what would outlive the cluster in its
//! VPC (the load balancers of `LoadBalancer` Services, the volumes of
//! PersistentVolumeClaims: their controllers run on the compute, so they are released
//! while it still runs), then the cluster's nodegroups (together), then its Fargate
//! profiles (one at a time: EKS refuses parallel Fargate deletes), then the cluster;
//! only what the worker made.

use serde_json::{json, Value};

use crate::contract::cluster_op::{deleted, Operation};
use crate::contract::error::TaskError;
use crate::contract::payload::ClusterRef;
use crate::contract::tags::owned;
use crate::ports::cluster::Connector;
use crate::ports::eks::{eks_failure, EksApi};
use crate::ports::kube::{KubeApi, KubeRequest};

/// The most names a waiting message lists.
const MAX_NAMED: usize = 10;

/// How a cluster operation stands.
#[derive(Debug, Clone, PartialEq)]
pub enum Stage {
    /// Finished: the answer.
    Done(Value),
    /// Still going; what it waits for.
    Pending(String),
}

/// Moves a forced cluster deletion on, idempotently: nodegroups are deleted together,
/// Fargate profiles one at a time, then the cluster. (The cluster is looked at first:
/// besides saving calls, moto answers 500 to listing the nodegroups of a cluster that
/// is gone.) Nothing is deleted unless the cluster, and each nodegroup and Fargate
/// profile in it, is the worker's ([`owned`]; of `execution` when one is named).
///
/// # Errors
/// `EksTaskWorker.NotOwned`; EKS errors other than "already gone" or "already
/// deleting".
pub async fn advance_force_delete(
    eks: &dyn EksApi,
    connector: &dyn Connector,
    cluster: &str,
    execution: Option<&str>,
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
    let gone = || Stage::Done(deleted(Operation::DeleteCluster, cluster, None));
    match eks
        .call(http::Method::GET, &format!("/clusters/{cluster}"), None)
        .await
    {
        Err(e) if e.is_not_found() => return Ok(gone()),
        Ok(d) => {
            owned(&d["cluster"], &format!("the cluster {cluster}"), execution)?;
            if d["cluster"]["status"] == "DELETING" {
                return Ok(Stage::Pending("the cluster is deleting".into()));
            }
        }
        Err(e) => return Err(fail(e)),
    }
    match release(connector, cluster).await {
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
        Err(e) if matches!(e.kubernetes_status_code(), Some(401 | 403)) => {
            tracing::warn!(cluster, error = %e, "the worker may not list the cluster's Services and PersistentVolumeClaims: their load balancers and volumes are not released before the compute goes (see the README, 'Clusters the worker creates')");
        }
        Err(e) => return Err(e),
    }
    let nodegroups = list(format!("/clusters/{cluster}/node-groups"), "nodegroups")
        .await
        .map_err(&fail)?;
    for ng in &nodegroups {
        let path = format!("/clusters/{cluster}/node-groups/{ng}");
        match eks.call(http::Method::GET, &path, None).await {
            Ok(d) => {
                owned(
                    &d["nodegroup"],
                    &format!("the nodegroup {cluster}/{ng}"),
                    None,
                )?;
                if d["nodegroup"]["status"] != "DELETING" {
                    match eks.call(http::Method::DELETE, &path, None).await {
                        Ok(_) => {}
                        Err(e) if e.is_not_found() || e.is_in_use() => {}
                        Err(e) => return Err(fail(e)),
                    }
                }
            }
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(fail(e)),
        }
    }
    let profiles = list(
        format!("/clusters/{cluster}/fargate-profiles"),
        "fargateProfileNames",
    )
    .await
    .map_err(&fail)?;
    let mut deleting_profile = false;
    for fp in &profiles {
        let d = eks
            .call(
                http::Method::GET,
                &format!("/clusters/{cluster}/fargate-profiles/{fp}"),
                None,
            )
            .await;
        // Nothing is deleted that was not looked at and found the worker's.
        match d {
            Ok(v) => {
                owned(
                    &v["fargateProfile"],
                    &format!("the Fargate profile {cluster}/{fp}"),
                    None,
                )?;
                deleting_profile |= v["fargateProfile"]["status"] == "DELETING";
            }
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(fail(e)),
        }
    }
    if let (Some(fp), false) = (profiles.first(), deleting_profile) {
        match eks
            .call(
                http::Method::DELETE,
                &format!("/clusters/{cluster}/fargate-profiles/{fp}"),
                None,
            )
            .await
        {
            Ok(_) => {}
            Err(e) if e.is_not_found() || e.is_in_use() => {}
            Err(e) => return Err(fail(e)),
        }
    }
    if !nodegroups.is_empty() || !profiles.is_empty() {
        return Ok(Stage::Pending(format!(
            "deleting {} nodegroup(s) and {} Fargate profile(s)",
            nodegroups.len(),
            profiles.len()
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

/// Deletes the cluster's `LoadBalancer` Services and PersistentVolumeClaims (a claim
/// still held by the pods that mount it: those pods), and names each that is still
/// there. Idempotent: what is already being deleted is only waited for.
///
/// # Errors
/// The API server's refusal (`EKS.403` when the worker may not list them), transport.
async fn release(connector: &dyn Connector, cluster: &str) -> Result<Vec<String>, TaskError> {
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
    for service in items(kube, "/api/v1/services").await? {
        if service["spec"]["type"] != "LoadBalancer" {
            continue;
        }
        let (ns, name) = place(&service);
        if service["metadata"]["deletionTimestamp"].is_null() {
            delete(kube, &format!("/api/v1/namespaces/{ns}/services/{name}")).await?;
        }
        held.push(format!("Service {ns}/{name}"));
    }
    for claim in items(kube, "/api/v1/persistentvolumeclaims").await? {
        let (ns, name) = place(&claim);
        if claim["metadata"]["deletionTimestamp"].is_null() {
            delete(
                kube,
                &format!("/api/v1/namespaces/{ns}/persistentvolumeclaims/{name}"),
            )
            .await?;
        } else {
            // Kept by its protection finalizer while a pod mounts it.
            for pod in items(kube, &format!("/api/v1/namespaces/{ns}/pods")).await? {
                let mounts = pod["spec"]["volumes"].as_array().is_some_and(|v| {
                    v.iter()
                        .any(|v| v["persistentVolumeClaim"]["claimName"] == name.as_str())
                });
                if mounts && pod["metadata"]["deletionTimestamp"].is_null() {
                    let (_, pod_name) = place(&pod);
                    delete(kube, &format!("/api/v1/namespaces/{ns}/pods/{pod_name}")).await?;
                }
            }
        }
        held.push(format!("PersistentVolumeClaim {ns}/{name}"));
    }
    Ok(held)
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
