//! The native contract: what a state machine sends and gets back. Pure: no async code
//! and no IO crates; nothing here imports another layer of the crate.

pub mod archive_location;
pub mod budget;
pub mod certificates;
pub mod cluster_op;
pub mod curve;
pub mod error;
pub mod migration;
pub mod payload;
pub mod poll_state;
pub mod seal;
pub mod stuck_policy;
pub mod tags;
pub mod time;
