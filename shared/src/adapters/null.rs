//! The null adapters: what a port is when a deployment lacks the service behind it. A
//! deployment without a poller, an EKS client or a log archive still has the port; using
//! it is a named error, never a missing value to check for.

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use serde_json::{json, Value};

use crate::contract::error::{names, TaskError};
use crate::contract::poll_state::NextPoll;
use crate::ports::archive::LogArchive;
use crate::ports::eks::{EksApi, EksCallError};
use crate::ports::handoff::{HandOff, HandOffError};

/// No poller (`POLLER_ARN`, `SCHEDULER_ROLE_ARN` unset): a Job must finish within its
/// invocation.
#[derive(Debug, Default)]
pub struct NoPoller;

#[async_trait]
impl HandOff for NoPoller {
    async fn hand_off(&self, _poll: &NextPoll) -> Result<(), HandOffError> {
        Err(HandOffError::NoPoller)
    }

    async fn pending_after(
        &self,
        _key: &str,
        _attempt: u32,
    ) -> Result<Vec<(u32, String)>, HandOffError> {
        Err(HandOffError::NoPoller)
    }
}

/// No poll-state key (`POLL_STATE_KEY` unset): nothing is sealed, nothing verifies.
#[derive(Debug, Default)]
pub struct NoSeal;

#[async_trait]
impl crate::ports::seal::PollSeal for NoSeal {
    async fn seal(
        &self,
        _message: &str,
    ) -> Result<crate::contract::seal::Seal, crate::ports::seal::SealError> {
        Err(crate::ports::seal::SealError::NoKey)
    }

    async fn verify(
        &self,
        _message: &str,
        _seal: &crate::contract::seal::Seal,
    ) -> Result<bool, crate::ports::seal::SealError> {
        Err(crate::ports::seal::SealError::NoKey)
    }

    async fn token_key(
        &self,
        _key_id: Option<&str>,
    ) -> Result<Option<Vec<u8>>, crate::ports::seal::SealError> {
        Err(crate::ports::seal::SealError::NoKey)
    }
}

/// No EKS client (it could not be built: `why`). Every call is an
/// `EksTaskWorker.InternalError`, which nothing retries.
#[derive(Debug)]
pub struct NoEks {
    why: String,
}

impl NoEks {
    /// No EKS client, because of `why`.
    #[must_use]
    pub fn new(why: impl Into<String>) -> Self {
        Self { why: why.into() }
    }
}

#[async_trait]
impl EksApi for NoEks {
    async fn call(
        &self,
        _method: http::Method,
        path: &str,
        _body: Option<&Value>,
    ) -> Result<Value, EksCallError> {
        Err(EksCallError::Unreachable(TaskError::new(
            names::INTERNAL,
            json!({ "message": format!("no EKS client: {}", self.why), "path": path }),
        )))
    }
}

/// No log archive: every log sent to it is refused.
#[derive(Debug, Default)]
pub struct NoArchive;

#[async_trait]
impl LogArchive for NoArchive {
    async fn put(
        &self,
        bucket: &str,
        key: &str,
        _body: BoxStream<'static, Result<Bytes, TaskError>>,
    ) -> Result<u64, TaskError> {
        Err(TaskError::new(
            names::LOG_ARCHIVE,
            json!({ "message": "this deployment has no log archive client", "bucket": bucket, "key": key }),
        ))
    }
}
