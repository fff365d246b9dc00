#!/usr/bin/env bash
# Installs LocalStack (for activity tasks) into a virtualenv cached at
# $EKS_TW_CACHE/localstack-venv, with a Python >= 3.13 (pyenv's, or python3.13 on the
# PATH). Idempotent: reinstalls only when requirements-localstack.txt changed.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
CACHE="${EKS_TW_CACHE:-$HOME/.cache/eks-task-worker}"
VENV="$CACHE/localstack-venv"
REQ="$HERE/requirements-localstack.txt"
say() { printf '[install-localstack %(%H:%M:%S)T] %s\n' -1 "$*"; }
stamp="$VENV/.requirements.sha256"
want=$(sha256sum "$REQ" | cut -d' ' -f1)
if [ -x "$VENV/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
  say "cached: localstack $("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("localstack-core"))')"
  exit 0
fi
PY=""
# localstack-core 2026.3 imports warnings.deprecated: Python 3.13 or newer.
for c in "$HOME"/.pyenv/versions/3.13*/bin/python3 python3.13 python3.14; do
  if "$c" -c 'import sys; sys.exit(sys.version_info < (3, 13))' 2>/dev/null; then PY=$c; break; fi
done
[ -n "$PY" ] || { say "ERROR: LocalStack needs Python >= 3.13 (python3.13, or pyenv's 3.13); none found" >&2; exit 1; }
say "creating $VENV with $PY and installing LocalStack (a few minutes the first time)"
rm -rf "$VENV"
"$PY" -m venv "$VENV"
"$VENV/bin/pip" install -q --upgrade pip
"$VENV/bin/pip" install -q -r "$REQ"
echo "$want" > "$stamp"
say "installed: localstack $("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("localstack-core"))')"
