//! The reliability matrix: faults injected by a real proxy between the worker's real
//! `bootstrap` binaries and the API server / moto, each cell a moto execution of a
//! run-job task. Every cell asserts what the execution ends with, and the promises:
//! no task lost (it ends), one result per token, at most one Job, no Job left running
//! and no schedule left behind. RELIABILITY.md tabulates what one run showed.

// Test helpers fail the test by panicking.
#![allow(clippy::panic)]

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::time::{Duration, Instant};

use futures::FutureExt;
use serde_json::{json, Value};
use world_tests::{send, sim_job, unique, FaultProxy, Platform, World};

/// What a cell ended with.
#[derive(Debug)]
struct Outcome {
    status: String,
    error: Option<String>,
    output: Value,
    /// The task's Jobs: those carrying its task label.
    jobs: usize,
    /// The Jobs named for the cell (its name, or its `generateName` prefix and a
    /// suffix), counted by the test's own reading of names, not the worker's label.
    jobs_named: usize,
    /// The task's Jobs still running by the test's own reading (no `Complete` or
    /// `Failed` condition, not being deleted).
    running_jobs: usize,
    schedules: usize,
    /// SendTaskSuccess/SendTaskFailure calls that reached Step Functions (attempts).
    sent: usize,
    /// Those Step Functions accepted.
    accepted: usize,
    /// The uids of the task's Jobs.
    uids: Vec<String>,
}

struct Cell<'a> {
    world: &'a World,
    proxy: &'a FaultProxy,
}

/// The matrix's cells in the order they run, each one test of this binary's own harness
/// (`cargo test -p world-tests --test faults -- create-500` runs one; `--exact` for a
/// name that is the start of others). [`matrix`] builds the same cells; a name in one
/// list and not the other fails every cell that is asked for.
const CELLS: &[&str] = &[
    "create-500",
    "create-lost-generate-name",
    "create-lost-fixed-name",
    "create-lost-rr-generate-name",
    "create-lost-rr-fixed-name",
    "read-503",
    "log-500",
    "read-429",
    "watch-timeout",
    "watch-cut",
    "sts-reset",
    "schedule-500",
    "schedule-429",
    "success-throttled",
    "success-500",
    "success-lost",
    "failure-lost",
    "success-lost-poller",
    "heartbeat-lost",
    "poller-killed",
    "run-job-killed",
    "run-job-twice",
    "run-job-twice-turn-refused",
    "run-job-twice-handed-off",
    "poll-twice",
    "poll-twice-finished",
    "ns-deleted",
    "timed-out",
    "outage-heartbeat",
    "apiserver-restart",
    "poller-dead-letter",
    "heartbeat-60",
    "stopped-inline",
    "token-lifetimes",
    "deadline-503",
    "poll-state-limit",
    "archive-2gb",
    "archive-aborted",
    "cluster-gone",
    "cluster-active-late",
    "forged-delete-throttled",
    "credentials-expiry",
    "pods-list-once",
    "pods-list-down",
];

/// A cell's future, borrowing the matrix's world, proxy and platform.
type CellFuture<'a> = Pin<Box<dyn Future<Output = ()> + 'a>>;

/// A test's request to the matrix's runner: run `cell`, send back how it ended.
struct Ask {
    cell: &'static str,
    answer: std::sync::mpsc::Sender<Result<(), String>>,
}

/// The matrix's cells, built once against one world, proxy and platform, each run when
/// its test asks for it; a cell that panics is answered red with its message, and its
/// faults cleared (the proxy's rules, the platform's chaos switch), so that they cannot
/// reach the next cell.
struct Cells<'a> {
    proxy: &'a FaultProxy,
    chaos: &'a std::path::Path,
    cells: Vec<(&'static str, CellFuture<'a>)>,
}

impl<'a> Cells<'a> {
    fn add(&mut self, name: &'static str, cell: impl Future<Output = ()> + 'a) {
        self.cells.push((name, Box::pin(cell)));
    }

    /// The names built, in order, when they are [`CELLS`]; else what differs.
    fn listed(&self) -> Result<(), String> {
        let built: Vec<&str> = self.cells.iter().map(|(n, _)| *n).collect();
        if built == CELLS {
            Ok(())
        } else {
            Err(format!(
                "the matrix builds the cells {built:?}, CELLS lists {CELLS:?}"
            ))
        }
    }

    async fn run(&mut self, name: &str) -> Result<(), String> {
        let Some(at) = self.cells.iter().position(|(n, _)| *n == name) else {
            return Err(format!("no cell {name} (or it ran already)"));
        };
        let (_, cell) = self.cells.remove(at);
        let began = Instant::now();
        let ended = AssertUnwindSafe(cell)
            .catch_unwind()
            .await
            .map_err(|panic| {
                panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                    .unwrap_or_else(|| "the cell panicked".to_owned())
            });
        if ended.is_err() {
            self.proxy.clear().await;
            let _ = std::fs::remove_file(self.chaos);
        }
        eprintln!(
            "fault cell {name}: {} in {} s",
            if ended.is_ok() { "green" } else { "RED" },
            began.elapsed().as_secs()
        );
        ended
    }
}

/// Whether a function logged that it stood down for another delivery of the task of
/// the Job `name`: it waited for the other's answer (the turn to answer), or it came
/// after that answer and found the task gone (the finished Job left alone: the cell's
/// count of Jobs shows it was not deleted).
fn stood_down(name: &str) -> bool {
    let job = format!("\"job\":\"{name}");
    [
        "another delivery answers this task",
        "the task is gone; the Job is no longer followed",
    ]
    .iter()
    .any(|said| world_tests::log_lines("", &[&job, said]) > 0)
}

impl Cell<'_> {
    /// Runs a Job named `name` (pod-simulator `annotations`, payload `extra`) through the
    /// proxy with `rules` injected (`{name}` in a rule stands for the Job's name). With
    /// `"GenerateName": true` in `extra` the Job has `metadata.generateName: "<name>-"`
    /// instead of a name, as users write them.
    async fn run(&self, name: &str, annotations: Value, extra: Value, rules: Value) -> Outcome {
        let (world, proxy) = (self.world, self.proxy);
        let rules: Value = serde_json::from_str(&rules.to_string().replace("{name}", name))
            .unwrap_or_else(|e| panic!("{e}"));
        proxy.inject(rules).await;
        let mut job = sim_job(name, &["main"], annotations.clone(), 1);
        let mut payload_extra = extra.as_object().cloned().unwrap_or_default();
        if payload_extra.remove("GenerateName") == Some(json!(true)) {
            job["metadata"].as_object_mut().map(|m| m.remove("name"));
            job["metadata"]["generateName"] = json!(format!("{name}-"));
        }
        let mut payload = world.job_payload(job);
        payload["Endpoint"] = json!(proxy.kube_endpoint);
        payload["CertificateAuthority"] = json!(world.fact("/certificate_authority"));
        let mut state_extra = json!({});
        // How long the cell waits for the execution's end: 150 s past the Job's run, or
        // `CellWaitSeconds` (not part of the payload).
        let run_seconds = annotations["sim.eks-task-worker.io/run-seconds"]
            .as_str()
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(1);
        let wait = payload_extra
            .remove("CellWaitSeconds")
            .and_then(|w| w.as_u64())
            .unwrap_or(150 + run_seconds);
        for (k, v) in payload_extra {
            if k == "TimeoutSeconds" || k == "HeartbeatSeconds" {
                state_extra[k] = v;
            } else {
                payload[k] = v;
            }
        }
        let namespace = payload["Namespace"].as_str().unwrap_or_default().to_owned();
        let (execution, status, output, error) = world
            .run_state_machine(
                name,
                &world.run_job_machine(payload, state_extra),
                &json!({}),
                Duration::from_secs(wait),
            )
            .await
            .unwrap_or_else(|e| panic!("{name}: the task was lost: {e}"));
        let tokens = world.task_tokens(&execution).await.unwrap_or_default();
        assert!(!tokens.is_empty(), "{name}: the task got a token");
        // Give a late delivery (a retried poll, a second answer) time to show.
        tokio::time::sleep(Duration::from_secs(5)).await;
        // The task's Jobs: every Job carrying its task label, whatever its name.
        let mut jobs = Vec::new();
        for t in &tokens {
            jobs.extend(
                self.jobs_labelled(&namespace, &worker::contract::tags::task_label(t))
                    .await,
            );
        }
        let running_jobs = jobs.iter().filter(|j| still_running(j)).count();
        let jobs_named = self
            .jobs(&namespace, None)
            .await
            .iter()
            .filter(|j| {
                j["metadata"]["name"]
                    .as_str()
                    .is_some_and(|n| n == name || n.starts_with(&format!("{name}-")))
            })
            .count();
        let mut schedules = 0;
        for j in &jobs {
            let uid = j["metadata"]["uid"].as_str().unwrap_or_default();
            schedules += world
                .schedules(uid)
                .await
                .map(|s| s.len())
                .unwrap_or_default();
        }
        let (sent, accepted) = proxy.answers_to(&tokens).await;
        let o = Outcome {
            status,
            error,
            output: serde_json::from_str(&output.unwrap_or_default()).unwrap_or_default(),
            jobs: jobs.len(),
            jobs_named,
            running_jobs,
            schedules,
            sent,
            accepted,
            uids: jobs
                .iter()
                .filter_map(|j| j["metadata"]["uid"].as_str().map(str::to_owned))
                .collect(),
        };
        println!(
            "cell {}: {} {:?} jobs={} named={} running={} schedules={} sent={} accepted={}",
            name.rsplit_once('-').map_or(name, |(n, _)| n),
            o.status,
            o.error,
            o.jobs,
            o.jobs_named,
            o.running_jobs,
            o.schedules,
            o.sent,
            o.accepted
        );
        o
    }

    /// The `CreateSchedule` calls the proxy saw for the polls of the cell's Job.
    async fn schedules_of(&self, o: &Outcome) -> Vec<Value> {
        let uid = o.uids.first().map_or("", String::as_str);
        self.proxy
            .calls_to(&format!("POST /schedules/ekstw-{uid}"))
            .await
    }

    /// The Jobs in `namespace` with the task label `label`.
    async fn jobs_labelled(&self, namespace: &str, label: &str) -> Vec<Value> {
        self.jobs(
            namespace,
            Some(format!("{}={label}", worker::contract::tags::TASK_LABEL)),
        )
        .await
    }

    /// The Jobs in `namespace` (matching `selector`).
    async fn jobs(&self, namespace: &str, selector: Option<String>) -> Vec<Value> {
        let kube = self.world.admin_kube().unwrap_or_else(|e| panic!("{e}"));
        let mut request = worker::ports::kube::KubeRequest::get(format!(
            "/apis/batch/v1/namespaces/{namespace}/jobs"
        ));
        if let Some(s) = selector {
            request = request.param("labelSelector", s);
        }
        let list = send(&kube, request)
            .await
            .and_then(|r| r.json().map_err(|e| anyhow::anyhow!("{e}")))
            .unwrap_or_else(|e| panic!("{e}"));
        list["items"].as_array().cloned().unwrap_or_default()
    }

    /// A request/response run-job task (no token, as `lambda:invoke` sends it) whose Job
    /// has `generateName` (or the fixed name `name`), with `rules` injected: what the
    /// handler returned, and the Jobs whose name starts with `name` (no task label is
    /// known outside the invocation). moto's Lambda stub cannot carry a request/response
    /// result back (docs/local-world.md), so the handler runs in-process, with the
    /// real adapters, through the proxy.
    async fn run_request_response(
        &self,
        name: &str,
        generate: bool,
        rules: Value,
    ) -> (Result<Value, worker::contract::error::TaskError>, usize) {
        let (world, proxy) = (self.world, self.proxy);
        let rules: Value = serde_json::from_str(&rules.to_string().replace("{name}", name))
            .unwrap_or_else(|e| panic!("{e}"));
        proxy.inject(rules).await;
        let mut job = sim_job(name, &["main"], json!({}), 1);
        if generate {
            job["metadata"].as_object_mut().map(|m| m.remove("name"));
            job["metadata"]["generateName"] = json!(format!("{name}-"));
        }
        let mut payload = world.job_payload(job);
        payload["Endpoint"] = json!(proxy.kube_endpoint);
        payload["CertificateAuthority"] = json!(world.fact("/certificate_authority"));
        let settings = world.settings_with(&[
            (
                "TRUSTED_ENDPOINTS",
                format!("{}={}", world.cluster(), proxy.kube_endpoint),
            ),
            ("KUBE_READ_TIMEOUT_SECONDS", "4".into()),
        ]);
        let deps = world.deps(settings).await.unwrap_or_else(|e| panic!("{e}"));
        let result = worker::task::run_job::handle(payload, &deps, None).await;
        let jobs = self
            .jobs(&world.namespace(), None)
            .await
            .into_iter()
            .filter(|j| {
                j["metadata"]["name"]
                    .as_str()
                    .is_some_and(|n| n.starts_with(name))
            })
            .count();
        println!(
            "cell {name}: {:?} jobs={jobs}",
            result.as_ref().err().map(|e| &e.name)
        );
        (result, jobs)
    }
}

