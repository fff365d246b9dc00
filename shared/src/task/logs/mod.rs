//! Container logs of a finished Job, read through the API server's log API with the
//! user's `LogParameters`, and fitted with the Job into the result budget.
//!
//! Reads are bounded: each container is read for its tail only (`tailLines`, widened
//! when a log turns out small), and a body is never held beyond the bytes it may keep,
//! so a container with gigabytes of log costs about its share of the budget.

pub mod archive;

use futures::StreamExt;
use serde_json::{json, Map, Value};

use crate::contract::budget;
use crate::contract::budget::{
    escaped_len, fit_pieces, keep_tail, serialized_len, water_level, Cuttable, RESULT_BUDGET,
};
use crate::contract::error::TaskError;
use crate::contract::payload::LogOptions;
use crate::ports::kube::{KubeApi, KubeRequest};

/// Container reads in flight at once.
const PARALLEL_READS: usize = 8;
/// Lines first asked for per KiB of budget (a guess at 64-byte lines), then widened.
const LINES_PER_KIB: usize = 16;

/// One container's log, as read.
#[derive(Debug, Clone, PartialEq)]
pub enum ContainerLog {
    /// The text read.
    Text {
        /// The log, or its tail.
        text: String,
        /// Only the tail of a longer log was read.
        partial: bool,
        /// Whether to return it as JSON when it parses.
        parse_json: bool,
    },
    /// The read failed: `error` and `cause` stand in place of `log`.
    Failed {
        /// An error name (`EKS.<status>` or `EksTaskWorker.ClusterUnreachable`).
        error: String,
        /// What happened.
        cause: String,
    },
}

/// A container whose log is read: its pod, its name, and whether it is an init
/// container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The pod.
    pub pod: String,
    /// The container.
    pub container: String,
    /// An init container (`spec.initContainers`).
    pub init: bool,
}

impl Target {
    /// The pod's map in the result that holds it: `containers` (native: the app
    /// containers only, as before) or `initContainers`.
    #[must_use]
    pub fn section(&self) -> &'static str {
        if self.init {
            "initContainers"
        } else {
            "containers"
        }
    }

    /// Its place in an archive key: the container's name, or `init/<name>` (a name
    /// never holds a slash: the two kinds stay apart).
    #[must_use]
    pub fn key_part(&self) -> String {
        if self.init {
            format!("init/{}", self.container)
        } else {
            self.container.clone()
        }
    }
}

/// A log in its place: pod, container, log.
#[derive(Debug, Clone, PartialEq)]
pub struct PlacedLog {
    /// Whose log.
    pub target: Target,
    /// The log.
    pub log: ContainerLog,
}

struct Piece<'a> {
    text: &'a str,
    partial: bool,
    parsed: Option<Value>,
}

impl Cuttable for Piece<'_> {
    fn cost(&self) -> usize {
        match &self.parsed {
            Some(v) => serialized_len(v).saturating_sub(2),
            None => escaped_len(&keep_tail(self.text, usize::MAX, self.partial)),
        }
    }
    fn cut(&self, level: usize) -> Value {
        Value::String(keep_tail(self.text, level, self.partial))
    }
    fn whole(&self) -> Value {
        match &self.parsed {
            Some(v) => v.clone(),
            None => Value::String(keep_tail(self.text, usize::MAX, self.partial)),
        }
    }
}

