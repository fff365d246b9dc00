//! The task error: the one shape every failure takes at the boundary, with a stable,
//! documented name (docs/errors.md) and a JSON cause a person can act on.
//!
//! The names a state machine's `Catch` sees are all in [`names`]. Ports keep their own
//! error enums (callback, credentials, Kubernetes transport, hand-off, EKS calls); each
//! converts into a [`TaskError`] with one of these names, beside its enum.

use serde_json::{json, Value};

/// Names of the errors the worker reports. `EKS.<status>` names are built by
/// [`TaskError::kubernetes_status`], `EKS.<Exception>` names by
/// [`TaskError::eks_exception`]; the rest are constants here.
pub mod names {
    /// The payload is not valid: a field is missing, of the wrong type or malformed.
    pub const INVALID_INPUT: &str = "EksTaskWorker.InvalidInput";
    /// The Job finished with a `Failed` condition.
    pub const JOB_FAILED: &str = "EksTaskWorker.JobFailed";
    /// The Job's pods were held (image pull, unschedulable) longer than the stuck
    /// policy allows.
    pub const JOB_STUCK: &str = "EksTaskWorker.JobStuck";
    /// The Job disappeared (deleted by someone else) while the worker waited on it.
    pub const JOB_VANISHED: &str = "EksTaskWorker.JobVanished";
    /// The cluster's API server could not be reached: DNS, connect, TLS or timeout.
    pub const CLUSTER_UNREACHABLE: &str = "EksTaskWorker.ClusterUnreachable";
    /// Credentials could not be loaded, or STS refused AssumeRole.
    pub const CREDENTIALS: &str = "EksTaskWorker.CredentialsError";
    /// The EKS API could not be reached, or answered without naming its exception (an
    /// exception it names is `EKS.<Exception>`).
    pub const EKS_API: &str = "EksTaskWorker.EksApiError";
    /// Step Functions refused the callback (SendTaskSuccess/SendTaskFailure).
    pub const CALLBACK: &str = "EksTaskWorker.CallbackError";
    /// EventBridge Scheduler refused the next poll's schedule.
    pub const SCHEDULER: &str = "EksTaskWorker.SchedulerError";
    /// A cluster, nodegroup or Fargate profile ended FAILED, CREATE_FAILED,
    /// DELETE_FAILED or DEGRADED, or a forced deletion did not finish in time.
    pub const CLUSTER_OPERATION_FAILED: &str = "EksTaskWorker.ClusterOperationFailed";
    /// Too many consecutive polls could not read the Job; the cause lists them.
    pub const POLL_FAILED: &str = "EksTaskWorker.PollFailed";
    /// The worker refused to act on something it did not create: a cluster, nodegroup or
    /// Fargate profile without its ownership tag (or made by another execution than the
    /// one named), or a Job whose task label does not match the task.
    pub const NOT_OWNED: &str = "EksTaskWorker.NotOwned";
    /// A forced delete (`ForceDeleteCompute`) met a cluster tagged
    /// `eks-task-worker.io/retain`: nothing is released or deleted.
    pub const RETAINED: &str = "EksTaskWorker.Retained";
    /// The payload's `Endpoint` is not the one EKS reports for `ClusterName` and not in
    /// `TRUSTED_ENDPOINTS`: no bearer token is sent to it.
    pub const UNTRUSTED_ENDPOINT: &str = "EksTaskWorker.UntrustedEndpoint";
    /// The payload's `CertificateAuthority` is not the one EKS reports for a cluster the
    /// worker describes: no bearer token is sent under it.
    pub const UNTRUSTED_CA: &str = "EksTaskWorker.UntrustedCertificateAuthority";
    /// A poll state the worker did not write: no seal, a seal that does not verify, or
    /// one made with a key that is not the deployment's. Refused before anything is
    /// read, sent or deleted; never tried again.
    pub const UNVERIFIED_POLL_STATE: &str = "EksTaskWorker.UnverifiedPollState";
    /// A poll state of an attempt behind its Job's chain of polls (a genuine state
    /// delivered again later: a replay). Refused before anything is sent; never tried
    /// again.
    pub const REPLAYED_POLL_STATE: &str = "EksTaskWorker.ReplayedPollState";
    /// The poll-state key (`POLL_STATE_KEY`) cannot be used: unset, denied, disabled,
    /// or KMS out of reach.
    pub const POLL_STATE_KEY: &str = "EksTaskWorker.PollStateKeyError";
    /// A defect in the worker itself; the cause says what, please report it.
    pub const INTERNAL: &str = "EksTaskWorker.InternalError";
    /// A log could not be archived (reported beside the log; it never fails the task).
    pub const LOG_ARCHIVE: &str = "EksTaskWorker.LogArchiveError";
    /// A `call` response longer than the worker reads into memory.
    pub const RESPONSE_TOO_LARGE: &str = "EksTaskWorker.ResponseTooLarge";
}