/// The `main` container's log of every pod in a cell's result.
fn main_logs(o: &Outcome) -> Vec<Value> {
    o.output["logs"]["pods"]
        .as_object()
        .map(|pods| {
            pods.values()
                .map(|p| p["containers"]["main"]["log"].clone())
                .collect()
        })
        .unwrap_or_default()
}

/// A RoleBinding `name` of the worker's Role in a namespace to the IAM identity `arn`
/// (the Kubernetes username EKS gives it), as `bootstrap` makes it.
fn role_binding(name: &str, arn: &str) -> Value {
    json!({ "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": { "name": name },
            "subjects": [{ "kind": "User", "name": arn, "apiGroup": "rbac.authorization.k8s.io" }],
            "roleRef": { "kind": "Role", "name": "eks-task-worker", "apiGroup": "rbac.authorization.k8s.io" } })
}

/// The promises every cell keeps, whatever the fault.
fn kept_promises(cell: &str, o: &Outcome) {
    assert_eq!(o.sent, 1, "{cell}: one answer sent per token: {o:?}");
    assert_eq!(o.accepted, 1, "{cell}: and accepted: {o:?}");
    assert!(o.jobs <= 1, "{cell}: one Job per task: {o:?}");
    assert_eq!(
        o.jobs_named, o.jobs,
        "{cell}: the Jobs named for the task are the ones labelled for it: {o:?}"
    );
    assert_eq!(o.running_jobs, 0, "{cell}: no Job left running: {o:?}");
    assert_eq!(o.schedules, 0, "{cell}: no schedule left: {o:?}");
}

/// A cell whose one answer Step Functions took and whose reply was lost: taken once
/// (the proxy forwarded it, Step Functions answered 200, the worker heard nothing),
/// tried once more and refused (the task closed: no second answer taken), and nothing
/// left behind. The proxy counts the first as sent, not accepted (its reply never
/// came back), and the second as sent and refused.
async fn taken_then_refused(cell: &str, proxy: &FaultProxy, rule: &str, o: &Outcome) {
    assert_eq!(
        proxy.forwarded(rule).await,
        vec![json!(200)],
        "{cell}: the answer taken by Step Functions, its reply lost"
    );
    assert_eq!(
        (o.sent, o.accepted),
        (2, 0),
        "{cell}: two attempts, the first taken (reply lost), the second refused: {o:?}"
    );
    assert_eq!((o.jobs, o.jobs_named), (1, 1), "{cell}: one Job: {o:?}");
    assert_eq!(o.running_jobs, 0, "{cell}: no Job left running: {o:?}");
    assert_eq!(o.schedules, 0, "{cell}: no schedule left: {o:?}");
}

/// The log lines of `function` that say an answer's reply was lost and the next try
/// found the task closed.
fn lost_replies(function: &str) -> usize {
    world_tests::log_lines(
        function,
        &["reply was lost and the next found the task closed"],
    )
}

/// The cell's execution succeeded (so its Job ran: one, not none), and the promises
/// held.
fn succeeded(cell: &str, o: &Outcome) {
    assert_eq!(o.status, "SUCCEEDED", "{cell}: {o:?}");
    assert_eq!(o.jobs, 1, "{cell}: the task's one Job: {o:?}");
    kept_promises(cell, o);
}

/// A Job still running, by the test's own reading of it (not the worker's): no
/// `Complete` or `Failed` condition true, and not being deleted.
fn still_running(job: &Value) -> bool {
    let finished = job["status"]["conditions"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|c| (c["type"] == "Complete" || c["type"] == "Failed") && c["status"] == "True")
    });
    !finished && job["metadata"]["deletionTimestamp"].is_null()
}

fn status_body(code: u16, reason: &str, retry_after: Option<u64>) -> Value {
    let mut body = json!({ "kind": "Status", "apiVersion": "v1", "status": "Failure", "message": format!("injected {code}"), "reason": reason, "code": code });
    if let Some(s) = retry_after {
        body["details"] = json!({ "retryAfterSeconds": s });
    }
    body
}

/// A Job that outlives the inline wait, so that the poller takes it (curve 2,2,3,5 s).
fn long() -> Value {
    json!({ "sim.eks-task-worker.io/run-seconds": "4" })
}

fn handed_off() -> Value {
    json!({ "InlineWaitSeconds": 1 })
}

/// One test per cell (libtest-mimic), run one at a time (they share the world, the fault
/// proxy's fixed ports and the platform) by one runner: a thread with a large stack
/// (the cells are futures of their own, and a debug build lays them out on it) that
/// starts the world's proxy and platform when the first cell is asked for, so that
/// `--list`, or a filter that leaves nothing, starts nothing.
fn main() {
    let mut args = libtest_mimic::Arguments::from_args();
    args.test_threads = Some(1);
    let (ask, asked) = tokio::sync::mpsc::unbounded_channel::<Ask>();
    let runner = std::thread::Builder::new()
        .name("the_fault_matrix".into())
        .stack_size(512 << 20)
        .spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap_or_else(|e| panic!("{e}"))
                .block_on(Box::pin(matrix(asked)));
        })
        .unwrap_or_else(|e| panic!("{e}"));
    let trials = CELLS
        .iter()
        .map(|&cell| {
            let ask = ask.clone();
            libtest_mimic::Trial::test(cell, move || {
                let (answer, answered) = std::sync::mpsc::channel();
                ask.send(Ask { cell, answer })
                    .map_err(|_| "the matrix's runner has ended (see its panic above)")?;
                answered
                    .recv()
                    .map_err(|_| "the matrix's runner ended during the cell (see its panic above)")?
                    .map_err(libtest_mimic::Failed::from)
            })
        })
        .collect();
    let conclusion = libtest_mimic::run(&args, trials);
    drop(ask);
    let _ = runner.join();
    conclusion.exit();
}

