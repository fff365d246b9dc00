//! What time can mend, tried again, under one policy ([`retry`]): the cluster
//! unreachable, the API server's 5xx and 429 (after its `Retry-After`), EKS and
//! credential hiccups ([`transient`]), Step Functions callbacks and the Scheduler
//! hand-off. A few tries with a doubling pause, jittered, within one invocation; what
//! still fails is the caller's to handle.
//!
//! The loop is the project's own rather than a backoff crate's because every pause is
//! bounded by the invocation's deadline and its last act's grace ([`clock`]), and a
//! server's `Retry-After` replaces the pause: two rules the crates would wrap rather
//! than hold. The jitter ("equal jitter": half the pause, plus a random part of the other
//! half) keeps the many tasks that meet one outage from retrying in lockstep; its random
//! numbers are fastrand's.

use std::future::Future;
use std::time::Duration;

use serde_json::Value;

use crate::contract::error::{names, TaskError};
use crate::ports::clock;

/// Tries per operation.
pub const TRIES: u32 = 3;
/// The first pause between tries; doubled each time.
const FIRST_PAUSE: Duration = Duration::from_millis(500);
/// The longest `Retry-After` honoured.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(10);

/// Whether a failure may pass with time.
#[must_use]
pub fn is_transient(e: &TaskError) -> bool {
    matches!(
        e.name.as_str(),
        names::CLUSTER_UNREACHABLE | names::CREDENTIALS | names::EKS_API
    ) || e.is_eks_busy()
        || matches!(e.kubernetes_status_code(), Some(429 | 500..=599))
}

/// The server's `Retry-After`: the header, else the Status body's
/// `details.retryAfterSeconds`.
#[must_use]
pub fn retry_after(e: &TaskError) -> Option<Duration> {
    e.cause
        .get("RetryAfterSeconds")
        .or_else(|| e.cause.pointer("/ResponseBody/details/retryAfterSeconds"))
        .and_then(Value::as_u64)
        .map(Duration::from_secs)
}

/// Runs `attempt` until it succeeds, fails for good, or [`TRIES`] transient failures
/// have passed; `what` names it in the log.
///
/// # Errors
/// The last failure.
pub async fn transient<T, F, Fut>(what: &str, attempt: F) -> Result<T, TaskError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, TaskError>>,
{
    retry(what, Policy::default(), is_transient, retry_after, attempt).await
}

/// How many tries, and the first pause between them.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// Tries in all.
    pub tries: u32,
    /// The pause after the first failure; each next pause is twice as long.
    pub first_pause: Duration,
}

impl Default for Policy {
    /// [`TRIES`] tries, half a second first.
    fn default() -> Self {
        Self {
            tries: TRIES,
            first_pause: FIRST_PAUSE,
        }
    }
}

/// `pause` jittered: half of it, plus a random share of the other half.
#[must_use]
pub fn jittered(pause: Duration) -> Duration {
    let half = pause / 2;
    half + half.mul_f64(fastrand::f64())
}

/// Whether a pause of `wait` from now still ends before the invocation's work deadline
/// ([`clock::work_deadline`]; always, outside an invocation's bounds).
fn may_wait(wait: Duration) -> bool {
    clock::work_deadline().is_none_or(|until| tokio::time::Instant::now() + wait < until)
}

