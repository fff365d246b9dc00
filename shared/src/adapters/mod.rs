//! The adapters: the ports on AWS and Kubernetes. The only code in the crate that names
//! `aws_sdk_*`, `aws_sigv4`, `hyper` or `kube`.

pub mod cluster_connector;
pub mod credentials;
pub mod eks_access;
pub mod eks_directory;
pub mod eks_rest;
pub mod kms_seal;
pub mod kube_client;
pub mod null;
pub mod s3;
pub mod scheduler;
pub mod step_functions;
pub mod token;