/// Answers the cells asked for on `asked`, one at a time, until every test has asked.
#[allow(clippy::too_many_lines)]
async fn matrix(mut asked: tokio::sync::mpsc::UnboundedReceiver<Ask>) {
    let Some(first) = asked.recv().await else {
        return;
    };

    let world = World::get();
    let proxy = FaultProxy::start(&world);
    let chaos = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../.local-world/chaos");
    let _ = std::fs::remove_file(&chaos);
    // The payloads name the proxy as their Endpoint: the deployment lists it as trusted
    // (TRUSTED_ENDPOINTS), as a user lists a proxy of their own.
    // And for the cluster token-lifetimes makes (its name known now, as an endpoint is
    // listed per cluster name).
    let short = unique("f-short-tokens");
    let trusted = format!(
        "TRUSTED_ENDPOINTS={}={},{short}={}",
        world.cluster(),
        proxy.kube_endpoint,
        proxy.kube_endpoint
    );
    // Tokens renewed after 15 s (template: 600), for the cell whose cluster's tokens live
    // 30 s (token-lifetimes); every other cell's tokens live 15 minutes and are merely
    // renewed more often.
    let _platform = Platform::start_with(&[
        "--aws-endpoint",
        &proxy.aws_endpoint,
        "--env",
        "TOKEN_RENEW_SECONDS=15",
        "--env",
        "KUBE_READ_TIMEOUT_SECONDS=4",
        "--env",
        &trusted,
        "--chaos-file",
        &chaos.to_string_lossy(),
    ]);
    let platform_log = || {
        std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../.local-world/logs/lambda-platform.log"),
        )
        .unwrap_or_default()
    };
    let cell = Cell {
        world: &world,
        proxy: &proxy,
    };
    let pods_list = format!(
        "/api/v1/namespaces/{}/pods\\?labelSelector=controller-uid",
        world.namespace()
    );
    let kube = json!("kube");
    let jobs_path = format!("/apis/batch/v1/namespaces/{}/jobs", world.namespace());
    // The Job's create, forwarded to the API server (which makes the Job), its answer
    // then lost: `reset` drops the connection, `status` puts an error in its place.
    let lost_create = |id: &str, action: Value| {
        let mut rule = json!({ "id": id, "side": "kube", "method": "POST", "path": format!("{jobs_path}$"), "body": "{name}", "forward_first": true, "times": 1 });
        for (k, v) in action.as_object().cloned().unwrap_or_default() {
            rule[k] = v;
        }
        json!([rule])
    };

    let mut cells = Cells {
        proxy: &proxy,
        chaos: &chaos,
        cells: Vec::new(),
    };

    // 1. Kubernetes 5xx on create, on read (the poller's), on the log read.
    cells.add("create-500", async {
        // The API server made the Job; a 500 came back in place of its answer.
        let name = unique("f-create-500");
        let o = cell
            .run(
                &name,
                json!({}),
                json!({}),
                lost_create(
                    &name,
                    json!({ "status": 500, "reply": status_body(500, "InternalError", None) }),
                ),
            )
            .await;
        assert_eq!(proxy.fired(&name).await, 1, "the fault fired");
        assert_eq!(
            proxy.forwarded(&name).await,
            vec![json!(201)],
            "the API server made the Job"
        );
        assert_eq!(
            (o.status.as_str(), o.jobs),
            ("SUCCEEDED", 1),
            "the made Job is adopted: {o:?}"
        );
        kept_promises("create-500", &o);
    });

    // 1b. The create's answer lost after the API server made the Job: generateName and
    // a fixed name, callback (the task label) and request/response (the invocation's key).
    {
        let (cell, proxy, lost_create) = (&cell, &proxy, &lost_create);
        for (cell_name, generate) in [
            ("create-lost-generate-name", true),
            ("create-lost-fixed-name", false),
        ] {
            cells.add(cell_name, async move {
                let name = unique(&format!("f-{cell_name}"));
                let extra = if generate {
                    json!({ "GenerateName": true })
                } else {
                    json!({})
                };
                let o = cell
                    .run(
                        &name,
                        json!({}),
                        extra,
                        lost_create(&name, json!({ "reset": true })),
                    )
                    .await;
                assert_eq!(proxy.fired(&name).await, 1, "{cell_name}: the fault fired");
                assert_eq!(
                    proxy.forwarded(&name).await,
                    vec![json!(201)],
                    "{cell_name}: the API server made the Job"
                );
                assert_eq!(
                    (o.status.as_str(), o.jobs),
                    ("SUCCEEDED", 1),
                    "{cell_name}: {o:?}"
                );
                kept_promises(cell_name, &o);
            });
        }
        for (cell_name, generate) in [
            ("create-lost-rr-generate-name", true),
            ("create-lost-rr-fixed-name", false),
        ] {
            cells.add(cell_name, async move {
                let name = unique(&format!("f-{cell_name}"));
                let (result, jobs) = cell
                    .run_request_response(
                        &name,
                        generate,
                        lost_create(&name, json!({ "reset": true })),
                    )
                    .await;
                assert_eq!(proxy.fired(&name).await, 1, "{cell_name}: the fault fired");
                assert_eq!(
                    proxy.forwarded(&name).await,
                    vec![json!(201)],
                    "{cell_name}: the API server made the Job"
                );
                let job = result.unwrap_or_else(|e| panic!("{cell_name}: not {e}"));
                assert_eq!(jobs, 1, "{cell_name}: one Job: {job}");
                assert!(
                    job["metadata"]["name"]
                        .as_str()
                        .is_some_and(|n| n.starts_with(&name)),
                    "{cell_name}: the result is the Job: {job}"
                );
            });
        }
    }

    cells.add("read-503", async {
        let name = unique("f-read-503");
        let o = cell
            .run(&name, long(), handed_off(), json!([{ "id": name, "side": kube, "method": "GET", "path": format!("{jobs_path}/{{name}}$"), "status": 503, "reply": status_body(503, "ServiceUnavailable", None), "times": 2 }]))
            .await;
        assert_eq!(proxy.fired(&name).await, 2);
        succeeded("read-503", &o);
    });

    cells.add("log-500", async {
        let name = unique("f-log-500");
        let o = cell
            .run(&name, json!({ "sim.eks-task-worker.io/log": "hello\n" }), json!({}), json!([{ "id": name, "side": kube, "method": "GET", "path": "/pods/{name}-[a-z0-9]+/log", "status": 500, "reply": status_body(500, "InternalError", None), "times": 0 }]))
            .await;
        assert!(proxy.fired(&name).await >= 1, "the fault fired");
        assert_eq!(o.status, "SUCCEEDED", "{o:?}");
        let container = o.output["logs"]["pods"]
            .as_object()
            .and_then(|p| p.values().next().cloned())
            .unwrap_or_default()["containers"]["main"]
            .clone();
        assert_eq!(
            container["error"], "EKS.500",
            "the log's place says why: {o:?}"
        );
        kept_promises("log-500", &o);
    });

    // 2. 429 with Retry-After, honoured.
    cells.add("read-429", async {
        let name = unique("f-read-429");
        let o = cell
            .run(&name, long(), handed_off(), json!([{ "id": name, "side": kube, "method": "GET", "path": format!("{jobs_path}/{{name}}$"), "status": 429, "headers": { "Retry-After": "2" }, "reply": status_body(429, "TooManyRequests", Some(2)), "times": 1 }]))
            .await;
        assert_eq!(proxy.fired(&name).await, 1, "the fault fired");
        succeeded("read-429", &o);
    });

    // 3. A read timeout, and a watch cut in the middle of the Job.
    cells.add("watch-timeout", async {
        let name = unique("f-watch-timeout");
        let o = cell
            .run(&name, json!({ "sim.eks-task-worker.io/run-seconds": "2" }), json!({}), json!([{ "id": name, "side": kube, "method": "GET", "path": "watch=.*{name}|{name}.*watch=", "delay": 6, "times": 1 }]))
            .await;
        assert_eq!(proxy.fired(&name).await, 1, "the fault fired");
        succeeded("watch-timeout", &o);
    });

    cells.add("watch-cut", async {
        let name = unique("f-watch-cut");
        let o = cell
            .run(&name, json!({ "sim.eks-task-worker.io/run-seconds": "3" }), json!({}), json!([{ "id": name, "side": kube, "method": "GET", "path": "watch=.*{name}|{name}.*watch=", "cut_after": 200, "times": 0 }]))
            .await;
        assert!(proxy.fired(&name).await >= 1, "the fault fired");
        succeeded("watch-cut", &o);
    });

    // 4. STS unreachable while getting the credentials for the token (RoleArn).
    cells.add("sts-reset", async {
        let name = unique("f-sts-reset");
        let role = format!(
            "arn:aws:iam::{}:role/eks-task-worker-function",
            world.fact("/account")
        );
        let o = cell
            .run(&name, json!({}), json!({ "RoleArn": role }), json!([{ "id": name, "side": "aws", "target": "AssumeRole", "reset": true, "times": 0 }]))
            .await;
        assert!(proxy.fired(&name).await >= 1, "the fault fired");
        assert_eq!(
            (o.status.as_str(), o.error.as_deref(), o.jobs),
            ("FAILED", Some("EksTaskWorker.CredentialsError"), 0),
            "{o:?}"
        );
        kept_promises("sts-reset", &o);
        // Later cells must not meet it: it took every AssumeRole (times 0).
        proxy.clear().await;
    });

    // 5. CreateSchedule failing, then throttled, at the hand-off.
    cells.add("schedule-500", async {
        let name = unique("f-schedule-500");
        let o = cell
            .run(&name, long(), handed_off(), json!([{ "id": name, "side": "aws", "method": "POST", "path": "^/schedules/", "status": 500, "reply": { "Message": "injected" }, "headers": { "x-amzn-ErrorType": "InternalServerException" }, "times": 1 }]))
            .await;
        assert_eq!(proxy.fired(&name).await, 1);
        succeeded("schedule-500", &o);
    });

    cells.add("schedule-429", async {
        let name = unique("f-schedule-429");
        let o = cell
            .run(&name, long(), handed_off(), json!([{ "id": name, "side": "aws", "method": "POST", "path": "^/schedules/", "status": 429, "reply": { "Message": "Rate exceeded" }, "headers": { "x-amzn-ErrorType": "ThrottlingException" }, "times": 2 }]))
            .await;
        assert_eq!(proxy.fired(&name).await, 2, "the fault fired");
        succeeded("schedule-429", &o);
    });

    // 6. SendTaskSuccess throttled, then failing with a 5xx.
    cells.add("success-throttled", async {
        let name = unique("f-success-throttled");
        let o = cell
            .run(&name, json!({}), json!({}), json!([{ "id": name, "side": "aws", "target": "SendTaskSuccess", "status": 400, "reply": { "__type": "ThrottlingException", "message": "Rate exceeded" }, "times": 2 }]))
            .await;
        assert_eq!(proxy.fired(&name).await, 2);
        succeeded("success-throttled", &o);
    });

    cells.add("success-500", async {
        let name = unique("f-success-500");
        let o = cell
            .run(&name, json!({}), json!({}), json!([{ "id": name, "side": "aws", "target": "SendTaskSuccess", "status": 500, "reply": { "__type": "InternalFailure", "message": "injected" }, "times": 1 }]))
            .await;
        assert_eq!(proxy.fired(&name).await, 1, "the fault fired");
        succeeded("success-500", &o);
    });

    // 6b. An answer Step Functions took whose reply was then lost (the connection cut
    // after it): the worker tries again and Step Functions refuses the closed task. One
    // answer taken, two attempts, the task ended as the first said; inline and by the
    // poller, a success and a failure. A heartbeat whose reply was lost is sent again.
    cells.add("success-lost", async {
        let name = unique("f-success-lost");
        let before = lost_replies("run-job");
        let o = cell
            .run(&name, json!({}), json!({}), json!([{ "id": name, "side": "aws", "target": "SendTaskSuccess", "forward_first": true, "reset": true, "times": 1 }]))
            .await;
        assert_eq!(o.status, "SUCCEEDED", "{o:?}");
        taken_then_refused("success-lost", &proxy, &name, &o).await;
        assert_eq!(lost_replies("run-job"), before + 1, "the lost reply named in the log");
    });

    cells.add("failure-lost", async {
        let name = unique("f-failure-lost");
        let before = lost_replies("run-job");
        let o = cell
            .run(&name, json!({ "sim.eks-task-worker.io/exit-code": "1" }), json!({}), json!([{ "id": name, "side": "aws", "target": "SendTaskFailure", "forward_first": true, "reset": true, "times": 1 }]))
            .await;
        assert_eq!(
            (o.status.as_str(), o.error.as_deref()),
            ("FAILED", Some("EksTaskWorker.JobFailed")),
            "{o:?}"
        );
        taken_then_refused("failure-lost", &proxy, &name, &o).await;
        assert_eq!(lost_replies("run-job"), before + 1, "the lost reply named in the log");
    });

    cells.add("success-lost-poller", async {
        let name = unique("f-success-lost-p");
        let before = lost_replies("poller");
        let o = cell
            .run(&name, long(), handed_off(), json!([{ "id": name, "side": "aws", "target": "SendTaskSuccess", "forward_first": true, "reset": true, "times": 1 }]))
            .await;
        assert_eq!(o.status, "SUCCEEDED", "{o:?}");
        taken_then_refused("success-lost-poller", &proxy, &name, &o).await;
        assert_eq!(lost_replies("poller"), before + 1, "the lost reply named in the log");
    });

    cells.add("heartbeat-lost", async {
        let name = unique("f-heartbeat-lost");
        let o = cell
            .run(&name, long(), handed_off(), json!([{ "id": name, "side": "aws", "target": "SendTaskHeartbeat", "forward_first": true, "reset": true, "times": 1 }]))
            .await;
        assert_eq!(proxy.forwarded(&name).await, vec![json!(200)], "a heartbeat taken, its reply lost");
        succeeded("heartbeat-lost", &o);
    });

    // 7. The poller killed (SIGKILL) in the middle of a poll, its event delivered again.
    cells.add("poller-killed", async {
        let name = unique("f-poller-killed");
        std::fs::write(&chaos, "kill poller 1").unwrap_or_else(|e| panic!("{e}"));
        let o = cell
            .run(&name, long(), handed_off(), json!([{ "id": name, "side": "aws", "target": "SendTaskHeartbeat", "delay": 3, "times": 1 }]))
            .await;
        assert_eq!(proxy.fired(&name).await, 1, "the heartbeat was held");
        assert_eq!(o.status, "SUCCEEDED", "{o:?}");
        assert!(!chaos.exists(), "the kill switch was used");
        assert!(
            platform_log().contains("failed (Runtime.ExitError): trying it again"),
            "the killed poll was delivered again"
        );
        kept_promises("poller-killed", &o);
    });

    cells.add("run-job-killed", async {
        // run-job's process SIGKILLed 4 s into its invocation, the Job created and running
        // (60 s: still running at the kill however slow the machine; creating it takes
        // under a second on an idle one). Step Functions invokes synchronously: Lambda
        // reports the crash to it and never delivers the invocation again, so the task
        // fails by Lambda's name.
        let name = unique("f-run-job-killed");
        std::fs::write(&chaos, "kill run-job 4").unwrap_or_else(|e| panic!("{e}"));
        let o = cell
            .run(
                &name,
                json!({ "sim.eks-task-worker.io/run-seconds": "60" }),
                json!({}),
                json!([]),
            )
            .await;
        assert!(!chaos.exists(), "the kill switch was used");
        assert_eq!(
            (o.status.as_str(), o.error.as_deref()),
            ("FAILED", Some("Lambda.Unknown")),
            "{o:?}"
        );
        assert_eq!((o.sent, o.jobs), (0, 1), "the worker sent nothing: {o:?}");
    });

    // 8. The same run-job event delivered twice at once (a generateName Job, as users
    // write them); the same poll twice at once.
    cells.add("run-job-twice", async {
        let name = unique("f-run-job-twice");
        std::fs::write(&chaos, "twice run-job").unwrap_or_else(|e| panic!("{e}"));
        let o = cell
            .run(
                &name,
                json!({ "sim.eks-task-worker.io/run-seconds": "2" }),
                json!({ "GenerateName": true }),
                json!([]),
            )
            .await;
        assert_eq!((o.status.as_str(), o.jobs), ("SUCCEEDED", 1), "{o:?}");
        assert!(!chaos.exists(), "the duplicate switch was used");
        assert!(
            platform_log().contains("delivering run-job"),
            "the event was delivered twice"
        );
        assert!(
            stood_down(&name),
            "one delivery stood down: the other answered"
        );
        kept_promises("run-job-twice", &o);
    });

    // Both deliveries of one event watch the one Job to its end, and the first two
    // writes of the answering turn (the annotation on the Job, under its
    // resourceVersion) are refused 409 as if another write had won: a delivery that met
    // one reads the Job again and finds no one answering, so one of them answers, once.
    cells.add("run-job-twice-turn-refused", async {
        let name = unique("f-twice-turn");
        std::fs::write(&chaos, "twice run-job").unwrap_or_else(|e| panic!("{e}"));
        let o = cell
            .run(
                &name,
                json!({ "sim.eks-task-worker.io/run-seconds": "2" }),
                json!({}),
                json!([{ "id": name, "side": kube, "method": "PATCH", "path": format!("{jobs_path}/{{name}}$"),
                         "status": 409, "reply": status_body(409, "Conflict", None), "times": 2 }]),
            )
            .await;
        assert_eq!((o.status.as_str(), o.jobs), ("SUCCEEDED", 1), "{o:?}");
        assert!(!chaos.exists(), "the duplicate switch was used");
        assert_eq!(proxy.fired(&name).await, 2, "the turn's first two writes refused");
        kept_promises("run-job-twice-turn-refused", &o);
    });

    // Both deliveries follow the one Job past their inline wait and hand it off under
    // the one name: the second meets the first's schedule, reads it back, finds it its
    // own poll (sealed by the deployment, same task and attempt): one chain of polls.
    cells.add("run-job-twice-handed-off", async {
        let name = unique("f-run-job-twice-h");
        std::fs::write(&chaos, "twice run-job").unwrap_or_else(|e| panic!("{e}"));
        let o = cell
            .run(
                &name,
                long(),
                json!({ "GenerateName": true, "InlineWaitSeconds": 1 }),
                json!([]),
            )
            .await;
        assert_eq!((o.status.as_str(), o.jobs), ("SUCCEEDED", 1), "{o:?}");
        assert!(!chaos.exists(), "the duplicate switch was used");
        let uid = o.uids.first().map_or("", String::as_str);
        let first = worker::contract::poll_state::schedule_name(uid, 0);
        let at_first = |t: &str| {
            t.split_once(' ')
                .and_then(|(_, path)| path.strip_prefix(&format!("/schedules/{first}")))
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('?'))
        };
        let calls: Vec<Value> = proxy
            .calls_to(&first)
            .await
            .into_iter()
            .filter(|c| c["target"].as_str().is_some_and(at_first))
            .collect();
        let status = |method: &str| -> Vec<u64> {
            calls
                .iter()
                .filter(|c| c["target"].as_str().is_some_and(|t| t.starts_with(method)))
                .filter_map(|c| c["status"].as_u64())
                .collect()
        };
        let mut created = status("POST ");
        created.sort_unstable();
        assert_eq!(created.len(), 2, "both deliveries handed off: {calls:?}");
        assert_eq!(created[0], 200, "one schedule made: {calls:?}");
        assert!(created[1] >= 400, "the other met it: {calls:?}");
        assert_eq!(status("GET "), vec![200], "read back once: {calls:?}");
        let fresh = proxy
            .calls_to(&format!("POST /schedules/ekstw-{uid}-"))
            .await
            .into_iter()
            .filter(|c| {
                c["target"]
                    .as_str()
                    .is_some_and(|t| t.ends_with("-0") && !at_first(t))
            })
            .count();
        assert_eq!(fresh, 0, "no poll under a fresh name: it was its own");
        kept_promises("run-job-twice-handed-off", &o);
    });

    cells.add("poll-twice", async {
        let name = unique("f-poll-twice");
        std::fs::write(&chaos, "twice poller").unwrap_or_else(|e| panic!("{e}"));
        let o = cell.run(&name, long(), handed_off(), json!([])).await;
        assert!(!chaos.exists(), "the duplicate switch was used");
        succeeded("poll-twice", &o);
        // Both deliveries asked for the next poll under the one deterministic name; the
        // second met ConflictException, read the schedule there back and found it its
        // own poll (sealed by the deployment, same task and attempt): one next schedule.
        let next = worker::contract::poll_state::schedule_name(
            o.uids.first().map_or("", String::as_str),
            1,
        );
        let (asked, read): (Vec<Value>, Vec<Value>) = proxy
            .calls_to(&next)
            .await
            .into_iter()
            .partition(|c| c["target"].as_str().is_some_and(|t| t.starts_with("POST ")));
        assert_eq!(read.len(), 1, "the taken name read back once: {read:?}");
        let made = asked.iter().filter(|c| c["status"] == 200).count();
        let refused = asked
            .iter()
            .filter(|c| {
                c["status"]
                    .as_u64()
                    .is_some_and(|s| (400..500).contains(&s))
            })
            .count();
        assert_eq!(
            asked.len(),
            2,
            "both deliveries scheduled the next poll: {asked:?}"
        );
        // (AWS answers the conflict with 409, moto with 400: the worker reads the error
        // code, ConflictException, not the status.)
        assert_eq!(
            (made, refused),
            (1, 1),
            "one schedule made, the other refused as a conflict: {asked:?}"
        );
    });

    // The poll that finds the Job finished, delivered twice at once: both see it done,
    // one answers (the turn on the Job), the other stands down.
    cells.add("poll-twice-finished", async {
        let name = unique("f-poll-twice-finished");
        std::fs::write(&chaos, "twice poller").unwrap_or_else(|e| panic!("{e}"));
        let o = cell
            .run(
                &name,
                json!({ "sim.eks-task-worker.io/run-seconds": "2" }),
                // The first poll 5 s after the hand-off: the 2 s Job is done by then.
                json!({ "InlineWaitSeconds": 1, "PollCurveSeconds": [5] }),
                // The first answer held 3 s on its way: both deliveries meet the task
                // still open, so the turn (not the task's end) decides who answers.
                json!([{ "id": name, "side": "aws", "target": "SendTaskSuccess", "delay": 3, "times": 1 }]),
            )
            .await;
        assert_eq!(cell.proxy.fired(&name).await, 1, "the answer was held");
        assert!(!chaos.exists(), "the duplicate switch was used");
        assert!(
            stood_down(&name),
            "both polls saw the Job finished; one stood down"
        );
        succeeded("poll-twice-finished", &o);
    });

    // 9. The namespace deleted while the poller follows its Job (a namespace of its own,
    // with the worker's Role and RoleBinding in it, as bootstrap makes them).
    cells.add("ns-deleted", async {
        ns_deleted(&world, &cell).await;
    });

    // 9. The task timed out while the poller follows the Job: the Job is deleted.
    cells.add("timed-out", async {
        let name = unique("f-timed-out");
        // Rules with no action only count: the Job's create, and its delete.
        let (made, deleted) = (format!("{name}-create"), format!("{name}-delete"));
        let o = cell
            .run(
                &name,
                json!({ "sim.eks-task-worker.io/run-seconds": "60" }),
                json!({ "InlineWaitSeconds": 1, "TimeoutSeconds": 4 }),
                json!([{ "id": made, "side": kube, "method": "POST", "path": format!("{jobs_path}$"), "body": "{name}", "times": 0 },
                       { "id": deleted, "side": kube, "method": "DELETE", "path": format!("{jobs_path}/{{name}}$"), "times": 0 }]),
            )
            .await;
        assert_eq!(proxy.fired(&made).await, 1, "the Job was made");
        assert_eq!(
            (o.status.as_str(), o.error.as_deref()),
            ("FAILED", Some("States.Timeout")),
            "{o:?}"
        );
        let kube = world.worker_kube().unwrap_or_else(|e| panic!("{e}"));
        world_tests::until_job(
            &kube,
            &world.namespace(),
            &name,
            Duration::from_secs(30),
            |j| j.is_none(),
        )
        .await
        .unwrap_or_else(|e| panic!("the next poll deletes the timed-out task's Job: {e}"));
        assert!(proxy.fired(&deleted).await >= 1, "the worker deleted it");
        assert_eq!(
            (o.sent, o.accepted),
            (0, 0),
            "nobody waits: no answer: {o:?}"
        );
    });

    // 10. Long invocations and flaky clusters.
    cells.add("outage-heartbeat", async {
        // Every read of the Job answered 503 for 15 requests: run-job's (3 tries: it hands
        // the Job to the poller instead of failing the task) and four polls' (3 tries
        // each; a fifth failed poll in a row would fail the task, MAX_FAILED_POLLS),
        // about 19 s on an idle machine, longer than the state's HeartbeatSeconds (12:
        // twice the ~6 s between a failed poll's heartbeats, so that a busy machine does
        // not time the task out on its own); the Job runs 30 s. Each failed poll still
        // sends its heartbeat.
        let name = unique("f-outage");
        let o = cell
            .run(&name, json!({ "sim.eks-task-worker.io/run-seconds": "30" }), json!({ "InlineWaitSeconds": 1, "HeartbeatSeconds": 12 }), json!([{ "id": name, "side": kube, "method": "GET", "path": format!("{jobs_path}/{{name}}$"), "status": 503, "reply": status_body(503, "ServiceUnavailable", None), "times": 15 }]))
            .await;
        assert_eq!(proxy.fired(&name).await, 15, "the outage lasted 15 reads");
        succeeded("outage-heartbeat", &o);
    });

    cells.add("apiserver-restart", async {
        // The API server killed 3 s into a 20 s Job's inline watch and started again 2 s
        // later, its storage kept: the watch breaks, the worker watches again or hands
        // the Job to the poller, and the task ends with the Job's result.
        let name = unique("f-apiserver-restart");
        let run = cell.run(
            &name,
            json!({ "sim.eks-task-worker.io/run-seconds": "20", "sim.eks-task-worker.io/log": "survived\n" }),
            json!({}),
            json!([]),
        );
        // A restarted API server answers /readyz before its authorizer has read the
        // RoleBindings, and for that moment refuses the worker with 403 (the CI run of
        // 5afa153 met it once). EKS's control plane sits behind a load balancer that
        // sends no request to a server until it is healthy; so does the cell: the proxy
        // resets every request from the kill until the new server lets the worker in.
        let down = format!("{name}-down");
        let restart = async {
            tokio::time::sleep(Duration::from_secs(3)).await;
            proxy
                .inject(json!([{ "id": down, "side": "kube", "reset": true, "times": 0 }]))
                .await;
            let restarted = world.restart_api_server(Duration::from_secs(2)).await;
            let kube = world.worker_kube().unwrap_or_else(|e| panic!("{e}"));
            let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
            while send(&kube, worker::ports::kube::KubeRequest::get(&jobs_path))
                .await
                .map_or(true, |r| r.status != 200)
            {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "the restarted API server never let the worker in"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            proxy.clear().await;
            restarted
        };
        let (o, restarted) = tokio::join!(run, restart);
        restarted.unwrap_or_else(|e| panic!("{e}"));
        succeeded("apiserver-restart", &o);
    });

    cells.add("poller-dead-letter", async {
        dead_letter(&world, &cell).await;
    });

    cells.add("heartbeat-60", async {
        // `HeartbeatSeconds: 60` (common in native state machines) on a Job that runs
        // 150 s watched inline (a state's `InlineWaitSeconds: 600`), with the template's
        // heartbeat every 30 s (HEARTBEAT_SECONDS).
        // Every heartbeat is counted.
        let name = unique("f-heartbeat-60");
        let beats = format!("{name}-beats");
        let o = cell
            .run(
                &name,
                json!({ "sim.eks-task-worker.io/run-seconds": "150" }),
                json!({ "HeartbeatSeconds": 60, "InlineWaitSeconds": 600 }),
                json!([{ "id": beats, "side": "aws", "target": "SendTaskHeartbeat", "times": 0 }]),
            )
            .await;
        let sent = proxy.fired(&beats).await;
        proxy.clear().await;
        assert!(sent >= 4, "a heartbeat every 30 s of the 150: {sent}");
        let handed = cell.schedules_of(&o).await;
        assert!(
            handed.is_empty(),
            "answered inline, never handed off: {handed:?}"
        );
        succeeded("heartbeat-60", &o);
    });

    cells.add("stopped-inline", async {
        stopped_inline(&world, &cell).await;
    });

    cells.add("token-lifetimes", async {
        token_lifetimes(&world, &cell, &short).await;
    });

    cells.add("deadline-503", async {
        // Every request about Jobs held 3 s, then answered 503 with `Retry-After: 10`,
        // for longer than run-job's invocation has: 25 s for this one invocation (the
        // platform's `timeout` switch; the template's 900 would make the cell 15 minutes
        // long), so 5 s once the margin kept for the answer (20 s) is set aside. A try
        // and two pauses would take 29 s: the worker must fail the task by name before
        // Lambda kills it, not be killed retrying.
        let name = unique("f-deadline-503");
        std::fs::write(&chaos, "timeout run-job 25").unwrap_or_else(|e| panic!("{e}"));
        let o = cell
            .run(&name, json!({}), json!({}), json!([{ "id": name, "side": kube, "path": format!("^{jobs_path}"), "delay": 3, "status": 503, "headers": { "Retry-After": "10" }, "reply": status_body(503, "ServiceUnavailable", Some(10)), "times": 0 }]))
            .await;
        proxy.clear().await;
        assert!(!chaos.exists(), "the timeout switch was used");
        assert_eq!(
            (o.status.as_str(), o.error.as_deref(), o.jobs),
            ("FAILED", Some("EKS.503"), 0),
            "{o:?}"
        );
        kept_promises("deadline-503", &o);
    });

    cells.add("poll-state-limit", async {
        // Every read of the Job answered 503 with a 10,000-character message full of
        // characters JSON escapes, 12 times: run-job's three tries (it hands the Job
        // over), then three polls' three each. Each failed poll writes its failure into
        // the poll state it schedules next; the world's Scheduler refuses an input over
        // 8,192 characters, as AWS does.
        let name = unique("f-state-limit");
        let mut body = status_body(503, "ServiceUnavailable", None);
        body["message"] = json!("\"\u{1}\\<>".repeat(2000));
        let o = cell
            .run(&name, json!({ "sim.eks-task-worker.io/run-seconds": "20" }), json!({ "InlineWaitSeconds": 1 }), json!([{ "id": name, "side": kube, "method": "GET", "path": format!("{jobs_path}/{{name}}$"), "status": 503, "reply": body, "times": 12 }]))
            .await;
        assert_eq!(proxy.fired(&name).await, 12, "the 503s were answered");
        let scheduled = cell.schedules_of(&o).await;
        assert!(
            scheduled.len() >= 4 && scheduled.iter().all(|c| c["status"] == 200),
            "the hand-off and every failed poll's next poll scheduled: {scheduled:?}"
        );
        succeeded("poll-state-limit", &o);
    });

    cells.add("archive-2gb", async {
        archive_2gb(&world, &cell).await;
    });

    cells.add("archive-aborted", async {
        // Every part of the archive's upload refused (S3's 500, the SDK's own retries
        // included): the upload is aborted (no parts left to pay for), the answer
        // still goes, its log entry saying the archive failed.
        let name = unique("f-archive-aborted");
        let bucket = world.fact("/log_bucket");
        let refused = "<Error><Code>InternalError</Code><Message>injected</Message></Error>";
        let o = cell
            .run(&name, json!({ "sim.eks-task-worker.io/log": "a log to archive\n" }),
                 json!({ "LogOptions": { "RetrieveLogs": true, "ArchiveUri": format!("s3://{bucket}/aborted") } }),
                 json!([{ "id": name, "side": "aws", "method": "PUT", "path": "[?&]partNumber=", "status": 500,
                          "reply": refused, "headers": { "Content-Type": "application/xml" }, "times": 0 }]))
            .await;
        assert!(proxy.fired(&name).await >= 1, "the parts were refused");
        proxy.clear().await;
        let aborted = proxy
            .calls_to("/aborted/")
            .await
            .into_iter()
            .filter(|c| {
                c["target"]
                    .as_str()
                    .is_some_and(|t| t.starts_with("DELETE ") && t.contains("uploadId="))
            })
            .count();
        assert_eq!(aborted, 1, "the upload aborted once");
        let entry = &o.output["logs"]["pods"]
            .as_object()
            .and_then(|p| p.values().next().cloned())
            .unwrap_or_default()["containers"]["main"];
        assert!(
            entry["archive"]["error"].is_string(),
            "the answer says the archive failed: {entry}"
        );
        succeeded("archive-aborted", &o);
    });

    cells.add("cluster-gone", async {
        cluster_gone(&world, &cell).await;
    });

    cells.add("cluster-active-late", async {
        cluster_active_late(&world, &cell).await;
    });

    cells.add("forged-delete-throttled", async {
        forged_delete_throttled(&world, &cell).await;
    });

    cells.add("credentials-expiry", async {
        credentials_expiry(&world, &cell).await;
    });

    cells.add("pods-list-once", async {
        // The list of the finished Job's pods answered 500 once: it is tried again, as
        // reads are, and the logs come back.
        let name = unique("f-pods-once");
        let o = cell
            .run(&name, json!({ "sim.eks-task-worker.io/log": "hello\n" }), json!({}), json!([{ "id": name, "side": kube, "method": "GET", "path": &pods_list, "status": 500, "reply": status_body(500, "InternalError", None), "times": 1 }]))
            .await;
        assert_eq!(proxy.fired(&name).await, 1, "the fault fired");
        let log = o.output["logs"]["pods"]
            .as_object()
            .and_then(|p| p.values().next().cloned())
            .unwrap_or_default()["containers"]["main"]["log"]
            .clone();
        assert_eq!(log, json!("hello\n"), "{o:?}");
        succeeded("pods-list-once", &o);
    });

    cells.add("pods-list-down", async {
        // Every list of the pods answered 500: the Job succeeded, so does the task; the
        // logs' place says why they are missing (native log retrieval is best effort).
        let name = unique("f-pods-down");
        let o = cell
            .run(&name, json!({ "sim.eks-task-worker.io/log": "hello\n" }), json!({}), json!([{ "id": name, "side": kube, "method": "GET", "path": &pods_list, "status": 500, "reply": status_body(500, "InternalError", None), "times": 0 }]))
            .await;
        let fired = proxy.fired(&name).await;
        proxy.clear().await;
        assert!(fired >= 3, "every try failed: {fired}");
        assert_eq!(o.output["logs"]["error"], "EKS.500", "{o:?}");
        assert_eq!(o.output["status"]["succeeded"], 1, "{o:?}");
        succeeded("pods-list-down", &o);
    });
    let listed = cells.listed();
    let mut next = Some(first);
    while let Some(Ask { cell, answer }) = next {
        let ended = match &listed {
            Ok(()) => cells.run(cell).await,
            Err(e) => Err(e.clone()),
        };
        let _ = answer.send(ended);
        next = asked.recv().await;
    }
}

