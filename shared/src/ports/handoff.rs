//! The hand-off port: how a poll that outlives an invocation reaches the poller.

use crate::contract::error::TaskError;
use crate::contract::poll_state::NextPoll;
use async_trait::async_trait;

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
