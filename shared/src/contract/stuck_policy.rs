//! The stuck policy: what can hold a Job that does not progress, and when each fails it.

use serde::{Deserialize, Serialize};

/// What holds a Job. Each has its stable name (the `Reason` of an
/// `EksTaskWorker.JobStuck` cause), its key in `StuckPolicy` and its setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Hold {
    /// A container's image cannot be pulled (`ErrImagePull`, `ImagePullBackOff`, …).
    ImagePull,
    /// A container cannot be made from its spec (`CreateContainerConfigError`: a
    /// missing Secret or ConfigMap key, `CreateContainerError`).
    ContainerConfig,
    /// A container stays in `ContainerCreating` (a volume that cannot be mounted: a
    /// missing ConfigMap or Secret; a missing claim holds the pod as `Unschedulable`).
    ContainerCreating,
    /// The pod cannot be scheduled.
    Unschedulable,
    /// A container keeps crashing and is restarted (`CrashLoopBackOff`).
    CrashLoop,
    /// The Job controller cannot create the Job's pods (`FailedCreate` events: a
    /// quota, an admission webhook or Pod Security, a missing service account).
    FailedCreate,
    /// The Job is suspended (`spec.suspend`, as queueing controllers like Kueue hold
    /// Jobs), or its parallelism is 0: it makes no pods by design.
    Suspended,
}

impl Hold {
    /// Every kind, in the order a diagnosis names them.
    pub const ALL: [Hold; 7] = [
        Hold::ImagePull,
        Hold::ContainerConfig,
        Hold::ContainerCreating,
        Hold::Unschedulable,
        Hold::CrashLoop,
        Hold::FailedCreate,
        Hold::Suspended,
    ];

    /// The stable name: the cause's `Reason`.
    #[must_use]
    pub fn reason(self) -> &'static str {
        match self {
            Hold::ImagePull => "ImagePull",
            Hold::ContainerConfig => "ContainerConfig",
            Hold::ContainerCreating => "ContainerCreating",
            Hold::Unschedulable => "Unschedulable",
            Hold::CrashLoop => "CrashLoop",
            Hold::FailedCreate => "FailedCreate",
            Hold::Suspended => "Suspended",
        }
    }

    /// Its limit's key in a payload's `StuckPolicy`.
    #[must_use]
    pub fn policy_key(self) -> &'static str {
        match self {
            Hold::ImagePull => "ImagePullSeconds",
            Hold::ContainerConfig => "ContainerConfigSeconds",
            Hold::ContainerCreating => "ContainerCreatingSeconds",
            Hold::Unschedulable => "UnschedulableSeconds",
            Hold::CrashLoop => "CrashLoopSeconds",
            Hold::FailedCreate => "FailedCreateSeconds",
            Hold::Suspended => "SuspendedSeconds",
        }
    }

    /// The deployment's setting for its limit.
    #[must_use]
    pub fn setting(self) -> &'static str {
        match self {
            Hold::ImagePull => "STUCK_IMAGE_PULL_SECONDS",
            Hold::ContainerConfig => "STUCK_CONTAINER_CONFIG_SECONDS",
            Hold::ContainerCreating => "STUCK_CONTAINER_CREATING_SECONDS",
            Hold::Unschedulable => "STUCK_UNSCHEDULABLE_SECONDS",
            Hold::CrashLoop => "STUCK_CRASH_LOOP_SECONDS",
            Hold::FailedCreate => "STUCK_FAILED_CREATE_SECONDS",
            Hold::Suspended => "STUCK_SUSPENDED_SECONDS",
        }
    }
}

/// When a stuck Job fails its task; each limit off when `None` (the default, as
/// native: a held Job is reported and waited for).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct StuckPolicy {
    /// Fail after a container's image could not be pulled this many seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_seconds: Option<u64>,
    /// Fail after a container could not be made from its spec this many seconds
    /// (unset: `image_pull_seconds`, which covered it before it had its own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_config_seconds: Option<u64>,
    /// Fail after a container stayed in `ContainerCreating` this many seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_creating_seconds: Option<u64>,
    /// Fail after a pod could not be scheduled this many seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unschedulable_seconds: Option<u64>,
    /// Fail after a container waited this many seconds in one crash-loop back-off
    /// (counted from its last crash; the kubelet's back-off reaches 300 s at most).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crash_loop_seconds: Option<u64>,
    /// Fail after the Job controller could not create pods this many seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_create_seconds: Option<u64>,
    /// Fail after the Job was suspended this many seconds (never by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspended_seconds: Option<u64>,
}

