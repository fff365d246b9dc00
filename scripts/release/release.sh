#!/usr/bin/env bash
# make release: everything a user deploys, built once, in dist/eks-task-worker-<version>/:
#   functions/<name>.zip       the six functions' arm64 bootstrap binaries (cargo-lambda, zig)
#   template.yaml              the SAM template with each function's CodeUri on its zip and no
#                              build step: `sam deploy` or `aws cloudformation package` + `deploy`
#                              take it as it is, with no Rust, cargo-lambda or zig
#   eks-task-worker-<version>-<arch>-linux.tar.gz   the command-line tool, x86_64 and aarch64
#                              (glibc 2.17 and later, through zig)
#   statemachines/*.asl.json   the example state machines the template names (DeployExamples)
#   README.md LICENSE CHANGELOG.md   what the Serverless Application Repository shows
#   docs/*.md RELIABILITY.md BENCHMARKS.md SECURITY.md CONTRIBUTING.md   what the README links to
#   SHA256SUMS                 every file above
# and dist/eks-task-worker-<version>.tar.gz, the whole folder. Idempotent; a second run
# rebuilds only what changed. RELEASE_DIR sets where (default dist/).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
CACHE="${EKS_TW_CACHE:-$HOME/.cache/eks-task-worker}"
TOOLS="$CACHE/tools-venv/bin"
TARGET="${CARGO_TARGET_DIR:-$REPO/target}"
say() { printf '[release %(%H:%M:%S)T] %s\n' -1 "$*"; }
cd "$REPO"
VERSION=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' Cargo.toml)
[ -n "$VERSION" ] || { say "no version in Cargo.toml's [workspace.package]" >&2; exit 1; }
NAME="eks-task-worker-$VERSION"
OUT="${RELEASE_DIR:-$REPO/dist}/$NAME"
FUNCTIONS=(run-job call poller activity cluster-ops cleanup)

scripts/install-tools.sh --package
rustup target add aarch64-unknown-linux-gnu x86_64-unknown-linux-gnu >/dev/null
export PATH="$TOOLS:$PATH" CARGO_TARGET_DIR="$TARGET"
started=$(date +%s)
say "building the functions and the command-line tool for arm64 (a fresh clone: about 15 min on 2 cores)"
args=(); for f in "${FUNCTIONS[@]}"; do args+=(--bin "$f"); done
cargo-lambda lambda build --release --arm64 --locked --output-format zip "${args[@]}"
rm -rf "$OUT"; mkdir -p "$OUT/functions"
for f in "${FUNCTIONS[@]}"; do
  cp "$TARGET/lambda/$f/bootstrap.zip" "$OUT/functions/$f.zip"
done
# cargo-lambda leaves a binary as target/lambda/<name>/bootstrap, one architecture at a
# time: each is taken into the release before the next is built.
cli() {
  local arch=$1 stage="$OUT/.stage/$NAME-$1-linux"
  mkdir -p "$stage"
  cp "$TARGET/lambda/eks-task-worker/bootstrap" "$stage/eks-task-worker"
  cp LICENSE README.md "$stage/"
  tar -C "$OUT/.stage" --owner=0 --group=0 --numeric-owner --mtime='2000-01-01' --sort=name \
    -czf "$OUT/$NAME-$arch-linux.tar.gz" "$NAME-$arch-linux"
}
cargo-lambda lambda build --release --arm64 --locked --bin eks-task-worker
cli aarch64
say "building the command-line tool for x86_64"
cargo-lambda lambda build --release --x86-64 --locked --bin eks-task-worker
cli x86_64
rm -rf "$OUT/.stage"
python3 "$HERE/package_template.py" template.yaml "$OUT/template.yaml" "${FUNCTIONS[@]}"
cp README.md LICENSE CHANGELOG.md RELIABILITY.md BENCHMARKS.md SECURITY.md CONTRIBUTING.md "$OUT/"
rm -rf "$OUT/docs"; mkdir -p "$OUT/docs"; cp docs/*.md "$OUT/docs/"
mkdir -p "$OUT/statemachines"; cp statemachines/*.asl.json "$OUT/statemachines/"
"$TOOLS/cfn-lint" "$OUT/template.yaml"
"$TOOLS/python" "$HERE/check_release.py" "$OUT" "$VERSION"
# The README and the docs as shipped: every link resolves inside the release.
(cd "$OUT" && python3 "$REPO/scripts/check-links.py" README.md docs/*.md)
(cd "$OUT" && find . -type f ! -name SHA256SUMS -printf '%P\n' | LC_ALL=C sort | xargs sha256sum > SHA256SUMS)
tar -C "$(dirname "$OUT")" --owner=0 --group=0 --numeric-owner --mtime='2000-01-01' --sort=name \
  -czf "$OUT.tar.gz" "$NAME"
say "released $NAME in $(( $(date +%s) - started )) s: $OUT"
(cd "$OUT" && cat SHA256SUMS)
