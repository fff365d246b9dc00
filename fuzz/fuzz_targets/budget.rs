//! The result-budget trimmer with arbitrary logs (any bytes, any number of pods and
//! containers, JSON or not, partial or whole): the result always fits 262,144 bytes as
//! Step Functions counts them, and every container keeps its place. The size is
//! measured on the final bytes by serde_json, not by the worker's own count: compact
//! UTF-8 (AWS's measure) and as Python's `json.dumps` writes it (moto's: `", "` and
//! `": "` between items, every non-ASCII character escaped).
#![no_main]

use std::io::{self, Write};

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use serde_json::ser::Formatter;
use serde_json::{json, Value};
use worker::contract::budget::{serialized_len, RESULT_BUDGET};
use worker::task::logs::{result, ContainerLog, PlacedLog, Target};

/// Python's `json.dumps` defaults, as serde_json writes them.
struct PythonDumps;

impl Formatter for PythonDumps {
    fn begin_array_value<W: ?Sized + Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        if first { Ok(()) } else { w.write_all(b", ") }
    }

    fn begin_object_key<W: ?Sized + Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        if first { Ok(()) } else { w.write_all(b", ") }
    }

    fn begin_object_value<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        w.write_all(b": ")
    }

    fn write_string_fragment<W: ?Sized + Write>(&mut self, w: &mut W, fragment: &str) -> io::Result<()> {
        for c in fragment.chars() {
            if c.is_ascii() {
                w.write_all(&[c as u8])?;
            } else {
                for unit in c.encode_utf16(&mut [0; 2]) {
                    write!(w, "\\u{unit:04x}")?;
                }
            }
        }
        Ok(())
    }
}

/// The larger of the two measures.
fn measured(v: &Value) -> usize {
    let compact = serde_json::to_vec(v).map(|b| b.len()).unwrap_or(usize::MAX);
    let mut python = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(&mut python, PythonDumps);
    serde::Serialize::serialize(v, &mut ser).map(|()| compact.max(python.len())).unwrap_or(usize::MAX)
}
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
        if placed.iter().any(|p| p.target.pod == pod && p.target.container == container) {
            continue;
        }
        let text = String::from_utf8_lossy(&l.text).repeat(usize::from(l.repeat % 2048).max(1));
        let log = if l.failed {
            ContainerLog::Failed { error: "EKS.500".into(), cause: text }
        } else {
            ContainerLog::Text { text, partial: l.partial, parse_json: l.parse_json }
        };
        placed.push(PlacedLog { target: Target { pod, container, init: false }, log });
    }
    let out = result(&job, Some(&placed), &[]);
    assert!(measured(&out) <= RESULT_BUDGET, "{} bytes", measured(&out));
    if serialized_len(&job) + 64 * 200 < RESULT_BUDGET / 2 {
        for p in &placed {
            assert!(
                out.pointer(&format!("/logs/pods/{}/containers/{}", p.target.pod, p.target.container)).is_some(),
                "{}/{} lost its place",
                p.target.pod,
                p.target.container
            );
        }
    }
});
