//! The EKS control-plane API (clusters, nodegroups, Fargate profiles), called as REST
//! with SigV4 so that a state's request fields pass through as written (the native
//! integration's PascalCase names become the API's camelCase; map keys such as tags
//! and labels stay as they are) and the response comes back as EKS sent it.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use http_body_util::{BodyExt, Full};
use serde_json::{json, Map, Value};

use crate::credentials::CredentialSource;
use crate::error::{error_chain, names, TaskError};

/// An answer of the EKS API that is not a success.
#[derive(Debug, Clone, PartialEq)]
pub struct EksError {
    /// The HTTP status.
    pub status: u16,
    /// The error type (`ResourceNotFoundException`, `ResourceInUseException`, …).
    pub kind: String,
    /// EKS's message.
    pub message: String,
}

impl EksError {
    /// Whether the resource does not exist.
    #[must_use]
    pub fn is_not_found(&self) -> bool {
        self.kind.contains("ResourceNotFound") || self.status == 404
    }

    /// The task error for it, naming the operation.
    #[must_use]
    pub fn task_error(&self, operation: &str) -> TaskError {
        TaskError::new(
            names::EKS_API,
            json!({ "operation": operation, "error": self.kind, "status": self.status, "message": self.message }),
        )
    }
}

/// The EKS REST API.
#[async_trait]
pub trait EksApi: Send + Sync {
    /// Sends `method path` with a JSON body (camelCase, as the API takes it).
    ///
    /// # Errors
    /// `Err(Ok(EksError))` when EKS answers with an error, `Err(Err(TaskError))` when it
    /// cannot be reached or credentials fail.
    async fn call(
        &self,
        method: http::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, Result<EksError, TaskError>>;
}

type HttpsClient = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    Full<bytes::Bytes>,
>;

/// [`EksApi`] over HTTPS with SigV4, at `AWS_ENDPOINT_URL_EKS`, `AWS_ENDPOINT_URL` or
/// `https://eks.<region>.amazonaws.com`.
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
        let endpoint = endpoint
            .unwrap_or_else(|| format!("https://eks.{region}.amazonaws.com"))
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

    /// The endpoint from the environment, as the AWS SDKs read it.
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
    ) -> Result<Value, Result<EksError, TaskError>> {
        let unreachable = |m: String| {
            Err(TaskError::new(
                names::EKS_API,
                json!({ "message": m, "endpoint": self.endpoint }),
            ))
        };
        let creds = self
            .credentials
            .credentials(None)
            .await
            .map_err(|e| Err(e.into()))?;
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
        Err(Ok(EksError {
            status,
            kind,
            message,
        }))
    }
}

/// Fields whose value is a map of user keys (kept as written).
const MAP_FIELDS: [&str; 3] = ["tags", "labels", "configurationValues"];

/// The native integration's PascalCase request fields in the API's camelCase
/// (`ResourcesVpcConfig.SubnetIds` → `resourcesVpcConfig.subnetIds`), map values such
/// as `Tags` and `Labels` kept as written.
#[must_use]
pub fn camel_case(v: &Value) -> Value {
    match v {
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, x)| {
                    let key = lower_first(k);
                    let value = if MAP_FIELDS.contains(&key.as_str()) {
                        x.clone()
                    } else {
                        camel_case(x)
                    };
                    (key, value)
                })
                .collect::<Map<String, Value>>(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(camel_case).collect()),
        other => other.clone(),
    }
}

fn lower_first(k: &str) -> String {
    let mut c = k.chars();
    c.next()
        .map(|f| f.to_lowercase().chain(c).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pascal_case_fields_become_camel_case_but_tags_keep_their_keys() {
        let native = json!({ "Name": "c", "ResourcesVpcConfig": { "SubnetIds": ["s"] }, "Tags": { "Team": "x" }, "Selectors": [{ "Namespace": "n", "Labels": { "App": "a" } }] });
        assert_eq!(
            camel_case(&native),
            json!({ "name": "c", "resourcesVpcConfig": { "subnetIds": ["s"] }, "tags": { "Team": "x" }, "selectors": [{ "namespace": "n", "labels": { "App": "a" } }] })
        );
    }
}