/// The poller failing all its retries: once the Job is handed off, every next poll's
/// `CreateSchedule` is refused (500), so each poll reads the Job, heartbeats, and cannot
/// arrange the next: its invocation fails, the platform tries it twice more (as Lambda
/// does an asynchronous invocation), then dead-letters it. Nothing polls the task any
/// more: it ends by its `TimeoutSeconds` (45: the three deliveries take about 25 s),
/// its Job running on. The redrive of docs/run-job.md
/// (the dead letter's poll state given to the poller, here its handler in-process with
/// the same adapters) then finds the task gone and deletes the Job.
async fn dead_letter(world: &World, cell: &Cell<'_>) {
    let name = unique("f-dead-letter");
    let o = cell
        .run(&name, json!({ "sim.eks-task-worker.io/run-seconds": "300" }), json!({ "InlineWaitSeconds": 1, "TimeoutSeconds": 45 }), json!([{ "id": name, "side": "aws", "method": "POST", "path": "^/schedules/ekstw-[0-9a-f-]{36}-[1-9][0-9]*$", "status": 500, "reply": { "Message": "injected" }, "headers": { "x-amzn-ErrorType": "InternalServerException" }, "times": 0 }]))
        .await;
    let fired = cell.proxy.fired(&name).await;
    cell.proxy.clear().await;
    // Each delivery tries the hand-off four times (its own retry, the one policy: the
    // SDK's retry is off, or each try would be three).
    assert_eq!(fired, 12, "three deliveries, four tries each: {fired}");
    assert_eq!(
        (o.status.as_str(), o.error.as_deref(), o.running_jobs),
        ("FAILED", Some("States.Timeout"), 1),
        "{o:?}"
    );
    let letters = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../.local-world/logs/lambda/dead-letters.jsonl"),
    )
    .unwrap_or_default();
    let state = letters
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|l| l["requestPayload"]["JobName"] == name.as_str())
        .map(|l| l["requestPayload"].clone())
        .unwrap_or_else(|| panic!("the poll was dead-lettered: {letters}"));
    // The poller's redrive: with its key (the dead letter carries the sealed state).
    let settings = world.settings_with(&[
        (
            "TRUSTED_ENDPOINTS",
            format!("{}={}", world.cluster(), cell.proxy.kube_endpoint),
        ),
        ("POLL_STATE_KEY", world.fact("/poll_state_key")),
    ]);
    let deps = world.deps(settings).await.unwrap_or_else(|e| panic!("{e}"));
    let redriven = worker::task::poller::handle(state, &deps)
        .await
        .unwrap_or_else(|e| panic!("the redrive: {e}"));
    assert_eq!(redriven["jobDeleted"], true, "{redriven}");
    println!("cell dead-letter: redriven {redriven}");
}

