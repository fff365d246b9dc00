//! What the functions tell operators besides their results: the context every log
//! line carries, and metrics as CloudWatch Embedded Metric Format (EMF) lines.
//!
//! Log lines are JSON (`AWS_LAMBDA_LOG_FORMAT=JSON`, as the template sets it): each has
//! its `level`, and the runtime's span gives the invocation's `requestId`; they carry
//! the fields of the invocation's span, `function` (the function's name) and
//! `cold_start` (the first invocation of its process), and of the task's span:
//! `execution` (where the payload gives one), `cluster`, `namespace`, `job`, `job_uid`
//! and `attempt`. Tokens and credentials are never span fields nor logged.
//!
//! Metrics go to stdout, one JSON object per line, which CloudWatch Logs turns into
//! metrics in the namespace `METRICS_NAMESPACE` (default `EksTaskWorker`; `off` turns
//! them off), with the dimensions `Cluster` and `Namespace`, and without dimensions
//! (the total the template's alarms watch).

use std::io::Write;
use std::time::{Duration, SystemTime};

use serde_json::{json, Map, Value};
use tracing::field::Empty;

/// Whether an invocation of this process has begun yet.
static INVOKED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The span an invocation runs in: the function's name and whether it is the cold
/// start (the first invocation of this process).
#[must_use]
pub fn invocation_span(function: &str) -> tracing::Span {
    let cold_start = !INVOKED.swap(true, std::sync::atomic::Ordering::Relaxed);
    tracing::info_span!("invocation", function, cold_start)
}

/// The span a task runs in; `job`, `job_uid` and `attempt` are recorded when known.
#[must_use]
pub fn task_span(execution: Option<&str>, cluster: &str, namespace: &str) -> tracing::Span {
    tracing::info_span!(
        "task",
        execution = execution.unwrap_or(""),
        cluster,
        namespace,
        job = Empty,
        job_uid = Empty,
        attempt = Empty
    )
}

/// The task span of a payload as given (before it is checked, so that even a bad
/// payload's lines carry what it names): `ExecutionArn`, `ClusterName` (or a cluster
/// operation's `Name`), `Namespace` (default `default`).
#[must_use]
pub fn payload_span(payload: &Value) -> tracing::Span {
    let (execution, cluster, namespace) = payload_context(payload);
    task_span(execution, cluster, namespace)
}

/// What a payload names, as given: its `ExecutionArn`, its cluster (`ClusterName`, or
/// a cluster operation's `Name`) and its `Namespace` (default `default`).
#[must_use]
pub fn payload_context(payload: &Value) -> (Option<&str>, &str, &str) {
    let given = |k: &str| payload.get(k).and_then(Value::as_str);
    (
        given("ExecutionArn"),
        given("ClusterName")
            .or_else(|| given("Name"))
            .unwrap_or_default(),
        given("Namespace").unwrap_or("default"),
    )
}

/// Records the Job on the current task span.
pub fn record_job(name: &str, uid: &str) {
    let span = tracing::Span::current();
    span.record("job", name);
    span.record("job_uid", uid);
}

/// Records the poll attempt on the current task span.
pub fn record_attempt(attempt: u32) {
    tracing::Span::current().record("attempt", attempt);
}

/// A metric the worker emits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// A Job was created.
    JobsStarted,
    /// A task was answered with a Complete Job.
    JobsSucceeded,
    /// A task was answered with `EksTaskWorker.JobFailed`.
    JobsFailed,
    /// A task was answered with `EksTaskWorker.JobStuck`.
    JobsStuck,
    /// From the Job's end to Step Functions accepting the answer (milliseconds).
    CallbackLatency,
    /// Polls the poller made for a Job, counted when its task is answered.
    PollsPerJob,
    /// Bytes of the result sent (as Step Functions counts them).
    ResultBytes,
    /// Bytes of log read but left out of the result to fit it.
    LogBytesCut,
}

impl Metric {
    /// The metric's name in CloudWatch.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::JobsStarted => "JobsStarted",
            Self::JobsSucceeded => "JobsSucceeded",
            Self::JobsFailed => "JobsFailed",
            Self::JobsStuck => "JobsStuck",
            Self::CallbackLatency => "CallbackLatency",
            Self::PollsPerJob => "PollsPerJob",
            Self::ResultBytes => "ResultBytes",
            Self::LogBytesCut => "LogBytesCut",
        }
    }

    /// Its CloudWatch unit.
    #[must_use]
    pub fn unit(self) -> &'static str {
        match self {
            Self::CallbackLatency => "Milliseconds",
            Self::ResultBytes | Self::LogBytesCut => "Bytes",
            _ => "Count",
        }
    }
}

