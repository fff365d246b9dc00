#!/usr/bin/env bash
# make mutants: replays the mutations RELIABILITY.md cites that are committed as code
# (tests/mutants/M*.patch). Each patch takes one protection out; its header names the
# test that must go red without it:
#
#   Mutation: M119 <what it removes>
#   Test: <a command, run from the repository's root>
#   Needs: world        (optional: the binaries are built with the mutation and the
#                        test runs with the local world up)
#   Needs: new-world    (the same, the world started afresh with the mutation: a
#                        mutation of the world itself; stopped again after)
#   Red: <regex>        (optional, for a test that is not cargo's, such as the IAM
#                        check: the line its output must hold to count as red; green
#                        is its exit status 0 without that line)
#
# First each distinct test runs once on the tree as it is: it must be green there, or
# its red would prove nothing (a "baseline red" fails the run). Then for each patch, in
# turn: applied, its test run (the output in target/mutants/<M>.log), the patch taken
# back out whatever happened (on an interrupt too). Its outcome:
#   killed    a test ran and failed ("test result: FAILED");
#   SURVIVED  the tests ran green;
#   NO TEST   no test ran (a test renamed: its filter matches nothing);
#   BROKEN    the mutated tree does not build (red for the wrong reason);
#   ERROR     the command failed otherwise (the world did not start, …);
#   stale     the patch no longer applies (made again on the code as it is now).
# One line per mutation; the exit status is non-zero unless every one was killed.
# Arguments: mutation names to run only those (M119 M122), else every one. The files a
# patch touches must have no uncommitted change.
set -uo pipefail
cd "$(dirname "$0")/.."
mkdir -p target/mutants
patches=()
if [ "$#" -gt 0 ]; then
  for m in "$@"; do patches+=("tests/mutants/$m.patch"); done
else
  patches=(tests/mutants/M*.patch)
fi
bad=0
started=$(date +%s)

# Runs a patch's test as its Needs: says; output to $2.
run_test() {
  local test_cmd=$1 log=$2 needs=$3
  if [ "$needs" = new-world ]; then
    scripts/local-world/down.sh >/dev/null 2>&1
    cargo build --workspace --bins >"$log" 2>&1 &&
      scripts/with-world.sh bash -c "$test_cmd" >>"$log" 2>&1
  elif [ "$needs" = world ]; then
    cargo build --workspace --bins >"$log" 2>&1 &&
      scripts/with-world.sh bash -c "$test_cmd" >>"$log" 2>&1
  else
    bash -c "$test_cmd" >"$log" 2>&1
  fi
}

# What a run's log says, beside its status (and the patch's Red: line, if any).
outcome() {
  local rc=$1 log=$2 red=${3:-}
  if [ -n "$red" ]; then
    if grep -qE -- "$red" "$log"; then echo red
    elif [ "$rc" -eq 0 ]; then echo green
    else echo error
    fi
  elif grep -qE '^error\[E[0-9]+\]|could not compile' "$log"; then
    echo broken
  elif grep -qE '^test result: FAILED' "$log"; then
    echo red
  elif [ "$rc" -ne 0 ]; then
    echo error
  elif ! grep -qE '^running [1-9][0-9]* tests?$' "$log"; then
    echo none
  else
    echo green
  fi
}

# Every distinct test, once, on the tree as it is.
declare -A baseline=()
for patch in "${patches[@]}"; do
  [ -f "$patch" ] || continue
  test_cmd=$(sed -n 's/^Test: //p' "$patch" | head -1)
  needs=$(sed -n 's/^Needs: //p' "$patch" | head -1)
  red=$(sed -n 's/^Red: //p' "$patch" | head -1)
  key="$needs|$test_cmd|$red"
  [ -n "${baseline[$key]+x}" ] && continue
  log="target/mutants/baseline-${#baseline[@]}.log"
  run_test "$test_cmd" "$log" "${needs/new-world/world}"
  baseline[$key]=$(outcome $? "$log" "$red")
  if [ "${baseline[$key]}" != green ]; then
    echo "baseline ${baseline[$key]}: $test_cmd (see $log): its mutations prove nothing"
    bad=1
  fi
done

current=""
undo() {
  if [ -n "$current" ]; then
    git apply -R "$current" || echo "the tree is left with $current applied: git apply -R $current"
    current=""
  fi
}
trap 'undo; exit 130' INT TERM HUP
trap undo EXIT

for patch in "${patches[@]}"; do
  m=$(basename "$patch" .patch)
  test_cmd=$(sed -n 's/^Test: //p' "$patch" | head -1)
  needs=$(sed -n 's/^Needs: //p' "$patch" | head -1)
  red=$(sed -n 's/^Red: //p' "$patch" | head -1)
  what=$(sed -n 's/^Mutation: M[0-9]*[a-z]* //p' "$patch" | head -1)
  if [ ! -f "$patch" ] || [ -z "$test_cmd" ]; then
    echo "$m: no such patch, or no Test: line"; bad=1; continue
  fi
  if [ "${baseline["$needs|$test_cmd|$red"]:-}" != green ]; then
    echo "$m: not run (its test is not green on the tree as it is)"; bad=1; continue
  fi
  touched=$(sed -n 's#^diff --git a/\([^ ]*\) .*#\1#p' "$patch")
  # shellcheck disable=SC2086
  if ! git diff --quiet -- $touched; then
    echo "$m: not run ($touched has uncommitted changes)"; bad=1; continue
  fi
  if ! git apply --check "$patch" 2>/dev/null; then
    echo "$m: stale (the patch does not apply to this tree)"; bad=1; continue
  fi
  git apply "$patch"
  current=$patch
  t0=$(date +%s)
  run_test "$test_cmd" "target/mutants/$m.log" "$needs"
  result=$(outcome $? "target/mutants/$m.log" "$red")
  undo
  took="$(( $(date +%s) - t0 )) s"
  case "$result" in
    red) echo "$m: killed ($took): $what" ;;
    green) echo "$m: SURVIVED ($took): $what; see target/mutants/$m.log"; bad=1 ;;
    none) echo "$m: NO TEST ran ($took): $what; see target/mutants/$m.log"; bad=1 ;;
    broken) echo "$m: BROKEN, the mutated tree does not build ($took); see target/mutants/$m.log"; bad=1 ;;
    *) echo "$m: ERROR, the command failed without a red test ($took); see target/mutants/$m.log"; bad=1 ;;
  esac
done
# The binaries again as the tree has them (a world mutation rebuilt them with it).
if grep -lqE '^Needs: (new-)?world' "${patches[@]}" 2>/dev/null; then
  cargo build --workspace --bins >/dev/null 2>&1
fi
echo "== ${#patches[@]} mutation(s) in $(( $(date +%s) - started )) s"
exit "$bad"
