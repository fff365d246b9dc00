//! Whole logs to the archive, each container's stream straight from the API server.

use std::sync::Arc;

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
        .map(|(pod, container)| {
            let archive = archive.clone();
            async move {
                let key = location.key(&job.namespace, &job.name, &job.uid, &pod, &container);
                let entry = match archive_one(kube, archive.as_ref(), location, &job.namespace, &pod, &container, &key).await {
                    Ok(bytes) => json!({ "uri": format!("s3://{}/{key}", location.bucket), "bytes": bytes }),
                    Err(e) => {
                        tracing::warn!(pod = %pod, container = %container, error = %e.name, "log not archived");
                        json!({ "error": e.name, "cause": e.cause })
                    }
                };
                Archived { pod, container, entry }
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
) -> Result<u64, TaskError> {
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
    let body = body.map(|chunk| chunk.map_err(TaskError::from)).boxed();
    archive.put(&location.bucket, key, body).await
}