/// The most characters Step Functions accepts in `SendTaskFailure.error`.
pub const MAX_ERROR_CHARS: usize = 256;
/// The most characters Step Functions accepts in `SendTaskFailure.cause`.
pub const MAX_CAUSE_CHARS: usize = 32_768;

/// A failure as a state machine sees it: an error name and a JSON cause.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskError {
    /// The stable error name (`EKS.404`, `EksTaskWorker.InvalidInput`, …).
    pub name: String,
    /// What happened, as JSON.
    pub cause: Value,
}

/// Results whose error is a [`TaskError`].
pub type TaskResult<T> = std::result::Result<T, TaskError>;

impl TaskError {
    /// An error with a name and a JSON cause.
    pub fn new(name: impl Into<String>, cause: Value) -> Self {
        Self {
            name: name.into(),
            cause,
        }
    }

    /// Invalid input: `field` names the payload field (a JSON path such as `Job.kind`),
    /// `message` says what is wrong and what is expected.
    pub fn invalid_input(field: &str, message: impl Into<String>) -> Self {
        let message = message.into();
        Self::new(
            names::INVALID_INPUT,
            json!({ "field": field, "message": message }),
        )
    }

    /// The Kubernetes API answered with an error status: `EKS.<status>` with the native
    /// cause shape `{"ResponseBody", "StatusCode", "StatusText"}`.
    pub fn kubernetes_status(status: u16, status_text: &str, body: Value) -> Self {
        Self::new(
            format!("EKS.{status}"),
            json!({ "ResponseBody": body, "StatusCode": status, "StatusText": status_text }),
        )
    }

    /// The EKS control plane refused: `EKS.<Exception>` (`EKS.ResourceInUseException`),
    /// named as the native integration names the service's own exception, with the
    /// cause `{"operation", "error", "status", "message"}`. An exception name that is
    /// not one (empty, or not letters and digits) is `EksTaskWorker.EksApiError`.
    pub fn eks_exception(kind: &str, status: u16, operation: &str, message: &str) -> Self {
        let named = kind.len() <= 100
            && kind.starts_with(|c: char| c.is_ascii_uppercase())
            && kind.chars().all(|c| c.is_ascii_alphanumeric());
        let name = if named {
            format!("EKS.{kind}")
        } else {
            names::EKS_API.to_owned()
        };
        Self::new(
            &name,
            json!({ "operation": operation, "error": kind, "status": status, "message": message }),
        )
    }

    /// Whether EKS's control plane said to try again later (throttled, or a fault of
    /// its own).
    #[must_use]
    pub fn is_eks_busy(&self) -> bool {
        matches!(
            self.name.as_str(),
            "EKS.ThrottlingException"
                | "EKS.TooManyRequestsException"
                | "EKS.ServerException"
                | "EKS.ServiceUnavailableException"
        )
    }

    /// The status of an `EKS.<status>` error (the Kubernetes API's answer); `None` for
    /// every other error.
    #[must_use]
    pub fn kubernetes_status_code(&self) -> Option<u16> {
        self.name
            .strip_prefix("EKS.")
            .filter(|s| s.len() == 3)
            .and_then(|s| s.parse().ok())
    }

    /// An error with a message only.
    pub fn message(name: &str, message: impl Into<String>) -> Self {
        let message = message.into();
        Self::new(name, json!({ "message": message }))
    }