async fn ns_deleted(world: &World, cell: &Cell<'_>) {
    let ns = unique("f-ns");
    let admin = world.admin_kube().unwrap_or_else(|e| panic!("{e}"));
    let rules: Value =
        serde_json::from_str(include_str!("../../shared/src/task/worker-role-rules.json"))
            .unwrap_or_else(|e| panic!("{e}"));
    let rbac = "/apis/rbac.authorization.k8s.io/v1/namespaces";
    for (path, body) in [
        (
            "/api/v1/namespaces".to_owned(),
            json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": ns } }),
        ),
        (
            format!("{rbac}/{ns}/roles"),
            json!({ "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": { "name": "eks-task-worker" }, "rules": rules }),
        ),
        (
            format!("{rbac}/{ns}/rolebindings"),
            role_binding("eks-task-worker", &world.fact("/worker/arn")),
        ),
    ] {
        let r = send(
            &admin,
            world_tests::request(http::Method::POST, &path, Some(&body)),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(r.status < 300, "{path}: {}", r.status);
    }
    let name = unique("f-ns-deleted");
    let delete_namespace = async {
        tokio::time::sleep(Duration::from_secs(4)).await;
        send(
            &admin,
            world_tests::request(
                http::Method::DELETE,
                &format!("/api/v1/namespaces/{ns}"),
                None,
            ),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    };
    let made = format!("{name}-create");
    let (o, ()) = tokio::join!(
        cell.run(
            &name,
            json!({ "sim.eks-task-worker.io/run-seconds": "60" }),
            json!({ "InlineWaitSeconds": 1, "Namespace": ns }),
            json!([{ "id": made, "side": "kube", "method": "POST", "path": format!("/apis/batch/v1/namespaces/{ns}/jobs$"), "body": "{name}", "times": 0 }])
        ),
        delete_namespace
    );
    assert_eq!(cell.proxy.fired(&made).await, 1, "the Job was made in {ns}");
    // The poller's next read meets the namespace going (its Job gone: JobVanished) or
    // gone with the worker's RoleBinding (EKS.403): either way, one answer. The Jobs are
    // counted in the cell's own namespace (where they were).
    assert_eq!(o.status, "FAILED", "{o:?}");
    assert!(
        matches!(
            o.error.as_deref(),
            Some("EksTaskWorker.JobVanished" | "EKS.403")
        ),
        "{o:?}"
    );
    assert_eq!((o.sent, o.accepted), (1, 1), "{o:?}");
    assert_eq!(o.running_jobs, 0, "no Job left running: {o:?}");
}

/// An execution stopped while its 120 s Job is watched inline (heartbeats every 30 s,
/// the template's HEARTBEAT_SECONDS): the next heartbeat is refused, the watch ends and
/// the Job is deleted within a heartbeat interval of the stop, not when the inline
/// window (here 600 s) closes.
async fn stopped_inline(world: &World, cell: &Cell<'_>) {
    let name = unique("f-stopped-inline");
    let execution = format!(
        "arn:aws:states:{}:{}:execution:{name}:{name}",
        world.fact("/region"),
        world.fact("/account")
    );
    let kube = world.admin_kube().unwrap_or_else(|e| panic!("{e}"));
    let namespace = world.namespace();
    let stop = async {
        world_tests::until_job(&kube, &namespace, &name, Duration::from_secs(60), |j| {
            j.is_some()
        })
        .await
        .unwrap_or_else(|e| panic!("the Job was never made: {e}"));
        tokio::time::sleep(Duration::from_secs(2)).await;
        world
            .stop_execution(&execution)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        tokio::time::Instant::now()
    };
    let (o, stopped) = tokio::join!(
        cell.run(
            &name,
            json!({ "sim.eks-task-worker.io/run-seconds": "120" }),
            json!({ "InlineWaitSeconds": 600 }),
            json!([])
        ),
        stop
    );
    assert_eq!(o.status, "ABORTED", "{o:?}");
    world_tests::until_job(&kube, &namespace, &name, Duration::from_secs(45), |j| {
        j.is_none_or(|j| j.pointer("/metadata/deletionTimestamp").is_some())
    })
    .await
    .unwrap_or_else(|e| panic!("the stopped task's Job is still there: {e}"));
    let after = stopped.elapsed();
    println!("cell stopped-inline: the Job deleted {after:?} after the stop");
    assert!(
        after < Duration::from_secs(35),
        "deleted within a heartbeat interval (30 s) of the stop: {after:?}"
    );
    assert_eq!(
        (o.sent, o.accepted),
        (0, 0),
        "nobody waits: no answer: {o:?}"
    );
}

/// A watch across several token lifetimes: the authenticator accepts this cluster's
/// tokens for 30 s (the world's `local-world/token-lifetime-seconds` tag; EKS: 15
/// minutes), the platform's functions renew them after 15 s (TOKEN_RENEW_SECONDS,
/// shortened in proportion), and the Job runs 45 s watched inline, its status and logs
/// read after. (The cluster is made in-process as setup: one more name for the one
/// local API server.)
async fn token_lifetimes(world: &World, cell: &Cell<'_>, short: &str) {
    let cluster = world
        .short_token_cluster(short, 30)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let name = unique("f-token-lifetimes");
    let o = cell
        .run(
            &name,
            json!({ "sim.eks-task-worker.io/run-seconds": "45", "sim.eks-task-worker.io/log": "read after the 45th second\n" }),
            json!({ "ClusterName": cluster }),
            json!([]),
        )
        .await;
    let deleted = world.delete_cluster(&cluster).await;
    let logs = main_logs(&o);
    assert_eq!(logs, [json!("read after the 45th second\n")], "{o:?}");
    succeeded("token-lifetimes", &o);
    deleted.unwrap_or_else(|e| panic!("{e}"));
}

/// A 2 GB log archived by the poller with its real timeout (300 s, the template's): the
/// log's stream held to 6 MB/s by the proxy (the whole would take about 330 s), as a
/// slow node serves a big log. The archive ends at the invocation's deadline less the
/// margin for the answer, its object keeps what was read, its entry says it is not
/// complete, and the answer is sent.
async fn archive_2gb(world: &World, cell: &Cell<'_>) {
    const LOG_BYTES: u64 = 2_000_000_000;
    let name = unique("f-archive-2gb");
    let bucket = world.fact("/log_bucket");
    let o = cell
        .run(
            &name,
            json!({ "sim.eks-task-worker.io/log-bytes": LOG_BYTES.to_string(), "sim.eks-task-worker.io/run-seconds": "4" }),
            json!({ "InlineWaitSeconds": 1, "CellWaitSeconds": 480,
                    "LogOptions": { "RetrieveLogs": true, "ArchiveUri": format!("s3://{bucket}/faults") } }),
            json!([{ "id": name, "side": "kube", "method": "GET", "path": "/pods/{name}-[a-z0-9]+/log", "rate": 6_000_000, "times": 0 }]),
        )
        .await;
    cell.proxy.clear().await;
    let archive = o.output["logs"]["pods"]
        .as_object()
        .and_then(|p| p.values().next().cloned())
        .unwrap_or_default()["containers"]["main"]["archive"]
        .clone();
    println!("cell archive-2gb: {archive}");
    assert_eq!(archive["complete"], false, "{archive}");
    let bytes = archive["bytes"].as_u64().unwrap_or_default();
    assert!(
        bytes > 100_000_000 && bytes < LOG_BYTES,
        "the beginning of the log, up to the deadline: {archive}"
    );
    let key = archive["uri"]
        .as_str()
        .and_then(|u| u.strip_prefix(&format!("s3://{bucket}/")))
        .unwrap_or_else(|| panic!("{archive}"))
        .to_owned();
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&world.sdk("worker").await)
            .force_path_style(true)
            .build(),
    );
    let head = s3
        .head_object()
        .bucket(&bucket)
        .key(&key)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{}", aws_sdk_s3::error::DisplayErrorContext(e)));
    assert_eq!(
        head.content_length().and_then(|n| u64::try_from(n).ok()),
        Some(bytes),
        "the object holds what the entry says"
    );
    // moto keeps objects in memory: this one is not needed any more.
    let _ = s3.delete_object().bucket(&bucket).key(&key).send().await;
    succeeded("archive-2gb", &o);
}

