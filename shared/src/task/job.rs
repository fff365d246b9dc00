//! A Job run on the cluster: create it (adopting the one a retried delivery already
//! created), know it after that by its [`JobId`], watch it until it finishes or the
//! window closes, say how it ended (its pods, warning events and failure summary), and
//! take the turn to answer its task so that two deliveries answer once. The user's
//! manifest passes through as JSON; the worker only adds its own labels.

use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use crate::contract::error::{names, TaskError};
use crate::contract::tags::{task_label, MANAGED_BY, MANAGED_BY_LABEL, TASK_LABEL};
use crate::ports::kube::{KubeApi, KubeRequest};

/// The collection path of Jobs in a namespace.
#[must_use]
pub fn jobs_path(namespace: &str) -> String {
    format!("/apis/batch/v1/namespaces/{namespace}/jobs")
}

/// The characters the API server draws a `generateName` suffix from (no vowels, no
/// look-alikes); the worker's derived suffix uses the same, so its names look alike.
const SUFFIX_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
/// The longest `generateName` prefix the API server keeps (63 minus the 5-character
/// suffix).
const MAX_PREFIX: usize = 58;

/// The name a `generateName` Job gets from the worker: the prefix (cut to 58
/// characters, as the API server cuts it) and five characters derived from the task's
/// key. The same task always gets the same name, so a second create of it (a retry
/// after a lost answer, a second delivery at the same time) is refused with 409 and
/// the first Job is adopted, never run twice.
#[must_use]
pub fn derived_name(generate_name: &str, key: &str) -> String {
    let digest = Sha256::digest(format!("generateName:{key}").as_bytes());
    let prefix: String = generate_name.chars().take(MAX_PREFIX).collect();
    let suffix: String = digest
        .iter()
        .take(5)
        .map(|b| char::from(SUFFIX_ALPHABET[usize::from(*b) % SUFFIX_ALPHABET.len()]))
        .collect();
    format!("{prefix}{suffix}")
}

/// A key for a create without a task token (request/response): unique to this
/// invocation, so that its own retries recognise the Job they made.
#[must_use]
pub fn invocation_key() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let digest = Sha256::digest(format!("{now}/{}/{n}", std::process::id()).as_bytes());
    digest.iter().take(20).map(|b| format!("{b:02x}")).collect()
}

/// Where the worker keeps a Job's own `ttlSecondsAfterFinished` while it holds a longer
/// one, so that Kubernetes does not delete the Job before the worker has read it.
pub const HELD_TTL_ANNOTATION: &str = "eks-task-worker.io/ttl-seconds-after-finished";

/// The shortest `ttlSecondsAfterFinished` a Job the worker follows may have: the
/// longest the worker may take to read the Job once it finished. That is a wait of the
/// curve's longest delay for each poll that may fail in a row before the task fails
/// (`failed_polls`) and one more, the time Scheduler may retry a poll
/// (`max_event_age_seconds`), and one more invocation (900 s). The worker gives the
/// Job's own TTL back as soon as it has answered.
#[must_use]
pub fn ttl_floor(longest_delay: u64, failed_polls: u64, max_event_age_seconds: u64) -> u64 {
    longest_delay * (failed_polls + 1) + max_event_age_seconds + 900
}

/// Holds the Job for its answer: a `ttlSecondsAfterFinished` under `floor` is raised to
/// it, the Job's own kept in [`HELD_TTL_ANNOTATION`] for [`answered`] to give back.
fn hold_ttl(job: &mut Value, floor: u64) {
    let Some(own) = job
        .pointer("/spec/ttlSecondsAfterFinished")
        .and_then(Value::as_u64)
    else {
        return;
    };
    if own >= floor {
        return;
    }
    job["spec"]["ttlSecondsAfterFinished"] = json!(floor);
    if let Some(meta) = job.get_mut("metadata").and_then(Value::as_object_mut) {
        let annotations = meta
            .entry("annotations")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Some(a) = annotations.as_object_mut() {
            a.insert(HELD_TTL_ANNOTATION.into(), json!(own.to_string()));
        }
    }
}

/// Adds to a merge patch of the Job what gives it back its own TTL: the value, and the
/// annotation that kept it removed (`null` in a merge patch).
fn give_back_ttl(patch: &mut Value, ttl: u64) {
    patch["metadata"]["annotations"][HELD_TTL_ANNOTATION] = Value::Null;
    patch["spec"] = json!({ "ttlSecondsAfterFinished": ttl });
}

/// Gives the Job its own TTL back when the worker held it and its task ends without
/// an answer about its end (stuck, or the task gone): best effort, logged.
pub async fn release_ttl(kube: &dyn KubeApi, id: &JobId, job: &Value) {
    let Some(ttl) = held_ttl(job) else {
        return;
    };
    let mut patch = json!({});
    give_back_ttl(&mut patch, ttl);
    patch_or_log(kube, id, &patch, "could not give the job its ttl back").await;
}

/// Sends a merge patch of the Job, best effort: a Job already gone is fine, any other
/// failure is logged as `failed`. The API server's status, when it answered.
pub(crate) async fn patch_or_log(
    kube: &dyn KubeApi,
    id: &JobId,
    patch: &Value,
    failed: &str,
) -> Option<u16> {
    match kube.send(merge_patch(id, patch), None).await {
        Ok(r) if r.is_success() || r.status == 404 => Some(r.status),
        Ok(r) => {
            tracing::info!(job = id.name, status = r.status, "{failed}");
            Some(r.status)
        }
        Err(e) => {
            tracing::info!(job = id.name, error = %e, "{failed}");
            None
        }
    }
}

/// The Job's own `ttlSecondsAfterFinished` the worker holds back, if it does.
#[must_use]
pub fn held_ttl(job: &Value) -> Option<u64> {
    metadata_entry(job, "annotations", HELD_TTL_ANNOTATION).and_then(|v| v.parse().ok())
}

/// The manifest as sent: the user's Job with the worker's labels added (the task label
/// holds the hash of `key`: the task token, or the invocation's key), the worker's
/// bookkeeping annotations taken out, a `generateName` turned into the task's
/// [`derived_name`], and, for a Job the worker follows (`ttl_floor`), its TTL held up to
/// the floor.
#[must_use]
pub fn prepare(job: &Value, key: &str, ttl_floor: Option<u64>) -> Value {
    let mut job = job.clone();
    if let Some(annotations) = job
        .pointer_mut("/metadata/annotations")
        .and_then(Value::as_object_mut)
    {
        for own in BOOKKEEPING {
            annotations.shift_remove(own);
        }
    }
    if let Some(floor) = ttl_floor {
        hold_ttl(&mut job, floor);
    }
    if let Some(meta) = job.get_mut("metadata").and_then(Value::as_object_mut) {
        let labels = meta
            .entry("labels")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Some(labels) = labels.as_object_mut() {
            labels.insert(MANAGED_BY_LABEL.into(), json!(MANAGED_BY));
            labels.insert(TASK_LABEL.into(), json!(task_label(key)));
        }
        let named = meta
            .get("name")
            .and_then(Value::as_str)
            .is_some_and(|n| !n.is_empty());
        if !named {
            if let Some(prefix) = meta.get("generateName").and_then(Value::as_str) {
                let name = derived_name(prefix, key);
                meta.remove("generateName");
                meta.insert("name".into(), json!(name));
            }
        }
    }
    job
}

pub(crate) fn name_of(job: &Value) -> Option<&str> {
    job.pointer("/metadata/name").and_then(Value::as_str)
}

