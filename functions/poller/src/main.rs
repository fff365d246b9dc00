//! The poller Lambda: invoked by one-time EventBridge Scheduler schedules to follow
//! Jobs that outlived their run-job invocation.

use lambda_runtime::{service_fn, tracing, Error, LambdaEvent};
use serde_json::Value;
use shared::config::Settings;
use shared::deps::Deps;

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing::init_default_subscriber();
    let settings = Settings::from_env()?;
    let sdk = aws_config::load_from_env().await;
    let deps = Deps::aws(&sdk, settings)?;
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| {
        let deps = &deps;
        async move {
            shared::poller::handle(event.payload, deps)
                .await
                .map_err(lambda_runtime::Diagnostic::from)
        }
    }))
    .await
}
