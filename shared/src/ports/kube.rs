//! The Kubernetes API port: a request, its response and the transport's errors.

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;
use serde_json::Value;

use crate::contract::error::{names, TaskError};

/// A request to the API server.
#[derive(Debug, Clone, PartialEq)]
pub struct KubeRequest {
    /// The HTTP method.
    pub method: http::Method,
    /// The path, starting with `/`.
    pub path: String,
    /// Query parameters, in order; a name may repeat.
    pub query: Vec<(String, String)>,
    /// The body and its content type.
    pub body: Option<(Vec<u8>, &'static str)>,
}

impl KubeRequest {
    /// A GET of `path`.
    #[must_use]
    pub fn get(path: impl Into<String>) -> Self {
        Self {
            method: http::Method::GET,
            path: path.into(),
            query: Vec::new(),
            body: None,
        }
    }

    /// A `method` of `path` with `body` sent as JSON.
    #[must_use]
    pub fn json(method: http::Method, path: impl Into<String>, body: &Value) -> Self {
        Self {
            method,
            path: path.into(),
            query: Vec::new(),
            body: Some((body.to_string().into_bytes(), "application/json")),
        }
    }

    /// Adds a query parameter.
    #[must_use]
    pub fn param(mut self, name: &str, value: impl Into<String>) -> Self {
        self.query.push((name.to_owned(), value.into()));
        self
    }

    /// The path and query as one URI reference.
    #[must_use]
    pub fn path_and_query(&self) -> String {
        if self.query.is_empty() {
            return self.path.clone();
        }
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in &self.query {
            q.append_pair(k, v);
        }
        format!("{}?{}", self.path, q.finish())
    }
}

/// A response from the API server.
#[derive(Debug, Clone, PartialEq)]
pub struct KubeResponse {
    /// The HTTP status code.
    pub status: u16,
    /// The reason phrase of the status (`Not Found`).
    pub reason: String,
    /// The response headers.
    pub headers: Vec<(String, String)>,
    /// The body, or its last bytes when it was read with a tail limit.
    pub body: Bytes,
    /// How many body bytes the server sent (at least `body.len()`).
    pub body_len: u64,
}

impl KubeResponse {
    /// Whether the status is 2xx.
    #[must_use]
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The body as JSON when it parses, else as text.
    #[must_use]
    pub fn body_value(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&self.body).into_owned()))
    }

    /// `Ok(self)` for 2xx; `EKS.<status>` with the native cause otherwise.
    ///
    /// # Errors
    /// The `EKS.<status>` error.
    pub fn ok(self) -> Result<Self, TaskError> {
        if self.is_success() {
            return Ok(self);
        }
        let mut e = TaskError::kubernetes_status(self.status, &self.reason, self.body_value());
        // The Retry-After header of a 429 or 503, for the retry (not a native field).
        let header = self
            .headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("retry-after"))
            .and_then(|(_, v)| v.trim().parse::<u64>().ok());
        if let (Some(seconds), Some(cause)) = (header, e.cause.as_object_mut()) {
            cause.insert("RetryAfterSeconds".into(), serde_json::json!(seconds));
        }
        Err(e)
    }

    /// The body parsed as JSON.
    ///
    /// # Errors
    /// `EksTaskWorker.InternalError` when a 2xx body is not JSON.
    pub fn json(&self) -> Result<Value, TaskError> {
        serde_json::from_slice(&self.body).map_err(|e| {
            TaskError::message(
                names::INTERNAL,
                format!(
                    "the API server answered {} with a body that is not JSON: {e}",
                    self.status
                ),
            )
        })
    }
}

/// The reason phrase of an HTTP status.
#[must_use]
pub fn reason_phrase(status: u16) -> String {
    http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Unknown")
        .to_owned()
}

/// Errors reaching the API server (not error statuses: those are responses).
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// Connect, TLS, DNS or I/O failure, or a timeout.
    #[error("cannot reach the API server at {endpoint}: {message}")]
    Unreachable {
        /// The API server.
        endpoint: String,
        /// What failed.
        message: String,
    },
    /// A watch event that is not JSON.
    #[error("a watch event is not JSON: {0}")]
    BadEvent(String),
    /// No bearer token could be made for the request (credentials, STS).
    #[error("no bearer token for the request: {0}")]
    Token(String),
}

impl From<TransportError> for TaskError {
    fn from(e: TransportError) -> Self {
        match &e {
            TransportError::Unreachable { endpoint, message } => TaskError::new(
                names::CLUSTER_UNREACHABLE,
                serde_json::json!({
                    "endpoint": endpoint,
                    "message": message,
                    "hint": "check Endpoint and CertificateAuthority, that the cluster's endpoint is \
                        reachable from the function (private endpoints need the function in the \
                        cluster's VPC), and its security groups",
                }),
            ),
            TransportError::BadEvent(_) => TaskError::message(names::INTERNAL, e.to_string()),
            TransportError::Token(_) => TaskError::message(names::CREDENTIALS, e.to_string()),
        }
    }
}

/// The Kubernetes API of one cluster, as the worker needs it.
#[async_trait]
pub trait KubeApi: Send + Sync {
    /// Sends a request and reads the whole body, or, with `keep_tail`, only its last
    /// `keep_tail` bytes (memory stays bounded whatever the server sends).
    ///
    /// # Errors
    /// [`TransportError`] when the server cannot be reached.
    async fn send(
        &self,
        request: KubeRequest,
        keep_tail: Option<usize>,
    ) -> Result<KubeResponse, TransportError>;

    /// Sends a request and reads at most `cap` bytes of the body and one more: a longer
    /// body is not read on (memory stays bounded), and comes back cut, with `body_len`
    /// over `cap`. The default reads the whole body first: for doubles.
    ///
    /// # Errors
    /// [`TransportError`] when the server cannot be reached.
    async fn send_capped(
        &self,
        request: KubeRequest,
        cap: usize,
    ) -> Result<KubeResponse, TransportError> {
        let mut response = self.send(request, None).await?;
        response.body.truncate(cap + 1);
        Ok(response)
    }

    /// Sends a request and yields the body as it arrives (a log of any size, in
    /// bounded memory). The default reads the whole body first: for doubles.
    ///
    /// # Errors
    /// [`TransportError`] when the server cannot be reached; a non-2xx answer comes
    /// back as `Err(response)` inside `Ok`.
    async fn stream(
        &self,
        request: KubeRequest,
    ) -> Result<
        Result<BoxStream<'static, Result<Bytes, TransportError>>, KubeResponse>,
        TransportError,
    > {
        let response = self.send(request, None).await?;
        if !response.is_success() {
            return Ok(Err(response));
        }
        Ok(Ok(futures::stream::iter([Ok(response.body)]).boxed()))
    }

    /// Starts a watch (`request` has `watch=1`) and yields its events as JSON.
    ///
    /// # Errors
    /// [`TransportError`] when the server cannot be reached; a non-2xx answer comes
    /// back as `Err(response)` inside `Ok`.
    async fn watch(
        &self,
        request: KubeRequest,
    ) -> Result<
        Result<BoxStream<'static, Result<Value, TransportError>>, KubeResponse>,
        TransportError,
    >;
}
