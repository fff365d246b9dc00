//! The test doubles, one set for the library's unit tests and the integration tests
//! (feature `test-util`): a fake Kubernetes API server for Jobs ([`FakeKube`]), a
//! scripted EKS ([`ScriptedEks`]), a recording callback ([`RecordingCallback`]), a
//! cluster nobody can reach ([`NoCluster`]), one that holds nothing ([`EmptyCluster`]),
//! a recording hand-off
//! ([`RecordingHandOff`]), fixed credentials ([`FakeCredentials`]), clocks that move
//! only when told ([`ManualClock`], [`TokioClock`]) and [`Deps::test`].

// A double fails the test by panicking (an unscripted call, say).
#![allow(clippy::panic)]

mod eks;
mod kube;

pub use eks::ScriptedEks;
pub use kube::{answer, no_watch, FakeKube, WatchAnswer};

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use serde_json::Value;

/// The seal of a deployment without a key (for tests of what happens then).
pub use crate::adapters::null::NoSeal;
use crate::adapters::null::{NoArchive, NoEks, NoPoller};
use crate::config::Settings;
use crate::contract::error::{names, TaskError};
use crate::contract::payload::ClusterRef;
use crate::contract::poll_state::NextPoll;
use crate::ports::callback::{CallbackError, TaskCallback};
use crate::ports::clock::{Clock, SystemClock};
use crate::ports::cluster::Connector;
use crate::ports::credentials::{CredentialSource, CredentialsError};
use crate::ports::handoff::{HandOff, HandOffError};
use crate::ports::kube::{KubeApi, KubeRequest, KubeResponse, TransportError};
use crate::task::deps::Deps;

/// A clock that stands still until moved; for tests.
#[derive(Debug)]
pub struct ManualClock(Mutex<SystemTime>);

impl ManualClock {
    /// A clock showing `at`.
    #[must_use]
    pub fn new(at: SystemTime) -> Self {
        Self(Mutex::new(at))
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        if let Ok(mut t) = self.0.lock() {
            *t += by;
        }
    }
}

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        self.0.lock().map_or(SystemTime::UNIX_EPOCH, |t| *t)
    }
}

/// A clock that moves with tokio's time (paused in tests), from a fixed instant.
#[derive(Debug)]
pub struct TokioClock(tokio::time::Instant);

impl TokioClock {
    /// A clock starting now (tokio's now).
    #[must_use]
    pub fn start() -> Self {
        Self(tokio::time::Instant::now())
    }
}

impl Clock for TokioClock {
    fn now(&self) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000) + self.0.elapsed()
    }
}

/// A callback that records what it is told and succeeds (or refuses answers while
/// told to: [`RecordingCallback::refuse_answers`]).
#[derive(Debug, Default)]
pub struct RecordingCallback {
    succeeded: Mutex<Vec<(String, Value)>>,
    failed: Mutex<Vec<(String, TaskError)>>,
    heartbeats: Mutex<usize>,
    refusals: Mutex<u32>,
    heartbeat_refusals: Mutex<u32>,
    lost_replies: Mutex<u32>,
    closed: Mutex<Vec<String>>,
}

impl RecordingCallback {
    /// Refuses the next `n` answers (`SendTaskSuccess`/`Failure`) as Step Functions
    /// refuses under throttling: [`CallbackError::Other`], nothing recorded.
    pub fn refuse_answers(&self, n: u32) {
        if let Ok(mut r) = self.refusals.lock() {
            *r = n;
        }
    }

    /// Refuses the next `n` heartbeats as Step Functions refuses under throttling:
    /// [`CallbackError::Other`], nothing counted.
    pub fn refuse_heartbeats(&self, n: u32) {
        if let Ok(mut r) = self.heartbeat_refusals.lock() {
            *r = n;
        }
    }

    /// Takes the next `n` answers and loses their replies ([`CallbackError::NoReply`]),
    /// as a connection cut after Step Functions accepted them; the task is then closed,
    /// and a later answer to it is refused as Step Functions refuses it (`TaskTimedOut`).
    pub fn lose_replies(&self, n: u32) {
        if let Ok(mut l) = self.lost_replies.lock() {
            *l = n;
        }
    }

    /// After an answer to `token` was taken: its reply lost (when told to), or fine.
    fn taken(&self, token: &str) -> Result<(), CallbackError> {
        let mut l = self
            .lost_replies
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if *l > 0 {
            *l -= 1;
            if let Ok(mut closed) = self.closed.lock() {
                closed.push(token.to_owned());
            }
            return Err(CallbackError::NoReply("test double: reply lost".into()));
        }
        Ok(())
    }

    /// Refuses an answer to a task whose earlier answer was taken, its reply lost.
    fn open(&self, token: &str) -> Result<(), CallbackError> {
        if self
            .closed
            .lock()
            .is_ok_and(|c| c.iter().any(|t| t == token))
        {
            return Err(CallbackError::TaskGone {
                code: "TaskTimedOut".into(),
                message: "test double: the task is closed".into(),
            });
        }
        Ok(())
    }

