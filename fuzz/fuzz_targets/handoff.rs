//! The hand-off state round trip: whatever a poll state holds, the poller's input the
//! schedule carries reads back as the same state.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use worker::contract::poll_state::{ClusterState, LogState, PollState};

#[derive(Debug, Arbitrary)]
struct Case {
    cluster: String,
    endpoint: Option<String>,
    ca: Option<String>,
    role: Option<String>,
    region: Option<String>,
    namespace: String,
    job: String,
    uid: String,
    token: String,
    retrieve: bool,
    raw: bool,
    params: Vec<(String, String)>,
    archive: Option<String>,
    attempt: u32,
    failures: Vec<String>,
    failed_polls: u32,
    execution: Option<String>,
    image_pull: Option<u64>,
    unschedulable: Option<u64>,
}

fuzz_target!(|c: Case| {
    let state = PollState {
        cluster: ClusterState { cluster_name: c.cluster, endpoint: c.endpoint, certificate_authority: c.ca, role_arn: c.role, region: c.region },
        namespace: c.namespace,
        job_name: c.job,
        job_uid: c.uid,
        task_token: c.token,
        log_options: LogState { retrieve_logs: c.retrieve, raw_logs: c.raw, log_parameters: c.params, archive_uri: c.archive },
        attempt: c.attempt,
        next_delay_seconds: 0,
        curve: worker::contract::curve::PollCurve::default(),
        stuck_policy: worker::contract::stuck_policy::StuckPolicy { image_pull_seconds: c.image_pull, unschedulable_seconds: c.unschedulable, ..Default::default() },
        failures: c.failures,
        failed_polls: c.failed_polls,
        execution: c.execution,
    };
    let state = PollState { next_delay_seconds: state.curve.delay(state.attempt), ..state };
    let poll = state.next_poll().expect("a poll state always serializes");
    let back: PollState = serde_json::from_str(&poll.input).expect("the poller reads what was scheduled");
    assert_eq!(back, state);
});
