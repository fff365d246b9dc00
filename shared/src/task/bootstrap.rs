//! Granting the worker access to a cluster (`eks-task-worker bootstrap`): the preparation
//! steps of AWS Batch on EKS (a Kubernetes identity for the IAM role, a namespace, RBAC)
//! done for the worker in one go. The principal gets a Kubernetes
//! identity (an EKS access entry where the cluster's authentication mode has the API,
//! else an `aws-auth` mapping), and a namespace with a least-privilege Role (the verbs
//! on jobs, pods and pods/log the worker uses) bound to it.
//!
//! [`plan`] says what will be done (and is what `--dry-run` prints); [`apply`] does it,
//! idempotently.

use serde_json::{json, Value};

use crate::contract::error::{names, TaskError};
use crate::contract::payload;
use crate::ports::eks::AccessEntries;
use crate::ports::kube::{KubeApi, KubeRequest};

/// The rules of the worker's Role, one source for the command and the docs.
pub const ROLE_RULES: &str = include_str!("worker-role-rules.json");
/// The name of the Role the command creates (one per namespace; each principal's
/// RoleBinding is [`Grant::binding_name`]).
pub const ROLE_NAME: &str = "eks-task-worker";

/// A cluster's authentication mode (`accessConfig.authenticationMode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// Access entries only.
    Api,
    /// Access entries and the `aws-auth` ConfigMap.
    ApiAndConfigMap,
    /// The `aws-auth` ConfigMap only (also clusters that report no mode).
    ConfigMap,
}

impl AuthMode {
    /// The mode from its EKS name; unknown or absent means `CONFIG_MAP`.
    #[must_use]
    pub fn from_eks(name: Option<&str>) -> Self {
        match name {
            Some("API") => AuthMode::Api,
            Some("API_AND_CONFIG_MAP") => AuthMode::ApiAndConfigMap,
            _ => AuthMode::ConfigMap,
        }
    }
}

/// What to grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The cluster.
    pub cluster: String,
    /// The IAM principal (the worker's execution role) to grant.
    pub principal_arn: String,
    /// The namespace the worker runs Jobs in.
    pub namespace: String,
}

impl Grant {
    /// The Kubernetes user name the principal gets: its ARN, so RBAC subjects say who.
    #[must_use]
    pub fn username(&self) -> &str {
        &self.principal_arn
    }

    /// The principal's own RoleBinding: `eks-task-worker-<8 hex of its ARN's SHA-256>`,
    /// so that the stack's several roles, bootstrapped in one namespace, each keep theirs
    /// (one shared binding was replaced by each run: only the last role kept access).
    #[must_use]
    pub fn binding_name(&self) -> String {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(self.principal_arn.as_bytes());
        let short: String = digest.iter().take(4).map(|b| format!("{b:02x}")).collect();
        format!("{ROLE_NAME}-{short}")
    }
}

/// One step of a grant.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// `eks:CreateAccessEntry` for the principal, with its user name.
    CreateAccessEntry,
    /// Add the principal to `kube-system/aws-auth` (`mapRoles`, or `mapUsers` for a user).
    MapInAwsAuth,
    /// Create the namespace.
    CreateNamespace(Value),
    /// Create or replace the Role.
    ApplyRole(Value),
    /// Create or replace the RoleBinding.
    ApplyRoleBinding(Value),
}

impl Step {
    /// A line saying what the step does.
    #[must_use]
    pub fn describe(&self, grant: &Grant) -> String {
        match self {
            Step::CreateAccessEntry => format!(
                "create an EKS access entry on {} for {} with user name {}",
                grant.cluster,
                grant.principal_arn,
                grant.username()
            ),
            Step::MapInAwsAuth => format!(
                "map {} to user name {} in kube-system/aws-auth",
                grant.principal_arn,
                grant.username()
            ),
            Step::CreateNamespace(_) => format!("create namespace {}", grant.namespace),
            Step::ApplyRole(r) => {
                format!("apply Role {}/{ROLE_NAME}: {}", grant.namespace, r["rules"])
            }
            Step::ApplyRoleBinding(_) => format!(
                "bind Role {}/{ROLE_NAME} to user {}",
                grant.namespace,
                grant.username()
            ),
        }
    }
}

