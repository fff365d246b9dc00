//! How far apart the worker's heartbeats can be, and the check a state's
//! `HeartbeatSeconds` must pass so that no healthy task times out between two of them.
//!
//! A task hears from the worker at these moments:
//!
//! - while run-job watches its Job inline: every `HEARTBEAT_SECONDS`;
//! - at the hand-off: the last inline heartbeat (or a cluster operation's
//!   [`CLUSTER_FOLLOW_INLINE`] without one), then the curve's first delay, then the
//!   first poll's start and its read before its heartbeat;
//! - between polls: a delay of the curve, then the next poll's start and its read.
//!
//! Each heartbeat may come late by a slow read and its retries ([`Cadence::late`]:
//! every try's connect and read timeouts, the longest `Retry-After` between them) and by
//! a slow `SendTaskHeartbeat` and its retries (every try's [`CALL_TIMEOUT`]). A poll
//! starts up to [`POLL_START`] after its schedule's time. The longest gap is the longest
//! of the three, each with its lateness; a state's `HeartbeatSeconds` must exceed it.

use std::time::Duration;

use serde_json::Value;

use crate::config::Settings;
use crate::contract::migration::{states, MigrationError};
use crate::ports::callback::CALL_TIMEOUT;
use crate::task::retry::{MAX_RETRY_AFTER, TRIES};

/// How long an invocation follows a cluster operation before handing it to the poller
/// (no heartbeat meanwhile).
pub const CLUSTER_FOLLOW_INLINE: Duration = Duration::from_secs(20);

/// From a schedule's time to the poller's handler: EventBridge Scheduler's delivery and
/// a Lambda cold start, a minute at most as this worker counts it.
pub const POLL_START: Duration = Duration::from_secs(60);

/// The heartbeat timings of one deployment's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cadence {
    /// `HEARTBEAT_SECONDS`: between two heartbeats of an inline watch.
    pub every: Duration,
    /// The poll curve's first delay (after the hand-off).
    pub first_delay: Duration,
    /// The poll curve's longest delay.
    pub longest_delay: Duration,
    /// How late one heartbeat can be: a slow read and its retries, then a slow
    /// `SendTaskHeartbeat` and its retries.
    pub late: Duration,
    /// `POLL_MIN_SECONDS`: the shortest delay a curve may hold.
    pub poll_min: u64,
}

/// A state's `HeartbeatSeconds` that the worker's heartbeats cannot be relied on to
/// meet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "HeartbeatSeconds {heartbeat_seconds} is not longer than the longest gap between the worker's heartbeats, {gap} s with these settings (docs/migration.md, \"Heartbeats\"): give {gap_plus_one} or more, or no HeartbeatSeconds{advice}",
    gap = gap.as_secs(),
    gap_plus_one = gap.as_secs() + 1,
    advice = match largest_delay {
        Some(d) => format!(", or a POLL_CURVE_SECONDS whose delays are at most {d} s"),
        None => " (no poll curve meets it with these timeouts)".to_owned(),
    }
)]
pub struct HeartbeatTooShort {
    /// The state's `HeartbeatSeconds`.
    pub heartbeat_seconds: u64,
    /// The longest gap between two heartbeats.
    pub gap: Duration,
    /// The longest delay a poll curve may hold for this `HeartbeatSeconds`
    /// ([`Cadence::largest_delay`]).
    pub largest_delay: Option<u64>,
}

impl Cadence {
    /// The cadence of `settings`.
    #[must_use]
    pub fn of(settings: &Settings) -> Self {
        let delays = settings.poll_curve.delays();
        let tries = TRIES;
        let read = (settings.timeouts.connect + settings.timeouts.read) * tries
            + MAX_RETRY_AFTER * (tries - 1);
        let send = CALL_TIMEOUT * tries + MAX_RETRY_AFTER * (tries - 1);
        Self {
            every: settings.heartbeat,
            first_delay: Duration::from_secs(delays.first().copied().unwrap_or_default()),
            longest_delay: Duration::from_secs(delays.iter().copied().max().unwrap_or_default()),
            late: read + send,
            poll_min: settings.poll_min_seconds,
        }
    }

    /// This cadence with a payload's own poll curve (`PollCurveSeconds`) in place of
    /// the deployment's.
    #[must_use]
    pub fn with_curve(self, delays: &[u64]) -> Self {
        Self {
            first_delay: Duration::from_secs(delays.first().copied().unwrap_or_default()),
            longest_delay: Duration::from_secs(delays.iter().copied().max().unwrap_or_default()),
            ..self
        }
    }

