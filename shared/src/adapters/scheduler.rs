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
    /// Schedules in `settings.group`, through the SDK configuration loaded at cold start.
    pub fn new(
        config: &aws_config::SdkConfig,
        settings: ScheduleSettings,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            client: aws_sdk_scheduler::Client::new(config),
            settings,
            clock,
        }
    }
}

fn schedule_error(message: String) -> TaskError {
    TaskError::new(names::SCHEDULER, serde_json::json!({ "message": message }))
}

#[async_trait]
impl HandOff for SchedulerHandOff {
    async fn hand_off(&self, poll: &NextPoll) -> Result<(), HandOffError> {
        let input = poll.input.clone();
        if input.chars().count() > MAX_SCHEDULE_INPUT_CHARS {
            return Err(HandOffError::Refused(schedule_error(format!("the poll state is {} characters, over the {MAX_SCHEDULE_INPUT_CHARS} a schedule can carry", input.chars().count()))));
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
                tracing::info!(schedule = %name, "already scheduled by an earlier delivery");
                Ok(())
            }
            Err(e) => {
                let busy = e.as_service_error().is_none_or(|s| {
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
