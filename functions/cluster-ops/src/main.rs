//! The cluster-operations Lambda: create and delete EKS clusters, nodegroups and
//! Fargate profiles, request/response or `.sync` (callback).

use lambda_runtime::{service_fn, tracing, Error, LambdaEvent};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing::init_default_subscriber();
    let (deps, _sdk) = shared::wiring::from_env().await?;
    let eks = deps.eks.clone();
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| {
        let (deps, eks) = (&deps, eks.clone());
        async move {
            let deadline = event.context.deadline();
            shared::task::cluster_ops::handle(event.payload, eks.as_ref(), deps, Some(deadline))
                .await
                .map_err(lambda_runtime::Diagnostic::from)
        }
    }))
    .await
}
