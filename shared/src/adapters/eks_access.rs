//! EKS access entries for the bootstrap, through the AWS SDK.

use async_trait::async_trait;
use aws_sdk_eks::operation::create_access_entry::CreateAccessEntryError;
use serde_json::json;

use crate::contract::error::{error_chain, names, TaskError};
use crate::ports::eks::AccessEntries;

#[async_trait]
impl AccessEntries for aws_sdk_eks::Client {
    async fn create_access_entry(
        &self,
        cluster: &str,
        principal_arn: &str,
        username: &str,
    ) -> Result<&'static str, TaskError> {
        let r = self
            .create_access_entry()
            .cluster_name(cluster)
            .principal_arn(principal_arn)
            .username(username)
            .send()
            .await;
        match r {
            Ok(_) => Ok("created"),
            Err(e)
                if e.as_service_error()
                    .is_some_and(CreateAccessEntryError::is_resource_in_use_exception) =>
            {
                Ok("already there")
            }
            Err(e) => Err(TaskError::new(
                names::EKS_API,
                json!({ "operation": "CreateAccessEntry", "cluster": cluster, "message": error_chain(&e) }),
            )),
        }
    }
}
