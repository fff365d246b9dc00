#!/usr/bin/env bash
# What the local world needs of the machine (README, "Quick start"), checked before
# anything long starts: names each thing missing and how to get it, exits 1 when one is.
# Usage: check-prerequisites.sh [--lint]   (--lint: also what `make lint` needs)
set -uo pipefail
CACHE="${EKS_TW_CACHE:-$HOME/.cache/eks-task-worker}"
missing=()
need() { missing+=("$1: $2"); }
version_at_least() { [ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -1)" = "$2" ]; }

command -v apt-get >/dev/null && command -v dpkg >/dev/null \
  || need "apt-get and dpkg" "a Debian (12, bookworm) or Debian-based system: the world installs Debian's etcd and kubernetes sources"
if [ "$(id -u)" != 0 ] && ! command -v sudo >/dev/null; then
  need "root or sudo" "the first run installs Debian packages (apt-get install sudo, as root)"
fi
for tool in curl openssl git make; do
  command -v "$tool" >/dev/null || need "$tool" "apt-get install $tool"
done
if command -v cargo >/dev/null && command -v rustc >/dev/null; then
  have=$(rustc --version | awk '{print $2}')
  version_at_least "$have" 1.94 || need "Rust 1.94 or newer (have $have)" "rustup update stable"
else
  need "cargo and rustc" "install rustup (https://rustup.rs), then: rustup default stable"
fi
if command -v python3 >/dev/null; then
  have=$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
  version_at_least "$have" 3.11 || need "Python 3.11 or newer as python3 (have $have)" "apt-get install python3 python3-venv, or pyenv install 3.11"
  python3 -c 'import venv, ensurepip' 2>/dev/null || need "python3's venv and ensurepip" "apt-get install python3-venv"
else
  need "python3 (3.11 or newer)" "apt-get install python3 python3-venv"
fi
if [ ! -x "$CACHE/localstack-venv/bin/python" ]; then
  found=""
  for c in "$HOME"/.pyenv/versions/3.13*/bin/python3 python3.13 python3.14; do
    "$c" -c 'import sys; sys.exit(sys.version_info < (3, 13))' 2>/dev/null && { found=$c; break; }
  done
  [ -n "$found" ] || need "Python 3.13 or newer (LocalStack)" "pyenv install 3.13, or a python3.13 on the PATH"
fi
if [ "${1:-}" = "--lint" ]; then
  command -v node >/dev/null && command -v npm >/dev/null || need "Node.js and npm (asl-validator, jsonata)" "apt-get install nodejs npm"
fi
mkdir -p "$CACHE" 2>/dev/null
free_kb=$(df -Pk "$CACHE" | awk 'NR==2 {print $4}')
[ -d "$CACHE/kube/bin" ] || [ "${free_kb:-0}" -ge $((8 * 1024 * 1024)) ] \
  || need "8 GB of free disk for the first run (have $((free_kb / 1024 / 1024)) GB under $CACHE)" "free some space"
mem_kb=$(awk '/MemAvailable/ {print $2}' /proc/meminfo 2>/dev/null)
# A warning only: what is free changes from moment to moment (a build running beside).
[ "${mem_kb:-0}" -ge $((2 * 1024 * 1024)) ] \
  || echo "[prerequisites] warning: $((${mem_kb:-0} / 1024)) MB of memory available; the world wants about 2 GB" >&2

if [ ${#missing[@]} -gt 0 ]; then
  echo "[prerequisites] this machine lacks what the local world needs (README, \"Quick start\"):" >&2
  for m in "${missing[@]}"; do echo "  - $m" >&2; done
  exit 1
fi
