//! The dependency direction of the library's layers, checked on its sources: a
//! wrong-way import fails this test, with the file, the line and the rule it breaks.
//!
//! `contract` → nothing; `config` → `contract`; `ports` → `contract`, `config`;
//! `adapters` → `contract`, `config`, `ports`; `task` → `contract`, `config`, `ports`
//! (never an adapter, the composition root or an IO crate); `wiring` → everything;
//! `testing` → everything but `wiring`. Inside `task`, the shared services never import
//! an entry module, and the entry modules never import each other except the two
//! dispatchers.
//!
//! Every path is read: `use` trees (nested groups, over several lines), paths in code,
//! and `super::` paths, resolved to the module they name.

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
    "kube",
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

/// The source without comments (doc comments name other modules freely) and without
/// string literals, line breaks kept.
fn code(source: &str) -> String {
    let mut out = String::with_capacity(source.len());
    let mut chars = source.chars().peekable();
    let (mut in_string, mut in_comment) = (false, false);
    while let Some(c) = chars.next() {
        if in_comment {
            if c == '\n' {
                in_comment = false;
                out.push('\n');
            }
            continue;
        }
        if in_string {
            match c {
                '\\' => {
                    chars.next();
                }
                '"' => in_string = false,
                '\n' => out.push('\n'),
                _ => {}
            }
            continue;
        }
        match c {
            '/' if chars.peek() == Some(&'/') => in_comment = true,
            '"' => {
                in_string = true;
                out.push_str("\"\"");
            }
            _ => out.push(c),
        }
    }
    out
}

/// The paths a `use` tree names, each as its segments: `a::{b, c::{d, e}}` gives
/// `a::b`, `a::c::d`, `a::c::e`.
fn use_paths(tree: &str) -> Vec<String> {
    // `x as y` names `x`; the rename goes before the white space does.
    let tree: String = tree
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace(" as ", "@")
        .split_whitespace()
        .collect();
    let Some(open) = tree.find('{') else {
        let path = tree.split('@').next().unwrap_or_default();
        return vec![path.trim_end_matches("::").to_owned()];
    };
    let prefix = &tree[..open];
    let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
    let (mut depth, mut start, mut out) = (0, 0, Vec::new());
    let mut items = Vec::new();
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items.push(&inner[start..]);
    for item in items.into_iter().filter(|i| !i.is_empty()) {
        for p in use_paths(item) {
            out.push(if p == "self" {
                prefix.trim_end_matches("::").to_owned()
            } else {
                format!("{prefix}{p}")
            });
        }
    }
    out
}

/// Every path in `code` with its line: the `use` trees expanded, and the paths in code.
/// A path on an indented line is inside an inline module (`mod tests`): its `super` is
/// the file's own module, which the path says by starting with `self::` instead.
fn paths(code: &str) -> Vec<(usize, String)> {
    let lines: Vec<&str> = code.lines().collect();
    let inline = |n: usize| lines.get(n - 1).is_some_and(|l| l.starts_with(' '));
    paths_in(code)
        .into_iter()
        .map(|(n, p)| match p.strip_prefix("super::") {
            Some(rest) if inline(n) && rest.starts_with("super::") => (n, rest.to_owned()),
            Some(rest) if inline(n) => (n, format!("self::{rest}")),
            _ => (n, p),
        })
        .collect()
}

