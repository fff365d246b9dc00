//! Forged poll states through the real poller binary on the local Lambda platform, each
//! delivered as EventBridge Scheduler delivers it (a one-time schedule in moto's
//! Scheduler, fired by the platform): the forced delete of a cluster the worker made for
//! another execution, with that execution's live token, (1) unsealed, (2) sealed with
//! the forger's own HMAC key, (3) a genuine sealed state of a harmless poll with one
//! field changed (`ForceDeleteCompute`), (4) a genuine seal moved onto another state,
//! (5) the deployment's key named with an empty MAC.
//! None may change anything: the cluster and its nodegroup stay, the task stays
//! unanswered, and no poll is scheduled on its behalf; each is refused by name in the
//! poller's log. And a squat: schedules made ahead under a running task's next poll
//! names do not end its chain of polls.

// Test helpers fail the test by panicking.
#![allow(clippy::panic)]

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use world_tests::{cluster_op, sealed, unique, Platform, World};

/// An execution whose task waits for its token (`events:putEvents.waitForTaskToken`:
/// nothing of the worker's is invoked, nothing answers it), and that token.
async fn waiting(world: &World, name: &str) -> (String, String) {
    let sfn = world.sfn().await;
    let definition = json!({ "StartAt": "Wait", "States": { "Wait": {
        "Type": "Task", "Resource": "arn:aws:states:::events:putEvents.waitForTaskToken",
        "Parameters": { "Entries": [{ "Source": "forgeries", "DetailType": "wait", "Detail": { "TaskToken.$": "$$.Task.Token" } }] },
        "HeartbeatSeconds": 300, "End": true } } });
    let machine = sfn
        .create_state_machine()
        .name(name)
        .definition(definition.to_string())
        .role_arn(world.fact("/states_role"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e:?}"));
    let execution = sfn
        .start_execution()
        .state_machine_arn(machine.state_machine_arn())
        .name(name)
        .input("{}")
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e:?}"))
        .execution_arn()
        .to_owned();
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        let history = sfn
            .get_execution_history()
            .execution_arn(&execution)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e:?}"));
        let token = history.events().iter().find_map(|e| {
            let parameters = e.task_scheduled_event_details()?.parameters();
            let parameters: Value = serde_json::from_str(parameters).ok()?;
            parameters["Entries"][0]["Detail"]["TaskToken"]
                .as_str()
                .map(str::to_owned)
        });
        if let Some(token) = token {
            return (execution, token);
        }
        assert!(Instant::now() < until, "no TaskScheduled event");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A schedule group of the test's own (`prefix` and a unique suffix), which the worker's
/// hand-offs never use: what a test fires at the poller goes there.
async fn schedule_group(world: &World, prefix: &str) -> String {
    let group = unique(prefix);
    aws_sdk_scheduler::Client::new(&world.sdk("worker").await)
        .create_schedule_group()
        .name(&group)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e:?}"));
    group
}

/// The poller's log lines that refused a state as not the worker's.
fn refusals() -> usize {
    world_tests::log_lines("poller", &["refused a poll state the worker did not write"])
}

