//! The sample payloads in `events/` are valid inputs for their functions.

// Test helpers fail the test by panicking.
#![allow(clippy::panic)]

use serde_json::Value;

#[test]
fn every_sample_payload_parses() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../events");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap_or_else(|e| panic!("{e}")).path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_owned();
        let payload: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_default())
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        let parsed = if name.starts_with("run-job") {
            worker::contract::payload::parse_run_job(&payload).map(|_| ())
        } else if name.starts_with("call") {
            worker::contract::payload::parse_call(&payload).map(|_| ())
        } else if name.starts_with("cluster-ops") {
            worker::contract::cluster_op::parse(&payload, std::time::SystemTime::now()).map(|_| ())
        } else if name.starts_with("poller") {
            // A poll state as a schedule carries it: its seal beside its fields, its
            // task token sealed (its fields as the poller reads them once opened).
            let (_, _, mut state) =
                worker::contract::seal::open(&payload).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(
                worker::contract::seal::token_is_hidden(&state) && state.get("TaskToken").is_none(),
                "{name}: a schedule carries the token sealed"
            );
            if let Some(fields) = state.as_object_mut() {
                fields.shift_remove(worker::contract::seal::SEALED_TOKEN_FIELD);
                fields.insert("TaskToken".into(), Value::String("t".repeat(64)));
            }
            serde_json::from_value::<worker::contract::poll_state::PollState>(state)
                .map(|_| ())
                .map_err(|e| worker::contract::error::TaskError::invalid_input("$", e.to_string()))
        } else {
            panic!("{name}: an event file is named after its function");
        };
        parsed.unwrap_or_else(|e| panic!("{name}: {e}"));
        seen += 1;
    }
    assert!(seen >= 7, "the sample payloads are there");
}
