//! The command line as a user meets it, through the built binary: every command answers
//! `--help` (exit 0), refuses a misspelt flag and a flag without its value by name
//! (exit 2), and docs/cli.md shows each command's help exactly as the program prints it.

// Test helpers fail the test by panicking.
#![allow(clippy::panic)]

use std::path::PathBuf;
use std::process::{Command, Output};

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_eks-task-worker"))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{e}"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The commands `--help` lists (all but `help`).
fn commands() -> Vec<String> {
    let help = text(&run(&["--help"]).stdout);
    let list = help
        .split("Commands:\n")
        .nth(1)
        .unwrap_or_else(|| panic!("no command list in:\n{help}"));
    list.lines()
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_owned)
        .collect()
}

/// The long flags that take a value in `help` (`--cluster <NAME>`).
fn value_flags(help: &str) -> Vec<String> {
    help.lines()
        .filter_map(|l| {
            let l = l.trim_start();
            let flag = l.split_whitespace().next()?;
            let next = l.split_whitespace().nth(1)?;
            (flag.starts_with("--") && next.starts_with('<')).then(|| flag.to_owned())
        })
        .collect()
}

#[test]
fn every_command_answers_help_and_refuses_what_it_does_not_know() {
    let commands = commands();
    assert_eq!(
        commands,
        [
            "token",
            "kubeconfig",
            "invoke",
            "bootstrap",
            "migrate",
            "check",
            "completions"
        ]
    );
    let version = run(&["--version"]);
    assert!(version.status.success());
    assert_eq!(
        text(&version.stdout).trim(),
        format!("eks-task-worker {}", env!("CARGO_PKG_VERSION"))
    );
    for command in &commands {
        let help = run(&[command, "--help"]);
        assert_eq!(help.status.code(), Some(0), "{command} --help");
        let help = text(&help.stdout);
        assert!(help.contains("Usage: eks-task-worker"), "{command}: {help}");

        let misspelt = run(&[command, "--no-such-flag", "x"]);
        assert_eq!(misspelt.status.code(), Some(2), "{command} --no-such-flag");
        let said = text(&misspelt.stderr);
        assert!(said.contains("'--no-such-flag'"), "{command}: {said}");
        assert!(misspelt.stdout.is_empty(), "{command}: nothing done");

        for flag in value_flags(&help) {
            let bare = run(&[command, &flag]);
            assert_eq!(
                bare.status.code(),
                Some(2),
                "{command} {flag} without a value"
            );
            let said = text(&bare.stderr);
            assert!(
                said.contains(&format!("'{flag} <")),
                "{command} {flag}: {said}"
            );
        }
    }
    // The misspelling the issue met: --role for --role-arn mints nothing.
    let role = run(&[
        "token",
        "--cluster",
        "prod",
        "--role",
        "arn:aws:iam::1:role/r",
    ]);
    assert_eq!(role.status.code(), Some(2));
    assert!(role.stdout.is_empty());
    assert!(
        text(&role.stderr).contains("--role-arn"),
        "clap suggests the flag"
    );
}

/// docs/cli.md as the program's own help makes it.
fn cli_page() -> String {
    let mut page = String::from(
        "# The command line\n\n\
         `eks-task-worker` (the release's `eks-task-worker-<version>-<arch>-linux.tar.gz`, or\n\
         `cargo install --path cli`) prints tokens and kubeconfigs, runs handlers, grants the\n\
         worker access to a cluster, and migrates and checks state machines. It exits 0 when\n\
         done, 1 when it failed (an error, or `check` finding a heartbeat too short) and 2 on\n\
         a usage error (an unknown or misspelt flag, a missing value), which it names.\n\n\
         This page is the program's own `--help`, command by command; a test\n\
         (`cli/tests/command_line.rs`) holds it to the binary, and\n\
         `UPDATE_CLI_PAGE=1 cargo test -p eks-task-worker --test command_line` writes it again.\n\n",
    );
    page.push_str("```\n$ eks-task-worker --help\n");
    page.push_str(&text(&run(&["--help"]).stdout));
    page.push_str("```\n");
    for command in commands() {
        page.push_str(&format!(
            "\n## {command}\n\n```\n$ eks-task-worker {command} --help\n"
        ));
        page.push_str(&text(&run(&[&command, "--help"]).stdout));
        page.push_str("```\n");
    }
    page
}

#[test]
fn the_cli_page_is_the_programs_own_help() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/cli.md");
    let want = cli_page();
    if std::env::var_os("UPDATE_CLI_PAGE").is_some() {
        std::fs::write(&path, &want).unwrap_or_else(|e| panic!("{e}"));
    }
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        have == want,
        "docs/cli.md is not the program's help: UPDATE_CLI_PAGE=1 cargo test -p eks-task-worker --test command_line"
    );
}
