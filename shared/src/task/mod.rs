//! The worker's logic, on the ports only (never an adapter, the AWS SDK, hyper or kube).
//!
//! Entry modules, one per function: [`run_job`], [`call`], [`cluster_ops`], [`poller`],
//! [`activity`], [`cleanup`], and [`bootstrap`] for the CLI. They never import each
//! other, except the two dispatchers: `activity` runs `run_job` and `call`, `poller`
//! runs `cluster_ops::poll`. The services they share ([`deps`], [`answer`], [`finish`],
//! [`cluster_access`], [`cadence`], [`sealed_state`],
//! [`job`], [`diagnosis`], [`logs`], [`force_delete`], [`retry`], [`telemetry`]) never
//! import an entry module.

pub mod activity;
pub mod answer;
pub mod bootstrap;
pub mod cadence;
pub mod call;
pub mod cleanup;
pub mod cluster_access;
pub mod cluster_ops;
pub mod deps;
pub mod diagnosis;
pub mod finish;
pub mod force_delete;
pub mod job;
pub mod logs;
pub mod poll_chain;
pub mod poller;
pub mod retry;
pub mod run_job;
pub mod sealed_state;
pub mod telemetry;
