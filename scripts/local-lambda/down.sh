#!/usr/bin/env bash
# Stops the local Lambda platform (and with it the functions' processes), by PID.
set -uo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
D="${LOCAL_WORLD_DIR:-$(cd "$HERE/../.." && pwd)/.local-world}"
f="$D/pids/lambda.pid"
[ -f "$f" ] || exit 0
pid=$(cat "$f")
if kill -0 "$pid" 2>/dev/null; then
  kill -TERM "$pid"
  for _ in $(seq 80); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$pid" 2>/dev/null && kill -KILL -- "-$pid" 2>/dev/null
  echo "[lambda-down] stopped the local Lambda platform ($pid)"
fi
rm -f "$f" "$D/lambda.json"
