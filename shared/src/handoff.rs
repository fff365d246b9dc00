//! The hand-off seam between a run-job invocation and the poller: when a
//! callback-pattern Job outlives the inline window, everything the poller needs to
//! finish the task travels in a [`PollState`] (no database), given to a [`HandOff`].

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::TaskError;
use crate::input::{ClusterRef, LogOptions};

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
}

impl From<&LogOptions> for LogState {
    fn from(o: &LogOptions) -> Self {
        Self {
            retrieve_logs: o.retrieve_logs,
            raw_logs: o.raw_logs,
            log_parameters: o.log_parameters.clone(),
        }
    }
}

impl From<&LogState> for LogOptions {
    fn from(s: &LogState) -> Self {
        Self {
            retrieve_logs: s.retrieve_logs,
            raw_logs: s.raw_logs,
            log_parameters: s.log_parameters.clone(),
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
}

/// Gives a running Job to the poller.
#[async_trait]
pub trait HandOff: Send + Sync {
    /// Arranges for `state` to be polled after `state.next_delay_seconds`.
    ///
    /// # Errors
    /// When the poll cannot be arranged.
    async fn hand_off(&self, state: &PollState) -> Result<(), TaskError>;
}
