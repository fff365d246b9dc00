//! eks-task-worker: run AWS Step Functions tasks on Amazon EKS from Lambda, drop-in
//! compatible with the native `eks:runJob`, `eks:runJob.sync` and `eks:call`
//! integrations.
//!
//! One module per concept; every outside system sits behind a small port trait:
//! [`credentials::CredentialSource`], [`cluster::ClusterDirectory`],
//! [`cluster::Connector`], [`kube_api::KubeApi`], [`callback::TaskCallback`],
//! [`handoff::HandOff`], [`archive::LogArchive`] and [`clock::Clock`].

pub mod access;
pub mod activity;
pub mod archive;
pub mod budget;
pub mod call;
pub mod callback;
pub mod cleanup;
pub mod clock;
pub mod cluster;
pub mod cluster_ops;
pub mod config;
pub mod credentials;
pub mod curve;
pub mod deps;
pub mod diagnosis;
pub mod eks_api;
pub mod error;
pub mod handoff;
pub mod input;
pub mod job;
pub mod kube_api;
pub mod logs;
pub mod poller;
pub mod retry;
pub mod run_job;
pub mod telemetry;
pub mod token;
