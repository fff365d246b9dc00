#!/usr/bin/env bash
# make deploy-local: the release (`make release`: dist/eks-task-worker-<version>/, its
# packaged template and arm64 zips, not a second build) deployed by the real SAM CLI
# (`sam deploy --template-file`) to LocalStack's CloudFormation, then the example state
# machine run on it: LocalStack's Step Functions invokes the deployed run-job function,
# whose execution environment runs the deployed zip's bootstrap (under qemu-aarch64 on
# an x86_64 host; scripts/local-deploy/executor), which runs the Job on the local world's
# cluster and answers LocalStack's task token. Needs the local world (run under
# with-world.sh).
# LocalStack listens on 127.0.0.1:$DEPLOY_LOCALSTACK_PORT (14567) and is stopped at the end.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
D="${LOCAL_WORLD_DIR:-$REPO/.local-world}"
CACHE="${EKS_TW_CACHE:-$HOME/.cache/eks-task-worker}"
PORT="${DEPLOY_LOCALSTACK_PORT:-14567}"
VERSION=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' "$REPO/Cargo.toml")
RELEASE="${RELEASE_DIR:-$REPO/dist}/eks-task-worker-$VERSION"
OUT="$D/deploy"
say() { printf '[deploy-local %(%H:%M:%S)T] %s\n' -1 "$*"; }
[ -f "$D/world.json" ] || { say "the local world is not up: make local-up" >&2; exit 1; }
[ -f "$RELEASE/template.yaml" ] || { say "no release in $RELEASE: make release" >&2; exit 1; }
(cd "$RELEASE" && sha256sum --quiet -c SHA256SUMS) || { say "$RELEASE does not match its SHA256SUMS" >&2; exit 1; }
if [ "$(uname -m)" != aarch64 ] && ! command -v qemu-aarch64 >/dev/null; then
  say "the release's arm64 functions need qemu-aarch64 on this $(uname -m) host: apt-get install qemu-user libc6-arm64-cross" >&2; exit 1
fi
if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
  say "port $PORT is taken: set DEPLOY_LOCALSTACK_PORT" >&2; exit 1
fi
rm -rf "$OUT"; mkdir -p "$OUT/tmp" "$OUT/volume" "$OUT/logs"
say "starting LocalStack (CloudFormation, Lambda with the worker's executor, and the stack's services) on 127.0.0.1:$PORT"
# CLEAR_TMP_FOLDER=0 and its own TMPDIR: LocalStack empties its temp folder at start and
# stop, which would pull it from under the world's own LocalStack.
setsid env TMPDIR="$OUT/tmp" CLEAR_TMP_FOLDER=0 GATEWAY_SERVER=hypercorn GATEWAY_LISTEN="127.0.0.1:$PORT" DNS_ADDRESS=0 \
  LOCALSTACK_VOLUME_DIR="$OUT/volume" PERSISTENCE=0 SKIP_INFRA_DOWNLOADS=1 SQS_ENDPOINT_STRATEGY=path \
  SERVICES=cloudformation,s3,iam,sts,lambda,sqs,logs,cloudwatch,scheduler,stepfunctions,events,sns,kms \
  PYTHONPATH="$HERE/executor" LAMBDA_RUNTIME_EXECUTOR=ekstw \
  EKSTW_WORLD="$D/world.json" EKSTW_LOGS="$OUT/logs" \
  "$CACHE/localstack-venv/bin/python" -m localstack.runtime.main > "$OUT/localstack.log" 2>&1 < /dev/null &
echo $! > "$OUT/localstack.pid"
stop() {
  local pid; pid=$(cat "$OUT/localstack.pid")
  kill "$pid" 2>/dev/null || return 0
  for _ in $(seq 60); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.5; done
  say "LocalStack did not stop in 30 s: killing it"; kill -9 -- "-$pid" 2>/dev/null || kill -9 "$pid" 2>/dev/null || true
}
trap stop EXIT
for _ in $(seq 180); do
  curl -sf "http://127.0.0.1:$PORT/_localstack/health" >/dev/null && break
  kill -0 "$(cat "$OUT/localstack.pid")" 2>/dev/null || { tail -20 "$OUT/localstack.log" >&2; say "LocalStack died" >&2; exit 1; }
  sleep 0.5
done
cd "$REPO"
"$CACHE/venv/bin/python" "$HERE/deploy_local.py" --endpoint "http://127.0.0.1:$PORT" --world "$D/world.json" \
  --sam "$CACHE/tools-venv/bin/sam" --template "$RELEASE/template.yaml" --stack "${DEPLOY_STACK:-ekstw-local}"
