//! Micro-benchmarks: the result-budget trimmer and the bearer-token signer.

use std::hint::black_box;
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use criterion::{criterion_group, criterion_main, Criterion};
use serde_json::json;
use worker::task::logs::{result, ContainerLog, PlacedLog, Target};

fn logs(pods: usize, bytes: usize) -> Vec<PlacedLog> {
    let line = "2026-11-25T13:00:00Z INFO worker processed item 1234567 in 12 ms\n";
    let text: String = line.repeat(bytes / line.len());
    (0..pods)
        .flat_map(|p| {
            let text = text.clone();
            ["main", "sidecar"].map(move |c| PlacedLog {
                target: Target {
                    pod: format!("job-{p:03}"),
                    container: c.to_owned(),
                    init: false,
                },
                log: ContainerLog::Text {
                    text: text.clone(),
                    partial: false,
                    parse_json: true,
                },
            })
        })
        .collect()
}

fn budget(c: &mut Criterion) {
    let job = json!({ "kind": "Job", "metadata": { "name": "j" }, "status": { "succeeded": 1 } });
    let small = logs(2, 4096);
    c.bench_function("trim: 2 pods x 2 containers x 4 KiB (fits)", |b| {
        b.iter(|| result(black_box(&job), Some(black_box(&small)), &[]))
    });
    let big = logs(100, 2600);
    c.bench_function(
        "trim: 100 pods x 2 containers x 2.6 KiB (cut to fit)",
        |b| b.iter(|| result(black_box(&job), Some(black_box(&big)), &[])),
    );
    let one = logs(1, 1 << 20);
    c.bench_function("trim: 1 pod x 2 containers x 1 MiB (cut to fit)", |b| {
        b.iter(|| result(black_box(&job), Some(black_box(&one)), &[]))
    });
}

fn token(c: &mut Criterion) {
    let creds = Credentials::new(
        "AKIDEXAMPLE",
        "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        Some("session".into()),
        None,
        "bench",
    );
    let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_714_564_800);
    c.bench_function("token: presign GetCallerIdentity", |b| {
        b.iter(|| {
            worker::adapters::token::presign(black_box(&creds), "us-east-1", "my-cluster", at)
        })
    });
}

criterion_group!(benches, budget, token);
criterion_main!(benches);