    /// The longest gap between two heartbeats of one task.
    #[must_use]
    pub fn longest_gap(&self) -> Duration {
        let inline = self.every;
        let hand_off = self.every.max(CLUSTER_FOLLOW_INLINE) + self.first_delay + POLL_START;
        let polling = self.longest_delay + POLL_START;
        inline.max(hand_off).max(polling) + self.late
    }

    /// The longest delay a poll curve may hold (its first one included) so that
    /// heartbeats meet `heartbeat_seconds`, all else as it is; `None` when none does.
    #[must_use]
    pub fn largest_delay(&self, heartbeat_seconds: u64) -> Option<u64> {
        let room = Duration::from_secs(heartbeat_seconds).checked_sub(self.late + POLL_START)?;
        let first = room.checked_sub(self.every.max(CLUSTER_FOLLOW_INLINE))?;
        let largest = first.as_secs().saturating_sub(1);
        (largest >= self.poll_min.max(1)
            && Duration::from_secs(heartbeat_seconds) > self.every + self.late)
            .then_some(largest)
    }

    /// Whether a state's `HeartbeatSeconds` is met.
    ///
    /// # Errors
    /// [`HeartbeatTooShort`] when the longest gap is as long or longer.
    pub fn check(&self, heartbeat_seconds: u64) -> Result<(), HeartbeatTooShort> {
        let gap = self.longest_gap();
        if Duration::from_secs(heartbeat_seconds) > gap {
            return Ok(());
        }
        Err(HeartbeatTooShort {
            heartbeat_seconds,
            gap,
            largest_delay: self.largest_delay(heartbeat_seconds),
        })
    }
}

