//! The Kubernetes client: kube's HTTP client with the worker's timeouts, no retry of
//! its own, and a bearer token asked for before every request (never a stale one).

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::stream::BoxStream;
use futures::StreamExt;
use http_body_util::BodyExt;
use serde_json::Value;

use crate::adapters::token::ClusterBearer;
use crate::config::timeouts::Timeouts;
use crate::contract::error::{error_chain, TaskError};
use crate::ports::kube::{reason_phrase, KubeApi, KubeRequest, KubeResponse, TransportError};

/// [`KubeApi`] over a kube-rs client.
#[derive(Clone)]
pub struct KubeClient {
    client: kube::Client,
    endpoint: String,
    bearer: ClusterBearer,
    read_timeout: std::time::Duration,
}

impl KubeClient {
    /// A client for `endpoint` that trusts only the CA certificates `ca_ders` and
    /// authenticates each request with the token `bearer` gives at that moment.
    ///
    /// # Errors
    /// `EksTaskWorker.InvalidInput` for an endpoint kube cannot use,
    /// `EksTaskWorker.ClusterUnreachable` when the TLS stack cannot be set up.
    pub fn new(
        endpoint: &url::Url,
        ca_ders: Vec<Vec<u8>>,
        bearer: ClusterBearer,
        timeouts: Timeouts,
    ) -> Result<Self, TaskError> {
        let uri: http::Uri = endpoint
            .as_str()
            .trim_end_matches('/')
            .parse()
            .map_err(|e| {
                TaskError::invalid_input("Endpoint", format!("cannot be used as a URI: {e}"))
            })?;
        let mut config = kube::Config::new(uri);
        config.root_cert = Some(ca_ders);
        config.connect_timeout = Some(timeouts.connect);
        config.read_timeout = Some(timeouts.read);
        config.write_timeout = Some(timeouts.read);
        // One retry policy: the worker's own (shared/src/retry.rs: capped, Retry-After
        // honoured, a create looked up before it is tried again). kube's default retry
        // (up to 15 tries on 429/503/504, POST included) would sit under it unseen, and
        // hid the fault matrix's 503 and 429 from the worker's retry.
        config.default_retry = false;
        let client = kube::Client::try_from(config).map_err(|e| TransportError::Unreachable {
            endpoint: endpoint.to_string(),
            message: format!("cannot set up the client: {}", error_chain(&e)),
        })?;
        Ok(Self {
            client,
            endpoint: endpoint.to_string(),
            bearer,
            read_timeout: timeouts.read,
        })
    }

    fn unreachable(&self, e: &(dyn std::error::Error + 'static)) -> TransportError {
        TransportError::Unreachable {
            endpoint: self.endpoint.clone(),
            message: error_chain(e),
        }
    }

    async fn start(
        &self,
        request: KubeRequest,
    ) -> Result<http::Response<kube::client::Body>, TransportError> {
        let token = self
            .bearer
            .current()
            .await
            .map_err(|e| TransportError::Token(e.to_string()))?;
        let mut authorization = http::HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|e| TransportError::Token(format!("the token cannot be sent: {e}")))?;
        authorization.set_sensitive(true);
        let mut builder = http::Request::builder()
            .method(request.method.clone())
            .uri(request.path_and_query())
            .header(http::header::AUTHORIZATION, authorization);
        let body = match request.body {
            Some((bytes, content_type)) => {
                builder = builder.header(http::header::CONTENT_TYPE, content_type);
                bytes
            }
            None => Vec::new(),
        };
        let req = builder
            .body(kube::client::Body::from(body))
            .map_err(|e| self.unreachable(&e))?;
        self.client
            .send(req)
            .await
            .map_err(|e| self.unreachable(&e))
    }
}

/// What of a response's body is kept in memory.
#[derive(Clone, Copy)]
enum Keep {
    /// All of it.
    Whole,
    /// Its last bytes: the body is read to its end.
    Tail(usize),
    /// Its first bytes and one more: the body is not read past them.
    Head(usize),
}

