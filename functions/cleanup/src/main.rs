//! The cleanup Lambda: on a schedule, deletes the clusters the worker created whose
//! owning execution is gone (`CLEANUP_DRY_RUN` only reports).

use std::time::SystemTime;

use lambda_runtime::{service_fn, tracing, Error, LambdaEvent};
use serde_json::Value;
use worker::task::cleanup::Options;

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing::init_default_subscriber();
    let (deps, sdk) = worker::wiring::from_env().await?;
    let options = Options {
        dry_run: deps.settings.cleanup_dry_run,
        grace: deps.settings.cleanup_grace,
    };
    let executions = worker::wiring::executions(&sdk);
    let (deps, eks, connector, executions) = (
        &deps,
        deps.eks.as_ref(),
        deps.connector.as_ref(),
        executions.as_ref(),
    );
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| {
        // Within the invocation's bounds, as every function: a sweep never runs past
        // the deadline less the margin.
        deps.bounded(
            Some(event.context.deadline()),
            worker::task::cleanup::run(eks, connector, executions, options, SystemTime::now()),
        )
    }))
    .await
}
