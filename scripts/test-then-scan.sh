#!/usr/bin/env bash
# make test's run inside the local world: the test command (every test binary), then,
# whatever it ended with, the secret scan over every function log of the whole run
# (scripts/scan-secrets.py: last, so that no binary's logs are left out). Exits
# non-zero when either failed.
set -uo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
D="${LOCAL_WORLD_DIR:-$(dirname "$HERE")/.local-world}"
"$@"
rc=$?
"${EKS_TW_CACHE:-$HOME/.cache/eks-task-worker}/venv/bin/python" "$HERE/scan-secrets.py" \
  --world "$D/world.json" --logs "$D/logs/lambda"
scan=$?
[ "$rc" != 0 ] && exit "$rc"
exit "$scan"
