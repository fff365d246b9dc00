//! The whole log, archived: every container's complete log streamed from the log API
//! into S3 (multipart, part by part), so that nothing is lost when the result keeps only
//! a trimmed tail. Memory stays at about one part whatever the log's size.
//!
//! Objects are `<prefix>/<namespace>/<job>/<job uid>/<pod>/<container>.log`; each one's
//! URI and size go beside the container's log in the result (`archive`).

use std::sync::Arc;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::stream::BoxStream;
use futures::StreamExt;
use serde_json::{json, Value};

use crate::error::{names, TaskError};
use crate::kube_api::{KubeApi, KubeRequest};
use crate::logs;

/// The size of a multipart part (S3 wants at least 5 MiB for all but the last).
pub const PART_BYTES: usize = 8 * 1024 * 1024;
/// Containers archived at once.
const PARALLEL: usize = 2;

/// Where logs are archived: `s3://bucket/prefix`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveLocation {
    /// The bucket.
    pub bucket: String,
    /// The key prefix, without leading or trailing `/` (may be empty).
    pub prefix: String,
}

impl ArchiveLocation {
    /// Parses `s3://bucket[/prefix]`.
    ///
    /// # Errors
    /// What is wrong with it, to go after the field's name.
    pub fn parse(uri: &str) -> Result<Self, String> {
        let rest = uri
            .strip_prefix("s3://")
            .ok_or_else(|| format!("{uri:?} is not an S3 URI: s3://<bucket>/<prefix>"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let valid_bucket = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
            && !bucket.starts_with(['-', '.'])
            && !bucket.ends_with(['-', '.']);
        if !valid_bucket {
            return Err(format!(
                "{bucket:?} is not a bucket name (3 to 63 lowercase letters, digits, '-' and '.')"
            ));
        }
        if prefix.len() > 512 || prefix.chars().any(char::is_control) {
            return Err(
                "the prefix must be at most 512 characters, without control characters".into(),
            );
        }
        Ok(Self {
            bucket: bucket.to_owned(),
            prefix: prefix.trim_matches('/').to_owned(),
        })
    }

    /// The location as a URI.
    #[must_use]
    pub fn uri(&self) -> String {
        if self.prefix.is_empty() {
            format!("s3://{}", self.bucket)
        } else {
            format!("s3://{}/{}", self.bucket, self.prefix)
        }
    }

    /// The key of one container's log.
    #[must_use]
    pub fn key(&self, namespace: &str, job: &str, uid: &str, pod: &str, container: &str) -> String {
        let path = format!("{namespace}/{job}/{uid}/{pod}/{container}.log");
        if self.prefix.is_empty() {
            path
        } else {
            format!("{}/{path}", self.prefix)
        }
    }
}

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

fn archive_error(
    step: &str,
    bucket: &str,
    key: &str,
    message: impl std::fmt::Display,
) -> TaskError {
    TaskError::new(
        names::LOG_ARCHIVE,
        json!({ "message": format!("{step} s3://{bucket}/{key}: {message}"), "bucket": bucket, "key": key }),
    )
}

/// Amazon S3, by multipart upload of [`PART_BYTES`] parts.
pub struct S3Archive {
    client: aws_sdk_s3::Client,
}

impl S3Archive {
    /// From the SDK configuration; path-style addressing when an endpoint is set
    /// (`AWS_ENDPOINT_URL`: S3-compatible stores, moto).
    #[must_use]
    pub fn new(sdk: &aws_config::SdkConfig) -> Self {
        let config = aws_sdk_s3::config::Builder::from(sdk)
            .force_path_style(sdk.endpoint_url().is_some())
            .build();
        Self {
            client: aws_sdk_s3::Client::from_conf(config),
        }
    }

    async fn upload(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        mut body: BoxStream<'static, Result<Bytes, TaskError>>,
    ) -> Result<(u64, Vec<aws_sdk_s3::types::CompletedPart>), TaskError> {
        let mut parts = Vec::new();
        let mut buffer = BytesMut::with_capacity(PART_BYTES);
        let mut total = 0_u64;
        loop {
            let chunk = body.next().await.transpose()?;
            let end = chunk.is_none();
            if let Some(c) = chunk {
                total += c.len() as u64;
                buffer.extend_from_slice(&c);
            }
            while buffer.len() >= PART_BYTES || (end && (!buffer.is_empty() || parts.is_empty())) {
                let take = buffer.len().min(PART_BYTES);
                let part = buffer.split_to(take).freeze();
                let number = i32::try_from(parts.len() + 1).unwrap_or(i32::MAX);
                let sent = self
                    .client
                    .upload_part()
                    .bucket(bucket)
                    .key(key)
                    .upload_id(upload_id)
                    .part_number(number)
                    .body(part.into())
                    .send()
                    .await
                    .map_err(|e| {
                        archive_error(
                            "UploadPart",
                            bucket,
                            key,
                            aws_sdk_s3::error::DisplayErrorContext(e),
                        )
                    })?;
                parts.push(
                    aws_sdk_s3::types::CompletedPart::builder()
                        .part_number(number)
                        .set_e_tag(sent.e_tag)
                        .build(),
                );
                if buffer.is_empty() && end {
                    break;
                }
            }
            if end {
                return Ok((total, parts));
            }
        }
    }
}

#[async_trait]
impl LogArchive for S3Archive {
    async fn put(
        &self,
        bucket: &str,
        key: &str,
        body: BoxStream<'static, Result<Bytes, TaskError>>,
    ) -> Result<u64, TaskError> {
        let created = self
            .client
            .create_multipart_upload()
            .bucket(bucket)
            .key(key)
            .content_type("text/plain; charset=utf-8")
            .send()
            .await
            .map_err(|e| {
                archive_error(
                    "CreateMultipartUpload",
                    bucket,
                    key,
                    aws_sdk_s3::error::DisplayErrorContext(e),
                )
            })?;
        let upload_id = created.upload_id.unwrap_or_default();
        match self.upload(bucket, key, &upload_id, body).await {
            Ok((total, parts)) => {
                self.client
                    .complete_multipart_upload()
                    .bucket(bucket)
                    .key(key)
                    .upload_id(&upload_id)
                    .multipart_upload(
                        aws_sdk_s3::types::CompletedMultipartUpload::builder()
                            .set_parts(Some(parts))
                            .build(),
                    )
                    .send()
                    .await
                    .map_err(|e| {
                        archive_error(
                            "CompleteMultipartUpload",
                            bucket,
                            key,
                            aws_sdk_s3::error::DisplayErrorContext(e),
                        )
                    })?;
                Ok(total)
            }
            Err(e) => {
                // Leave no half upload behind (it would be billed until a lifecycle rule).
                let _ = self
                    .client
                    .abort_multipart_upload()
                    .bucket(bucket)
                    .key(key)
                    .upload_id(&upload_id)
                    .send()
                    .await;
                Err(e)
            }
        }
    }
}

/// One container's archived log: `{uri, bytes}` or `{error, cause}`.
#[derive(Debug, Clone, PartialEq)]
pub struct Archived {
    /// The pod.
    pub pod: String,
    /// The container.
    pub container: String,
    /// What to put beside its log in the result.
    pub entry: Value,
}

/// What identifies the Job whose logs are archived.
#[derive(Debug, Clone, Copy)]
pub struct JobId<'a> {
    /// Its namespace.
    pub namespace: &'a str,
    /// Its name.
    pub name: &'a str,
    /// Its uid.
    pub uid: &'a str,
}

/// Streams every container's whole log (the targets the log options select) into
/// the archive. A container that fails gets `{error, cause}` instead; the others go on.
pub async fn archive_logs(
    kube: &dyn KubeApi,
    archive: Arc<dyn LogArchive>,
    location: &ArchiveLocation,
    job: JobId<'_>,
    pods: &[Value],
    options: &crate::input::LogOptions,
) -> Vec<Archived> {
    let targets = logs::targets(pods, options);
    futures::stream::iter(targets)
        .map(|(pod, container)| {
            let archive = archive.clone();
            async move {
                let key = location.key(job.namespace, job.name, job.uid, &pod, &container);
                let entry = match archive_one(kube, archive.as_ref(), location, job.namespace, &pod, &container, &key).await {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_parse_and_name_keys() {
        let l =
            ArchiveLocation::parse("s3://logs-bucket/team/jobs/").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (l.bucket.as_str(), l.prefix.as_str()),
            ("logs-bucket", "team/jobs")
        );
        assert_eq!(
            l.key("ns", "j", "u-1", "p", "c"),
            "team/jobs/ns/j/u-1/p/c.log"
        );
        assert_eq!(l.uri(), "s3://logs-bucket/team/jobs");
        let bare = ArchiveLocation::parse("s3://logs-bucket").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(bare.key("ns", "j", "u", "p", "c"), "ns/j/u/p/c.log");
        for bad in [
            "logs-bucket/x",
            "s3://",
            "s3://UPPER/x",
            "s3://ab",
            "s3://-bucket/x",
            "https://b/x",
        ] {
            assert!(ArchiveLocation::parse(bad).is_err(), "{bad}");
        }
    }
}
