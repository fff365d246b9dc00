//! The cleanup function: deletes the clusters an execution left behind (tagged by the
//! worker, older than the grace period, their execution no longer running).

use std::time::{Duration, SystemTime};

use serde_json::{json, Value};

use crate::contract::error::TaskError;
use crate::contract::tags::{self, CREATED_TAG, EXECUTION_TAG, RETAIN_TAG};
use crate::ports::cluster::Connector;
use crate::ports::eks::EksApi;
use crate::ports::executions::Executions;
use crate::task::force_delete::{advance_force_delete, Stage};

/// What one cleanup run does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// Only report.
    pub dry_run: bool,
    /// Clusters younger than this are left alone.
    pub grace: Duration,
}

fn created_at(cluster: &Value) -> Option<SystemTime> {
    if let Some(t) = tags::tag(cluster, CREATED_TAG)
        .and_then(|t| crate::contract::time::rfc3339(&Value::from(t)))
    {
        return Some(t);
    }
    // EKS gives createdAt as epoch seconds.
    cluster
        .get("createdAt")
        .and_then(Value::as_f64)
        .map(|s| SystemTime::UNIX_EPOCH + Duration::from_secs_f64(s.max(0.0)))
}

/// One cleanup run over every cluster of the account and region.
///
/// # Errors
/// When the clusters cannot be listed.
pub async fn run(
    eks: &dyn EksApi,
    connector: &dyn Connector,
    executions: &dyn Executions,
    options: Options,
    now: SystemTime,
) -> Result<Value, TaskError> {
    let mut names_seen = Vec::new();
    let mut next: Option<String> = None;
    loop {
        let path = next.as_ref().map_or_else(
            || "/clusters".to_owned(),
            |t| format!("/clusters?nextToken={t}"),
        );
        let page = eks
            .call(http::Method::GET, &path, None)
            .await
            .map_err(|e| e.task_error("ListClusters"))?;
        names_seen.extend(
            page["clusters"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter_map(|c| c.as_str().map(str::to_owned)),
        );
        next = page["nextToken"].as_str().map(str::to_owned);
        if next.is_none() {
            break;
        }
    }
    let (mut orphans, mut skipped, mut errors) = (Vec::new(), Vec::new(), Vec::new());
    for name in names_seen {
        let described = match eks
            .call(http::Method::GET, &format!("/clusters/{name}"), None)
            .await
        {
            Ok(d) => d,
            Err(e) if e.is_not_found() => continue,
            Err(e) => {
                let e = e.task_error("DescribeCluster");
                errors.push(json!({ "cluster": name, "error": e.name, "cause": e.cause }));
                continue;
            }
        };
        let cluster = &described["cluster"];
        let tag = |t: &str| tags::tag(cluster, t).map(str::to_owned);
        let skip = |reason: &str| json!({ "cluster": name, "reason": reason });
        if tags::owned(cluster, &name, None).is_err() {
            skipped.push(skip("not tagged by eks-task-worker"));
            continue;
        }
        if tag(RETAIN_TAG).is_some() {
            skipped.push(skip("retained"));
            continue;
        }
        let Some(owner) = tag(EXECUTION_TAG) else {
            skipped.push(skip("no owning execution tag"));
            continue;
        };
        let age = created_at(cluster)
            .and_then(|c| now.duration_since(c).ok())
            .unwrap_or_default();
        if age < options.grace {
            skipped.push(skip("younger than the grace period"));
            continue;
        }
        let status = match executions.status(&owner).await {
            Ok(s) => s,
            Err(e) => {
                errors.push(json!({ "cluster": name, "error": e.cause }));
                continue;
            }
        };
        if status.as_deref() == Some("RUNNING") {
            skipped.push(skip("its execution is still running"));
            continue;
        }
        let why = status.map_or_else(
            || "its execution does not exist".to_owned(),
            |s| format!("its execution is {s}"),
        );
        if options.dry_run {
            orphans.push(json!({ "cluster": name, "execution": owner, "why": why, "action": "would delete (dry run)" }));
            continue;
        }
        let action = match advance_force_delete(eks, connector, &name, &owner, now).await {
            Ok(Stage::Done(_)) => "deleted".to_owned(),
            Ok(Stage::Pending(what)) => what,
            Err(e) => {
                errors.push(json!({ "cluster": name, "error": e.cause }));
                continue;
            }
        };
        tracing::info!(cluster = %name, execution = %owner, action = %action, "orphaned cluster");
        orphans.push(json!({ "cluster": name, "execution": owner, "why": why, "action": action }));
    }
    Ok(
        json!({ "dryRun": options.dry_run, "orphans": orphans, "skipped": skipped, "errors": errors }),
    )
}
