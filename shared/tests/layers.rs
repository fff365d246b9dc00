//! The dependency direction of the library's layers, checked on its sources: a
//! wrong-way import fails this test, with the file, the line and the rule it breaks.
//!
//! `contract` → nothing; `config` → `contract`; `ports` → `contract`, `config`;
//! `adapters` → `contract`, `config`, `ports`; `task` → `contract`, `config`, `ports`
//! (never an adapter, the composition root or an IO crate); `wiring` → everything.
//! Inside `task`, the shared services never import an entry module, and the entry
//! modules never import each other except the two dispatchers.

use std::path::{Path, PathBuf};

/// The crates that do IO: only `adapters` (and `wiring`, which builds them) name them.
/// (`aws_credential_types` is not one: its `Credentials` is a plain value the
/// credentials port hands out.)
const IO_CRATES: [&str; 8] = [
    "aws_sdk_",
    "aws_sigv4",
    "aws_config",
    "aws_smithy_",
    "hyper",
    "kube::",
    "lambda_runtime",
    "http_body_util",
];

/// The task modules that are a function's entry point.
const ENTRIES: [&str; 7] = [
    "run_job",
    "call",
    "cluster_ops",
    "poller",
    "activity",
    "cleanup",
    "bootstrap",
];

/// The two dispatchers and the entry modules each may run.
const DISPATCHES: [(&str, &str); 3] = [
    ("activity", "run_job"),
    ("activity", "call"),
    ("poller", "cluster_ops"),
];

fn sources(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            sources(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    Ok(())
}

/// The code of a line, without its comment (doc comments name other modules freely).
fn code(line: &str) -> &str {
    line.find("//").map_or(line, |i| &line[..i])
}

/// The crate modules a line names: `crate::task::job::…` gives `["task", "job"]`.
fn crate_paths(line: &str) -> Vec<Vec<&str>> {
    code(line)
        .match_indices("crate::")
        .map(|(i, _)| {
            line[i + "crate::".len()..]
                .split("::")
                .take(2)
                .map(|s| s.trim_matches(|c: char| !c.is_alphanumeric() && c != '_'))
                .collect()
        })
        .collect()
}

/// The rule `line` of a file in `layer` (and `module`, inside `task`) breaks, if any.
fn broken_rule(layer: &str, module: &str, line: &str) -> Option<String> {
    let code = code(line);
    let io = IO_CRATES.iter().find(|c| {
        code.match_indices(*c).any(|(i, _)| {
            !code[..i].ends_with(|p: char| p == ':' || p == '_' || p.is_alphanumeric())
        })
    });
    for path in crate_paths(line) {
        let target = path[0];
        let allowed: &[&str] = match layer {
            "contract" => &["contract"],
            "config" => &["contract", "config"],
            "ports" => &["contract", "config", "ports"],
            "adapters" => &["contract", "config", "ports", "adapters", "testing"],
            "task" => &["contract", "config", "ports", "task", "testing"],
            _ => return None,
        };
        if !allowed.contains(&target) {
            return Some(format!("{layer} may not import crate::{target}"));
        }
        if layer == "task" && target == "task" {
            let to = path.get(1).copied().unwrap_or_default();
            let entry = ENTRIES.contains(&to) && to != module;
            let from_entry = ENTRIES.contains(&module);
            if entry && !from_entry {
                return Some(format!(
                    "the service task::{module} may not import the entry task::{to}"
                ));
            }
            if entry && !DISPATCHES.contains(&(module, to)) {
                return Some(format!(
                    "the entry task::{module} may not import the entry task::{to}"
                ));
            }
        }
    }
    match (layer, io) {
        ("contract" | "config" | "ports" | "task", Some(c)) => {
            Some(format!("{layer} may not name the IO crate {c}"))
        }
        ("contract", None) if code.contains("tokio") || code.contains("async") => {
            Some("contract is pure: no async code".to_owned())
        }
        _ => None,
    }
}

#[test]
fn no_layer_imports_a_layer_below_it_and_no_entry_imports_another() -> std::io::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&root, &mut files)?;
    assert!(files.len() > 40, "the sources were found: {}", files.len());
    let mut broken = Vec::new();
    for file in &files {
        let rel = file.strip_prefix(&root).unwrap_or(file);
        let mut parts = rel.iter().map(|p| p.to_str().unwrap_or_default());
        let layer = parts.next().unwrap_or_default().trim_end_matches(".rs");
        let module = parts.next().unwrap_or("mod").trim_end_matches(".rs");
        let text = std::fs::read_to_string(file)?;
        for (n, line) in text.lines().enumerate() {
            if let Some(rule) = broken_rule(layer, module, line) {
                broken.push(format!(
                    "{}:{}: {rule}\n    {}",
                    rel.display(),
                    n + 1,
                    line.trim()
                ));
            }
        }
    }
    assert!(
        broken.is_empty(),
        "wrong-way imports:\n{}",
        broken.join("\n")
    );
    Ok(())
}

#[test]
fn the_rules_catch_what_they_forbid() {
    assert!(broken_rule("contract", "payload", "use crate::ports::kube::KubeApi;").is_some());
    assert!(broken_rule("task", "job", "use crate::adapters::s3::S3Archive;").is_some());
    assert!(broken_rule("task", "finish", "use crate::task::run_job::handle;").is_some());
    assert!(broken_rule("task", "call", "use crate::task::run_job::handle;").is_some());
    assert!(broken_rule("task", "job", "let x = aws_sdk_s3::Client::new(c);").is_some());
    assert!(broken_rule("ports", "kube", "use crate::wiring::from_env;").is_some());
    assert!(broken_rule("adapters", "s3", "use crate::task::logs::Archived;").is_some());
    assert!(broken_rule("task", "activity", "crate::task::run_job::handle(p)").is_none());
    assert!(broken_rule("task", "poller", "crate::task::cluster_ops::poll(s)").is_none());
    assert!(broken_rule("task", "job", "// see crate::adapters::kube_client").is_none());
    assert!(broken_rule("task", "job", "use kube::Client;").is_some());
    assert!(broken_rule("task", "job", "use crate::ports::kube::KubeApi;").is_none());
}