    /// The cause as a string of at most [`MAX_CAUSE_CHARS`] characters that is still
    /// valid JSON: long string values are cut from the front (keeping their end) until
    /// it fits.
    pub fn cause_string(&self) -> String {
        crate::contract::budget::fit_value_chars(&self.cause, MAX_CAUSE_CHARS)
    }

    /// The name cut to [`MAX_ERROR_CHARS`] characters.
    pub fn name_for_callback(&self) -> String {
        self.name.chars().take(MAX_ERROR_CHARS).collect()
    }
}

impl std::fmt::Display for TaskError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.name, self.cause)
    }
}

impl std::error::Error for TaskError {}

/// An error with its whole chain of sources, on one line (SDK errors say little at
/// the top level).
pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        let next = inner.to_string();
        if !s.contains(&next) {
            s.push_str(": ");
            s.push_str(&next);
        }
        source = inner.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Layer(&'static str, Option<Box<Layer>>);

    impl std::fmt::Display for Layer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for Layer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|l| l as _)
        }
    }

    #[test]
    fn an_error_chain_names_each_source_once() {
        let e = Layer(
            "service error",
            Some(Box::new(Layer(
                "dispatch failure",
                Some(Box::new(Layer("failure", None))),
            ))),
        );
        // "failure" is already said by "dispatch failure".
        assert_eq!(error_chain(&e), "service error: dispatch failure");
        assert_eq!(error_chain(&Layer("alone", None)), "alone");
    }

    #[test]
    fn a_task_error_displays_its_name_and_cause() {
        let e = TaskError::message(names::EKS_API, "refused");
        let shown = e.to_string();
        assert!(shown.starts_with("EksTaskWorker.EksApiError: "), "{shown}");
        assert!(shown.contains("refused"), "{shown}");
    }

    #[test]
    fn an_eks_exception_is_named_only_by_a_name_that_is_one() {
        for (kind, name) in [
            ("ResourceInUseException", "EKS.ResourceInUseException"),
            ("", names::EKS_API),
            ("resourceInUse", names::EKS_API),
            ("Resource In Use", names::EKS_API),
            ("Bad.Name", names::EKS_API),
            (&*"A".repeat(101), names::EKS_API),
        ] {
            let e = TaskError::eks_exception(kind, 409, "CreateCluster", "m");
            assert_eq!(e.name, name, "{kind:?}");
            assert_eq!(e.cause["error"], kind, "{kind:?}");
        }
        assert_eq!(
            TaskError::eks_exception(&"A".repeat(100), 400, "o", "m").name,
            format!("EKS.{}", "A".repeat(100))
        );
    }

    #[test]
    fn only_eks_errors_have_a_kubernetes_status() {
        let e = TaskError::kubernetes_status(404, "Not Found", Value::Null);
        assert_eq!(e.kubernetes_status_code(), Some(404));
        for name in ["EKS.5000", "EKS.", "EKS.abc", names::JOB_VANISHED] {
            assert_eq!(TaskError::message(name, "x").kubernetes_status_code(), None);
        }
    }

    #[test]
    fn kubernetes_status_has_the_native_cause_shape() {
        let e = TaskError::kubernetes_status(401, "Unauthorized", json!({"kind": "Status"}));
        assert_eq!(e.name, "EKS.401");
        assert_eq!(
            e.cause,
            json!({"ResponseBody": {"kind": "Status"}, "StatusCode": 401, "StatusText": "Unauthorized"})
        );
    }

    #[test]
    fn no_name_starts_with_states() {
        for n in [
            names::INVALID_INPUT,
            names::JOB_FAILED,
            names::JOB_VANISHED,
            names::JOB_STUCK,
            names::CLUSTER_UNREACHABLE,
            names::CREDENTIALS,
            names::EKS_API,
            names::CALLBACK,
            names::SCHEDULER,
            names::POLL_FAILED,
            names::CLUSTER_OPERATION_FAILED,
            names::INTERNAL,
        ] {
            assert!(!n.starts_with("States."), "{n}");
            assert!(n.len() <= MAX_ERROR_CHARS);
        }
    }
}
