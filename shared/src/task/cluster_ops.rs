//! The cluster-operations function: starts the operation a payload names (parsed and
//! tagged in `contract::cluster_op`), then answers request/response at once, or `.sync`
//! once the resource is ACTIVE or gone: followed within the invocation for a while,
//! then by the poller ([`poll`]). A forced `deleteCluster` is moved on by
//! `task::force_delete`. Nothing is followed or deleted that the worker did not make.

use std::time::{Duration, SystemTime};

use serde_json::{json, Value};

use crate::config::cluster_access::WorkerAccess;
use crate::contract::cluster_op::{deleted, parse, pascal_case, resource_path, OpInput, Operation};
use crate::contract::error::{names, TaskError};
use crate::contract::payload::callback_token;
use crate::contract::poll_state::ClusterPoll;
use crate::contract::tags::{made_for_task, owned, tag, task_label, TASK_LABEL};
use crate::ports::cluster::Connector;
use crate::ports::eks::{eks_failure, EksApi};
use crate::task::answer::{deliver, heartbeat_taken, send_answer};
use crate::task::cadence::CLUSTER_FOLLOW_INLINE;
use crate::task::cluster_access::{ask_for_access_entries, grant};
use crate::task::deps::Deps;
use crate::task::force_delete::{advance_force_delete, Stage};
use crate::task::retry::is_transient;

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
async fn start(
    eks: &dyn EksApi,
    input: &OpInput,
    access: &WorkerAccess,
) -> Result<Value, TaskError> {
    let mut cluster_body = input.body.clone();
    ask_for_access_entries(&mut cluster_body, access);
    let (method, path, body) = match input.operation {
        Operation::CreateCluster => (
            http::Method::POST,
            "/clusters".to_owned(),
            Some(&cluster_body),
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
    match eks.call(method, &path, body).await {
        Err(e) if e.is_in_use() && input.operation.is_create() => {
            // A repeated delivery of this task (a lost answer, a Lambda retry) meets
            // its own create: the resource carries the task's tag, and is followed.
            match own_create(eks, input).await {
                Some(described) => Ok(described),
                None => Err(eks_failure(&format!("{:?}", input.operation))(e)),
            }
        }
        other => other.map_err(eks_failure(&format!("{:?}", input.operation))),
    }
}

/// The resource a create names, when this task created it (its task tag): the
/// describe, in the create response's shape.
async fn own_create(eks: &dyn EksApi, input: &OpInput) -> Option<Value> {
    let token = input.task_token.as_deref()?;
    let path = resource_path(
        input.operation,
        &input.cluster_name,
        input.resource_name.as_deref(),
    );
    let described = eks.call(http::Method::GET, &path, None).await.ok()?;
    let resource = &described[input.operation.resource_field()];
    (tag(resource, TASK_LABEL) == Some(task_label(token).as_str())).then(|| {
        tracing::info!(resource = %path, "adopted the resource this task already created");
        described.clone()
    })
}

/// Where a `.sync` operation stands: ACTIVE for creates, gone for deletes; a failed
/// resource is `EksTaskWorker.ClusterOperationFailed`. A cluster the worker created is
/// done once the worker's roles are let in ([`grant`]).
///
/// # Errors
/// `EksTaskWorker.ClusterOperationFailed`, EKS errors.
pub async fn check(
    eks: &dyn EksApi,
    connector: &dyn Connector,
    poll: &ClusterPoll,
    access: &WorkerAccess,
    now: SystemTime,
) -> Result<Stage, TaskError> {
    if poll.operation == Operation::DeleteCluster && poll.force_delete_compute {
        return advance_force_delete(
            eks,
            connector,
            &poll.cluster_name,
            crate::contract::cluster_op::forced_by(poll.execution.as_deref())?,
            now,
        )
        .await;
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
        Err(e) if e.is_not_found() && !poll.operation.is_create() => Ok(Stage::Done(deleted(
            poll.operation,
            &poll.cluster_name,
            poll.resource_name.as_deref(),
        ))),
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
                "ACTIVE" if poll.operation == Operation::CreateCluster => {
                    grant(eks, &poll.cluster_name, &d, access).await?;
                    Ok(Stage::Done(d))
                }
                "ACTIVE" if poll.operation.is_create() => Ok(Stage::Done(d)),
                "FAILED" | "CREATE_FAILED" | "DELETE_FAILED" | "DEGRADED" => Err(TaskError::new(
                    names::CLUSTER_OPERATION_FAILED,
                    json!({ "message": format!("{name} is {status}"), "status": status, "health": d[field]["health"].clone(), field: d[field].clone() }),
                )),
                _ => Ok(Stage::Pending(format!("{name} is {status}"))),
            }
        }
    }
}