/// The steps for `grant` on a cluster in `mode`.
///
/// # Errors
/// `EksTaskWorker.InvalidInput` for a principal that is not an IAM role or user ARN, or
/// a namespace that is not a name.
pub fn plan(grant: &Grant, mode: AuthMode) -> Result<Vec<Step>, TaskError> {
    if !payload::is_iam_arn(&grant.principal_arn, &["role", "user"]) {
        return Err(TaskError::invalid_input(
            "--role-arn",
            "must be an IAM role (or user) ARN, arn:aws:iam::<account>:role/<name>",
        ));
    }
    if !payload::is_dns_label(&grant.namespace) {
        return Err(TaskError::invalid_input(
            "--namespace",
            "must be a namespace name (lowercase letters, digits and '-')",
        ));
    }
    let rules: Value = serde_json::from_str(ROLE_RULES)
        .map_err(|e| TaskError::message(names::INTERNAL, e.to_string()))?;
    let identity = match mode {
        AuthMode::Api | AuthMode::ApiAndConfigMap => Step::CreateAccessEntry,
        AuthMode::ConfigMap => Step::MapInAwsAuth,
    };
    Ok(vec![
        identity,
        Step::CreateNamespace(
            json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": grant.namespace } }),
        ),
        Step::ApplyRole(json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": { "name": ROLE_NAME, "namespace": grant.namespace, "labels": { "app.kubernetes.io/managed-by": "eks-task-worker" } },
            "rules": rules,
        })),
        Step::ApplyRoleBinding(json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": { "name": grant.binding_name(), "namespace": grant.namespace, "labels": { "app.kubernetes.io/managed-by": "eks-task-worker" } },
            "subjects": [{ "kind": "User", "name": grant.username(), "apiGroup": "rbac.authorization.k8s.io" }],
            "roleRef": { "kind": "Role", "name": ROLE_NAME, "apiGroup": "rbac.authorization.k8s.io" },
        })),
    ])
}

/// Creates `object`; when it exists, replaces it (`replace`) or leaves it as it is.
async fn create(
    kube: &dyn KubeApi,
    collection: &str,
    object: &Value,
    replace: bool,
) -> Result<&'static str, TaskError> {
    let r = kube
        .send(
            KubeRequest::json(http::Method::POST, collection, object),
            None,
        )
        .await?;
    if r.status != 409 {
        r.ok()?;
        return Ok("created");
    }
    if !replace {
        return Ok("already there");
    }
    let name = object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    kube.send(
        KubeRequest::json(http::Method::PUT, format!("{collection}/{name}"), object),
        None,
    )
    .await?
    .ok()?;
    Ok("replaced")
}

/// Adds the principal to the `aws-auth` ConfigMap (creating it when absent), keeping
/// every other mapping. Existing YAML is read; the result is written as JSON, which is
/// YAML too.
/// A role's ARN as `aws-auth` must name it: without its path
/// (`role/service-role/r` → `role/r`), for the authenticator matches the role a token's
/// assumed-role ARN names, which has none. Users' ARNs are kept as given.
fn aws_auth_arn(arn: &str) -> String {
    match arn.split_once(":role/") {
        Some((account, path)) => {
            format!("{account}:role/{}", path.rsplit('/').next().unwrap_or(path))
        }
        None => arn.to_owned(),
    }
}

async fn map_in_aws_auth(kube: &dyn KubeApi, grant: &Grant) -> Result<&'static str, TaskError> {
    let path = "/api/v1/namespaces/kube-system/configmaps/aws-auth";
    let key = if grant.principal_arn.contains(":user/") {
        ("mapUsers", "userarn")
    } else {
        ("mapRoles", "rolearn")
    };
    let current = kube.send(KubeRequest::get(path), None).await?;
    let (mut cm, exists) = if current.status == 404 {
        (
            json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": "aws-auth", "namespace": "kube-system" }, "data": {} }),
            false,
        )
    } else {
        (current.ok()?.json()?, true)
    };
    let text = cm
        .pointer(&format!("/data/{}", key.0))
        .and_then(Value::as_str)
        .unwrap_or("[]")
        .to_owned();
    let mut entries: Vec<Value> = serde_saphyr::from_str(&text).map_err(|e| {
        TaskError::message(
            names::INVALID_INPUT,
            format!("kube-system/aws-auth {} is not a YAML list: {e}", key.0),
        )
    })?;
    let arn = aws_auth_arn(&grant.principal_arn);
    if entries
        .iter()
        .any(|e| e.get(key.1).and_then(Value::as_str) == Some(arn.as_str()))
    {
        return Ok("already mapped");
    }
    entries.push(json!({ key.1: arn, "username": grant.username(), "groups": [] }));
    cm["data"][key.0] = Value::String(
        serde_json::to_string_pretty(&entries)
            .map_err(|e| TaskError::message(names::INTERNAL, e.to_string()))?,
    );
    let request = if exists {
        KubeRequest::json(http::Method::PUT, path, &cm)
    } else {
        KubeRequest::json(
            http::Method::POST,
            "/api/v1/namespaces/kube-system/configmaps",
            &cm,
        )
    };
    kube.send(request, None).await?.ok()?;
    Ok("mapped")
}

