//! The clock port: token expiry, the inline window and every deadline read the time
//! through [`Clock`], so tests can move time without sleeping.

use std::sync::Mutex;
use std::time::{Duration, SystemTime};

/// `yyyy-mm-ddThh:mm:ss` in UTC, whole seconds: the form EventBridge Scheduler's
/// `at()` and Kubernetes' timestamps (with a `Z`) take.
#[must_use]
pub fn utc_seconds(t: SystemTime) -> String {
    let t = time::OffsetDateTime::from(t);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// An RFC 3339 timestamp (as Kubernetes and the worker's tags write them) held in a
/// JSON string; `None` for anything else.
#[must_use]
pub fn rfc3339(v: &serde_json::Value) -> Option<SystemTime> {
    v.as_str()
        .and_then(|t| {
            time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()
        })
        .map(Into::into)
}

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

/// A clock that stands still until moved; for tests.
#[derive(Debug)]
pub struct ManualClock(Mutex<SystemTime>);

impl ManualClock {
    /// A clock showing `at`.
    #[must_use]
    pub fn new(at: SystemTime) -> Self {
        Self(Mutex::new(at))
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        if let Ok(mut t) = self.0.lock() {
            *t += by;
        }
    }
}

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        self.0.lock().map_or(SystemTime::UNIX_EPOCH, |t| *t)
    }
}