fn paths_in(code: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let line_of = |at: usize| code[..at].matches('\n').count() + 1;
    let mut rest = 0;
    while let Some(found) = code[rest..].find("use ") {
        let at = rest + found;
        let word_start =
            at == 0 || !code[..at].ends_with(|c: char| c.is_alphanumeric() || c == '_');
        let end = code[at..].find(';').map_or(code.len(), |e| at + e);
        if word_start {
            for p in use_paths(&code[at + 4..end]) {
                out.push((line_of(at), p));
            }
            rest = end;
        } else {
            rest = at + 4;
        }
    }
    for (n, line) in code.lines().enumerate() {
        let mut from = 0;
        while let Some(i) = line[from..].find("::") {
            let at = from + i;
            // The start of the path this `::` is in.
            let start = line[..at]
                .rfind(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .map_or(0, |s| s + 1);
            let end = line[at..]
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .map_or(line.len(), |e| at + e);
            out.push((n + 1, line[start..end].trim_end_matches(':').to_owned()));
            from = end.max(at + 2);
        }
    }
    out
}

/// The module path a path names from `module` (the file's module, as segments):
/// `crate::x::y` → `[x, y]`, `super::y` → the parent's `y`; `None` for other crates.
fn resolve(module: &[&str], path: &str) -> Option<Vec<String>> {
    let segments: Vec<&str> = path.trim_start_matches("::").split("::").collect();
    match segments.first().copied() {
        Some("crate") => Some(segments[1..].iter().map(|s| (*s).to_owned()).collect()),
        Some("self") => {
            let mut out: Vec<String> = module.iter().map(|s| (*s).to_owned()).collect();
            out.extend(segments[1..].iter().map(|s| (*s).to_owned()));
            Some(out)
        }
        Some("super") => {
            let ups = segments.iter().take_while(|s| **s == "super").count();
            let base = module.len().saturating_sub(ups);
            let mut out: Vec<String> = module[..base].iter().map(|s| (*s).to_owned()).collect();
            out.extend(segments[ups..].iter().map(|s| (*s).to_owned()));
            Some(out)
        }
        _ => None,
    }
}

/// The rule that `path`, named in `module`, breaks, if any.
fn broken_rule(module: &[&str], path: &str) -> Option<String> {
    let layer = module.first().copied().unwrap_or_default();
    let here = module.get(1).copied().unwrap_or("mod");
    let root = path.trim_start_matches("::");
    if let Some(c) = IO_CRATES.iter().find(|c| {
        root.split("::").next().is_some_and(|first| {
            first.starts_with(*c) && (c.ends_with('_') || first == **c || c.starts_with("hyper"))
        })
    }) {
        return match layer {
            "contract" | "config" | "ports" | "task" => {
                Some(format!("{layer} may not name the IO crate {c}"))
            }
            _ => None,
        };
    }
    let target = resolve(module, path)?;
    let to_layer = target.first().map_or("", String::as_str);
    let allowed: &[&str] = match layer {
        "contract" => &["contract"],
        "config" => &["contract", "config"],
        "ports" => &["contract", "config", "ports"],
        "adapters" => &["contract", "config", "ports", "adapters", "testing"],
        "task" => &["contract", "config", "ports", "task", "testing"],
        "testing" => &["contract", "config", "ports", "adapters", "task", "testing"],
        _ => return None,
    };
    let names_a_module = to_layer.chars().all(|c| c.is_ascii_lowercase() || c == '_');
    if !to_layer.is_empty() && names_a_module && !allowed.contains(&to_layer) {
        return Some(format!("{layer} may not import crate::{to_layer}"));
    }
    if layer == "task" && to_layer == "task" {
        let to = target.get(1).map_or("", String::as_str);
        let entry = ENTRIES.contains(&to) && to != here;
        if entry && !ENTRIES.contains(&here) {
            return Some(format!(
                "the service task::{here} may not import the entry task::{to}"
            ));
        }
        if entry && !DISPATCHES.contains(&(here, to)) {
            return Some(format!(
                "the entry task::{here} may not import the entry task::{to}"
            ));
        }
    }
    None
}

/// Every rule `source` (the file of `module`) breaks: `(line, rule, path)`.
fn violations(module: &[&str], source: &str) -> Vec<(usize, String, String)> {
    let code = code(source);
    let mut out = Vec::new();
    if module.first() == Some(&"contract") {
        for (n, line) in code.lines().enumerate() {
            if line.contains("async ") || line.contains("tokio") || line.contains(".await") {
                out.push((
                    n + 1,
                    "contract is pure: no async code".to_owned(),
                    line.trim().to_owned(),
                ));
            }
        }
    }
    for (line, path) in paths(&code) {
        if let Some(rule) = broken_rule(module, &path) {
            out.push((line, rule, path));
        }
    }
    out
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
        let mut module: Vec<&str> = rel
            .iter()
            .map(|p| p.to_str().unwrap_or_default().trim_end_matches(".rs"))
            .collect();
        if module.last() == Some(&"mod") {
            module.pop();
        }
        let text = std::fs::read_to_string(file)?;
        for (line, rule, path) in violations(&module, &text) {
            broken.push(format!("{}:{line}: {rule}: {path}", rel.display()));
        }
    }
    assert!(
        broken.is_empty(),
        "wrong-way imports:\n{}",
        broken.join("\n")
    );
    Ok(())
}

/// The library's modules (as `a::b`) and the source of each.
fn modules() -> std::io::Result<Vec<(String, String)>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&root, &mut files)?;
    let mut out = Vec::new();
    for file in files {
        let rel = file.strip_prefix(&root).unwrap_or(&file).to_path_buf();
        let mut module: Vec<String> = rel
            .iter()
            .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_owned())
            .collect();
        if module.last().is_some_and(|m| m == "mod") {
            module.pop();
        }
        out.push((module.join("::"), std::fs::read_to_string(&file)?));
    }
    Ok(out)
}