#[tokio::test]
async fn no_forged_poll_state_changes_anything() {
    let world = World::get();
    let deps = world.cluster_deps().await;
    let group = schedule_group(&world, "forgeries").await;
    let scheduler = aws_sdk_scheduler::Client::new(&world.sdk("worker").await);
    // The victim: a cluster the worker made, with a nodegroup, for another execution
    // whose task is still waiting (its token is live: a forger reads it off a schedule).
    let name = unique("victim");
    let (execution, token) = waiting(&world, &name).await;
    let _platform = Platform::start();
    let created = cluster_op(
        &deps,
        json!({ "Operation": "createCluster", "Name": name, "RoleArn": world.cluster_role(), "ResourcesVpcConfig": { "SubnetIds": ["subnet-a"] }, "ExecutionArn": execution }),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(created["Cluster"]["Status"], "ACTIVE", "{created}");
    cluster_op(
        &deps,
        json!({ "Operation": "createNodegroup", "ClusterName": name, "NodegroupName": "ng", "NodeRole": world.cluster_role(), "Subnets": ["subnet-a"] }),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));

    let forced = json!({ "Operation": "deleteCluster", "ClusterName": name, "ForceDeleteCompute": true, "Execution": execution, "TaskToken": token, "Attempt": 0, "NextDelaySeconds": 1, "Curve": [1] });
    // (2) The forger's own HMAC key, in the same account: a seal KMS verifies, by a key
    // that is not the deployment's.
    let kms = aws_sdk_kms::Client::new(&world.sdk("intruder").await);
    let theirs = kms
        .create_key()
        .key_spec(aws_sdk_kms::types::KeySpec::Hmac256)
        .key_usage(aws_sdk_kms::types::KeyUsageType::GenerateVerifyMac)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e:?}"));
    let their_key = theirs
        .key_metadata()
        .map(|m| m.key_id().to_owned())
        .unwrap_or_default();
    let message = worker::contract::seal::message(&forced).unwrap_or_else(|e| panic!("{e}"));
    let mac = kms
        .generate_mac()
        .key_id(&their_key)
        .mac_algorithm(aws_sdk_kms::types::MacAlgorithmSpec::HmacSha256)
        .message(aws_sdk_kms::primitives::Blob::new(message.as_bytes()))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e:?}"));
    use base64::Engine;
    let mut their_seal = forced.clone();
    their_seal["Seal"] = json!({ "KeyId": their_key, "Mac": base64::engine::general_purpose::STANDARD.encode(mac.mac().map(|b| b.as_ref()).unwrap_or_default()) });
    // (3) A genuine, harmless poll (a plain delete's status), sealed by the worker's key,
    // then made forceful.
    let mut harmless = forced.clone();
    harmless["ForceDeleteCompute"] = json!(false);
    let mut changed = sealed(&deps, &harmless).await;
    changed["ForceDeleteCompute"] = json!(true);
    // (4) That genuine seal moved onto the forced state.
    let mut moved = forced.clone();
    moved["Seal"] = changed["Seal"].clone();
    // (5) The deployment's key named, with a MAC that is no MAC (no KMS error, no retry).
    let mut empty = forced.clone();
    empty["Seal"] = json!({ "KeyId": world.fact("/poll_state_key"), "Mac": "" });

    let before = refusals();
    for forged in [&forced, &their_seal, &changed, &moved, &empty] {
        // In a group of the test's own, which the worker's hand-offs never use.
        world_tests::fire(&world, "poller", Some(&group), forged).await;
    }
    // Until the poller has refused all five (at most 60 s; then whatever it did shows).
    let until = Instant::now() + Duration::from_secs(60);
    while refusals() < before + 5 && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let refused = refusals() - before;
    // Nothing changed: the cluster and its nodegroup, the task, the worker's schedules.
    let eks = aws_sdk_eks::Client::new(&world.sdk("worker").await);
    let cluster = eks
        .describe_cluster()
        .name(&name)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(
        cluster
            .cluster()
            .and_then(|c| c.status())
            .map(|s| s.as_str()),
        Some("ACTIVE")
    );
    let ng = eks
        .describe_nodegroup()
        .cluster_name(&name)
        .nodegroup_name("ng")
        .send()
        .await
        .unwrap_or_else(|e| panic!("the nodegroup is gone: {e:?}"));
    assert_eq!(
        ng.nodegroup().and_then(|n| n.status()).map(|s| s.as_str()),
        Some("ACTIVE")
    );
    let status = world.execution_status(&execution).await;
    assert_eq!(status, "RUNNING", "the task was not answered");
    let polls = world
        .schedule_names(&world.fact("/schedule_group"), "ekstw-")
        .await
        .unwrap_or_else(|e| panic!("{e:?}"));
    for schedule in &polls {
        let input = scheduler
            .get_schedule()
            .group_name(world.fact("/schedule_group"))
            .name(schedule)
            .send()
            .await
            .ok()
            .and_then(|g| g.target().and_then(|t| t.input()).map(str::to_owned))
            .unwrap_or_default();
        assert!(
            !input.contains(&name),
            "a poll was scheduled for the victim: {input}"
        );
    }
    assert_eq!(
        refused, 5,
        "each forged state refused by name in the poller's log"
    );
    // Clean up: the worker's own delete of its cluster (as its task would).
    let _ = world
        .sfn()
        .await
        .stop_execution()
        .execution_arn(&execution)
        .send()
        .await;
    for path in [
        format!("/clusters/{name}/node-groups/ng"),
        format!("/clusters/{name}"),
    ] {
        let _ = deps.eks.call(http::Method::DELETE, &path, None).await;
    }
}

