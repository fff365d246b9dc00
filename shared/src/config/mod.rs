//! The deployment's settings, read once at cold start from the function's
//! environment. Every setting has a default; a malformed one is an error at start-up,
//! not a surprise later.

pub mod activities;
pub mod cluster_access;
pub mod timeouts;
pub mod trusted_endpoints;

use std::time::Duration;

use crate::config::timeouts::Timeouts;
use crate::contract::curve::PollCurve;
use crate::contract::stuck_policy::Hold;

/// What happens to a finished Job (`JOB_CLEANUP`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cleanup {
    /// Keep it (the default, as native).
    Never,
    /// Delete it when it succeeded.
    OnSuccess,
    /// Delete it however it ended.
    Always,
}

/// Where the poller's schedules go (all from the environment; no hand-off without
/// `POLLER_ARN` and `SCHEDULER_ROLE_ARN`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleSettings {
    /// `POLLER_ARN`: the poller function the schedules invoke.
    pub poller_arn: String,
    /// `SCHEDULER_ROLE_ARN`: the role Scheduler assumes to invoke it.
    pub role_arn: String,
    /// `SCHEDULE_GROUP` (default `default`).
    pub group: String,
    /// `SCHEDULE_DLQ_ARN`: an SQS queue for deliveries that keep failing.
    pub dead_letter_arn: Option<String>,
    /// `SCHEDULE_MAX_RETRIES` (default 10): Scheduler's retries of a failed delivery.
    pub max_retries: i32,
    /// `SCHEDULE_MAX_EVENT_AGE_SECONDS` (default 3600).
    pub max_event_age_seconds: i32,
}

