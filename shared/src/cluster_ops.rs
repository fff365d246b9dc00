//! Cluster operations: `eks:createCluster`, `eks:deleteCluster`, `eks:createNodegroup`,
//! `eks:deleteNodegroup`, `eks:createFargateProfile`, `eks:deleteFargateProfile`, with
//! the native request fields, request/response or `.sync` (callback: answered once the
//! resource is ACTIVE, or gone). What the worker creates carries ownership tags, so the
//! cleanup function can find what an execution left behind. `deleteCluster` with
//! `ForceDeleteCompute` first deletes the cluster's nodegroups (together) and Fargate
//! profiles (one at a time: EKS refuses parallel Fargate deletes).

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use crate::curve::PollCurve;
use crate::deps::Deps;
use crate::eks_api::{camel_case, EksApi, EksError};
use crate::error::{names, TaskError};
use crate::handoff::NextPoll;
use crate::run_job::{callback_token, respond};

/// The tag that marks what the worker created.
pub const MANAGED_TAG: &str = "eks-task-worker.io/managed-by";
/// The tag naming the execution that owns a resource.
pub const EXECUTION_TAG: &str = "eks-task-worker.io/execution";
/// The tag with the creation time (RFC 3339).
pub const CREATED_TAG: &str = "eks-task-worker.io/created-at";
/// The ownership tag's value.
pub const MANAGED_BY: &str = "eks-task-worker";
/// A cluster with this tag is never cleaned up.
pub const RETAIN_TAG: &str = "eks-task-worker.io/retain";
/// How long an invocation follows an operation before handing it to the poller.
const INLINE_FOLLOW: Duration = Duration::from_secs(20);

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
    fn parse(s: &str) -> Option<Self> {
        serde_json::from_value(Value::String(s.to_owned())).ok()
    }
    fn is_create(self) -> bool {
        matches!(
            self,
            Operation::CreateCluster | Operation::CreateNodegroup | Operation::CreateFargateProfile
        )
    }
    /// The field of the EKS response that holds the resource.
    fn resource_field(self) -> &'static str {
        match self {
            Operation::CreateCluster | Operation::DeleteCluster => "cluster",
            Operation::CreateNodegroup | Operation::DeleteNodegroup => "nodegroup",
            Operation::CreateFargateProfile | Operation::DeleteFargateProfile => "fargateProfile",
        }
    }
}

/// What a `.sync` cluster operation's poller needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ClusterPoll {
    /// The operation.
    pub operation: Operation,
    /// The cluster.
    pub cluster_name: String,
    /// The nodegroup or Fargate profile, for their operations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_name: Option<String>,
    /// `ForceDeleteCompute`, for deleteCluster.
    #[serde(default)]
    pub force_delete_compute: bool,
    /// The task token.
    pub task_token: String,
    /// Polls made so far.
    pub attempt: u32,
    /// Seconds until the next poll.
    pub next_delay_seconds: u64,
    /// The poll curve.
    #[serde(default)]
    pub curve: PollCurve,
    /// The execution the payload named (`ExecutionArn`): the resource must carry it in
    /// its execution tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution: Option<String>,
}

