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

impl SchedulerHandOff {
    /// What is at a taken name: its input, or busy when it cannot be read (tried again:
    /// a schedule that fired and deleted itself meanwhile leaves the name free).
    async fn taken(&self, name: &str) -> HandOffError {
        match self
            .client
            .get_schedule()
            .name(name)
            .group_name(&self.settings.group)
            .send()
            .await
        {
            Ok(s) => HandOffError::Taken(
                s.target()
                    .and_then(|t| t.input())
                    .unwrap_or_default()
                    .to_owned(),
            ),
            Err(e) => HandOffError::Busy(schedule_error(format!(
                "CreateSchedule {name} met a schedule of that name, which GetSchedule could not \
                read: {}",
                error_chain(&e)
            ))),
        }
    }
}

fn schedule_error(message: String) -> TaskError {
    TaskError::new(names::SCHEDULER, serde_json::json!({ "message": message }))
}

/// A failed list of the poll group: refused when the service said no, busy otherwise
/// (no answer).
fn list_error<E, R>(what: &str, e: &aws_sdk_scheduler::error::SdkError<E, R>) -> HandOffError
where
    E: std::error::Error + 'static,
    R: std::fmt::Debug + 'static,
{
    let error = schedule_error(format!("{what}: {}", error_chain(e)));
    match e {
        aws_sdk_scheduler::error::SdkError::ServiceError(_) => HandOffError::Refused(error),
        _ => HandOffError::Busy(error),
    }
}

#[async_trait]
impl HandOff for SchedulerHandOff {
    async fn pending_after(
        &self,
        key: &str,
        attempt: u32,
    ) -> Result<Vec<(u32, String)>, HandOffError> {
        use crate::contract::poll_state::{attempt_of, schedule_prefix, MAX_POLL_ATTEMPTS};
        let prefix = schedule_prefix(key);
        let mut pages = self
            .client
            .list_schedules()
            .group_name(&self.settings.group)
            .name_prefix(&prefix)
            .into_paginator()
            .send();
        let mut names = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| list_error(&format!("ListSchedules {prefix}"), &e))?;
            names.extend(page.schedules().iter().filter_map(|s| {
                let name = s.name()?;
                let at = attempt_of(name).filter(|a| *a > attempt && *a <= MAX_POLL_ATTEMPTS)?;
                Some((at, name.to_owned()))
            }));
        }
        names.sort_unstable_by(|a, b| b.cmp(a));
        let mut pending = Vec::new();
        for (at, name) in names.into_iter().take(crate::ports::handoff::PENDING_READ) {
            match self
                .client
                .get_schedule()
                .name(&name)
                .group_name(&self.settings.group)
                .send()
                .await
            {
                Ok(s) => pending.extend(
                    s.target()
                        .and_then(|t| t.input())
                        .map(|input| (at, input.to_owned())),
                ),
                // Fired and deleted since it was listed, or unreadable for now: left out.
                Err(e) => {
                    tracing::info!(schedule = %name, error = %error_chain(&e), "a waiting poll could not be read")
                }
            }
        }
        Ok(pending)
    }

    async fn hand_off(&self, poll: &NextPoll) -> Result<(), HandOffError> {
        let input = poll.input.clone();
        if input.chars().count() > MAX_SCHEDULE_INPUT_CHARS {
            return Err(HandOffError::Refused(schedule_error(format!(
                "the poll state is {} characters, over the {MAX_SCHEDULE_INPUT_CHARS} a schedule \
                can carry",
                input.chars().count()
            ))));
        }
        let name = schedule_name(&poll.key, poll.attempt);
        let mut target = Target::builder()
            .arn(&self.settings.poller_arn)
            .role_arn(&self.settings.role_arn)
            .input(input)
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
            .name(&name)
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
                Ok(())
            }
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conflict_exception()) =>
            {
                Err(self.taken(&name).await)
            }
            Err(e) => {
                // Busy (tried again): no answer, throttled, or any 5xx, whatever its
                // code (`InternalServerException`, or the generic `InternalFailure`).
                let status = e.raw_response().map(|r| r.status().as_u16());
                let busy = status.is_some_and(|s| s == 429 || s >= 500)
                    || e.as_service_error().is_none_or(|s| {
                        s.is_throttling_exception() || s.is_internal_server_exception()
                    });
                let error =
                    schedule_error(format!("CreateSchedule {name} failed: {}", error_chain(&e)));
                Err(if busy {
                    HandOffError::Busy(error)
                } else {
                    HandOffError::Refused(error)
                })
            }
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

    /// A name already taken is read back (whose it is, the hand-off decides); one that
    /// cannot be read is busy, so that the hand-off is tried again.
    #[tokio::test]
    async fn a_taken_name_is_read_back() {
        let conflict = || {
            mock!(aws_sdk_scheduler::Client::create_schedule).then_error(|| {
                CreateScheduleError::ConflictException(
                    ConflictException::builder()
                        .message("exists")
                        .build()
                        .unwrap_or_else(|e| panic!("{e}")),
                )
            })
        };
        let there = mock!(aws_sdk_scheduler::Client::get_schedule)
            .match_requests(|r| {
                r.name() == Some(schedule_name("0f4c2a1e-uid", 3).as_str())
                    && r.group_name() == Some("eks-task-worker")
            })
            .then_output(|| {
                aws_sdk_scheduler::operation::get_schedule::GetScheduleOutput::builder()
                    .target(
                        Target::builder()
                            .arn("arn:aws:lambda:us-east-1:123456789012:function:poller")
                            .role_arn("arn:aws:iam::123456789012:role/scheduler")
                            .input("{\"theirs\":1}")
                            .build()
                            .unwrap_or_else(|e| panic!("{e}")),
                    )
                    .build()
            });
        let clock = || {
            Arc::new(ManualClock::new(
                std::time::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
            ))
        };
        let (create, get) = (conflict(), there);
        let client = mock_client!(
            aws_sdk_scheduler,
            RuleMode::MatchAny,
            [&create, &get],
            |c| c.retry_config(aws_sdk_scheduler::config::retry::RetryConfig::disabled())
        );
        let h = SchedulerHandOff::from_client(client, settings(), clock());
        assert_eq!(
            h.hand_off(&poll()).await,
            Err(HandOffError::Taken("{\"theirs\":1}".into()))
        );
        let gone = mock!(aws_sdk_scheduler::Client::get_schedule).then_error(|| {
            aws_sdk_scheduler::operation::get_schedule::GetScheduleError::ResourceNotFoundException(
                aws_sdk_scheduler::types::error::ResourceNotFoundException::builder()
                    .message("fired")
                    .build()
                    .unwrap_or_else(|e| panic!("{e}")),
            )
        });
        let create = conflict();
        let client = mock_client!(
            aws_sdk_scheduler,
            RuleMode::MatchAny,
            [&create, &gone],
            |c| c.retry_config(aws_sdk_scheduler::config::retry::RetryConfig::disabled())
        );
        let h = SchedulerHandOff::from_client(client, settings(), clock());
        assert!(matches!(
            h.hand_off(&poll()).await,
            Err(HandOffError::Busy(_))
        ));
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
