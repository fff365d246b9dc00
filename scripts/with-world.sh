#!/usr/bin/env bash
# Runs a command with the local world up: starts it when it is not running (and
# stops it again afterwards), reuses it when it is.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
D="${LOCAL_WORLD_DIR:-$(dirname "$HERE")/.local-world}"
started=0
if ! { [ -f "$D/pids/kube-apiserver.pid" ] && kill -0 "$(cat "$D/pids/kube-apiserver.pid")" 2>/dev/null; }; then
  started=1
fi
"$HERE/local-world/up.sh" >&2
if [ "$started" = 1 ]; then
  trap '"$HERE/local-world/down.sh"' EXIT
fi
"$@"
