//! The activity Lambda: run on a schedule, it long-polls the configured Step Functions
//! activities (`ACTIVITIES`) and runs their tasks through run-job and call.

use lambda_runtime::{service_fn, tracing, Error, LambdaEvent};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing::init_default_subscriber();
    let (deps, sdk) = worker::wiring::from_env().await?;
    let source = worker::wiring::activities(&sdk);
    let worker = std::env::var("AWS_LAMBDA_FUNCTION_NAME")
        .unwrap_or_else(|_| "eks-task-worker-activity".into());
    let (deps, source, worker) = (&deps, &source, worker.as_str());
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| {
        let deadline = Some(event.context.deadline());
        // Retries and requests never run past the deadline less the margin kept for the answer.
        deps.bounded(
            deadline,
            worker::task::activity::handle(source, deps, worker, deadline),
        )
    }))
    .await
}
