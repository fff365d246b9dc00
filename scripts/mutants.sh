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
#
# For each, in turn: the patch is applied, the test run (its output in
# target/mutants/<M>.log), the patch taken back out whatever happened. A red test is
# "killed", a green one "survived". One line per mutation; the exit status is non-zero
# when one survived, when a patch no longer applies to the tree (it must be made
# again on the code as it is now: "stale"), or when the mutated tree does not build
# ("broken": red for the wrong reason). Arguments: mutation names to run only
# those (M119 M122), else every one. The tree must have no uncommitted change in the
# files a patch touches.
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
for patch in "${patches[@]}"; do
  m=$(basename "$patch" .patch)
  test_cmd=$(sed -n 's/^Test: //p' "$patch" | head -1)
  needs=$(sed -n 's/^Needs: //p' "$patch" | head -1)
  if [ ! -f "$patch" ] || [ -z "$test_cmd" ]; then
    echo "$m: no such patch, or no Test: line"; bad=1; continue
  fi
  if ! git apply --check "$patch" 2>/dev/null; then
    echo "$m: stale (the patch does not apply to this tree)"; bad=1; continue
  fi
  git apply "$patch"
  # Interrupted, the tree is put back as it was.
  trap 'git apply -R "$patch"; exit 130' INT TERM
  t0=$(date +%s)
  if [ "$needs" = new-world ]; then
    scripts/local-world/down.sh >/dev/null 2>&1
    cargo build --workspace --bins >"target/mutants/$m.log" 2>&1 &&
      scripts/with-world.sh bash -c "$test_cmd" >>"target/mutants/$m.log" 2>&1
  elif [ "$needs" = world ]; then
    cargo build --workspace --bins >"target/mutants/$m.log" 2>&1 &&
      scripts/with-world.sh bash -c "$test_cmd" >>"target/mutants/$m.log" 2>&1
  else
    bash -c "$test_cmd" >"target/mutants/$m.log" 2>&1
  fi
  rc=$?
  trap - INT TERM
  git apply -R "$patch"
  if grep -qE '^error\[E[0-9]+\]|could not compile' "target/mutants/$m.log"; then
    # Red because it does not build is not red because a test caught it.
    echo "$m: BROKEN (the mutated tree does not build); see target/mutants/$m.log"
    bad=1
  elif [ "$rc" -ne 0 ]; then
    echo "$m: killed ($(( $(date +%s) - t0 )) s): $(sed -n 's/^Mutation: M[0-9]*[a-z]* //p' "$patch" | head -1)"
  else
    echo "$m: SURVIVED ($(( $(date +%s) - t0 )) s): $(sed -n 's/^Mutation: M[0-9]*[a-z]* //p' "$patch" | head -1); see target/mutants/$m.log"
    bad=1
  fi
done
# The binaries again as the tree has them (a world mutation rebuilt them with it).
if grep -lqE '^Needs: (new-)?world' "${patches[@]}" 2>/dev/null; then
  cargo build --workspace --bins >/dev/null 2>&1
fi
echo "== ${#patches[@]} mutation(s) in $(( $(date +%s) - started )) s"
exit "$bad"
