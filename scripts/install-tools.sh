#!/usr/bin/env bash
# Installs the checking and packaging tools, cached under $EKS_TW_CACHE:
# aws-sam-cli and cfn-lint (a virtualenv), mkdocs (another), asl-validator and jsonata (npm). With --package also
# cargo-lambda and ziglang (cross-compiling the arm64 bootstrap binaries).
# Idempotent: reinstalls only when the pinned versions change.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
CACHE="${EKS_TW_CACHE:-$HOME/.cache/eks-task-worker}"
VENV="$CACHE/tools-venv"
NPM_DIR="$CACHE/npm-tools"
ASL_VALIDATOR_VERSION=4.0.0
JSONATA_VERSION=2.2.2
say() { printf '[install-tools %(%H:%M:%S)T] %s\n' -1 "$*"; }

want=$(sha256sum "$HERE/requirements-tools.txt" | cut -d' ' -f1)
if [ ! -x "$VENV/bin/sam" ] || [ "$(cat "$VENV/.requirements.sha256" 2>/dev/null)" != "$want" ]; then
  say "installing $(grep -v '^#' "$HERE/requirements-tools.txt" | tr '\n' ' ')into $VENV"
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip
  "$VENV/bin/pip" install -q -r "$HERE/requirements-tools.txt"
  echo "$want" > "$VENV/.requirements.sha256"
fi
if [ ! -x "$NPM_DIR/node_modules/.bin/asl-validator" ] || ! grep -q "\"version\": \"$ASL_VALIDATOR_VERSION\"" "$NPM_DIR/node_modules/asl-validator/package.json" 2>/dev/null \
  || ! grep -q "\"jsonata\": \"$JSONATA_VERSION\"" "$NPM_DIR/package.json" 2>/dev/null; then
  say "installing asl-validator@$ASL_VALIDATOR_VERSION and jsonata@$JSONATA_VERSION into $NPM_DIR"
  mkdir -p "$NPM_DIR"
  npm install --silent --no-audit --no-fund --save-exact --prefix "$NPM_DIR" "asl-validator@$ASL_VALIDATOR_VERSION" "jsonata@$JSONATA_VERSION" >/dev/null
fi
# The docs book (make lint builds it with --strict: a broken link or anchor fails).
DOCS_VENV="$CACHE/docs-venv"
MKDOCS_VERSION=1.6.1
if [ ! -x "$DOCS_VENV/bin/mkdocs" ] || ! "$DOCS_VENV/bin/mkdocs" --version | grep -q "version $MKDOCS_VERSION "; then
  say "installing mkdocs==$MKDOCS_VERSION into $DOCS_VENV"
  rm -rf "$DOCS_VENV"
  python3 -m venv "$DOCS_VENV"
  "$DOCS_VENV/bin/pip" install -q "mkdocs==$MKDOCS_VERSION"
fi
if [ "${1:-}" = "--package" ] && [ ! -x "$VENV/bin/cargo-lambda" ]; then
  say "installing cargo-lambda and ziglang into $VENV"
  "$VENV/bin/pip" install -q cargo-lambda==1.9.2 ziglang==0.15.1
fi
say "ready: $("$VENV/bin/sam" --version), cfn-lint $("$VENV/bin/cfn-lint" --version | awk '{print $2}'), asl-validator $ASL_VALIDATOR_VERSION, $("$DOCS_VENV/bin/mkdocs" --version | awk '{print $1, $3}')"
