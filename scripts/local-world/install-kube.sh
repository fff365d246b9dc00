#!/usr/bin/env bash
# Installs the local world's Kubernetes control plane: kube-apiserver and
# kube-controller-manager built from Debian bookworm's `kubernetes` source package,
# and etcd from Debian's `etcd-server`. Idempotent: the two binaries are cached in
# $EKS_TW_CACHE/kube (default ~/.cache/eks-task-worker/kube) and the build is
# skipped when both are present and run.
set -euo pipefail
CACHE="${EKS_TW_CACHE:-$HOME/.cache/eks-task-worker}"
BIN="$CACHE/kube/bin"
say() { printf '[install-kube %(%H:%M:%S)T] %s\n' -1 "$*"; }
SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo

apt_install() {
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  say "apt-get install ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
}

apt_install etcd-server
if [ -x "$BIN/kube-apiserver" ] && [ -x "$BIN/kube-controller-manager" ] \
   && "$BIN/kube-apiserver" --version >/dev/null 2>&1; then
  say "cached: $("$BIN/kube-apiserver" --version) in $BIN"
  exit 0
fi

# The source package needs a deb-src entry for Debian's own archive.
if ! grep -rqs '^Types:.*deb-src' /etc/apt/sources.list.d/ && ! grep -qs '^deb-src' /etc/apt/sources.list; then
  say "adding a deb-src entry for bookworm"
  printf 'Types: deb-src\nURIs: http://deb.debian.org/debian\nSuites: bookworm\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
    | $SUDO tee /etc/apt/sources.list.d/eks-task-worker-src.sources >/dev/null
  $SUDO apt-get update -qq
fi
apt_install golang-1.19-go golang-github-modern-go-reflect2-dev dpkg-dev rsync

WORK="$CACHE/kube-build"
mkdir -p "$WORK"
cd "$WORK"
SRC=$(find . -maxdepth 1 -type d -name 'kubernetes-*' | head -n 1)
if [ -z "$SRC" ]; then
  say "apt-get source kubernetes (about 30 MB)"
  apt-get source -qq kubernetes >/dev/null
  SRC=$(find . -maxdepth 1 -type d -name 'kubernetes-*' | head -n 1)
fi
cd "$SRC"

# reflect2 v1.0.1 panics on POST of a Job under go 1.19: use Debian's v1.0.2.
R2=vendor/github.com/modern-go/reflect2
if ! grep -q 'modern-go/reflect2 v1.0.2' vendor/modules.txt; then
  say "replacing vendored reflect2 v1.0.1 with v1.0.2"
  rm -rf "$R2"; mkdir -p "$R2"
  rsync -a --exclude='*_test.go' --exclude='tests/' /usr/share/gocode/src/github.com/modern-go/reflect2/ "$R2/"
  sed -i 's#github.com/modern-go/reflect2 v1.0.1#github.com/modern-go/reflect2 v1.0.2#' go.mod vendor/modules.txt
  find . -name go.mod -path './staging/*' -exec sed -i 's#github.com/modern-go/reflect2 v1.0.1#github.com/modern-go/reflect2 v1.0.2#' {} +
  sed -i '/github.com\/modern-go\/reflect2 v1.0.1/d' go.sum
  find ./staging -name go.sum -exec sed -i '/github.com\/modern-go\/reflect2 v1.0.1/d' {} +
fi

say "building kube-apiserver and kube-controller-manager (about 13 minutes on 2 cores)"
export PATH=/usr/lib/go-1.19/bin:$PATH GOFLAGS=-mod=vendor GOPROXY=off CGO_ENABLED=0 GOCACHE="$CACHE/go-build-cache"
( while sleep 60; do say "still building ($(du -sh _output 2>/dev/null | cut -f1) in _output)"; done ) &
TICKER=$!
trap 'kill $TICKER 2>/dev/null || true' EXIT
make WHAT="cmd/kube-apiserver cmd/kube-controller-manager" 2>&1 | grep -v '^\s*$' | tail -n 40
kill $TICKER 2>/dev/null || true
OUT=$(find _output -type f -name kube-apiserver -path '*bin*' | head -n 1)
OUTDIR=$(dirname "$OUT")
mkdir -p "$BIN"
cp "$OUTDIR/kube-apiserver" "$OUTDIR/kube-controller-manager" "$BIN/"
say "installed $("$BIN/kube-apiserver" --version) into $BIN"
# Keep only the binaries: the build tree is about 2.2 GB.
cd "$CACHE" && rm -rf "$WORK" "$CACHE/go-build-cache"