/// The containers whose logs are read: every init container that started and every
/// container of every pod, or only those named by the `container` log parameter.
#[must_use]
pub fn targets(pods: &[Value], options: &LogOptions) -> Vec<Target> {
    let only = options.parameter("container");
    let mut out = Vec::new();
    for pod in pods {
        let Some(name) = pod.pointer("/metadata/name").and_then(Value::as_str) else {
            continue;
        };
        let listed = |path: &str| {
            pod.pointer(path)
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .filter_map(|c| c.get("name").and_then(Value::as_str))
                .filter(|c| only.is_none_or(|o| o == *c))
                .map(str::to_owned)
                .collect::<Vec<_>>()
        };
        // An init container that never started has no log (the API server answers 400).
        let started: Vec<String> = pod
            .pointer("/status/initContainerStatuses")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .filter(|s| {
                s.pointer("/state/running").is_some()
                    || s.pointer("/state/terminated").is_some()
                    || s.pointer("/lastState/terminated").is_some()
            })
            .filter_map(|s| s.get("name").and_then(Value::as_str).map(str::to_owned))
            .collect();
        for container in listed("/spec/initContainers") {
            if started.contains(&container) {
                out.push(Target {
                    pod: name.to_owned(),
                    container,
                    init: true,
                });
            }
        }
        for container in listed("/spec/containers") {
            out.push(Target {
                pod: name.to_owned(),
                container,
                init: false,
            });
        }
    }
    out
}

fn count_lines(bytes: &[u8]) -> usize {
    let n = bytes.iter().filter(|&&b| b == b'\n').count();
    if bytes.last().is_some_and(|&b| b != b'\n') {
        n + 1
    } else {
        n
    }
}

/// Reads the tail of one container's log, keeping at most `cap` bytes.
async fn read_tail(
    kube: &dyn KubeApi,
    namespace: &str,
    pod: &str,
    container: &str,
    options: &LogOptions,
    cap: usize,
) -> ContainerLog {
    let mut base = KubeRequest::get(format!("/api/v1/namespaces/{namespace}/pods/{pod}/log"))
        .param("container", container);
    for (k, v) in options
        .log_parameters
        .iter()
        .filter(|(k, _)| k != "container")
    {
        base = base.param(k, v.clone());
    }
    let user_bounded =
        options.parameter("tailLines").is_some() || options.parameter("limitBytes").is_some();
    let mut lines = (cap / 1024 * LINES_PER_KIB).max(100);
    loop {
        let request = if user_bounded {
            base.clone()
        } else {
            base.clone().param("tailLines", lines.to_string())
        };
        let response = match kube.send(request, Some(cap)).await {
            Ok(r) => r,
            Err(e) => {
                let e: TaskError = e.into();
                return ContainerLog::Failed {
                    error: e.name,
                    cause: e.cause.to_string(),
                };
            }
        };
        if !response.is_success() {
            let body = response.body_value();
            let cause = body
                .get("message")
                .and_then(Value::as_str)
                .map_or_else(|| body.to_string(), str::to_owned);
            return ContainerLog::Failed {
                error: format!("EKS.{}", response.status),
                cause,
            };
        }
        let cut = response.body_len > response.body.len() as u64;
        let text = String::from_utf8_lossy(&response.body).into_owned();
        let text = if cut {
            // The kept tail may begin inside a character: drop the partial one.
            text.trim_start_matches('\u{fffd}').to_owned()
        } else {
            text
        };
        let whole = !cut && (user_bounded || count_lines(&response.body) < lines);
        if whole || cut || lines >= 1 << 24 {
            return ContainerLog::Text {
                text,
                partial: !whole,
                parse_json: !options.raw_logs && whole,
            };
        }
        lines *= 8;
    }
}