/// The worker's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// The function's region (`AWS_REGION`).
    pub region: String,
    /// The function's name (`AWS_LAMBDA_FUNCTION_NAME`, set by Lambda; empty elsewhere):
    /// on every log line.
    pub function_name: String,
    /// `ASSUME_ROLE_EXTERNAL_ID` (default none): the `ExternalId` sent with every
    /// `sts:AssumeRole` of a payload's `RoleArn`, for roles whose trust asks for one.
    pub assume_role_external_id: Option<String>,
    /// `INLINE_WAIT_SECONDS` (default 60): the longest a callback-pattern invocation
    /// watches its Job before handing it to the poller.
    pub inline_wait: Duration,
    /// `HEARTBEAT_SECONDS` (default 30, at least 1): how often an invocation that
    /// watches its Job inline sends `SendTaskHeartbeat` (a state's `HeartbeatSeconds`
    /// needs to be longer: docs/migration.md, "Heartbeats").
    pub heartbeat: Duration,
    /// `LAMBDA_TIME_MARGIN_SECONDS` (default 20): left free before the Lambda deadline
    /// for logs, the callback and the hand-off.
    pub lambda_margin: Duration,
    /// `TOKEN_RENEW_SECONDS` (default and most 600): a bearer token is renewed once it
    /// is this old (EKS accepts one for 15 minutes; an authenticator that accepts
    /// tokens for less needs less).
    pub token_renew_after: Duration,
    /// `KUBE_CONNECT_TIMEOUT_SECONDS` (default 5) and `KUBE_READ_TIMEOUT_SECONDS`
    /// (default 30).
    pub timeouts: Timeouts,
    /// `POLL_MIN_SECONDS` (default 60): the shortest delay a curve may hold.
    pub poll_min_seconds: u64,
    /// `POLL_CURVE_SECONDS` (default `60,60,60,120,180,240,300`): see [`crate::contract::curve`].
    pub poll_curve: PollCurve,
    /// `MAX_FAILED_POLLS` (default 5): consecutive polls that could not read the Job
    /// before the task is failed.
    pub max_failed_polls: u32,
    /// `JOB_CLEANUP`: `never` (default), `success` or `always`.
    pub job_cleanup: Cleanup,
    /// `DELETE_JOB_WHEN_STOPPED` (default `true`): delete the Job (foreground) when
    /// its execution was stopped or timed out.
    pub delete_job_when_stopped: bool,
    /// The poller's schedules; `None` when this deployment has no poller.
    pub schedule: Option<ScheduleSettings>,
    /// `ACTIVITIES`: `run-job=<activity ARN>,call=<activity ARN>` (activity function).
    pub activities: Vec<crate::config::activities::Activity>,
    /// `STUCK_<HOLD>_SECONDS` (each [`Hold::setting`], default off): the stuck policy
    /// of payloads that give none.
    pub stuck_policy: crate::contract::stuck_policy::StuckPolicy,
    /// `CLEANUP_DRY_RUN` (default `false`): the cleanup function only reports.
    pub cleanup_dry_run: bool,
    /// `CLEANUP_GRACE_SECONDS` (default 3600): clusters younger than this are left alone.
    pub cleanup_grace: Duration,
    /// `ACTIVITY_POLL_SECONDS` (default 240): how long one activity-function invocation
    /// keeps polling (never past its deadline minus the margin and one long poll).
    pub activity_poll: Duration,
    /// `METRICS_NAMESPACE` (default `EksTaskWorker`; `off` or empty: no metrics): the
    /// CloudWatch namespace of the EMF metrics.
    pub metrics_namespace: Option<String>,
    /// `TRUSTED_ENDPOINTS` (default none): comma-separated `cluster-name=https://host[:port]`
    /// a payload's `Endpoint` may name for that cluster besides its own (clusters that are
    /// not EKS, proxies of one's own); see [`crate::adapters::cluster_connector::ClusterConnector`].
    pub trusted_endpoints: Vec<trusted_endpoints::TrustedEndpoint>,
    /// `POLL_STATE_KEY` then `POLL_STATE_PREVIOUS_KEY` (each optional): the KMS HMAC
    /// keys (ARNs or key ids) of poll states' seals; the first seals, both verify.
    /// Without one, nothing can be handed to the poller, and the poller refuses every
    /// state.
    pub poll_state_keys: Vec<String>,
    /// `LOG_ARCHIVE_URI` (default none): where whole logs are archived when a payload's
    /// `LogOptions` names no `ArchiveUri` (`s3://bucket/prefix`).
    pub log_archive: Option<crate::contract::archive_location::ArchiveLocation>,
    /// `CLUSTER_ACCESS_PRINCIPALS` (default none: off) and `CLUSTER_ACCESS_POLICY`
    /// (default `AmazonEKSClusterAdminPolicy`): who is let into each cluster the worker
    /// creates, and with what.
    pub cluster_access: crate::config::cluster_access::WorkerAccess,
}

/// A setting that does not parse.
#[derive(Debug, thiserror::Error)]
#[error("environment variable {name}={value:?} is not {expected}")]
pub struct SettingError {
    /// The variable.
    pub name: String,
    /// Its value.
    pub value: String,
    /// What it should be.
    pub expected: String,
}

fn number<T: std::str::FromStr>(
    get: &impl Fn(&str) -> Option<String>,
    name: &str,
    default: T,
) -> Result<T, SettingError> {
    match get(name) {
        None => Ok(default),
        Some(v) => v.trim().parse::<T>().map_err(|_| SettingError {
            name: name.into(),
            value: v,
            expected: "a whole number".into(),
        }),
    }
}

fn seconds(
    get: &impl Fn(&str) -> Option<String>,
    name: &str,
    default: u64,
) -> Result<Duration, SettingError> {
    match get(name) {
        None => Ok(Duration::from_secs(default)),
        Some(v) => v
            .trim()
            .parse::<u64>()
            .map(Duration::from_secs)
            .map_err(|_| SettingError {
                name: name.into(),
                value: v,
                expected: "a whole number of seconds".into(),
            }),
    }
}

