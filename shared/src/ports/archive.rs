//! The log archive port: a container's whole log, streamed to durable storage.

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;

use crate::contract::error::TaskError;

/// Somewhere to keep whole logs.
#[async_trait]
pub trait LogArchive: Send + Sync {
    /// Stores `body` as `bucket/key` and returns the bytes stored.
    ///
    /// # Errors
    /// `EksTaskWorker.LogArchiveError` when the store refuses or `body` fails.
    async fn put(
        &self,
        bucket: &str,
        key: &str,
        body: BoxStream<'static, Result<Bytes, TaskError>>,
    ) -> Result<u64, TaskError>;
}