/// Reads the logs of `pods` for a result whose other parts take `skeleton` bytes.
/// Every container first gets an equal share of the budget; what small logs leave is
/// handed to the ones that were cut, in a second read.
pub async fn read(
    kube: &dyn KubeApi,
    namespace: &str,
    pods: &[Value],
    options: &LogOptions,
    skeleton: usize,
) -> Vec<PlacedLog> {
    let targets = targets(pods, options);
    if targets.is_empty() {
        return Vec::new();
    }
    let available = RESULT_BUDGET.saturating_sub(skeleton);
    let first_cap = (available / targets.len()).max(1024);
    let read_all = |targets: Vec<Target>, cap: usize| {
        futures::stream::iter(targets)
            .map(move |target| async move {
                let log = read_tail(
                    kube,
                    namespace,
                    &target.pod,
                    &target.container,
                    options,
                    cap,
                )
                .await;
                PlacedLog { target, log }
            })
            .buffered(PARALLEL_READS)
            .collect::<Vec<_>>()
    };
    let mut logs = read_all(targets, first_cap).await;
    // Give what the small logs left to the ones that were cut.
    let costs: Vec<usize> = logs
        .iter()
        .map(|l| match &l.log {
            ContainerLog::Text {
                text,
                partial: false,
                ..
            } => escaped_len(text),
            ContainerLog::Text { partial: true, .. } => usize::MAX / 2 / logs.len().max(1),
            ContainerLog::Failed { cause, .. } => escaped_len(cause) + 32,
        })
        .collect();
    let level = water_level(&costs, available);
    if level != usize::MAX && level > first_cap + first_cap / 4 {
        let again: Vec<Target> = logs
            .iter()
            .filter(|l| matches!(l.log, ContainerLog::Text { partial: true, .. }))
            .map(|l| l.target.clone())
            .collect();
        let reread = read_all(again, level).await;
        for r in reread {
            if let Some(slot) = logs.iter_mut().find(|l| l.target == r.target) {
                *slot = r;
            }
        }
    }
    logs
}

/// The `logs` value: each container's log (the pieces from `texts`, in order) or read
/// error, and its archived object beside it.
fn logs_value(
    logs: &[PlacedLog],
    archived: &[Archived],
    texts: &mut dyn Iterator<Item = Value>,
) -> Value {
    fn slot<'m>(
        pods: &'m mut Map<String, Value>,
        target: &Target,
    ) -> Option<&'m mut Map<String, Value>> {
        pods.entry(target.pod.clone())
            .or_insert_with(|| json!({ "containers": {} }))
            .as_object_mut()
            .map(|p| p.entry(target.section()).or_insert_with(|| json!({})))
            .and_then(Value::as_object_mut)
            .map(|c| {
                c.entry(target.container.clone())
                    .or_insert_with(|| json!({}))
            })
            .and_then(Value::as_object_mut)
    }
    let mut pods = Map::new();
    for l in logs {
        if let Some(entry) = slot(&mut pods, &l.target) {
            match &l.log {
                ContainerLog::Text { .. } => {
                    entry.insert("log".into(), texts.next().unwrap_or(Value::Null));
                }
                ContainerLog::Failed { error, cause } => {
                    entry.insert("error".into(), json!(error));
                    entry.insert("cause".into(), json!(cause));
                }
            }
        }
    }
    for a in archived {
        if let Some(entry) = slot(&mut pods, &a.target) {
            entry.insert("archive".into(), a.entry.clone());
        }
    }
    json!({ "pods": pods })
}

/// Bytes of log read (`placed`) but left out of `result` to fit it.
#[must_use]
pub fn bytes_cut(placed: &[PlacedLog], result: &Value) -> u64 {
    let read: usize = placed
        .iter()
        .map(|l| match &l.log {
            ContainerLog::Text { text, .. } => text.len(),
            ContainerLog::Failed { .. } => 0,
        })
        .sum();
    let kept: usize = placed
        .iter()
        .filter_map(|l| {
            let t = &l.target;
            ["logs", "pods", &t.pod, t.section(), &t.container, "log"]
                .iter()
                .try_fold(result, |v, key| v.get(key))
        })
        .map(|v| v.as_str().map_or_else(|| serialized_len(v), str::len))
        .sum();
    read.saturating_sub(kept) as u64
}

