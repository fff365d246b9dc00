#!/usr/bin/env bash
# Runs every cargo-fuzz target (fuzz/fuzz_targets) for SECONDS each (default 60) and
# prints what each run did. Installs cargo-fuzz (crates.io) into the cache once. Uses a
# nightly toolchain when rustup has one, else the stable one with RUSTC_BOOTSTRAP=1.
# A crash stops the run; its input is left in fuzz/artifacts/<target>/ (keep it as a
# regression test, then fix).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
CACHE="${EKS_TW_CACHE:-$HOME/.cache/eks-task-worker}"
SECONDS_EACH="${1:-60}"
TARGETS="${FUZZ_TARGETS:-payloads budget handoff}"
say() { printf '[fuzz %(%H:%M:%S)T] %s\n' -1 "$*"; }

if [ ! -x "$CACHE/cargo-tools/bin/cargo-fuzz" ]; then
  say "installing cargo-fuzz into $CACHE/cargo-tools (once, ~3 min)"
  cargo install cargo-fuzz --locked --root "$CACHE/cargo-tools"
fi
export PATH="$CACHE/cargo-tools/bin:$PATH"
if rustup toolchain list | grep -q '^nightly'; then
  TOOLCHAIN=(+nightly)
else
  TOOLCHAIN=()
  export RUSTC_BOOTSTRAP=1
fi
cd "$REPO"
for t in $TARGETS; do
  mkdir -p "fuzz/corpus/$t"
  say "$t: ${SECONDS_EACH}s (cargo ${TOOLCHAIN[*]:-} fuzz run $t)"
  cargo "${TOOLCHAIN[@]}" fuzz run "$t" "fuzz/corpus/$t" -- -max_total_time="$SECONDS_EACH" -rss_limit_mb=4096 \
    -print_final_stats=1 2>&1 | tee "fuzz/$t.log" | grep -E '^(#[0-9]+ +(INITED|DONE)|stat::number_of_executed_units|stat::peak_rss|==[0-9]+== ERROR|SUMMARY)' || true
  if grep -q 'ERROR: libFuzzer\|panicked at\|SUMMARY: libFuzzer' "fuzz/$t.log"; then
    say "$t: CRASH, see fuzz/$t.log and fuzz/artifacts/$t/"; exit 1
  fi
  say "$t: $(grep -o 'stat::number_of_executed_units: [0-9]*' "fuzz/$t.log" | awk '{print $2}') runs, no crash"
done