/// `HEARTBEAT_SECONDS`: at least 1.
fn heartbeat(get: &impl Fn(&str) -> Option<String>) -> Result<Duration, SettingError> {
    let every = seconds(get, "HEARTBEAT_SECONDS", 30)?;
    if every.is_zero() {
        return Err(SettingError {
            name: "HEARTBEAT_SECONDS".into(),
            value: "0".into(),
            expected: "at least 1 second".into(),
        });
    }
    Ok(every)
}

/// The longest a bearer token is used (and `TOKEN_RENEW_SECONDS`' default): EKS accepts
/// one for 15 minutes, and a request made with it may take minutes more.
pub const TOKEN_RENEW_MAX: Duration = Duration::from_secs(10 * 60);

/// `TOKEN_RENEW_SECONDS`: 1 to 600.
fn token_renew_after(get: &impl Fn(&str) -> Option<String>) -> Result<Duration, SettingError> {
    let max = TOKEN_RENEW_MAX;
    let renew = seconds(get, "TOKEN_RENEW_SECONDS", max.as_secs())?;
    if renew.is_zero() || renew > max {
        return Err(SettingError {
            name: "TOKEN_RENEW_SECONDS".into(),
            value: get("TOKEN_RENEW_SECONDS").unwrap_or_default(),
            expected: format!("between 1 and {} seconds", max.as_secs()),
        });
    }
    Ok(renew)
}