/// The result of a finished Job: the Job object plus, when logs were read, `logs`,
/// all within [`RESULT_BUDGET`] serialized (as [`budget::serialized_len`] counts). Logs are cut fairly (small logs whole,
/// big ones to a common level, their ends kept); a JSON log that must be cut becomes
/// text. Should the Job alone not fit, its `metadata` and `status` stand for it.
#[must_use]
pub fn result(job: &Value, logs: Option<&[PlacedLog]>, archived: &[Archived]) -> Value {
    let Some(logs) = logs else {
        if archived.is_empty() {
            return fit_job(job);
        }
        let mut doc = job.clone();
        doc["logs"] = logs_value(&[], archived, &mut std::iter::empty());
        return if serialized_len(&doc) <= RESULT_BUDGET {
            doc
        } else {
            fit_job(job)
        };
    };
    let pieces: Vec<Piece<'_>> = logs
        .iter()
        .filter_map(|l| match &l.log {
            ContainerLog::Text {
                text,
                partial,
                parse_json,
            } => Some(Piece {
                text,
                partial: *partial,
                parsed: if *parse_json && !partial {
                    serde_json::from_str(text).ok()
                } else {
                    None
                },
            }),
            ContainerLog::Failed { .. } => None,
        })
        .collect();
    let assemble = |values: Vec<Value>| {
        let mut doc = job.clone();
        if let Some(o) = doc.as_object_mut() {
            o.insert(
                "logs".into(),
                logs_value(logs, archived, &mut values.into_iter()),
            );
        }
        doc
    };
    fit_pieces(&pieces, RESULT_BUDGET, assemble).unwrap_or_else(|| fit_job(job))
}

fn fit_job(job: &Value) -> Value {
    if serialized_len(job) <= RESULT_BUDGET {
        return job.clone();
    }
    let slim = json!({
        "apiVersion": job.get("apiVersion"),
        "kind": job.get("kind"),
        "metadata": { "name": job.pointer("/metadata/name"), "namespace": job.pointer("/metadata/namespace"), "uid": job.pointer("/metadata/uid") },
        "status": job.get("status"),
        "eksTaskWorker": { "message": "the Job object alone exceeds 262,144 bytes; only its identity and status are returned" },
    });
    if serialized_len(&slim) <= RESULT_BUDGET {
        slim
    } else {
        serde_json::from_str(&budget::fit_value_chars(&slim, RESULT_BUDGET)).unwrap_or(Value::Null)
    }
}

/// One container's archived log: `{uri, bytes}` or `{error, cause}`.
#[derive(Debug, Clone, PartialEq)]
pub struct Archived {
    /// Whose log.
    pub target: Target,
    /// What to put beside its log in the result.
    pub entry: Value,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(pod: &str, t: &str, partial: bool, parse: bool) -> PlacedLog {
        PlacedLog {
            target: Target {
                pod: pod.into(),
                container: "main".into(),
                init: false,
            },
            log: ContainerLog::Text {
                text: t.into(),
                partial,
                parse_json: parse,
            },
        }
    }

    #[test]
    fn json_logs_are_parsed_and_text_stays_text() {
        let job = json!({"kind": "Job"});
        let logs = vec![
            text("a", "{\"ok\": 1}", false, true),
            text("b", "plain\n", false, true),
            text("c", "{\"ok\": 1}", false, false),
        ];
        let r = result(&job, Some(&logs), &[]);
        assert_eq!(
            r["logs"]["pods"]["a"]["containers"]["main"]["log"],
            json!({"ok": 1})
        );
        assert_eq!(
            r["logs"]["pods"]["b"]["containers"]["main"]["log"],
            "plain\n"
        );
        assert_eq!(
            r["logs"]["pods"]["c"]["containers"]["main"]["log"],
            "{\"ok\": 1}"
        );
        assert_eq!(r["kind"], "Job");
    }

    #[test]
    fn failed_reads_stand_in_with_error_and_cause() {
        let logs = vec![PlacedLog {
            target: Target {
                pod: "p".into(),
                container: "c".into(),
                init: false,
            },
            log: ContainerLog::Failed {
                error: "EKS.400".into(),
                cause: "no".into(),
            },
        }];
        let r = result(&json!({}), Some(&logs), &[]);
        assert_eq!(
            r["logs"]["pods"]["p"]["containers"]["c"],
            json!({"error": "EKS.400", "cause": "no"})
        );
    }

