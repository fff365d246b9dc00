//! What the task logic works with: the deployment's settings and one of each port.

use std::sync::Arc;

use crate::config::Settings;
use crate::ports::archive::LogArchive;
use crate::ports::callback::TaskCallback;
use crate::ports::clock::Clock;
use crate::ports::cluster::Connector;
use crate::ports::eks::EksApi;
use crate::ports::handoff::{HandOff, HandOffError};
use crate::ports::seal::{PollSeal, SealError};

/// The ports a handler uses.
#[derive(Clone)]
pub struct Deps {
    /// The deployment's settings.
    pub settings: Settings,
    /// Connects to clusters.
    pub connector: Arc<dyn Connector>,
    /// Answers callback-pattern tasks.
    pub callback: Arc<dyn TaskCallback>,
    /// Hands running Jobs to the poller (where no poller is configured, a null adapter
    /// that refuses: a Job must then finish within the invocation).
    pub handoff: Arc<dyn HandOff>,
    /// The clock.
    pub clock: Arc<dyn Clock>,
    /// The EKS control-plane API (cluster operations, cleanup).
    pub eks: Arc<dyn EksApi>,
    /// Where whole logs are archived (S3).
    pub archive: Arc<dyn LogArchive>,
    /// Seals the poll states handed to the poller, and checks the poller's input.
    pub seal: Arc<dyn PollSeal>,
}

impl Deps {
    /// Runs `work`, an invocation with the Lambda `deadline`, within its bounds
    /// ([`clock::within_deadline`](crate::ports::clock::within_deadline)): its work done
    /// by the deadline less the margin (`LAMBDA_TIME_MARGIN_SECONDS`), its last acts
    /// allowed half the margin more, no request past that; its log lines in the
    /// invocation's span ([`telemetry::invocation_span`](crate::task::telemetry::invocation_span)).
    pub async fn bounded<T>(
        &self,
        deadline: Option<std::time::SystemTime>,
        work: impl std::future::Future<Output = T>,
    ) -> T {
        use tracing::Instrument;
        crate::ports::clock::within_deadline(
            self.time_left(deadline),
            self.settings.lambda_margin / 2,
            work,
        )
        .instrument(crate::task::telemetry::invocation_span(
            &self.settings.function_name,
        ))
        .await
    }

    /// How long an invocation may still work: until its deadline less the margin
    /// (unbounded without a deadline).
    #[must_use]
    pub fn time_left(&self, deadline: Option<std::time::SystemTime>) -> std::time::Duration {
        deadline.map_or(std::time::Duration::MAX, |d| {
            d.duration_since(self.clock.now())
                .unwrap_or_default()
                .saturating_sub(self.settings.lambda_margin)
        })
    }

    /// Hands a poll to the poller, its state sealed ([`crate::contract::seal`]), trying
    /// again (four tries in all, pausing 0.2 s, then twice as long each time, jittered) while the
    /// key service or the scheduler is busy: a last act, its retries allowed into half
    /// the margin ([`clock::last_act`](crate::ports::clock::last_act)).
    ///
    /// # Errors
    /// What the last try failed with ([`HandOffError::NoPoller`] when this deployment
    /// has no poller; `EksTaskWorker.PollStateKeyError` when the state cannot be
    /// sealed).
    pub async fn hand_off(
        &self,
        poll: &crate::contract::poll_state::NextPoll,
    ) -> Result<(), HandOffError> {
        use crate::contract::error::{names, TaskError};
        let key_error = |m: String| TaskError::message(names::POLL_STATE_KEY, m);
        let state: serde_json::Value = serde_json::from_str(&poll.input)
            .map_err(|e| HandOffError::Refused(key_error(format!("the poll state: {e}"))))?;
        let busy = |e: &HandOffError| matches!(e, HandOffError::Busy(_));
        let policy = crate::task::retry::Policy {
            tries: 4,
            first_pause: std::time::Duration::from_millis(200),
        };
        crate::ports::clock::last_act(crate::task::retry::retry(
            "handing off the poll",
            policy,
            busy,
            |_| None,
            || async {
                let (input, made) = crate::task::sealed_state::seal(self.seal.as_ref(), &state)
                    .await
                    .map_err(|e| match e {
                        SealError::Busy(m) => HandOffError::Busy(key_error(m)),
                        SealError::NoKey => HandOffError::Refused(key_error(
                            "no poll-state key is configured (POLL_STATE_KEY): nothing can be \
                             handed to the poller"
                                .into(),
                        )),
                        SealError::Refused(m) => HandOffError::Refused(key_error(m)),
                    })?;
                let sealed = crate::contract::poll_state::NextPoll {
                    input,
                    ..poll.clone()
                };
                match self.handoff.hand_off(&sealed).await {
                    Err(HandOffError::Taken(there)) => {
                        self.name_taken(&sealed, &state, &made, &there).await
                    }
                    done => done,
                }
            },
        ))
        .await
    }

