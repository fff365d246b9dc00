//! The poll states: what a one-time schedule hands the poller (a Job's or a cluster
//! operation's state, the attempt, the curve), with their bounds, schedule names and
//! `at()` expressions. Wire formats: changing a field breaks polls already scheduled.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Map};
use sha2::{Digest, Sha256};

use crate::contract::cluster_op::Operation;
use crate::contract::curve::PollCurve;
use crate::contract::error::{names, TaskError};
use crate::contract::payload;
use crate::contract::payload::{ClusterRef, LogOptions};

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
    /// What the polls of this task's operation are keyed by (their schedules' names):
    /// the same for every attempt.
    #[must_use]
    pub fn key(&self) -> String {
        let digest = Sha256::digest(format!(
            "{:?}/{}/{:?}/{}",
            self.operation, self.cluster_name, self.resource_name, self.task_token
        ));
        digest.iter().take(18).map(|b| format!("{b:02x}")).collect()
    }

    /// The poll this state asks for.
    ///
    /// # Errors
    /// `EksTaskWorker.InternalError` when the state does not serialize.
    pub fn next_poll(&self) -> Result<NextPoll, TaskError> {
        let input = serde_json::to_string(self)
            .map_err(|e| TaskError::message(names::INTERNAL, e.to_string()))?;
        Ok(NextPoll {
            key: self.key(),
            attempt: self.attempt,
            delay_seconds: self.next_delay_seconds,
            input,
        })
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
        crate::contract::payload::cluster_ref(&fields)?;
        crate::contract::payload::execution_arn(&fields)?;
        if self.force_delete_compute {
            crate::contract::cluster_op::forced_by(self.execution.as_deref())?;
        }
        if let Some(r) = &self.resource_name {
            crate::contract::payload::eks_name("ResourceName", r, 63)?;
        }
        crate::contract::poll_state::check_poll_bounds(
            &self.task_token,
            &self.curve,
            self.attempt,
            self.next_delay_seconds,
        )
    }
}

/// The cluster, in the form it travels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ClusterState {
    /// `ClusterName`.
    pub cluster_name: String,
    /// `Endpoint`, when the payload gave it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// `CertificateAuthority` (PEM), when the payload gave it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_authority: Option<String>,
    /// `RoleArn`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_arn: Option<String>,
    /// `Region`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
}

impl From<&ClusterRef> for ClusterState {
    fn from(c: &ClusterRef) -> Self {
        Self {
            cluster_name: c.name.clone(),
            endpoint: c.endpoint.as_ref().map(ToString::to_string),
            certificate_authority: c.certificate_authority.clone(),
            role_arn: c.role_arn.clone(),
            region: c.region.clone(),
        }
    }
}

/// Log options, in the form they travel.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct LogState {
    /// `RetrieveLogs`.
    pub retrieve_logs: bool,
    /// `RawLogs`.
    pub raw_logs: bool,
    /// `LogParameters`, as pairs.
    #[serde(default)]
    pub log_parameters: Vec<(String, String)>,
    /// `ArchiveUri`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive_uri: Option<String>,
}

impl ClusterState {
    /// The cluster reference a poll connects with.
    ///
    /// # Errors
    /// `EksTaskWorker.InvalidInput` when a stored endpoint or CA no longer parses.
    pub fn to_ref(&self) -> Result<ClusterRef, TaskError> {
        Ok(ClusterRef {
            name: self.cluster_name.clone(),
            endpoint: self
                .endpoint
                .as_deref()
                .map(payload::endpoint_url)
                .transpose()?,
            certificate_authority: self.certificate_authority.clone(),
            role_arn: self.role_arn.clone(),
            region: self.region.clone(),
        })
    }
}

