//! The cluster-operations Lambda: create and delete EKS clusters, nodegroups and
//! Fargate profiles, request/response or `.sync` (callback).

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
    let eks = deps
        .eks
        .clone()
        .ok_or("no EKS client: TLS roots could not be loaded")?;
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| {
        let (deps, eks) = (&deps, eks.clone());
        async move {
            let deadline = event.context.deadline();
            shared::cluster_ops::handle(event.payload, eks.as_ref(), deps, Some(deadline))
                .await
                .map_err(lambda_runtime::Diagnostic::from)
        }
    }))
    .await
}
