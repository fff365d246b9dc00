//! The poller Lambda: invoked by one-time EventBridge Scheduler schedules to follow
//! Jobs that outlived their run-job invocation.

use lambda_runtime::{service_fn, tracing, Error, LambdaEvent};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing::init_default_subscriber();
    let (deps, _sdk) = shared::wiring::from_env().await?;
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| {
        let deps = &deps;
        async move {
            shared::task::poller::handle(event.payload, deps)
                .await
                .map_err(lambda_runtime::Diagnostic::from)
        }
    }))
    .await
}