/// KMS MACs at most 4,096 bytes (the world refuses more, as KMS does); a poll state may
/// hold 8,192 characters. A state of 7,000 is sealed and verified with the world's key;
/// one character changed, it is not.
#[tokio::test]
async fn a_state_of_any_size_is_sealed_and_verified() {
    let world = World::get();
    let deps = world.cluster_deps().await;
    let big =
        json!({ "Cluster": { "ClusterName": "c", "CertificateAuthority": "M".repeat(7000) } });
    let sealed = sealed(&deps, &big).await;
    let (message, seal, _) =
        worker::contract::seal::open(&sealed).unwrap_or_else(|e| panic!("{e}"));
    assert!(message.len() > 7000);
    assert_eq!(deps.seal.verify(&message, &seal).await, Ok(true));
    let changed = message.replacen('M', "N", 1);
    assert_eq!(deps.seal.verify(&changed, &seal).await, Ok(false));
}

/// The poller's log lines that found the next poll's name squatted.
fn squats(key: &str) -> usize {
    world_tests::log_lines(
        "poller",
        &["was taken by a schedule the worker did not write", key],
    )
}

/// Schedules made ahead under the names the next polls of a running task would take
/// (read off its first schedule, as anyone allowed to list the group can), each holding
/// that task's genuine state with the attempt changed (the genuine token, so only the
/// seal tells them apart), set to fire a day later. The poller meets each name taken,
/// reads the schedule there, finds it not its own, and schedules the poll under a fresh
/// name: the chain goes on and the task is answered (taking a squat for "already
/// scheduled" would end the chain and the task by its heartbeat timeout).
#[tokio::test]
async fn a_squatted_next_poll_name_does_not_stop_the_chain() {
    let world = World::get();
    let _platform = Platform::start();
    let name = unique("squatted");
    let scheduler = aws_sdk_scheduler::Client::new(&world.sdk("worker").await);
    let group = world.fact("/schedule_group");
    let squatter = {
        let (scheduler, group, name) = (scheduler.clone(), group.clone(), name.clone());
        tokio::spawn(async move {
            let world = World::get();
            let state = first_poll(&scheduler, &group, &name).await;
            let uid = state["JobUid"].as_str().unwrap_or_default().to_owned();
            let mut squatted = Vec::new();
            for attempt in 1..=4u32 {
                let mut squat = state.clone();
                squat["Attempt"] = json!(attempt);
                let at = worker::contract::time::utc_seconds(
                    std::time::SystemTime::now() + Duration::from_secs(86_400),
                );
                let target = aws_sdk_scheduler::types::Target::builder()
                    .arn(world.fact("/functions/poller"))
                    .role_arn(world.fact("/scheduler_role"))
                    .input(squat.to_string())
                    .build()
                    .unwrap_or_else(|e| panic!("{e:?}"));
                let name = worker::contract::poll_state::schedule_name(&uid, attempt);
                let made = scheduler
                    .create_schedule()
                    .group_name(&group)
                    .name(&name)
                    .schedule_expression(format!("at({at})"))
                    .flexible_time_window(
                        aws_sdk_scheduler::types::FlexibleTimeWindow::builder()
                            .mode(aws_sdk_scheduler::types::FlexibleTimeWindowMode::Off)
                            .build()
                            .unwrap_or_else(|e| panic!("{e:?}")),
                    )
                    .target(target)
                    .send()
                    .await;
                if made.is_ok() {
                    squatted.push(name);
                }
            }
            (uid, squatted)
        })
    };
    let (status, error) = handed_off_job(&world, &name, 14).await;
    let (uid, squatted) = squatter.await.unwrap_or_else(|e| panic!("{e}"));
    for s in &squatted {
        let _ = scheduler
            .delete_schedule()
            .group_name(&group)
            .name(s)
            .send()
            .await;
    }
    assert!(
        !squatted.is_empty(),
        "no name was squatted ahead of the poller"
    );
    assert_eq!(status, "SUCCEEDED", "{error:?}");
    assert!(
        squats(&uid) >= 1,
        "the poller reported the taken name ({squatted:?})"
    );
}