/// The `lambda:invoke.waitForTaskToken` states of a definition (nested ones too) that
/// invoke a function `is_worker` names and whose literal `HeartbeatSeconds` the
/// worker's heartbeats cannot be relied on to meet, each with where it is; a payload's
/// own literal `PollCurveSeconds` counts in place of the deployment's curve. A
/// `HeartbeatSeconds` given as an expression or a path is not checked.
///
/// # Errors
/// [`MigrationError`] for a definition that is not a state machine.
pub fn short_heartbeats(
    definition: &Value,
    cadence: &Cadence,
    mut is_worker: impl FnMut(&str) -> bool,
) -> Result<Vec<(String, HeartbeatTooShort)>, MigrationError> {
    let mut found = Vec::new();
    for at in states(definition)? {
        let Some(state) = definition.pointer(&at.pointer) else {
            continue;
        };
        let waits_for_token = state
            .get("Resource")
            .and_then(Value::as_str)
            .is_some_and(|r| r.ends_with(":states:::lambda:invoke.waitForTaskToken"));
        let function = ["Parameters", "Arguments"]
            .iter()
            .find_map(|k| state.pointer(&format!("/{k}/FunctionName")))
            .and_then(Value::as_str);
        let heartbeat = state.get("HeartbeatSeconds").and_then(Value::as_u64);
        if let (true, Some(function), Some(seconds)) = (waits_for_token, function, heartbeat) {
            if is_worker(function) {
                let curve: Option<Vec<u64>> = ["Parameters", "Arguments"]
                    .iter()
                    .find_map(|k| state.pointer(&format!("/{k}/Payload/PollCurveSeconds")))
                    .and_then(Value::as_array)
                    .and_then(|a| a.iter().map(Value::as_u64).collect());
                let cadence = curve.map_or(*cadence, |c| cadence.with_curve(&c));
                if let Err(e) = cadence.check(seconds) {
                    found.push((at.path, e));
                }
            }
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(env: &[(&str, &str)]) -> Settings {
        Settings::from_lookup(|k| {
            env.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| (*v).to_owned())
        })
        .unwrap_or_else(|e| unreachable!("{e}"))
    }

    /// The defaults: a 300 s delay, a minute to start the poll, a slow read (3 tries of
    /// 5 + 30 s, 10 s between) and a slow heartbeat (3 tries of 8 s, 10 s between).
    #[test]
    fn the_default_gap_is_the_longest_delay_and_its_lateness() {
        let cadence = Cadence::of(&settings(&[]));
        assert_eq!(cadence.late, Duration::from_secs(105 + 20 + 24 + 20));
        assert_eq!(cadence.longest_gap(), Duration::from_secs(300 + 60 + 169));
        assert!(cadence.check(530).is_ok());
        let refused = cadence.check(529).unwrap_err();
        assert_eq!(refused.gap, Duration::from_secs(529));
        assert_eq!(refused.largest_delay, Some(529 - 169 - 60 - 30 - 1));
        assert!(
            refused.to_string().contains("give 530 or more"),
            "{refused}"
        );
    }

    /// A flat curve: the hand-off (the last inline heartbeat, then the first delay) is
    /// the longest gap.
    #[test]
    fn the_hand_off_can_be_the_longest_gap() {
        let cadence = Cadence::of(&settings(&[
            ("POLL_CURVE_SECONDS", "60,60"),
            ("HEARTBEAT_SECONDS", "45"),
        ]));
        assert_eq!(
            cadence.longest_gap(),
            Duration::from_secs(45 + 60 + 60 + 169)
        );
    }

    /// What a given HeartbeatSeconds allows, and a curve within it passes the check.
    #[test]
    fn the_largest_delay_a_heartbeat_allows_passes_the_check() {
        let base = Cadence::of(&settings(&[]));
        let allowed = base.largest_delay(600).unwrap_or_default();
        let curve = format!("{allowed},{allowed}");
        let fitted = Cadence::of(&settings(&[("POLL_CURVE_SECONDS", &curve)]));
        assert!(fitted.check(600).is_ok());
        let over = format!("{},{}", allowed + 1, allowed + 1);
        assert!(Cadence::of(&settings(&[("POLL_CURVE_SECONDS", &over)]))
            .check(600)
            .is_err());
    }

    /// The states of a definition that invoke the worker with a short heartbeat, nested
    /// ones too; other functions, and states without one, are left alone.
    #[test]
    fn a_definitions_short_heartbeats_are_found_where_they_are() {
        let task = |function: &str, heartbeat: Value| {
            serde_json::json!({ "Type": "Task", "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken",
                                "Parameters": { "FunctionName": function, "Payload": {} },
                                "HeartbeatSeconds": heartbeat, "End": true })
        };
        let definition = serde_json::json!({ "StartAt": "A", "States": {
            "A": task("worker-run-job", serde_json::json!(60)),
            "B": task("someone-else", serde_json::json!(60)),
            "C": task("worker-run-job", serde_json::json!(1200)),
            "D": task("worker-run-job", Value::Null),
            "P": { "Type": "Parallel", "End": true, "Branches": [{ "StartAt": "E", "States": {
                "E": { "Type": "Task", "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken",
                       "QueryLanguage": "JSONata", "Arguments": { "FunctionName": "worker-call" },
                       "HeartbeatSeconds": 100, "End": true } } }] } } });
        let found = short_heartbeats(&definition, &Cadence::of(&settings(&[])), |f| {
            f.starts_with("worker-")
        })
        .unwrap_or_else(|e| unreachable!("{e}"));
        let paths: Vec<&str> = found.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(paths, ["States.A", "States.P.Branches[0].States.E"]);
        assert_eq!(found[0].1.heartbeat_seconds, 60);
    }

    /// A payload's own poll curve counts: 1200 s is met with the deployment's curve,
    /// not with a payload's 1800 s delays.
    #[test]
    fn a_payloads_own_curve_counts() {
        let state = |curve: Value| {
            serde_json::json!({ "StartAt": "A", "States": { "A": { "Type": "Task",
                "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken", "HeartbeatSeconds": 1200, "End": true,
                "Parameters": { "FunctionName": "w", "Payload": { "PollCurveSeconds": curve } } } } })
        };
        let cadence = Cadence::of(&settings(&[]));
        let short = |d: &Value| {
            short_heartbeats(d, &cadence, |_| true)
                .unwrap_or_else(|e| unreachable!("{e}"))
                .len()
        };
        assert_eq!(short(&state(serde_json::json!([60, 300]))), 0);
        assert_eq!(short(&state(serde_json::json!([1800]))), 1);
    }

    /// `HeartbeatSeconds: 60` (common in native state machines) cannot be met with the
    /// default timeouts, whatever the curve: the error says so.
    #[test]
    fn sixty_seconds_is_refused_and_says_no_curve_helps() {
        let refused = Cadence::of(&settings(&[])).check(60).unwrap_err();
        assert_eq!(refused.largest_delay, None);
        assert!(
            refused.to_string().contains("no poll curve meets it"),
            "{refused}"
        );
    }
}
