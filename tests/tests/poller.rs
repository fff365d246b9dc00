//! Long Jobs: handed off to one-time schedules, polled along a (compressed) curve with
//! heartbeats, and answered by the poller. moto never fires schedules, so the tests
//! fire them: read the input, delete the schedule (ActionAfterCompletion DELETE), and
//! invoke the poller's handler, as Scheduler would.

// Test helpers fail the test by panicking.
#![allow(clippy::panic)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{json, Value};
use worker::contract::error::TaskError;
use worker::contract::payload::ClusterRef;
use worker::ports::callback::{CallbackError, TaskCallback};
use worker::ports::kube::{KubeApi, KubeRequest, KubeResponse, TransportError};
use worker::task::deps::Deps;
use world_tests::{send, sim_job, unique, until_job, Schedule, World};

/// Counts heartbeats on the way to the real Step Functions.
struct Counting {
    inner: Arc<dyn TaskCallback>,
    heartbeats: AtomicUsize,
}

#[async_trait]
impl TaskCallback for Counting {
    async fn succeed(&self, token: &str, output: &Value) -> Result<(), CallbackError> {
        self.inner.succeed(token, output).await
    }
    async fn fail(&self, token: &str, error: &TaskError) -> Result<(), CallbackError> {
        self.inner.fail(token, error).await
    }
    async fn heartbeat(&self, token: &str) -> Result<(), CallbackError> {
        self.heartbeats.fetch_add(1, Ordering::SeqCst);
        self.inner.heartbeat(token).await
    }
}

async fn deps(world: &World, curve: &str) -> (Deps, Arc<Counting>) {
    let mut deps = world
        .deps(world.poller_settings(curve))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let counting = Arc::new(Counting {
        inner: deps.callback.clone(),
        heartbeats: AtomicUsize::new(0),
    });
    deps.callback = counting.clone();
    (deps, counting)
}

fn payload(world: &World, job: Value, token: &str) -> Value {
    json!({ "ClusterName": world.cluster(), "Namespace": world.namespace(), "Job": job, "TaskToken": token, "InlineWaitSeconds": 1, "LogOptions": { "RetrieveLogs": true } })
}

/// Starts the Job through run-job, which must hand it off; returns its uid.
async fn hand_off(
    world: &World,
    deps: &Deps,
    name: &str,
    annotations: Value,
    token: &str,
) -> String {
    let report = worker::task::run_job::handle(
        payload(world, sim_job(name, &["main"], annotations, 1), token),
        deps,
        None,
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report["handedOff"]["job"], name, "{report}");
    let kube = world.worker_kube().unwrap_or_else(|e| panic!("{e}"));
    let job = until_job(
        &kube,
        &world.namespace(),
        name,
        Duration::from_secs(5),
        |j| j.is_some(),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    job.and_then(|j| {
        j.pointer("/metadata/uid")
            .and_then(Value::as_str)
            .map(str::to_owned)
    })
    .unwrap_or_default()
}

/// The one live schedule of the Job (fails on none or more than one).
async fn only_schedule(world: &World, uid: &str) -> Schedule {
    let mut s = world.schedules(uid).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        s.len(),
        1,
        "one live schedule: {:?}",
        s.iter().map(|s| &s.name).collect::<Vec<_>>()
    );
    s.remove(0)
}

/// Fires the Job's schedule once it is due: deletes it and runs the poller.
async fn fire(world: &World, deps: &Deps, uid: &str) -> (Schedule, Value) {
    let s = only_schedule(world, uid).await;
    tokio::time::sleep(Duration::from_secs(
        s.input["NextDelaySeconds"].as_u64().unwrap_or(1),
    ))
    .await;
    world
        .delete_schedule(&s.name)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let out = worker::task::poller::handle(s.input.clone(), deps)
        .await
        .unwrap_or_else(|e| panic!("poller: {e}"));
    (s, out)
}