    /// The next poll's schedule name is taken. By this poll itself (an earlier or a
    /// concurrent delivery's hand-off: the schedule's input is sealed by the
    /// deployment's key, for the same task and attempt), that is fine. By anything else
    /// (a schedule made ahead under the name the next poll would take), the poll is
    /// scheduled under a fresh name instead, and the squat logged. The fresh name's
    /// suffix comes from the state's seal: no one without the key can know it before
    /// the state is sealed, and every delivery of the same poll takes the same one (so
    /// two that meet the squat still make one schedule, the second finding it its own).
    async fn name_taken(
        &self,
        poll: &crate::contract::poll_state::NextPoll,
        state: &serde_json::Value,
        made: &crate::contract::seal::Seal,
        there: &str,
    ) -> Result<(), HandOffError> {
        use crate::contract::error::{names, TaskError};
        use sha2::Digest;
        if self.own_poll(there, state).await? {
            tracing::info!(key = %poll.key, attempt = poll.attempt, "already scheduled by an earlier delivery");
            return Ok(());
        }
        let suffix = sha2::Sha256::digest(made.mac.as_bytes());
        let fresh = crate::contract::poll_state::NextPoll {
            key: format!(
                "{}-{}",
                poll.key,
                suffix
                    .iter()
                    .take(4)
                    .map(|b| format!("{b:02x}"))
                    .collect::<String>()
            ),
            ..poll.clone()
        };
        tracing::warn!(
            key = %poll.key,
            attempt = poll.attempt,
            fresh = %fresh.key,
            "the next poll's schedule name was taken by a schedule the worker did not write: \
            scheduled under a fresh name"
        );
        match self.handoff.hand_off(&fresh).await {
            Err(HandOffError::Taken(there)) if self.own_poll(&there, state).await? => Ok(()),
            Err(HandOffError::Taken(_)) => Err(HandOffError::Refused(TaskError::message(
                names::SCHEDULER,
                format!("the fresh schedule name of key {} was taken too", fresh.key),
            ))),
            done => done,
        }
    }

    /// Whether `there` (a taken schedule's input) is the poll `state` itself: sealed by
    /// the deployment's key, for the same task token and attempt.
    async fn own_poll(&self, there: &str, state: &serde_json::Value) -> Result<bool, HandOffError> {
        use crate::contract::error::{names, TaskError};
        let Ok(value) = serde_json::from_str::<serde_json::Value>(there) else {
            return Ok(false);
        };
        let key_error = |m: String| TaskError::message(names::POLL_STATE_KEY, m);
        let theirs = match crate::task::sealed_state::open(self.seal.as_ref(), &value).await {
            Ok(Ok(theirs)) => theirs,
            Ok(Err(_)) => return Ok(false),
            Err(SealError::Busy(m)) => return Err(HandOffError::Busy(key_error(m))),
            Err(e) => return Err(HandOffError::Refused(key_error(e.to_string()))),
        };
        Ok(["TaskToken", "Attempt"]
            .iter()
            .all(|k| theirs.get(*k).is_some() && theirs.get(*k) == state.get(*k)))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::contract::error::{names, TaskError};
    use crate::contract::poll_state::NextPoll;
    use crate::testing::{NoCluster, RecordingCallback, RecordingHandOff};

    fn poll() -> NextPoll {
        NextPoll {
            key: "uid".into(),
            attempt: 1,
            delay_seconds: 60,
            input: "{}".into(),
        }
    }

    fn deps(handoff: &Arc<RecordingHandOff>) -> Deps {
        let mut deps = Deps::test(
            Arc::new(NoCluster::default()),
            Arc::new(RecordingCallback::default()),
        );
        deps.handoff = handoff.clone();
        deps
    }

    #[tokio::test(start_paused = true)]
    async fn a_busy_scheduler_is_tried_again_and_a_refusal_is_not() {
        let busy = || HandOffError::Busy(TaskError::message(names::SCHEDULER, "throttled"));
        let handoff = Arc::new(RecordingHandOff::answering(vec![
            Err(busy()),
            Err(busy()),
            Ok(()),
        ]));
        let started = tokio::time::Instant::now();
        assert_eq!(deps(&handoff).hand_off(&poll()).await, Ok(()));
        assert_eq!(handoff.polls().len(), 3);
        // 0.2 s, then 0.4 s, each jittered to between half and all of it.
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(300) && took <= Duration::from_millis(600),
            "{took:?}"
        );

        let handoff = Arc::new(RecordingHandOff::answering(vec![Err(busy())]));
        assert_eq!(deps(&handoff).hand_off(&poll()).await, Err(busy()));
        assert_eq!(handoff.polls().len(), 4, "four tries in all");

        let refused = HandOffError::Refused(TaskError::message(names::SCHEDULER, "invalid"));
        let handoff = Arc::new(RecordingHandOff::answering(vec![Err(refused.clone())]));
        assert_eq!(deps(&handoff).hand_off(&poll()).await, Err(refused));
        assert_eq!(handoff.polls().len(), 1);
    }

