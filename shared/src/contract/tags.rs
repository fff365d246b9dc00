//! The marks the worker puts on what it creates, and the ownership rule that reads them:
//! the task label on Jobs, the managed-by and execution tags on EKS resources.

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::contract::error::{names, TaskError};

/// The tag that marks what the worker created.
pub const MANAGED_TAG: &str = "eks-task-worker.io/managed-by";
/// The tag naming the execution that owns a resource.
pub const EXECUTION_TAG: &str = "eks-task-worker.io/execution";
/// The tag with the creation time (RFC 3339).
pub const CREATED_TAG: &str = "eks-task-worker.io/created-at";
/// The ownership tag's value.
pub const MANAGED_BY: &str = "eks-task-worker";
/// The tags only the worker writes (a payload naming one is refused): ownership is
/// read from them.
pub const WORKER_TAGS: [&str; 4] = [MANAGED_TAG, EXECUTION_TAG, CREATED_TAG, TASK_LABEL];
/// A cluster with this tag is never cleaned up.
pub const RETAIN_TAG: &str = "eks-task-worker.io/retain";

/// The value of the tag `key` of a described resource (`cluster`, `nodegroup` or
/// `fargateProfile`).
#[must_use]
pub fn tag<'a>(resource: &'a Value, key: &str) -> Option<&'a str> {
    resource
        .get("tags")
        .and_then(|t| t.get(key))
        .and_then(Value::as_str)
}

/// Whether the worker may delete or follow `resource` (as DescribeCluster,
/// DescribeNodegroup or DescribeFargateProfile give it): it carries the worker's
/// ownership tag and, when an execution is named, that execution's tag.
///
/// # Errors
/// `EksTaskWorker.NotOwned`, saying what is missing.
pub fn owned(resource: &Value, what: &str, execution: Option<&str>) -> Result<(), TaskError> {
    let refuse = |why: String| {
        Err(TaskError::new(
            names::NOT_OWNED,
            json!({ "message": format!("{what} {why}; the worker deletes and follows only what it created"), "resource": what, "tags": resource.get("tags").cloned().unwrap_or(Value::Null) }),
        ))
    };
    if tag(resource, MANAGED_TAG) != Some(MANAGED_BY) {
        return refuse(format!(
            "was not created by eks-task-worker (no {MANAGED_TAG}={MANAGED_BY} tag)"
        ));
    }
    if let Some(execution) = execution {
        if tag(resource, EXECUTION_TAG) != Some(execution) {
            return refuse(format!(
                "was not created by the execution {execution} (its {EXECUTION_TAG} tag is {:?})",
                tag(resource, EXECUTION_TAG).unwrap_or("missing")
            ));
        }
    }
    Ok(())
}

/// Whether `resource` (a described cluster, nodegroup or Fargate profile) is the one a
/// create of this task made: the worker tags every resource it creates for a task token
/// with [`TASK_LABEL`], the hash of that token. A create's poll follows, and lets the
/// worker into, only its own task's resource, never one another task made under the
/// same name.
///
/// # Errors
/// `EksTaskWorker.NotOwned`, naming the tag found.
pub fn made_for_task(resource: &Value, what: &str, task_token: &str) -> Result<(), TaskError> {
    let want = task_label(task_token);
    if tag(resource, TASK_LABEL) == Some(want.as_str()) {
        return Ok(());
    }
    Err(TaskError::new(
        names::NOT_OWNED,
        json!({ "message": format!("{what} was not created by this task (its {TASK_LABEL} tag is {:?}); a create's poll follows only its own task's resource", tag(resource, TASK_LABEL).unwrap_or("missing")), "resource": what }),
    ))
}

/// The label that marks a Job created for one task token (a hash of the token), and the
/// tag that marks a cluster, nodegroup or Fargate profile created for one.
pub const TASK_LABEL: &str = "eks-task-worker.io/task";
/// The label that marks everything the worker creates.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";

/// The label value for a task token: 40 hex characters of its SHA-256.
#[must_use]
pub fn task_label(task_token: &str) -> String {
    let digest = Sha256::digest(task_token.as_bytes());
    digest.iter().take(20).map(|b| format!("{b:02x}")).collect()
}
