//! The EKS REST API, SigV4-signed over HTTPS. Kept beside `aws-sdk-eks` because the
//! cluster operations pass the native request through as JSON and answer with EKS's own
//! JSON (every field, including ones newer than the SDK's model), which the SDK's typed
//! builders and outputs would drop or need written out field by field; the endpoint and
//! the signing are the SDK's (its endpoint rules, `aws-sigv4`).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use http_body_util::{BodyExt, Full};
use serde_json::{json, Value};

use crate::contract::error::{error_chain, names, TaskError};
use crate::ports::credentials::CredentialSource;
use crate::ports::eks::{EksApi, EksCallError, EksError};

type HttpsClient = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    Full<bytes::Bytes>,
>;

/// [`EksApi`] over HTTPS with SigV4, at `AWS_ENDPOINT_URL_EKS`, `AWS_ENDPOINT_URL` or the
/// endpoint the SDK's rules give the region ([`EksRest::sdk_endpoint`]: the partition's
/// domain, FIPS and dual-stack).
pub struct EksRest {
    endpoint: String,
    region: String,
    credentials: Arc<dyn CredentialSource>,
    client: HttpsClient,
}

impl EksRest {
    /// A client for `region`.
    ///
    /// # Errors
    /// When the TLS roots cannot be loaded.
    pub fn new(
        region: &str,
        endpoint: Option<String>,
        credentials: Arc<dyn CredentialSource>,
    ) -> Result<Self, TaskError> {
        let endpoint = match endpoint {
            Some(e) => e,
            None => Self::sdk_endpoint(region, false, false)?,
        }
        .trim_end_matches('/')
        .to_owned();
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()
            .map_err(|e| TaskError::message(names::INTERNAL, format!("no TLS roots: {e}")))?
            .https_or_http()
            .enable_http1()
            .build();
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build(https);
        Ok(Self {
            endpoint,
            region: region.to_owned(),
            credentials,
            client,
        })
    }

    /// The EKS endpoint of `region` by the SDK's endpoint rules: `eks.<region>.amazonaws.com`,
    /// `….amazonaws.com.cn` in China, the FIPS and dual-stack hosts when asked (not
    /// written by hand: the rules know every partition).
    ///
    /// # Errors
    /// `EksTaskWorker.InternalError` for a region the rules cannot place.
    pub fn sdk_endpoint(region: &str, fips: bool, dual_stack: bool) -> Result<String, TaskError> {
        use aws_sdk_eks::config::endpoint::{DefaultResolver, Params, ResolveEndpoint};
        use futures::FutureExt;
        let internal = |m: String| TaskError::message(names::INTERNAL, m);
        let params = Params::builder()
            .region(region)
            .use_fips(fips)
            .use_dual_stack(dual_stack)
            .build()
            .map_err(|e| internal(format!("the EKS endpoint of {region}: {e}")))?;
        let resolved = DefaultResolver::new()
            .resolve_endpoint(&params)
            .now_or_never()
            .ok_or_else(|| internal(format!("the EKS endpoint of {region}: not resolved")))?
            .map_err(|e| internal(format!("the EKS endpoint of {region}: {e}")))?;
        Ok(resolved.url().to_owned())
    }

    /// The endpoint from the environment, as the AWS SDKs read it:
    /// `AWS_ENDPOINT_URL_EKS`, else `AWS_ENDPOINT_URL`.
    #[must_use]
    pub fn endpoint_from_env() -> Option<String> {
        std::env::var("AWS_ENDPOINT_URL_EKS")
            .or_else(|_| std::env::var("AWS_ENDPOINT_URL"))
            .ok()
            .filter(|e| !e.is_empty())
    }
}

#[async_trait]
impl EksApi for EksRest {
    async fn call(
        &self,
        method: http::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, EksCallError> {
        let unreachable = |m: String| {
            EksCallError::Unreachable(TaskError::new(
                names::EKS_API,
                json!({ "message": m, "endpoint": self.endpoint }),
            ))
        };
        let creds = self
            .credentials
            .credentials(None)
            .await
            .map_err(|e| EksCallError::Unreachable(e.into()))?;
        let body = body.map(Value::to_string).unwrap_or_default();
        let url = format!("{}{path}", self.endpoint);
        let identity = creds.into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name("eks")
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| unreachable(e.to_string()))?
            .into();
        let headers = [("content-type", "application/json")];
        let signable = SignableRequest::new(
            method.as_str(),
            &url,
            headers.into_iter(),
            SignableBody::Bytes(body.as_bytes()),
        )
        .map_err(|e| unreachable(e.to_string()))?;
        let (instructions, _) = sign(signable, &params)
            .map_err(|e| unreachable(e.to_string()))?
            .into_parts();
        let mut request = http::Request::builder()
            .method(method)
            .uri(&url)
            .header("content-type", "application/json")
            .body(Full::new(bytes::Bytes::from(body)))
            .map_err(|e| unreachable(e.to_string()))?;
        instructions.apply_to_request_http1x(&mut request);
        let response = tokio::time::timeout(Duration::from_secs(30), self.client.request(request))
            .await
            .map_err(|_| unreachable("EKS did not answer in 30 s".into()))?
            .map_err(|e| unreachable(error_chain(&e)))?;
        let status = response.status().as_u16();
        let kind = response
            .headers()
            .get("x-amzn-errortype")
            .and_then(|v| v.to_str().ok())
            .map(|t| t.split(':').next().unwrap_or(t).to_owned());
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| unreachable(error_chain(&e)))?
            .to_bytes();
        let value: Value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        if (200..300).contains(&status) {
            return Ok(value);
        }
        let kind = kind
            .or_else(|| {
                value
                    .get("__type")
                    .and_then(Value::as_str)
                    .map(|t| t.rsplit('#').next().unwrap_or(t).to_owned())
            })
            .unwrap_or_else(|| format!("HTTP {status}"));
        let message = value
            .get("message")
            .or_else(|| value.get("Message"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        Err(EksCallError::Refused(EksError {
            status,
            kind,
            message,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::EksRest;

    /// The endpoint comes from the SDK's rules, right in every partition.
    #[test]
    fn the_endpoint_follows_the_partition_fips_and_dual_stack() {
        let at = |r: &str, fips: bool, dual: bool| {
            EksRest::sdk_endpoint(r, fips, dual).unwrap_or_else(|e| panic!("{r}: {e}"))
        };
        assert_eq!(
            at("us-east-1", false, false),
            "https://eks.us-east-1.amazonaws.com"
        );
        assert_eq!(
            at("cn-north-1", false, false),
            "https://eks.cn-north-1.amazonaws.com.cn"
        );
        assert_eq!(
            at("us-east-1", true, false),
            "https://fips.eks.us-east-1.amazonaws.com"
        );
        assert!(at("us-east-1", false, true).contains("api.aws"));
    }
}
