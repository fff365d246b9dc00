//! The stuck policy: when a Job that does not progress is failed.

use serde::{Deserialize, Serialize};

/// When a stuck Job fails its task; each limit off when `None` (the default, as native).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct StuckPolicy {
    /// Fail after a container could not start (image pull, config) this many seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_seconds: Option<u64>,
    /// Fail after a pod could not be scheduled this many seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unschedulable_seconds: Option<u64>,
}

impl StuckPolicy {
    /// Whether any limit is set.
    #[must_use]
    pub fn is_active(&self) -> bool {
        self.image_pull_seconds.is_some() || self.unschedulable_seconds.is_some()
    }

    /// The payload's policy where it sets a limit, else the deployment's.
    #[must_use]
    pub fn or(self, default: StuckPolicy) -> StuckPolicy {
        StuckPolicy {
            image_pull_seconds: self.image_pull_seconds.or(default.image_pull_seconds),
            unschedulable_seconds: self.unschedulable_seconds.or(default.unschedulable_seconds),
        }
    }
}
