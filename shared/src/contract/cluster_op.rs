//! A cluster operation's payload: `eks:createCluster`, `eks:deleteCluster`,
//! `eks:createNodegroup`, `eks:deleteNodegroup`, `eks:createFargateProfile`,
//! `eks:deleteFargateProfile` with the native (PascalCase) request fields, parsed and
//! checked once, and turned into the EKS REST request.

use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::contract::error::TaskError;
use crate::contract::payload::{self, callback_token};
use crate::contract::tags::{
    task_label, CREATED_TAG, EXECUTION_TAG, MANAGED_BY, MANAGED_TAG, TASK_LABEL, WORKER_TAGS,
};

/// A cluster operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Operation {
    /// `createCluster`.
    CreateCluster,
    /// `deleteCluster`.
    DeleteCluster,
    /// `createNodegroup`.
    CreateNodegroup,
    /// `deleteNodegroup`.
    DeleteNodegroup,
    /// `createFargateProfile`.
    CreateFargateProfile,
    /// `deleteFargateProfile`.
    DeleteFargateProfile,
}

impl Operation {
    /// The operation a payload's `Operation` names (`createCluster`, …).
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        serde_json::from_value(Value::String(s.to_owned())).ok()
    }
    /// Whether the operation creates a resource (and so tags it).
    #[must_use]
    pub fn is_create(self) -> bool {
        matches!(
            self,
            Operation::CreateCluster | Operation::CreateNodegroup | Operation::CreateFargateProfile
        )
    }
    /// The field of the EKS response that holds the resource.
    pub fn resource_field(self) -> &'static str {
        match self {
            Operation::CreateCluster | Operation::DeleteCluster => "cluster",
            Operation::CreateNodegroup | Operation::DeleteNodegroup => "nodegroup",
            Operation::CreateFargateProfile | Operation::DeleteFargateProfile => "fargateProfile",
        }
    }
}

fn string_field<'a>(fields: &'a Map<String, Value>, name: &str) -> Result<&'a str, TaskError> {
    match fields.get(name) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s),
        Some(_) => Err(TaskError::invalid_input(name, "must be a non-empty string")),
        None => Err(TaskError::invalid_input(name, "is required")),
    }
}

/// A parsed cluster-operation payload.
#[derive(Debug, Clone, PartialEq)]
pub struct OpInput {
    /// The operation.
    pub operation: Operation,
    /// The cluster.
    pub cluster_name: String,
    /// The nodegroup or Fargate profile.
    pub resource_name: Option<String>,
    /// The EKS request body (camelCase), for creates.
    pub body: Value,
    /// `ForceDeleteCompute`.
    pub force_delete_compute: bool,
    /// `TaskToken`.
    pub task_token: Option<String>,
    /// `ExecutionArn`: tags what a create makes; a delete acts only on what it tagged.
    pub execution: Option<String>,
    /// `WaitForCompletion` ([`payload::wait_for_completion`]): answer once ACTIVE or
    /// gone (`.sync`), or with EKS's answer to the start.
    pub wait_for_completion: bool,
}

/// The execution a forced delete (`ForceDeleteCompute`) belongs to: required, for a
/// forced delete releases and deletes, in the first invocation and in every poll after
/// it, only what its own execution made (the cluster's execution tag).
///
/// # Errors
/// `EksTaskWorker.InvalidInput` on `ExecutionArn` when there is none.
pub fn forced_by(execution: Option<&str>) -> Result<&str, TaskError> {
    execution.ok_or_else(|| {
        TaskError::invalid_input(
            "ExecutionArn",
            "is required with ForceDeleteCompute: a forced delete takes only what its own \
            execution made; pass \"ExecutionArn.$\": \"$$.Execution.Id\"",
        )
    })
}

