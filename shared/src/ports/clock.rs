//! The clock port: token expiry, the inline window and every deadline read the time
//! through [`Clock`], so tests can move time without sleeping.

use std::time::SystemTime;

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