impl From<&LogOptions> for LogState {
    fn from(o: &LogOptions) -> Self {
        Self {
            retrieve_logs: o.retrieve_logs,
            raw_logs: o.raw_logs,
            log_parameters: o.log_parameters.clone(),
            archive_uri: o
                .archive
                .as_ref()
                .map(crate::contract::archive_location::ArchiveLocation::uri),
        }
    }
}

impl From<&LogState> for LogOptions {
    fn from(s: &LogState) -> Self {
        Self {
            retrieve_logs: s.retrieve_logs,
            raw_logs: s.raw_logs,
            log_parameters: s.log_parameters.clone(),
            // Stored from a parsed location: it parses again.
            archive: s
                .archive_uri
                .as_deref()
                .and_then(|u| crate::contract::archive_location::ArchiveLocation::parse(u).ok()),
        }
    }
}

/// All a poller needs to finish a Job's task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PollState {
    /// The cluster.
    pub cluster: ClusterState,
    /// The Job's namespace.
    pub namespace: String,
    /// The Job's name.
    pub job_name: String,
    /// The Job's uid (a Job recreated under the same name is another Job).
    pub job_uid: String,
    /// The Step Functions task token.
    pub task_token: String,
    /// What to do with logs once it finishes.
    pub log_options: LogState,
    /// Polls made so far.
    pub attempt: u32,
    /// Seconds until the next poll.
    pub next_delay_seconds: u64,
    /// The poll curve.
    #[serde(default)]
    pub curve: PollCurve,
    /// When a stuck Job fails its task.
    #[serde(default, skip_serializing_if = "is_off")]
    pub stuck_policy: crate::contract::stuck_policy::StuckPolicy,
    /// Why the last of the polls since the last good one failed (at most
    /// [`FAILURES_KEPT`], each at most [`MAX_FAILURE_CHARS`]): see [`PollState::failed`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failures: Vec<String>,
    /// How many polls in a row failed (states written before this field count their
    /// `Failures`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub failed_polls: u32,
    /// The execution, where the payload gave it (log lines).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution: Option<String>,
}

impl PollState {
    /// The state for the poll after a good one: `attempt + 1`, its delay from the
    /// curve, no failures.
    #[must_use]
    pub fn next(&self) -> Self {
        let attempt = self.attempt + 1;
        Self {
            attempt,
            next_delay_seconds: self.curve.delay(attempt),
            failures: Vec::new(),
            failed_polls: 0,
            ..self.clone()
        }
    }

    /// The state for the poll after one that failed with `failure`: counted, and kept
    /// as the last of at most [`FAILURES_KEPT`], cut to [`FAILURE_CHARS_KEPT`]
    /// printable ASCII characters (quotes as `'`, so that JSON escapes none). However
    /// many polls fail, the state grows by at most [`FAILURES_ROOM`] characters over
    /// the one handed off, so it stays within a schedule's input.
    #[must_use]
    pub fn failed(&self, failure: &str) -> Self {
        let attempt = self.attempt + 1;
        let mut failures = self.failures.clone();
        failures.push(
            format!("poll {attempt}: {failure}")
                .chars()
                .map(|c| match c {
                    '"' => '\'',
                    '\\' => '/',
                    ' '..='~' => c,
                    _ => ' ',
                })
                .take(FAILURE_CHARS_KEPT)
                .collect(),
        );
        let drop = failures.len().saturating_sub(FAILURES_KEPT);
        failures.drain(..drop);
        Self {
            attempt,
            next_delay_seconds: self.curve.delay(attempt),
            failures,
            failed_polls: self.consecutive_failures().saturating_add(1),
            ..self.clone()
        }
    }

