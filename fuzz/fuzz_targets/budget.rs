//! The result-budget trimmer with arbitrary logs (any bytes, any number of pods and
//! containers, JSON or not, partial or whole): the result always fits 262,144 bytes as
//! Step Functions counts them, and every container keeps its place.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use serde_json::json;
use worker::contract::budget::{serialized_len, RESULT_BUDGET};
use worker::task::logs::{result, ContainerLog, PlacedLog};

#[derive(Debug, Arbitrary)]
struct Log {
    pod: u8,
    container: u8,
    text: Vec<u8>,
    /// Repeat the text this many times (big logs from small inputs).
    repeat: u16,
    partial: bool,
    parse_json: bool,
    failed: bool,
}

#[derive(Debug, Arbitrary)]
struct Case {
    job_padding: u16,
    logs: Vec<Log>,
}

fuzz_target!(|case: Case| {
    let job = json!({ "apiVersion": "batch/v1", "kind": "Job", "metadata": { "name": "j", "annotations": { "pad": "p".repeat(usize::from(case.job_padding) * 8) } }, "status": { "succeeded": 1 } });
    let mut placed: Vec<PlacedLog> = Vec::new();
    for l in case.logs.iter().take(64) {
        let (pod, container) = (format!("pod-{}", l.pod % 16), format!("c-{}", l.container % 8));
        if placed.iter().any(|p| p.pod == pod && p.container == container) {
            continue;
        }
        let text = String::from_utf8_lossy(&l.text).repeat(usize::from(l.repeat % 2048).max(1));
        let log = if l.failed {
            ContainerLog::Failed { error: "EKS.500".into(), cause: text }
        } else {
            ContainerLog::Text { text, partial: l.partial, parse_json: l.parse_json }
        };
        placed.push(PlacedLog { pod, container, log });
    }
    let out = result(&job, Some(&placed), &[]);
    assert!(serialized_len(&out) <= RESULT_BUDGET, "{} bytes", serialized_len(&out));
    if serialized_len(&job) + 64 * 200 < RESULT_BUDGET / 2 {
        for p in &placed {
            assert!(
                out.pointer(&format!("/logs/pods/{}/containers/{}", p.pod, p.container)).is_some(),
                "{}/{} lost its place",
                p.pod,
                p.container
            );
        }
    }
});