/// The value of `key` in the Job's `metadata.<map>` (`labels`, `annotations`).
pub(crate) fn metadata_entry<'a>(job: &'a Value, map: &str, key: &str) -> Option<&'a str> {
    job.get("metadata")
        .and_then(|m| m.get(map))
        .and_then(|m| m.get(key))
        .and_then(Value::as_str)
}

/// Whether `job` was created for the task `key` (its task label says so).
#[must_use]
pub fn is_for_task(job: &Value, key: &str) -> bool {
    metadata_entry(job, "labels", TASK_LABEL) == Some(task_label(key).as_str())
}

/// Creates the Job in `namespace` and returns it as the API server returned it: exactly
/// one Job per task, whatever answer is lost. The task's key is its token (callback)
/// or a key of this invocation (request/response, `None`); the Job carries its hash as
/// the task label, and a `generateName` becomes a name derived from it. A Job already
/// created for the key is adopted instead of created again: looked up by the task label
/// before the first try (a token's retried delivery) and before every later try, and
/// read back by name when the create meets 409 (a lost answer, a delivery at the same
/// time). A Job the worker follows has its TTL held up to `ttl_floor` ([`prepare`]).
///
/// # Errors
/// `EKS.<status>` when the API server refuses (`EKS.409` when the name belongs to a
/// Job of another task), transport errors otherwise.
pub async fn create(
    kube: &dyn KubeApi,
    namespace: &str,
    job: &Value,
    task_token: Option<&str>,
    ttl_floor: Option<u64>,
) -> Result<Value, TaskError> {
    let key = task_token.map_or_else(invocation_key, str::to_owned);
    let manifest = prepare(job, &key, ttl_floor);
    let adopted = |existing: &Value| {
        tracing::info!(
            job = name_of(existing).unwrap_or_default(),
            namespace,
            "adopted the job already created for this task"
        );
    };
    let mut tries = 0_u32;
    // A 5xx, a 429 or a lost connection is tried again; before each try after the first
    // (and before the first, for a token's retried delivery) the task's Job is looked up.
    let response = crate::task::retry::transient("creating the job", || {
        tries += 1;
        let look_first = tries > 1 || task_token.is_some();
        let (manifest, key) = (&manifest, &key);
        async move {
            if look_first {
                if let Some(existing) = find_by_task(kube, namespace, key).await? {
                    return Ok(Created::Adopted(existing));
                }
            }
            let r = kube
                .send(
                    KubeRequest::json(http::Method::POST, jobs_path(namespace), manifest),
                    None,
                )
                .await?;
            if r.status == 429 || r.status >= 500 {
                return Err(r
                    .ok()
                    .err()
                    .unwrap_or_else(|| TaskError::message(names::INTERNAL, "a failed status")));
            }
            Ok(Created::Answered(r))
        }
    })
    .await?;
    let response = match response {
        Created::Adopted(existing) => {
            adopted(&existing);
            return Ok(existing);
        }
        Created::Answered(r) => r,
    };
    if response.status == 409 {
        if let Some(name) = name_of(&manifest) {
            let existing = crate::task::retry::transient("reading the job", || async {
                get(kube, namespace, name).await.map(with_create_shape)
            })
            .await?;
            if is_for_task(&existing, &key) {
                adopted(&existing);
                return Ok(existing);
            }
        }
    }
    let created = response.ok()?.json()?;
    tracing::info!(
        job = name_of(&created).unwrap_or_default(),
        namespace,
        "job created"
    );
    Ok(created)
}

enum Created {
    Answered(crate::ports::kube::KubeResponse),
    Adopted(Value),
}

/// A Job read back (a list item, a watch event) in the shape a create answers with:
/// `kind` and `apiVersion` filled in.
#[must_use]
pub fn with_create_shape(mut job: Value) -> Value {
    if let Some(o) = job.as_object_mut() {
        o.entry("kind").or_insert(json!("Job"));
        o.entry("apiVersion").or_insert(json!("batch/v1"));
    }
    job
}

async fn find_by_task(
    kube: &dyn KubeApi,
    namespace: &str,
    key: &str,
) -> Result<Option<Value>, TaskError> {
    let request = KubeRequest::get(jobs_path(namespace))
        .param("labelSelector", format!("{TASK_LABEL}={}", task_label(key)));
    let list = kube.send(request, None).await?.ok()?.json()?;
    // List items carry no kind/apiVersion; give the adopted Job the create shape.
    Ok(list
        .get("items")
        .and_then(Value::as_array)
        .and_then(|items| items.first())
        .cloned()
        .map(with_create_shape))
}

/// A Job once created, as the API server named it: its namespace, name and uid. Every
/// read after the create goes through it, so that a Job deleted and made again under
/// the same name is never taken for the task's own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobId {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// Its uid.
    pub uid: String,
}

impl JobId {
    /// The Job `name` with `uid` in `namespace`.
    pub fn new(
        namespace: impl Into<String>,
        name: impl Into<String>,
        uid: impl Into<String>,
    ) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
            uid: uid.into(),
        }
    }

    /// The identity of `job` as the API server returned it (created in `namespace`).
    #[must_use]
    pub fn of(job: &Value, namespace: &str) -> Self {
        let meta = |k: &str| {
            job.get("metadata")
                .and_then(|m| m.get(k))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        Self::new(namespace, meta("name"), meta("uid"))
    }

    /// Whether `job` is this Job (its uid, not only its name).
    #[must_use]
    pub fn is(&self, job: &Value) -> bool {
        job.pointer("/metadata/uid").and_then(Value::as_str) == Some(self.uid.as_str())
    }

    /// `namespace/name`, as messages name it.
    #[must_use]
    pub fn display(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// The error for this Job having disappeared while waited on.
    #[must_use]
    pub fn vanished(&self) -> TaskError {
        TaskError::new(
            names::JOB_VANISHED,
            json!({ "message": format!("the Job {} was deleted while the worker waited for it to finish", self.display()), "namespace": self.namespace, "job": self.name }),
        )
    }

    /// Reads this Job: gone, or replaced by another of the same name, is
    /// `EksTaskWorker.JobVanished`.
    ///
    /// # Errors
    /// `EksTaskWorker.JobVanished`, `EKS.<status>`, transport errors.
    pub async fn read(&self, kube: &dyn KubeApi) -> Result<Value, TaskError> {
        match get(kube, &self.namespace, &self.name).await {
            Ok(job) if self.is(&job) => Ok(job),
            Ok(_) => Err(self.vanished()),
            Err(e) if e.kubernetes_status_code() == Some(404) => Err(self.vanished()),
            Err(e) => Err(e),
        }
    }

    /// Reads this Job and checks that it was created for the task `key` (its task label),
    /// so that nothing acts on a Job of another task.
    ///
    /// # Errors
    /// As [`JobId::read`]; `EksTaskWorker.NotOwned` for a Job of another task.
    pub async fn read_for_task(&self, kube: &dyn KubeApi, key: &str) -> Result<Value, TaskError> {
        let job = self.read(kube).await?;
        if is_for_task(&job, key) {
            Ok(job)
        } else {
            Err(TaskError::new(
                names::NOT_OWNED,
                json!({ "message": format!("the Job {} was not created for this task (its {TASK_LABEL} label is not the \
                    hash of the poll state's task token); the poller refuses to act on it", self.display()), "namespace": self.namespace, "job": self.name }),
            ))
        }
    }
}

/// Reads the Job `name`.
///
/// # Errors
/// `EKS.<status>` (`EKS.404` when it is gone), transport errors.
pub async fn get(kube: &dyn KubeApi, namespace: &str, name: &str) -> Result<Value, TaskError> {
    kube.send(
        KubeRequest::get(format!("{}/{name}", jobs_path(namespace))),
        None,
    )
    .await?
    .ok()?
    .json()
}

/// Deletes the Job (`Foreground`: its pods go first), only if it is still the Job
/// with `uid`. A Job already gone is not an error.
///
/// # Errors
/// `EKS.<status>` other than 404/409, transport errors.
pub async fn delete(kube: &dyn KubeApi, job: &JobId) -> Result<(), TaskError> {
    let options = json!({ "apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": "Foreground", "preconditions": { "uid": job.uid } });
    let request = KubeRequest::json(
        http::Method::DELETE,
        format!("{}/{}", jobs_path(&job.namespace), job.name),
        &options,
    );
    let response = kube.send(request, None).await?;
    match response.status {
        404 | 409 => Ok(()),
        _ => response
            .ok()
            .map(|_| tracing::info!(job = job.name, namespace = job.namespace, "job deleted")),
    }
}

/// How a Job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Neither Complete nor Failed.
    Running,
    /// `Complete` condition is True.
    Complete,
    /// `Failed` condition is True.
    Failed,
}

