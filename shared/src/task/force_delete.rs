//! `deleteCluster` with `ForceDeleteCompute`: the cluster's nodegroups first (together),
//! then its Fargate profiles (one at a time: EKS refuses parallel Fargate deletes), then
//! the cluster; only what the worker made.

use serde_json::Value;

use crate::contract::cluster_op::{deleted, Operation};
use crate::contract::error::TaskError;
use crate::contract::tags::owned;
use crate::ports::eks::{eks_failure, EksApi};

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