impl KubeClient {
    /// `work`, ended at the invocation's request deadline
    /// ([`clock::request_deadline`](crate::ports::clock::request_deadline)): no request
    /// outlasts the time its invocation has (a read timeout longer than the margin would
    /// let one), so the invocation still answers or hands off by name.
    async fn in_time<T>(
        &self,
        work: impl std::future::Future<Output = Result<T, TransportError>>,
    ) -> Result<T, TransportError> {
        match crate::ports::clock::request_deadline() {
            Some(at) => tokio::time::timeout_at(at, work).await.unwrap_or_else(|_| {
                Err(TransportError::Unreachable {
                    endpoint: self.endpoint.clone(),
                    message: "no answer before the invocation's time ran out".into(),
                })
            }),
            None => work.await,
        }
    }

    /// Sends `request` and reads its body as `keep` says, within the invocation's time
    /// ([`KubeClient::in_time`]); `body_len` is what was read.
    async fn read(&self, request: KubeRequest, keep: Keep) -> Result<KubeResponse, TransportError> {
        self.in_time(self.read_unbounded(request, keep)).await
    }

    async fn read_unbounded(
        &self,
        request: KubeRequest,
        keep: Keep,
    ) -> Result<KubeResponse, TransportError> {
        let response = self.start(request).await?;
        let status = response.status().as_u16();
        let headers = headers_of(response.headers());
        let mut body = response.into_body();
        let mut kept = BytesMut::new();
        let mut total: u64 = 0;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| self.unreachable(&e))?;
            if let Ok(data) = frame.into_data() {
                total += data.len() as u64;
                kept.extend_from_slice(&data);
                match keep {
                    Keep::Whole => {}
                    Keep::Tail(limit) if kept.len() > limit => {
                        let drop = kept.len() - limit;
                        let _ = kept.split_to(drop);
                    }
                    Keep::Tail(_) => {}
                    Keep::Head(limit) if kept.len() > limit => {
                        // Not read on: the body is dropped with its connection.
                        kept.truncate(limit + 1);
                        break;
                    }
                    Keep::Head(_) => {}
                }
            }
        }
        Ok(KubeResponse {
            status,
            reason: reason_phrase(status),
            headers,
            body: kept.freeze(),
            body_len: total,
        })
    }
}

fn headers_of(h: &http::HeaderMap) -> Vec<(String, String)> {
    h.iter()
        .filter_map(|(k, v)| {
            v.to_str()
                .ok()
                .map(|v| (k.as_str().to_owned(), v.to_owned()))
        })
        .collect()
}

#[async_trait]
impl KubeApi for KubeClient {
    async fn send(
        &self,
        request: KubeRequest,
        keep_tail: Option<usize>,
    ) -> Result<KubeResponse, TransportError> {
        self.read(request, keep_tail.map_or(Keep::Whole, Keep::Tail))
            .await
    }

    async fn send_capped(
        &self,
        request: KubeRequest,
        cap: usize,
    ) -> Result<KubeResponse, TransportError> {
        self.read(request, Keep::Head(cap)).await
    }

    async fn stream(
        &self,
        request: KubeRequest,
    ) -> Result<
        Result<BoxStream<'static, Result<Bytes, TransportError>>, KubeResponse>,
        TransportError,
    > {
        let response = self.in_time(self.start(request)).await?;
        let status = response.status().as_u16();
        if !(200..300).contains(&status) {
            let headers = headers_of(response.headers());
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| self.unreachable(&e))?
                .to_bytes();
            let body_len = body.len() as u64;
            return Ok(Err(KubeResponse {
                status,
                reason: reason_phrase(status),
                headers,
                body,
                body_len,
            }));
        }
        let endpoint = self.endpoint.clone();
        let frames = response
            .into_body()
            .into_data_stream()
            .map(move |f| {
                f.map_err(|e| TransportError::Unreachable {
                    endpoint: endpoint.clone(),
                    message: error_chain(&e),
                })
            })
            .boxed();
        Ok(Ok(frames))
    }

    async fn watch(
        &self,
        request: KubeRequest,
    ) -> Result<
        Result<BoxStream<'static, Result<Value, TransportError>>, KubeResponse>,
        TransportError,
    > {
        let request = ended_within(request, self.read_timeout);
        let frames = match self.stream(request).await? {
            Ok(frames) => frames,
            Err(response) => return Ok(Err(response)),
        };
        let events = futures::stream::unfold(
            (frames, BytesMut::new()),
            |(mut frames, mut buf)| async move {
                loop {
                    if let Some(nl) = buf.iter().position(|&b| b == b'\n') {
                        let line = buf.split_to(nl + 1);
                        if line.iter().all(u8::is_ascii_whitespace) {
                            continue;
                        }
                        let event = serde_json::from_slice::<Value>(&line)
                            .map_err(|e| TransportError::BadEvent(e.to_string()));
                        return Some((event, (frames, buf)));
                    }
                    match frames.next().await {
                        Some(Ok(data)) => buf.extend_from_slice(&data),
                        Some(Err(e)) => {
                            return Some((
                                Err(e),
                                (futures::stream::empty().boxed(), BytesMut::new()),
                            ));
                        }
                        None => return None,
                    }
                }
            },
        );
        Ok(Ok(events.boxed()))
    }
}

