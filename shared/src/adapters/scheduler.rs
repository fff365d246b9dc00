//! The hand-off to the poller through EventBridge Scheduler: one one-time schedule per
//! poll, deleted after it fires.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_scheduler::types::{
    ActionAfterCompletion, DeadLetterConfig, FlexibleTimeWindow, FlexibleTimeWindowMode,
    RetryPolicy, Target,
};

use crate::config::ScheduleSettings;
use crate::contract::error::{error_chain, names, TaskError};
use crate::contract::poll_state::{
    at_expression, schedule_name, NextPoll, MAX_SCHEDULE_INPUT_CHARS,
};
use crate::ports::clock::Clock;
use crate::ports::handoff::{HandOff, HandOffError};

/// [`HandOff`] through EventBridge Scheduler: a one-time schedule per poll that invokes
/// the poller with the [`PollState`](crate::contract::poll_state::PollState) as input and deletes itself after.
pub struct SchedulerHandOff {
    client: aws_sdk_scheduler::Client,
    settings: ScheduleSettings,
    clock: Arc<dyn Clock>,
}

impl SchedulerHandOff {
    /// Schedules in `settings.group`, through the SDK configuration loaded at cold start,
    /// without the SDK's own retry: the hand-off's
    /// ([`Deps::hand_off`](crate::task::deps::Deps::hand_off)) is the one policy.
    pub fn new(
        config: &aws_config::SdkConfig,
        settings: ScheduleSettings,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let client = aws_sdk_scheduler::Client::from_conf(
            aws_sdk_scheduler::config::Builder::from(config)
                .retry_config(aws_sdk_scheduler::config::retry::RetryConfig::disabled())
                .timeout_config(
                    aws_sdk_scheduler::config::timeout::TimeoutConfig::builder()
                        .operation_timeout(crate::ports::callback::CALL_TIMEOUT)
                        .build(),
                )
                .build(),
        );
        Self::from_client(client, settings, clock)
    }

    /// Schedules in `settings.group` through `client`.
    #[must_use]
    pub fn from_client(
        client: aws_sdk_scheduler::Client,
        settings: ScheduleSettings,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            client,
            settings,
            clock,
        }
    }
}

fn schedule_error(message: String) -> TaskError {
    TaskError::new(names::SCHEDULER, serde_json::json!({ "message": message }))
}

/// What a CreateSchedule found.
enum Created {
    /// The schedule is made.
    Made,
    /// A schedule of that name exists.
    Exists,
}

/// Busy (tried again) when there was no answer, throttling, or any 5xx, whatever its
/// code (`InternalServerException`, or the generic `InternalFailure`); refused otherwise.
fn classify(status: Option<u16>, busy_code: bool, message: String) -> HandOffError {
    let error = schedule_error(message);
    if busy_code || status.is_none_or(|s| s == 429 || s >= 500) {
        HandOffError::Busy(error)
    } else {
        HandOffError::Refused(error)
    }
}

/// Another name for a poll whose own is held by a schedule the worker did not make:
/// deterministic for the poll (a second delivery finds its own schedule there), at
/// most 64 characters.
fn fresh_name(name: &str, input: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(input.as_bytes());
    let short: String = digest.iter().take(4).map(|b| format!("{b:02x}")).collect();
    format!("{}-{short}", &name[..name.len().min(55)])
}