impl Settings {
    /// Settings from the process environment.
    ///
    /// # Errors
    /// [`SettingError`] for a malformed value.
    pub fn from_env() -> Result<Self, SettingError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Settings from a lookup function (the environment, or a map in tests).
    ///
    /// # Errors
    /// [`SettingError`] for a malformed value.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, SettingError> {
        let poll_min_seconds = number(&get, "POLL_MIN_SECONDS", 60)?;
        let poll_curve = match get("POLL_CURVE_SECONDS") {
            None => PollCurve::new(
                crate::contract::curve::DEFAULT_DELAYS.to_vec(),
                poll_min_seconds.min(60),
            ),
            Some(v) => PollCurve::parse(&v, poll_min_seconds),
        }
        .map_err(|m| SettingError {
            name: "POLL_CURVE_SECONDS".into(),
            value: get("POLL_CURVE_SECONDS").unwrap_or_default(),
            expected: format!("a valid poll curve: {m}"),
        })?;
        let job_cleanup = match get("JOB_CLEANUP").as_deref() {
            None | Some("never") => Cleanup::Never,
            Some("success") => Cleanup::OnSuccess,
            Some("always") => Cleanup::Always,
            Some(other) => {
                return Err(SettingError {
                    name: "JOB_CLEANUP".into(),
                    value: other.into(),
                    expected: "never, success or always".into(),
                })
            }
        };
        let delete_job_when_stopped = match get("DELETE_JOB_WHEN_STOPPED").as_deref() {
            None | Some("true") => true,
            Some("false") => false,
            Some(other) => {
                return Err(SettingError {
                    name: "DELETE_JOB_WHEN_STOPPED".into(),
                    value: other.into(),
                    expected: "true or false".into(),
                })
            }
        };
        let schedule = match (get("POLLER_ARN"), get("SCHEDULER_ROLE_ARN")) {
            (Some(poller_arn), Some(role_arn))
                if !poller_arn.is_empty() && !role_arn.is_empty() =>
            {
                Some(ScheduleSettings {
                    poller_arn,
                    role_arn,
                    group: get("SCHEDULE_GROUP")
                        .filter(|g| !g.is_empty())
                        .unwrap_or_else(|| "default".into()),
                    dead_letter_arn: get("SCHEDULE_DLQ_ARN").filter(|a| !a.is_empty()),
                    max_retries: number(&get, "SCHEDULE_MAX_RETRIES", 10)?,
                    max_event_age_seconds: number(&get, "SCHEDULE_MAX_EVENT_AGE_SECONDS", 3600)?,
                })
            }
            _ => None,
        };
        let activities =
            crate::config::activities::parse_activities(&get("ACTIVITIES").unwrap_or_default())
                .map_err(|m| SettingError {
                    name: "ACTIVITIES".into(),
                    value: get("ACTIVITIES").unwrap_or_default(),
                    expected: format!("a list of <function>=<activity ARN>: {m}"),
                })?;
        let cleanup_dry_run = match get("CLEANUP_DRY_RUN").as_deref() {
            None | Some("false") => false,
            Some("true") => true,
            Some(other) => {
                return Err(SettingError {
                    name: "CLEANUP_DRY_RUN".into(),
                    value: other.into(),
                    expected: "true or false".into(),
                })
            }
        };
        let stuck = |k: &str| {
            get(k)
                .map(|v| {
                    v.trim().parse::<u64>().map_err(|_| SettingError {
                        name: k.into(),
                        value: v,
                        expected: "a whole number of seconds".into(),
                    })
                })
                .transpose()
        };
        let log_archive = get("LOG_ARCHIVE_URI")
            .filter(|v| !v.is_empty())
            .map(|v| {
                crate::contract::archive_location::ArchiveLocation::parse(&v).map_err(|m| {
                    SettingError {
                        name: "LOG_ARCHIVE_URI".into(),
                        value: v.clone(),
                        expected: m,
                    }
                })
            })
            .transpose()?;
        let max_failed_polls: u32 = number(&get, "MAX_FAILED_POLLS", 5)?;
        if max_failed_polls == 0
            || max_failed_polls as usize > crate::contract::poll_state::MAX_FAILURES
        {
            return Err(SettingError {
                name: "MAX_FAILED_POLLS".into(),
                value: max_failed_polls.to_string(),
                expected: format!("from 1 to {}", crate::contract::poll_state::MAX_FAILURES),
            });
        }
        let trusted_endpoints = trusted_endpoints::parse(
            &get("TRUSTED_ENDPOINTS").unwrap_or_default(),
        )
        .map_err(|value| SettingError {
            name: "TRUSTED_ENDPOINTS".into(),
            value,
            expected: trusted_endpoints::EXPECTED.into(),
        })?;
        // A key alias would seal (KMS resolves it) but never verify: a seal names the
        // key that made it, by ARN, which no alias matches; every poll would be refused.
        let poll_state_keys = ["POLL_STATE_KEY", "POLL_STATE_PREVIOUS_KEY"]
            .into_iter()
            .filter_map(|k| get(k).map(|v| (k, v.trim().to_owned())))
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| {
                if v.starts_with("alias/") || v.contains(":alias/") {
                    Err(SettingError {
                        name: k.into(),
                        value: v,
                        expected: "a KMS key ARN or key id (not an alias: a seal names the key \
                            that made it)"
                            .into(),
                    })
                } else {
                    Ok(v)
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        let cluster_access = crate::config::cluster_access::WorkerAccess::parse(
            get("CLUSTER_ACCESS_PRINCIPALS").as_deref(),
            get("CLUSTER_ACCESS_POLICY").as_deref(),
        )
        .map_err(|(name, value, expected)| SettingError {
            name: name.into(),
            value,
            expected: expected.into(),
        })?;
        Ok(Self {
            cluster_access,
            trusted_endpoints,
            poll_state_keys,
            metrics_namespace: match get("METRICS_NAMESPACE") {
                None => Some(DEFAULT_NAMESPACE.to_owned()),
                Some(v) if v.is_empty() || v == "off" => None,
                Some(v) => Some(v),
            },
            log_archive,
            stuck_policy: Hold::ALL.iter().try_fold(
                crate::contract::stuck_policy::StuckPolicy::default(),
                |p, h| Ok::<_, SettingError>(p.with(*h, stuck(h.setting())?)),
            )?,
            cleanup_dry_run,
            cleanup_grace: seconds(&get, "CLEANUP_GRACE_SECONDS", 3600)?,
            activities,
            activity_poll: seconds(&get, "ACTIVITY_POLL_SECONDS", 240)?,
            poll_min_seconds,
            poll_curve,
            max_failed_polls,
            job_cleanup,
            delete_job_when_stopped,
            schedule,
            region: get("AWS_REGION")
                .or_else(|| get("AWS_DEFAULT_REGION"))
                .unwrap_or_else(|| "us-east-1".into()),
            function_name: get("AWS_LAMBDA_FUNCTION_NAME").unwrap_or_default(),
            assume_role_external_id: get("ASSUME_ROLE_EXTERNAL_ID").filter(|id| !id.is_empty()),
            inline_wait: seconds(&get, "INLINE_WAIT_SECONDS", 60)?,
            lambda_margin: seconds(&get, "LAMBDA_TIME_MARGIN_SECONDS", 20)?,
            token_renew_after: token_renew_after(&get)?,
            heartbeat: heartbeat(&get)?,
            timeouts: Timeouts {
                connect: seconds(&get, "KUBE_CONNECT_TIMEOUT_SECONDS", 5)?,
                read: seconds(&get, "KUBE_READ_TIMEOUT_SECONDS", 30)?,
            },
        })
    }
}

/// The default metric namespace.
pub const DEFAULT_NAMESPACE: &str = "EksTaskWorker";

#[cfg(test)]
mod tests {
    use super::*;