/// Follows the operation for up to [`CLUSTER_FOLLOW_INLINE`] (never past the deadline).
async fn follow(
    eks: &dyn EksApi,
    poll: &ClusterPoll,
    deps: &Deps,
    deadline: Option<SystemTime>,
) -> Result<Stage, TaskError> {
    let mut until = deps.clock.now() + CLUSTER_FOLLOW_INLINE;
    if let Some(d) = deadline {
        until = until.min(d.checked_sub(deps.settings.lambda_margin).unwrap_or(until));
    }
    loop {
        let progress = check(
            eks,
            deps.connector.as_ref(),
            poll,
            &deps.settings.cluster_access,
            deps.clock.now(),
        )
        .await?;
        if matches!(progress, Stage::Done(_)) || deps.clock.now() >= until {
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
    deps: &Deps,
    deadline: Option<SystemTime>,
) -> Result<Value, TaskError> {
    let span = crate::task::telemetry::payload_span(&payload);
    tracing::Instrument::instrument(
        async {
            let token = callback_token(&payload);
            let answer = match run(&payload, deps.eks.as_ref(), deps, deadline).await {
                Ok(Some(v)) => Ok(pascal_case(&v)),
                Ok(None) if token.is_some() => return Ok(json!({ "handedOff": true })),
                Ok(None) => Err(TaskError::message(names::INTERNAL, "no answer")),
                Err(e) => Err(e),
            };
            deliver(deps, token.as_deref(), answer).await
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
        start(eks, &input, &deps.settings.cluster_access).await?
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
    if !input.wait_for_completion && !forced {
        return Ok(Some(response));
    }
    match follow(eks, &poll, deps, deadline).await? {
        Stage::Done(v) => Ok(Some(v)),
        Stage::Pending(what) if !input.wait_for_completion => Err(TaskError::message(
            names::CLUSTER_OPERATION_FAILED,
            format!(
                "deleting {} with ForceDeleteCompute did not finish within the invocation \
                ({what}); use the callback pattern (.sync) for long deletions",
                input.cluster_name
            ),
        )),
        Stage::Pending(_) => {
            deps.hand_off(&poll.next_poll()?).await?;
            Ok(None)
        }
    }
}

/// One poll of a `.sync` cluster operation (called by the poller).
///
/// # Errors
/// Only when neither an answer nor the next schedule could be arranged.
pub async fn poll(state: ClusterPoll, deps: &Deps) -> Result<Value, TaskError> {
    let eks = deps.eks.as_ref();
    state.check_bounds()?;
    // Looked at first, read only: a poll state that names something the worker does not
    // own is refused before anything is sent (no heartbeat, no answer, no delete).
    if let Err(e) = look_owned(eks, &state).await {
        if e.name == names::NOT_OWNED {
            tracing::warn!(error = %e, "refused a cluster poll for a resource the worker does not own");
            return Err(e);
        }
    }
    // A poll behind its chain (a later attempt of this task already waits): a replay,
    // refused before anything is sent.
    if let Some(chain) =
        crate::task::poll_chain::cluster_ahead(deps, &state.key(), state.attempt, &state.task_token)
            .await
    {
        let reason = format!(
            "the poll state of attempt {} is behind its chain of polls (attempt {chain} waits)",
            state.attempt
        );
        tracing::warn!(refused = names::REPLAYED_POLL_STATE, %reason, cluster = %state.cluster_name, "refused a replayed poll state");
        return Ok(json!({ "refused": names::REPLAYED_POLL_STATE, "reason": reason }));
    }
    // Then the heartbeat: only a live task moves a deletion on (a forged state with a
    // made-up token stops here). It fails closed: a forced delete takes no step on a
    // heartbeat Step Functions did not take (throttled or denied, a made-up token would
    // pass as live); it waits for the next poll.
    let confirmed = match heartbeat_taken(deps, &state.task_token).await {
        Err(code) => return Ok(json!({ "taskGone": code, "cluster": state.cluster_name })),
        Ok(taken) => taken,
    };

    let waiting = if !confirmed && state.force_delete_compute {
        tracing::warn!(
            cluster = %state.cluster_name,
            "the task's heartbeat was not taken: the forced delete takes no step this poll"
        );
        "the task's heartbeat to be taken before anything is deleted".to_owned()
    } else {
        match check(
            eks,
            deps.connector.as_ref(),
            &state,
            &deps.settings.cluster_access,
            deps.clock.now(),
        )
        .await
        {
            Ok(Stage::Done(v)) => {
                return send_answer(deps, &state.task_token, Ok(pascal_case(&v))).await
            }
            // No EKS client in this deployment: the invocation fails (nothing to poll with).
            Err(e) if e.name == names::INTERNAL => return Err(e),
            // A failed resource (`ClusterOperationFailed`) or a permanent refusal (the
            // resource gone from under a create, access denied …) ends the task by its
            // name: polling again would only meet it again.
            Err(e) if !is_transient(&e) => {
                return send_answer(deps, &state.task_token, Err(e)).await
            }
            Err(e) => {
                tracing::warn!(error = %e, "cluster poll failed; the next one is scheduled");
                e.name
            }
            Ok(Stage::Pending(what)) => {
                tracing::info!(waiting_for = %what, "cluster operation still going");
                what
            }
        }
    };
    let attempt = state.attempt + 1;
    let next = ClusterPoll {
        attempt,
        next_delay_seconds: state.curve.delay(attempt),
        ..state
    };
    deps.hand_off(&next.next_poll()?).await?;
    Ok(
        json!({ "nextPoll": { "attempt": attempt, "inSeconds": next.next_delay_seconds }, "waitingFor": waiting }),
    )
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
        Ok(d) => {
            let what = describe_name(operation, &poll.cluster_name, resource);
            owned(
                &d[operation.resource_field()],
                &what,
                poll.execution.as_deref(),
            )?;
            // A create's poll: the resource its own task made (its task tag), whatever
            // the execution says.
            if operation.is_create() {
                made_for_task(&d[operation.resource_field()], &what, &poll.task_token)?;
            }
            Ok(())
        }
        Err(e) if e.is_not_found() => Ok(()),
        Err(e) => Err(eks_failure("describe")(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::curve::PollCurve;
    use crate::contract::tags::CREATED_TAG;
    use crate::contract::tags::EXECUTION_TAG;
    use crate::contract::tags::MANAGED_BY;
    use crate::contract::tags::MANAGED_TAG;
    use crate::contract::tags::RETAIN_TAG;
    use crate::ports::eks::EksError;
    use crate::testing::{EmptyCluster, ScriptedEks};

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

    /// The execution the tests' resources were made by.
    const MINE: &str = "arn:aws:states:us-east-1:1:execution:m:mine";

    /// The tags of a resource the worker made (for [`MINE`], in the task of token `t`).
    fn ours() -> Value {
        json!({ MANAGED_TAG: MANAGED_BY, EXECUTION_TAG: MINE, TASK_LABEL: task_label("t") })
    }

    /// A create's poll follows only what its own task made: a cluster or nodegroup of
    /// the worker's under the same name, made by another task (its task tag), or with
    /// no task tag, is refused after one look, before any heartbeat, answer or grant.
    #[tokio::test]
    async fn a_creates_poll_takes_only_its_own_tasks_resource() {
        use crate::testing::RecordingCallback;
        use std::sync::Arc;
        for tags in [
            json!({ MANAGED_TAG: MANAGED_BY, EXECUTION_TAG: MINE, TASK_LABEL: task_label("another task") }),
            json!({ MANAGED_TAG: MANAGED_BY, EXECUTION_TAG: MINE }),
        ] {
            for (operation, resource, path, field) in [
                (Operation::CreateCluster, None, "GET /clusters/c", "cluster"),
                (
                    Operation::CreateNodegroup,
                    Some("n"),
                    "GET /clusters/c/node-groups/n",
                    "nodegroup",
                ),
            ] {
                let callback = Arc::new(RecordingCallback::default());
                let mut deps = Deps::test(Arc::new(EmptyCluster), callback.clone());
                let eks = Arc::new(ScriptedEks::new(&[(
                    path,
                    vec![Ok(
                        json!({ field: { "tags": tags, "status": "ACTIVE", "name": "c" } }),
                    )],
                )]));
                deps.eks = eks.clone();
                let e = super::poll(poll(operation, resource), &deps).await.err();
                assert_eq!(
                    e.map(|e| e.name).as_deref(),
                    Some(names::NOT_OWNED),
                    "{tags}"
                );
                assert_eq!(eks.calls(), vec![path.to_owned()], "{tags}");
                assert_eq!(callback.heartbeats(), 0, "{tags}");
                assert!(callback.failed().is_empty(), "{tags}");
            }
        }
    }

    fn not_found() -> Result<Value, EksError> {
        Err(EksError {
            status: 404,
            kind: "ResourceNotFoundException".into(),
            message: "gone".into(),
        })
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
    async fn a_created_cluster_is_done_once_the_workers_roles_are_let_in() {
        let access = WorkerAccess::parse(Some("arn:aws:iam::1:role/run-job"), None)
            .unwrap_or_else(|e| panic!("{e:?}"));
        let policy = "POST /clusters/c/access-entries/arn%3Aaws%3Aiam%3A%3A1%3Arole%2Frun%2Djob/access-policies";
        let eks = ScriptedEks::new(&[
            (
                "GET /clusters/c",
                vec![Ok(
                    json!({ "cluster": { "tags": ours(), "status": "ACTIVE", "name": "c", "accessConfig": { "authenticationMode": "API_AND_CONFIG_MAP" } } }),
                )],
            ),
            ("POST /clusters/c/access-entries", vec![Ok(json!({}))]),
            (
                policy,
                vec![
                    Err(EksError {
                        status: 503,
                        kind: "ServiceUnavailableException".into(),
                        message: "try again".into(),
                    }),
                    Ok(json!({})),
                ],
            ),
        ]);
        let p = poll(Operation::CreateCluster, None);
        let first = check(&eks, &EmptyCluster, &p, &access, SystemTime::UNIX_EPOCH).await;
        assert!(
            first.is_err(),
            "not answered while the worker is not let in yet"
        );
        assert!(matches!(
            check(&eks, &EmptyCluster, &p, &access, SystemTime::UNIX_EPOCH).await,
            Ok(Stage::Done(_))
        ));
        assert_eq!(eks.calls().iter().filter(|c| *c == policy).count(), 2);
        // The request asks for access entries where the payload chose no mode.
        let input = parse(
            &json!({ "Operation": "createCluster", "Name": "c", "RoleArn": "arn:aws:iam::1:role/r", "ResourcesVpcConfig": { "SubnetIds": ["s"] } }),
            SystemTime::UNIX_EPOCH,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let created = ScriptedEks::new(&[("POST /clusters", vec![Ok(json!({}))])]);
        let _ = start(&created, &input, &access).await;
        assert_eq!(
            created.bodies()[0]["accessConfig"]["authenticationMode"],
            "API_AND_CONFIG_MAP"
        );
    }

    /// A cluster poll behind its chain (this task's later attempt already waits, sealed
    /// by the deployment) is refused before anything is sent; one a squatter wrote under
    /// a later name (unsealed, or another task's) does not stop it.
    #[tokio::test]
    async fn a_cluster_poll_behind_its_chain_is_refused() {
        use crate::ports::handoff::HandOff;
        use crate::testing::{RecordingCallback, RecordingHandOff};
        use std::sync::Arc;
        let deps_with = |handoff: Arc<RecordingHandOff>, callback: Arc<RecordingCallback>| {
            let mut deps = Deps::test(Arc::new(EmptyCluster), callback);
            deps.handoff = handoff;
            deps.eks = Arc::new(ScriptedEks::new(&[(
                "GET /clusters/c",
                vec![Ok(
                    json!({ "cluster": { "tags": ours(), "status": "CREATING" } }),
                )],
            )]));
            deps
        };
        let later = |token: &str| ClusterPoll {
            attempt: 3,
            task_token: token.into(),
            ..poll(Operation::CreateCluster, None)
        };
        // The chain's attempt 3 waits (handed off by this deployment): attempt 0 is a replay.
        let handoff = Arc::new(RecordingHandOff::default());
        let callback = Arc::new(RecordingCallback::default());
        let deps = deps_with(handoff.clone(), callback.clone());
        deps.hand_off(&later("t").next_poll().unwrap_or_else(|e| panic!("{e}")))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let report = super::poll(poll(Operation::CreateCluster, None), &deps)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(report["refused"], names::REPLAYED_POLL_STATE, "{report}");
        assert_eq!(callback.heartbeats(), 0, "nothing sent");
        assert_eq!(handoff.polls().len(), 1, "no second chain");

        // Squats under a later name: an unsealed state, another task's sealed one.
        let handoff = Arc::new(RecordingHandOff::default());
        let callback = Arc::new(RecordingCallback::default());
        let deps = deps_with(handoff.clone(), callback.clone());
        let key = poll(Operation::CreateCluster, None).key();
        let mut theirs = later("another task")
            .next_poll()
            .unwrap_or_else(|e| panic!("{e}"));
        theirs.key.clone_from(&key);
        deps.hand_off(&theirs)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let mut unsealed = later("t").next_poll().unwrap_or_else(|e| panic!("{e}"));
        unsealed.key = key;
        handoff
            .hand_off(&unsealed)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let report = super::poll(poll(Operation::CreateCluster, None), &deps)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(report.get("refused").is_none(), "{report}");
        assert_eq!(callback.heartbeats(), 1, "polled as usual");

        // The chain's own waiting state copied under a later name (read off its
        // schedule): its name and its attempt disagree, so the genuine attempt, once it
        // runs, is not refused by its own copy.
        let handoff = Arc::new(RecordingHandOff::default());
        let callback = Arc::new(RecordingCallback::default());
        let deps = deps_with(handoff.clone(), callback.clone());
        let at3 = ClusterPoll {
            attempt: 3,
            next_delay_seconds: PollCurve::default().delay(3),
            ..poll(Operation::CreateCluster, None)
        };
        deps.hand_off(&at3.next_poll().unwrap_or_else(|e| panic!("{e}")))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let mut copy = handoff.polls()[0].clone();
        copy.attempt = 99;
        handoff
            .hand_off(&copy)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let report = super::poll(at3, &deps)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(report.get("refused").is_none(), "{report}");
        assert_eq!(callback.heartbeats(), 1, "the genuine attempt polled");
    }

    /// A poll that meets a permanent EKS error answers it; a transient one schedules
    /// the next poll (issue "Long invocations": no cluster poll rescheduled forever).
    #[tokio::test]
    async fn a_permanent_error_ends_the_cluster_poll_and_a_transient_one_polls_again() {
        use crate::testing::{RecordingCallback, RecordingHandOff};
        use std::sync::Arc;
        let refused = |status: u16, kind: &str| EksError {
            status,
            kind: kind.into(),
            message: "m".into(),
        };
        for (error, answered) in [
            (refused(404, "ResourceNotFoundException"), true),
            (refused(403, "AccessDeniedException"), true),
            (refused(503, "ServiceUnavailableException"), false),
            (refused(429, "ThrottlingException"), false),
        ] {
            let callback = Arc::new(RecordingCallback::default());
            let handoff = Arc::new(RecordingHandOff::answering(vec![Ok(())]));
            let mut deps = Deps::test(Arc::new(EmptyCluster), callback.clone());
            deps.handoff = handoff.clone();
            deps.eks = Arc::new(ScriptedEks::new(&[(
                "GET /clusters/c/node-groups/n",
                vec![
                    Ok(json!({ "nodegroup": { "tags": ours(), "status": "CREATING" } })),
                    Err(error.clone()),
                ],
            )]));
            let report = super::poll(poll(Operation::CreateNodegroup, Some("n")), &deps).await;
            let failed = callback.failed();
            if answered {
                assert_eq!(failed.len(), 1, "{error:?}: {report:?}");
                assert_eq!(failed[0].1.name, format!("EKS.{}", error.kind));
                assert!(handoff.polls().is_empty(), "{error:?}");
            } else {
                assert!(failed.is_empty(), "{error:?}");
                assert_eq!(handoff.polls().len(), 1, "{error:?}");
            }
        }
    }

    #[tokio::test]
    async fn creating_is_pending_until_active_and_failed_is_an_error() {
        let eks = ScriptedEks::new(&[(
            "GET /clusters/c",
            vec![
                Ok(json!({ "cluster": { "tags": ours(), "status": "CREATING" } })),
                Ok(json!({ "cluster": { "tags": ours(), "status": "ACTIVE", "name": "c" } })),
            ],
        )]);
        let p = poll(Operation::CreateCluster, None);
        assert!(matches!(
            check(
                &eks,
                &EmptyCluster,
                &p,
                &WorkerAccess::default(),
                SystemTime::UNIX_EPOCH
            )
            .await,
            Ok(Stage::Pending(_))
        ));
        assert!(
            matches!(check(&eks, &EmptyCluster, &p, &WorkerAccess::default(), SystemTime::UNIX_EPOCH).await, Ok(Stage::Done(v)) if v["cluster"]["name"] == "c")
        );
        let failed = ScriptedEks::new(&[(
            "GET /clusters/c/node-groups/n",
            vec![Ok(
                json!({ "nodegroup": { "tags": ours(), "status": "CREATE_FAILED", "health": { "issues": [{ "code": "Ec2SubnetInvalidConfiguration" }] } } }),
            )],
        )]);
        let e = check(
            &failed,
            &EmptyCluster,
            &poll(Operation::CreateNodegroup, Some("n")),
            &WorkerAccess::default(),
            SystemTime::UNIX_EPOCH,
        )
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
        let eks = ScriptedEks::new(&[(
            "GET /clusters/c/fargate-profiles/f",
            vec![
                Ok(json!({ "fargateProfile": { "tags": ours(), "status": "DELETING" } })),
                not_found(),
            ],
        )]);
        let p = poll(Operation::DeleteFargateProfile, Some("f"));
        assert!(matches!(
            check(
                &eks,
                &EmptyCluster,
                &p,
                &WorkerAccess::default(),
                SystemTime::UNIX_EPOCH
            )
            .await,
            Ok(Stage::Pending(_))
        ));
        assert!(
            matches!(check(&eks, &EmptyCluster, &p, &WorkerAccess::default(), SystemTime::UNIX_EPOCH).await, Ok(Stage::Done(v)) if v["fargateProfile"]["status"] == "DELETED")
        );
    }

    #[tokio::test]
    async fn a_forced_delete_takes_fargate_profiles_one_at_a_time() {
        let eks = ScriptedEks::new(&[
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
            advance_force_delete(&eks, &EmptyCluster, "c", MINE, SystemTime::UNIX_EPOCH).await,
            Ok(Stage::Pending(_))
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
            advance_force_delete(&eks, &EmptyCluster, "c", MINE, SystemTime::UNIX_EPOCH).await,
            Ok(Stage::Pending(_))
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
        let eks = ScriptedEks::new(&[("GET /clusters/c", vec![foreign()])]);
        let e = advance_force_delete(&eks, &EmptyCluster, "c", MINE, SystemTime::UNIX_EPOCH)
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
        let e = start(&eks, &input, &WorkerAccess::default())
            .await
            .err()
            .map(|e| e.name);
        assert_eq!(e.as_deref(), Some(names::NOT_OWNED));
        assert!(!eks.calls().iter().any(|c| c.starts_with("DELETE")));
        // Ours, but another execution's: refused when the payload names its execution.
        let other = ScriptedEks::new(&[(
            "GET /clusters/c/node-groups/n",
            vec![Ok(
                json!({ "nodegroup": { "status": "ACTIVE", "tags": { MANAGED_TAG: MANAGED_BY, EXECUTION_TAG: "arn:aws:states:us-east-1:1:execution:m:other" } } }),
            )],
        )]);
        let input = parse(&json!({ "Operation": "deleteNodegroup", "ClusterName": "c", "NodegroupName": "n", "ExecutionArn": "arn:aws:states:us-east-1:1:execution:m:mine" }), SystemTime::UNIX_EPOCH)
            .unwrap_or_else(|e| panic!("{e}"));
        let e = start(&other, &input, &WorkerAccess::default()).await.err();
        assert_eq!(
            e.as_ref().map(|e| e.name.as_str()),
            Some(names::NOT_OWNED),
            "{e:?}"
        );
        // A nodegroup someone else put in the worker's cluster stops a forced delete.
        let mixed = ScriptedEks::new(&[
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
        let cluster = crate::testing::NoCluster::default();
        let e = advance_force_delete(&mixed, &cluster, "c", MINE, SystemTime::UNIX_EPOCH)
            .await
            .err()
            .map(|e| e.name);
        assert_eq!(e.as_deref(), Some(names::NOT_OWNED));
        assert!(!mixed.calls().iter().any(|c| c.starts_with("DELETE")));
        assert_eq!(
            cluster.connects(),
            0,
            "nothing released in the cluster before all of its compute was found the worker's"
        );
    }

    /// A forced-delete poll whose heartbeat Step Functions did not take (throttled,
    /// denied: a made-up token passes for live) deletes nothing and connects to nothing;
    /// it polls again. Once the heartbeat is taken, the delete moves on.
    #[tokio::test]
    async fn a_forced_delete_takes_no_step_on_a_heartbeat_not_taken() {
        use crate::testing::{RecordingCallback, RecordingHandOff};
        use std::sync::Arc;
        let callback = Arc::new(RecordingCallback::default());
        callback.refuse_heartbeats(3);
        let handoff = Arc::new(RecordingHandOff::answering(vec![Ok(()), Ok(())]));
        let cluster = Arc::new(crate::testing::NoCluster::default());
        let mut deps = Deps::test(cluster.clone(), callback.clone());
        deps.handoff = handoff.clone();
        let eks = Arc::new(ScriptedEks::new(&[
            (
                "GET /clusters/c",
                vec![Ok(
                    json!({ "cluster": { "status": "ACTIVE", "tags": ours() } }),
                )],
            ),
            (
                "GET /clusters/c/node-groups",
                vec![Ok(json!({ "nodegroups": [] }))],
            ),
            (
                "GET /clusters/c/fargate-profiles",
                vec![Ok(json!({ "fargateProfileNames": [] }))],
            ),
            ("DELETE /clusters/c", vec![Ok(json!({}))]),
        ]));
        deps.eks = eks.clone();
        let mut forced = poll(Operation::DeleteCluster, None);
        forced.force_delete_compute = true;
        forced.execution = Some(MINE.into());
        let report = super::poll(forced.clone(), &deps).await;
        assert!(report.is_ok(), "{report:?}");
        assert!(!eks.calls().iter().any(|c| c.starts_with("DELETE")));
        assert_eq!(cluster.connects(), 0);
        assert_eq!(handoff.polls().len(), 1, "polled again");
        assert!(callback.failed().is_empty() && callback.succeeded().is_empty());
        // The heartbeat taken: the chain's next poll moves the delete on.
        let next = ClusterPoll {
            attempt: 1,
            next_delay_seconds: forced.curve.delay(1),
            ..forced
        };
        let report = super::poll(next, &deps).await;
        assert!(report.is_ok(), "{report:?}");
        assert!(
            eks.calls().iter().any(|c| c == "DELETE /clusters/c"),
            "{:?}",
            eks.calls()
        );
    }

    /// A forced delete names its execution (payload and poll state alike), takes only
    /// that execution's cluster, and never a retained one: each refused after one look.
    #[tokio::test]
    async fn a_forced_delete_takes_only_its_own_executions_unretained_cluster() {
        let e = parse(
            &json!({ "Operation": "deleteCluster", "Name": "c", "ForceDeleteCompute": true }),
            SystemTime::UNIX_EPOCH,
        )
        .err();
        assert_eq!(
            e.as_ref().map(|e| e.cause["field"].clone()),
            Some(json!("ExecutionArn")),
            "{e:?}"
        );
        let mut forced = poll(Operation::DeleteCluster, None);
        forced.force_delete_compute = true;
        let e = forced.check_bounds().err();
        assert_eq!(e.map(|e| e.name), Some(names::INVALID_INPUT.to_owned()));
        let other = "arn:aws:states:us-east-1:1:execution:m:other";
        for (tags, refusal) in [
            (
                json!({ MANAGED_TAG: MANAGED_BY, EXECUTION_TAG: other }),
                names::NOT_OWNED,
            ),
            (json!({ MANAGED_TAG: MANAGED_BY }), names::NOT_OWNED),
            (
                json!({ MANAGED_TAG: MANAGED_BY, EXECUTION_TAG: MINE, RETAIN_TAG: "true" }),
                names::RETAINED,
            ),
        ] {
            let eks = ScriptedEks::new(&[(
                "GET /clusters/c",
                vec![Ok(
                    json!({ "cluster": { "status": "ACTIVE", "tags": tags } }),
                )],
            )]);
            let cluster = crate::testing::NoCluster::default();
            let e = advance_force_delete(&eks, &cluster, "c", MINE, SystemTime::UNIX_EPOCH)
                .await
                .err()
                .map(|e| e.name);
            assert_eq!(e.as_deref(), Some(refusal), "{tags}");
            assert_eq!(eks.calls(), vec!["GET /clusters/c".to_owned()], "{tags}");
            assert_eq!(cluster.connects(), 0, "{tags}");
        }
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
        assert!(a.input.len() < crate::contract::poll_state::MAX_SCHEDULE_INPUT_CHARS);
        let back: ClusterPoll = serde_json::from_str(&a.input).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back, p);
    }
}