impl SchedulerHandOff {
    async fn create(&self, name: &str, poll: &NextPoll) -> Result<Created, HandOffError> {
        let mut target = Target::builder()
            .arn(&self.settings.poller_arn)
            .role_arn(&self.settings.role_arn)
            .input(poll.input.clone())
            .retry_policy(
                RetryPolicy::builder()
                    .maximum_retry_attempts(self.settings.max_retries)
                    .maximum_event_age_in_seconds(self.settings.max_event_age_seconds)
                    .build(),
            );
        if let Some(dlq) = &self.settings.dead_letter_arn {
            target = target.dead_letter_config(DeadLetterConfig::builder().arn(dlq).build());
        }
        let refused = |e: aws_sdk_scheduler::error::BuildError| {
            HandOffError::Refused(schedule_error(e.to_string()))
        };
        let target = target.build().map_err(refused)?;
        let window = FlexibleTimeWindow::builder()
            .mode(FlexibleTimeWindowMode::Off)
            .build()
            .map_err(refused)?;
        let sent = self
            .client
            .create_schedule()
            .name(name)
            .group_name(&self.settings.group)
            .schedule_expression(at_expression(
                self.clock.now(),
                Duration::from_secs(poll.delay_seconds),
            ))
            .schedule_expression_timezone("UTC")
            .flexible_time_window(window)
            .action_after_completion(ActionAfterCompletion::Delete)
            .target(target)
            .send()
            .await;
        match sent {
            Ok(_) => {
                tracing::info!(schedule = %name, delay = poll.delay_seconds, "next poll scheduled");
                Ok(Created::Made)
            }
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conflict_exception()) =>
            {
                Ok(Created::Exists)
            }
            Err(e) => Err(classify(
                e.raw_response().map(|r| r.status().as_u16()),
                e.as_service_error().is_none_or(|s| {
                    s.is_throttling_exception() || s.is_internal_server_exception()
                }),
                format!("CreateSchedule {name} failed: {}", error_chain(&e)),
            )),
        }
    }

    /// Whether the schedule `name` carries `input` (an earlier delivery of this very
    /// poll made it: its sealed state is the same text), or is gone (it fired).
    async fn holds(&self, name: &str, input: &str) -> Result<bool, HandOffError> {
        let got = self
            .client
            .get_schedule()
            .name(name)
            .group_name(&self.settings.group)
            .send()
            .await;
        match got {
            Ok(s) => Ok(s.target().and_then(|t| t.input()) == Some(input)),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_not_found_exception()) =>
            {
                Ok(true)
            }
            Err(e) => Err(classify(
                e.raw_response().map(|r| r.status().as_u16()),
                e.as_service_error().is_none_or(|s| {
                    s.is_throttling_exception() || s.is_internal_server_exception()
                }),
                format!("GetSchedule {name} failed: {}", error_chain(&e)),
            )),
        }
    }
}

#[async_trait]
impl HandOff for SchedulerHandOff {
    /// One schedule per poll, named after it. A schedule of that name already there is
    /// this poll's when it carries the same (sealed) input: an earlier delivery made it.
    /// Any other was made by someone else to take the poll's place: the poll is then
    /// scheduled under another name (derived from its state) and the squatter reported.
    async fn hand_off(&self, poll: &NextPoll) -> Result<(), HandOffError> {
        let chars = poll.input.chars().count();
        if chars > MAX_SCHEDULE_INPUT_CHARS {
            return Err(HandOffError::Refused(schedule_error(format!(
                "the poll state is {chars} characters, over the {MAX_SCHEDULE_INPUT_CHARS} a \
                schedule can carry"
            ))));
        }
        let name = schedule_name(&poll.key, poll.attempt);
        if let Created::Made = self.create(&name, poll).await? {
            return Ok(());
        }
        if self.holds(&name, &poll.input).await? {
            tracing::info!(schedule = %name, "already scheduled by an earlier delivery");
            return Ok(());
        }
        let fresh = fresh_name(&name, &poll.input);
        tracing::warn!(schedule = %name, instead = %fresh, "a schedule the worker did not make holds this poll's name: the poll is scheduled under another name");
        match self.create(&fresh, poll).await? {
            Created::Made => Ok(()),
            Created::Exists if self.holds(&fresh, &poll.input).await? => Ok(()),
            Created::Exists => Err(HandOffError::Refused(schedule_error(format!(
                "schedules the worker did not make hold both {name} and {fresh}"
            )))),
        }
    }
}

#[cfg(test)]
mod tests {
    //! The adapter against a mocked Scheduler client (`aws-smithy-mocks`): what it sends,
    //! and how each answer is classified.
    use aws_sdk_scheduler::operation::create_schedule::{
        CreateScheduleError, CreateScheduleOutput,
    };
    use aws_sdk_scheduler::operation::get_schedule::GetScheduleOutput;
    use aws_sdk_scheduler::types::error::{
        ConflictException, InternalServerException, ThrottlingException, ValidationException,
    };
    use aws_smithy_mocks::{mock, mock_client, Rule, RuleMode};