    /// Whether the state handed off leaves room for what its polls add: it is checked
    /// once, at the hand-off, so that no later poll meets a state it cannot schedule.
    ///
    /// # Errors
    /// `EksTaskWorker.InvalidInput` when the state, with [`FAILURES_ROOM`] for the
    /// failures its polls may record and the counters' growth, would not fit a
    /// schedule's input (a task token, certificate or execution name far longer than
    /// AWS makes them).
    pub fn check_room(&self) -> Result<(), TaskError> {
        let chars = serde_json::to_string(self)
            .map_err(|e| TaskError::message(names::INTERNAL, e.to_string()))?
            .chars()
            .count();
        let room = FAILURES_ROOM
            + crate::contract::seal::SEAL_ROOM
            + crate::contract::seal::hidden_token_room(self.task_token.chars().count());
        if chars + room > MAX_SCHEDULE_INPUT_CHARS {
            return Err(TaskError::invalid_input(
                "$",
                format!(
                    "the poll state would be {chars} characters and up to {room} more, \
                     over the {MAX_SCHEDULE_INPUT_CHARS} a schedule holds: the task token, \
                     CertificateAuthority or ExecutionArn is far longer than AWS makes them"
                ),
            ));
        }
        Ok(())
    }

    /// How many polls in a row failed.
    #[must_use]
    pub fn consecutive_failures(&self) -> u32 {
        self.failed_polls
            .max(u32::try_from(self.failures.len()).unwrap_or(u32::MAX))
    }
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// The most polls a task is followed for (more than a year's, the longest a Step
/// Functions execution runs, at one a minute).
pub const MAX_POLL_ATTEMPTS: u32 = 1_000_000;
/// The most failures a poll state may carry (`MAX_FAILED_POLLS` is at most this).
pub const MAX_FAILURES: usize = 64;
/// The longest a failure in a poll state may be (what earlier versions wrote, too).
pub const MAX_FAILURE_CHARS: usize = 1024;
/// The failures a poll state keeps word of (the last ones); the rest are counted.
pub const FAILURES_KEPT: usize = 3;
/// The length a failure is cut to when it is kept, in characters that JSON writes as
/// themselves (see [`PollState::failed`]).
pub const FAILURE_CHARS_KEPT: usize = 300;
/// The most a poll state grows by after its hand-off, however many polls fail: the
/// failures kept (each with its quotes and a comma), their key, the count and its key,
/// and the attempt's and delay's extra digits.
pub const FAILURES_ROOM: usize = FAILURES_KEPT * (FAILURE_CHARS_KEPT + 3) + 64;

/// What every poll state (a Job's, a cluster operation's) must hold, checked before the
/// poller acts on it: a task token as Step Functions issues them, a curve the
/// deployment would accept, an attempt within [`MAX_POLL_ATTEMPTS`] and the delay the
/// curve gives that attempt.
///
/// # Errors
/// `EksTaskWorker.InvalidInput` naming the field.
pub fn check_poll_bounds(
    task_token: &str,
    curve: &PollCurve,
    attempt: u32,
    next_delay_seconds: u64,
) -> Result<(), TaskError> {
    if !payload::is_task_token(task_token) {
        return Err(TaskError::invalid_input(
            "TaskToken",
            format!("must be 1-{} characters", payload::MAX_TASK_TOKEN_CHARS),
        ));
    }
    // The curve's shape (the deployment's POLL_MIN_SECONDS was applied when the curve was
    // made; a state made under another setting still polls as it was told).
    PollCurve::new(curve.delays().to_vec(), 1).map_err(|m| TaskError::invalid_input("Curve", m))?;
    if attempt > MAX_POLL_ATTEMPTS {
        return Err(TaskError::invalid_input(
            "Attempt",
            format!("must be at most {MAX_POLL_ATTEMPTS}"),
        ));
    }
    if next_delay_seconds != curve.delay(attempt) {
        return Err(TaskError::invalid_input(
            "NextDelaySeconds",
            "is not the delay the curve gives this attempt",
        ));
    }
    Ok(())
}

impl PollState {
    /// Checks every field of the state as run-job checks its payload (one rule per
    /// field: the cluster fields, the namespace, the execution go through the payload
    /// parser's own checks), and the poll bounds ([`check_poll_bounds`]).
    ///
    /// # Errors
    /// `EksTaskWorker.InvalidInput` naming the field.
    pub fn check_bounds(&self) -> Result<(), TaskError> {
        let fields = serde_json::to_value(&self.cluster)
            .ok()
            .and_then(|v| v.as_object().cloned())
            .unwrap_or_default();
        payload::cluster_ref(&fields)?;
        let mut more = serde_json::Map::new();
        more.insert("Namespace".into(), serde_json::json!(self.namespace));
        if let Some(e) = &self.execution {
            more.insert("ExecutionArn".into(), serde_json::json!(e));
        }
        payload::namespace(&more)?;
        payload::execution_arn(&more)?;
        if !payload::is_dns_subdomain(&self.job_name) {
            return Err(TaskError::invalid_input(
                "JobName",
                "must be a Kubernetes object name",
            ));
        }
        let uid_ok = !self.job_uid.is_empty()
            && self.job_uid.len() <= 64
            && self
                .job_uid
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if !uid_ok {
            return Err(TaskError::invalid_input(
                "JobUid",
                "must be a Kubernetes uid",
            ));
        }
        if self.failures.len() > MAX_FAILURES
            || self
                .failures
                .iter()
                .any(|f| f.chars().count() > MAX_FAILURE_CHARS)
        {
            return Err(TaskError::invalid_input(
                "Failures",
                format!("at most {MAX_FAILURES}, each at most {MAX_FAILURE_CHARS} characters"),
            ));
        }
        payload::check_log_parameters(&self.log_options.log_parameters)?;
        if let Some(uri) = &self.log_options.archive_uri {
            crate::contract::archive_location::ArchiveLocation::parse(uri)
                .map_err(|m| TaskError::invalid_input("LogOptions.ArchiveUri", m))?;
        }
        check_poll_bounds(
            &self.task_token,
            &self.curve,
            self.attempt,
            self.next_delay_seconds,
        )
    }
}

fn is_off(p: &crate::contract::stuck_policy::StuckPolicy) -> bool {
    !p.is_active()
}

/// The most characters a Scheduler target input may hold.
pub const MAX_SCHEDULE_INPUT_CHARS: usize = 8192;

/// The schedule's name for a poll: deterministic per poll key (a Job's uid, a cluster
/// operation's hash) and attempt, so a retried create is harmless; 1-64 characters of
/// `[0-9a-zA-Z-_.]`, the key cut to fit (a key with a fresh suffix, after a squatted
/// name, keeps its suffix whole: keys are 36 characters, suffixed 45).
#[must_use]
pub fn schedule_name(key: &str, attempt: u32) -> String {
    let attempt = attempt.to_string();
    let key: String = key
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .take(64 - "ekstw--".len() - attempt.len())
        .collect();
    format!("ekstw-{key}-{attempt}")
}

/// The prefix every schedule of the polls of `key` starts with ([`schedule_name`]; a
/// fresh name after a squat, `key-<8 hex>`, too).
#[must_use]
pub fn schedule_prefix(key: &str) -> String {
    let name = schedule_name(key, 0);
    name[..name.len() - 1].to_owned()
}

/// The attempt a schedule's name (one of [`schedule_name`]'s) is for: its last
/// `-`-separated part.
#[must_use]
pub fn attempt_of(name: &str) -> Option<u32> {
    name.rsplit_once('-').and_then(|(_, n)| n.parse().ok())
}

/// `at(yyyy-mm-ddThh:mm:ss)` in UTC, `delay` after `now`.
#[must_use]
pub fn at_expression(now: std::time::SystemTime, delay: Duration) -> String {
    format!("at({})", crate::contract::time::utc_seconds(now + delay))
}

/// A poll to arrange: of what (`key`: a Job's uid, a cluster operation's id), which
/// attempt, after how long, and the poller's input.
#[derive(Debug, Clone, PartialEq)]
pub struct NextPoll {
    /// What is polled; with `attempt`, it names the schedule.
    pub key: String,
    /// The attempt.
    pub attempt: u32,
    /// Seconds from now.
    pub delay_seconds: u64,
    /// The poller's input (JSON).
    pub input: String,
}

impl PollState {
    /// The poll this state asks for.
    ///
    /// # Errors
    /// `EksTaskWorker.InternalError` when the state does not serialize.
    pub fn next_poll(&self) -> Result<NextPoll, TaskError> {
        let input = serde_json::to_string(self)
            .map_err(|e| TaskError::message(names::INTERNAL, e.to_string()))?;
        Ok(NextPoll {
            key: self.job_uid.clone(),
            attempt: self.attempt,
            delay_seconds: self.next_delay_seconds,
            input,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(token: &str) -> PollState {
        PollState {
            cluster: ClusterState {
                cluster_name: "a-cluster-with-a-long-name-for-good-measure".into(),
                endpoint: Some(
                    "https://ABCDEF0123456789ABCDEF0123456789.gr7.us-east-1.eks.amazonaws.com"
                        .into(),
                ),
                certificate_authority: Some(format!(
                    "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
                    "M".repeat(1500)
                )),
                role_arn: Some("arn:aws:iam::123456789012:role/cross-account-eks-runner".into()),
                region: Some("eu-central-1".into()),
            },
            namespace: "batch-jobs".into(),
            job_name: "j".repeat(63),
            job_uid: "3f1c2b8e-8c9d-4e5f-a6b7-c8d9e0f1a2b3".into(),
            task_token: token.into(),
            log_options: LogState {
                retrieve_logs: true,
                raw_logs: false,
                log_parameters: vec![("tailLines".into(), "1000".into())],
                archive_uri: Some(
                    "s3://a-log-archive-bucket-of-63-characters-for-good-measure-000/team/jobs"
                        .into(),
                ),
            },
            attempt: 7,
            next_delay_seconds: 300,
            curve: PollCurve::default(),
            // Every limit set: the largest policy.
            stuck_policy: crate::contract::stuck_policy::Hold::ALL.iter().fold(
                crate::contract::stuck_policy::StuckPolicy::default(),
                |p, h| p.with(*h, Some(86_400)),
            ),
            failures: vec![],
            failed_polls: 0,
            execution: Some(format!(
                "arn:aws:states:eu-central-1:123456789012:execution:{}:{}",
                "m".repeat(80),
                "e".repeat(80)
            )),
        }
    }

    #[test]
    fn a_cluster_polls_key_is_its_tasks_whatever_the_attempt() {
        let poll = ClusterPoll {
            operation: Operation::DeleteNodegroup,
            cluster_name: "c".into(),
            resource_name: Some("n".into()),
            force_delete_compute: false,
            task_token: "t".into(),
            attempt: 1,
            next_delay_seconds: 60,
            curve: PollCurve::default(),
            execution: None,
        };
        let key = poll.key();
        assert_eq!(key.len(), 36, "{key}");
        assert!(
            key.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f')),
            "{key}"
        );
        let later = ClusterPoll {
            attempt: 9,
            next_delay_seconds: 300,
            ..poll.clone()
        };
        assert_eq!(later.key(), key);
        for other in [
            ClusterPoll {
                task_token: "u".into(),
                ..poll.clone()
            },
            ClusterPoll {
                cluster_name: "d".into(),
                ..poll.clone()
            },
            ClusterPoll {
                resource_name: Some("m".into()),
                ..poll.clone()
            },
            ClusterPoll {
                operation: Operation::CreateNodegroup,
                ..poll.clone()
            },
        ] {
            assert_ne!(other.key(), key, "{other:?}");
        }
    }

    #[test]
    fn log_options_survive_the_hand_off() {
        let options = LogOptions {
            retrieve_logs: true,
            raw_logs: true,
            log_parameters: vec![("tailLines".into(), "10".into())],
            archive: crate::contract::archive_location::ArchiveLocation::parse(
                "s3://logs-bucket/team",
            )
            .ok(),
        };
        assert!(options.archive.is_some());
        let carried = LogState::from(&options);
        assert_eq!(
            carried.archive_uri.as_deref(),
            Some("s3://logs-bucket/team")
        );
        assert_eq!(LogOptions::from(&carried), options);
    }

    #[test]
    fn a_good_poll_clears_the_failures_before_it() {
        let failing = state("t").failed("503").failed("reset");
        assert_eq!(failing.failures.len(), 2);
        let next = failing.next();
        assert!(next.failures.is_empty(), "{:?}", next.failures);
        assert_eq!((next.failed_polls, next.attempt), (0, failing.attempt + 1));
    }

    #[test]
    fn every_poll_takes_its_delay_from_the_curve_at_its_attempt() {
        let first = PollState {
            attempt: 0,
            next_delay_seconds: 12_345,
            ..state("t")
        };
        for after in [first.next(), first.failed("503")] {
            assert_eq!(after.attempt, 1);
            assert_eq!(after.next_delay_seconds, first.curve.delay(1));
        }
        assert_ne!(first.curve.delay(1), 12_345);
    }

    #[test]
    fn the_failed_polls_count_is_carried_and_left_out_at_zero() {
        let s = state("t").failed("503").failed("503");
        let text = serde_json::to_string(&s).unwrap_or_else(|e| panic!("{e}"));
        let back: PollState = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back.failed_polls, 2, "{text}");
        let off = PollState {
            stuck_policy: crate::contract::stuck_policy::StuckPolicy::default(),
            ..state("t")
        };
        let clean = serde_json::to_string(&off).unwrap_or_else(|e| panic!("{e}"));
        assert!(!clean.contains("FailedPolls"), "{clean}");
        assert!(
            !clean.contains("StuckPolicy"),
            "an unused policy takes no room: {clean}"
        );
    }

    #[test]
    fn failures_grow_a_state_by_at_most_their_room_and_not_far_less() {
        let first = PollState {
            attempt: 0,
            next_delay_seconds: 60,
            ..state("t")
        };
        let mut s = first.clone();
        for _ in 0..1_000 {
            s = s.failed(&"x".repeat(FAILURE_CHARS_KEPT * 2));
        }
        let size = |s: &PollState| serde_json::to_string(s).map_or(0, |t| t.chars().count());
        let growth = size(&s) - size(&first);
        assert!(growth <= FAILURES_ROOM, "{growth} > {FAILURES_ROOM}");
        assert!(
            FAILURES_ROOM - growth < 64,
            "{growth} of {FAILURES_ROOM}: the room is far too wide"
        );
    }

    #[test]
    fn the_attempt_and_the_job_uid_are_bounded() {
        let mut s = state("t");
        s.cluster.certificate_authority = Some(crate::contract::certificates::TEST_CA.into());
        assert_eq!(s.check_bounds(), Ok(()));
        let at = |attempt: u32| PollState {
            attempt,
            next_delay_seconds: s.curve.delay(attempt),
            ..s.clone()
        };
        assert_eq!(at(MAX_POLL_ATTEMPTS).check_bounds(), Ok(()));
        assert!(at(MAX_POLL_ATTEMPTS + 1)
            .check_bounds()
            .is_err_and(|e| e.cause.to_string().contains("Attempt")));
        assert_eq!(
            PollState {
                job_uid: "u".repeat(64),
                ..s.clone()
            }
            .check_bounds(),
            Ok(())
        );
        let with = |failures: Vec<String>| {
            PollState {
                failures,
                ..s.clone()
            }
            .check_bounds()
        };
        assert_eq!(with(vec!["x".into(); MAX_FAILURES]), Ok(()));
        assert!(with(vec!["x".into(); MAX_FAILURES + 1]).is_err());
        assert_eq!(with(vec!["x".repeat(MAX_FAILURE_CHARS)]), Ok(()));
        assert!(with(vec!["x".repeat(MAX_FAILURE_CHARS + 1)]).is_err());
        for uid in [String::new(), "u".repeat(65), "a/b".into()] {
            let e = PollState {
                job_uid: uid.clone(),
                ..s.clone()
            }
            .check_bounds()
            .err();
            assert!(
                e.is_some_and(|e| e.cause.to_string().contains("JobUid")),
                "{uid:?}"
            );
        }
    }

    #[test]
    fn the_room_check_is_exact_at_its_limit() {
        let room = |s: &PollState| {
            serde_json::to_string(s).map_or(0, |t| t.chars().count())
                + FAILURES_ROOM
                + crate::contract::seal::SEAL_ROOM
                + crate::contract::seal::hidden_token_room(s.task_token.chars().count())
        };
        let mut s = state(&"T".repeat(1024));
        let short = MAX_SCHEDULE_INPUT_CHARS - room(&s);
        let ca = s.cluster.certificate_authority.take().unwrap_or_default();
        s.cluster.certificate_authority = Some(format!("{ca}{}", "M".repeat(short)));
        assert_eq!(room(&s), MAX_SCHEDULE_INPUT_CHARS);
        assert_eq!(s.check_room(), Ok(()));
        s.cluster.certificate_authority = Some(format!("{ca}{}", "M".repeat(short + 1)));
        assert!(s.check_room().is_err());
    }

    #[test]
    fn the_poll_state_round_trips_and_fits_a_schedule_with_a_full_size_token() {
        let s = state(&"T".repeat(2048));
        let text = serde_json::to_string(&s).unwrap_or_default();
        assert!(
            text.len() <= MAX_SCHEDULE_INPUT_CHARS,
            "{} characters",
            text.len()
        );
        let back: PollState = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back, s);
    }

    #[test]
    fn next_follows_the_curve() {
        let s = state("t");
        let n = s.failed("EKS.500");
        assert_eq!(
            (n.attempt, n.next_delay_seconds, n.failures.len()),
            (8, 300, 1)
        );
        let first = PollState {
            attempt: 0,
            ..state("t")
        }
        .next();
        assert_eq!((first.attempt, first.next_delay_seconds), (1, 60));
        assert_eq!(
            n.next().failed_polls,
            0,
            "a good poll ends the run of failures"
        );
    }

    /// The largest state AWS's fields make (a 2,048-character token, a long cluster,
    /// role, certificate, archive and execution), through 64 failed polls each with an
    /// error body of 10 KB full of characters JSON escapes: it still fits a schedule,
    /// counts every failure, and keeps the last three.
    #[test]
    fn a_poll_state_stays_within_a_schedule_however_many_polls_fail() {
        let mut s = state(&"T".repeat(payload::MAX_TASK_TOKEN_CHARS));
        assert!(s.check_room().is_ok());
        let body = "\"\\\u{1}é".repeat(2500);
        // The longest seal: a multi-Region key's ARN in the longest partition, an
        // HMAC-SHA-256 in base64.
        let seal = crate::contract::seal::Seal {
            key_id: "arn:aws-us-gov:kms:us-gov-west-1:123456789012:key/mrk-1234abcd12ab34cd56ef1234567890ab".into(),
            mac: "A".repeat(44),
        };
        // On the wire: the token sealed, the seal beside the fields.
        let sealed = |input: &str| {
            let state: serde_json::Value =
                serde_json::from_str(input).unwrap_or_else(|e| panic!("{e}"));
            let wire = crate::contract::seal::hide_token(&state, &[1; 32])
                .unwrap_or_else(|e| panic!("{e}"));
            crate::contract::seal::with_seal(&wire, &seal).unwrap_or_else(|e| panic!("{e}"))
        };
        for _ in 0..64 {
            s = s.failed(&format!("EKS.503: {body}"));
            let input = sealed(&s.next_poll().map(|p| p.input).unwrap_or_default());
            assert!(
                !input.is_empty() && input.chars().count() <= MAX_SCHEDULE_INPUT_CHARS,
                "{} characters",
                input.chars().count()
            );
        }
        assert_eq!((s.consecutive_failures(), s.failures.len()), (64, 3));
        assert!(
            s.failures[2].starts_with("poll 71: EKS.503: '/ "),
            "{}",
            s.failures[2]
        );
        // A state that leaves no room for failures is refused at the hand-off; one that
        // just passes there still fits after a million polls, three of them failed.
        let mut huge = state("t");
        huge.cluster.certificate_authority = Some("M".repeat(MAX_SCHEDULE_INPUT_CHARS - 1500));
        assert!(huge.check_room().is_err());
        let mut edge = PollState {
            attempt: 0,
            ..state("t")
        };
        // The longest token that passes: its growth and its sealing's both counted.
        let room = (1..MAX_SCHEDULE_INPUT_CHARS)
            .take_while(|extra| {
                let mut e = edge.clone();
                e.task_token.push_str(&"T".repeat(*extra));
                e.check_room().is_ok()
            })
            .last()
            .unwrap_or_else(|| panic!("no token fits"));
        edge.task_token.push_str(&"T".repeat(room));
        assert!(edge.check_room().is_ok());
        edge.attempt = MAX_POLL_ATTEMPTS - 3;
        edge.next_delay_seconds = 3600;
        for _ in 0..3 {
            edge = edge.failed(&body);
        }
        let input =
            sealed(&edge.next_poll().map(|p| p.input).unwrap_or_else(|e| {
                panic!("a state accepted at the hand-off is refused later: {e}")
            }));
        assert!(
            input.chars().count() <= MAX_SCHEDULE_INPUT_CHARS,
            "{}",
            input.chars().count()
        );
    }

    #[test]
    fn schedule_names_are_deterministic_and_valid() {
        let n = schedule_name("3f1c2b8e-8c9d-4e5f-a6b7-c8d9e0f1a2b3", 4_294_967_295);
        assert!(
            n.len() <= 64
                && n.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)),
            "{n}"
        );
        assert_eq!(
            n,
            schedule_name("3f1c2b8e-8c9d-4e5f-a6b7-c8d9e0f1a2b3", 4_294_967_295)
        );
        assert_ne!(schedule_name("u", 1), schedule_name("u", 2));
        // A fresh suffix after a squat stays whole, and the name within 64.
        let fresh = "3f1c2b8e-8c9d-4e5f-a6b7-c8d9e0f1a2b3-0a1b2c3d";
        for attempt in [0, 4_294_967_295] {
            let n = schedule_name(fresh, attempt);
            assert!(n.len() <= 64, "{n}");
            assert!(n.contains(fresh), "{n}");
        }
        assert_eq!(schedule_name(&"x".repeat(100), 7).len(), 64);
        // Every name of a key's polls, fresh ones too, starts with its prefix and says
        // its attempt.
        let key = "0123456789abcdef0123456789abcdef0123";
        for name in [
            schedule_name(key, 7),
            schedule_name(&format!("{key}-0a1b2c3d"), 7),
        ] {
            assert!(name.starts_with(&schedule_prefix(key)), "{name}");
            assert_eq!(attempt_of(&name), Some(7), "{name}");
        }
        assert!(!schedule_name("0123", 7).starts_with(&schedule_prefix("01234")));
        assert_eq!(attempt_of("ekstw-x-y"), None);
    }

    #[test]
    fn at_expressions_are_utc_seconds() {
        let t = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_764_000_000);
        assert_eq!(
            at_expression(t, Duration::from_secs(60)),
            "at(2025-11-24T16:01:00)"
        );
    }
}
