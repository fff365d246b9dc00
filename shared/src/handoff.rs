//! The hand-off seam between a run-job invocation and the poller: when a
//! callback-pattern Job outlives the inline window, everything the poller needs to
//! finish the task travels in a [`PollState`] (no database), given to a [`HandOff`].

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_scheduler::types::{
    ActionAfterCompletion, DeadLetterConfig, FlexibleTimeWindow, FlexibleTimeWindowMode,
    RetryPolicy, Target,
};
use serde::{Deserialize, Serialize};

use crate::clock::Clock;
use crate::config::ScheduleSettings;
use crate::curve::PollCurve;
use crate::error::{error_chain, names, TaskError};
use crate::input::{self, ClusterRef, LogOptions};

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
                .map(input::endpoint_url)
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
            archive_uri: o.archive.as_ref().map(crate::archive::ArchiveLocation::uri),
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
                .and_then(|u| crate::archive::ArchiveLocation::parse(u).ok()),
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
    pub stuck_policy: crate::diagnosis::StuckPolicy,
    /// Why the polls since the last good one failed (consecutive failures).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failures: Vec<String>,
    /// The execution, where the payload gave it (log lines).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution: Option<String>,
}

impl PollState {
    /// The state for the poll after this one: `attempt + 1`, its delay from the curve.
    #[must_use]
    pub fn next(&self, failures: Vec<String>) -> Self {
        let attempt = self.attempt + 1;
        Self {
            attempt,
            next_delay_seconds: self.curve.delay(attempt),
            failures,
            ..self.clone()
        }
    }
}