/// The cluster polls' schedules made so far (`ekstw-<36 hex digits>-<attempt>`; a Job's
/// poll carries its uid, with dashes): a late poll of an earlier cell does not count.
async fn cluster_poll_schedules(cell: &Cell<'_>) -> usize {
    cell.proxy
        .calls_to("POST /schedules/ekstw-")
        .await
        .iter()
        .filter(|c| {
            c["target"]
                .as_str()
                .and_then(|t| t.rsplit_once("POST /schedules/ekstw-"))
                .and_then(|(_, n)| n.rsplit_once('-'))
                .is_some_and(|(key, _)| key.len() == 36 && !key.contains('-'))
        })
        .count()
}

/// A state machine whose one task is a `createCluster` `.sync` of `name` through the
/// cluster-ops binary, the cluster shown CREATING by the proxy (it rewrites moto's
/// answers, which make clusters ACTIVE at once) until the cell clears the rule.
async fn created_while_creating(world: &World, cell: &Cell<'_>, name: &str) -> String {
    cell.proxy
        .inject(json!([{ "id": name, "side": "aws", "path": format!("^/clusters(/{name})?$"),
                         "replace": ["\"status\":\\s*\"ACTIVE\"", "\"status\": \"CREATING\""], "times": 0 }]))
        .await;
    let create = json!({ "Type": "Task", "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken", "End": true,
        "Parameters": { "FunctionName": world.fact("/functions/cluster-ops"), "Payload": {
            "Operation": "createCluster", "Name": name, "RoleArn": world.cluster_role(),
            "ResourcesVpcConfig": { "SubnetIds": ["subnet-a"] },
            "ExecutionArn.$": "$$.Execution.Id", "TaskToken.$": "$$.Task.Token" } } });
    json!({ "StartAt": "Create", "States": { "Create": create } }).to_string()
}

