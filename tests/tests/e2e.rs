//! End to end: state machines in moto, their tasks done by the worker's real `bootstrap`
//! binaries on the local Lambda platform, Jobs on the local cluster.

// Test helpers fail the test by panicking.
#![allow(clippy::panic)]

use std::time::Duration;

use serde_json::{json, Value};
use world_tests::{
    first_pod_logs, function_output, request, send, sim_job, unique, until_job, Platform, World,
};

fn repo_file(path: &str) -> String {
    std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join(path),
    )
    .unwrap_or_else(|e| panic!("{path}: {e}"))
}

async fn example_run_job(world: &World) {
    let input = json!({ "ClusterName": world.cluster(), "Namespace": world.namespace() });
    let (execution, status, output, error) = world
        .run_state_machine(
            &unique("e2e-example"),
            &repo_file("statemachines/run-job.asl.json"),
            &input,
            Duration::from_secs(60),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(status, "SUCCEEDED", "{error:?}");
    let output: Value = serde_json::from_str(&output.unwrap_or_default()).unwrap_or_default();
    assert_eq!(output["status"]["succeeded"], 1, "{output}");
    let pod = first_pod_logs(&output);
    // The example's Job is AWS's sample, with no annotation of the simulator's: its log is
    // π to 2,000 digits, a JSON number, parsed.
    let pi = pod["containers"]["pi-2000"]["log"]
        .as_f64()
        .unwrap_or_default();
    assert!((pi - std::f64::consts::PI).abs() < 1e-9, "{pod}");
    // The run-job binary's log lines carry the execution, cluster, namespace and Job.
    let carried = function_output()
        .iter()
        .filter(|(file, _)| file.starts_with("run-job"))
        .flat_map(|(_, text)| text.lines().map(str::to_owned).collect::<Vec<_>>())
        .filter_map(|l| serde_json::from_str::<Value>(&l).ok())
        .any(|l| {
            l["span"]["execution"] == execution.as_str()
                && l["span"]["cluster"] == world.cluster().as_str()
                && l["span"]["namespace"] == world.namespace().as_str()
                && l["span"]["job"].is_string()
                && l["span"]["job_uid"].is_string()
        });
    assert!(carried, "no run-job line names the execution {execution}");
}

async fn caught_failure(world: &World) {
    let name = unique("e2e-caught");
    let job = sim_job(
        &name,
        &["main"],
        json!({ "sim.eks-task-worker.io/exit-code": "3" }),
        1,
    );
    let catch = json!({ "Catch": [{ "ErrorEquals": ["EksTaskWorker.JobFailed"], "ResultPath": "$.error", "Next": "Caught" }] });
    let (_, status, output, error) = world
        .run_state_machine(
            &name,
            &world.run_job_machine(world.job_payload(job), catch),
            &json!({}),
            Duration::from_secs(60),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(status, "SUCCEEDED", "the Catch took the failure: {error:?}");
    let output: Value = serde_json::from_str(&output.unwrap_or_default()).unwrap_or_default();
    assert_eq!(
        output["error"]["Error"], "EksTaskWorker.JobFailed",
        "{output}"
    );
    // The cause a person acts on: the pod's container, its exit code and reason, the
    // job controller's Warning event, and the log tail.
    let cause: Value =
        serde_json::from_str(output["error"]["Cause"].as_str().unwrap_or("{}")).unwrap_or_default();
    let container = &cause["failedPods"][0]["containers"][0];
    assert_eq!(
        (
            &container["container"],
            &container["exitCode"],
            &container["reason"]
        ),
        (&json!("main"), &json!(3), &json!("Error")),
        "{cause}"
    );
    assert!(
        cause["warningEvents"]
            .as_array()
            .is_some_and(|e| e.iter().any(|e| e["reason"] == "BackoffLimitExceeded")),
        "{cause}"
    );
    // The log tail, or why it could not be read (the pod simulator may still show the
    // container as starting for a moment after the Job failed).
    let tail = &cause["logTails"][0];
    assert_eq!(tail["container"], "main", "{cause}");
    assert!(
        tail["log"].is_string() || tail["error"].is_string(),
        "{cause}"
    );
}

async fn long_job(world: &World) {
    let name = unique("e2e-long");
    let job = sim_job(
        &name,
        &["main"],
        json!({ "sim.eks-task-worker.io/run-seconds": "6", "sim.eks-task-worker.io/log": "slow and steady\n" }),
        1,
    );
    let mut payload = world.job_payload(job);
    payload["InlineWaitSeconds"] = json!(1);
    let (_, status, output, error) = world
        .run_state_machine(
            &name,
            &world.run_job_machine(payload, json!({ "HeartbeatSeconds": 60 })),
            &json!({}),
            Duration::from_secs(90),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(status, "SUCCEEDED", "{error:?}");
    let output: Value = serde_json::from_str(&output.unwrap_or_default()).unwrap_or_default();
    let pod = first_pod_logs(&output);
    assert_eq!(pod["containers"]["main"]["log"], "slow and steady\n");
}

async fn huge_logs(world: &World) {
    let name = unique("e2e-huge");
    let job = sim_job(
        &name,
        &["a", "b"],
        json!({ "sim.eks-task-worker.io/log-bytes": "1500000" }),
        1,
    );
    let (_, status, output, error) = world
        .run_state_machine(
            &name,
            &world.run_job_machine(world.job_payload(job), json!({})),
            &json!({}),
            Duration::from_secs(60),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        status, "SUCCEEDED",
        "not States.DataLimitExceeded: {error:?}"
    );
    let output = output.unwrap_or_default();
    assert!(output.len() <= 262_144, "{}", output.len());
    assert!(output.contains("[eks-task-worker: cut, kept the last "));
}

async fn example_call(world: &World) {
    let input = json!({ "ClusterName": world.cluster(), "Namespace": world.namespace() });
    let (_, status, output, error) = world
        .run_state_machine(
            &unique("e2e-call"),
            &repo_file("statemachines/call.asl.json"),
            &input,
            Duration::from_secs(60),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(status, "SUCCEEDED", "{error:?}");
    let output: Value = serde_json::from_str(&output.unwrap_or_default()).unwrap_or_default();
    // A wildcard path is a list on AWS however many it matches (the world patches
    // moto, which gave one match as the value itself).
    let pods: Vec<String> = match &output["listed"]["pods"] {
        Value::Array(a) => a
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        other => panic!("the pods are not listed as a list: {other}"),
    };
    let job = output["job"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert_eq!(pods.len(), 1, "{output}");
    assert!(pods[0].starts_with(&format!("{job}-")), "{output}");
    assert_eq!(output["deleted"]["StatusCode"], 200);
    let kube = world.worker_kube().unwrap_or_else(|e| panic!("{e}"));
    until_job(
        &kube,
        &world.namespace(),
        &job,
        Duration::from_secs(30),
        |j| j.is_none(),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
}

async fn stopped_execution(world: &World) {
    let name = unique("e2e-stop");
    let job = sim_job(
        &name,
        &["main"],
        json!({ "sim.eks-task-worker.io/run-seconds": "300" }),
        1,
    );
    let mut payload = world.job_payload(job);
    payload["InlineWaitSeconds"] = json!(1);
    let execution = world
        .start_state_machine(
            &name,
            &world.run_job_machine(payload, json!({ "HeartbeatSeconds": 60 })),
            &json!({}),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let kube = world.worker_kube().unwrap_or_else(|e| panic!("{e}"));
    until_job(
        &kube,
        &world.namespace(),
        &name,
        Duration::from_secs(30),
        |j| j.is_some(),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    // Let the run-job invocation hand the Job off before the execution stops.
    tokio::time::sleep(Duration::from_secs(3)).await;
    world
        .stop_execution(&execution)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    until_job(
        &kube,
        &world.namespace(),
        &name,
        Duration::from_secs(60),
        |j| j.is_none(),
    )
    .await
    .unwrap_or_else(|e| panic!("the poller deletes the Job of a stopped execution: {e}"));
}

async fn cluster_create_and_delete(world: &World) {
    let name = unique("e2e-cluster");
    let op = |payload: Value| json!({ "Type": "Task", "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken", "Parameters": { "FunctionName": world.fact("/functions/cluster-ops"), "Payload": payload } });
    let mut create = op(
        json!({ "Operation": "createCluster", "Name.$": "$.name", "RoleArn": format!("arn:aws:iam::{}:role/eks-task-worker-cluster", world.fact("/account")), "ResourcesVpcConfig": { "SubnetIds": ["subnet-a"] }, "ExecutionArn.$": "$$.Execution.Id", "TaskToken.$": "$$.Task.Token" }),
    );
    // Downstream paths as a native state machine reads them.
    create["ResultSelector"] = json!({ "status.$": "$.Cluster.Status", "endpoint.$": "$.Cluster.Endpoint", "ca.$": "$.Cluster.CertificateAuthority.Data" });
    create["ResultPath"] = json!("$.created");
    create["Next"] = json!("Delete");
    let mut delete = op(
        json!({ "Operation": "deleteCluster", "Name.$": "$.name", "ForceDeleteCompute": true, "ExecutionArn.$": "$$.Execution.Id", "TaskToken.$": "$$.Task.Token" }),
    );
    delete["ResultPath"] = json!("$.deleted");
    delete["End"] = json!(true);
    let definition =
        json!({ "StartAt": "Create", "States": { "Create": create, "Delete": delete } })
            .to_string();
    let (_, status, output, error) = world
        .run_state_machine(
            &name,
            &definition,
            &json!({ "name": name }),
            Duration::from_secs(90),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(status, "SUCCEEDED", "{error:?}");
    let output: Value = serde_json::from_str(&output.unwrap_or_default()).unwrap_or_default();
    assert_eq!(output["created"]["status"], "ACTIVE", "{output}");
    assert!(
        output["created"]["endpoint"]
            .as_str()
            .is_some_and(|e| e.starts_with("https://")),
        "{output}"
    );
    assert!(output["created"]["ca"].is_string(), "{output}");
    assert_eq!(
        output["deleted"]["Cluster"]["Status"], "DELETED",
        "{output}"
    );
}

/// May the worker create Jobs in `namespace`? (A SelfSubjectAccessReview as the worker.)
async fn worker_may_create_jobs(world: &World, namespace: &str) -> bool {
    let kube = world.worker_kube().unwrap_or_else(|e| panic!("{e}"));
    let review = json!({ "apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
        "spec": { "resourceAttributes": { "namespace": namespace, "group": "batch", "resource": "jobs", "verb": "create" } } });
    let answer = send(
        &kube,
        request(
            http::Method::POST,
            "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
            Some(&review),
        ),
    )
    .await
    .and_then(|r| r.json().map_err(|e| anyhow::anyhow!("{e}")))
    .unwrap_or_else(|e| panic!("{e}"));
    answer["status"]["allowed"] == json!(true)
}

/// The cluster example as it is: create a cluster (moto; served by the local API
/// server; the worker lets itself in with an access entry and policy: the local world's
/// emulation of them: RBAC), create a nodegroup, run the example Job in `default`,
/// delete the cluster (which removes the access again).
/// Before a scenario that runs the Job `job` in `default` on a cluster the worker
/// creates: a previous run's Job is gone, and the worker may not create Jobs there yet
/// (else the access the create gives would prove nothing).
async fn before_a_created_cluster(world: &World, job: &str) {
    let admin = world.admin_kube().unwrap_or_else(|e| panic!("{e}"));
    let path = format!("/apis/batch/v1/namespaces/default/jobs/{job}");
    let gone = json!({ "propagationPolicy": "Background" });
    send(&admin, request(http::Method::DELETE, &path, Some(&gone)))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    until_job(&admin, "default", job, Duration::from_secs(30), |j| {
        j.is_none()
    })
    .await
    .unwrap_or_else(|e| panic!("a previous run's {job} is not gone: {e}"));
    assert!(
        !worker_may_create_jobs(world, "default").await,
        "the worker may already create Jobs in default: the access entry would prove nothing"
    );
}

async fn example_cluster(world: &World) {
    before_a_created_cluster(world, "example-job").await;
    let admin = world.admin_kube().unwrap_or_else(|e| panic!("{e}"));
    let job = "/apis/batch/v1/namespaces/default/jobs/example-job";
    let gone = json!({ "propagationPolicy": "Background" });
    let name = unique("e2e-example-cluster");
    let account = world.fact("/account");
    let input = json!({
        "ClusterName": name,
        "ClusterRoleArn": format!("arn:aws:iam::{account}:role/eks-task-worker-cluster"),
        "NodeRoleArn": format!("arn:aws:iam::{account}:role/eks-task-worker-cluster"),
        "SubnetIds": ["subnet-a", "subnet-b"]
    });
    let (_, status, output, error) = world
        .run_state_machine(
            &name,
            &repo_file("statemachines/cluster.asl.json"),
            &input,
            Duration::from_secs(120),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(status, "SUCCEEDED", "{error:?} {output:?}");
    let output: Value = serde_json::from_str(&output.unwrap_or_default()).unwrap_or_default();
    assert_eq!(output["job"]["status"]["succeeded"], 1, "{output}");
    let pod = output["job"]["logs"]["pods"]
        .as_object()
        .and_then(|p| p.values().next().cloned())
        .unwrap_or_default();
    // AWS's sample Job, no annotation of the simulator's: π to 100 digits, parsed.
    assert!(
        pod["containers"]["pi"]["log"]
            .as_f64()
            .is_some_and(|pi| (pi - std::f64::consts::PI).abs() < 1e-9),
        "{output}"
    );
    assert!(
        !worker_may_create_jobs(world, "default").await,
        "deleting the cluster removes the access its entry gave"
    );
    send(&admin, request(http::Method::DELETE, job, Some(&gone)))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}

/// `tests/native/<file>` migrated by the CLI (`eks-task-worker migrate`) onto this
/// world's functions, and nothing else.
fn migrated(world: &World, file: &str) -> String {
    world.migrated(&repo_file(&format!("tests/native/{file}")))
}

/// A state machine written for the native integrations (create a cluster, a nodegroup,
/// run a Job with logs, delete it with `eks:call`, delete the nodegroup and the cluster,
/// with `ResultSelector`, `Choice` and `Catch` on native paths and names), migrated by
/// the recipe of docs/migration.md and nothing else, runs to its end (issue "Drop-in for real").
async fn native_pipeline(world: &World) {
    before_a_created_cluster(world, "native-pipeline").await;
    let name = unique("e2e-native");
    let account = world.fact("/account");
    let role = format!("arn:aws:iam::{account}:role/eks-task-worker-cluster");
    let input = json!({ "ClusterName": name, "ClusterRoleArn": role, "NodeRoleArn": role, "SubnetIds": ["subnet-a", "subnet-b"] });
    let (_, status, output, error) = world
        .run_state_machine(
            &name,
            &migrated(world, "eks-pipeline.asl.json"),
            &input,
            Duration::from_secs(180),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(status, "SUCCEEDED", "{error:?} {output:?}");
    let out: Value = serde_json::from_str(&output.unwrap_or_default()).unwrap_or_default();
    assert!(
        out.get("error").is_none(),
        "no Catch but the planned one: {out}"
    );
    assert_eq!(out["eks"]["Status"], "ACTIVE", "{out}");
    assert_eq!(out["eks"]["Name"], name.as_str(), "{out}");
    assert_eq!(
        out["taken"]["Error"], "EKS.ResourceInUseException",
        "the native Catch on EKS's exception: {out}"
    );
    assert_eq!(out["nodegroup"]["Status"], "ACTIVE", "{out}");
    assert_eq!(out["nodegroup"]["Name"], "workers", "{out}");
    assert_eq!(out["job"]["Name"], "native-pipeline", "{out}");
    assert_eq!(out["job"]["Succeeded"], 1, "{out}");
    let pod = out["job"]["Pods"]
        .as_object()
        .and_then(|p| p.values().next().cloned())
        .unwrap_or_default();
    assert_eq!(pod["containers"]["pi"]["log"], "pi is 3.14159", "{out}");
    assert_eq!(
        out["job"]["Logs"],
        json!(["pi is 3.14159"]),
        "a deep scan is a list, as on AWS: {out}"
    );
    assert_eq!(out["jobDeleted"]["StatusCode"], 200, "{out}");
    assert_eq!(out["jobDeleted"]["Kind"], "Job", "{out}");
    assert_eq!(out["nodegroupDeleted"]["Status"], "DELETED", "{out}");
    assert_eq!(out["clusterDeleted"]["Status"], "DELETED", "{out}");
    assert!(
        !worker_may_create_jobs(world, "default").await,
        "deleting the cluster removes the access the worker gave itself"
    );
}

/// The native resources the pipeline does not use (createCluster's answer, runJob,
/// deleteCluster, and the nodegroup and Fargate profile operations with and without
/// `.sync`), migrated by
/// the recipe and nothing else: each answers in the native shape.
async fn native_rows_without_sync(world: &World) {
    let name = unique("e2e-rows");
    let account = world.fact("/account");
    let role = format!("arn:aws:iam::{account}:role/eks-task-worker-cluster");
    let input = json!({ "ClusterName": name, "ClusterRoleArn": role, "NodeRoleArn": role, "SubnetIds": ["subnet-a"],
                        "JobCluster": world.cluster(), "JobNamespace": "jobs" });
    let (_, status, output, error) = world
        .run_state_machine(
            &name,
            &migrated(world, "eks-rows.asl.json"),
            &input,
            Duration::from_secs(120),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(status, "SUCCEEDED", "{error:?} {output:?}");
    let out: Value = serde_json::from_str(&output.unwrap_or_default()).unwrap_or_default();
    assert_eq!(out["cluster"]["Name"], name.as_str(), "{out}");
    assert_eq!(
        out["cluster"]["Tags"]["eks-task-worker.io/managed-by"], "eks-task-worker",
        "{out}"
    );
    assert_eq!(out["nodegroup"]["Name"], "workers", "{out}");
    assert_eq!(out["nodegroup"]["Cluster"], name.as_str(), "{out}");
    assert_eq!(out["waited"]["Status"], "ACTIVE", "{out}");
    assert_eq!(out["waited"]["Selectors"][0]["Namespace"], "batch", "{out}");
    assert_eq!(out["waitedDeleted"]["Status"], "DELETED", "{out}");
    assert_eq!(out["waitedDeleted"]["Name"], "waited", "{out}");
    assert_eq!(out["started"]["Name"], "started", "{out}");
    assert_eq!(out["startedDeleted"]["Name"], "started", "{out}");
    assert_eq!(out["nodegroupDeleted"]["Name"], "workers", "{out}");
    assert_eq!(out["clusterDeleted"]["Name"], name.as_str(), "{out}");
    assert_eq!(out["job"]["Namespace"], "jobs", "{out}");
    let job = out["job"]["Name"].as_str().unwrap_or_default().to_owned();
    assert!(job.starts_with("native-rows-"), "the created Job: {out}");
    // eks:runJob answers once the Job exists; it then runs on its own.
    let admin = world.admin_kube().unwrap_or_else(|e| panic!("{e}"));
    until_job(&admin, "jobs", &job, Duration::from_secs(60), |j| {
        worker::task::job::phase(j.unwrap_or(&Value::Null)) == worker::task::job::Phase::Complete
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let gone = json!({ "propagationPolicy": "Background" });
    send(
        &admin,
        request(
            http::Method::DELETE,
            &format!("/apis/batch/v1/namespaces/jobs/jobs/{job}"),
            Some(&gone),
        ),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
}

/// The cluster example started with the name of a cluster someone else made (no worker
/// tags, a nodegroup of theirs): createCluster fails, and the example's failure path
/// deletes nothing (RELIABILITY.md, "Ownership and trust": the example on a foreign
/// cluster).
async fn example_cluster_on_someone_elses_cluster(world: &World) {
    let deps = world
        .deps(world.settings())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let eks = deps.eks.clone();
    let name = unique("e2e-foreign-cluster");
    let account = world.fact("/account");
    let role = format!("arn:aws:iam::{account}:role/eks-task-worker-cluster");
    for (path, body) in [
        (
            "/clusters".to_owned(),
            json!({ "name": name, "roleArn": role, "resourcesVpcConfig": { "subnetIds": ["subnet-a"] } }),
        ),
        (
            format!("/clusters/{name}/node-groups"),
            json!({ "nodegroupName": "theirs", "nodeRole": role, "subnets": ["subnet-a"] }),
        ),
    ] {
        eks.call(http::Method::POST, &path, Some(&body))
            .await
            .unwrap_or_else(|e| panic!("{path}: {e:?}"));
    }
    let input = json!({
        "ClusterName": name,
        "ClusterRoleArn": role,
        "NodeRoleArn": role,
        "SubnetIds": ["subnet-a", "subnet-b"]
    });
    let (_, status, _, error) = world
        .run_state_machine(
            &name,
            &repo_file("statemachines/cluster.asl.json"),
            &input,
            Duration::from_secs(90),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (status.as_str(), error.as_deref()),
        ("FAILED", Some("ClusterNotCreated")),
        "the example fails on a name that is taken, and says it made nothing"
    );
    for path in [
        format!("/clusters/{name}"),
        format!("/clusters/{name}/node-groups/theirs"),
    ] {
        let found = eks.call(http::Method::GET, &path, None).await;
        assert!(
            found
                .as_ref()
                .is_ok_and(|v| !v.to_string().contains("DELETING")),
            "{path} was not the example's to delete: {found:?}"
        );
    }
}

/// Bytes of the archived log: 200 MB, as issue "Job insight" asks.
const ARCHIVED_LOG_BYTES: u64 = 200_000_000;

/// The pod simulator's generated log (its `log-bytes` convention): numbered 100-byte
/// lines tagged with the pod and container.
fn simulated_log_sha256(pod: &str, container: &str, bytes: u64) -> String {
    use sha2::Digest;
    let mut tag = format!(" {pod}/{container} ");
    tag.truncate(60);
    let mut hash = sha2::Sha256::new();
    let mut line = String::with_capacity(100);
    for i in 0..bytes / 100 {
        line.clear();
        line.push_str(&format!("{i:012}{tag}"));
        while line.len() < 99 {
            line.push('.');
        }
        line.push('\n');
        hash.update(line.as_bytes());
    }
    format!("{:x}", hash.finalize())
}

/// A 200 MB log archived whole to S3 (moto) while the result keeps a trimmed tail
/// within 262,144 bytes.
async fn archived_log(world: &World) {
    use sha2::Digest;
    let name = unique("e2e-archive");
    let job = sim_job(
        &name,
        &["main"],
        json!({ "sim.eks-task-worker.io/log-bytes": ARCHIVED_LOG_BYTES.to_string() }),
        1,
    );
    let mut payload = world.job_payload(job);
    payload["LogOptions"]["ArchiveUri"] = json!(format!("s3://{}/e2e", world.fact("/log_bucket")));
    let (_, status, output, error) = world
        .run_state_machine(
            &name,
            &world.run_job_machine(payload, json!({})),
            &json!({}),
            Duration::from_secs(240),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(status, "SUCCEEDED", "{error:?}");
    let output = output.unwrap_or_default();
    assert!(output.len() < 262_144, "{}", output.len());
    let output: Value = serde_json::from_str(&output).unwrap_or_default();
    let (pod, entry) = output["logs"]["pods"]
        .as_object()
        .and_then(|p| p.iter().next().map(|(k, v)| (k.clone(), v.clone())))
        .unwrap_or_default();
    let archive = &entry["containers"]["main"]["archive"];
    assert_eq!(archive["bytes"], ARCHIVED_LOG_BYTES, "{archive}");
    assert!(
        entry["containers"]["main"]["log"].is_string(),
        "the trimmed tail stays beside it"
    );
    let uri = archive["uri"].as_str().unwrap_or_default();
    let key = uri
        .strip_prefix(&format!("s3://{}/", world.fact("/log_bucket")))
        .unwrap_or_else(|| panic!("{uri}"));
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&world.sdk("worker").await)
            .force_path_style(true)
            .build(),
    );
    let mut object = s3
        .get_object()
        .bucket(world.fact("/log_bucket"))
        .key(key)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{}", aws_sdk_s3::error::DisplayErrorContext(e)))
        .body;
    let mut hash = sha2::Sha256::new();
    let mut got = 0_u64;
    while let Some(chunk) = object.next().await {
        let chunk = chunk.unwrap_or_else(|e| panic!("{e}"));
        got += chunk.len() as u64;
        hash.update(&chunk);
    }
    assert_eq!(got, ARCHIVED_LOG_BYTES);
    assert_eq!(
        format!("{:x}", hash.finalize()),
        simulated_log_sha256(&pod, "main", ARCHIVED_LOG_BYTES),
        "the archive is the log, byte for byte"
    );
}

/// `eks:call` refused, through the call binary, with the native error names: a path the
/// API server does not know (`EKS.404`), and a call made as a payload's `RoleArn`
/// (assumed with STS) that the cluster does not let in (`EKS.403`).
async fn call_refused(world: &World) {
    for (name, extra, error) in [
        ("e2e-call-404", json!({}), "EKS.404"),
        (
            "e2e-call-role",
            json!({ "RoleArn": world.cluster_role() }),
            "EKS.403",
        ),
    ] {
        let mut payload = json!({ "ClusterName": world.cluster(), "Method": "GET",
            "Path": format!("/api/v1/namespaces/{}/pods/no-such-pod", world.namespace()),
            "TaskToken.$": "$$.Task.Token" });
        if name == "e2e-call-role" {
            payload["Path"] = json!(format!("/api/v1/namespaces/{}/pods", world.namespace()));
        }
        for (k, v) in extra.as_object().cloned().unwrap_or_default() {
            payload[k] = v;
        }
        let definition = json!({ "StartAt": "Call", "States": { "Call": {
            "Type": "Task", "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken", "End": true,
            "Parameters": { "FunctionName": world.fact("/functions/call"), "Payload": payload } } } });
        let (execution, status, _, got) = world
            .run_state_machine(
                &unique(name),
                &definition.to_string(),
                &json!({}),
                Duration::from_secs(60),
            )
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (status.as_str(), got.as_deref()),
            ("FAILED", Some(error)),
            "{name}: {execution}"
        );
    }
}

/// The EMF lines the run-job and poller binaries wrote since `since_ms`: they parse,
/// and name the documented metrics with the cluster and namespace.
fn emitted_metrics(world: &World, since_ms: u64) {
    let mut seen = std::collections::BTreeSet::new();
    for (_, text) in function_output() {
        for line in text.lines() {
            let Ok(doc) = serde_json::from_str::<Value>(line) else {
                continue;
            };
            if doc
                .pointer("/_aws/Timestamp")
                .and_then(Value::as_u64)
                .is_none_or(|t| t < since_ms)
            {
                continue;
            }
            let cw = &doc["_aws"]["CloudWatchMetrics"][0];
            assert_eq!(cw["Namespace"], "EksTaskWorker", "{line}");
            assert_eq!(
                cw["Dimensions"],
                json!([["Cluster", "Namespace"], []]),
                "{line}"
            );
            for m in cw["Metrics"].as_array().cloned().unwrap_or_default() {
                let name = m["Name"].as_str().unwrap_or_default().to_owned();
                assert!(doc[&name].is_number(), "{name} has a value: {line}");
                if doc["Cluster"] == world.cluster().as_str()
                    && doc["Namespace"] == world.namespace().as_str()
                {
                    seen.insert(name);
                }
            }
        }
    }
    for m in [
        "JobsStarted",
        "JobsSucceeded",
        "JobsFailed",
        "CallbackLatency",
        "PollsPerJob",
        "ResultBytes",
        "LogBytesCut",
    ] {
        assert!(
            seen.contains(m),
            "no {m} in the functions' output; saw {seen:?}"
        );
    }
}

/// run-job's log lines carry what Lambda users look for: the level, the request id,
/// the X-Ray trace id, the function's name and whether the invocation was a cold start
/// (the first of its process; the platform runs four processes, the test many more
/// invocations). Every line but an EMF metric's is an invocation's, tasks it spawned
/// included.
fn invocation_fields() {
    let mut cold = (0, 0);
    for (file, text) in function_output() {
        if !file.starts_with("run-job-") {
            continue;
        }
        for line in text.lines() {
            let Ok(entry) = serde_json::from_str::<Value>(line) else {
                continue;
            };
            if entry.get("_aws").is_some() {
                continue;
            }
            let spans = entry["spans"].as_array().cloned().unwrap_or_default();
            let Some(invocation) = spans.iter().find(|s| s["name"] == "invocation") else {
                panic!("{file}: a line outside any invocation: {line}");
            };
            assert!(entry["level"].is_string(), "{file}: no level: {line}");
            assert!(
                spans.iter().any(|s| s["requestId"].is_string()),
                "{file}: no requestId: {line}"
            );
            assert!(
                spans.iter().any(|s| s["xrayTraceId"].is_string()),
                "{file}: no xrayTraceId: {line}"
            );
            assert_eq!(
                invocation["function"], "eks-task-worker-run-job",
                "{file}: {line}"
            );
            match invocation["cold_start"].as_bool() {
                Some(true) => cold.0 += 1,
                Some(false) => cold.1 += 1,
                None => panic!("{file}: no cold_start: {line}"),
            }
        }
    }
    assert!(
        cold.0 > 0 && cold.1 > 0,
        "lines of cold and of warm invocations: {cold:?}"
    );
}

#[tokio::test]
async fn state_machines_run_through_the_real_binaries() {
    let world = World::get();
    let _platform = Platform::start();
    let started_ms = u64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis(),
    )
    .unwrap_or_default();
    tokio::join!(
        example_run_job(&world),
        caught_failure(&world),
        long_job(&world),
        huge_logs(&world),
        example_call(&world),
        stopped_execution(&world),
        // One after the other: every cluster shares the one local API server, so the
        // access a created cluster gives the worker is seen by all (example_cluster
        // checks the worker has none before and after).
        async {
            cluster_create_and_delete(&world).await;
            example_cluster(&world).await;
            example_cluster_on_someone_elses_cluster(&world).await;
            native_pipeline(&world).await;
            native_rows_without_sync(&world).await;
        },
        archived_log(&world),
        call_refused(&world),
    );
    emitted_metrics(&world, started_ms);
    // The secret scan runs last in `make test`, over every binary's logs
    // (scripts/scan-secrets.py).
    invocation_fields();
}
