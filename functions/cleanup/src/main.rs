//! The cleanup Lambda: on a schedule, deletes the clusters the worker created whose
//! owning execution is gone (`CLEANUP_DRY_RUN` only reports).

use std::time::SystemTime;

use lambda_runtime::{service_fn, tracing, Error, LambdaEvent};
use serde_json::Value;
use shared::task::cleanup::Options;

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing::init_default_subscriber();
    let (deps, sdk) = shared::wiring::from_env().await?;
    let options = Options {
        dry_run: deps.settings.cleanup_dry_run,
        grace: deps.settings.cleanup_grace,
    };
    let eks = deps.eks.clone();
    let sfn = aws_sdk_sfn::Client::new(&sdk);
    lambda_runtime::run(service_fn(|_event: LambdaEvent<Value>| {
        let (eks, sfn) = (eks.clone(), &sfn);
        async move {
            shared::task::cleanup::run(eks.as_ref(), sfn, options, SystemTime::now())
                .await
                .map_err(lambda_runtime::Diagnostic::from)
        }
    }))
    .await
}