/// A cluster that becomes ACTIVE on the poller's watch, as every EKS cluster does (it
/// takes minutes): a `createCluster` `.sync` through the cluster-ops binary, the cluster
/// shown CREATING by the proxy (moto makes clusters ACTIVE at once) until the operation
/// has been handed to the poller and polled once. The poller then finds it ACTIVE, lets
/// the worker's own identity into it (the access entry and its policy,
/// `CLUSTER_ACCESS_PRINCIPALS`), and answers with the ACTIVE cluster.
async fn cluster_active_late(world: &World, cell: &Cell<'_>) {
    let name = unique("f-active-late");
    let definition = created_while_creating(world, cell, &name).await;
    let before = cluster_poll_schedules(cell).await;
    let input = json!({});
    let run = world.run_state_machine(&name, &definition, &input, Duration::from_secs(90));
    let active = async {
        // CREATING through cluster-ops' own 20 s and the poller's first poll; then the
        // cluster shows as it is.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while cluster_poll_schedules(cell).await < before + 2 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "never polled while CREATING"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let shown_creating = cell.proxy.fired(&name).await;
        cell.proxy.clear().await;
        shown_creating
    };
    let (ended, shown_creating) = tokio::join!(run, active);
    let (execution, status, output, error) =
        ended.unwrap_or_else(|e| panic!("the task was lost: {e}"));
    println!("cell cluster-active-late: {status} {error:?}, shown CREATING {shown_creating} times");
    assert!(
        shown_creating >= 3,
        "followed while CREATING: {shown_creating}"
    );
    assert_eq!(status, "SUCCEEDED", "{execution}: {error:?}");
    let output: Value = serde_json::from_str(&output.unwrap_or_default()).unwrap_or_default();
    assert_eq!(output["Cluster"]["Status"], "ACTIVE", "{output}");
    let entries = aws_sdk_eks::Client::new(&world.sdk("worker").await)
        .list_access_entries()
        .cluster_name(&name)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{}", aws_sdk_eks::error::DisplayErrorContext(e)));
    assert!(
        entries
            .access_entries()
            .iter()
            .any(|e| e == &world.fact("/worker/arn")),
        "the poller let the worker's identity in: {:?}",
        entries.access_entries()
    );
    let eks = aws_sdk_eks::Client::new(&world.sdk("worker").await);
    let _ = eks.delete_cluster().name(&name).send().await;
}

