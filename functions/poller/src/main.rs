//! The poller Lambda: invoked by one-time EventBridge Scheduler schedules to follow
//! Jobs (and cluster operations) that outlived their first invocation.

use lambda_runtime::{service_fn, tracing, Error, LambdaEvent};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing::init_default_subscriber();
    let (deps, _sdk) = worker::wiring::from_env().await?;
    let deps = &deps;
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| {
        // Retries and requests never run past the deadline less the margin kept for the answer.
        deps.bounded(
            Some(event.context.deadline()),
            worker::task::poller::handle(event.payload, deps),
        )
    }))
    .await
}