/// The one retry policy: runs `attempt` at most `policy.tries` times while it fails in
/// a way `may_pass` says time can mend, pausing `policy.first_pause`, then twice as long
/// each time, each pause [`jittered`] (or as long as the failure asks, `asked`, at most
/// ten seconds), and never past the invocation's work deadline
/// ([`clock::work_deadline`]).
///
/// # Errors
/// The last failure.
pub async fn retry<T, E, F, Fut>(
    what: &str,
    policy: Policy,
    may_pass: impl Fn(&E) -> bool,
    asked: impl Fn(&E) -> Option<Duration>,
    mut attempt: F,
) -> Result<T, E>
where
    E: std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut pause = policy.first_pause;
    let mut tried = 0;
    loop {
        tried += 1;
        match attempt().await {
            Err(e) if may_pass(&e) && tried < policy.tries => {
                let wait = asked(&e).map_or_else(|| jittered(pause), |r| r.min(MAX_RETRY_AFTER));
                if !may_wait(wait) {
                    tracing::warn!(error = %e, tries = tried, what, "failed; no time left to try again");
                    return Err(e);
                }
                tracing::warn!(error = %e, tries = tried, what, "failed; trying again");
                tokio::time::sleep(wait).await;
                pause *= 2;
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn transient_failures_are_the_ones_time_can_mend() {
        for name in [
            names::CLUSTER_UNREACHABLE,
            names::CREDENTIALS,
            "EKS.500",
            "EKS.503",
            "EKS.429",
            names::EKS_API,
        ] {
            assert!(is_transient(&TaskError::message(name, "x")), "{name}");
        }
        for name in [
            "EKS.403",
            "EKS.404",
            names::JOB_VANISHED,
            names::INVALID_INPUT,
            "EKS.5000",
        ] {
            assert!(!is_transient(&TaskError::message(name, "x")), "{name}");
        }
    }

    #[test]
    fn retry_after_reads_the_header_then_the_status_details() {
        let header = TaskError::new(
            "EKS.429",
            json!({ "RetryAfterSeconds": 3, "ResponseBody": { "details": { "retryAfterSeconds": 9 } } }),
        );
        assert_eq!(retry_after(&header), Some(Duration::from_secs(3)));
        let body = TaskError::new(
            "EKS.429",
            json!({ "ResponseBody": { "details": { "retryAfterSeconds": 9 } } }),
        );
        assert_eq!(retry_after(&body), Some(Duration::from_secs(9)));
        assert_eq!(retry_after(&TaskError::message("EKS.429", "x")), None);
    }

    #[tokio::test(start_paused = true)]
    async fn transient_failures_are_tried_again_and_the_rest_are_not() {
        let mut calls = 0;
        let got: Result<u32, TaskError> = transient("x", || {
            calls += 1;
            let n = calls;
            async move {
                if n < 3 {
                    Err(TaskError::message("EKS.503", "busy"))
                } else {
                    Ok(n)
                }
            }
        })
        .await;
        assert_eq!(got.ok(), Some(3));
        let mut calls = 0;
        let got: Result<u32, TaskError> = transient("x", || {
            calls += 1;
            async { Err(TaskError::message("EKS.403", "no")) }
        })
        .await;
        assert_eq!(
            (got.err().map(|e| e.name), calls),
            (Some("EKS.403".to_owned()), 1)
        );
    }

    /// Within an invocation's deadline, a retry whose pause would end past it is not
    /// made: the failure comes back at once.
    #[tokio::test(start_paused = true)]
    async fn no_retry_waits_past_the_invocations_deadline() {
        let mut calls = 0;
        let started = tokio::time::Instant::now();
        let got: Result<u32, TaskError> =
            clock::within_deadline(Duration::from_millis(700), Duration::ZERO, async {
                transient("x", || {
                    calls += 1;
                    async { Err(TaskError::message("EKS.503", "busy")) }
                })
                .await
            })
            .await;
        // Tries at 0 and 0.25-0.5 s; the next pause (0.5-1 s) would end past 0.7 s.
        assert_eq!(
            (got.err().map(|e| e.name), calls),
            (Some("EKS.503".to_owned()), 2)
        );
        assert!(started.elapsed() < Duration::from_millis(700));
        // Outside a deadline, every try is made.
        let mut calls = 0;
        let _: Result<u32, TaskError> = transient("x", || {
            calls += 1;
            async { Err(TaskError::message("EKS.503", "busy")) }
        })
        .await;
        assert_eq!(calls, TRIES);
    }

    /// Pauses are jittered: between half and all of the doubling pause, not one instant
    /// for every task that met the same failure.
    #[test]
    fn pauses_are_jittered() {
        let pause = Duration::from_millis(800);
        let drawn: std::collections::BTreeSet<Duration> =
            (0..200).map(|_| jittered(pause)).collect();
        assert!(drawn.len() > 100, "{} distinct pauses", drawn.len());
        assert!(drawn.iter().all(|d| *d >= pause / 2 && *d <= pause));
    }

    #[tokio::test]
    async fn the_last_act_tries_again_within_its_grace() {
        // At the deadline (no time left) a failure is tried again only as a last act.
        let tries = |grace: Option<Duration>| async move {
            let count = std::sync::atomic::AtomicU32::new(0);
            let attempt = || async {
                let n = count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if n == 0 {
                    Err("busy")
                } else {
                    Ok(())
                }
            };
            let policy = Policy {
                tries: 4,
                first_pause: Duration::from_millis(10),
            };
            let work = retry("the last act", policy, |_| true, |_| None, attempt);
            let grace = grace.unwrap_or_default();
            let result = clock::within_deadline(Duration::ZERO, grace, async {
                if grace.is_zero() {
                    work.await
                } else {
                    clock::last_act(work).await
                }
            })
            .await;
            (result, count.load(std::sync::atomic::Ordering::SeqCst))
        };
        assert_eq!(tries(None).await, (Err("busy"), 1));
        assert_eq!(tries(Some(Duration::from_secs(5))).await, (Ok(()), 2));
    }
}