    /// The `ExternalId` of assumed roles: none unless set (an empty value is none).
    #[test]
    fn the_external_id_is_read_when_set() {
        let with = |v: &str| {
            Settings::from_lookup(|k| (k == "ASSUME_ROLE_EXTERNAL_ID").then(|| v.to_owned()))
                .map(|s| s.assume_role_external_id)
                .ok()
        };
        assert_eq!(with("ext-7"), Some(Some("ext-7".to_owned())));
        assert_eq!(with(""), Some(None));
        assert_eq!(
            Settings::from_lookup(|_| None)
                .map(|s| s.assume_role_external_id)
                .ok(),
            Some(None)
        );
    }

    #[test]
    fn defaults_and_overrides() {
        let s = Settings::from_lookup(|_| None).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.inline_wait, Duration::from_secs(60));
        assert_eq!(s.region, "us-east-1");
        let s = Settings::from_lookup(|k| (k == "INLINE_WAIT_SECONDS").then(|| "5".to_owned()))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.inline_wait, Duration::from_secs(5));
        let e = Settings::from_lookup(|k| {
            (k == "KUBE_READ_TIMEOUT_SECONDS").then(|| "soon".to_owned())
        });
        assert!(e.is_err_and(|e| e.to_string().contains("KUBE_READ_TIMEOUT_SECONDS")));
    }

    /// Poll-state keys: a key ARN or id, current then previous; an alias is refused (it
    /// would seal but never verify).
    #[test]
    fn poll_state_keys_are_keys_not_aliases() {
        let keys = |current: &str, previous: &str| {
            let (current, previous) = (current.to_owned(), previous.to_owned());
            Settings::from_lookup(move |k| match k {
                "POLL_STATE_KEY" => Some(current.clone()),
                "POLL_STATE_PREVIOUS_KEY" => Some(previous.clone()),
                _ => None,
            })
            .map(|s| s.poll_state_keys)
            .map_err(|e| e.to_string())
        };
        let arn = "arn:aws:kms:us-east-1:111122223333:key/1234abcd";
        assert_eq!(keys(arn, " k2 "), Ok(vec![arn.to_owned(), "k2".to_owned()]));
        assert_eq!(keys("", ""), Ok(Vec::new()));
        for alias in [
            "alias/poll",
            "arn:aws:kms:us-east-1:111122223333:alias/poll",
        ] {
            assert!(
                keys(alias, "").is_err_and(|e| e.contains("POLL_STATE_KEY")),
                "{alias}"
            );
            assert!(keys(arn, alias).is_err_and(|e| e.contains("POLL_STATE_PREVIOUS_KEY")));
        }
    }
}