impl StuckPolicy {
    /// The limit of `hold`, `None` when off.
    #[must_use]
    pub fn limit(&self, hold: Hold) -> Option<u64> {
        match hold {
            Hold::ContainerConfig => self.own(hold).or(self.image_pull_seconds),
            _ => self.own(hold),
        }
    }

    /// The limit set for `hold` itself (no fallback).
    fn own(&self, hold: Hold) -> Option<u64> {
        match hold {
            Hold::ImagePull => self.image_pull_seconds,
            Hold::ContainerConfig => self.container_config_seconds,
            Hold::ContainerCreating => self.container_creating_seconds,
            Hold::Unschedulable => self.unschedulable_seconds,
            Hold::CrashLoop => self.crash_loop_seconds,
            Hold::FailedCreate => self.failed_create_seconds,
            Hold::Suspended => self.suspended_seconds,
        }
    }

    /// The policy with the limit of `hold` set to `seconds`.
    #[must_use]
    pub fn with(mut self, hold: Hold, seconds: Option<u64>) -> Self {
        let field = match hold {
            Hold::ImagePull => &mut self.image_pull_seconds,
            Hold::ContainerConfig => &mut self.container_config_seconds,
            Hold::ContainerCreating => &mut self.container_creating_seconds,
            Hold::Unschedulable => &mut self.unschedulable_seconds,
            Hold::CrashLoop => &mut self.crash_loop_seconds,
            Hold::FailedCreate => &mut self.failed_create_seconds,
            Hold::Suspended => &mut self.suspended_seconds,
        };
        *field = seconds;
        self
    }

    /// Whether any limit is set.
    #[must_use]
    pub fn is_active(&self) -> bool {
        Hold::ALL.iter().any(|h| self.limit(*h).is_some())
    }

    /// The payload's policy where it sets a limit, else the deployment's, key by key.
    #[must_use]
    pub fn or(self, default: StuckPolicy) -> StuckPolicy {
        Hold::ALL
            .iter()
            .fold(self, |p, h| p.with(*h, self.own(*h).or(default.own(*h))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_holds_setting_is_its_policy_key_in_upper_snake_case() {
        for h in Hold::ALL {
            let words = h.policy_key().trim_end_matches("Seconds");
            let mut snake = String::new();
            for c in words.chars() {
                if c.is_ascii_uppercase() && !snake.is_empty() {
                    snake.push('_');
                }
                snake.push(c.to_ascii_uppercase());
            }
            assert_eq!(h.setting(), format!("STUCK_{snake}_SECONDS"), "{h:?}");
        }
    }

    #[test]
    fn each_hold_has_its_own_limit_and_names() {
        let mut p = StuckPolicy::default();
        assert!(!p.is_active(), "off by default, as native");
        for (i, h) in Hold::ALL.iter().enumerate() {
            p = p.with(*h, Some(i as u64 + 10));
        }
        for (i, h) in Hold::ALL.iter().enumerate() {
            assert_eq!(p.limit(*h), Some(i as u64 + 10), "{h:?}");
            assert!(h.policy_key().starts_with(h.reason()), "{h:?}");
        }
        let json = serde_json::to_value(p).unwrap_or_default();
        for h in Hold::ALL {
            assert!(json.get(h.policy_key()).is_some(), "{json}");
        }
    }

    #[test]
    fn container_config_falls_back_to_image_pull_and_payloads_win() {
        let pull = StuckPolicy::default().with(Hold::ImagePull, Some(60));
        assert_eq!(pull.limit(Hold::ContainerConfig), Some(60));
        let deployment = StuckPolicy::default()
            .with(Hold::ContainerConfig, Some(5))
            .with(Hold::Unschedulable, Some(7));
        let merged = pull.or(deployment);
        assert_eq!(merged.limit(Hold::ImagePull), Some(60));
        assert_eq!(merged.limit(Hold::ContainerConfig), Some(5));
        assert_eq!(merged.limit(Hold::Unschedulable), Some(7));
        assert_eq!(merged.limit(Hold::Suspended), None);
    }
}
