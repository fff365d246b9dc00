//! The local world as the integration tests see it: the facts `make local-up` wrote,
//! clients for moto and the API server, botocore's tokens, and Step Functions
//! executions waiting on a task token.
//!
//! A test that needs the world and finds it down fails with a message saying how to
//! start it; it never passes by skipping.

// Test support: a missing or malformed world must fail the test loudly.
#![allow(clippy::panic)]

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use aws_credential_types::Credentials;
use serde_json::{json, Value};
use worker::adapters::cluster_connector::ClusterConnector;
use worker::adapters::credentials::AwsCredentials;
use worker::adapters::eks_directory::EksDirectory;
use worker::adapters::kube_client::KubeClient;
use worker::adapters::token::{BearerTokens, ClusterBearer};
use worker::config::timeouts::Timeouts;
use worker::config::Settings;
use worker::contract::certificates::parse_certificates;
use worker::ports::clock::SystemClock;
use worker::ports::kube::{KubeApi, KubeRequest, KubeResponse};
use worker::task::deps::Deps;

/// The running local world.
#[derive(Debug, Clone)]
pub struct World {
    /// The facts from `world.json`.
    pub facts: Value,
}

fn world_dir() -> PathBuf {
    std::env::var_os("LOCAL_WORLD_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.local-world"))
}

/// The CLI binary, `eks-task-worker`, as `make test` builds it.
///
/// # Panics
/// When it is not built.
#[must_use]
pub fn cli() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"),
        PathBuf::from,
    );
    let bin = target.join("debug/eks-task-worker");
    assert!(
        bin.exists(),
        "{} is not built (make test builds it)",
        bin.display()
    );
    bin
}

/// A name unique to this test run: `prefix-<millis><counter>`.
#[must_use]
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() % 100_000_000)
        .unwrap_or(0);
    format!("{prefix}-{ms}{}", N.fetch_add(1, Ordering::SeqCst))
}