/// The most polls a task is followed for (more than a year's, the longest a Step
/// Functions execution runs, at one a minute).
pub const MAX_POLL_ATTEMPTS: u32 = 1_000_000;
/// The most failures a poll state may carry (`MAX_FAILED_POLLS` is at most this).
pub const MAX_FAILURES: usize = 64;
/// The longest a failure kept in a poll state may be (the poller cuts it to this).
pub const MAX_FAILURE_CHARS: usize = 1024;

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
    if task_token.is_empty() || task_token.chars().count() > input::MAX_TASK_TOKEN_CHARS {
        return Err(TaskError::invalid_input(
            "TaskToken",
            format!("must be 1-{} characters", input::MAX_TASK_TOKEN_CHARS),
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
        input::cluster_ref(&fields)?;
        let mut more = serde_json::Map::new();
        more.insert("Namespace".into(), serde_json::json!(self.namespace));
        if let Some(e) = &self.execution {
            more.insert("ExecutionArn".into(), serde_json::json!(e));
        }
        input::namespace(&more)?;
        input::execution_arn(&more)?;
        let name_ok = !self.job_name.is_empty()
            && self.job_name.len() <= 253
            && self
                .job_name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
        if !name_ok {
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
        if let Some(uri) = &self.log_options.archive_uri {
            crate::archive::ArchiveLocation::parse(uri)
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

fn is_off(p: &crate::diagnosis::StuckPolicy) -> bool {
    !p.is_active()
}

/// The most characters a Scheduler target input may hold.
pub const MAX_SCHEDULE_INPUT_CHARS: usize = 8192;

/// The schedule's name for a Job's poll: deterministic per Job (uid) and attempt, so a
/// retried create is harmless; 1-64 characters of `[0-9a-zA-Z-_.]`.
#[must_use]
pub fn schedule_name(job_uid: &str, attempt: u32) -> String {
    let uid: String = job_uid
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .take(40)
        .collect();
    format!("ekstw-{uid}-{attempt}")
}

/// `at(yyyy-mm-ddThh:mm:ss)` in UTC, `delay` after `now`.
#[must_use]
pub fn at_expression(now: std::time::SystemTime, delay: Duration) -> String {
    format!("at({})", crate::clock::utc_seconds(now + delay))
}

/// [`HandOff`] through EventBridge Scheduler: a one-time schedule per poll that invokes
/// the poller with the [`PollState`] as input and deletes itself after.
pub struct SchedulerHandOff {
    client: aws_sdk_scheduler::Client,
    settings: ScheduleSettings,
    clock: Arc<dyn Clock>,
}

impl SchedulerHandOff {
    /// Schedules in `settings.group`, through the SDK configuration loaded at cold start.
    pub fn new(
        config: &aws_config::SdkConfig,
        settings: ScheduleSettings,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            client: aws_sdk_scheduler::Client::new(config),
            settings,
            clock,
        }
    }
}

fn schedule_error(message: String) -> TaskError {
    TaskError::new(names::SCHEDULER, serde_json::json!({ "message": message }))
}

#[async_trait]
impl HandOff for SchedulerHandOff {
    async fn hand_off(&self, poll: &NextPoll) -> Result<(), TaskError> {
        let input = poll.input.clone();
        if input.chars().count() > MAX_SCHEDULE_INPUT_CHARS {
            return Err(schedule_error(format!("the poll state is {} characters, over the {MAX_SCHEDULE_INPUT_CHARS} a schedule can carry", input.chars().count())));
        }
        let name = schedule_name(&poll.key, poll.attempt);
        let mut target = Target::builder()
            .arn(&self.settings.poller_arn)
            .role_arn(&self.settings.role_arn)
            .input(input)
            .retry_policy(
                RetryPolicy::builder()
                    .maximum_retry_attempts(self.settings.max_retries)
                    .maximum_event_age_in_seconds(self.settings.max_event_age_seconds)
                    .build(),
            );
        if let Some(dlq) = &self.settings.dead_letter_arn {
            target = target.dead_letter_config(DeadLetterConfig::builder().arn(dlq).build());
        }
        let target = target.build().map_err(|e| schedule_error(e.to_string()))?;
        let window = FlexibleTimeWindow::builder()
            .mode(FlexibleTimeWindowMode::Off)
            .build()
            .map_err(|e| schedule_error(e.to_string()))?;
        let mut delay = Duration::from_millis(200);
        for round in 0..4 {
            let sent = self
                .client
                .create_schedule()
                .name(&name)
                .group_name(&self.settings.group)
                .schedule_expression(at_expression(
                    self.clock.now(),
                    Duration::from_secs(poll.delay_seconds),
                ))
                .schedule_expression_timezone("UTC")
                .flexible_time_window(window.clone())
                .action_after_completion(ActionAfterCompletion::Delete)
                .target(target.clone())
                .send()
                .await;
            match sent {
                Ok(_) => {
                    tracing::info!(schedule = %name, delay = poll.delay_seconds, "next poll scheduled");
                    return Ok(());
                }
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|s| s.is_conflict_exception()) =>
                {
                    tracing::info!(schedule = %name, "already scheduled by an earlier delivery");
                    return Ok(());
                }
                Err(e)
                    if round < 3
                        && e.as_service_error().is_none_or(|s| {
                            s.is_throttling_exception() || s.is_internal_server_exception()
                        }) =>
                {
                    tracing::warn!(schedule = %name, error = %error_chain(&e), "retrying CreateSchedule");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
                Err(e) => {
                    return Err(schedule_error(format!(
                        "CreateSchedule {name} failed: {}",
                        error_chain(&e)
                    )))
                }
            }
        }
        Err(schedule_error(format!(
            "CreateSchedule {name} kept failing"
        )))
    }
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

/// Gives a running Job (or cluster operation) to the poller.
#[async_trait]
pub trait HandOff: Send + Sync {
    /// Arranges for the poller to be invoked with `poll.input` after
    /// `poll.delay_seconds`.
    ///
    /// # Errors
    /// `EksTaskWorker.SchedulerError` when the poll cannot be arranged.
    async fn hand_off(&self, poll: &NextPoll) -> Result<(), TaskError>;
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
            stuck_policy: crate::diagnosis::StuckPolicy {
                image_pull_seconds: Some(600),
                unschedulable_seconds: Some(1800),
            },
            failures: vec![],
            execution: Some(format!(
                "arn:aws:states:eu-central-1:123456789012:execution:{}:{}",
                "m".repeat(80),
                "e".repeat(80)
            )),
        }
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
        let n = s.next(vec!["EKS.500".into()]);
        assert_eq!(
            (n.attempt, n.next_delay_seconds, n.failures.len()),
            (8, 300, 1)
        );
        let first = PollState {
            attempt: 0,
            ..state("t")
        }
        .next(vec![]);
        assert_eq!((first.attempt, first.next_delay_seconds), (1, 60));
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
