//! A fake Kubernetes API server for Jobs.

use std::sync::Mutex;

use serde_json::{json, Value};

use crate::ports::kube::{KubeApi, KubeRequest, KubeResponse, TransportError};
use crate::task::job::{metadata_entry, name_of};

/// An in-memory API server for Jobs: creates (with generateName), reads by name and
/// by label selector, merge patches with a resourceVersion precondition; it can commit
/// a create and lose its answer, as a dropped connection does. Watches are refused.
#[derive(Default)]
pub struct FakeKube {
    jobs: Mutex<Vec<Value>>,
    /// Answers to lose after committing (creates that reach the store).
    lose: Mutex<u32>,
    posts: Mutex<u32>,
}

/// What [`KubeApi::watch`] answers.
pub type WatchAnswer = Result<
    Result<futures::stream::BoxStream<'static, Result<Value, TransportError>>, KubeResponse>,
    TransportError,
>;

/// The watch of a double that serves none: 405, so the caller reads instead.
pub fn no_watch() -> WatchAnswer {
    Ok(Err(answer(405, &json!({}))))
}

/// A response with `status` and a JSON `body`.
#[must_use]
pub fn answer(status: u16, body: &Value) -> KubeResponse {
    let body = body.to_string();
    KubeResponse {
        status,
        reason: crate::ports::kube::reason_phrase(status),
        headers: vec![],
        body_len: body.len() as u64,
        body: body.into(),
    }
}

#[async_trait::async_trait]
impl KubeApi for FakeKube {
    async fn send(
        &self,
        request: KubeRequest,
        _keep_tail: Option<usize>,
    ) -> Result<KubeResponse, TransportError> {
        let mut jobs = self
            .jobs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if request.method == http::Method::DELETE {
            let name = request.path.rsplit('/').next().unwrap_or_default();
            let before = jobs.len();
            jobs.retain(|j| name_of(j) != Some(name));
            return Ok(if jobs.len() < before {
                answer(200, &json!({ "kind": "Status", "status": "Success" }))
            } else {
                answer(404, &json!({ "kind": "Status", "code": 404 }))
            });
        }
        if request.method == http::Method::PATCH {
            let patch: Value = request
                .body
                .as_ref()
                .and_then(|(b, _)| serde_json::from_slice(b).ok())
                .unwrap_or_default();
            let name = request.path.rsplit('/').next().unwrap_or_default();
            let Some(job) = jobs.iter_mut().find(|j| name_of(j) == Some(name)) else {
                return Ok(answer(404, &json!({ "kind": "Status", "code": 404 })));
            };
            let rv = job["metadata"]["resourceVersion"].clone();
            if let Some(want) = patch.pointer("/metadata/resourceVersion") {
                if *want != rv {
                    return Ok(answer(
                        409,
                        &json!({ "kind": "Status", "reason": "Conflict", "code": 409 }),
                    ));
                }
            }
            for (k, v) in patch["metadata"]["annotations"]
                .as_object()
                .cloned()
                .unwrap_or_default()
            {
                job["metadata"]["annotations"][k] = v;
            }
            let next = rv
                .as_str()
                .and_then(|r| r.parse::<u64>().ok())
                .unwrap_or_default()
                + 1;
            job["metadata"]["resourceVersion"] = json!(next.to_string());
            return Ok(answer(200, job));
        }
        if request.method == http::Method::POST {
            *self
                .posts
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) += 1;
            let mut job: Value = request
                .body
                .as_ref()
                .and_then(|(b, _)| serde_json::from_slice(b).ok())
                .unwrap_or_default();
            let name = match name_of(&job) {
                Some(n) => n.to_owned(),
                // The server's own generateName: a fresh suffix each time.
                None => format!(
                    "{}{}",
                    job["metadata"]["generateName"].as_str().unwrap_or_default(),
                    jobs.len()
                ),
            };
            if jobs.iter().any(|j| name_of(j) == Some(name.as_str())) {
                return Ok(answer(
                    409,
                    &json!({ "kind": "Status", "reason": "AlreadyExists", "code": 409 }),
                ));
            }
            job["metadata"]["name"] = json!(name);
            job["metadata"]["uid"] = json!(format!("uid-{}", jobs.len()));
            job["metadata"]["resourceVersion"] = json!("1");
            jobs.push(job.clone());
            let mut lose = self
                .lose
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if *lose > 0 {
                *lose -= 1;
                return Err(TransportError::Unreachable {
                    endpoint: "https://test".into(),
                    message: "connection reset after the request was sent".into(),
                });
            }
            return Ok(answer(201, &job));
        }
        if let Some((_, selector)) = request.query.iter().find(|(k, _)| k == "labelSelector") {
            let (label, value) = selector.split_once('=').unwrap_or_default();
            let items: Vec<Value> = jobs
                .iter()
                .filter(|j| metadata_entry(j, "labels", label) == Some(value))
                .cloned()
                .collect();
            return Ok(answer(200, &json!({ "items": items })));
        }
        let name = request.path.rsplit('/').next().unwrap_or_default();
        Ok(match jobs.iter().find(|j| name_of(j) == Some(name)) {
            Some(j) => answer(200, j),
            None => answer(404, &json!({ "kind": "Status", "code": 404 })),
        })
    }

    async fn watch(&self, _request: KubeRequest) -> WatchAnswer {
        no_watch()
    }
}

impl FakeKube {
    /// Makes the next `n` creates commit and then lose their answer.
    pub fn lose_answers(&self, n: u32) {
        *self
            .lose
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = n;
    }

    /// The Jobs it holds.
    #[must_use]
    pub fn jobs(&self) -> Vec<Value> {
        self.jobs.lock().map(|j| j.clone()).unwrap_or_default()
    }

    /// How many creates (POSTs) reached it.
    #[must_use]
    pub fn posts(&self) -> u32 {
        self.posts.lock().map(|p| *p).unwrap_or_default()
    }
}