/// Carries out `steps`; returns a line per step saying what happened.
///
/// # Errors
/// The first step that fails.
pub async fn apply(
    steps: &[Step],
    grant: &Grant,
    eks: &dyn AccessEntries,
    kube: &dyn KubeApi,
) -> Result<Vec<String>, TaskError> {
    let mut done = Vec::new();
    for step in steps {
        let outcome = match step {
            Step::CreateAccessEntry => {
                eks.create_access_entry(&grant.cluster, &grant.principal_arn, grant.username())
                    .await?
            }
            Step::MapInAwsAuth => map_in_aws_auth(kube, grant).await?,
            Step::CreateNamespace(ns) => create(kube, "/api/v1/namespaces", ns, false).await?,
            Step::ApplyRole(role) => {
                create(
                    kube,
                    &format!(
                        "/apis/rbac.authorization.k8s.io/v1/namespaces/{}/roles",
                        grant.namespace
                    ),
                    role,
                    true,
                )
                .await?
            }
            Step::ApplyRoleBinding(b) => {
                create(
                    kube,
                    &format!(
                        "/apis/rbac.authorization.k8s.io/v1/namespaces/{}/rolebindings",
                        grant.namespace
                    ),
                    b,
                    true,
                )
                .await?
            }
        };
        done.push(format!("{}: {outcome}", step.describe(grant)));
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant() -> Grant {
        Grant {
            cluster: "c".into(),
            principal_arn: "arn:aws:iam::123456789012:role/worker".into(),
            namespace: "jobs".into(),
        }
    }

    #[test]
    fn the_mode_picks_the_identity_step() {
        assert_eq!(
            plan(&grant(), AuthMode::Api).map(|s| s[0].clone()).ok(),
            Some(Step::CreateAccessEntry)
        );
        assert_eq!(
            plan(&grant(), AuthMode::ApiAndConfigMap)
                .map(|s| s[0].clone())
                .ok(),
            Some(Step::CreateAccessEntry)
        );
        assert_eq!(
            plan(&grant(), AuthMode::ConfigMap)
                .map(|s| s[0].clone())
                .ok(),
            Some(Step::MapInAwsAuth)
        );
        assert_eq!(AuthMode::from_eks(None), AuthMode::ConfigMap);
    }

    #[test]
    fn the_role_is_least_privilege_and_bound_to_the_arn() {
        let steps = plan(&grant(), AuthMode::Api).unwrap_or_default();
        let Some(Step::ApplyRole(role)) = steps.get(2) else {
            panic!("no role step")
        };
        let verbs: Vec<&str> = role["rules"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|r| r["verbs"].as_array().into_iter().flatten())
            .filter_map(Value::as_str)
            .collect();
        assert!(
            !verbs.contains(&"*") && !verbs.contains(&"escalate") && !verbs.contains(&"update")
        );
        assert!(role["rules"]
            .as_array()
            .is_some_and(|r| r.iter().any(|x| x["resources"][0] == "pods/log")));
        let Some(Step::ApplyRoleBinding(b)) = steps.get(3) else {
            panic!("no binding step")
        };
        assert_eq!(
            b["subjects"][0]["name"],
            "arn:aws:iam::123456789012:role/worker"
        );
        // Each principal its own binding: a second role does not replace the first's.
        let mut other = grant();
        other.principal_arn = "arn:aws:iam::123456789012:role/poller".into();
        assert_ne!(b["metadata"]["name"], json!(other.binding_name()));
        assert_eq!(b["metadata"]["name"], json!(grant().binding_name()));
    }

    #[test]
    fn bad_principals_and_namespaces_are_named() {
        let mut g = grant();
        g.principal_arn = "arn:aws:sts::123456789012:assumed-role/x/y".into();
        assert_eq!(
            plan(&g, AuthMode::Api)
                .err()
                .map(|e| e.cause["field"].clone()),
            Some(json!("--role-arn"))
        );
        let mut g = grant();
        g.namespace = "Jobs!".into();
        assert_eq!(
            plan(&g, AuthMode::Api)
                .err()
                .map(|e| e.cause["field"].clone()),
            Some(json!("--namespace"))
        );
    }

    #[test]
    fn aws_auth_names_a_role_without_its_path() {
        assert_eq!(
            aws_auth_arn("arn:aws:iam::123456789012:role/service-role/worker"),
            "arn:aws:iam::123456789012:role/worker"
        );
        assert_eq!(
            aws_auth_arn("arn:aws:iam::123456789012:role/worker"),
            "arn:aws:iam::123456789012:role/worker"
        );
        assert_eq!(
            aws_auth_arn("arn:aws:iam::123456789012:user/team/alice"),
            "arn:aws:iam::123456789012:user/team/alice"
        );
    }
}