    #[test]
    fn big_logs_are_cut_fairly_and_the_result_fits() {
        let big = "line of log output\n".repeat(30_000);
        let logs = vec![
            text("a", &big, false, true),
            text("b", "small\n", false, true),
            text("c", &big, false, true),
        ];
        let r = result(&json!({"kind": "Job"}), Some(&logs), &[]);
        assert!(serialized_len(&r) <= RESULT_BUDGET);
        assert_eq!(
            r["logs"]["pods"]["b"]["containers"]["main"]["log"],
            "small\n"
        );
        let a = r["logs"]["pods"]["a"]["containers"]["main"]["log"]
            .as_str()
            .unwrap_or_default();
        let c = r["logs"]["pods"]["c"]["containers"]["main"]["log"]
            .as_str()
            .unwrap_or_default();
        assert!(a.starts_with("[eks-task-worker: cut"));
        assert!(a.ends_with("line of log output\n"));
        assert!(
            a.len() > 120_000 && a.len().abs_diff(c.len()) < 64,
            "{} {}",
            a.len(),
            c.len()
        );
    }

    #[test]
    fn a_cut_json_log_becomes_text() {
        let big = serde_json::to_string(&json!({"data": "x".repeat(300_000)})).unwrap_or_default();
        let r = result(&json!({}), Some(&[text("a", &big, false, true)]), &[]);
        assert!(r["logs"]["pods"]["a"]["containers"]["main"]["log"].is_string());
        assert!(serialized_len(&r) <= RESULT_BUDGET);
    }

    #[test]
    fn an_enormous_job_is_slimmed() {
        let job = json!({"kind": "Job", "metadata": {"name": "j", "annotations": {"a": "x".repeat(300_000)}}, "status": {"succeeded": 1}});
        let r = result(&job, None, &[]);
        assert!(serialized_len(&r) <= RESULT_BUDGET);
        assert_eq!(r["status"]["succeeded"], 1);
    }

    #[test]
    fn targets_honour_the_container_parameter() {
        let pods = vec![
            json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a"}, {"name": "b"}]}}),
        ];
        assert_eq!(targets(&pods, &LogOptions::default()).len(), 2);
        let only = LogOptions {
            log_parameters: vec![("container".into(), "b".into())],
            ..LogOptions::default()
        };
        let only_b = targets(&pods, &only);
        assert_eq!(
            only_b
                .iter()
                .map(|t| t.container.as_str())
                .collect::<Vec<_>>(),
            ["b"]
        );
    }

    #[test]
    fn init_containers_that_started_are_read_in_their_own_map() {
        let pods = vec![json!({
            "metadata": {"name": "p"},
            "spec": {"initContainers": [{"name": "setup"}, {"name": "later"}], "containers": [{"name": "main"}]},
            "status": {"initContainerStatuses": [
                {"name": "setup", "state": {"terminated": {"exitCode": 1}}},
                {"name": "later", "state": {"waiting": {"reason": "PodInitializing"}}}
            ]}
        })];
        let t = targets(&pods, &LogOptions::default());
        assert_eq!(
            t.iter()
                .map(|t| (t.container.as_str(), t.init))
                .collect::<Vec<_>>(),
            [("setup", true), ("main", false)],
            "the init container that never started is not read"
        );
        let text = |target: &Target, log: &str| PlacedLog {
            target: target.clone(),
            log: ContainerLog::Text {
                text: log.into(),
                partial: false,
                parse_json: false,
            },
        };
        let r = result(
            &json!({}),
            Some(&[text(&t[0], "init\n"), text(&t[1], "app\n")]),
            &[],
        );
        assert_eq!(
            r["logs"]["pods"]["p"]["initContainers"]["setup"]["log"],
            "init\n"
        );
        assert_eq!(r["logs"]["pods"]["p"]["containers"]["main"]["log"], "app\n");
        assert_eq!(
            (t[0].key_part(), t[1].key_part()),
            ("init/setup".into(), "main".into())
        );
    }
}
