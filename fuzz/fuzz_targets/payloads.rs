//! Arbitrary bytes as a payload of every function: each parser either accepts it or
//! names an error; none panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Ok(payload) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    for result in [
        worker::contract::payload::parse_run_job(&payload).map(|_| ()),
        worker::contract::payload::parse_call(&payload).map(|_| ()),
        worker::contract::cluster_op::parse(&payload, std::time::UNIX_EPOCH).map(|_| ()),
    ] {
        if let Err(e) = result {
            assert!(e.name.starts_with("EksTaskWorker."), "{}", e.name);
            assert!(e.cause.is_object(), "{}", e.cause);
        }
    }
    let _ = serde_json::from_value::<worker::contract::poll_state::PollState>(payload.clone());
    let _ = serde_json::from_value::<worker::contract::poll_state::ClusterPoll>(payload);
});