/// The first poll state the worker scheduled for the Job `name` (its genuine, sealed
/// input, read off the schedule as anyone allowed to list the group can), waiting up
/// to a minute for it.
async fn first_poll(scheduler: &aws_sdk_scheduler::Client, group: &str, name: &str) -> Value {
    let until = Instant::now() + Duration::from_secs(60);
    while Instant::now() < until {
        let world = World::get();
        let listed = world
            .schedule_names(group, "ekstw-")
            .await
            .unwrap_or_else(|e| panic!("{e:?}"));
        for schedule in &listed {
            let found = scheduler
                .get_schedule()
                .group_name(group)
                .name(schedule)
                .send()
                .await;
            let input = found
                .ok()
                .and_then(|g| g.target().and_then(|t| t.input()).map(str::to_owned))
                .unwrap_or_default();
            let state: Value = serde_json::from_str(&input).unwrap_or_default();
            if state["JobName"] == name && state["Attempt"] == 0 {
                return state;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the first poll of {name} was never scheduled");
}

/// The platform's AWS journal lines whose request is `request`, answered `status`.
fn journaled(request: &str, status: u64) -> usize {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../.local-world/logs/aws-calls.jsonl");
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["request"] == request && l["status"] == status)
        .count()
}

/// The poller's log lines that refused a replayed state of the Job `name`.
fn replays(name: &str) -> usize {
    world_tests::log_lines(
        "poller",
        &[
            "refused a replayed poll state",
            &format!("\"job\":\"{name}"),
        ],
    )
}

/// A genuine poll state delivered again once its chain moved on (its first attempt,
/// read off the schedule, fired again after the chain's third poll was scheduled): the
/// poller refuses it by name before anything is sent, and no second chain starts (the
/// second poll's schedule is made once); the task is answered as if nothing happened.
#[tokio::test]
async fn a_replayed_old_attempt_is_refused() {
    let world = World::get();
    let _platform = Platform::start();
    let name = unique("replayed");
    let scheduler = aws_sdk_scheduler::Client::new(&world.sdk("worker").await);
    let group = schedule_group(&world, "replays").await;
    let replayer = {
        let (scheduler, group, name) = (scheduler.clone(), group.clone(), name.clone());
        let poll_group = world.fact("/schedule_group");
        tokio::spawn(async move {
            let world = World::get();
            let first = first_poll(&scheduler, &poll_group, &name).await;
            let uid = first["JobUid"].as_str().unwrap_or_default().to_owned();
            let third = format!(
                "POST /schedules/{}",
                worker::contract::poll_state::schedule_name(&uid, 2)
            );
            let until = Instant::now() + Duration::from_secs(60);
            while journaled(&third, 200) == 0 {
                assert!(
                    Instant::now() < until,
                    "the chain never reached its third poll"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            world_tests::fire(&world, "poller", Some(&group), &first).await;
            let until = Instant::now() + Duration::from_secs(30);
            while replays(&name) == 0 && Instant::now() < until {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            (uid, first)
        })
    };
    let (status, error) = handed_off_job(&world, &name, 25).await;
    let (uid, first) = replayer.await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(status, "SUCCEEDED", "{error:?}");
    // What anyone who may read the schedule sees holds no task token; the deployment's
    // key opens it into the state that was sealed, whose token the text does not show.
    assert!(
        first.get("TaskToken").is_none() && first["SealedTaskToken"].is_string(),
        "{first}"
    );
    let deps = world.cluster_deps().await;
    let opened = worker::task::sealed_state::open(deps.seal.as_ref(), &first)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|e| panic!("the genuine state does not open: {e}"));
    let token = opened["TaskToken"].as_str().unwrap_or_default();
    assert!(
        token.len() > 20 && !first.to_string().contains(token),
        "{token} in {first}"
    );
    let second = format!(
        "POST /schedules/{}",
        worker::contract::poll_state::schedule_name(&uid, 1)
    );
    assert_eq!(
        journaled(&second, 200),
        1,
        "one chain: its second poll scheduled once"
    );
    assert_eq!(replays(&name), 1, "the replay refused by name");
    // Replayed again once the task ended: refused as well, nothing scheduled.
    world_tests::fire(&world, "poller", Some(&group), &first).await;
    let until = Instant::now() + Duration::from_secs(30);
    while replays(&name) < 2 && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        replays(&name),
        2,
        "the replay after the end refused by name"
    );
    assert_eq!(journaled(&second, 200), 1, "still one chain");
}

/// Runs a Job of `name` for `seconds` through the platform's run-job, handed to the
/// poller after 1 s (the task's `HeartbeatSeconds` 30: a chain of polls that stops ends
/// it): the execution's status and error.
async fn handed_off_job(world: &World, name: &str, seconds: u32) -> (String, Option<String>) {
    let job = world_tests::sim_job(
        name,
        &["main"],
        json!({ "sim.eks-task-worker.io/run-seconds": seconds.to_string() }),
        1,
    );
    let mut payload = world.job_payload(job);
    payload["InlineWaitSeconds"] = json!(1);
    let (_, status, _, error) = world
        .run_state_machine(
            name,
            &world.run_job_machine(payload, json!({ "HeartbeatSeconds": 30 })),
            &json!({}),
            Duration::from_secs(120),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    (status, error)
}

/// The error names of the dead letters the platform wrote for the poller's states whose
/// `field` is `value` (a Job's `JobUid`, a cluster poll's `ClusterName`).
fn dead_lettered(field: &str, value: &str) -> Vec<String> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../.local-world/logs/lambda/dead-letters.jsonl");
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["requestPayload"][field] == value)
        .map(|l| {
            l["error"]["errorType"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect()
}

/// Behind the seal, every field is still checked: states sealed with the deployment's
/// own key (as a bug in the worker could write them) that name a foreign CA for the real
/// endpoint, an endpoint with a path, or a name that is a path (`.`, `..`, `/`, `%2F`), each
/// delivered to the real poller binary as Scheduler delivers it, are refused by name
/// before any request: nothing is sent on the live task they carry (it keeps waiting),
/// and each invocation fails (tried again, then dead-lettered, never acted on).
#[tokio::test]
async fn a_sealed_state_naming_what_run_job_refuses_is_refused() {
    let world = World::get();
    let deps = world.cluster_deps().await;
    let _platform = Platform::start();
    let group = schedule_group(&world, "unsafe-states").await;
    let (execution, token) = waiting(&world, &unique("unsafe")).await;
    // A real certificate that is not the cluster's CA: the API server's own leaf.
    let ca_file = std::path::PathBuf::from(world.fact("/ca_file"));
    let leaf =
        std::fs::read(ca_file.with_file_name("apiserver.crt")).unwrap_or_else(|e| panic!("{e}"));
    let foreign_ca = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, leaf);
    let endpoint = world.fact("/api_endpoint");
    // Each case's Job uid is its own (the dead letters are found by it).
    let run = std::process::id() % 10_000;
    let state = |case: u32| {
        let uid = format!("00000000-0000-0000-{run:04}-{case:012}");
        (
            uid.clone(),
            json!({ "Cluster": { "ClusterName": world.cluster() }, "Namespace": world.namespace(),
                "JobName": unique("unsafe"), "JobUid": uid, "TaskToken": token,
                "LogOptions": { "RetrieveLogs": true, "RawLogs": false, "LogParameters": [] },
                "Attempt": 0, "NextDelaySeconds": 60, "Curve": [60] }),
        )
    };
    let mut cases = Vec::new();
    let (uid, mut s) = state(1);
    s["Cluster"]["Endpoint"] = json!(endpoint);
    s["Cluster"]["CertificateAuthority"] = json!(foreign_ca);
    cases.push((uid, s, "EksTaskWorker.UntrustedCertificateAuthority"));
    let (uid, mut s) = state(2);
    s["Cluster"]["Endpoint"] = json!(format!(
        "{endpoint}/api/v1/namespaces/default/services/x:80/proxy"
    ));
    cases.push((uid, s, "EksTaskWorker.InvalidInput"));
    for (case, field, value) in [
        (3, "JobName", ".."),
        (4, "Namespace", "a/b"),
        (5, "Namespace", "a%2Fb"),
        (6, "JobName", "."),
    ] {
        let (uid, mut s) = state(case);
        s[field] = json!(value);
        cases.push((uid, s, "EksTaskWorker.InvalidInput"));
    }
    for (_, state, _) in &cases {
        world_tests::fire(&world, "poller", Some(&group), &sealed(&deps, state).await).await;
    }
    let until = Instant::now() + Duration::from_secs(90);
    while cases
        .iter()
        .any(|(uid, _, _)| dead_lettered("JobUid", uid).is_empty())
        && Instant::now() < until
    {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    for (uid, state, refusal) in &cases {
        assert_eq!(
            dead_lettered("JobUid", uid),
            vec![(*refusal).to_owned()],
            "{state}"
        );
    }
    assert_eq!(
        world.execution_status(&execution).await,
        "RUNNING",
        "nothing was sent on the task"
    );
    let _ = world
        .sfn()
        .await
        .stop_execution()
        .execution_arn(&execution)
        .send()
        .await;
}

/// A cluster operation's genuine poll state replayed behind its chain: the state of
/// attempt 0 (sealed by the deployment) delivered while the task's attempt 3 waits in
/// the poll group (two minutes ahead, along the default curve). The real poller refuses it by name before anything is sent: the task
/// is neither heartbeated nor answered (the cluster is ACTIVE: an unrefused poll would
/// answer it), and no schedule of attempt 1 is made (the platform's AWS journal).
#[tokio::test]
async fn a_replayed_cluster_poll_is_refused() {
    use worker::contract::cluster_op::Operation;
    use worker::contract::curve::PollCurve;
    use worker::contract::poll_state::{schedule_name, ClusterPoll};
    let world = World::get();
    let deps = world.cluster_deps().await;
    let name = unique("replayed-cl");
    let (execution, token) = waiting(&world, &name).await;
    let _platform = Platform::start();
    let created = cluster_op(
        &deps,
        json!({ "Operation": "createCluster", "Name": name, "RoleArn": world.cluster_role(), "ResourcesVpcConfig": { "SubnetIds": ["subnet-a"] }, "ExecutionArn": execution }),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(created["Cluster"]["Status"], "ACTIVE", "{created}");
    world.tag_as_made_for(&name, &token).await;
    let poll = |attempt: u32| ClusterPoll {
        operation: Operation::CreateCluster,
        cluster_name: name.clone(),
        resource_name: None,
        force_delete_compute: false,
        task_token: token.clone(),
        attempt,
        next_delay_seconds: PollCurve::default().delay(attempt),
        curve: PollCurve::default(),
        execution: Some(execution.clone()),
    };
    let chain = poll(3).next_poll().unwrap_or_else(|e| panic!("{e}"));
    deps.hand_off(&chain)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let replayed = sealed(
        &deps,
        &serde_json::to_value(poll(0)).unwrap_or_else(|e| panic!("{e}")),
    )
    .await;
    let refused = || {
        world_tests::log_lines(
            "poller",
            &[
                "refused a replayed poll state",
                &format!("\"cluster\":\"{name}\""),
            ],
        )
    };
    world_tests::fire(&world, "poller", None, &replayed).await;
    let until = Instant::now() + Duration::from_secs(30);
    while refused() == 0 && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(refused(), 1, "the replay refused by name");
    let next = format!("POST /schedules/{}", schedule_name(&chain.key, 1));
    assert_eq!(journaled(&next, 200), 0, "no second chain");
    assert_eq!(
        world.execution_status(&execution).await,
        "RUNNING",
        "the task neither answered nor failed"
    );

    let scheduler = aws_sdk_scheduler::Client::new(&world.sdk("worker").await);
    scheduler
        .delete_schedule()
        .name(schedule_name(&chain.key, 3))
        .group_name(world.fact("/schedule_group"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e:?}"));
    world
        .sfn()
        .await
        .stop_execution()
        .execution_arn(&execution)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e:?}"));
    cluster_op(&deps, json!({ "Operation": "deleteCluster", "Name": name }))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}

/// Behind the seal, a forced delete is bound to its own execution: states sealed with
/// the deployment's own key (as a bug in the worker could write them), delivered to the
/// real poller binary as Scheduler delivers them, that (1) force-delete a cluster the
/// worker made for another execution, naming the forger's own execution and live token,
/// (2) force-delete a cluster of the forger's own execution tagged retain, (3) carry a
/// made-up token. None deletes anything: every cluster and nodegroup stays ACTIVE, the
/// execution that made the first is not touched. The first is refused before anything
/// is sent (dead-lettered `NotOwned`, the forger's task left alone), the second answers
/// its own task `Retained`, the third stops at its heartbeat.
#[tokio::test]
async fn a_sealed_forced_delete_takes_only_its_own_executions_unretained_cluster() {
    let world = World::get();
    let deps = world.cluster_deps().await;
    let _platform = Platform::start();
    let group = schedule_group(&world, "bound-deletes").await;
    let (owner, _) = waiting(&world, &unique("owner")).await;
    let (forger, forger_token) = waiting(&world, &unique("forger")).await;
    let (keeper, keeper_token) = waiting(&world, &unique("keeper")).await;
    let (dreamer, _) = waiting(&world, &unique("dreamer")).await;
    let create = |name: &str, execution: &str, tags: Value| {
        json!({ "Operation": "createCluster", "Name": name, "RoleArn": world.cluster_role(),
                "ResourcesVpcConfig": { "SubnetIds": ["subnet-a"] }, "ExecutionArn": execution, "Tags": tags })
    };
    let others = unique("others");
    let retained = unique("retained");
    let dreamt = unique("dreamt");
    for (name, execution, tags) in [
        (&others, &owner, json!({})),
        (
            &retained,
            &keeper,
            json!({ "eks-task-worker.io/retain": "yes" }),
        ),
        (&dreamt, &dreamer, json!({})),
    ] {
        let created = cluster_op(&deps, create(name, execution, tags))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(created["Cluster"]["Status"], "ACTIVE", "{created}");
    }
    cluster_op(
        &deps,
        json!({ "Operation": "createNodegroup", "ClusterName": others, "NodegroupName": "ng", "NodeRole": world.cluster_role(), "Subnets": ["subnet-a"] }),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let forced = |cluster: &str, execution: &str, token: &str| {
        json!({ "Operation": "deleteCluster", "ClusterName": cluster, "ForceDeleteCompute": true,
                "Execution": execution, "TaskToken": token, "Attempt": 0, "NextDelaySeconds": 60, "Curve": [60] })
    };
    let made_up = "AQCEAAAAKgAAAAMAAAAAAAAAAWl0c2EtdG9rZW4tbm9ib2R5LWdhdmU=";
    for state in [
        forced(&others, &forger, &forger_token),
        forced(&retained, &keeper, &keeper_token),
        forced(&dreamt, &dreamer, made_up),
    ] {
        world_tests::fire(&world, "poller", Some(&group), &sealed(&deps, &state).await).await;
    }
    // Another execution's cluster: refused before anything is sent (no heartbeat, no
    // answer), each delivery, until Lambda dead-letters the poll.
    let until = Instant::now() + Duration::from_secs(90);
    while dead_lettered("ClusterName", &others).is_empty() && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(
        dead_lettered("ClusterName", &others),
        ["EksTaskWorker.NotOwned"]
    );
    assert_eq!(
        world.execution_status(&forger).await,
        "RUNNING",
        "nothing was sent on the forger's task"
    );
    let (status, _, error) = world
        .execution_end(&keeper, Duration::from_secs(90))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (status.as_str(), error.as_deref()),
        ("FAILED", Some("EksTaskWorker.Retained"))
    );
    let until = Instant::now() + Duration::from_secs(90);
    while world_tests::poller_results(&dreamt).is_empty() && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let dreamt_results = world_tests::poller_results(&dreamt);
    assert!(
        dreamt_results.len() == 1 && dreamt_results[0].contains("taskGone"),
        "the made-up token's poll stops at its heartbeat: {dreamt_results:?}"
    );
    let eks = aws_sdk_eks::Client::new(&world.sdk("worker").await);
    for cluster in [&others, &retained, &dreamt] {
        let described = eks
            .describe_cluster()
            .name(cluster)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{cluster} is gone: {e:?}"));
        assert_eq!(
            described
                .cluster()
                .and_then(|c| c.status())
                .map(|s| s.as_str()),
            Some("ACTIVE"),
            "{cluster}"
        );
    }
    let ng = eks
        .describe_nodegroup()
        .cluster_name(&others)
        .nodegroup_name("ng")
        .send()
        .await
        .unwrap_or_else(|e| panic!("the nodegroup is gone: {e:?}"));
    assert_eq!(
        ng.nodegroup().and_then(|n| n.status()).map(|s| s.as_str()),
        Some("ACTIVE")
    );
    assert_eq!(world.execution_status(&owner).await, "RUNNING");
    for execution in [&owner, &forger, &dreamer] {
        let _ = world.stop_execution(execution).await;
    }
    for (cluster, nodegroup) in [(&others, Some("ng")), (&retained, None), (&dreamt, None)] {
        if let Some(ng) = nodegroup {
            let path = format!("/clusters/{cluster}/node-groups/{ng}");
            let _ = deps.eks.call(http::Method::DELETE, &path, None).await;
        }
        let _ = deps
            .eks
            .call(http::Method::DELETE, &format!("/clusters/{cluster}"), None)
            .await;
    }
}

/// Attack 2 of the review: a genuine Job poll state (read off its schedule) whose only
/// change is the Job it names: a Job of the forger's own, labelled with the task's hash
/// and finished (so an unrefused poll would answer the task with the forger's status).
/// The real poller refuses it by name before anything is read or sent; the task is
/// answered by its own chain with its own Job.
#[tokio::test]
async fn a_genuine_job_poll_state_naming_another_job_is_refused() {
    let world = World::get();
    let _platform = Platform::start();
    let name = unique("genuine");
    let scheduler = aws_sdk_scheduler::Client::new(&world.sdk("worker").await);
    let group = schedule_group(&world, "other-jobs").await;
    let before = refusals();
    let forger = {
        let (scheduler, group, name) = (scheduler.clone(), group.clone(), name.clone());
        let poll_group = world.fact("/schedule_group");
        tokio::spawn(async move {
            let world = World::get();
            let first = first_poll(&scheduler, &poll_group, &name).await;
            // The forger's Job: the genuine one's task label, finished at once.
            let kube = world.admin_kube().unwrap_or_else(|e| panic!("{e}"));
            let ns = world.namespace();
            let genuine = world_tests::send(
                &kube,
                world_tests::request(
                    http::Method::GET,
                    &format!("/apis/batch/v1/namespaces/{ns}/jobs/{name}"),
                    None,
                ),
            )
            .await
            .unwrap_or_else(|e| panic!("{e}"));
            let genuine: Value =
                serde_json::from_slice(&genuine.body).unwrap_or_else(|e| panic!("{e}"));
            let theirs = format!("{name}-theirs");
            let mut job = world_tests::sim_job(&theirs, &["main"], json!({}), 1);
            job["metadata"]["labels"] = genuine["metadata"]["labels"].clone();
            let made = world_tests::send(
                &kube,
                world_tests::request(
                    http::Method::POST,
                    &format!("/apis/batch/v1/namespaces/{ns}/jobs"),
                    Some(&job),
                ),
            )
            .await
            .unwrap_or_else(|e| panic!("{e}"));
            let made: Value = serde_json::from_slice(&made.body).unwrap_or_else(|e| panic!("{e}"));
            let mut forged = first.clone();
            forged["JobName"] = json!(theirs);
            forged["JobUid"] = made["metadata"]["uid"].clone();
            world_tests::fire(&world, "poller", Some(&group), &forged).await;
            theirs
        })
    };
    let job = world_tests::sim_job(
        &name,
        &["main"],
        json!({ "sim.eks-task-worker.io/run-seconds": "20" }),
        1,
    );
    let mut payload = world.job_payload(job);
    payload["InlineWaitSeconds"] = json!(1);
    let (_, status, output, error) = world
        .run_state_machine(
            &name,
            &world.run_job_machine(payload, json!({ "HeartbeatSeconds": 30 })),
            &json!({}),
            Duration::from_secs(120),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let theirs = forger.await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(status, "SUCCEEDED", "{error:?}");
    let output: Value =
        serde_json::from_str(output.as_deref().unwrap_or("{}")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        output["metadata"]["name"], name,
        "answered with the task's own Job, not {theirs}"
    );
    assert_eq!(refusals(), before + 1, "the forged state refused by name");
}