/// Parses a cluster-operation payload: `Operation` plus the native request fields, and
/// the worker's own `ExecutionArn` (owner tag), `ForceDeleteCompute` and `TaskToken`.
///
/// # Errors
/// `EksTaskWorker.InvalidInput` naming the field.
pub fn parse(payload: &Value, now: SystemTime) -> Result<OpInput, TaskError> {
    let fields = payload
        .as_object()
        .ok_or_else(|| TaskError::invalid_input("$", "must be a JSON object"))?;
    let op_name = string_field(fields, "Operation")?;
    let operation = Operation::parse(op_name).ok_or_else(|| {
        TaskError::invalid_input(
            "Operation",
            format!(
                "{op_name:?} is not one of createCluster, deleteCluster, createNodegroup, \
            deleteNodegroup, createFargateProfile, deleteFargateProfile"
            ),
        )
    })?;
    let (cluster_field, resource_field) = match operation {
        Operation::CreateCluster | Operation::DeleteCluster => ("Name", None),
        Operation::CreateNodegroup | Operation::DeleteNodegroup => {
            ("ClusterName", Some("NodegroupName"))
        }
        Operation::CreateFargateProfile | Operation::DeleteFargateProfile => {
            ("ClusterName", Some("FargateProfileName"))
        }
    };
    let cluster_name = string_field(fields, cluster_field)?.to_owned();
    payload::eks_name(cluster_field, &cluster_name, 100)?;
    let resource_name = resource_field
        .map(|f| {
            let name = string_field(fields, f)?;
            payload::eks_name(f, name, 63).map(|()| name.to_owned())
        })
        .transpose()?;
    let force_delete_compute = match fields.get("ForceDeleteCompute") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) if operation == Operation::DeleteCluster => *b,
        Some(Value::Bool(_)) => {
            return Err(TaskError::invalid_input(
                "ForceDeleteCompute",
                "applies to deleteCluster only",
            ))
        }
        Some(_) => {
            return Err(TaskError::invalid_input(
                "ForceDeleteCompute",
                "must be true or false",
            ))
        }
    };
    let task_token = callback_token(payload);
    let execution = crate::contract::payload::execution_arn(fields)?;
    if force_delete_compute {
        forced_by(execution.as_deref())?;
    }
    let mut request: Map<String, Value> = fields
        .iter()
        .filter(|(k, _)| {
            let own = [
                "Operation",
                "ForceDeleteCompute",
                "TaskToken",
                "ExecutionArn",
                "WaitForCompletion",
                cluster_field,
            ]
            .contains(&k.as_str());
            let named = !operation.is_create() && Some(k.as_str()) == resource_field;
            (!own && !named) || (operation == Operation::CreateCluster && k.as_str() == "Name")
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if operation.is_create() {
        let tags = request.entry("Tags").or_insert_with(|| json!({}));
        let tags = tags
            .as_object_mut()
            .filter(|t| t.values().all(Value::is_string))
            .ok_or_else(|| TaskError::invalid_input("Tags", "must be a map of string to string"))?;
        // The marks ownership is read from are the worker's to write: a payload's own
        // execution or task tag would let a create claim another execution's or task's
        // place (a forced delete bound to that execution, a create's poll of that task).
        if let Some(k) = WORKER_TAGS.iter().find(|k| tags.contains_key(**k)) {
            return Err(TaskError::invalid_input(
                "Tags",
                format!("{k} is the worker's own tag, written by the worker alone"),
            ));
        }
        tags.insert(MANAGED_TAG.into(), json!(MANAGED_BY));
        let created = time::OffsetDateTime::from(now)
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        tags.insert(CREATED_TAG.into(), json!(created));
        if let Some(e) = &execution {
            tags.insert(EXECUTION_TAG.into(), json!(e));
        }
        // One resource per task: EKS's idempotency token, and a tag the worker reads
        // when a repeated delivery meets its own create (ResourceInUseException).
        if let Some(token) = &task_token {
            let key = task_label(token);
            tags.insert(TASK_LABEL.into(), json!(key));
            request
                .entry("ClientRequestToken")
                .or_insert_with(|| json!(key));
        }
    } else if let Some(k) = request.keys().next() {
        return Err(TaskError::invalid_input(
            k,
            format!("is not a parameter of {op_name}"),
        ));
    }
    check_fields(&request)?;
    Ok(OpInput {
        operation,
        cluster_name,
        resource_name,
        body: camel_case(&Value::Object(request)),
        force_delete_compute,
        task_token,
        execution,
        wait_for_completion: payload::wait_for_completion(fields)?,
    })
}

/// The checks EKS would make late, made early with the field's name: role ARNs are IAM
/// role ARNs, subnet lists are non-empty lists of strings.
fn check_fields(request: &Map<String, Value>) -> Result<(), TaskError> {
    for role in ["RoleArn", "NodeRole", "PodExecutionRoleArn"] {
        if let Some(v) = request.get(role) {
            payload::role_arn(role, v.as_str().unwrap_or_default())?;
        }
    }
    let subnets = [
        ("Subnets", request.get("Subnets")),
        (
            "ResourcesVpcConfig.SubnetIds",
            request
                .get("ResourcesVpcConfig")
                .and_then(|c| c.get("SubnetIds")),
        ),
    ];
    for (field, v) in subnets {
        if let Some(v) = v {
            let ok = v.as_array().is_some_and(|a| {
                !a.is_empty() && a.iter().all(|s| s.as_str().is_some_and(|s| !s.is_empty()))
            });
            if !ok {
                return Err(TaskError::invalid_input(
                    field,
                    "must be a non-empty list of subnet IDs",
                ));
            }
        }
    }
    Ok(())
}

/// The EKS REST path of the operation's resource (its collection for a create).
#[must_use]
pub fn resource_path(operation: Operation, cluster: &str, resource: Option<&str>) -> String {
    match (operation, resource) {
        (Operation::CreateNodegroup | Operation::DeleteNodegroup, Some(r)) => {
            format!("/clusters/{cluster}/node-groups/{r}")
        }
        (Operation::CreateFargateProfile | Operation::DeleteFargateProfile, Some(r)) => {
            format!("/clusters/{cluster}/fargate-profiles/{r}")
        }
        _ => format!("/clusters/{cluster}"),
    }
}

/// Fields whose value is a map of user keys (kept as written).
/// The fields whose value is a map of the user's own keys (`tags`, `labels`): their keys
/// are kept as written, whatever the case of the rest.
const MAP_FIELDS: [&str; 3] = ["tags", "labels", "configurationValues"];

/// The native integration's PascalCase request fields in the API's camelCase
/// (`ResourcesVpcConfig.SubnetIds` → `resourcesVpcConfig.subnetIds`), map values such
/// as `Tags` and `Labels` kept as written.
#[must_use]
pub fn camel_case(v: &Value) -> Value {
    recase(v, &|k| first_char(k, char::to_lowercase))
}

/// An EKS API response as Step Functions' EKS integration returns it to a state:
/// PascalCase keys throughout (`cluster.certificateAuthority.data` →
/// `Cluster.CertificateAuthority.Data`), map values such as `tags` and `labels` kept as
/// written.
#[must_use]
pub fn pascal_case(v: &Value) -> Value {
    recase(v, &|k| first_char(k, char::to_uppercase))
}

/// `v` with every key recased by `case`, except inside the user's maps.
fn recase(v: &Value, case: &dyn Fn(&str) -> String) -> Value {
    match v {
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, x)| {
                    let value = if MAP_FIELDS.contains(&first_char(k, char::to_lowercase).as_str())
                    {
                        x.clone()
                    } else {
                        recase(x, case)
                    };
                    (case(k), value)
                })
                .collect::<Map<String, Value>>(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(|x| recase(x, case)).collect()),
        other => other.clone(),
    }
}