impl World {
    /// The world `make local-up` started.
    ///
    /// # Panics
    /// When it is not running: the message says to run `make local-up`.
    #[must_use]
    pub fn get() -> Self {
        let path = world_dir().join("world.json");
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "the local world is not up ({}: {e}); start it with `make local-up`",
                path.display()
            )
        });
        let facts: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
        Self { facts }
    }

    /// A fact as a string.
    #[must_use]
    pub fn fact(&self, pointer: &str) -> String {
        self.facts
            .pointer(pointer)
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("world.json has no {pointer}"))
            .to_owned()
    }

    /// The cluster's name.
    #[must_use]
    pub fn cluster(&self) -> String {
        self.fact("/cluster")
    }

    /// The namespace the worker may use.
    #[must_use]
    pub fn namespace(&self) -> String {
        self.fact("/namespace")
    }

    /// Credentials of `who` (`worker` or `intruder`).
    #[must_use]
    pub fn credentials(&self, who: &str) -> Credentials {
        Credentials::new(
            self.fact(&format!("/{who}/access_key_id")),
            self.fact(&format!("/{who}/secret_access_key")),
            None,
            None,
            "local-world",
        )
    }

    /// An SDK configuration pointing at moto, as `who`.
    pub async fn sdk(&self, who: &str) -> aws_config::SdkConfig {
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new(self.fact("/region")))
            .endpoint_url(self.fact("/aws_endpoint"))
            .credentials_provider(self.credentials(who))
            .load()
            .await
    }

    /// The real adapters, as the worker, against moto and the local cluster.
    ///
    /// # Errors
    /// When the SDK configuration has no credentials.
    pub async fn deps(&self, settings: Settings) -> Result<Deps> {
        let sdk = self.sdk("worker").await;
        let mut deps = Deps::aws(&sdk, settings.clone())?;
        let credentials = Arc::new(AwsCredentials::new(&sdk)?);
        let tokens = Arc::new(BearerTokens::new(
            credentials.clone(),
            Arc::new(SystemClock),
            settings.token_renew_after,
        ));
        deps.connector = Arc::new(ClusterConnector::new(
            Arc::new(EksDirectory::new(&sdk, credentials)),
            tokens,
            settings.region.clone(),
            settings.timeouts,
            settings.trusted_endpoints.clone(),
        ));
        let credentials = Arc::new(AwsCredentials::new(&sdk)?);
        let eks = worker::adapters::eks_rest::EksRest::new(
            &self.fact("/region"),
            Some(self.fact("/aws_endpoint")),
            credentials,
        )
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        deps.eks = Arc::new(eks);
        Ok(deps)
    }

    /// Settings for tests in this world with `extra` variables set (say,
    /// `TRUSTED_ENDPOINTS`).
    #[must_use]
    pub fn settings_with(&self, extra: &[(&str, String)]) -> Settings {
        Settings::from_lookup(|k| {
            if k == "AWS_REGION" {
                return Some(self.fact("/region"));
            }
            extra.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone())
        })
        .unwrap_or_else(|e| panic!("{e}"))
    }

    /// The IAM role the tests create clusters, nodegroups and Fargate profiles with.
    #[must_use]
    pub fn cluster_role(&self) -> String {
        format!(
            "arn:aws:iam::{}:role/eks-task-worker-cluster",
            self.fact("/account")
        )
    }

    /// Tags cluster `name` as the worker's create for the task of `token` tags it (its
    /// task tag, the token's hash), for a test that makes the cluster without a waiting
    /// task (whose create would answer at once, the local EKS making it ACTIVE) and then
    /// polls it as that task's `.sync` create: a create's poll follows only its own
    /// task's cluster.
    ///
    /// # Panics
    /// When EKS cannot describe or tag it.
    pub async fn tag_as_made_for(&self, name: &str, token: &str) {
        let eks = aws_sdk_eks::Client::new(&self.sdk("cluster_admin").await);
        let arn = eks
            .describe_cluster()
            .name(name)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e:?}"))
            .cluster()
            .and_then(|c| c.arn().map(str::to_owned))
            .unwrap_or_default();
        eks.tag_resource()
            .resource_arn(arn)
            .tags(
                worker::contract::tags::TASK_LABEL,
                worker::contract::tags::task_label(token),
            )
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e:?}"));
    }
    /// The real adapters with the poller configured (curve 1 s), for cluster operations.
    ///
    /// # Panics
    /// When they cannot be built.
    pub async fn cluster_deps(&self) -> Deps {
        self.deps(self.poller_settings("1"))
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Default settings for tests in this world.
    #[must_use]
    pub fn settings(&self) -> Settings {
        Settings::from_lookup(|k| (k == "AWS_REGION").then(|| self.fact("/region")))
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// The cluster fields of a payload, with Endpoint and CertificateAuthority given.
    #[must_use]
    pub fn cluster_fields(&self) -> Value {
        json!({ "ClusterName": self.cluster(), "Endpoint": self.fact("/api_endpoint"), "CertificateAuthority": self.fact("/certificate_authority") })
    }

    /// A bearer token made by botocore the way `aws eks get-token` makes it.
    ///
    /// # Errors
    /// When the oracle script fails.
    pub fn botocore_token(
        &self,
        who: &str,
        cluster: &str,
        amz_date: Option<&str>,
    ) -> Result<String> {
        let date = amz_date.map_or_else(
            || {
                time::OffsetDateTime::now_utc().format(&time::macros::format_description!(
                    "[year][month][day]T[hour][minute][second]Z"
                ))
            },
            |d| Ok(d.to_owned()),
        )?;
        let out = Command::new(self.fact("/python"))
            .arg(self.fact("/token_oracle"))
            .args([
                self.fact(&format!("/{who}/access_key_id")),
                self.fact(&format!("/{who}/secret_access_key")),
                "-".into(),
                self.fact("/region"),
                cluster.into(),
                date,
            ])
            .output()
            .context("running the botocore token oracle")?;
        if !out.status.success() {
            bail!(
                "token oracle failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8(out.stdout)?.trim().to_owned())
    }

    /// A client of the local API server that sends `token` and verifies the CA.
    ///
    /// # Errors
    /// When the client cannot be built.
    pub fn kube(&self, token: &str) -> Result<KubeClient> {
        let ders = parse_certificates(&std::fs::read_to_string(self.fact("/ca_file"))?)
            .map_err(anyhow::Error::msg)?;
        let endpoint = url::Url::parse(&self.fact("/api_endpoint"))?;
        KubeClient::new(
            &endpoint,
            ders,
            ClusterBearer::Fixed(token.to_owned()),
            Timeouts::default(),
        )
        .map_err(|e| anyhow::anyhow!("{e}"))
    }

    /// A client of the local API server as the cluster's administrator (the IAM user
    /// `cluster-admin`, bound to `cluster-admin` as EKS binds a cluster's creator).
    ///
    /// # Errors
    /// When the token or client cannot be made.
    pub fn admin_kube(&self) -> Result<KubeClient> {
        self.kube(&self.botocore_token("cluster_admin", &self.cluster(), None)?)
    }

    /// A client of the local API server as the worker (a botocore token).
    ///
    /// # Errors
    /// When the token or client cannot be made.
    pub fn worker_kube(&self) -> Result<KubeClient> {
        self.kube(&self.botocore_token("worker", &self.cluster(), None)?)
    }

    /// Kills the local API server (SIGKILL) and, after `outage`, starts it again with the
    /// same command line and environment (its storage, etcd, kept), as a control plane
    /// restarts one; returns once it answers `/readyz` again.
    ///
    /// # Errors
    /// When it cannot be found, killed, started or does not come back within 60 s.
    pub async fn restart_api_server(&self, outage: Duration) -> Result<()> {
        use std::os::unix::process::CommandExt;
        let dir = world_dir();
        let pid_file = dir.join("pids/kube-apiserver.pid");
        let pid: u32 = std::fs::read_to_string(&pid_file)?.trim().parse()?;
        let words = |file: &str| -> Result<Vec<String>> {
            Ok(std::fs::read(format!("/proc/{pid}/{file}"))?
                .split(|b| *b == 0)
                .filter(|w| !w.is_empty())
                .map(|w| String::from_utf8_lossy(w).into_owned())
                .collect())
        };
        let (args, env) = (words("cmdline")?, words("environ")?);
        let status = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status()?;
        anyhow::ensure!(status.success(), "kill {pid} failed");
        while std::path::Path::new(&format!("/proc/{pid}/cmdline")).exists()
            && std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| !c.is_empty())
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(outage).await;
        let log = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(dir.join("logs/kube-apiserver.log"))?;
        let child = Command::new(&args[0])
            .args(&args[1..])
            .env_clear()
            .envs(env.iter().filter_map(|kv| kv.split_once('=')))
            .stdout(log.try_clone()?)
            .stderr(log)
            .stdin(std::process::Stdio::null())
            .process_group(0)
            .spawn()?;
        std::fs::write(&pid_file, child.id().to_string())?;
        let admin = self.admin_kube()?;
        let until = Instant::now() + Duration::from_secs(60);
        while Instant::now() < until {
            if send(&admin, KubeRequest::get("/readyz"))
                .await
                .is_ok_and(|r| r.status == 200)
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        anyhow::bail!("the API server did not come back within 60 s")
    }

    /// Makes a cluster named `name` (through cluster-ops in-process, as setup; give it a
    /// [`unique`] name) whose bearer tokens the world's authenticator accepts for `seconds` only
    /// (its `local-world/token-lifetime-seconds` tag; EKS: 15 minutes): a test watches
    /// across several token lifetimes in seconds. Every cluster is served by the one
    /// local API server. Returns its name.
    ///
    /// # Errors
    /// When the cluster cannot be made.
    pub async fn short_token_cluster(&self, name: &str, seconds: u32) -> Result<String> {
        let name = name.to_owned();
        worker::task::cluster_ops::handle(
            json!({ "Operation": "createCluster", "Name": name, "RoleArn": self.cluster_role(),
                    "ResourcesVpcConfig": { "SubnetIds": ["subnet-a"] },
                    "Tags": { "local-world/token-lifetime-seconds": seconds.to_string() } }),
            &self.cluster_deps().await,
            None,
        )
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(name)
    }

    /// Deletes a cluster [`World::short_token_cluster`] made.
    ///
    /// # Errors
    /// When it cannot be deleted.
    pub async fn delete_cluster(&self, name: &str) -> Result<()> {
        worker::task::cluster_ops::handle(
            json!({ "Operation": "deleteCluster", "Name": name }),
            &self.cluster_deps().await,
            None,
        )
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(())
    }

    /// Stops the execution `arn` (`StopExecution`).
    ///
    /// # Errors
    /// When moto refuses.
    pub async fn stop_execution(&self, arn: &str) -> Result<()> {
        self.sfn()
            .await
            .stop_execution()
            .execution_arn(arn)
            .send()
            .await?;
        Ok(())
    }

    /// A Step Functions client against moto.
    pub async fn sfn(&self) -> aws_sdk_sfn::Client {
        aws_sdk_sfn::Client::new(&self.sdk("worker").await)
    }

    /// Starts an execution of a one-state machine whose Task waits on
    /// `lambda:invoke.waitForTaskToken` (with `HeartbeatSeconds` when given), and
    /// returns its ARN and the task token from its TaskScheduled event.
    ///
    /// The Task invokes a function that is none of ours (`world-task-waiter`), so the
    /// platform runs nothing for it and only the test answers: were it run-job, the
    /// platform would run it on `{TaskToken}` alone, and its `InvalidInput` answer would
    /// race the answer under test.
    ///
    /// # Errors
    /// When moto fails or the TaskScheduled event does not come.
    pub async fn waiting_execution(
        &self,
        name: &str,
        heartbeat_seconds: Option<u32>,
    ) -> Result<(String, String)> {
        let mut task = json!({
            "Type": "Task",
            "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken",
            "Parameters": { "FunctionName": self.waiter_function(), "Payload": { "TaskToken.$": "$$.Task.Token" } },
            "End": true
        });
        if let Some(h) = heartbeat_seconds {
            task["HeartbeatSeconds"] = json!(h);
        }
        self.execution_waiting_on(
            name,
            &json!({ "StartAt": "Run", "States": { "Run": task } }),
        )
        .await
    }

    /// The ARN of a function no platform runs: a waiting task's token is the test's own.
    #[must_use]
    pub fn waiter_function(&self) -> String {
        format!(
            "arn:aws:lambda:{}:{}:function:world-task-waiter",
            self.fact("/region"),
            self.fact("/account")
        )
    }

    /// Starts an execution of `definition` (its first task waiting on a task token in
    /// `Payload.TaskToken`), and returns its ARN and that token, from its TaskScheduled
    /// event.
    ///
    /// # Errors
    /// When moto fails or the TaskScheduled event does not come.
    pub async fn execution_waiting_on(
        &self,
        name: &str,
        definition: &Value,
    ) -> Result<(String, String)> {
        let sfn = self.sfn().await;
        let machine = sfn
            .create_state_machine()
            .name(name)
            .definition(definition.to_string())
            .role_arn(self.fact("/states_role"))
            .send()
            .await?
            .state_machine_arn()
            .to_owned();
        let execution = sfn
            .start_execution()
            .state_machine_arn(machine)
            .name(name)
            .input("{}")
            .send()
            .await?
            .execution_arn()
            .to_owned();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            let history = sfn
                .get_execution_history()
                .execution_arn(&execution)
                .send()
                .await?;
            for e in history.events() {
                if let Some(d) = e.task_scheduled_event_details() {
                    let params: Value = serde_json::from_str(d.parameters())?;
                    let token = params
                        .pointer("/Payload/TaskToken")
                        .and_then(Value::as_str)
                        .context("no TaskToken in the payload")?;
                    return Ok((execution, token.to_owned()));
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("execution {execution} never scheduled its task")
    }

    /// Waits until the execution ends; returns (status, output, error name).
    ///
    /// # Errors
    /// When it does not end within `within`.
    pub async fn execution_end(
        &self,
        execution: &str,
        within: Duration,
    ) -> Result<(String, Option<String>, Option<String>)> {
        let ended = self.ended(execution, within).await?;
        Ok((ended.status, ended.output, ended.error))
    }

    /// Waits until the execution ends; how it ended, its cause too.
    ///
    /// # Errors
    /// When it does not end within `within`.
    pub async fn ended(&self, execution: &str, within: Duration) -> Result<Ended> {
        let sfn = self.sfn().await;
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            let d = sfn
                .describe_execution()
                .execution_arn(execution)
                .send()
                .await?;
            let status = d.status().as_str().to_owned();
            if status != "RUNNING" {
                return Ok(Ended {
                    status,
                    output: d.output().map(str::to_owned),
                    error: d.error().map(str::to_owned),
                    cause: d.cause().map(str::to_owned),
                });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        bail!("execution {execution} still RUNNING after {within:?}")
    }
}

/// How an execution ended.
#[derive(Debug, Clone)]
pub struct Ended {
    /// `SUCCEEDED`, `FAILED`, `TIMED_OUT`, `ABORTED`.
    pub status: String,
    /// Its output, when it succeeded.
    pub output: Option<String>,
    /// Its error name, when it failed.
    pub error: Option<String>,
    /// Its error's cause, when it failed.
    pub cause: Option<String>,
}

/// Sends a request and returns the response.
///
/// # Errors
/// When the server cannot be reached.
pub async fn send(kube: &dyn KubeApi, request: KubeRequest) -> Result<KubeResponse> {
    kube.send(request, None)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))
}

/// A JSON request.
#[must_use]
pub fn request(method: http::Method, path: &str, body: Option<&Value>) -> KubeRequest {
    match body {
        Some(b) => KubeRequest::json(method, path, b),
        None => KubeRequest {
            method,
            path: path.to_owned(),
            query: Vec::new(),
            body: None,
        },
    }
}

/// A batch/v1 Job for the pod simulator: `annotations` go on the pod template,
/// `containers` are names.
#[must_use]
pub fn sim_job(name: &str, containers: &[&str], annotations: Value, completions: u32) -> Value {
    let containers: Vec<Value> = containers
        .iter()
        .map(|c| json!({ "name": c, "image": "busybox:1.36", "command": ["sh", "-c", "echo hi"] }))
        .collect();
    json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": { "name": name },
        "spec": {
            "backoffLimit": 0,
            "completions": completions,
            "parallelism": completions,
            "template": { "metadata": { "annotations": annotations }, "spec": { "restartPolicy": "Never", "containers": containers } }
        }
    })
}

/// Polls the Job until `check` holds for it (or it is gone, when `check` gets
/// `None`), for at most `within`.
///
/// # Errors
/// When it never holds.
pub async fn until_job(
    kube: &dyn KubeApi,
    namespace: &str,
    name: &str,
    within: Duration,
    check: impl Fn(Option<&Value>) -> bool,
) -> Result<Option<Value>> {
    let deadline = Instant::now() + within;
    loop {
        let r = send(
            kube,
            KubeRequest::get(format!("/apis/batch/v1/namespaces/{namespace}/jobs/{name}")),
        )
        .await?;
        let job = if r.status == 404 {
            None
        } else {
            Some(r.json().map_err(|e| anyhow::anyhow!("{e}"))?)
        };
        if check(job.as_ref()) {
            return Ok(job);
        }
        if Instant::now() > deadline {
            bail!("job {namespace}/{name} never reached the expected state; last seen: {job:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A schedule the worker created, as moto holds it.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// Its name.
    pub name: String,
    /// `at(...)`.
    pub expression: String,
    /// The poller's input.
    pub input: Value,
}

impl World {
    /// Settings with the poller configured and a compressed curve (`curve`, seconds).
    #[must_use]
    pub fn poller_settings(&self, curve: &str) -> Settings {
        let facts = self.clone();
        let curve = curve.to_owned();
        Settings::from_lookup(move |k| match k {
            "AWS_REGION" => Some(facts.fact("/region")),
            "POLL_MIN_SECONDS" => Some("1".into()),
            "POLL_CURVE_SECONDS" => Some(curve.clone()),
            "POLLER_ARN" => Some(facts.fact("/functions/poller")),
            "SCHEDULER_ROLE_ARN" => Some(facts.fact("/scheduler_role")),
            "SCHEDULE_GROUP" => Some(facts.fact("/schedule_group")),
            "POLL_STATE_KEY" => Some(facts.fact("/poll_state_key")),
            _ => None,
        })
        .unwrap_or_else(|e| panic!("{e}"))
    }

    /// The names of the schedules in `group` that start with `prefix`, every page read
    /// (Scheduler, and moto, answer 50 at most a page).
    ///
    /// # Errors
    /// When moto fails.
    pub async fn schedule_names(&self, group: &str, prefix: &str) -> Result<Vec<String>> {
        let client = aws_sdk_scheduler::Client::new(&self.sdk("worker").await);
        let mut pages = client
            .list_schedules()
            .group_name(group)
            .name_prefix(prefix)
            .into_paginator()
            .send();
        let mut names = Vec::new();
        while let Some(page) = pages.next().await {
            names.extend(
                page?
                    .schedules()
                    .iter()
                    .filter_map(|s| s.name().map(str::to_owned)),
            );
        }
        Ok(names)
    }

    /// The schedules in the worker's group for the Job with `uid`.
    ///
    /// # Errors
    /// When moto fails.
    pub async fn schedules(&self, uid: &str) -> Result<Vec<Schedule>> {
        let client = aws_sdk_scheduler::Client::new(&self.sdk("worker").await);
        let group = self.fact("/schedule_group");
        let mut out = Vec::new();
        for name in self
            .schedule_names(&group, &format!("ekstw-{uid}-"))
            .await?
        {
            let name = name.as_str();
            let got = client
                .get_schedule()
                .group_name(&group)
                .name(name)
                .send()
                .await?;
            let input = got.target().and_then(|t| t.input()).unwrap_or_default();
            out.push(Schedule {
                name: name.to_owned(),
                expression: got.schedule_expression().unwrap_or_default().to_owned(),
                input: serde_json::from_str(input)?,
            });
        }
        Ok(out)
    }

    /// Deletes a schedule, as Scheduler does after firing one with
    /// `ActionAfterCompletion: DELETE`.
    ///
    /// # Errors
    /// When moto fails.
    pub async fn delete_schedule(&self, name: &str) -> Result<()> {
        let client = aws_sdk_scheduler::Client::new(&self.sdk("worker").await);
        client
            .delete_schedule()
            .group_name(self.fact("/schedule_group"))
            .name(name)
            .send()
            .await?;
        Ok(())
    }
}

/// The local Lambda platform running the worker's real binaries; stopped on drop. One
/// platform runs at a time: the tests of one binary that each start it take turns (a
/// test's drop would otherwise stop the platform under another test).
#[derive(Debug)]
pub struct Platform {
    _turn: std::sync::MutexGuard<'static, ()>,
}

/// The turn to run the platform, within one test binary.
static PLATFORM_TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());

impl Platform {
    /// Starts it (the binaries must be built: `make test` builds them).
    ///
    /// # Panics
    /// When it does not start.
    #[must_use]
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Starts it with extra arguments (`--aws-endpoint URL`, `--env KEY=VALUE`, …).
    ///
    /// # Panics
    /// When it does not start.
    #[must_use]
    ///
    /// The functions run with template.yaml's settings, but for the poll curve: 2, 2,
    /// 3, 5 s (and `POLL_MIN_SECONDS=1`) in place of 1, 1, 1, 2, … minutes, so that a
    /// test follows a long Job through the poller in seconds. Everything else (the
    /// inline wait of 600 s, each function's timeout) is the template's.
    pub fn start_with(args: &[&str]) -> Self {
        let turn = PLATFORM_TURN
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let scripts = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/local-lambda");
        let status = Command::new(scripts.join("up.sh"))
            .args([
                "--env",
                "POLL_MIN_SECONDS=1",
                "--env",
                "POLL_CURVE_SECONDS=2,2,3,5",
            ])
            .args(args)
            .status()
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(status.success(), "the local Lambda platform did not start");
        Self { _turn: turn }
    }
}

impl Drop for Platform {
    fn drop(&mut self) {
        let scripts = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/local-lambda");
        let _ = Command::new(scripts.join("down.sh")).status();
    }
}

impl World {
    /// Creates a state machine from `definition` (ASL; the template's
    /// `${RunJobFunctionArn}`, `${CallFunctionArn}` and `${ClusterOpsFunctionArn}`
    /// substituted), runs it with
    /// `input`, and waits for its end: (execution ARN, status, output, error).
    ///
    /// # Errors
    /// When moto fails or the execution does not end within `within`.
    pub async fn run_state_machine(
        &self,
        name: &str,
        definition: &str,
        input: &Value,
        within: Duration,
    ) -> Result<(String, String, Option<String>, Option<String>)> {
        let definition = definition
            .replace("${RunJobFunctionArn}", &self.fact("/functions/run-job"))
            .replace("${CallFunctionArn}", &self.fact("/functions/call"))
            .replace(
                "${ClusterOpsFunctionArn}",
                &self.fact("/functions/cluster-ops"),
            );
        let execution = self.start_state_machine(name, &definition, input).await?;
        let (status, output, error) = self.execution_end(&execution, within).await?;
        Ok((execution, status, output, error))
    }

    /// `definition` (written for the native integrations) migrated by the CLI from its
    /// standard input with the world's functions, as docs/migration.md says; every
    /// native state must have moved.
    ///
    /// # Panics
    /// When the CLI fails or leaves a native state.
    #[must_use]
    pub fn migrated(&self, definition: &str) -> String {
        use std::io::Write;
        let mut child = Command::new(cli())
            .args([
                "migrate",
                "--run-job-function",
                &self.fact("/functions/run-job"),
                "--call-function",
                &self.fact("/functions/call"),
                "--cluster-ops-function",
                &self.fact("/functions/cluster-ops"),
            ])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{e}"));
        child
            .stdin
            .take()
            .unwrap_or_else(|| panic!("no stdin"))
            .write_all(definition.as_bytes())
            .unwrap_or_else(|e| panic!("{e}"));
        let out = child.wait_with_output().unwrap_or_else(|e| panic!("{e}"));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            !text.contains(":::eks:"),
            "every native state moved: {text}"
        );
        text
    }

    /// Creates a state machine and starts an execution of it; returns the execution.
    ///
    /// # Errors
    /// When moto fails.
    pub async fn start_state_machine(
        &self,
        name: &str,
        definition: &str,
        input: &Value,
    ) -> Result<String> {
        let sfn = self.sfn().await;
        let machine = sfn
            .create_state_machine()
            .name(name)
            .definition(definition)
            .role_arn(self.fact("/states_role"))
            .send()
            .await?
            .state_machine_arn()
            .to_owned();
        Ok(sfn
            .start_execution()
            .state_machine_arn(machine)
            .name(name)
            .input(input.to_string())
            .send()
            .await?
            .execution_arn()
            .to_owned())
    }
}

impl World {
    /// A one-task state machine running `payload` through run-job (callback pattern),
    /// with `extra` merged into the Task state; a `Caught` Pass state ends it after a
    /// `Catch`.
    #[must_use]
    pub fn run_job_machine(&self, payload: Value, extra: Value) -> String {
        let mut p = payload;
        p["TaskToken.$"] = json!("$$.Task.Token");
        p["ExecutionArn.$"] = json!("$$.Execution.Id");
        let mut task = json!({
            "Type": "Task",
            "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken",
            "Parameters": { "FunctionName": self.fact("/functions/run-job"), "Payload": p },
            "End": true
        });
        for (k, v) in extra.as_object().cloned().unwrap_or_default() {
            task[k] = v;
        }
        json!({ "StartAt": "Run", "States": { "Run": task, "Caught": { "Type": "Pass", "End": true } } }).to_string()
    }

    /// A run-job payload for `job` in the test namespace, with its logs.
    #[must_use]
    pub fn job_payload(&self, job: Value) -> Value {
        json!({ "ClusterName": self.cluster(), "Namespace": self.namespace(), "Job": job, "LogOptions": { "RetrieveLogs": true } })
    }

    /// The task tokens an execution's tasks were given (from its history).
    ///
    /// # Errors
    /// When moto fails.
    pub async fn task_tokens(&self, execution: &str) -> Result<Vec<String>> {
        let history = self
            .sfn()
            .await
            .get_execution_history()
            .execution_arn(execution)
            .send()
            .await?;
        Ok(history
            .events()
            .iter()
            .filter_map(|ev| ev.task_scheduled_event_details())
            .filter_map(|d| serde_json::from_str::<Value>(d.parameters()).ok())
            .filter_map(|p| {
                p.pointer("/Payload/TaskToken")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            })
            .collect())
    }

    /// The status of `execution` now (`RUNNING`, `SUCCEEDED`, …; empty when moto cannot
    /// say).
    pub async fn execution_status(&self, execution: &str) -> String {
        self.sfn()
            .await
            .describe_execution()
            .execution_arn(execution)
            .send()
            .await
            .map(|d| d.status().as_str().to_owned())
            .unwrap_or_default()
    }

    /// Asserts that `execution` ended FAILED with `error` (within 10 s).
    ///
    /// # Panics
    /// When it did not.
    pub async fn expect_failed(&self, execution: &str, error: &str) {
        let (status, _, got) = self
            .execution_end(execution, Duration::from_secs(10))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (status.as_str(), got.as_deref()),
            ("FAILED", Some(error)),
            "{execution}"
        );
    }
}

/// The fault-injecting proxy (`scripts/local-world/faultproxy.py`) between the worker
/// and the API server (TLS, port 16444) and moto (port 15002); stopped when dropped.
pub struct FaultProxy {
    child: std::process::Child,
    /// The API server through the proxy.
    pub kube_endpoint: String,
    /// moto through the proxy (and the control API).
    pub aws_endpoint: String,
}

impl FaultProxy {
    /// Starts it.
    ///
    /// # Panics
    /// When it does not start.
    #[must_use]
    pub fn start(world: &World) -> Self {
        let pki = PathBuf::from(world.fact("/ca_file"))
            .parent()
            .map(PathBuf::from)
            .unwrap_or_default();
        let script =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/local-world/faultproxy.py");
        let api = world
            .fact("/api_endpoint")
            .trim_start_matches("https://")
            .to_owned();
        let moto = world
            .fact("/aws_endpoint")
            .trim_start_matches("http://")
            .to_owned();
        let child = Command::new(world.fact("/python"))
            .arg(script)
            .args([
                "--kube-port",
                "16444",
                "--aws-port",
                "15002",
                "--api",
                &api,
                "--moto",
                &moto,
            ])
            .arg("--ca")
            .arg(pki.join("ca.crt"))
            .arg("--cert")
            .arg(pki.join("apiserver.crt"))
            .arg("--key")
            .arg(pki.join("apiserver.key"))
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("fault proxy: {e}"));
        let proxy = Self {
            child,
            kube_endpoint: "https://127.0.0.1:16444".into(),
            aws_endpoint: "http://127.0.0.1:15002".into(),
        };
        for _ in 0..100 {
            if std::net::TcpStream::connect("127.0.0.1:15002").is_ok()
                && std::net::TcpStream::connect("127.0.0.1:16444").is_ok()
            {
                return proxy;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("the fault proxy did not start");
    }

    async fn control(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http::<http_body_util::Full<bytes::Bytes>>();
        let request = http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.aws_endpoint))
            .header("content-type", "application/json")
            .body(http_body_util::Full::new(bytes::Bytes::from(
                body.map(|b| b.to_string()).unwrap_or_default(),
            )))
            .unwrap_or_else(|e| panic!("{e}"));
        let response = client
            .request(request)
            .await
            .unwrap_or_else(|e| panic!("fault proxy: {e}"));
        let bytes = http_body_util::BodyExt::collect(response.into_body())
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .to_bytes();
        serde_json::from_slice(&bytes).unwrap_or_default()
    }

    /// Adds fault rules (see the script for their shape).
    pub async fn inject(&self, rules: Value) {
        self.control("POST", "/__faults", Some(json!({ "rules": rules })))
            .await;
    }

    /// Removes every rule.
    pub async fn clear(&self) {
        self.control("DELETE", "/__faults", None).await;
    }

    /// How often the rule `id` fired.
    pub async fn fired(&self, id: &str) -> u64 {
        self.control("GET", "/__faults", None).await["rules"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .filter(|r| r["id"] == id)
            .map(|r| r["fired"].as_u64().unwrap_or_default())
            .sum()
    }

    /// The AWS calls the proxy saw whose target (or method and path) contains `fragment`.
    pub async fn calls_to(&self, fragment: &str) -> Vec<Value> {
        self.control("GET", "/__calls", None).await["calls"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|c| c["target"].as_str().is_some_and(|t| t.contains(fragment)))
            .collect()
    }

    /// What the upstream answered the requests a `forward_first` rule `id` forwarded.
    pub async fn forwarded(&self, id: &str) -> Vec<Value> {
        self.control("GET", "/__faults", None).await["forwarded"][id]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// [`FaultProxy::answers`] summed over `tokens` (sent, accepted).
    pub async fn answers_to(&self, tokens: &[String]) -> (usize, usize) {
        let (mut sent, mut accepted) = (0, 0);
        for t in tokens {
            let (s, a) = self.answers(t).await;
            sent += s;
            accepted += a;
        }
        (sent, accepted)
    }

    /// The `SendTaskSuccess`/`SendTaskFailure` calls for `token` that reached Step
    /// Functions (whatever it answered: a second answer is refused there, but it was
    /// sent), and how many of them it accepted. Calls a fault rule answered in Step
    /// Functions' place never reached it and are not counted.
    pub async fn answers(&self, token: &str) -> (usize, usize) {
        let calls = self.control("GET", "/__calls", None).await["calls"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let answers: Vec<&Value> = calls
            .iter()
            .filter(|c| {
                c["token"] == token
                    && c["injected"] != true
                    && c["target"].as_str().is_some_and(|t| {
                        t.ends_with("SendTaskSuccess") || t.ends_with("SendTaskFailure")
                    })
            })
            .collect();
        let accepted = answers.iter().filter(|c| c["status"] == 200).count();
        (answers.len(), accepted)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `state` sealed with the deployment's poll-state key (the world's, in `deps`), as the
/// worker's hand-off seals it.
pub use worker::testing::sealed;

/// Fires `function` once with `input`, by a one-time schedule in moto's Scheduler (in
/// `group`, else the default group), as EventBridge Scheduler fires the template's
/// schedules; the local Lambda platform delivers it.
///
/// # Panics
/// When moto refuses the schedule.
pub async fn fire(world: &World, function: &str, group: Option<&str>, input: &Value) {
    fire_at(
        world,
        &world.fact(&format!("/functions/{function}")),
        group,
        input,
    )
    .await;
}

/// Fires the function `arn` (one of the worker's, or one of the tests' own the platform
/// runs beside them) once with `input`, as [`fire`] does.
///
/// # Panics
/// When moto refuses the schedule.
pub async fn fire_at(world: &World, arn: &str, group: Option<&str>, input: &Value) {
    let client = aws_sdk_scheduler::Client::new(&world.sdk("worker").await);
    let at = worker::contract::time::utc_seconds(std::time::SystemTime::now());
    let function = arn.rsplit(':').next().unwrap_or("function");
    let target = aws_sdk_scheduler::types::Target::builder()
        .arn(arn)
        .role_arn(world.fact("/scheduler_role"))
        .input(input.to_string())
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    client
        .create_schedule()
        .name(unique(&format!("fire-{function}")))
        .set_group_name(group.map(str::to_owned))
        .schedule_expression(format!("at({at})"))
        .flexible_time_window(
            aws_sdk_scheduler::types::FlexibleTimeWindow::builder()
                .mode(aws_sdk_scheduler::types::FlexibleTimeWindowMode::Off)
                .build()
                .unwrap_or_else(|e| panic!("{e}")),
        )
        .action_after_completion(aws_sdk_scheduler::types::ActionAfterCompletion::Delete)
        .target(target)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e:?}"));
}

/// A forged poll state given to the poller: as a forger delivers it (no seal: the key
/// is not theirs), refused by name before anything is read, sent or deleted; then
/// sealed with the deployment's key (as if the key had leaked), the error the poller's
/// own checks end it with (`None`: accepted).
///
/// # Panics
/// When the unsealed state is not refused.
pub async fn forged_poll(
    deps: &Deps,
    forged: &Value,
) -> Option<worker::contract::error::TaskError> {
    let out = worker::task::poller::handle(forged.clone(), deps)
        .await
        .unwrap_or_else(|e| panic!("an unsealed poll state fails the invocation: {e}"));
    assert_eq!(
        out["refused"],
        worker::contract::error::names::UNVERIFIED_POLL_STATE,
        "{out}"
    );
    worker::task::poller::handle(sealed(deps, forged).await, deps)
        .await
        .err()
}

/// Runs a cluster-operation payload through the handler with `deps`' EKS client.
///
/// # Errors
/// The task error.
pub async fn cluster_op(
    deps: &Deps,
    payload: Value,
) -> Result<Value, worker::contract::error::TaskError> {
    worker::task::cluster_ops::handle(payload, deps, None).await
}

impl World {
    /// LocalStack's SDK configuration, as the tests reach it (its Step Functions
    /// activities; any key is its default account).
    pub async fn localstack(&self) -> aws_config::SdkConfig {
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new(self.fact("/region")))
            .endpoint_url(self.fact("/localstack_endpoint"))
            .credentials_provider(Credentials::new("test", "test", None, None, "localstack"))
            .load()
            .await
    }
}

/// Starts an execution of a new state machine (in LocalStack) whose one Task waits on
/// `activity` (with `HeartbeatSeconds` when given), with `input`; returns the
/// execution's ARN. (LocalStack refuses `SendTaskHeartbeat` for a task whose state has
/// no `HeartbeatSeconds`, where AWS accepts it: a test whose Job heartbeats gives one.)
///
/// # Panics
/// When LocalStack refuses.
pub async fn activity_waiter(
    sfn: &aws_sdk_sfn::Client,
    activity: &str,
    name: &str,
    input: &Value,
    heartbeat_seconds: Option<u32>,
) -> String {
    let mut task = json!({ "Type": "Task", "Resource": activity, "End": true });
    if let Some(h) = heartbeat_seconds {
        task["HeartbeatSeconds"] = json!(h);
    }
    let definition = json!({ "StartAt": "Run", "States": { "Run": task } });
    let machine = sfn
        .create_state_machine()
        .name(name)
        .definition(definition.to_string())
        .role_arn("arn:aws:iam::000000000000:role/eks-task-worker-states")
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e:?}"))
        .state_machine_arn()
        .to_owned();
    sfn.start_execution()
        .state_machine_arn(machine)
        .name(name)
        .input(input.to_string())
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e:?}"))
        .execution_arn()
        .to_owned()
}

/// A LocalStack execution once it has ended.
///
/// # Panics
/// When it is still running after `within`.
pub async fn activity_end(
    sfn: &aws_sdk_sfn::Client,
    execution: &str,
    within: Duration,
) -> aws_sdk_sfn::operation::describe_execution::DescribeExecutionOutput {
    let until = Instant::now() + within;
    loop {
        let d = sfn
            .describe_execution()
            .execution_arn(execution)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e:?}"));
        if d.status().as_str() != "RUNNING" {
            return d;
        }
        assert!(
            Instant::now() < until,
            "{execution} still RUNNING after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The functions' own output, as the local Lambda platform captured it: one file per
/// process, `<function>-<n>.log` (not the platform's dead letters beside them, which
/// hold failed deliveries' payloads as an SQS dead-letter queue does).
///
/// # Panics
/// When the platform's log directory cannot be read.
#[must_use]
pub fn function_output() -> Vec<(String, String)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../.local-world/logs/lambda");
    std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(Result::ok)
        .filter(|f| f.file_name().to_string_lossy().ends_with(".log"))
        .map(|f| {
            (
                f.file_name().to_string_lossy().into_owned(),
                String::from_utf8_lossy(&std::fs::read(f.path()).unwrap_or_default()).into_owned(),
            )
        })
        .collect()
}

/// The platform's log lines of the poller's results that name `what`.
#[must_use]
pub fn poller_results(what: &str) -> Vec<String> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../.local-world/logs/lambda-platform.log");
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("result poller") && l.contains(what))
        .map(str::to_owned)
        .collect()
}

/// How many lines of the output of the function `function` (every function's, for "")
/// hold each of `all_of`.
#[must_use]
pub fn log_lines(function: &str, all_of: &[&str]) -> usize {
    let prefix = if function.is_empty() {
        String::new()
    } else {
        format!("{function}-")
    };
    function_output()
        .iter()
        .filter(|(file, _)| file.starts_with(&prefix))
        .map(|(_, text)| {
            text.lines()
                .filter(|l| all_of.iter().all(|n| l.contains(n)))
                .count()
        })
        .sum()
}

/// The logs of the first pod of a run-job result (`logs.pods.<pod>`), or `null`.
#[must_use]
pub fn first_pod_logs(result: &Value) -> Value {
    result["logs"]["pods"]
        .as_object()
        .and_then(|p| p.values().next().cloned())
        .unwrap_or_default()
}
