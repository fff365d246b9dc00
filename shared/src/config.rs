//! The deployment's settings, read once at cold start from the function's
//! environment. Every setting has a default; a malformed one is an error at start-up,
//! not a surprise later.

use std::time::Duration;

use crate::kube_api::Timeouts;

/// The worker's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// The function's region (`AWS_REGION`).
    pub region: String,
    /// `INLINE_WAIT_SECONDS` (default 600): the longest a callback-pattern invocation
    /// watches its Job before handing it to the poller.
    pub inline_wait: Duration,
    /// `LAMBDA_TIME_MARGIN_SECONDS` (default 20): left free before the Lambda deadline
    /// for logs, the callback and the hand-off.
    pub lambda_margin: Duration,
    /// `KUBE_CONNECT_TIMEOUT_SECONDS` (default 5) and `KUBE_READ_TIMEOUT_SECONDS`
    /// (default 30).
    pub timeouts: Timeouts,
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
    pub expected: &'static str,
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
                expected: "a whole number of seconds",
            }),
    }
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
        Ok(Self {
            region: get("AWS_REGION")
                .or_else(|| get("AWS_DEFAULT_REGION"))
                .unwrap_or_else(|| "us-east-1".into()),
            inline_wait: seconds(&get, "INLINE_WAIT_SECONDS", 600)?,
            lambda_margin: seconds(&get, "LAMBDA_TIME_MARGIN_SECONDS", 20)?,
            timeouts: Timeouts {
                connect: seconds(&get, "KUBE_CONNECT_TIMEOUT_SECONDS", 5)?,
                read: seconds(&get, "KUBE_READ_TIMEOUT_SECONDS", 30)?,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_overrides() {
        let s = Settings::from_lookup(|_| None).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.inline_wait, Duration::from_secs(600));
        assert_eq!(s.region, "us-east-1");
        let s = Settings::from_lookup(|k| (k == "INLINE_WAIT_SECONDS").then(|| "5".to_owned()))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.inline_wait, Duration::from_secs(5));
        let e = Settings::from_lookup(|k| {
            (k == "KUBE_READ_TIMEOUT_SECONDS").then(|| "soon".to_owned())
        });
        assert!(e.is_err_and(|e| e.to_string().contains("KUBE_READ_TIMEOUT_SECONDS")));
    }
}