/// The phase of a Job object, from its conditions. Newer API servers set
/// `FailureTarget` and `SuccessCriteriaMet` before `Failed` and `Complete` (while the
/// last pods terminate): they are final too.
#[must_use]
pub fn phase(job: &Value) -> Phase {
    let conditions = job
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let is_true = |kind: &str| {
        conditions
            .iter()
            .any(|c| c["type"] == kind && c["status"] == "True")
    };
    if is_true("Failed") || is_true("FailureTarget") {
        Phase::Failed
    } else if is_true("Complete") || is_true("SuccessCriteriaMet") {
        Phase::Complete
    } else {
        Phase::Running
    }
}

/// Watches in a row that may fail before [`wait`] leaves the Job to the poller.
const WATCH_FAILURES: u32 = 5;

/// When the Job finished: `status.completionTime`, else the time its final condition
/// turned true.
#[must_use]
pub fn finished_at(job: &Value) -> Option<std::time::SystemTime> {
    let parse = crate::contract::time::rfc3339;
    parse(&job["status"]["completionTime"]).or_else(|| {
        job.pointer("/status/conditions")
            .and_then(Value::as_array)?
            .iter()
            .filter(|c| {
                c["status"] == "True"
                    && ["Failed", "Complete", "FailureTarget", "SuccessCriteriaMet"]
                        .iter()
                        .any(|k| c["type"] == *k)
            })
            .find_map(|c| parse(&c["lastTransitionTime"]))
    })
}

/// How waiting on a Job ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Waited {
    /// It finished (Complete or Failed): the Job as last seen.
    Finished(Value),
    /// The window closed first.
    StillRunning,
    /// The Job could not be read or watched for a while (time may mend it: the
    /// poller takes over, counting its failed polls).
    Unreadable,
}

/// The annotation by which one delivery of a task takes the turn to answer it (a
/// delivery twice at once: both see the Job finish): `<delivery> <unix seconds>`.
pub const ANSWERING_ANNOTATION: &str = "eks-task-worker.io/answering";
/// Set on the Job once its answer went out: `<delivery>`.
pub const ANSWERED_ANNOTATION: &str = "eks-task-worker.io/answered";
/// The attempt of the latest poll of the Job's chain ([`crate::task::poll_chain`]).
pub const POLLED_ANNOTATION: &str = "eks-task-worker.io/polled";
/// The worker's bookkeeping on a Job: never taken from a user's manifest (one copied
/// off an earlier Job would otherwise stand a new task down, or refuse its polls).
const BOOKKEEPING: [&str; 3] = [ANSWERING_ANNOTATION, ANSWERED_ANNOTATION, POLLED_ANNOTATION];
/// A turn not finished within this is its holder's no more (it died before answering),
/// and another delivery takes it over.
pub const TURN_SECONDS: u64 = 120;

/// Whose turn it is to answer a finished Job's task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Turn {
    /// This delivery answers.
    Mine,
    /// Another delivery answered (or holds the turn while this one ran out of reasons
    /// to wait): nothing is sent.
    Answered(String),
}

fn merge_patch(job: &JobId, patch: &Value) -> KubeRequest {
    KubeRequest {
        method: http::Method::PATCH,
        path: format!("{}/{}", jobs_path(&job.namespace), job.name),
        query: Vec::new(),
        body: Some((
            patch.to_string().into_bytes(),
            "application/merge-patch+json",
        )),
    }
}

