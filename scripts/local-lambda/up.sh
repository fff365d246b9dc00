#!/usr/bin/env bash
# Starts the local Lambda platform (scripts/local-lambda/lambda_platform.py) for the worker's
# debug binaries, against the running local world. Harmless when it already runs.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
D="${LOCAL_WORLD_DIR:-$REPO/.local-world}"
CACHE="${EKS_TW_CACHE:-$HOME/.cache/eks-task-worker}"
BIN="${LAMBDA_BIN_DIR:-${CARGO_TARGET_DIR:-$REPO/target}/debug}"
say() { printf '[lambda-up %(%H:%M:%S)T] %s\n' -1 "$*"; }
[ -f "$D/world.json" ] || { say "the local world is not up: make local-up" >&2; exit 1; }
if [ -f "$D/pids/lambda.pid" ] && kill -0 "$(cat "$D/pids/lambda.pid")" 2>/dev/null; then
  say "already running"; exit 0
fi
rm -f "$D/lambda.json"
setsid "$CACHE/venv/bin/python" "$HERE/lambda_platform.py" --world "$D/world.json" --bin "$BIN" --state "$D/lambda.json" \
  --logs "$D/logs/lambda" "$@" > "$D/logs/lambda-platform.log" 2>&1 < /dev/null &
echo $! > "$D/pids/lambda.pid"
for _ in $(seq 100); do [ -f "$D/lambda.json" ] && break; kill -0 "$(cat "$D/pids/lambda.pid")" 2>/dev/null || break; sleep 0.1; done
[ -f "$D/lambda.json" ] || { tail -20 "$D/logs/lambda-platform.log" >&2; say "ERROR: the platform did not start" >&2; exit 1; }
say "run-job, call, poller, cluster-ops, activity and cleanup running from $BIN (logs in $D/logs/lambda, AWS calls in $D/logs/aws-calls.jsonl)"
