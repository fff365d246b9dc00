//! Where a chain of polls stands, so that a poll state behind it (a replay: a state
//! read off a schedule and delivered again, an old attempt that would start a second
//! chain of polls) is refused before anything is sent. Two deliveries of the same poll
//! are not replays: both are at the chain's attempt, and their one next schedule is
//! deduplicated by its name.
//!
//! - A Job's chain is recorded on the Job itself: the attempt its latest poll made (an
//!   annotation). Kept on the Job because the Job is what the chain follows and the
//!   worker may already write its annotations (the answer's turn); a Job that cannot be
//!   read (a poll that failed) neither checks nor moves the chain.
//! - A cluster operation's chain cannot be recorded on EKS's resources (the worker may
//!   not tag them), so it is read off its schedules: a poll of this task still waiting
//!   at a later attempt, sealed by the deployment ([`cluster_ahead`]).

use serde_json::{json, Value};

use crate::ports::kube::KubeApi;
use crate::task::deps::Deps;
use crate::task::job::JobId;

pub use crate::task::job::POLLED_ANNOTATION;

/// The chain's attempt on `job` (as read), when recorded.
#[must_use]
pub fn recorded(job: &Value) -> Option<u32> {
    crate::task::job::metadata_entry(job, "annotations", POLLED_ANNOTATION)
        .and_then(|n| n.parse().ok())
}

/// The chain's attempt when a poll of `attempt` is behind it (a replay), else `None`.
#[must_use]
pub fn ahead_of(job: &Value, attempt: u32) -> Option<u32> {
    recorded(job).filter(|at| *at > attempt)
}

/// Records that the poll of `attempt` ran on the Job (read as `job`), unless the Job
/// already records it or a later one. Written only over the Job as read (its
/// `resourceVersion` a precondition), so that a slow delivery that read the Job before a
/// later poll recorded its attempt cannot lower it; when the Job changed in between (a
/// status update, another poll: 409), it is read again and the record tried once more.
/// Best effort: a refused or failed write is logged, and the poll goes on (the chain
/// then guards less, but nothing is lost).
pub async fn record(kube: &dyn KubeApi, id: &JobId, job: &Value, attempt: u32) {
    let mut job = job.clone();
    for _ in 0..2 {
        if recorded(&job).is_some_and(|at| at >= attempt) {
            return;
        }
        let mut patch =
            json!({ "metadata": { "annotations": { POLLED_ANNOTATION: attempt.to_string() } } });
        if let Some(version) = job.pointer("/metadata/resourceVersion") {
            patch["metadata"]["resourceVersion"] = version.clone();
        }
        let status = crate::task::job::patch_or_log(
            kube,
            id,
            &patch,
            "could not record the poll on the job",
        )
        .await;
        if status != Some(409) {
            return;
        }
        match id.read(kube).await {
            Ok(again) => job = again,
            Err(_) => return,
        }
    }
}

/// The later attempt of the chain of polls of `key` when one of this task's
/// (`token`'s) polls is still waiting past `attempt`: sealed by the deployment, for the
/// same token, at the attempt its schedule's name says (a schedule anyone else wrote
/// under such a name is not one, nor a genuine state copied under another name; the
/// name is compared before the seal is checked, so a squat costs no KMS call). Best
/// effort: schedules that cannot be listed are logged and the poll goes on.
pub async fn cluster_ahead(deps: &Deps, key: &str, attempt: u32, token: &str) -> Option<u32> {
    let pending = match deps.handoff.pending_after(key, attempt).await {
        Ok(pending) => pending,
        Err(e) => {
            tracing::warn!(error = %e, "could not read the chain's waiting polls: the replay check is skipped this poll");
            return None;
        }
    };
    for (named, input) in pending {
        let Ok(value) = serde_json::from_str::<Value>(&input) else {
            continue;
        };
        if value["Attempt"].as_u64() != Some(u64::from(named)) {
            continue;
        }
        let Ok(Ok(state)) = crate::task::sealed_state::open(deps.seal.as_ref(), &value).await
        else {
            continue;
        };
        // Its attempt, compared above, is under the seal that was just checked.
        if state["TaskToken"] == token {
            return Some(named);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::kube::KubeRequest;
    use crate::testing::FakeKube;

    /// A slow delivery that read the Job before a later poll recorded its attempt does
    /// not lower the record.
    #[tokio::test]
    async fn a_stale_read_does_not_lower_the_record() {
        let kube = FakeKube::default();
        let made = kube
            .send(
                KubeRequest::json(
                    http::Method::POST,
                    "/apis/batch/v1/namespaces/ns/jobs",
                    &json!({ "apiVersion": "batch/v1", "kind": "Job", "metadata": { "name": "j" } }),
                ),
                None,
            )
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .body_value();
        let uid = made["metadata"]["uid"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let id = JobId::new("ns", "j", &uid);
        let stale = made.clone();
        record(&kube, &id, &made, 5).await;
        record(&kube, &id, &stale, 3).await;
        let now = kube.jobs().first().cloned().unwrap_or_default();
        assert_eq!(recorded(&now), Some(5), "{now}");
        // A later poll whose read is stale too (the Job changed since): read again, and
        // recorded.
        record(&kube, &id, &stale, 7).await;
        let now = kube.jobs().first().cloned().unwrap_or_default();
        assert_eq!(recorded(&now), Some(7), "{now}");
    }

    #[test]
    fn a_state_behind_the_chain_is_a_replay() {
        let job = |polled: Option<&str>| match polled {
            Some(p) => json!({ "metadata": { "annotations": { POLLED_ANNOTATION: p } } }),
            None => json!({ "metadata": {} }),
        };
        assert_eq!(ahead_of(&job(Some("3")), 2), Some(3));
        assert_eq!(ahead_of(&job(Some("3")), 3), None, "a second delivery");
        assert_eq!(ahead_of(&job(Some("3")), 4), None);
        assert_eq!(ahead_of(&job(None), 0), None);
        assert_eq!(ahead_of(&job(Some("x")), 0), None);
    }
}
