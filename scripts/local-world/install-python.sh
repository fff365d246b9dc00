#!/usr/bin/env bash
# Installs the local world's Python side (moto, botocore) into a virtualenv cached at
# $EKS_TW_CACHE/venv. Idempotent: reinstalls only when requirements.txt changed.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
CACHE="${EKS_TW_CACHE:-$HOME/.cache/eks-task-worker}"
VENV="$CACHE/venv"
say() { printf '[install-python %(%H:%M:%S)T] %s\n' -1 "$*"; }
stamp="$VENV/.requirements.sha256"
want=$(sha256sum "$HERE/requirements.txt" | cut -d' ' -f1)
if [ -x "$VENV/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
  say "cached: $("$VENV/bin/python" -c 'import moto, botocore; print("moto", moto.__version__, "botocore", botocore.__version__)')"
  exit 0
fi
say "creating $VENV and installing $(grep -v '^#' "$HERE/requirements.txt" | tr '\n' ' ')"
python3 -m venv "$VENV"
"$VENV/bin/pip" install -q --upgrade pip
"$VENV/bin/pip" install -q -r "$HERE/requirements.txt"
echo "$want" > "$stamp"
say "installed: $("$VENV/bin/python" -c 'import moto, botocore; print("moto", moto.__version__, "botocore", botocore.__version__)')"
