//! The cluster-operations Lambda: create and delete EKS clusters, nodegroups and
//! Fargate profiles, request/response or `.sync` (callback).

use lambda_runtime::{service_fn, tracing, Error, LambdaEvent};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing::init_default_subscriber();
    let (deps, _sdk) = worker::wiring::from_env().await?;
    let deps = &deps;
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| {
        let deadline = Some(event.context.deadline());
        // Retries and requests never run past the deadline less the margin kept for the answer.
        deps.bounded(
            deadline,
            worker::task::cluster_ops::handle(event.payload, deps, deadline),
        )
    }))
    .await
}
