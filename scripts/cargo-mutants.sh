#!/usr/bin/env bash
# make mutants-contract: cargo-mutants (crates.io) over the native contract
# (shared/src/contract/, pure code: no IO, no async), each mutant built and judged by
# the library's unit and integration tests (`cargo test -p worker --lib --tests`, no
# doctests). Installs cargo-mutants into the cache once.
#
# Where make mutants replays the protections RELIABILITY.md names, this asks a tool to
# invent the mutations: every operator, constant and return value it can change. A
# mutant no test notices (MISSED) fails the run, but for those excluded in
# .cargo/mutants.toml, each with why it is accepted. Prints the tool's own summary and
# the score; the outcomes are in target/cargo-mutants/mutants.out/.
# Arguments: more cargo-mutants options (--file shared/src/contract/curve.rs for one file).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
CACHE="${EKS_TW_CACHE:-$HOME/.cache/eks-task-worker}"
VERSION=27.1.0
say() { printf '[cargo-mutants %(%H:%M:%S)T] %s\n' -1 "$*"; }

if ! "$CACHE/cargo-tools/bin/cargo-mutants" mutants --version 2>/dev/null | grep -q " $VERSION\$"; then
  say "installing cargo-mutants $VERSION into $CACHE/cargo-tools (once, ~4 min)"
  cargo install cargo-mutants --locked --version "$VERSION" --root "$CACHE/cargo-tools"
fi
export PATH="$CACHE/cargo-tools/bin:$PATH"
cd "$REPO"
files=(--file 'shared/src/contract/*.rs')
for a in "$@"; do [ "$a" = --file ] || [ "$a" = -f ] && files=(); done
rc=0
cargo mutants --package worker "${files[@]}" --cargo-test-arg=--lib --cargo-test-arg=--tests \
  --no-shuffle --output target/cargo-mutants "$@" || rc=$?
out=target/cargo-mutants/mutants.out
count() { if [ -f "$out/$1.txt" ]; then grep -c . "$out/$1.txt" || true; else echo 0; fi; }
caught=$(count caught) missed=$(count missed) timeout=$(count timeout) unviable=$(count unviable)
score=$(awk -v c="$caught" -v m="$missed" -v t="$timeout" 'BEGIN { if (c + m + t) printf "%.1f", 100 * (c + t) / (c + m + t); else print "n/a" }')
say "caught $caught, missed $missed, timed out $timeout, unviable $unviable: score $score % (caught or timed out, of the viable)"
if [ "$missed" -gt 0 ]; then
  say "MISSED (no test noticed; add a test, or exclude it in .cargo/mutants.toml with why):"
  cat "$out/missed.txt"
fi
exit "$rc"
