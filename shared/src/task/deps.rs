//! What the task logic works with: the deployment's settings and one of each port.

use crate::config::Settings;
use crate::ports::archive::LogArchive;
use crate::ports::callback::TaskCallback;
use crate::ports::clock::Clock;
use crate::ports::cluster::Connector;
use crate::ports::eks::EksApi;
use crate::ports::handoff::{HandOff, HandOffError};
use std::sync::Arc;

/// The ports a handler uses.
#[derive(Clone)]
pub struct Deps {
    /// The deployment's settings.
    pub settings: Settings,
    /// Connects to clusters.
    pub connector: Arc<dyn Connector>,
    /// Answers callback-pattern tasks.
    pub callback: Arc<dyn TaskCallback>,
    /// Hands running Jobs to the poller (where no poller is configured, a null adapter
    /// that refuses: a Job must then finish within the invocation).
    pub handoff: Arc<dyn HandOff>,
    /// The clock.
    pub clock: Arc<dyn Clock>,
    /// The EKS control-plane API (cluster operations, cleanup).
    pub eks: Arc<dyn EksApi>,
    /// Where whole logs are archived (S3).
    pub archive: Arc<dyn LogArchive>,
}

impl Deps {
    /// How long an invocation may still work: until its deadline less the margin
    /// (unbounded without a deadline).
    #[must_use]
    pub fn time_left(&self, deadline: Option<std::time::SystemTime>) -> std::time::Duration {
        deadline.map_or(std::time::Duration::MAX, |d| {
            d.duration_since(self.clock.now())
                .unwrap_or_default()
                .saturating_sub(self.settings.lambda_margin)
        })
    }

    /// Hands a poll to the poller, trying again (four tries in all) while the scheduler
    /// is busy.
    ///
    /// # Errors
    /// What the hand-off fails with (`EksTaskWorker.InternalError` when this deployment
    /// has no poller).
    pub async fn hand_off(
        &self,
        poll: &crate::contract::poll_state::NextPoll,
    ) -> Result<(), crate::contract::error::TaskError> {
        let busy = |e: &HandOffError| matches!(e, HandOffError::Busy(_));
        crate::task::retry::retry(
            "handing off the poll",
            4,
            busy,
            |_| None,
            || self.handoff.hand_off(poll),
        )
        .await
        .map_err(Into::into)
    }
}
