//! The hand-off port: how a poll that outlives an invocation reaches the poller.

use async_trait::async_trait;

use crate::contract::error::TaskError;
use crate::contract::poll_state::NextPoll;

/// Why a hand-off failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum HandOffError {
    /// The scheduler is busy or failing for now (throttled, a 5xx, unreachable): trying
    /// again may pass.
    #[error("{0}")]
    Busy(TaskError),
    /// The scheduler refused the poll for good.
    #[error("{0}")]
    Refused(TaskError),
    /// This deployment has no poller (`POLLER_ARN`, `SCHEDULER_ROLE_ARN` unset).
    #[error("no poller is configured (POLLER_ARN, SCHEDULER_ROLE_ARN)")]
    NoPoller,
}

impl From<HandOffError> for TaskError {
    fn from(e: HandOffError) -> Self {
        match e {
            HandOffError::Busy(e) | HandOffError::Refused(e) => e,
            HandOffError::NoPoller => TaskError::message(
                crate::contract::error::names::INTERNAL,
                "no poller is configured (POLLER_ARN, SCHEDULER_ROLE_ARN)",
            ),
        }
    }
}

/// Gives a running Job (or cluster operation) to the poller.
#[async_trait]
pub trait HandOff: Send + Sync {
    /// Arranges, in one try, for the poller to be invoked with `poll.input` after
    /// `poll.delay_seconds`; a poll already arranged (an earlier delivery's) is fine.
    ///
    /// # Errors
    /// [`HandOffError`], carrying `EksTaskWorker.SchedulerError`.
    async fn hand_off(&self, poll: &NextPoll) -> Result<(), HandOffError>;
}
