//! The log archive on S3: each container's log streamed in multipart uploads.

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::stream::BoxStream;
use futures::StreamExt;
use serde_json::json;

use crate::contract::error::{names, TaskError};
use crate::ports::archive::LogArchive;

/// The size of a multipart part (S3 wants at least 5 MiB for all but the last).
pub const PART_BYTES: usize = 8 * 1024 * 1024;

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