    /// A taken schedule name: the poll's own schedule (sealed by the deployment, same
    /// task and attempt) is fine; anything else, a squat, sends the poll under a fresh
    /// name once.
    #[tokio::test]
    async fn a_taken_name_is_fine_only_when_it_holds_this_poll() {
        let state = |attempt: u32| NextPoll {
            input: serde_json::json!({ "TaskToken": "t", "Attempt": attempt, "JobName": "j" })
                .to_string(),
            ..poll()
        };
        let sealed = |attempt: u32| async move {
            let recorded = Arc::new(RecordingHandOff::answering(vec![Ok(())]));
            assert_eq!(deps(&recorded).hand_off(&state(attempt)).await, Ok(()));
            recorded.polls().pop().map(|p| p.input).unwrap_or_default()
        };
        let own = sealed(1).await;
        let handoff = Arc::new(RecordingHandOff::answering(vec![
            Err(HandOffError::Taken(own.clone())),
            Ok(()),
        ]));
        assert_eq!(deps(&handoff).hand_off(&state(1)).await, Ok(()));
        assert_eq!(handoff.polls().len(), 1, "its own: nothing more");

        let mut forged: serde_json::Value =
            serde_json::from_str(&own).unwrap_or_else(|e| panic!("{e}"));
        forged["JobName"] = serde_json::json!("theirs");
        for squat in [
            "{\"theirs\":1}".to_owned(),
            String::new(),
            forged.to_string(),
            sealed(0).await,
        ] {
            let handoff = Arc::new(RecordingHandOff::answering(vec![
                Err(HandOffError::Taken(squat.clone())),
                Ok(()),
            ]));
            assert_eq!(deps(&handoff).hand_off(&state(1)).await, Ok(()), "{squat}");
            let polls = handoff.polls();
            assert_eq!(polls.len(), 2, "{squat}");
            assert_eq!(polls[1].input, polls[0].input);
            let fresh = polls[1].key.strip_prefix("uid-").unwrap_or_default();
            assert!(
                fresh.len() == 8 && fresh.chars().all(|c| c.is_ascii_hexdigit()),
                "{}",
                polls[1].key
            );
        }
        // Two deliveries that meet the squat take the same fresh name; the second finds
        // its own poll there.
        let fresh_key = |answers| async move {
            let handoff = Arc::new(RecordingHandOff::answering(answers));
            let done = deps(&handoff).hand_off(&state(1)).await;
            (
                done,
                handoff
                    .polls()
                    .last()
                    .map(|p| (p.key.clone(), p.input.clone())),
            )
        };
        let squat = || Err(HandOffError::Taken("{}".into()));
        let (done, first) = fresh_key(vec![squat(), Ok(())]).await;
        assert_eq!(done, Ok(()));
        let (key, input) = first.unwrap_or_default();
        let (done, second) = fresh_key(vec![squat(), Err(HandOffError::Taken(input))]).await;
        assert_eq!(
            done,
            Ok(()),
            "the second delivery found its own poll at the fresh name"
        );
        assert_eq!(second.map(|s| s.0), Some(key));
        let handoff = Arc::new(RecordingHandOff::answering(vec![Err(HandOffError::Taken(
            String::new(),
        ))]));
        let e = deps(&handoff).hand_off(&state(1)).await;
        assert!(matches!(e, Err(HandOffError::Refused(_))), "{e:?}");
    }

    #[tokio::test]
    async fn without_a_poller_the_hand_off_says_so() {
        let deps = Deps::test(
            Arc::new(NoCluster::default()),
            Arc::new(RecordingCallback::default()),
        );
        let e = deps.hand_off(&poll()).await;
        assert_eq!(e, Err(HandOffError::NoPoller));
        let e: TaskError = HandOffError::NoPoller.into();
        assert_eq!(e.name, names::INTERNAL);
    }
}
