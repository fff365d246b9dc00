#!/usr/bin/env bash
# Runs a test command (make test: `cargo test --workspace --no-fail-fast`, every test
# binary to its end), keeps its output in target/test-output.log, and ends with a
# summary of every red test by binary (from each binary's closing list of failures,
# which a test's own output cannot split as it can a `test … FAILED` line);
# exits with the command's status.
set -uo pipefail
cd "$(dirname "$0")/.."
mkdir -p target
log=target/test-output.log
"$@" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
red=$(awk '
  /^ *Running / { bin = $2 }
  /^ *Doc-tests / { bin = "doc-tests " $2 }
  /^failures:$/ { names = 1; next }
  names && /^    [^ ]/ { sub(/^    /, ""); print "  " bin ": " $0; next }
  { names = 0 }
' "$log")
echo
if [ -n "$red" ]; then
  echo "== red tests ($(printf '%s\n' "$red" | wc -l)):"
  printf '%s\n' "$red"
elif [ "$rc" != 0 ]; then
  echo "== no test reported red, but the run failed (status $rc): a build error or a crashed test binary; see $log"
else
  echo "== every test green"
fi
exit "$rc"