/// A forged forced delete whose heartbeats are throttled (issue "Unforgeable hand-offs",
/// attack 1): a `deleteCluster` poll state with `ForceDeleteCompute`, sealed with the
/// deployment's key (as a bug in the worker could write it), naming the execution that
/// made the cluster and a made-up task token, delivered to the real poller binary as
/// Scheduler delivers it, while Step Functions throttles every heartbeat on that token
/// (a throttled heartbeat once counted as a live task). The heartbeat gate fails
/// closed: each poll takes no step and waits for the next; once the throttling ends,
/// Step Functions refuses the made-up token and the chain stops. Nothing is deleted:
/// no DELETE reaches EKS, the cluster and its nodegroup stay ACTIVE.
async fn forged_delete_throttled(world: &World, cell: &Cell<'_>) {
    let deps = world.cluster_deps().await;
    let name = unique("f-forged-throttled");
    let (execution, _) = world
        .waiting_execution(&name, None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    world_tests::cluster_op(
        &deps,
        json!({ "Operation": "createCluster", "Name": name, "RoleArn": world.cluster_role(),
                "ResourcesVpcConfig": { "SubnetIds": ["subnet-a"] }, "ExecutionArn": execution }),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    world_tests::cluster_op(
        &deps,
        json!({ "Operation": "createNodegroup", "ClusterName": name, "NodegroupName": "ng",
                "NodeRole": world.cluster_role(), "Subnets": ["subnet-a"] }),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let made_up = "AQCEAAAAKgAAAAMAAAAAAAAAAXRocm90dGxlZC1ub2JvZHktZ2F2ZS1pdA==";
    let throttled = format!("{name}-beats");
    cell.proxy
        .inject(json!([{ "id": throttled, "side": "aws", "target": "SendTaskHeartbeat", "body": made_up,
                         "status": 400, "reply": { "__type": "ThrottlingException", "message": "Rate exceeded" }, "times": 0 }]))
        .await;
    let state = json!({ "Operation": "deleteCluster", "ClusterName": name, "ForceDeleteCompute": true,
                        "Execution": execution, "TaskToken": made_up, "Attempt": 0, "NextDelaySeconds": 5, "Curve": [5] });
    world_tests::fire(
        world,
        "poller",
        None,
        &world_tests::sealed(&deps, &state).await,
    )
    .await;
    // Two polls whose heartbeat was not taken, each waiting for the next.
    let held = || {
        world_tests::log_lines(
            "poller",
            &[
                "the forced delete takes no step this poll",
                &format!("\"cluster\":\"{name}\""),
            ],
        )
    };
    let until = Instant::now() + Duration::from_secs(90);
    while held() < 2 && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let throttles = cell.proxy.fired(&throttled).await;
    let held_polls = held();
    cell.proxy.clear().await;
    // The heartbeat answered again: Step Functions refuses the made-up token, the chain
    // stops.
    let until = Instant::now() + Duration::from_secs(60);
    while !world_tests::poller_results(&name)
        .iter()
        .any(|r| r.contains("taskGone"))
        && Instant::now() < until
    {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let ended = world_tests::poller_results(&name);
    let deletes = cell
        .proxy
        .calls_to(&format!("DELETE /clusters/{name}"))
        .await;
    println!("cell forged-delete-throttled: {held_polls} polls held, {throttles} heartbeats throttled, {} DELETEs, results {ended:?}", deletes.len());
    let eks = aws_sdk_eks::Client::new(&world.sdk("worker").await);
    let cluster = eks.describe_cluster().name(&name).send().await;
    let nodegroup = eks
        .describe_nodegroup()
        .cluster_name(&name)
        .nodegroup_name("ng")
        .send()
        .await;
    let _ = world.stop_execution(&execution).await;
    let _ = deps
        .eks
        .call(
            http::Method::DELETE,
            &format!("/clusters/{name}/node-groups/ng"),
            None,
        )
        .await;
    let _ = deps
        .eks
        .call(http::Method::DELETE, &format!("/clusters/{name}"), None)
        .await;
    assert!(
        held_polls >= 2,
        "each poll held at its heartbeat: {held_polls}"
    );
    assert!(throttles >= 2, "the heartbeats were throttled: {throttles}");
    assert!(deletes.is_empty(), "nothing deleted: {deletes:?}");
    assert_eq!(
        cluster.ok().and_then(|c| c
            .cluster()
            .and_then(|c| c.status().map(|s| s.as_str().to_owned()))),
        Some("ACTIVE".to_owned())
    );
    assert_eq!(
        nodegroup.ok().and_then(|n| n
            .nodegroup()
            .and_then(|n| n.status().map(|s| s.as_str().to_owned()))),
        Some("ACTIVE".to_owned())
    );
    assert!(
        ended.len() == 1 && ended[0].contains("taskGone"),
        "the chain stops at the refused token: {ended:?}"
    );
}

/// A cluster poll meeting a permanent error: a `createCluster` `.sync` through the
/// cluster-ops binary, the cluster shown CREATING by the proxy (moto makes clusters
/// ACTIVE at once) so the operation is handed to the poller after cluster-ops' own 20 s;
/// after the poller's first poll the cluster is deleted behind the worker's back. The next poll's `DescribeCluster` meets `ResourceNotFoundException`: the
/// task must end by that name, not be polled until its timeout.
async fn cluster_gone(world: &World, cell: &Cell<'_>) {
    let name = unique("f-cluster-gone");
    let definition = created_while_creating(world, cell, &name).await;
    let input = json!({});
    let run = world.run_state_machine(&name, &definition, &input, Duration::from_secs(90));
    let schedules = || cluster_poll_schedules(cell);
    let before = schedules().await;
    let gone = async {
        // Handed to the poller (cluster-ops follows 20 s itself): a CreateSchedule made;
        // then the first poll (2 s on) still sees CREATING.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while schedules().await <= before {
            assert!(
                tokio::time::Instant::now() < deadline,
                "never handed to the poller"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
        let eks = aws_sdk_eks::Client::new(&world.sdk("worker").await);
        eks.delete_cluster()
            .name(&name)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{}", aws_sdk_eks::error::DisplayErrorContext(e)));
        cell.proxy.fired(&name).await
    };
    let (ended, shown_creating) = tokio::join!(run, gone);
    cell.proxy.clear().await;
    let (execution, status, _, error) =
        ended.unwrap_or_else(|e| panic!("the task was lost (polled on): {e}"));
    println!("cell cluster-gone: {status} {error:?}, shown CREATING {shown_creating} times");
    assert!(
        shown_creating >= 3,
        "created, then polled while CREATING: {shown_creating}"
    );
    assert_eq!(
        (status.as_str(), error.as_deref()),
        ("FAILED", Some("EKS.ResourceNotFoundException")),
        "{execution}"
    );
    let tokens = world.task_tokens(&execution).await.unwrap_or_default();
    let (sent, accepted) = cell.proxy.answers_to(&tokens).await;
    assert_eq!((sent, accepted), (1, 1), "one answer, by the worker");
    let platform = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../.local-world/logs/lambda-platform.log"),
    )
    .unwrap_or_default();
    assert!(
        platform.lines().any(|l| l.contains("result poller")
            && l.contains("SendTaskFailure")
            && l.contains("EKS.ResourceNotFoundException")),
        "the poller answered"
    );
}

/// Assumed-role credentials expiring mid-task: the payload's `RoleArn` names a role whose
/// credentials live 2 s (the world's `local-world/credentials-lifetime-seconds` tag;
/// AWS: an hour, at least 15 minutes), and the world's authenticator refuses a token
/// that expired credentials signed. The Job runs 18 s watched inline, the watch's
/// requests every 3 s (under the read timeout of 4 s); a token stays within its renewal
/// age (15 s) past the API server's memory of its review (about 10 s), by when its
/// credentials are long expired: the worker must sign anew because of them.
async fn credentials_expiry(world: &World, cell: &Cell<'_>) {
    let role = unique("f-short-creds");
    let arn = format!("arn:aws:iam::{}:role/{role}", world.fact("/account"));
    let iam = aws_sdk_iam::Client::new(&world.sdk("worker").await);
    let trust = json!({ "Version": "2012-10-17", "Statement": [{ "Effect": "Allow",
        "Principal": { "AWS": world.fact("/worker/arn") }, "Action": "sts:AssumeRole" }] });
    iam.create_role()
        .role_name(&role)
        .assume_role_policy_document(trust.to_string())
        .tags(
            aws_sdk_iam::types::Tag::builder()
                .key("local-world/credentials-lifetime-seconds")
                .value("2")
                .build()
                .unwrap_or_else(|e| panic!("{e}")),
        )
        .send()
        .await
        .unwrap_or_else(|e| panic!("{}", aws_sdk_iam::error::DisplayErrorContext(e)));
    // The role may run Jobs in the namespace, as the worker's identity may.
    let admin = world.admin_kube().unwrap_or_else(|e| panic!("{e}"));
    let bindings = format!(
        "/apis/rbac.authorization.k8s.io/v1/namespaces/{}/rolebindings",
        world.namespace()
    );
    let binding = role_binding(&role, &arn);
    let made = send(
        &admin,
        world_tests::request(http::Method::POST, &bindings, Some(&binding)),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(made.status < 300, "the RoleBinding: {}", made.status);
    let name = unique("f-credentials-expiry");
    let assumed = format!("{name}-assume");
    let o = cell
        .run(
            &name,
            json!({ "sim.eks-task-worker.io/run-seconds": "18", "sim.eks-task-worker.io/log": "read with the role\n" }),
            json!({ "RoleArn": arn }),
            json!([{ "id": assumed, "side": "aws", "target": "AssumeRole", "times": 0 }]),
        )
        .await;
    let assumed = cell.proxy.fired(&assumed).await;
    cell.proxy.clear().await;
    let _ = send(
        &admin,
        world_tests::request(http::Method::DELETE, &format!("{bindings}/{role}"), None),
    )
    .await;
    let _ = iam.delete_role().role_name(&role).send().await;
    println!("cell credentials-expiry: the role assumed {assumed} times");
    assert!(
        assumed >= 4,
        "credentials asked for again as they expired: {assumed}"
    );
    let logs = main_logs(&o);
    assert_eq!(logs, [json!("read with the role\n")], "{o:?}");
    succeeded("credentials-expiry", &o);
}