    use super::*;
    use crate::testing::ManualClock;

    fn settings() -> ScheduleSettings {
        ScheduleSettings {
            poller_arn: "arn:aws:lambda:us-east-1:123456789012:function:poller".into(),
            role_arn: "arn:aws:iam::123456789012:role/scheduler".into(),
            group: "eks-task-worker".into(),
            max_retries: 2,
            max_event_age_seconds: 3600,
            dead_letter_arn: None,
        }
    }

    fn poll() -> NextPoll {
        NextPoll {
            key: "0f4c2a1e-uid".into(),
            attempt: 3,
            delay_seconds: 120,
            input: "{\"poll\":1}".into(),
        }
    }

    fn handoff(rule: &Rule) -> SchedulerHandOff {
        let client = mock_client!(aws_sdk_scheduler, RuleMode::MatchAny, [rule], |c| c
            .retry_config(aws_sdk_scheduler::config::retry::RetryConfig::disabled()));
        let clock = Arc::new(ManualClock::new(
            std::time::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
        ));
        SchedulerHandOff::from_client(client, settings(), clock)
    }

    #[tokio::test]
    async fn a_poll_becomes_one_self_deleting_schedule_named_after_it() {
        let name = schedule_name("0f4c2a1e-uid", 3);
        let expected = name.clone();
        let rule = mock!(aws_sdk_scheduler::Client::create_schedule)
            .match_requests(move |r| {
                r.name() == Some(expected.as_str())
                    && r.group_name() == Some("eks-task-worker")
                    && r.action_after_completion() == Some(&ActionAfterCompletion::Delete)
                    && r.schedule_expression() == Some("at(2027-01-15T08:02:00)")
                    && r.target().is_some_and(|t| {
                        t.input() == Some("{\"poll\":1}")
                            && t.arn().ends_with(":function:poller")
                            && t.retry_policy().and_then(|p| p.maximum_retry_attempts()) == Some(2)
                    })
            })
            .then_output(|| {
                CreateScheduleOutput::builder()
                    .schedule_arn("arn:aws:scheduler:us-east-1:123456789012:schedule/x")
                    .build()
                    .unwrap_or_else(|e| panic!("{e}"))
            });
        assert_eq!(handoff(&rule).hand_off(&poll()).await, Ok(()));
        assert_eq!(rule.num_calls(), 1, "{name}");
    }

    /// A CreateSchedule answered Conflict for the poll's own name.
    fn conflict_on(name: String) -> Rule {
        mock!(aws_sdk_scheduler::Client::create_schedule)
            .match_requests(move |r| r.name() == Some(name.as_str()))
            .then_error(|| {
                CreateScheduleError::ConflictException(
                    ConflictException::builder()
                        .message("exists")
                        .build()
                        .unwrap_or_else(|e| panic!("{e}")),
                )
            })
    }

    /// A GetSchedule answering a schedule whose target carries `input`.
    fn schedule_with(input: &'static str) -> Rule {
        mock!(aws_sdk_scheduler::Client::get_schedule).then_output(move || {
            GetScheduleOutput::builder()
                .target(
                    Target::builder()
                        .arn("arn:aws:lambda:us-east-1:123456789012:function:poller")
                        .role_arn("arn:aws:iam::123456789012:role/scheduler")
                        .input(input)
                        .build()
                        .unwrap_or_else(|e| panic!("{e}")),
                )
                .build()
        })
    }

    fn handoff_with(rules: &[&Rule]) -> SchedulerHandOff {
        let client = mock_client!(aws_sdk_scheduler, RuleMode::MatchAny, rules, |c| c
            .retry_config(aws_sdk_scheduler::config::retry::RetryConfig::disabled()));
        let clock = Arc::new(ManualClock::new(
            std::time::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
        ));
        SchedulerHandOff::from_client(client, settings(), clock)
    }