/// `request` (a watch) with its `timeoutSeconds` below the read timeout `read`: the
/// server ends a watch after `timeoutSeconds` even when nothing happened, and a quiet
/// watch (a Job with nothing to report) must end there, not at the client's read
/// timeout, where it would read as a failure (`KUBE_READ_TIMEOUT_SECONDS` below the
/// watch's own 25 s once cut every quiet watch, and handed a healthy Job to the poller).
fn ended_within(mut request: KubeRequest, read: std::time::Duration) -> KubeRequest {
    let most = read.as_secs().saturating_sub(1).max(1);
    let mut asked = false;
    for (k, v) in &mut request.query {
        if k == "timeoutSeconds" {
            asked = true;
            if v.parse::<u64>().map_or(true, |s| s > most) {
                *v = most.to_string();
            }
        }
    }
    if !asked {
        request
            .query
            .push(("timeoutSeconds".into(), most.to_string()));
    }
    request
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_watch_ends_on_the_server_before_the_read_timeout() {
        let watch = |t: Option<&str>| {
            let mut r = KubeRequest::get("/apis/batch/v1/namespaces/n/jobs").param("watch", "1");
            if let Some(t) = t {
                r = r.param("timeoutSeconds", t);
            }
            r
        };
        let seconds = |r: &KubeRequest| -> Vec<String> {
            r.query
                .iter()
                .filter(|(k, _)| k == "timeoutSeconds")
                .map(|(_, v)| v.clone())
                .collect()
        };
        let four = std::time::Duration::from_secs(4);
        assert_eq!(seconds(&ended_within(watch(Some("25")), four)), ["3"]);
        assert_eq!(seconds(&ended_within(watch(Some("2")), four)), ["2"]);
        assert_eq!(seconds(&ended_within(watch(None), four)), ["3"]);
        assert_eq!(seconds(&ended_within(watch(Some("x")), four)), ["3"]);
        let thirty = std::time::Duration::from_secs(30);
        assert_eq!(seconds(&ended_within(watch(Some("25")), thirty)), ["25"]);
    }

    /// A request to a server that never answers ends at the invocation's request
    /// deadline, not at the client's own timeouts (60 s here).
    #[tokio::test]
    async fn no_request_outlasts_the_invocations_time() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
        let endpoint: url::Url = format!(
            "https://{}",
            listener
                .local_addr()
                .map_or_else(|e| panic!("{e}"), |a| a.to_string())
        )
        .parse()
        .unwrap_or_else(|e| panic!("{e}"));
        let long = std::time::Duration::from_secs(60);
        let client = KubeClient::new(
            &endpoint,
            Vec::new(),
            ClusterBearer::Fixed("token".into()),
            Timeouts {
                connect: long,
                read: long,
            },
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let started = std::time::Instant::now();
        let got = crate::ports::clock::within_deadline(
            std::time::Duration::from_millis(100),
            std::time::Duration::from_millis(100),
            client.send(KubeRequest::get("/api"), None),
        )
        .await;
        assert!(
            matches!(&got, Err(TransportError::Unreachable { message, .. }) if message.contains("time ran out")),
            "{got:?}"
        );
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        drop(listener);
    }
}