fn first_char<I: Iterator<Item = char>>(k: &str, case: fn(char) -> I) -> String {
    let mut c = k.chars();
    c.next()
        .map(|f| case(f).chain(c).collect())
        .unwrap_or_default()
}

/// What a `.sync` delete answers once the resource is gone: the resource named as EKS
/// describes it (`name`, or `nodegroupName`/`fargateProfileName` with `clusterName`),
/// with the status `DELETED`, under the operation's resource field.
#[must_use]
pub fn deleted(operation: Operation, cluster: &str, resource: Option<&str>) -> Value {
    let field = operation.resource_field();
    let body = match (operation, resource) {
        (Operation::DeleteNodegroup | Operation::CreateNodegroup, Some(r)) => {
            json!({ "nodegroupName": r, "clusterName": cluster, "status": "DELETED" })
        }
        (Operation::DeleteFargateProfile | Operation::CreateFargateProfile, Some(r)) => {
            json!({ "fargateProfileName": r, "clusterName": cluster, "status": "DELETED" })
        }
        _ => json!({ "name": cluster, "status": "DELETED" }),
    };
    json!({ field: body })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_become_pascal_case_but_tags_and_labels_keep_their_keys() {
        let api = json!({ "cluster": { "name": "c", "certificateAuthority": { "data": "LS0t" }, "resourcesVpcConfig": { "subnetIds": ["s"] }, "tags": { "team": "x", "eks-task-worker.io/managed-by": "eks-task-worker" } }, "nodegroup": { "labels": { "tier": "batch" }, "health": { "issues": [{ "code": "c", "resourceIds": ["i"] }] } } });
        assert_eq!(
            pascal_case(&api),
            json!({ "Cluster": { "Name": "c", "CertificateAuthority": { "Data": "LS0t" }, "ResourcesVpcConfig": { "SubnetIds": ["s"] }, "Tags": { "team": "x", "eks-task-worker.io/managed-by": "eks-task-worker" } }, "Nodegroup": { "Labels": { "tier": "batch" }, "Health": { "Issues": [{ "Code": "c", "ResourceIds": ["i"] }] } } })
        );
        assert_eq!(camel_case(&pascal_case(&api)), api);
    }

    #[test]
    fn a_name_must_be_a_non_empty_string() {
        for (name, cause) in [
            (json!(""), "must be a non-empty string"),
            (json!(7), "must be a non-empty string"),
            (Value::Null, "must be a non-empty string"),
        ] {
            let payload = json!({ "Operation": "deleteCluster", "Name": name });
            let e = parse(&payload, SystemTime::UNIX_EPOCH).err();
            assert!(
                e.as_ref()
                    .is_some_and(|e| e.name == crate::contract::error::names::INVALID_INPUT
                        && e.cause.to_string().contains(cause)),
                "{payload}: {e:?}"
            );
        }
        let e = parse(
            &json!({ "Operation": "deleteCluster" }),
            SystemTime::UNIX_EPOCH,
        )
        .err();
        assert!(e.is_some_and(|e| e.cause.to_string().contains("is required")));
    }

    #[test]
    fn a_deleted_resource_is_named_as_eks_names_it() {
        assert_eq!(
            pascal_case(&deleted(Operation::DeleteNodegroup, "c", Some("n"))),
            json!({ "Nodegroup": { "NodegroupName": "n", "ClusterName": "c", "Status": "DELETED" } })
        );
        assert_eq!(
            pascal_case(&deleted(Operation::DeleteFargateProfile, "c", Some("f"))),
            json!({ "FargateProfile": { "FargateProfileName": "f", "ClusterName": "c", "Status": "DELETED" } })
        );
        assert_eq!(
            pascal_case(&deleted(Operation::DeleteCluster, "c", None)),
            json!({ "Cluster": { "Name": "c", "Status": "DELETED" } })
        );
    }

    #[test]
    fn pascal_case_fields_become_camel_case_but_tags_keep_their_keys() {
        let native = json!({ "Name": "c", "ResourcesVpcConfig": { "SubnetIds": ["s"] }, "Tags": { "Team": "x" }, "Selectors": [{ "Namespace": "n", "Labels": { "App": "a" } }] });
        assert_eq!(
            camel_case(&native),
            json!({ "name": "c", "resourcesVpcConfig": { "subnetIds": ["s"] }, "tags": { "Team": "x" }, "selectors": [{ "namespace": "n", "labels": { "App": "a" } }] })
        );
    }

    /// A create's Tags may not carry the marks ownership is read from (a cluster of
    /// another execution's, a nodegroup of another task's, claimed by a tag); the retain
    /// tag and a user's own are kept.
    #[test]
    fn a_creates_tags_may_not_claim_the_workers_marks() {
        for key in [MANAGED_TAG, EXECUTION_TAG, CREATED_TAG, TASK_LABEL] {
            for payload in [
                json!({ "Operation": "createCluster", "Name": "c", "RoleArn": "arn:aws:iam::1:role/r", "ResourcesVpcConfig": {}, "Tags": { key: "x" } }),
                json!({ "Operation": "createNodegroup", "ClusterName": "c", "NodegroupName": "n", "Tags": { "Team": "a", key: "x" }, "TaskToken": "t" }),
            ] {
                let e = parse(&payload, SystemTime::UNIX_EPOCH).err();
                assert_eq!(
                    e.as_ref().map(|e| e.name.as_str()),
                    Some(crate::contract::error::names::INVALID_INPUT),
                    "{payload}"
                );
                assert!(
                    e.is_some_and(|e| e.cause.to_string().contains(key)),
                    "{payload}"
                );
            }
        }
        let kept = parse(
            &json!({ "Operation": "createCluster", "Name": "c", "RoleArn": "arn:aws:iam::1:role/r", "ResourcesVpcConfig": {}, "Tags": { crate::contract::tags::RETAIN_TAG: "yes", "Team": "a" }, "TaskToken": "t" }),
            SystemTime::UNIX_EPOCH,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(kept.body["tags"][crate::contract::tags::RETAIN_TAG], "yes");
        assert_eq!(kept.body["tags"][TASK_LABEL], task_label("t"));
    }
}