#[tokio::test]
async fn a_long_job_is_polled_along_the_curve_and_succeeds_with_its_logs() {
    let world = World::get();
    let (deps, counting) = deps(&world, "1,1,2").await;
    let name = unique("long-ok");
    let (execution, token) = world
        .waiting_execution(&name, Some(60))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut before = now_secs();
    let uid = hand_off(&world, &deps, &name, json!({ "sim.eks-task-worker.io/run-seconds": "5", "sim.eks-task-worker.io/log": "long done\n" }), &token).await;
    let mut after = now_secs();

    let mut delays = Vec::new();
    let mut last = Value::Null;
    for round in 0..12 {
        let s = only_schedule(&world, &uid).await;
        assert_eq!(s.name, format!("ekstw-{uid}-{round}"));
        let delay = s.input["NextDelaySeconds"].as_u64().unwrap_or(0);
        // The schedule fires `delay` after the poll (or hand-off) that created it.
        let at = at_seconds(&s.expression);
        assert!(
            at + 1 >= before + delay && at <= after + delay,
            "{} is not {delay} s after [{before}, {after}]",
            s.expression
        );
        delays.push(delay);
        before = now_secs();
        let (_, out) = fire(&world, &deps, &uid).await;
        after = now_secs();
        last = out;
        if last.get("answered").is_some() {
            break;
        }
        assert_eq!(last["nextPoll"]["attempt"], round + 1);
    }
    assert_eq!(last["answered"], "SendTaskSuccess", "{last}");
    assert!(
        delays.len() >= 3,
        "the Job ran past several polls: {delays:?}"
    );
    assert_eq!(&delays[..3], &[1, 1, 2], "the curve's delays, in order");
    assert!(
        delays.windows(2).all(|w| w[1] >= w[0]),
        "intervals never shrink: {delays:?}"
    );
    assert_eq!(
        counting.heartbeats.load(Ordering::SeqCst),
        delays.len(),
        "a heartbeat per poll"
    );
    assert!(
        world.schedules(&uid).await.unwrap_or_default().is_empty(),
        "no schedule is left"
    );
    let (status, output, _) = world
        .execution_end(&execution, Duration::from_secs(10))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(status, "SUCCEEDED");
    let output: Value = serde_json::from_str(&output.unwrap_or_default()).unwrap_or_default();
    assert_eq!(output["status"]["succeeded"], 1);
    let pod = output["logs"]["pods"]
        .as_object()
        .and_then(|p| p.values().next().cloned())
        .unwrap_or_default();
    assert_eq!(pod["containers"]["main"]["log"], "long done\n");
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The Unix time of `at(yyyy-mm-ddThh:mm:ss)` (UTC).
fn at_seconds(expression: &str) -> u64 {
    let inner = expression
        .strip_prefix("at(")
        .and_then(|e| e.strip_suffix(')'))
        .unwrap_or_else(|| panic!("not an at() expression: {expression}"));
    let format = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");
    let t = time::PrimitiveDateTime::parse(inner, &format)
        .unwrap_or_else(|e| panic!("{expression}: {e}"));
    u64::try_from(t.assume_utc().unix_timestamp()).unwrap_or(0)
}

async fn poll_until_answered(world: &World, deps: &Deps, uid: &str) -> Value {
    for _ in 0..12 {
        let (_, out) = fire(world, deps, uid).await;
        if out.get("nextPoll").is_none() {
            return out;
        }
    }
    panic!("never answered")
}

#[tokio::test]
async fn a_failing_long_job_fails_the_execution_with_job_failed() {
    let world = World::get();
    let (deps, _) = deps(&world, "1").await;
    let name = unique("long-fail");
    let (execution, token) = world
        .waiting_execution(&name, Some(60))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let uid = hand_off(&world, &deps, &name, json!({ "sim.eks-task-worker.io/run-seconds": "3", "sim.eks-task-worker.io/exit-code": "1" }), &token).await;
    let out = poll_until_answered(&world, &deps, &uid).await;
    assert_eq!(out["error"], "EksTaskWorker.JobFailed", "{out}");
    world
        .expect_failed(&execution, "EksTaskWorker.JobFailed")
        .await;
}

#[tokio::test]
async fn a_stopped_execution_gets_its_job_deleted_and_polling_stops() {
    let world = World::get();
    let (deps, _) = deps(&world, "1").await;
    let name = unique("long-stop");
    let (execution, token) = world
        .waiting_execution(&name, Some(60))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let uid = hand_off(
        &world,
        &deps,
        &name,
        json!({ "sim.eks-task-worker.io/run-seconds": "120" }),
        &token,
    )
    .await;
    world
        .stop_execution(&execution)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // moto stops an execution asynchronously: wait until its token is refused.
    let sfn = world.sfn().await;
    for _ in 0..50 {
        if sfn
            .send_task_heartbeat()
            .task_token(&token)
            .send()
            .await
            .is_err()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (_, out) = fire(&world, &deps, &uid).await;
    assert_eq!(out["jobDeleted"], true, "{out}");
    assert!(out["taskGone"].is_string());
    assert!(
        world.schedules(&uid).await.unwrap_or_default().is_empty(),
        "no further schedule"
    );
    let kube = world.worker_kube().unwrap_or_else(|e| panic!("{e}"));
    until_job(
        &kube,
        &world.namespace(),
        &name,
        Duration::from_secs(20),
        |j| j.is_none(),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test]
async fn a_job_deleted_by_hand_fails_the_execution_with_job_vanished() {
    let world = World::get();
    let (deps, _) = deps(&world, "1").await;
    let name = unique("long-gone");
    let (execution, token) = world
        .waiting_execution(&name, Some(60))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let uid = hand_off(
        &world,
        &deps,
        &name,
        json!({ "sim.eks-task-worker.io/run-seconds": "120" }),
        &token,
    )
    .await;
    let kube = world.worker_kube().unwrap_or_else(|e| panic!("{e}"));
    let r = send(
        &kube,
        KubeRequest {
            method: http::Method::DELETE,
            path: format!(
                "/apis/batch/v1/namespaces/{}/jobs/{name}",
                world.namespace()
            ),
            query: vec![("propagationPolicy".into(), "Background".into())],
            body: None,
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.status, 200);
    until_job(
        &kube,
        &world.namespace(),
        &name,
        Duration::from_secs(20),
        |j| j.is_none(),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let (_, out) = fire(&world, &deps, &uid).await;
    assert_eq!(out["error"], "EksTaskWorker.JobVanished", "{out}");
    world
        .expect_failed(&execution, "EksTaskWorker.JobVanished")
        .await;
}

/// A cluster whose API server answers 500 to everything while `failing` is set.
struct Flaky {
    inner: Arc<dyn worker::ports::cluster::Connector>,
    failing: Arc<std::sync::atomic::AtomicBool>,
}

struct FlakyKube {
    inner: Arc<dyn KubeApi>,
    failing: Arc<std::sync::atomic::AtomicBool>,
}

#[async_trait]
impl worker::ports::cluster::Connector for Flaky {
    async fn connect(&self, cluster: &ClusterRef) -> Result<Arc<dyn KubeApi>, TaskError> {
        let inner = self.inner.connect(cluster).await?;
        Ok(Arc::new(FlakyKube {
            inner,
            failing: self.failing.clone(),
        }))
    }
}

#[async_trait]
impl KubeApi for FlakyKube {
    async fn send(
        &self,
        request: KubeRequest,
        keep_tail: Option<usize>,
    ) -> Result<KubeResponse, TransportError> {
        if self.failing.load(Ordering::SeqCst) {
            let status =
                json!({ "kind": "Status", "code": 500, "message": "etcdserver: leader changed" });
            return Ok(worker::testing::answer(500, &status));
        }
        self.inner.send(request, keep_tail).await
    }
    async fn watch(
        &self,
        request: KubeRequest,
    ) -> Result<
        Result<futures::stream::BoxStream<'static, Result<Value, TransportError>>, KubeResponse>,
        TransportError,
    > {
        self.inner.watch(request).await
    }
}

#[tokio::test]
async fn a_poll_that_meets_500s_recovers_on_the_next_poll() {
    let world = World::get();
    let (mut deps, _) = deps(&world, "1").await;
    let name = unique("long-500");
    let (execution, token) = world
        .waiting_execution(&name, Some(60))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let uid = hand_off(
        &world,
        &deps,
        &name,
        json!({ "sim.eks-task-worker.io/run-seconds": "2" }),
        &token,
    )
    .await;
    let failing = Arc::new(std::sync::atomic::AtomicBool::new(true));
    deps.connector = Arc::new(Flaky {
        inner: deps.connector.clone(),
        failing: failing.clone(),
    });
    let (_, out) = fire(&world, &deps, &uid).await;
    assert_eq!(
        out["nextPoll"]["failures"], 1,
        "the failed poll is counted and the next one scheduled: {out}"
    );
    let next = only_schedule(&world, &uid).await;
    assert!(
        next.input["Failures"][0]
            .as_str()
            .is_some_and(|f| f.contains("EKS.500")),
        "{}",
        next.input
    );
    failing.store(false, Ordering::SeqCst);
    let out = poll_until_answered(&world, &deps, &uid).await;
    assert_eq!(out["answered"], "SendTaskSuccess", "{out}");
    assert_eq!(
        world
            .execution_end(&execution, Duration::from_secs(10))
            .await
            .map(|e| e.0)
            .unwrap_or_default(),
        "SUCCEEDED"
    );
}

#[tokio::test]
async fn too_many_failed_polls_fail_the_task_with_poll_failed() {
    let world = World::get();
    let (mut deps, _) = deps(&world, "1").await;
    deps.settings.max_failed_polls = 2;
    let name = unique("long-down");
    let (execution, token) = world
        .waiting_execution(&name, Some(60))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let uid = hand_off(
        &world,
        &deps,
        &name,
        json!({ "sim.eks-task-worker.io/run-seconds": "60" }),
        &token,
    )
    .await;
    deps.connector = Arc::new(Flaky {
        inner: deps.connector.clone(),
        failing: Arc::new(std::sync::atomic::AtomicBool::new(true)),
    });
    let (_, first) = fire(&world, &deps, &uid).await;
    assert_eq!(first["nextPoll"]["failures"], 1);
    let (_, second) = fire(&world, &deps, &uid).await;
    assert_eq!(second["error"], "EksTaskWorker.PollFailed", "{second}");
    world
        .expect_failed(&execution, "EksTaskWorker.PollFailed")
        .await;
}

#[tokio::test]
async fn a_duplicate_delivery_yields_one_next_schedule_and_one_result() {
    let world = World::get();
    let (deps, _) = deps(&world, "1").await;
    let name = unique("long-dup");
    let (execution, token) = world
        .waiting_execution(&name, Some(60))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let uid = hand_off(
        &world,
        &deps,
        &name,
        json!({ "sim.eks-task-worker.io/run-seconds": "4" }),
        &token,
    )
    .await;
    // A running Job: both deliveries schedule the same next poll; one schedule lives.
    let s = only_schedule(&world, &uid).await;
    world
        .delete_schedule(&s.name)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let (a, b) = tokio::join!(
        worker::task::poller::handle(s.input.clone(), &deps),
        worker::task::poller::handle(s.input.clone(), &deps)
    );
    for out in [a, b] {
        assert_eq!(
            out.unwrap_or_else(|e| panic!("{e}"))["nextPoll"]["attempt"],
            1
        );
    }
    only_schedule(&world, &uid).await;
    // A finished Job: one answer; the other delivery finds the task answered and
    // leaves the Job alone.
    let kube = world.worker_kube().unwrap_or_else(|e| panic!("{e}"));
    until_job(
        &kube,
        &world.namespace(),
        &name,
        Duration::from_secs(20),
        |j| {
            worker::task::job::phase(j.unwrap_or(&Value::Null))
                == worker::task::job::Phase::Complete
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let s = only_schedule(&world, &uid).await;
    world
        .delete_schedule(&s.name)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let first = worker::task::poller::handle(s.input.clone(), &deps)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let second = worker::task::poller::handle(s.input.clone(), &deps)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(first["answered"], "SendTaskSuccess", "{first}");
    assert_eq!(second["jobDeleted"], false, "{second}");
    assert!(world.schedules(&uid).await.unwrap_or_default().is_empty());
    assert_eq!(
        world
            .execution_end(&execution, Duration::from_secs(10))
            .await
            .map(|e| e.0)
            .unwrap_or_default(),
        "SUCCEEDED"
    );
    assert!(
        until_job(
            &kube,
            &world.namespace(),
            &name,
            Duration::from_secs(1),
            |j| j.is_some()
        )
        .await
        .is_ok(),
        "the answered Job is kept"
    );
}
