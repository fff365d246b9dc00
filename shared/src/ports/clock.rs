//! The clock port: token expiry, the inline window and the stuck checks read the time
//! through [`Clock`], so tests can move time without sleeping; and the bounds of the
//! invocation being served ([`within_deadline`], on tokio's monotonic clock), which
//! retries, requests and the log archive read so that an invocation answers, hands off
//! or fails by name before Lambda ends it.

use std::future::Future;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

/// The time, as the worker sees it.
pub trait Clock: Send + Sync {
    /// Now.
    fn now(&self) -> SystemTime;
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// The bounds of the invocation being served.
#[derive(Debug, Clone, Copy)]
struct Bounds {
    /// By when its work is to be done: its Lambda deadline less the margin kept for its
    /// answer.
    until: Instant,
    /// How far past `until` its last acts (the answer, the hand-off) may still go.
    grace: Duration,
    /// Whether this is a last act already ([`last_act`] does not extend twice).
    last: bool,
}

tokio::task_local! {
    static INVOCATION: Bounds;
}

/// Runs `work` as an invocation whose work must be done `time_left` from now (its
/// deadline less the margin kept for its answer), its last acts ([`last_act`]) allowed
/// `grace` more, within that margin.
pub async fn within_deadline<T>(
    time_left: Duration,
    grace: Duration,
    work: impl Future<Output = T>,
) -> T {
    match Instant::now().checked_add(time_left) {
        Some(until) => {
            let bounds = Bounds {
                until,
                grace,
                last: false,
            };
            INVOCATION.scope(bounds, work).await
        }
        None => work.await,
    }
}

/// By when the invocation's work is to be done: no retry waits past it, a log still
/// being archived ends there. `None` outside [`within_deadline`].
#[must_use]
pub fn work_deadline() -> Option<Instant> {
    INVOCATION.try_with(|b| b.until).ok()
}

/// The instant no request of the invocation may outlast: its work deadline and the
/// grace of its last acts. `None` outside [`within_deadline`].
#[must_use]
pub fn request_deadline() -> Option<Instant> {
    INVOCATION.try_with(|b| b.until + b.grace).ok()
}

/// Runs `work`, a last act of the invocation (its answer and what follows it, or the
/// hand-off of its Job), with the grace added to its work deadline: a Job handed off,
/// or an answer sent, just as the time runs out still gets its retries, so one
/// throttled call does not fail a task whose Job runs on; its requests (the Job marked
/// answered, cleaned up) may run half a grace more. Once only: a last act within a last
/// act runs as it is.
pub async fn last_act<T>(work: impl Future<Output = T>) -> T {
    match INVOCATION.try_with(|b| *b) {
        Ok(b) if !b.last => {
            let last = Bounds {
                until: b.until + b.grace,
                grace: b.grace / 2,
                last: true,
            };
            INVOCATION.scope(last, work).await
        }
        _ => work.await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_last_act_extends_the_bounds_once() {
        let secs = Duration::from_secs;
        within_deadline(secs(10), secs(4), async {
            let work = work_deadline().unwrap_or_else(|| panic!("bounded"));
            let request = request_deadline().unwrap_or_else(|| panic!("bounded"));
            assert_eq!(request - work, secs(4));
            last_act(async {
                let last_work = work_deadline().unwrap_or_else(|| panic!("bounded"));
                let last_request = request_deadline().unwrap_or_else(|| panic!("bounded"));
                assert_eq!(last_work - work, secs(4), "retries: the grace");
                assert_eq!(last_request - work, secs(6), "requests: half a grace more");
                last_act(async {
                    assert_eq!(work_deadline(), Some(last_work), "not extended twice");
                })
                .await;
            })
            .await;
        })
        .await;
        assert_eq!(work_deadline(), None, "unbounded outside an invocation");
    }
}
