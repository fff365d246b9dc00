#!/usr/bin/env bash
# Stops what scripts/local-world/up.sh started, by PID. Harmless when nothing runs.
set -uo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
D="${LOCAL_WORLD_DIR:-$REPO/.local-world}"
[ -d "$D/pids" ] || { echo "[local-down] nothing running"; exit 0; }
for name in podsim kube-controller-manager kube-apiserver localstack aws-world etcd; do
  f="$D/pids/$name.pid"
  [ -f "$f" ] || continue
  pid=$(cat "$f")
  if kill -0 "$pid" 2>/dev/null; then
    # Each part was started with setsid: its PID leads a process group of its own.
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && { kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null; }
    echo "[local-down] stopped $name ($pid)"
  fi
  rm -f "$f"
done