    fn refused(&self) -> Result<(), CallbackError> {
        let mut r = self
            .refusals
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if *r > 0 {
            *r -= 1;
            return Err(CallbackError::Other("test double: refused".into()));
        }
        Ok(())
    }

    /// The successes sent: `(token, output)`.
    #[must_use]
    pub fn succeeded(&self) -> Vec<(String, Value)> {
        self.succeeded.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// The failures sent: `(token, error)`.
    #[must_use]
    pub fn failed(&self) -> Vec<(String, TaskError)> {
        self.failed.lock().map(|f| f.clone()).unwrap_or_default()
    }

    /// The heartbeats sent.
    #[must_use]
    pub fn heartbeats(&self) -> usize {
        self.heartbeats.lock().map(|h| *h).unwrap_or_default()
    }
}

#[async_trait]
impl TaskCallback for RecordingCallback {
    async fn succeed(&self, token: &str, output: &Value) -> Result<(), CallbackError> {
        self.refused()?;
        self.open(token)?;
        if let Ok(mut s) = self.succeeded.lock() {
            s.push((token.to_owned(), output.clone()));
        }
        self.taken(token)
    }
    async fn fail(&self, token: &str, error: &TaskError) -> Result<(), CallbackError> {
        self.refused()?;
        self.open(token)?;
        if let Ok(mut f) = self.failed.lock() {
            f.push((token.to_owned(), error.clone()));
        }
        self.taken(token)
    }
    async fn heartbeat(&self, _token: &str) -> Result<(), CallbackError> {
        if let Ok(mut r) = self.heartbeat_refusals.lock() {
            if *r > 0 {
                *r -= 1;
                return Err(CallbackError::Other("test double: throttled".into()));
            }
        }
        if let Ok(mut h) = self.heartbeats.lock() {
            *h += 1;
        }
        Ok(())
    }
}

/// A seal made in-process with a secret of the test's (SHA-256 of the key, the secret
/// and the message: a test double, not a MAC to rely on), as the KMS seal makes them
/// with KMS: the same message and key, the same seal.
#[derive(Debug, Clone)]
pub struct LocalSeal {
    /// The key id seals carry.
    pub key_id: String,
    secret: String,
}

impl Default for LocalSeal {
    fn default() -> Self {
        Self::new("test-key", "test secret")
    }
}

impl LocalSeal {
    /// A seal with `key_id` and `secret`.
    #[must_use]
    pub fn new(key_id: &str, secret: &str) -> Self {
        Self {
            key_id: key_id.into(),
            secret: secret.into(),
        }
    }

    fn mac(&self, key_id: &str, message: &str) -> String {
        use base64::Engine;
        use sha2::Digest;
        let digest = sha2::Sha256::digest(format!("{key_id}\n{}\n{message}", self.secret));
        base64::engine::general_purpose::STANDARD.encode(digest)
    }
}

#[async_trait]
impl crate::ports::seal::PollSeal for LocalSeal {
    async fn seal(
        &self,
        message: &str,
    ) -> Result<crate::contract::seal::Seal, crate::ports::seal::SealError> {
        Ok(crate::contract::seal::Seal {
            key_id: self.key_id.clone(),
            mac: self.mac(&self.key_id, message),
        })
    }

    async fn verify(
        &self,
        message: &str,
        seal: &crate::contract::seal::Seal,
    ) -> Result<bool, crate::ports::seal::SealError> {
        Ok(seal.key_id == self.key_id && seal.mac == self.mac(&self.key_id, message))
    }

    async fn token_key(
        &self,
        key_id: Option<&str>,
    ) -> Result<Option<Vec<u8>>, crate::ports::seal::SealError> {
        use sha2::Digest;
        if key_id.is_some_and(|k| k != self.key_id) {
            return Ok(None);
        }
        let label = crate::contract::seal::TOKEN_KEY_LABEL;
        Ok(Some(
            sha2::Sha256::digest(format!("{}\n{}\n{label}", self.key_id, self.secret)).to_vec(),
        ))
    }
}

/// `state` (a poll state) sealed as the hand-off seals it, with `deps`' seal: a state
/// written by a holder of the key.
///
/// # Panics
/// When the state is not an object or the key cannot be used.
pub async fn sealed(deps: &Deps, state: &Value) -> Value {
    let (text, _) = crate::task::sealed_state::seal(deps.seal.as_ref(), state)
        .await
        .unwrap_or_else(|e| panic!("sealing: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}"))
}

/// A cluster nobody can reach: every connect is counted and refused
/// (`EksTaskWorker.ClusterUnreachable`).
#[derive(Debug, Default)]
pub struct NoCluster {
    connects: Mutex<usize>,
}

impl NoCluster {
    /// How many connects were tried.
    #[must_use]
    pub fn connects(&self) -> usize {
        self.connects.lock().map(|c| *c).unwrap_or_default()
    }
}

#[async_trait]
impl Connector for NoCluster {
    async fn connect(&self, _cluster: &ClusterRef) -> Result<Arc<dyn KubeApi>, TaskError> {
        if let Ok(mut c) = self.connects.lock() {
            *c += 1;
        }
        Err(TaskError::message(
            names::CLUSTER_UNREACHABLE,
            "test double: no cluster",
        ))
    }
}

/// A cluster that holds nothing: every list is empty, every other request 404 (for
/// the EKS side of a forced deletion, which first lists what would outlive it).
#[derive(Debug, Default)]
pub struct EmptyCluster;

#[async_trait]
impl Connector for EmptyCluster {
    async fn connect(&self, _cluster: &ClusterRef) -> Result<Arc<dyn KubeApi>, TaskError> {
        Ok(Arc::new(EmptyKube))
    }
}

struct EmptyKube;

#[async_trait]
impl KubeApi for EmptyKube {
    async fn send(
        &self,
        request: KubeRequest,
        _keep_tail: Option<usize>,
    ) -> Result<KubeResponse, TransportError> {
        Ok(if request.method == http::Method::GET {
            answer(200, &serde_json::json!({ "items": [] }))
        } else {
            answer(404, &serde_json::json!({ "kind": "Status", "code": 404 }))
        })
    }