    /// The poll's name taken by a schedule with the same input: an earlier delivery of
    /// this poll made it, nothing more is made.
    #[tokio::test]
    async fn a_schedule_an_earlier_delivery_made_is_fine() {
        let conflict = conflict_on(schedule_name("0f4c2a1e-uid", 3));
        let ours = schedule_with("{\"poll\":1}");
        assert_eq!(
            handoff_with(&[&conflict, &ours]).hand_off(&poll()).await,
            Ok(())
        );
        assert_eq!((conflict.num_calls(), ours.num_calls()), (1, 1));
    }

    /// The poll's name taken by a schedule with another input (made ahead by someone
    /// else, to take the poll's place): the poll is scheduled under another name, its
    /// own input unchanged.
    #[tokio::test]
    async fn a_squatted_name_is_not_taken_for_the_poll() {
        let name = schedule_name("0f4c2a1e-uid", 3);
        let conflict = conflict_on(name.clone());
        let theirs = schedule_with("{\"poll\":666}");
        let fresh = fresh_name(&name, "{\"poll\":1}");
        assert!(fresh.len() <= 64 && fresh != name, "{fresh}");
        let expected = fresh.clone();
        let made = mock!(aws_sdk_scheduler::Client::create_schedule)
            .match_requests(move |r| {
                r.name() == Some(expected.as_str())
                    && r.target()
                        .is_some_and(|t| t.input() == Some("{\"poll\":1}"))
            })
            .then_output(|| {
                CreateScheduleOutput::builder()
                    .schedule_arn("arn:aws:scheduler:us-east-1:123456789012:schedule/y")
                    .build()
                    .unwrap_or_else(|e| panic!("{e}"))
            });
        let handoff = handoff_with(&[&conflict, &theirs, &made]);
        assert_eq!(handoff.hand_off(&poll()).await, Ok(()));
        assert_eq!(made.num_calls(), 1, "scheduled as {fresh}");
    }

    #[tokio::test]
    async fn throttling_and_server_errors_are_busy_the_rest_refused() {
        let throttled = mock!(aws_sdk_scheduler::Client::create_schedule).then_error(|| {
            CreateScheduleError::ThrottlingException(
                ThrottlingException::builder()
                    .message("slow down")
                    .build()
                    .unwrap_or_else(|e| panic!("{e}")),
            )
        });
        let failing = mock!(aws_sdk_scheduler::Client::create_schedule).then_error(|| {
            CreateScheduleError::InternalServerException(
                InternalServerException::builder()
                    .message("oops")
                    .build()
                    .unwrap_or_else(|e| panic!("{e}")),
            )
        });
        let invalid = mock!(aws_sdk_scheduler::Client::create_schedule).then_error(|| {
            CreateScheduleError::ValidationException(
                ValidationException::builder()
                    .message("bad target")
                    .build()
                    .unwrap_or_else(|e| panic!("{e}")),
            )
        });
        // A 5xx with the generic AWS code, which the Scheduler model does not name.
        let generic = mock!(aws_sdk_scheduler::Client::create_schedule)
            .sequence()
            .http_status(
                500,
                Some(r#"{"__type":"InternalFailure","message":"injected"}"#.to_owned()),
            )
            .build();
        for (rule, busy) in [
            (&throttled, true),
            (&failing, true),
            (&generic, true),
            (&invalid, false),
        ] {
            let e = handoff(rule).hand_off(&poll()).await;
            match e {
                Err(HandOffError::Busy(e)) if busy => assert_eq!(e.name, names::SCHEDULER),
                Err(HandOffError::Refused(e)) if !busy => assert_eq!(e.name, names::SCHEDULER),
                other => panic!("busy {busy}: {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn a_state_too_big_for_a_schedule_is_refused_unsent() {
        let rule = mock!(aws_sdk_scheduler::Client::create_schedule).then_output(|| {
            CreateScheduleOutput::builder()
                .schedule_arn("arn")
                .build()
                .unwrap_or_else(|e| panic!("{e}"))
        });
        let mut big = poll();
        big.input = "x".repeat(MAX_SCHEDULE_INPUT_CHARS + 1);
        assert!(matches!(
            handoff(&rule).hand_off(&big).await,
            Err(HandOffError::Refused(_))
        ));
        assert_eq!(rule.num_calls(), 0);
    }
}
