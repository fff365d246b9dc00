//! The poll curve: when the poller looks at a running Job. By default it follows the
//! native integration: the first poll 60 s after the hand-off, then every minute,
//! slowing to every five minutes:
//!
//! `60, 60, 60, 120, 180, 240, 300, 300, 300, …` seconds between polls
//! (polls at 1, 2, 3, 5, 8, 12, 17, 22, … minutes after the hand-off; 15 polls in the
//! first hour, 12 an hour after that).
//!
//! A deployment (`POLL_CURVE_SECONDS`) or a payload (`PollCurveSeconds`) can set its
//! own: the delays in order, the last one repeating. Delays never shrink, and none is
//! shorter than the platform honours (`POLL_MIN_SECONDS`, 60 on AWS: EventBridge
//! Scheduler fires with one-minute precision).

use serde::{Deserialize, Serialize};

/// The default delays, in seconds.
pub const DEFAULT_DELAYS: [u64; 7] = [60, 60, 60, 120, 180, 240, 300];
/// The longest delay a curve may hold (one hour).
pub const MAX_DELAY_SECONDS: u64 = 3600;

/// Delays between polls; the last one repeats.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PollCurve(Vec<u64>);

impl Default for PollCurve {
    fn default() -> Self {
        Self(DEFAULT_DELAYS.to_vec())
    }
}

impl PollCurve {
    /// A curve from delays, checked: at least one, each from `min` to one hour, never
    /// shrinking.
    ///
    /// # Errors
    /// A message saying which rule the delays break.
    pub fn new(delays: Vec<u64>, min: u64) -> Result<Self, String> {
        if delays.is_empty() {
            return Err("needs at least one delay".into());
        }
        if let Some(d) = delays.iter().find(|&&d| d < min || d > MAX_DELAY_SECONDS) {
            return Err(format!(
                "delay {d} is outside {min}..{MAX_DELAY_SECONDS} seconds"
            ));
        }
        if delays.windows(2).any(|w| w[1] < w[0]) {
            return Err("delays must never shrink".into());
        }
        Ok(Self(delays))
    }

    /// Parses `"60,60,120"`.
    ///
    /// # Errors
    /// A message for a malformed list or a curve that breaks the rules.
    pub fn parse(text: &str, min: u64) -> Result<Self, String> {
        let delays = text
            .split(',')
            .map(|p| {
                p.trim()
                    .parse::<u64>()
                    .map_err(|_| format!("{p:?} is not a whole number of seconds"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Self::new(delays, min)
    }

    /// The delay before poll number `attempt` (0 is the first poll after the hand-off).
    #[must_use]
    pub fn delay(&self, attempt: u32) -> u64 {
        let i = (attempt as usize).min(self.0.len().saturating_sub(1));
        self.0.get(i).copied().unwrap_or(DEFAULT_DELAYS[0])
    }

    /// The delays as given.
    #[must_use]
    pub fn delays(&self) -> &[u64] {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_curve_is_the_native_one() {
        let c = PollCurve::default();
        let delays: Vec<u64> = (0..10).map(|a| c.delay(a)).collect();
        assert_eq!(delays, vec![60, 60, 60, 120, 180, 240, 300, 300, 300, 300]);
        // Polls in the first hour, and per hour at steady state.
        let mut t = 0;
        let mut polls = 0;
        for a in 0.. {
            t += c.delay(a);
            if t > 3600 {
                break;
            }
            polls += 1;
        }
        assert_eq!(polls, 15);
        assert_eq!(3600 / c.delay(100), 12);
    }

    #[test]
    fn delays_never_shrink_and_respect_the_minimum() {
        assert!(PollCurve::new(vec![60, 30], 1).is_err());
        assert!(PollCurve::new(vec![30], 60).is_err());
        assert!(PollCurve::new(vec![], 1).is_err());
        assert!(PollCurve::new(vec![4000], 1).is_err());
        assert_eq!(PollCurve::parse("1, 1,2", 1).map(|c| c.delay(5)), Ok(2));
        assert!(PollCurve::parse("1,x", 1).is_err());
    }

    #[test]
    fn intervals_never_shrink_along_the_way() {
        let c = PollCurve::default();
        assert!((0..50).all(|a| c.delay(a + 1) >= c.delay(a)));
        assert!((0..50).all(|a| c.delay(a) <= 300));
    }
}
