//! The composition root of the functions: the one place that builds the real adapters
//! (AWS SDK clients, the EKS REST client, the cluster connector, the Scheduler hand-off,
//! the S3 archive, activities and executions) and puts them in a [`Deps`]. The task
//! logic never builds an adapter; the functions' mains only call this and hand the
//! result to a handler. The Lambda boundary's error conversion lives here too. (The CLI
//! builds the few clients its commands need itself.)

use std::sync::Arc;

use crate::adapters::cluster_connector::ClusterConnector;
use crate::adapters::credentials::AwsCredentials;
use crate::adapters::eks_directory::EksDirectory;
use crate::adapters::eks_rest::EksRest;
use crate::adapters::null::{NoEks, NoPoller};
use crate::adapters::s3::S3Archive;
use crate::adapters::scheduler::SchedulerHandOff;
use crate::adapters::step_functions::activities::StepFunctionsActivities;
use crate::adapters::step_functions::StepFunctions;
use crate::adapters::token::BearerTokens;
use crate::config::Settings;
use crate::contract::error::TaskError;
use crate::ports::clock::{Clock, SystemClock};
use crate::ports::credentials::CredentialsError;
use crate::ports::eks::EksApi;
use crate::ports::executions::Executions;
use crate::ports::handoff::HandOff;
use crate::task::deps::Deps;

/// The Step Functions activities the activity function polls.
#[must_use]
pub fn activities(sdk: &aws_config::SdkConfig) -> StepFunctionsActivities {
    StepFunctionsActivities::new(sdk)
}

/// Step Functions executions, which the cleanup function asks whether they still run.
#[must_use]
pub fn executions(sdk: &aws_config::SdkConfig) -> Arc<dyn Executions> {
    Arc::new(aws_sdk_sfn::Client::new(sdk))
}

impl From<TaskError> for lambda_runtime::Diagnostic {
    fn from(e: TaskError) -> Self {
        let error_message = e.cause_string();
        lambda_runtime::Diagnostic {
            error_type: e.name,
            error_message,
        }
    }
}

/// What a function's `main` builds once per cold start: the deployment's settings read
/// from the environment, the SDK configuration, and the real adapters.
///
/// # Errors
/// A malformed setting, or no credentials.
pub async fn from_env(
) -> Result<(Deps, aws_config::SdkConfig), Box<dyn std::error::Error + Send + Sync>> {
    let settings = Settings::from_env()?;
    let sdk = aws_config::load_from_env().await;
    let deps = Deps::aws(&sdk, settings)?;
    Ok((deps, sdk))
}

impl Deps {
    /// The real adapters, from the SDK configuration loaded once at cold start.
    ///
    /// # Errors
    /// [`CredentialsError`] when the configuration has no credentials.
    pub fn aws(sdk: &aws_config::SdkConfig, settings: Settings) -> Result<Self, CredentialsError> {
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let credentials = Arc::new(
            AwsCredentials::new(sdk)?.with_external_id(settings.assume_role_external_id.clone()),
        );
        let region = sdk
            .region()
            .map_or_else(|| settings.region.clone(), ToString::to_string);
        let eks: Arc<dyn EksApi> = match EksRest::endpoint_from_env()
            .map(Ok)
            .unwrap_or_else(|| {
                EksRest::sdk_endpoint(
                    &region,
                    sdk.use_fips().unwrap_or(false),
                    sdk.use_dual_stack().unwrap_or(false),
                )
            })
            .and_then(|e| EksRest::new(&region, Some(e), credentials.clone()))
        {
            Ok(e) => Arc::new(e),
            Err(e) => Arc::new(NoEks::new(e.to_string())),
        };
        let tokens = Arc::new(BearerTokens::new(
            credentials.clone(),
            clock.clone(),
            settings.token_renew_after,
        ));
        let connector = Arc::new(ClusterConnector::new(
            Arc::new(EksDirectory::new(sdk, credentials)),
            tokens,
            settings.region.clone(),
            settings.timeouts,
            settings.trusted_endpoints.clone(),
        ));
        let settings_keys = settings.poll_state_keys.clone();
        let handoff: Arc<dyn HandOff> = match settings.schedule.clone() {
            Some(s) => Arc::new(SchedulerHandOff::new(sdk, s, clock.clone())),
            None => Arc::new(NoPoller),
        };
        Ok(Self {
            settings,
            connector,
            callback: Arc::new(StepFunctions::new(sdk)),
            handoff,
            clock,
            eks,
            archive: Arc::new(S3Archive::new(sdk)),
            seal: if settings_keys.is_empty() {
                Arc::new(crate::adapters::null::NoSeal)
            } else {
                Arc::new(crate::adapters::kms_seal::KmsSeal::new(sdk, settings_keys))
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::error::names;
    use serde_json::Value;

    #[test]
    fn diagnostic_carries_name_and_json_cause() {
        let d: lambda_runtime::Diagnostic =
            TaskError::invalid_input("ClusterName", "is required").into();
        assert_eq!(d.error_type, names::INVALID_INPUT);
        let cause: Value = serde_json::from_str(&d.error_message).unwrap_or_default();
        assert_eq!(cause["field"], "ClusterName");
    }
}
