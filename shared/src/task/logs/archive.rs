//! Whole logs to the archive, each container's stream straight from the API server.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;
use serde_json::{json, Value};

use crate::contract::archive_location::ArchiveLocation;
use crate::contract::error::{names, TaskError};
use crate::ports::archive::LogArchive;
use crate::ports::kube::{KubeApi, KubeRequest};
use crate::task::job::JobId;
use crate::task::logs::{self, Archived};

/// Containers archived at once.
const PARALLEL: usize = 2;

/// Streams every container's whole log (the targets the log options select) into
/// the archive. A container that fails gets `{error, cause}` instead; the others go on.
/// The archive never outlasts the invocation: at its deadline
/// ([`clock::work_deadline`](crate::ports::clock::work_deadline)) every log still streaming is
/// ended there, its object kept with what was read, and marked `"complete": false` with
/// the reason, so the answer is still sent in the margin kept for it.
pub async fn archive_logs(
    kube: &dyn KubeApi,
    archive: Arc<dyn LogArchive>,
    location: &ArchiveLocation,
    job: &JobId,
    pods: &[Value],
    options: &crate::contract::payload::LogOptions,
) -> Vec<Archived> {
    let targets = logs::targets(pods, options);
    futures::stream::iter(targets)
        .map(|target| {
            let archive = archive.clone();
            async move {
                let (pod, container) = (&target.pod, &target.container);
                let key = location.key(&job.namespace, &job.name, &job.uid, pod, &target.key_part());
                let entry = match archive_one(kube, archive.as_ref(), location, &job.namespace, pod, container, &key).await {
                    Ok((bytes, false)) => json!({ "uri": format!("s3://{}/{key}", location.bucket), "bytes": bytes }),
                    Ok((bytes, true)) => {
                        tracing::warn!(pod = %pod, container = %container, bytes, "log archive cut at the invocation's deadline");
                        json!({ "uri": format!("s3://{}/{key}", location.bucket), "bytes": bytes, "complete": false, "cause": INCOMPLETE })
                    }
                    Err(e) => {
                        tracing::warn!(pod = %pod, container = %container, error = %e.name, "log not archived");
                        json!({ "error": e.name, "cause": e.cause })
                    }
                };
                Archived { target, entry }
            }
        })
        .buffered(PARALLEL)
        .collect()
        .await
}

async fn archive_one(
    kube: &dyn KubeApi,
    archive: &dyn LogArchive,
    location: &ArchiveLocation,
    namespace: &str,
    pod: &str,
    container: &str,
    key: &str,
) -> Result<(u64, bool), TaskError> {
    let request = KubeRequest::get(format!("/api/v1/namespaces/{namespace}/pods/{pod}/log"))
        .param("container", container);
    let body = match kube.stream(request).await? {
        Ok(body) => body,
        Err(response) => {
            return Err(response
                .ok()
                .err()
                .unwrap_or_else(|| TaskError::message(names::INTERNAL, "unexpected answer")))
        }
    };
    let cut = Arc::new(AtomicBool::new(false));
    let body = until_deadline(
        body.map(|chunk| chunk.map_err(TaskError::from)).boxed(),
        crate::ports::clock::work_deadline(),
        cut.clone(),
    );
    let bytes = archive.put(&location.bucket, key, body).await?;
    Ok((bytes, cut.load(Ordering::SeqCst)))
}

/// Why an archived log is `"complete": false`.
const INCOMPLETE: &str = "the invocation's time ran out while this log was archived: the object holds its beginning, up to `bytes`; the whole log is still in the pod while it exists";

/// `body`, ended at `deadline` (if it has not ended by then), `cut` set when it was.
fn until_deadline(
    body: BoxStream<'static, Result<Bytes, TaskError>>,
    deadline: Option<tokio::time::Instant>,
    cut: Arc<AtomicBool>,
) -> BoxStream<'static, Result<Bytes, TaskError>> {
    let Some(deadline) = deadline else {
        return body;
    };
    body.take_until(async move {
        tokio::time::sleep_until(deadline).await;
        cut.store(true, Ordering::SeqCst);
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_log_still_streaming_at_the_deadline_is_ended_there_and_marked() {
        // One chunk, then a log that never ends (a container still writing, or a slow
        // stream): the archive takes what came before the deadline.
        let endless = futures::stream::iter([Ok(Bytes::from_static(b"first\n"))])
            .chain(futures::stream::pending())
            .boxed();
        let cut = Arc::new(AtomicBool::new(false));
        let took = crate::ports::clock::within_deadline(
            std::time::Duration::from_millis(200),
            std::time::Duration::ZERO,
            async {
                until_deadline(endless, crate::ports::clock::work_deadline(), cut.clone())
                    .collect::<Vec<_>>()
                    .await
            },
        )
        .await;
        assert_eq!(took.len(), 1);
        assert!(cut.load(Ordering::SeqCst), "marked as cut");

        // A log that ends before the deadline is whole and not marked.
        let short = futures::stream::iter([Ok(Bytes::from_static(b"all\n"))]).boxed();
        let cut = Arc::new(AtomicBool::new(false));
        let took = crate::ports::clock::within_deadline(
            std::time::Duration::from_secs(60),
            std::time::Duration::ZERO,
            async {
                until_deadline(short, crate::ports::clock::work_deadline(), cut.clone())
                    .collect::<Vec<_>>()
                    .await
            },
        )
        .await;
        assert_eq!(took.len(), 1);
        assert!(!cut.load(Ordering::SeqCst), "whole");
    }
}
