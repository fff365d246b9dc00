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
    /// A schedule of the poll's name is there already; its input, as the scheduler
    /// gives it back. Whether it is this poll's own (an earlier delivery's) or a squat
    /// is the caller's to tell ([`Deps::hand_off`](crate::task::deps::Deps::hand_off)).
    #[error("a schedule of the poll's name is there already")]
    Taken(String),
    /// This deployment has no poller (`POLLER_ARN`, `SCHEDULER_ROLE_ARN` unset).
    #[error("no poller is configured (POLLER_ARN, SCHEDULER_ROLE_ARN)")]
    NoPoller,
}

impl From<HandOffError> for TaskError {
    fn from(e: HandOffError) -> Self {
        match e {
            HandOffError::Busy(e) | HandOffError::Refused(e) => e,
            HandOffError::Taken(_) => TaskError::message(
                crate::contract::error::names::SCHEDULER,
                "a schedule of the poll's name is there already",
            ),
            HandOffError::NoPoller => TaskError::message(
                crate::contract::error::names::INTERNAL,
                "no poller is configured (POLLER_ARN, SCHEDULER_ROLE_ARN)",
            ),
        }
    }
}

/// The most waiting schedules [`HandOff::pending_after`] reads: a chain has one waiting
/// poll (two for a moment, or under a fresh name after a squat); more are squats, and
/// reading them all would let a squatter make every poll slow.
pub const PENDING_READ: usize = 3;

/// Gives a running Job (or cluster operation) to the poller.
#[async_trait]
pub trait HandOff: Send + Sync {
    /// Arranges, in one try, for the poller to be invoked with `poll.input` after
    /// `poll.delay_seconds`; a schedule of the poll's name already there is
    /// [`HandOffError::Taken`], with its input.
    ///
    /// # Errors
    /// [`HandOffError`], carrying `EksTaskWorker.SchedulerError`.
    async fn hand_off(&self, poll: &NextPoll) -> Result<(), HandOffError>;

    /// The schedules still waiting for the polls of `key` whose attempt is past
    /// `attempt` (by name: [`crate::contract::poll_state::attempt_of`]), every page
    /// listed: the attempt each name says and its input, for at most
    /// [`PENDING_READ`] of them, the latest first (names past
    /// [`crate::contract::poll_state::MAX_POLL_ATTEMPTS`] are no poll's; a schedule that
    /// cannot be read is left out). What they hold is the caller's to check.
    ///
    /// # Errors
    /// [`HandOffError`] when the schedules cannot be listed.
    async fn pending_after(
        &self,
        key: &str,
        attempt: u32,
    ) -> Result<Vec<(u32, String)>, HandOffError>;
}
