//! What a handler needs, built once per cold start: settings, the cluster connector
//! (EKS directory, bearer tokens, kube clients), the Step Functions callback and the
//! hand-off to the poller. Tests build [`Deps`] from doubles instead.

use std::sync::Arc;

use crate::archive::{LogArchive, S3Archive};
use crate::callback::{StepFunctions, TaskCallback};
use crate::clock::{Clock, SystemClock};
use crate::cluster::{ClusterConnector, Connector, EksDirectory};
use crate::config::Settings;
use crate::credentials::{AwsCredentials, CredentialsError};
use crate::eks_api::{EksApi, EksRest};
use crate::handoff::{HandOff, SchedulerHandOff};
use crate::token::BearerTokens;

/// The ports a handler uses.
#[derive(Clone)]
pub struct Deps {
    /// The deployment's settings.
    pub settings: Settings,
    /// Connects to clusters.
    pub connector: Arc<dyn Connector>,
    /// Answers callback-pattern tasks.
    pub callback: Arc<dyn TaskCallback>,
    /// Hands running Jobs to the poller; `None` where no poller is configured
    /// (`POLLER_ARN`, `SCHEDULER_ROLE_ARN`): a Job must then finish within the invocation.
    pub handoff: Option<Arc<dyn HandOff>>,
    /// The clock.
    pub clock: Arc<dyn Clock>,
    /// The EKS control-plane API (cluster operations, cleanup); `None` in tests that do
    /// not need it.
    pub eks: Option<Arc<dyn EksApi>>,
    /// Where whole logs are archived (S3); `None` in tests that do not need it.
    pub archive: Option<Arc<dyn LogArchive>>,
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
    /// Hands a poll to the poller.
    ///
    /// # Errors
    /// `EksTaskWorker.InternalError` when this deployment has no poller (`POLLER_ARN`,
    /// `SCHEDULER_ROLE_ARN`), else what the hand-off fails with.
    pub async fn hand_off(
        &self,
        poll: &crate::handoff::NextPoll,
    ) -> Result<(), crate::error::TaskError> {
        let handoff = self.handoff.as_ref().ok_or_else(|| {
            crate::error::TaskError::message(
                crate::error::names::INTERNAL,
                "no poller is configured (POLLER_ARN, SCHEDULER_ROLE_ARN)",
            )
        })?;
        handoff.hand_off(poll).await
    }

    /// The real adapters, from the SDK configuration loaded once at cold start.
    ///
    /// # Errors
    /// [`CredentialsError`] when the configuration has no credentials.
    pub fn aws(sdk: &aws_config::SdkConfig, settings: Settings) -> Result<Self, CredentialsError> {
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let credentials = Arc::new(AwsCredentials::new(sdk)?);
        let region = sdk
            .region()
            .map_or_else(|| settings.region.clone(), ToString::to_string);
        let eks = EksRest::new(&region, EksRest::endpoint_from_env(), credentials.clone())
            .ok()
            .map(|e| Arc::new(e) as Arc<dyn EksApi>);
        let tokens = Arc::new(BearerTokens::new(credentials.clone(), clock.clone()));
        let connector = Arc::new(ClusterConnector::new(
            Arc::new(EksDirectory::new(sdk, credentials)),
            tokens,
            settings.region.clone(),
            settings.timeouts,
            settings.trusted_endpoints.clone(),
        ));
        let handoff = settings
            .schedule
            .clone()
            .map(|s| Arc::new(SchedulerHandOff::new(sdk, s, clock.clone())) as Arc<dyn HandOff>);
        Ok(Self {
            settings,
            connector,
            callback: Arc::new(StepFunctions::new(sdk)),
            handoff,
            clock,
            eks,
            archive: Some(Arc::new(S3Archive::new(sdk))),
        })
    }
}