impl ClusterPoll {
    /// The poll this state asks for.
    ///
    /// # Errors
    /// `EksTaskWorker.InternalError` when the state does not serialize.
    pub fn next_poll(&self) -> Result<NextPoll, TaskError> {
        let input = serde_json::to_string(self)
            .map_err(|e| TaskError::message(names::INTERNAL, e.to_string()))?;
        let digest = Sha256::digest(format!(
            "{:?}/{}/{:?}/{}",
            self.operation, self.cluster_name, self.resource_name, self.task_token
        ));
        let key = digest.iter().take(18).map(|b| format!("{b:02x}")).collect();
        Ok(NextPoll {
            key,
            attempt: self.attempt,
            delay_seconds: self.next_delay_seconds,
            input,
        })
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
        TaskError::invalid_input("Operation", format!("{op_name:?} is not one of createCluster, deleteCluster, createNodegroup, deleteNodegroup, createFargateProfile, deleteFargateProfile"))
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
    let resource_name = resource_field
        .map(|f| string_field(fields, f).map(str::to_owned))
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
    let execution = crate::input::execution_arn(fields)?;
    let mut request: Map<String, Value> = fields
        .iter()
        .filter(|(k, _)| {
            let own = [
                "Operation",
                "ForceDeleteCompute",
                "TaskToken",
                "ExecutionArn",
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
        tags.insert(MANAGED_TAG.into(), json!(MANAGED_BY));
        let created = time::OffsetDateTime::from(now)
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        tags.insert(CREATED_TAG.into(), json!(created));
        if let Some(e) = &execution {
            tags.insert(EXECUTION_TAG.into(), json!(e));
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
    })
}

/// The tags of a described resource (`cluster`, `nodegroup` or `fargateProfile`).
fn tag<'a>(resource: &'a Value, key: &str) -> Option<&'a str> {
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

/// The checks EKS would make late, made early with the field's name: role ARNs are IAM
/// role ARNs, subnet lists are non-empty lists of strings.
fn check_fields(request: &Map<String, Value>) -> Result<(), TaskError> {
    for role in ["RoleArn", "NodeRole", "PodExecutionRoleArn"] {
        if let Some(v) = request.get(role) {
            let ok = v.as_str().is_some_and(|a| {
                a.starts_with("arn:aws")
                    && a.split(':').nth(2) == Some("iam")
                    && a.split(':')
                        .nth(5)
                        .is_some_and(|r| r.starts_with("role/") && r.len() > 5)
            });
            if !ok {
                return Err(TaskError::invalid_input(
                    role,
                    "must be an IAM role ARN, arn:aws:iam::<account>:role/<name>",
                ));
            }
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

fn resource_path(operation: Operation, cluster: &str, resource: Option<&str>) -> String {
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

fn eks_failure(op: &str) -> impl Fn(Result<EksError, TaskError>) -> TaskError + '_ {
    move |e| match e {
        Ok(eks) => eks.task_error(op),
        Err(t) => t,
    }
}

/// How a resource is named in messages: `cluster c`, `nodegroup c/n`, `Fargate profile c/f`.
fn describe_name(operation: Operation, cluster: &str, resource: Option<&str>) -> String {
    match (operation.resource_field(), resource) {
        ("nodegroup", Some(r)) => format!("the nodegroup {cluster}/{r}"),
        ("fargateProfile", Some(r)) => format!("the Fargate profile {cluster}/{r}"),
        _ => format!("the cluster {cluster}"),
    }
}

/// Starts the operation: the EKS call, returning its response. A delete first checks
/// that the worker owns the resource ([`owned`]).
async fn start(eks: &dyn EksApi, input: &OpInput) -> Result<Value, TaskError> {
    let (method, path, body) = match input.operation {
        Operation::CreateCluster => (
            http::Method::POST,
            "/clusters".to_owned(),
            Some(&input.body),
        ),
        Operation::CreateNodegroup => (
            http::Method::POST,
            format!("/clusters/{}/node-groups", input.cluster_name),
            Some(&input.body),
        ),
        Operation::CreateFargateProfile => (
            http::Method::POST,
            format!("/clusters/{}/fargate-profiles", input.cluster_name),
            Some(&input.body),
        ),
        op => {
            let path = resource_path(op, &input.cluster_name, input.resource_name.as_deref());
            let described = eks
                .call(http::Method::GET, &path, None)
                .await
                .map_err(eks_failure(&format!("{op:?}")))?;
            owned(
                &described[op.resource_field()],
                &describe_name(op, &input.cluster_name, input.resource_name.as_deref()),
                input.execution.as_deref(),
            )?;
            (http::Method::DELETE, path, None)
        }
    };
    eks.call(method, &path, body)
        .await
        .map_err(eks_failure(&format!("{:?}", input.operation)))
}

/// How an operation stands.
#[derive(Debug, Clone, PartialEq)]
pub enum Progress {
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
) -> Result<Progress, TaskError> {
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
            Err(Ok(e)) if e.is_not_found() => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    };
    let gone = || Progress::Done(json!({ "cluster": { "name": cluster, "status": "DELETED" } }));
    match eks
        .call(http::Method::GET, &format!("/clusters/{cluster}"), None)
        .await
    {
        Err(Ok(e)) if e.is_not_found() => return Ok(gone()),
        Ok(d) => {
            owned(&d["cluster"], &format!("the cluster {cluster}"), execution)?;
            if d["cluster"]["status"] == "DELETING" {
                return Ok(Progress::Pending("the cluster is deleting".into()));
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
                        Err(Ok(e)) if e.is_not_found() || e.kind.contains("ResourceInUse") => {}
                        Err(e) => return Err(fail(e)),
                    }
                }
            }
            Err(Ok(e)) if e.is_not_found() => {}
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
            Err(Ok(e)) if e.is_not_found() => {}
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
            Err(Ok(e)) if e.is_not_found() || e.kind.contains("ResourceInUse") => {}
            Err(e) => return Err(fail(e)),
        }
    }
    if !nodegroups.is_empty() || !profiles.is_empty() {
        return Ok(Progress::Pending(format!(
            "deleting {} nodegroup(s) and {} Fargate profile(s)",
            nodegroups.len(),
            profiles.len()
        )));
    }
    match eks
        .call(http::Method::DELETE, &format!("/clusters/{cluster}"), None)
        .await
    {
        Ok(_) => Ok(Progress::Pending("the cluster is deleting".into())),
        Err(Ok(e)) if e.is_not_found() => Ok(gone()),
        Err(e) => Err(fail(e)),
    }
}

/// Where a `.sync` operation stands: ACTIVE for creates, gone for deletes; a failed
/// resource is `EksTaskWorker.ClusterOperationFailed`.
///
/// # Errors
/// `EksTaskWorker.ClusterOperationFailed`, EKS errors.
pub async fn check(eks: &dyn EksApi, poll: &ClusterPoll) -> Result<Progress, TaskError> {
    if poll.operation == Operation::DeleteCluster && poll.force_delete_compute {
        return advance_force_delete(eks, &poll.cluster_name, poll.execution.as_deref()).await;
    }
    let field = poll.operation.resource_field();
    let path = resource_path(
        poll.operation,
        &poll.cluster_name,
        poll.resource_name.as_deref(),
    );
    let name = poll
        .resource_name
        .clone()
        .unwrap_or_else(|| poll.cluster_name.clone());
    match eks.call(http::Method::GET, &path, None).await {
        Err(Ok(e)) if e.is_not_found() && !poll.operation.is_create() => Ok(Progress::Done(
            json!({ field: { "name": name, "status": "DELETED" } }),
        )),
        Err(e) => Err(eks_failure("describe")(e)),
        Ok(d) => {
            owned(
                &d[field],
                &describe_name(
                    poll.operation,
                    &poll.cluster_name,
                    poll.resource_name.as_deref(),
                ),
                poll.execution.as_deref(),
            )?;
            let status = d[field]["status"].as_str().unwrap_or_default().to_owned();
            match status.as_str() {
                "ACTIVE" if poll.operation.is_create() => Ok(Progress::Done(d)),
                "FAILED" | "CREATE_FAILED" | "DELETE_FAILED" | "DEGRADED" => Err(TaskError::new(
                    names::CLUSTER_OPERATION_FAILED,
                    json!({ "message": format!("{name} is {status}"), "status": status, "health": d[field]["health"].clone(), field: d[field].clone() }),
                )),
                _ => Ok(Progress::Pending(format!("{name} is {status}"))),
            }
        }
    }
}

/// Follows the operation for up to [`INLINE_FOLLOW`] (never past the deadline).
async fn follow(
    eks: &dyn EksApi,
    poll: &ClusterPoll,
    deps: &Deps,
    deadline: Option<SystemTime>,
) -> Result<Progress, TaskError> {
    let mut until = deps.clock.now() + INLINE_FOLLOW;
    if let Some(d) = deadline {
        until = until.min(d.checked_sub(deps.settings.lambda_margin).unwrap_or(until));
    }
    loop {
        let progress = check(eks, poll).await?;
        if matches!(progress, Progress::Done(_)) || deps.clock.now() >= until {
            return Ok(progress);
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// Handles one cluster-operation payload.
///
/// # Errors
/// Request/response: the task error. Callback: only when Step Functions cannot be told.
pub async fn handle(
    payload: Value,
    eks: &dyn EksApi,
    deps: &Deps,
    deadline: Option<SystemTime>,
) -> Result<Value, TaskError> {
    let span = crate::telemetry::payload_span(&payload);
    tracing::Instrument::instrument(
        async {
            let token = callback_token(&payload);
            let answer = run(&payload, eks, deps, deadline).await;
            match (token, answer) {
                (None, Ok(Some(v))) => Ok(v),
                (None, Ok(None)) => Err(TaskError::message(names::INTERNAL, "no answer")),
                (None, Err(e)) => Err(e),
                (Some(t), Ok(Some(v))) => respond(deps, &t, Ok(v)).await,
                (Some(_), Ok(None)) => Ok(json!({ "handedOff": true })),
                (Some(t), Err(e)) => respond(deps, &t, Err(e)).await,
            }
        },
        span,
    )
    .await
}

/// `Some(answer)`, or `None` when handed to the poller.
async fn run(
    payload: &Value,
    eks: &dyn EksApi,
    deps: &Deps,
    deadline: Option<SystemTime>,
) -> Result<Option<Value>, TaskError> {
    let input = parse(payload, deps.clock.now())?;
    let forced = input.operation == Operation::DeleteCluster && input.force_delete_compute;
    let response = if forced {
        Value::Null
    } else {
        start(eks, &input).await?
    };
    let poll = ClusterPoll {
        operation: input.operation,
        cluster_name: input.cluster_name.clone(),
        resource_name: input.resource_name.clone(),
        force_delete_compute: input.force_delete_compute,
        task_token: input.task_token.clone().unwrap_or_default(),
        attempt: 0,
        next_delay_seconds: deps.settings.poll_curve.delay(0),
        curve: deps.settings.poll_curve.clone(),
        execution: input.execution.clone(),
    };
    if input.task_token.is_none() && !forced {
        return Ok(Some(response));
    }
    match follow(eks, &poll, deps, deadline).await? {
        Progress::Done(v) => Ok(Some(if forced || input.operation.is_create() || !response.is_object() { v } else { response })),
        Progress::Pending(what) if input.task_token.is_none() => Err(TaskError::message(
            names::CLUSTER_OPERATION_FAILED,
            format!("deleting {} with ForceDeleteCompute did not finish within the invocation ({what}); use the callback pattern (.sync) for long deletions", input.cluster_name),
        )),
        Progress::Pending(_) => {
            deps.hand_off(&poll.next_poll()?).await?;
            Ok(None)
        }
    }
}

/// One poll of a `.sync` cluster operation (called by the poller).
///
/// # Errors
/// Only when neither an answer nor the next schedule could be arranged.
pub async fn poll(state: ClusterPoll, eks: &dyn EksApi, deps: &Deps) -> Result<Value, TaskError> {
    use crate::callback::{with_retries, CallbackError};
    state.check_bounds()?;
    // Looked at first, read only: a poll state that names something the worker does not
    // own is refused before anything is sent (no heartbeat, no answer, no delete).
    if let Err(e) = look_owned(eks, &state).await {
        if e.name == names::NOT_OWNED {
            tracing::warn!(error = %e, "refused a cluster poll for a resource the worker does not own");
            return Err(e);
        }
    }
    // Then the heartbeat: only a live task moves a deletion on (a forged state with a
    // made-up token stops here).
    if let Err(CallbackError::TaskGone { code, .. }) =
        with_retries(|| deps.callback.heartbeat(&state.task_token)).await
    {
        return Ok(json!({ "taskGone": code, "cluster": state.cluster_name }));
    }
    match check(eks, &state).await {
        Ok(Progress::Done(v)) => respond(deps, &state.task_token, Ok(v)).await,
        Err(e) if e.name == names::CLUSTER_OPERATION_FAILED => {
            respond(deps, &state.task_token, Err(e)).await
        }
        other => {
            if let Err(e) = &other {
                tracing::warn!(error = %e, "cluster poll failed; the next one is scheduled");
            }
            let attempt = state.attempt + 1;
            let next = ClusterPoll {
                attempt,
                next_delay_seconds: state.curve.delay(attempt),
                ..state
            };
            deps.hand_off(&next.next_poll()?).await?;
            Ok(json!({ "nextPoll": { "attempt": attempt, "inSeconds": next.next_delay_seconds } }))
        }
    }
}

/// The resource a poll is about, described and checked ([`owned`]) without changing
/// anything; a resource already gone is fine.
async fn look_owned(eks: &dyn EksApi, poll: &ClusterPoll) -> Result<(), TaskError> {
    let operation = if poll.force_delete_compute {
        Operation::DeleteCluster
    } else {
        poll.operation
    };
    let resource = if poll.force_delete_compute {
        None
    } else {
        poll.resource_name.as_deref()
    };
    match eks
        .call(
            http::Method::GET,
            &resource_path(operation, &poll.cluster_name, resource),
            None,
        )
        .await
    {
        Ok(d) => owned(
            &d[operation.resource_field()],
            &describe_name(operation, &poll.cluster_name, resource),
            poll.execution.as_deref(),
        ),
        Err(Ok(e)) if e.is_not_found() => Ok(()),
        Err(e) => Err(eks_failure("describe")(e)),
    }
}

impl ClusterPoll {
    /// Checks every field of a cluster poll state as a payload's would be checked: the
    /// names, the token, the execution, the curve and the attempt.
    ///
    /// # Errors
    /// `EksTaskWorker.InvalidInput` naming the field.
    pub fn check_bounds(&self) -> Result<(), TaskError> {
        let mut fields = Map::new();
        fields.insert("ClusterName".into(), json!(self.cluster_name));
        if let Some(e) = &self.execution {
            fields.insert("ExecutionArn".into(), json!(e));
        }
        crate::input::cluster_ref(&fields)?;
        crate::input::execution_arn(&fields)?;
        if let Some(r) = &self.resource_name {
            let mut named = Map::new();
            named.insert("ClusterName".into(), json!(r));
            crate::input::cluster_ref(&named).map_err(|_| {
                TaskError::invalid_input(
                    "ResourceName",
                    "must be 1-100 characters of letters, digits, '-' and '_'",
                )
            })?;
        }
        crate::handoff::check_poll_bounds(
            &self.task_token,
            &self.curve,
            self.attempt,
            self.next_delay_seconds,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_cluster_payloads_become_eks_requests_with_ownership_tags() {
        let p = json!({ "Operation": "createCluster", "Name": "c", "RoleArn": "arn:aws:iam::1:role/r", "ResourcesVpcConfig": { "SubnetIds": ["s"] }, "Tags": { "Team": "x" }, "ExecutionArn": "arn:aws:states:us-east-1:1:execution:m:e" });
        let i = parse(&p, SystemTime::UNIX_EPOCH).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(i.body["name"], "c");
        assert_eq!(i.body["resourcesVpcConfig"]["subnetIds"][0], "s");
        assert_eq!(i.body["tags"]["Team"], "x");
        assert_eq!(
            i.body["tags"][EXECUTION_TAG],
            "arn:aws:states:us-east-1:1:execution:m:e"
        );
        assert_eq!(i.body["tags"][CREATED_TAG], "1970-01-01T00:00:00Z");
        assert_eq!(i.body["tags"][MANAGED_TAG], "eks-task-worker");
    }

    #[test]
    fn bad_payloads_are_named() {
        let field = |p: Value| {
            parse(&p, SystemTime::UNIX_EPOCH)
                .err()
                .map(|e| e.cause["field"].clone())
        };
        assert_eq!(
            field(json!({ "Operation": "makeCluster", "Name": "c" })),
            Some(json!("Operation"))
        );
        assert_eq!(
            field(json!({ "Operation": "createNodegroup", "ClusterName": "c" })),
            Some(json!("NodegroupName"))
        );
        assert_eq!(
            field(json!({ "Operation": "deleteCluster", "Name": "c", "Extra": 1 })),
            Some(json!("Extra"))
        );
        assert_eq!(
            field(
                json!({ "Operation": "deleteNodegroup", "ClusterName": "c", "NodegroupName": "n" })
            ),
            None
        );
        assert_eq!(
            field(
                json!({ "Operation": "deleteNodegroup", "ClusterName": "c", "NodegroupName": "n", "ForceDeleteCompute": true })
            ),
            Some(json!("ForceDeleteCompute"))
        );
        assert_eq!(
            field(json!({ "Operation": "createCluster", "Name": "c", "ExecutionArn": "x" })),
            Some(json!("ExecutionArn"))
        );
        assert_eq!(
            field(json!({ "Operation": "createCluster", "Name": "c", "Tags": [] })),
            Some(json!("Tags"))
        );
        assert_eq!(
            field(json!({ "Operation": "createCluster" })),
            Some(json!("Name"))
        );
        assert_eq!(
            field(
                json!({ "Operation": "createCluster", "Name": "c", "RoleArn": "arn:aws:iam::1:user/u" })
            ),
            Some(json!("RoleArn"))
        );
        assert_eq!(
            field(
                json!({ "Operation": "createCluster", "Name": "c", "ResourcesVpcConfig": { "SubnetIds": [] } })
            ),
            Some(json!("ResourcesVpcConfig.SubnetIds"))
        );
        assert_eq!(
            field(
                json!({ "Operation": "createNodegroup", "ClusterName": "c", "NodegroupName": "n", "Subnets": [""] })
            ),
            Some(json!("Subnets"))
        );
        assert_eq!(
            field(
                json!({ "Operation": "createFargateProfile", "ClusterName": "c", "FargateProfileName": "f", "PodExecutionRoleArn": "nope" })
            ),
            Some(json!("PodExecutionRoleArn"))
        );
        assert_eq!(field(json!([])), Some(json!("$")));
    }

    /// An EKS double: each path answers from a script of responses, the last repeating;
    /// every call is recorded.
    struct Scripted {
        answers: std::sync::Mutex<std::collections::HashMap<String, Vec<Result<Value, EksError>>>>,
        calls: std::sync::Mutex<Vec<String>>,
    }

    impl Scripted {
        fn new(script: &[(&str, Vec<Result<Value, EksError>>)]) -> Self {
            Self {
                answers: std::sync::Mutex::new(
                    script
                        .iter()
                        .map(|(k, v)| ((*k).to_owned(), v.clone()))
                        .collect(),
                ),
                calls: std::sync::Mutex::new(Vec::new()),
            }
        }
        fn calls(&self) -> Vec<String> {
            self.calls.lock().map(|c| c.clone()).unwrap_or_default()
        }
    }

    /// The tags of a resource the worker made.
    fn ours() -> Value {
        json!({ MANAGED_TAG: MANAGED_BY })
    }

    fn not_found() -> Result<Value, EksError> {
        Err(EksError {
            status: 404,
            kind: "ResourceNotFoundException".into(),
            message: "gone".into(),
        })
    }

    #[async_trait::async_trait]
    impl EksApi for Scripted {
        async fn call(
            &self,
            method: http::Method,
            path: &str,
            _body: Option<&Value>,
        ) -> Result<Value, Result<EksError, TaskError>> {
            let key = format!("{method} {path}");
            if let Ok(mut c) = self.calls.lock() {
                c.push(key.clone());
            }
            let mut answers = self
                .answers
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let script = answers
                .get_mut(&key)
                .unwrap_or_else(|| panic!("unscripted {key}"));
            let answer = if script.len() > 1 {
                script.remove(0)
            } else {
                script[0].clone()
            };
            answer.map_err(Ok)
        }
    }

    fn poll(operation: Operation, resource: Option<&str>) -> ClusterPoll {
        ClusterPoll {
            operation,
            cluster_name: "c".into(),
            resource_name: resource.map(str::to_owned),
            force_delete_compute: false,
            task_token: "t".into(),
            attempt: 0,
            next_delay_seconds: 60,
            curve: PollCurve::default(),
            execution: None,
        }
    }

    #[tokio::test]
    async fn creating_is_pending_until_active_and_failed_is_an_error() {
        let eks = Scripted::new(&[(
            "GET /clusters/c",
            vec![
                Ok(json!({ "cluster": { "tags": ours(), "status": "CREATING" } })),
                Ok(json!({ "cluster": { "tags": ours(), "status": "ACTIVE", "name": "c" } })),
            ],
        )]);
        let p = poll(Operation::CreateCluster, None);
        assert!(matches!(check(&eks, &p).await, Ok(Progress::Pending(_))));
        assert!(
            matches!(check(&eks, &p).await, Ok(Progress::Done(v)) if v["cluster"]["name"] == "c")
        );
        let failed = Scripted::new(&[(
            "GET /clusters/c/node-groups/n",
            vec![Ok(
                json!({ "nodegroup": { "tags": ours(), "status": "CREATE_FAILED", "health": { "issues": [{ "code": "Ec2SubnetInvalidConfiguration" }] } } }),
            )],
        )]);
        let e = check(&failed, &poll(Operation::CreateNodegroup, Some("n")))
            .await
            .err()
            .unwrap_or_else(|| panic!("CREATE_FAILED is an error"));
        assert_eq!(e.name, names::CLUSTER_OPERATION_FAILED);
        assert_eq!(
            e.cause["health"]["issues"][0]["code"],
            "Ec2SubnetInvalidConfiguration"
        );
    }

    #[tokio::test]
    async fn deleting_is_pending_until_gone() {
        let eks = Scripted::new(&[(
            "GET /clusters/c/fargate-profiles/f",
            vec![
                Ok(json!({ "fargateProfile": { "tags": ours(), "status": "DELETING" } })),
                not_found(),
            ],
        )]);
        let p = poll(Operation::DeleteFargateProfile, Some("f"));
        assert!(matches!(check(&eks, &p).await, Ok(Progress::Pending(_))));
        assert!(
            matches!(check(&eks, &p).await, Ok(Progress::Done(v)) if v["fargateProfile"]["status"] == "DELETED")
        );
    }

    #[tokio::test]
    async fn a_forced_delete_takes_fargate_profiles_one_at_a_time() {
        let eks = Scripted::new(&[
            (
                "GET /clusters/c",
                vec![Ok(
                    json!({ "cluster": { "tags": ours(), "status": "ACTIVE" } }),
                )],
            ),
            (
                "GET /clusters/c/node-groups",
                vec![
                    Ok(json!({ "nodegroups": ["a", "b"] })),
                    Ok(json!({ "nodegroups": [] })),
                ],
            ),
            (
                "GET /clusters/c/node-groups/a",
                vec![Ok(
                    json!({ "nodegroup": { "tags": ours(), "status": "ACTIVE" } }),
                )],
            ),
            (
                "GET /clusters/c/node-groups/b",
                vec![Ok(
                    json!({ "nodegroup": { "tags": ours(), "status": "DELETING" } }),
                )],
            ),
            ("DELETE /clusters/c/node-groups/a", vec![Ok(json!({}))]),
            (
                "GET /clusters/c/fargate-profiles",
                vec![
                    Ok(json!({ "fargateProfileNames": ["f1", "f2"] })),
                    Ok(json!({ "fargateProfileNames": ["f1", "f2"] })),
                ],
            ),
            (
                "GET /clusters/c/fargate-profiles/f1",
                vec![
                    Ok(json!({ "fargateProfile": { "tags": ours(), "status": "ACTIVE" } })),
                    Ok(json!({ "fargateProfile": { "tags": ours(), "status": "DELETING" } })),
                ],
            ),
            (
                "GET /clusters/c/fargate-profiles/f2",
                vec![Ok(
                    json!({ "fargateProfile": { "tags": ours(), "status": "ACTIVE" } }),
                )],
            ),
            (
                "DELETE /clusters/c/fargate-profiles/f1",
                vec![Ok(json!({}))],
            ),
        ]);
        assert!(matches!(
            advance_force_delete(&eks, "c", None).await,
            Ok(Progress::Pending(_))
        ));
        let calls = eks.calls();
        assert!(
            calls.contains(&"DELETE /clusters/c/node-groups/a".to_owned()),
            "{calls:?}"
        );
        assert!(
            !calls.contains(&"DELETE /clusters/c/node-groups/b".to_owned()),
            "b is already deleting"
        );
        assert_eq!(
            calls
                .iter()
                .filter(|c| c.starts_with("DELETE /clusters/c/fargate-profiles/"))
                .count(),
            1,
            "one Fargate profile at a time"
        );
        // Next round: f1 is DELETING, so f2 waits; the cluster is not deleted yet.
        assert!(matches!(
            advance_force_delete(&eks, "c", None).await,
            Ok(Progress::Pending(_))
        ));
        let calls = eks.calls();
        assert_eq!(
            calls
                .iter()
                .filter(|c| c.starts_with("DELETE /clusters/c/fargate-profiles/"))
                .count(),
            1,
            "{calls:?}"
        );
        assert!(!calls.contains(&"DELETE /clusters/c".to_owned()));
    }

    #[tokio::test]
    async fn nothing_the_worker_did_not_make_is_deleted() {
        let foreign =
            || Ok(json!({ "cluster": { "status": "ACTIVE", "tags": { "team": "other" } } }));
        let eks = Scripted::new(&[("GET /clusters/c", vec![foreign()])]);
        let e = advance_force_delete(&eks, "c", None)
            .await
            .err()
            .map(|e| e.name);
        assert_eq!(e.as_deref(), Some(names::NOT_OWNED));
        assert_eq!(
            eks.calls(),
            vec!["GET /clusters/c".to_owned()],
            "nothing but a look"
        );
        // A function's delete: refused before the DELETE.
        let input = parse(
            &json!({ "Operation": "deleteCluster", "Name": "c" }),
            SystemTime::UNIX_EPOCH,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let e = start(&eks, &input).await.err().map(|e| e.name);
        assert_eq!(e.as_deref(), Some(names::NOT_OWNED));
        assert!(!eks.calls().iter().any(|c| c.starts_with("DELETE")));
        // Ours, but another execution's: refused when the payload names its execution.
        let other = Scripted::new(&[(
            "GET /clusters/c/node-groups/n",
            vec![Ok(
                json!({ "nodegroup": { "status": "ACTIVE", "tags": { MANAGED_TAG: MANAGED_BY, EXECUTION_TAG: "arn:aws:states:us-east-1:1:execution:m:other" } } }),
            )],
        )]);
        let input = parse(&json!({ "Operation": "deleteNodegroup", "ClusterName": "c", "NodegroupName": "n", "ExecutionArn": "arn:aws:states:us-east-1:1:execution:m:mine" }), SystemTime::UNIX_EPOCH)
            .unwrap_or_else(|e| panic!("{e}"));
        let e = start(&other, &input).await.err();
        assert_eq!(
            e.as_ref().map(|e| e.name.as_str()),
            Some(names::NOT_OWNED),
            "{e:?}"
        );
        // A nodegroup someone else put in the worker's cluster stops a forced delete.
        let mixed = Scripted::new(&[
            (
                "GET /clusters/c",
                vec![Ok(
                    json!({ "cluster": { "tags": ours(), "status": "ACTIVE" } }),
                )],
            ),
            (
                "GET /clusters/c/node-groups",
                vec![Ok(json!({ "nodegroups": ["theirs"] }))],
            ),
            (
                "GET /clusters/c/node-groups/theirs",
                vec![Ok(json!({ "nodegroup": { "status": "ACTIVE" } }))],
            ),
        ]);
        let e = advance_force_delete(&mixed, "c", None)
            .await
            .err()
            .map(|e| e.name);
        assert_eq!(e.as_deref(), Some(names::NOT_OWNED));
        assert!(!mixed.calls().iter().any(|c| c.starts_with("DELETE")));
    }

    #[test]
    fn cluster_polls_have_stable_schedule_keys() {
        let p = ClusterPoll {
            operation: Operation::DeleteCluster,
            cluster_name: "c".into(),
            resource_name: None,
            force_delete_compute: true,
            task_token: "t".repeat(2048),
            attempt: 3,
            next_delay_seconds: 60,
            curve: PollCurve::default(),
            execution: Some("arn:aws:states:us-east-1:1:execution:m:e".into()),
        };
        let a = p.next_poll().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(a.key, p.next_poll().map(|n| n.key).unwrap_or_default());
        assert!(a.input.len() < crate::handoff::MAX_SCHEDULE_INPUT_CHARS);
        let back: ClusterPoll = serde_json::from_str(&a.input).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back, p);
    }
}
