#!/usr/bin/env bash
# make demo: the local world, the worker's real binaries on the local Lambda platform,
# and an example state machine that runs a Job and returns it with its logs.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(dirname "$HERE")"
D="${LOCAL_WORLD_DIR:-$REPO/.local-world}"
CACHE="${EKS_TW_CACHE:-$HOME/.cache/eks-task-worker}"
"$HERE/check-prerequisites.sh" || exit 1
echo "[demo] building the functions (cargo build --bins; the first time takes a few minutes)"
cargo build --bins -p run-job -p call -p poller -p cluster-ops -p activity -p cleanup
"$HERE/with-world.sh" bash -c '
  set -euo pipefail
  "'"$HERE"'/local-lambda/up.sh"
  trap "\"'"$HERE"'/local-lambda/down.sh\"" EXIT
  "'"$CACHE"'/venv/bin/python" "'"$HERE"'/local-lambda/demo.py" --world "'"$D"'/world.json" --definition "'"$REPO"'/statemachines/run-job.asl.json"
'