#[test]
fn no_module_imports_one_that_imports_it_back() -> std::io::Result<()> {
    let modules = modules()?;
    let names: Vec<&str> = modules.iter().map(|(m, _)| m.as_str()).collect();
    // Each module's imports, as the modules they land in (the longest module a path
    // names), leaving out the module itself.
    let mut edges: std::collections::BTreeMap<&str, std::collections::BTreeSet<&str>> =
        std::collections::BTreeMap::new();
    for (module, source) in &modules {
        let segments: Vec<&str> = module.split("::").collect();
        // Test modules (last in a file) are left out: a unit test may use the test
        // doubles, which are built on the module under test.
        let source = source.split("#[cfg(test)]").next().unwrap_or_default();
        for (_, path) in paths(&code(source)) {
            let Some(target) = resolve(&segments, &path) else {
                continue;
            };
            let found = (1..=target.len())
                .rev()
                .map(|k| target[..k].join("::"))
                .find(|c| names.contains(&c.as_str()));
            if let Some(to) = found.and_then(|f| names.iter().find(|n| **n == f)) {
                if *to != module.as_str() {
                    edges.entry(module.as_str()).or_default().insert(to);
                }
            }
        }
    }
    // A circle is a module that reaches itself.
    let mut circles = Vec::new();
    for start in edges.keys() {
        let mut seen = std::collections::BTreeSet::new();
        let mut todo: Vec<&str> = edges[start].iter().copied().collect();
        while let Some(m) = todo.pop() {
            if m == *start {
                circles.push(*start);
                break;
            }
            if seen.insert(m) {
                todo.extend(edges.get(m).into_iter().flatten().copied());
            }
        }
    }
    assert!(edges.len() > 40, "imports were found: {}", edges.len());
    assert!(
        circles.is_empty(),
        "modules in an import circle: {circles:?}"
    );
    Ok(())
}

#[test]
fn the_rules_catch_what_they_forbid() {
    let broken = |module: &[&str], source: &str| !violations(module, source).is_empty();
    let job = ["task", "job"];
    assert!(broken(
        &["contract", "payload"],
        "use crate::ports::kube::KubeApi;"
    ));
    assert!(broken(&["contract", "payload"], "async fn f() {}"));
    assert!(broken(&job, "use crate::adapters::s3::S3Archive;"));
    assert!(broken(
        &["task", "finish"],
        "use crate::task::run_job::handle;"
    ));
    assert!(broken(
        &["task", "call"],
        "use crate::task::run_job::handle;"
    ));
    assert!(broken(
        &["task", "call"],
        "use crate::task::{answer, run_job};"
    ));
    assert!(broken(
        &job,
        "use crate::{\n    contract::x,\n    adapters::y,\n};"
    ));
    assert!(broken(&job, "let x = aws_sdk_s3::Client::new(c);"));
    assert!(broken(&job, "use ::kube::Client;"));
    assert!(broken(&job, "use kube as k;"));
    assert!(broken(
        &job,
        "let c = hyper_util::client::legacy::Client::builder();"
    ));
    assert!(broken(
        &["task", "logs", "archive"],
        "use super::super::super::adapters::s3;"
    ));
    assert!(broken(&["task"], "use super::wiring;"));
    assert!(broken(&["ports", "kube"], "use crate::wiring::from_env;"));
    assert!(broken(
        &["adapters", "s3"],
        "use crate::task::logs::Archived;"
    ));
    assert!(broken(&["testing"], "use crate::wiring::from_env;"));
    assert!(!broken(
        &["task", "activity"],
        "crate::task::run_job::handle(p)"
    ));
    assert!(!broken(
        &["task", "poller"],
        "crate::task::cluster_ops::poll(s)"
    ));
    assert!(!broken(&job, "// see crate::adapters::kube_client"));
    assert!(!broken(&job, "let m = \"crate::adapters::x\";"));
    assert!(!broken(
        &job,
        "use crate::ports::kube::KubeApi;\nkube.send(r).await"
    ));
    assert!(!broken(
        &["task", "logs", "archive"],
        "use super::Archived;"
    ));
    assert!(!broken(&["adapters", "s3"], "use aws_sdk_s3::Client;"));
    assert!(!broken(&["config"], "mod tests {\n    use super::*;\n}"));
    assert!(broken(
        &["task"],
        "mod tests {\n    use super::super::adapters::s3;\n}"
    ));
    assert!(!broken(&job, "use crate::task::telemetry::Metric as M;"));
}
