//! The ports: one trait per outside system, with the values and errors that cross it.
//! The task logic sees only these; the adapters implement them.

pub mod activities;
pub mod archive;
pub mod callback;
pub mod clock;
pub mod cluster;
pub mod credentials;
pub mod eks;
pub mod executions;
pub mod handoff;
pub mod kube;
pub mod seal;