/// One EMF document: `values` under `metric_namespace`, dimensioned by the cluster
/// and the Kubernetes namespace, at `at`.
#[must_use]
pub fn emf(
    metric_namespace: &str,
    cluster: &str,
    namespace: &str,
    values: &[(Metric, f64)],
    at: SystemTime,
) -> Value {
    let millis = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    let definitions: Vec<Value> = values
        .iter()
        .map(|(m, _)| json!({ "Name": m.name(), "Unit": m.unit() }))
        .collect();
    let mut doc = Map::new();
    doc.insert(
        "_aws".into(),
        json!({
            "Timestamp": u64::try_from(millis).unwrap_or(u64::MAX),
            "CloudWatchMetrics": [{
                "Namespace": metric_namespace,
                // Per cluster and namespace, and the total (alarms watch it).
                "Dimensions": [["Cluster", "Namespace"], []],
                "Metrics": definitions,
            }],
        }),
    );
    doc.insert("Cluster".into(), json!(cluster));
    doc.insert("Namespace".into(), json!(namespace));
    for (m, v) in values {
        doc.insert(m.name().into(), json!(v));
    }
    Value::Object(doc)
}

/// Writes an EMF line to stdout, where the Lambda service hands it to CloudWatch
/// Logs; nothing when metrics are off (`metric_namespace` is `None`).
pub fn emit(
    metric_namespace: Option<&str>,
    cluster: &str,
    namespace: &str,
    values: &[(Metric, f64)],
) {
    let Some(ns) = metric_namespace else { return };
    if values.is_empty() {
        return;
    }
    let mut line = emf(ns, cluster, namespace, values, SystemTime::now()).to_string();
    line.push('\n');
    // One write of one line: lines of concurrent tasks never interleave.
    let _ = std::io::stdout().lock().write_all(line.as_bytes());
}

/// Milliseconds from `from` to `to` (0 when `to` is earlier).
#[must_use]
pub fn millis_between(from: SystemTime, to: SystemTime) -> f64 {
    let d = to.duration_since(from).unwrap_or(Duration::ZERO);
    // Milliseconds of a latency fit an f64 exactly.
    #[allow(clippy::cast_precision_loss)]
    let ms = d.as_millis() as f64;
    ms
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_emf_document_declares_each_value_with_unit_and_dimensions() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        let doc = emf(
            "Team/Jobs",
            "prod",
            "jobs",
            &[
                (Metric::JobsSucceeded, 1.0),
                (Metric::CallbackLatency, 250.0),
            ],
            at,
        );
        assert_eq!(doc["_aws"]["Timestamp"], 1_700_000_000_123_u64);
        let cw = &doc["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(cw["Namespace"], "Team/Jobs");
        assert_eq!(cw["Dimensions"], json!([["Cluster", "Namespace"], []]));
        assert_eq!(
            cw["Metrics"],
            json!([{ "Name": "JobsSucceeded", "Unit": "Count" }, { "Name": "CallbackLatency", "Unit": "Milliseconds" }])
        );
        assert_eq!(
            (&doc["Cluster"], &doc["Namespace"]),
            (&json!("prod"), &json!("jobs"))
        );
        assert_eq!(doc["JobsSucceeded"], 1.0);
        assert_eq!(doc["CallbackLatency"], 250.0);
    }

    #[test]
    fn a_payload_names_its_execution_cluster_and_namespace_as_given() {
        let run_job = json!({ "ExecutionArn": "arn:aws:states:r:1:execution:m:e", "ClusterName": "c", "Namespace": "n" });
        assert_eq!(
            payload_context(&run_job),
            (Some("arn:aws:states:r:1:execution:m:e"), "c", "n")
        );
        let cluster_op = json!({ "Operation": "createCluster", "Name": "new" });
        assert_eq!(payload_context(&cluster_op), (None, "new", "default"));
        assert_eq!(payload_context(&json!([1])), (None, "", "default"));
    }

    #[test]
    fn latency_never_goes_negative() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(10);
        assert_eq!(millis_between(t, t + Duration::from_millis(1500)), 1500.0);
        assert_eq!(millis_between(t, t - Duration::from_secs(1)), 0.0);
    }
}