/// The clock's time in whole seconds since the epoch, as the turn records it.
fn unix_seconds(clock: &dyn crate::ports::clock::Clock) -> u64 {
    clock
        .now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

/// The write that gives `me` the turn at `now`: the answering annotation, on condition
/// that `job` (as read) has not changed since.
fn turn_patch(id: &JobId, job: &Value, me: &str, now: u64) -> KubeRequest {
    let rv = job
        .pointer("/metadata/resourceVersion")
        .cloned()
        .unwrap_or(Value::Null);
    let patch = json!({ "metadata": { "resourceVersion": rv, "annotations": { ANSWERING_ANNOTATION: format!("{me} {now}") } } });
    merge_patch(id, &patch)
}

/// Takes the turn to answer the task of the finished Job (`uid`) for the delivery `me`,
/// so that two deliveries of the same event answer once: the turn is an annotation
/// written with the Job's resourceVersion as precondition, so one write wins. A
/// delivery that finds another's fresh turn waits (until `until`) for that answer to
/// be marked sent, and takes the turn over once it is older than [`TURN_SECONDS`]
/// (its holder died). Whatever cannot be coordinated (the Job unreadable, the
/// annotation refused by RBAC, time out) is answered: Step Functions refuses a second
/// answer, while a task nobody answers waits until its timeout.
pub async fn take_turn(
    kube: &dyn KubeApi,
    id: &JobId,
    me: &str,
    clock: &dyn crate::ports::clock::Clock,
    until: tokio::time::Instant,
) -> Turn {
    let name = id.name.as_str();
    let mut other: Option<String> = None;
    loop {
        let job = match id.read(kube).await {
            Ok(j) => j,
            // Gone: after another delivery took the turn, it answered and went on
            // (JOB_CLEANUP deletes the Job once the answer is sent); else there is
            // nothing to coordinate on.
            Err(e) if e.name == names::JOB_VANISHED => {
                return other.map_or(Turn::Mine, Turn::Answered)
            }
            // Unreadable for now: look again while there is time, then answer.
            Err(e) => {
                if tokio::time::Instant::now() >= until {
                    tracing::warn!(job = name, error = %e.name, "could not read the job to take the turn to answer; answering");
                    return Turn::Mine;
                }
                tokio::time::sleep(Duration::from_secs(2)).await;
                continue;
            }
        };
        if let Some(by) = metadata_entry(&job, "annotations", ANSWERED_ANNOTATION) {
            return Turn::Answered(by.to_owned());
        }
        let now = unix_seconds(clock);
        if let Some((holder, at)) = metadata_entry(&job, "annotations", ANSWERING_ANNOTATION)
            .and_then(|a| a.split_once(' '))
            .map(|(h, t)| (h.to_owned(), t.parse::<u64>().unwrap_or_default()))
        {
            if holder == me {
                return Turn::Mine;
            }
            if now.saturating_sub(at) < TURN_SECONDS {
                if tokio::time::Instant::now() >= until {
                    tracing::warn!(job = name, holder = %holder, "another delivery holds the turn to answer, and this one is out of time: \
                        answering too");
                    return Turn::Mine;
                }
                other = Some(holder);
                tokio::time::sleep(Duration::from_secs(2)).await;
                continue;
            }
        }
        match kube.send(turn_patch(id, &job, me, now), None).await {
            Ok(r) if r.is_success() => return Turn::Mine,
            // Another write came first: look again.
            Ok(r) if r.status == 409 => {}
            Ok(r) => {
                tracing::info!(
                    job = name,
                    status = r.status,
                    "could not take the turn to answer; answering"
                );
                return Turn::Mine;
            }
            Err(e) => {
                tracing::info!(job = name, error = %e, "could not take the turn to answer; answering");
                return Turn::Mine;
            }
        }
    }
}

/// Renews `me`'s turn (its time), so that a long answer (logs archived for minutes) is
/// not taken over; does nothing when the turn is no longer `me`'s.
pub async fn renew_turn(
    kube: &dyn KubeApi,
    id: &JobId,
    me: &str,
    clock: &dyn crate::ports::clock::Clock,
) {
    let Ok(job) = id.read(kube).await else {
        return;
    };
    let mine = metadata_entry(&job, "annotations", ANSWERING_ANNOTATION)
        .and_then(|a| a.split_once(' '))
        .is_some_and(|(holder, _)| holder == me);
    if !mine {
        return;
    }
    let now = unix_seconds(clock);
    if let Err(e) = kube.send(turn_patch(id, &job, me, now), None).await {
        tracing::info!(job = id.name, error = %e, "could not renew the turn to answer");
    }
}

/// Marks the Job's answer as sent by `me`, and gives it back its own TTL when the
/// worker held it (`held_ttl`): Kubernetes then deletes it as its owner asked (best
/// effort: a Job already deleted is fine; a TTL not given back still ends, at the
/// floor).
pub async fn answered(kube: &dyn KubeApi, id: &JobId, me: &str, held_ttl: Option<u64>) {
    let mut patch = json!({ "metadata": { "annotations": { ANSWERED_ANNOTATION: me } } });
    if let Some(ttl) = held_ttl {
        give_back_ttl(&mut patch, ttl);
    }
    patch_or_log(kube, id, &patch, "could not mark the answer sent").await;
}

/// Reads the Job, tried again as reads are; `None` when the API server keeps failing in
/// a way time may mend (the Job was created and may well run: the poller follows it,
/// counting its failed polls).
///
/// # Errors
/// `EksTaskWorker.JobVanished`, and errors time cannot mend.
async fn reread(kube: &dyn KubeApi, id: &JobId) -> Result<Option<Value>, TaskError> {
    match crate::task::retry::transient("reading the job", || id.read(kube)).await {
        Ok(job) => Ok(Some(job)),
        Err(e) if crate::task::retry::is_transient(&e) => {
            tracing::warn!(job = %id.name, error = %e.name, "cannot read the Job; the poller takes it over");
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// Watches the Job until it finishes or `window` passes (the watch API, re-opened
/// when the server ends it). A Job that disappears is `EksTaskWorker.JobVanished`.
///
/// # Errors
/// `EksTaskWorker.JobVanished`, `EKS.<status>`, transport errors.
pub async fn wait(kube: &dyn KubeApi, id: &JobId, window: Duration) -> Result<Waited, TaskError> {
    let name = id.name.as_str();
    let deadline = Instant::now() + window;
    let Some(mut last) = reread(kube, id).await? else {
        return Ok(Waited::Unreadable);
    };
    // Watches that failed in a row (cut, timed out, refused for a while): the next
    // watch resumes from the last version seen; past WATCH_FAILURES the Job is left to
    // the poller (the caller hands it off) rather than failing a task time can mend.
    let mut failures = 0;
    loop {
        if phase(&last) != Phase::Running {
            return Ok(Waited::Finished(last));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(Waited::StillRunning);
        }
        let rv = last
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        // The server ends a watch after timeoutSeconds (the client keeps it under its
        // read timeout: a quiet watch ends there, not as a failure).
        let seconds = left.as_secs().max(1);
        let request = KubeRequest::get(jobs_path(&id.namespace))
            .param("watch", "1")
            .param("fieldSelector", format!("metadata.name={name}"))
            .param("resourceVersion", rv)
            .param("timeoutSeconds", seconds.to_string());
        let started = match kube.watch(request).await {
            Ok(Ok(events)) => Ok(events),
            Ok(Err(response)) if response.status == 410 => {
                let Some(job) = reread(kube, id).await? else {
                    return Ok(Waited::Unreadable);
                };
                last = job;
                continue;
            }
            Ok(Err(response)) => Err(response
                .ok()
                .err()
                .unwrap_or_else(|| TaskError::message(names::INTERNAL, "watch failed"))),
            Err(transport) => Err(transport.into()),
        };
        let mut events = match started {
            Ok(events) => events,
            Err(e) if crate::task::retry::is_transient(&e) => {
                failures += 1;
                tracing::warn!(job = name, error = %e.name, failures, "watch failed; watching again");
                if failures >= WATCH_FAILURES {
                    return Ok(Waited::Unreadable);
                }
                tokio::time::sleep(Duration::from_millis(500) * failures).await;
                continue;
            }
            Err(e) => return Err(e),
        };
        let watch_end = tokio::time::sleep(left);
        tokio::pin!(watch_end);
        loop {
            let event = tokio::select! {
                e = events.next() => e,
                () = &mut watch_end => None,
            };
            let Some(event) = event else { break };
            let event = match event {
                Ok(event) => event,
                Err(e) => {
                    // Cut in the middle: watch again from the last version seen.
                    failures += 1;
                    tracing::warn!(job = name, error = %e, failures, "watch cut; watching again");
                    if failures >= WATCH_FAILURES {
                        return Ok(Waited::Unreadable);
                    }
                    break;
                }
            };
            failures = 0;
            let object = event.get("object").cloned().unwrap_or(Value::Null);
            match event.get("type").and_then(Value::as_str) {
                Some("ADDED" | "MODIFIED") if id.is(&object) => {
                    last = object;
                    if phase(&last) != Phase::Running {
                        break;
                    }
                }
                Some("DELETED") if id.is(&object) => return Err(id.vanished()),
                Some("ERROR") => {
                    // Usually 410 Gone: the resourceVersion is too old; re-read and go on.
                    let Some(job) = reread(kube, id).await? else {
                        return Ok(Waited::Unreadable);
                    };
                    last = job;
                    break;
                }
                _ => {}
            }
        }
    }
}

/// Pods listed per request.
pub const PODS_PAGE: usize = 100;
/// The most pods of one Job read (a Job with more has its first ones answered: their
/// logs would not fit a result anyway).
pub const MAX_PODS: usize = 1000;
/// The most pages read (a selective list may come back in pages holding few pods).
pub const MAX_POD_PAGES: usize = 50;

/// The pods of a Job (by its controller uid), in pages of [`PODS_PAGE`], each read
/// tried again as reads are ([`crate::task::retry::transient`]), at most [`MAX_PODS`]
/// pods in [`MAX_POD_PAGES`] pages, sorted by name.
///
/// # Errors
/// `EKS.<status>`, transport errors, once the retries are spent.
pub async fn pods(kube: &dyn KubeApi, job: &JobId) -> Result<Vec<Value>, TaskError> {
    let mut items = Vec::new();
    let mut next = String::new();
    let mut pages = 0;
    loop {
        let mut request = KubeRequest::get(format!("/api/v1/namespaces/{}/pods", job.namespace))
            .param("labelSelector", format!("controller-uid={}", job.uid))
            .param("limit", PODS_PAGE.to_string());
        if !next.is_empty() {
            request = request.param("continue", next.clone());
        }
        let page = crate::task::retry::transient("listing the job's pods", || async {
            kube.send(request.clone(), None).await?.ok()?.json()
        })
        .await?;
        items.extend(
            page.get("items")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default(),
        );
        next = page
            .pointer("/metadata/continue")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        if next.is_empty() {
            break;
        }
        pages += 1;
        if items.len() >= MAX_PODS || pages >= MAX_POD_PAGES {
            tracing::warn!(job = %job.name, pods = items.len(), "the Job has more pods than are read; the rest are left out");
            break;
        }
    }
    items.sort_by(|a, b| {
        a.pointer("/metadata/name")
            .and_then(Value::as_str)
            .cmp(&b.pointer("/metadata/name").and_then(Value::as_str))
    });
    Ok(items)
}

/// Warning events the cluster recorded about the Job and its pods, newest first, at
/// most `limit`: `{object, reason, message, count, firstSeen, lastSeen}`. Empty when events cannot
/// be read (the worker's role may not grant them): they add to a diagnosis, never
/// replace it. Which events are the Job's: `is_about` (the Job and its listed pods,
/// by uid) and `of_a_gone_pod` (its pods already deleted: a Job past its
/// `activeDeadlineSeconds` has its pods deleted before it is answered, and their events
/// outlive them). `object` is the Job as last read.
pub async fn warning_events(
    kube: &dyn KubeApi,
    job: &JobId,
    object: &Value,
    pods: &[Value],
    limit: usize,
) -> Vec<Value> {
    let namespace = job.namespace.as_str();
    // One list of the namespace's Warning events, bounded (a busy namespace may hold
    // thousands): the events of this Job and its pods are picked from it.
    let request = KubeRequest::get(format!("/api/v1/namespaces/{namespace}/events"))
        .param("fieldSelector", "type=Warning".to_owned())
        .param("limit", "500".to_owned());
    let read = async { kube.send(request, None).await?.ok()?.json() };
    let list: Value = match read.await {
        Ok(list) => list,
        Err(e) => {
            tracing::info!(error = %e.name, "warning events not read");
            return Vec::new();
        }
    };
    let mut events: Vec<Value> = list
        .get("items")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter(|e| is_about(e, job, pods) || of_a_gone_pod(e, job, object, pods))
        .map(|e| {
            json!({
                "object": format!("{}/{}", e.pointer("/involvedObject/kind").and_then(Value::as_str).unwrap_or_default(), e.pointer("/involvedObject/name").and_then(Value::as_str).unwrap_or_default()),
                "reason": e["reason"], "message": e["message"], "count": e["count"],
                "firstSeen": e.get("firstTimestamp").filter(|t| !t.is_null()).or_else(|| e.get("eventTime")).cloned().unwrap_or(Value::Null),
                "lastSeen": e.get("lastTimestamp").filter(|t| !t.is_null()).or_else(|| e.get("eventTime")).cloned().unwrap_or(Value::Null),
            })
        })
        .collect();
    events.sort_by(|a, b| b["lastSeen"].as_str().cmp(&a["lastSeen"].as_str()));
    events.truncate(limit);
    events
}

/// Why a Job failed, as a state machine branches on it (the cause's `Reason`): the
/// Job's `Failed` condition reason (`DeadlineExceeded`, `BackoffLimitExceeded`,
/// `PodFailurePolicy`, `MaxFailedIndexesExceeded`, …; `Unknown` without one), where it
/// is `BackoffLimitExceeded` made precise by the failed pods: `OOMKilled` when a
/// container was killed for memory, else `Evicted` when a pod was evicted.
#[must_use]
pub fn failure_reason(job: &Value, pods: &[Value]) -> String {
    let condition = job
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|c| {
            c.iter().find(|c| {
                (c["type"] == "Failed" || c["type"] == "FailureTarget") && c["status"] == "True"
            })
        })
        .and_then(|c| c["reason"].as_str())
        .filter(|r| !r.is_empty())
        .unwrap_or("Unknown");
    if condition != "BackoffLimitExceeded" {
        return condition.to_owned();
    }
    let failed = failed_pods(pods);
    let oom = failed.iter().flat_map(|p| container_statuses(p)).any(|c| {
        c.pointer("/state/terminated/reason") == Some(&json!("OOMKilled"))
            || c.pointer("/lastState/terminated/reason") == Some(&json!("OOMKilled"))
    });
    if oom {
        return "OOMKilled".to_owned();
    }
    if failed
        .iter()
        .any(|p| p.pointer("/status/reason") == Some(&json!("Evicted")))
    {
        return "Evicted".to_owned();
    }
    condition.to_owned()
}

/// The pods that failed (phase `Failed`).
pub(crate) fn failed_pods(pods: &[Value]) -> Vec<&Value> {
    pods.iter()
        .filter(|p| p.pointer("/status/phase").and_then(Value::as_str) == Some("Failed"))
        .collect()
}

/// A pod's init container statuses, then its container statuses.
pub(crate) fn container_statuses(pod: &Value) -> impl Iterator<Item = &Value> {
    ["/status/initContainerStatuses", "/status/containerStatuses"]
        .into_iter()
        .filter_map(|p| pod.pointer(p).and_then(Value::as_array))
        .flatten()
}

/// Whether the event `e` is about this Job or one of its `pods`: by the object's uid
/// (an older Job of the same name, deleted and made again, keeps its events for an hour:
/// they are not this one's); by its name only when the event names no uid.
fn is_about(e: &Value, job: &JobId, pods: &[Value]) -> bool {
    let field = |k: &str| {
        e.pointer(&format!("/involvedObject/{k}"))
            .and_then(Value::as_str)
    };
    let ours =
        std::iter::once((job.name.as_str(), Some(job.uid.as_str()))).chain(pods.iter().map(|p| {
            (
                p.pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or_default(),
                p.pointer("/metadata/uid").and_then(Value::as_str),
            )
        }));
    match (field("name"), field("uid").filter(|u| !u.is_empty())) {
        (Some(name), Some(uid)) => ours
            .into_iter()
            .any(|(n, u)| n == name && u.is_none_or(|u| u == uid)),
        (Some(name), None) => ours.into_iter().any(|(n, _)| n == name),
        _ => false,
    }
}

/// Whether `e` is about a pod of the Job `job` (`object` as last read) that is gone: a
/// Pod named as the Job controller names the Job's pods (`<job>-<5 characters>`, or
/// `<job>-<index>-<5 characters>` when the Job is `Indexed`, its index under its
/// completions), not one of the `pods` listed now, first seen since the Job was made
/// (an older Job of the same name lends none). A Job named `train` does not take the
/// events of Jobs named `train-3` or `train-eval`, whose pods are `train-3-…`.
fn of_a_gone_pod(e: &Value, job: &JobId, object: &Value, pods: &[Value]) -> bool {
    use crate::contract::time::rfc3339;
    if e.pointer("/involvedObject/kind").and_then(Value::as_str) != Some("Pod") {
        return false;
    }
    let Some(created) = rfc3339(&object["metadata"]["creationTimestamp"]) else {
        return false;
    };
    let seen = rfc3339(&e["firstTimestamp"]).or_else(|| rfc3339(&e["eventTime"]));
    let name = e
        .pointer("/involvedObject/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if pods
        .iter()
        .any(|p| p.pointer("/metadata/name").and_then(Value::as_str) == Some(name))
    {
        return false;
    }
    let generated = |s: &str| {
        s.len() == 5
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    };
    let indexed = object
        .pointer("/spec/completionMode")
        .and_then(Value::as_str)
        == Some("Indexed");
    let completions = object
        .pointer("/spec/completions")
        .and_then(Value::as_u64)
        .unwrap_or(1);
    let named = name
        .strip_prefix(job.name.as_str())
        .and_then(|n| n.strip_prefix('-'))
        .is_some_and(|s| match s.split_once('-') {
            None => generated(s),
            Some((index, rest)) => {
                indexed && index.parse::<u64>().is_ok_and(|i| i < completions) && generated(rest)
            }
        });
    named && seen.is_some_and(|t| t >= created)
}

/// What a failed Job's cause says: its `Reason` ([`failure_reason`]), the distinct
/// non-zero `ExitCodes` of its failed pods' containers, its conditions and, per failed
/// pod, each container's (and init container's) terminated reason and exit code.
#[must_use]
pub fn failure_summary(job: &Value, pods: &[Value]) -> Value {
    let conditions = job
        .pointer("/status/conditions")
        .cloned()
        .unwrap_or(Value::Null);
    let failed = failed_pods(pods);
    let mut exit_codes: Vec<i64> = failed
        .iter()
        .flat_map(|p| container_statuses(p))
        .filter_map(|c| {
            c.pointer("/state/terminated/exitCode")
                .and_then(Value::as_i64)
        })
        .filter(|code| *code != 0)
        .collect();
    exit_codes.sort_unstable();
    exit_codes.dedup();
    let failed_pods: Vec<Value> = failed
        .iter()
        .map(|p| {
            let statuses = |path: &str| {
                p.pointer(path)
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default()
            };
            let init = statuses("/status/initContainerStatuses").into_iter().map(|c| (c, true));
            let app = statuses("/status/containerStatuses").into_iter().map(|c| (c, false));
            let containers: Vec<Value> = init
                .chain(app)
                .map(|(c, init)| {
                    let t = c.pointer("/state/terminated");
                    let mut entry = json!({
                        "container": c["name"],
                        "exitCode": t.and_then(|t| t.get("exitCode")).cloned().unwrap_or(Value::Null),
                        "reason": t.and_then(|t| t.get("reason")).cloned().unwrap_or(Value::Null),
                        "message": t.and_then(|t| t.get("message")).cloned().unwrap_or(Value::Null),
                    });
                    if init {
                        entry["initContainer"] = json!(true);
                    }
                    entry
                })
                .collect();
            json!({ "pod": p.pointer("/metadata/name").cloned().unwrap_or(Value::Null), "reason": p.pointer("/status/reason").cloned().unwrap_or(Value::Null), "containers": containers })
        })
        .collect();
    json!({
        "message": format!(
            "the Job {}/{} failed",
            job.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or_default(),
            job.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default()
        ),
        "Reason": failure_reason(job, pods),
        "ExitCodes": exit_codes,
        "conditions": conditions,
        "failedPods": failed_pods,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prepare_adds_labels_and_keeps_everything_else() {
        let job = json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j", "labels": {"a": "b"}}, "spec": {"futureField": {"x": 1}}});
        let p = prepare(&job, "token", None);
        assert_eq!(p["metadata"]["labels"]["a"], "b");
        assert_eq!(p["metadata"]["labels"][MANAGED_BY_LABEL], MANAGED_BY);
        assert_eq!(p["metadata"]["labels"][TASK_LABEL], task_label("token"));
        assert_eq!(p["spec"]["futureField"]["x"], 1);
        assert_eq!(task_label("token").len(), 40);
        assert_eq!(p["metadata"]["name"], "j", "a fixed name stays");
        // A manifest copied off an earlier Job: the worker's bookkeeping does not carry
        // over (it would stand the new task down or refuse its polls); the user's stays.
        let copied = json!({"metadata": {"name": "j", "annotations": {
            ANSWERING_ANNOTATION: "x 1", ANSWERED_ANNOTATION: "x", POLLED_ANNOTATION: "7", "team": "a"}}});
        let p = prepare(&copied, "token", None);
        assert_eq!(p["metadata"]["annotations"], json!({ "team": "a" }));
    }

    #[test]
    fn events_of_an_older_job_of_the_same_name_are_not_this_ones() {
        let id = JobId::new("n", "j", "new");
        let event = |kind: &str, name: &str, uid: Option<&str>| json!({"involvedObject": {"kind": kind, "name": name, "uid": uid}});
        let pods = [json!({"metadata": {"name": "j-abc", "uid": "pod-1"}})];
        assert!(is_about(&event("Job", "j", Some("new")), &id, &pods));
        assert!(!is_about(&event("Job", "j", Some("old")), &id, &pods));
        assert!(is_about(&event("Pod", "j-abc", Some("pod-1")), &id, &pods));
        assert!(!is_about(&event("Pod", "j-abc", Some("pod-0")), &id, &pods));
        assert!(
            is_about(&event("Job", "j", None), &id, &pods),
            "no uid: by name"
        );
        assert!(!is_about(&event("Pod", "other", Some("x")), &id, &pods));
    }

    #[test]
    fn events_of_the_jobs_gone_pods_are_its_own() {
        let id = JobId::new("n", "train", "new");
        let job =
            json!({ "metadata": { "creationTimestamp": "2026-12-06T10:00:00Z" }, "spec": {} });
        let indexed = json!({ "metadata": { "creationTimestamp": "2026-12-06T10:00:00Z" }, "spec": { "completionMode": "Indexed", "completions": 4 } });
        let event = |name: &str, first: &str| json!({"involvedObject": {"kind": "Pod", "name": name, "uid": "gone"}, "firstTimestamp": first});
        let now = "2026-12-06T10:00:05Z";
        assert!(of_a_gone_pod(&event("train-x7k2p", now), &id, &job, &[]));
        assert!(
            of_a_gone_pod(&event("train-3-x7k2p", now), &id, &indexed, &[]),
            "an indexed Job's pod"
        );
        // A Job named train-3's pod (train is not indexed, or 3 is past its completions),
        // an older Job of the same name's pod, another Job's, a listed pod (matched by
        // its uid), a name the controller does not make, no creation time: not these.
        assert!(!of_a_gone_pod(&event("train-3-x7k2p", now), &id, &job, &[]));
        assert!(!of_a_gone_pod(
            &event("train-7-x7k2p", now),
            &id,
            &indexed,
            &[]
        ));
        assert!(!of_a_gone_pod(
            &event("train-x7k2p", "2026-12-06T09:59:59Z"),
            &id,
            &job,
            &[]
        ));
        assert!(!of_a_gone_pod(
            &event("train-eval-x7k2p", now),
            &id,
            &job,
            &[]
        ));
        assert!(!of_a_gone_pod(&event("trainer-x7k2p", now), &id, &job, &[]));
        let listed = [json!({"metadata": {"name": "train-x7k2p", "uid": "now"}})];
        assert!(!of_a_gone_pod(
            &event("train-x7k2p", now),
            &id,
            &job,
            &listed
        ));
        assert!(!of_a_gone_pod(&event("train-X7K2P", now), &id, &job, &[]));
        assert!(!of_a_gone_pod(
            &event("train-x7k2p", now),
            &id,
            &json!({}),
            &[]
        ));
        let job_event = json!({"involvedObject": {"kind": "Job", "name": "train-x7k2p"}, "firstTimestamp": now});
        assert!(!of_a_gone_pod(&job_event, &id, &job, &[]));
        // An event time with a fraction, in the Job's second: parsed, not compared as text.
        let precise = json!({"involvedObject": {"kind": "Pod", "name": "train-x7k2p"}, "eventTime": "2026-12-06T10:00:00.250000Z"});
        assert!(of_a_gone_pod(&precise, &id, &job, &[]));
    }

    #[test]
    fn a_ttl_under_the_floor_is_held_and_kept_for_later() {
        let job =
            |ttl: u64| json!({"metadata": {"name": "j"}, "spec": {"ttlSecondsAfterFinished": ttl}});
        let held = prepare(&job(0), "t", Some(600));
        assert_eq!(held["spec"]["ttlSecondsAfterFinished"], 600);
        assert_eq!(held_ttl(&held), Some(0));
        let long = prepare(&job(7200), "t", Some(600));
        assert_eq!(
            (
                long["spec"]["ttlSecondsAfterFinished"].as_u64(),
                held_ttl(&long)
            ),
            (Some(7200), None)
        );
        let unfollowed = prepare(&job(0), "t", None);
        assert_eq!(
            (
                unfollowed["spec"]["ttlSecondsAfterFinished"].as_u64(),
                held_ttl(&unfollowed)
            ),
            (Some(0), None)
        );
        let none = prepare(
            &json!({"metadata": {"name": "j"}, "spec": {}}),
            "t",
            Some(600),
        );
        assert!(none["spec"].get("ttlSecondsAfterFinished").is_none());
        assert_eq!(ttl_floor(300, 5, 3600), 6300);
    }

    #[test]
    fn failure_target_and_success_criteria_met_are_final() {
        let with = |kind: &str| json!({"status": {"conditions": [{"type": kind, "status": "True", "lastTransitionTime": "2026-01-02T03:04:05Z"}]}});
        assert_eq!(phase(&with("FailureTarget")), Phase::Failed);
        assert_eq!(phase(&with("SuccessCriteriaMet")), Phase::Complete);
        assert_eq!(
            finished_at(&with("FailureTarget")),
            Some(std::time::UNIX_EPOCH + Duration::from_secs(1_767_323_045))
        );
        let completed = json!({"status": {"completionTime": "1970-01-01T00:00:10Z", "conditions": [{"type": "Complete", "status": "True", "lastTransitionTime": "1970-01-01T00:00:20Z"}]}});
        assert_eq!(
            finished_at(&completed),
            Some(std::time::UNIX_EPOCH + Duration::from_secs(10))
        );
        assert_eq!(finished_at(&json!({"status": {}})), None);
    }

    #[test]
    fn phase_reads_conditions() {
        assert_eq!(phase(&json!({"status": {}})), Phase::Running);
        assert_eq!(
            phase(&json!({"status": {"conditions": [{"type": "Complete", "status": "True"}]}})),
            Phase::Complete
        );
        assert_eq!(
            phase(&json!({"status": {"conditions": [{"type": "Failed", "status": "True"}]}})),
            Phase::Failed
        );
        assert_eq!(
            phase(&json!({"status": {"conditions": [{"type": "Complete", "status": "False"}]}})),
            Phase::Running
        );
    }

    #[test]
    fn failure_summary_names_failed_containers() {
        let job = json!({"metadata": {"name": "j", "namespace": "n"}, "status": {"conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]}});
        let pods = vec![
            json!({"metadata": {"name": "j-1"}, "status": {"phase": "Failed", "containerStatuses": [{"name": "main", "state": {"terminated": {"exitCode": 3, "reason": "Error"}}}]}}),
        ];
        let s = failure_summary(&job, &pods);
        assert_eq!(s["failedPods"][0]["containers"][0]["exitCode"], 3);
        assert_eq!(s["conditions"][0]["reason"], "BackoffLimitExceeded");
        assert_eq!(s["message"], "the Job n/j failed");
        assert_eq!(
            (&s["Reason"], &s["ExitCodes"]),
            (&json!("BackoffLimitExceeded"), &json!([3]))
        );
    }

    #[test]
    fn the_failure_reason_names_what_a_state_machine_branches_on() {
        let failed = |reason: &str| json!({"status": {"conditions": [{"type": "Failed", "status": "True", "reason": reason}]}});
        let pod = |status: Value| json!({"metadata": {"name": "p"}, "status": status});
        let oom = pod(
            json!({"phase": "Failed", "containerStatuses": [{"name": "main", "state": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}]}),
        );
        let evicted = pod(json!({"phase": "Failed", "reason": "Evicted", "containerStatuses": []}));
        let init = pod(
            json!({"phase": "Failed", "initContainerStatuses": [{"name": "setup", "state": {"terminated": {"exitCode": 2, "reason": "Error"}}}], "containerStatuses": [{"name": "setup", "state": {"waiting": {"reason": "PodInitializing"}}}]}),
        );
        assert_eq!(
            failure_reason(&failed("BackoffLimitExceeded"), std::slice::from_ref(&oom)),
            "OOMKilled"
        );
        assert_eq!(
            failure_reason(
                &failed("BackoffLimitExceeded"),
                std::slice::from_ref(&evicted)
            ),
            "Evicted"
        );
        assert_eq!(
            failure_reason(&failed("BackoffLimitExceeded"), &[oom.clone(), evicted]),
            "OOMKilled"
        );
        assert_eq!(
            failure_reason(&failed("DeadlineExceeded"), std::slice::from_ref(&oom)),
            "DeadlineExceeded"
        );
        assert_eq!(
            failure_reason(
                &failed("MaxFailedIndexesExceeded"),
                std::slice::from_ref(&oom)
            ),
            "MaxFailedIndexesExceeded"
        );
        assert_eq!(
            failure_reason(&failed("PodFailurePolicy"), &[oom]),
            "PodFailurePolicy"
        );
        assert_eq!(failure_reason(&json!({"status": {}}), &[]), "Unknown");
        let s = failure_summary(&failed("BackoffLimitExceeded"), &[init]);
        assert_eq!(s["ExitCodes"], json!([2]));
        assert_eq!(
            s["failedPods"][0]["containers"][0]["initContainer"], true,
            "{s}"
        );
        assert!(
            s["failedPods"][0]["containers"][1]
                .get("initContainer")
                .is_none(),
            "{s}"
        );
    }
}

#[cfg(test)]
mod create_tests {
    //! `create` against an in-memory API server that commits a create and can lose its
    //! answer, as a dropped connection does.
    use super::*;
    use crate::testing::{FakeKube, TokioClock};

    fn generated() -> Value {
        json!({ "apiVersion": "batch/v1", "kind": "Job", "metadata": { "generateName": "work-" }, "spec": {} })
    }

    fn fixed() -> Value {
        json!({ "apiVersion": "batch/v1", "kind": "Job", "metadata": { "name": "work" }, "spec": {} })
    }

    async fn run(server: &FakeKube, job: &Value, token: Option<&str>) -> Result<Value, TaskError> {
        create(server, "ns", job, token, None).await
    }

    #[tokio::test(start_paused = true)]
    async fn a_lost_answer_never_makes_a_second_job() {
        for (job, token) in [
            (generated(), Some("token")),
            (generated(), None),
            (fixed(), Some("token")),
            (fixed(), None),
        ] {
            let server = FakeKube::default();
            server.lose_answers(1);
            let created = run(&server, &job, token)
                .await
                .unwrap_or_else(|e| panic!("{job} {token:?}: {e}"));
            let jobs = server.jobs();
            assert_eq!(jobs.len(), 1, "{job} {token:?}: {jobs:?}");
            assert_eq!(created["metadata"]["uid"], "uid-0", "{job} {token:?}");
            assert_eq!(created["kind"], "Job");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_second_delivery_adopts_the_first_job() {
        let server = FakeKube::default();
        let first = run(&server, &generated(), Some("token")).await;
        let second = run(&server, &generated(), Some("token")).await;
        let uid =
            |r: &Result<Value, TaskError>| r.as_ref().ok().map(|j| j["metadata"]["uid"].clone());
        assert_eq!(uid(&first), Some(json!("uid-0")));
        assert_eq!(uid(&second), uid(&first));
        assert_eq!(server.jobs().len(), 1);
        // Another task with the same generateName gets a Job of its own.
        let other = run(&server, &generated(), Some("another token")).await;
        assert_eq!(uid(&other), Some(json!("uid-1")));
    }

    #[tokio::test(start_paused = true)]
    async fn a_name_taken_by_another_task_is_eks_409() {
        let server = FakeKube::default();
        run(&server, &fixed(), Some("one"))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let e = run(&server, &fixed(), Some("two"))
            .await
            .err()
            .map(|e| e.name);
        assert_eq!(e.as_deref(), Some("EKS.409"));
        let e = run(&server, &fixed(), None).await.err().map(|e| e.name);
        assert_eq!(
            e.as_deref(),
            Some("EKS.409"),
            "request/response is not adopted either"
        );
    }

    #[test]
    fn derived_names_look_generated_and_are_stable() {
        let a = derived_name("work-", "t");
        assert_eq!(a, derived_name("work-", "t"));
        assert_ne!(a, derived_name("work-", "u"));
        assert_eq!(a.len(), 10);
        assert!(a[5..].bytes().all(|b| SUFFIX_ALPHABET.contains(&b)), "{a}");
        assert_eq!(derived_name(&"x".repeat(80), "t").len(), 63);
        let p = prepare(&generated(), "t", None);
        assert_eq!(p["metadata"]["name"], json!(a));
        assert!(p["metadata"].get("generateName").is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn two_deliveries_at_once_answer_once() {
        let server = FakeKube::default();
        let job = run(&server, &generated(), Some("token"))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let (name, uid) = (name_of(&job).unwrap_or_default().to_owned(), "uid-0");
        let clock = TokioClock::start();
        let until = tokio::time::Instant::now() + Duration::from_secs(TURN_SECONDS + 10);
        let a = async {
            let turn = take_turn(&server, &JobId::new("ns", &name, uid), "a", &clock, until).await;
            // The answer takes a while (logs), then is marked sent.
            tokio::time::sleep(Duration::from_secs(5)).await;
            answered(&server, &JobId::new("ns", &name, uid), "a", None).await;
            turn
        };
        let b = async {
            tokio::time::sleep(Duration::from_millis(1)).await;
            take_turn(&server, &JobId::new("ns", &name, uid), "b", &clock, until).await
        };
        let (a, b) = tokio::join!(a, b);
        assert_eq!((a, b), (Turn::Mine, Turn::Answered("a".into())));
        // A later delivery of the same event sees the answer sent.
        let c = take_turn(&server, &JobId::new("ns", &name, uid), "c", &clock, until).await;
        assert_eq!(c, Turn::Answered("a".into()));
    }

    #[tokio::test(start_paused = true)]
    async fn a_turn_whose_holder_died_is_taken_over() {
        let server = FakeKube::default();
        let job = run(&server, &generated(), Some("token"))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let name = name_of(&job).unwrap_or_default().to_owned();
        let clock = TokioClock::start();
        let until = tokio::time::Instant::now() + Duration::from_secs(TURN_SECONDS + 10);
        // "dead" takes the turn and never answers.
        assert_eq!(
            take_turn(
                &server,
                &JobId::new("ns", &name, "uid-0"),
                "dead",
                &clock,
                until
            )
            .await,
            Turn::Mine
        );
        let started = tokio::time::Instant::now();
        assert_eq!(
            take_turn(
                &server,
                &JobId::new("ns", &name, "uid-0"),
                "next",
                &clock,
                until
            )
            .await,
            Turn::Mine
        );
        assert!(
            started.elapsed() >= Duration::from_secs(TURN_SECONDS),
            "waited for the turn to lapse"
        );
        // A Job that cannot be coordinated on (gone) is answered.
        assert_eq!(
            take_turn(
                &server,
                &JobId::new("ns", "no-such-job", "uid-9"),
                "x",
                &clock,
                until
            )
            .await,
            Turn::Mine
        );
    }
}

#[cfg(test)]
mod pods_tests {
    use std::sync::Mutex;

    use async_trait::async_trait;
    use futures::stream::BoxStream;
    use serde_json::{json, Value};

    use super::{pods, JobId, MAX_PODS, PODS_PAGE};
    use crate::ports::kube::{KubeApi, KubeRequest, KubeResponse, TransportError};
    use crate::testing::answer;

    /// A Job with `total` pods, listed as the API server lists them: at most the
    /// request's `limit` a page, a `continue` token while more remain. Every list's
    /// query is recorded.
    struct PagedPods {
        total: usize,
        asked: Mutex<Vec<Vec<(String, String)>>>,
    }

    #[async_trait]
    impl KubeApi for PagedPods {
        async fn send(
            &self,
            request: KubeRequest,
            _: Option<usize>,
        ) -> Result<KubeResponse, TransportError> {
            let q = |k: &str| {
                request
                    .query
                    .iter()
                    .find(|(n, _)| n == k)
                    .and_then(|(_, v)| v.parse::<usize>().ok())
            };
            let (limit, from) = (q("limit").unwrap_or(usize::MAX), q("continue").unwrap_or(0));
            if let Ok(mut asked) = self.asked.lock() {
                asked.push(request.query.clone());
            }
            let to = from.saturating_add(limit).min(self.total);
            let items: Vec<Value> = (from..to)
                .rev()
                .map(|i| json!({ "metadata": { "name": format!("pod-{i:05}") } }))
                .collect();
            let mut list = json!({ "kind": "PodList", "metadata": {}, "items": items });
            if to < self.total {
                list["metadata"]["continue"] = json!(to.to_string());
            }
            Ok(answer(200, &list))
        }

        async fn watch(
            &self,
            _: KubeRequest,
        ) -> Result<
            Result<BoxStream<'static, Result<Value, TransportError>>, KubeResponse>,
            TransportError,
        > {
            Ok(Err(answer(405, &json!({}))))
        }
    }

    fn job() -> JobId {
        JobId {
            namespace: "n".into(),
            name: "j".into(),
            uid: "u".into(),
        }
    }

    #[tokio::test]
    async fn the_pods_of_a_job_are_read_in_pages_up_to_the_cap() {
        // 250 pods: three pages of at most 100, all read, sorted by name.
        let some = PagedPods {
            total: 250,
            asked: Mutex::new(Vec::new()),
        };
        let got = pods(&some, &job()).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(got.len(), 250);
        assert_eq!(got[0]["metadata"]["name"], "pod-00000");
        assert_eq!(got[249]["metadata"]["name"], "pod-00249");
        let asked = some.asked.lock().map(|a| a.clone()).unwrap_or_default();
        assert_eq!(asked.len(), 3);
        assert!(asked
            .iter()
            .all(|q| q.contains(&("limit".into(), PODS_PAGE.to_string()))));
        // A Job with 20,000 pods: never more than MAX_PODS read, in as many pages.
        let many = PagedPods {
            total: 20_000,
            asked: Mutex::new(Vec::new()),
        };
        let got = pods(&many, &job()).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(got.len(), MAX_PODS);
        let lists = many.asked.lock().map(|a| a.len()).unwrap_or_default();
        assert_eq!(lists, MAX_PODS / PODS_PAGE);
    }
}
