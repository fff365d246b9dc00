//! eks-task-worker: run AWS Step Functions tasks on Amazon EKS from Lambda, drop-in
//! compatible with the native `eks:runJob`, `eks:runJob.sync` and `eks:call`
//! integrations, plus cluster operations, activities, a poller and a cleanup.
//!
//! The library is in layers; each imports only the layers above it in this list
//! (`tests/layers.rs` fails the build on a wrong-way import):
//!
//! - [`contract`]: the native contract, pure (no IO): payloads, errors, the result
//!   budget, the poll curve, poll states, tags.
//! - [`config`]: the deployment's settings.
//! - [`ports`]: the traits every outside system sits behind, with their value and error
//!   types.
//! - [`adapters`]: the ports' implementations on AWS and Kubernetes; the only code that
//!   names the AWS SDK, SigV4, hyper or kube.
//! - [`task`]: the worker's logic, one entry module per function and the services they
//!   share.
//! - [`wiring`]: the composition root that builds the real adapters (for the mains, the
//!   CLI and tests).

pub mod adapters;
pub mod config;
pub mod contract;
pub mod ports;
pub mod task;
#[cfg(any(test, feature = "test-util"))]
pub mod testing;
pub mod wiring;