    async fn watch(&self, _request: KubeRequest) -> kube::WatchAnswer {
        no_watch()
    }
}

/// Credentials from a test: fixed ones (or none), each ask counted.
#[derive(Debug)]
pub struct FakeCredentials {
    credentials: Option<aws_credential_types::Credentials>,
    asked: Mutex<usize>,
}

impl FakeCredentials {
    /// Always `credentials`.
    #[must_use]
    pub fn fixed(credentials: aws_credential_types::Credentials) -> Self {
        Self {
            credentials: Some(credentials),
            asked: Mutex::new(0),
        }
    }

    /// Never any: every ask is `CredentialsError::Load`.
    #[must_use]
    pub fn none() -> Self {
        Self {
            credentials: None,
            asked: Mutex::new(0),
        }
    }

    /// How many times credentials were asked for.
    #[must_use]
    pub fn asked(&self) -> usize {
        self.asked.lock().map(|a| *a).unwrap_or_default()
    }
}

#[async_trait]
impl CredentialSource for FakeCredentials {
    async fn credentials(
        &self,
        _role_arn: Option<&str>,
    ) -> Result<aws_credential_types::Credentials, CredentialsError> {
        if let Ok(mut a) = self.asked.lock() {
            *a += 1;
        }
        self.credentials
            .clone()
            .ok_or_else(|| CredentialsError::Load("no credentials in this test".into()))
    }
}

/// A hand-off that records each poll and answers from a script (the last answer
/// repeating; `Ok` when the script is empty).
#[derive(Debug, Default)]
pub struct RecordingHandOff {
    script: Mutex<Vec<Result<(), HandOffError>>>,
    polls: Mutex<Vec<NextPoll>>,
}

impl RecordingHandOff {
    /// A hand-off answering from `script`.
    #[must_use]
    pub fn answering(script: Vec<Result<(), HandOffError>>) -> Self {
        Self {
            script: Mutex::new(script),
            polls: Mutex::new(Vec::new()),
        }
    }

    /// The polls handed off (every try).
    #[must_use]
    pub fn polls(&self) -> Vec<NextPoll> {
        self.polls.lock().map(|p| p.clone()).unwrap_or_default()
    }
}

#[async_trait]
impl HandOff for RecordingHandOff {
    async fn hand_off(&self, poll: &NextPoll) -> Result<(), HandOffError> {
        if let Ok(mut p) = self.polls.lock() {
            p.push(poll.clone());
        }
        let mut script = self
            .script
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match script.len() {
            0 => Ok(()),
            1 => script[0].clone(),
            _ => script.remove(0),
        }
    }

    /// The polls handed off for `key` (or a fresh key of it) past `attempt`, as if
    /// each were still waiting: by the attempt its name says, as the scheduler lists
    /// them, the latest [`PENDING_READ`](crate::ports::handoff::PENDING_READ) first.
    async fn pending_after(
        &self,
        key: &str,
        attempt: u32,
    ) -> Result<Vec<(u32, String)>, HandOffError> {
        let mut pending: Vec<(u32, String)> = self
            .polls()
            .into_iter()
            .filter(|p| {
                (p.key == key || p.key.starts_with(&format!("{key}-"))) && p.attempt > attempt
            })
            .map(|p| (p.attempt, p.input))
            .collect();
        pending.sort_by_key(|p| std::cmp::Reverse(p.0));
        pending.truncate(crate::ports::handoff::PENDING_READ);
        Ok(pending)
    }
}

impl Deps {
    /// The ports for a test: default settings, `connector` and `callback` as given, the
    /// system clock, and the null poller, EKS and archive.
    ///
    /// # Panics
    /// Never: the default settings are valid.
    #[must_use]
    pub fn test(connector: Arc<dyn Connector>, callback: Arc<dyn TaskCallback>) -> Self {
        let settings = Settings::from_lookup(|_| None).unwrap_or_else(|e| panic!("{e}"));
        Self {
            settings,
            connector,
            callback,
            handoff: Arc::new(NoPoller),
            clock: Arc::new(SystemClock),
            eks: Arc::new(NoEks::new("a test without EKS")),
            archive: Arc::new(NoArchive),
            seal: Arc::new(LocalSeal::default()),
        }
    }
}
