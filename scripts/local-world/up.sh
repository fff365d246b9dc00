#!/usr/bin/env bash
# Starts the local world on 127.0.0.1: etcd, kube-apiserver with EKS-style token
# authentication, kube-controller-manager, the pod simulator, and moto with the
# authentication webhook. Installs and builds what is missing first (cached).
# Writes the connection facts to $LOCAL_WORLD_DIR/world.json (and world.env).
# Starting it twice is harmless. Stop it with scripts/local-world/down.sh.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
CACHE="${EKS_TW_CACHE:-$HOME/.cache/eks-task-worker}"
D="${LOCAL_WORLD_DIR:-$REPO/.local-world}"
ETCD_PORT="${ETCD_PORT:-23790}"
ETCD_PEER_PORT="${ETCD_PEER_PORT:-23800}"
# etcd reads every ETCD_* variable of its environment as a flag: these are ours only.
export -n ETCD_PORT ETCD_PEER_PORT
API_PORT="${API_PORT:-16443}"
KUBELET_PORT="${KUBELET_PORT:-20250}"
MOTO_PORT="${MOTO_PORT:-15000}"
WEBHOOK_PORT="${WEBHOOK_PORT:-15001}"
LOCALSTACK_PORT="${LOCALSTACK_PORT:-14566}"
CLUSTER="${LOCAL_CLUSTER_NAME:-local-eks}"
NAMESPACE="${LOCAL_NAMESPACE:-jobs}"
REGION="${AWS_REGION:-us-east-1}"
say() { printf '[local-up %(%H:%M:%S)T] %s\n' -1 "$*"; }
die() { say "ERROR: $*" >&2; exit 1; }

alive() { [ -f "$D/pids/$1.pid" ] && kill -0 "$(cat "$D/pids/$1.pid")" 2>/dev/null; }
admin_curl() { curl -sS --max-time 10 --cacert "$D/pki/ca.crt" --cert "$D/pki/admin.crt" --key "$D/pki/admin.key" "$@"; }

if [ -f "$D/world.json" ] && alive etcd && alive kube-apiserver && alive kube-controller-manager && alive aws-world && alive podsim && alive localstack \
   && admin_curl -fo /dev/null "https://127.0.0.1:$API_PORT/readyz" 2>/dev/null; then
  say "already running (facts in $D/world.json)"
  exit 0
fi
# Something is half up: stop it and start afresh (moto keeps no state across restarts).
[ -d "$D/pids" ] && "$HERE/down.sh" >/dev/null 2>&1 || true

"$HERE/../check-prerequisites.sh" || die "install what is missing, then run this again"
for spec in "ETCD_PORT:$ETCD_PORT" "ETCD_PEER_PORT:$ETCD_PEER_PORT" "API_PORT:$API_PORT" "KUBELET_PORT:$KUBELET_PORT" "MOTO_PORT:$MOTO_PORT" "WEBHOOK_PORT:$WEBHOOK_PORT" "LOCALSTACK_PORT:$LOCALSTACK_PORT"; do
  name=${spec%%:*}; port=${spec##*:}
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    die "port $port ($name) is already in use by another program on 127.0.0.1; stop it or choose another port with $name=<port> make local-up"
  fi
done

"$HERE/install-kube.sh"
"$HERE/install-python.sh"
"$HERE/install-localstack.sh"
KUBE="$CACHE/kube/bin"
PY="$CACHE/venv/bin/python"

rm -rf "$D"; mkdir -p "$D/pki" "$D/pids" "$D/logs" "$D/etcd"
say "making certificates in $D/pki"
(
  cd "$D/pki"
  openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 3650 -subj "/CN=eks-task-worker-local-ca" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
  leaf() { # name subject extensions
    openssl req -newkey rsa:2048 -nodes -keyout "$1.key" -out "$1.csr" -subj "$2" 2>/dev/null
    printf '%s\n' "$3" > "$1.ext"
    openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -out "$1.crt" -days 3650 -extfile "$1.ext" 2>/dev/null
  }
  leaf apiserver "/CN=kube-apiserver" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default"
  leaf admin "/O=system:masters/CN=local-admin" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth"
  leaf kubelet "/CN=sim-node" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,DNS:sim-node"
  openssl genrsa -out sa.key 2048 2>/dev/null
  openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
)

start() { # name command...
  local name=$1; shift
  setsid "$@" >"$D/logs/$name.log" 2>&1 < /dev/null &
  echo $! > "$D/pids/$name.pid"
}
wait_for() { # what seconds command...
  local what=$1 secs=$2; shift 2
  for _ in $(seq $((secs * 5))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done
  say "$what did not come up in ${secs}s; the end of its log:"
  tail -n 30 "$D/logs/$what.log" >&2 || true
  die "$what failed to start"
}

API="https://127.0.0.1:$API_PORT"
say "starting etcd on 127.0.0.1:$ETCD_PORT"
start etcd etcd --name local --data-dir "$D/etcd" \
  --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
  --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
  --initial-cluster "local=http://127.0.0.1:$ETCD_PEER_PORT" --log-level warn
wait_for etcd 20 curl -sf "http://127.0.0.1:$ETCD_PORT/health"

say "starting moto and the EKS authentication webhook on 127.0.0.1:$MOTO_PORT and :$WEBHOOK_PORT"
start aws-world env PYTHONPATH="$HERE" MOTO_PORT="$MOTO_PORT" "$PY" "$HERE/aws_world.py" --moto-port "$MOTO_PORT" --webhook-port "$WEBHOOK_PORT" \
  --cluster "$CLUSTER" --region "$REGION" --api-endpoint "$API" --ca-file "$D/pki/ca.crt" \
  --admin-cert "$D/pki/admin.crt" --admin-key "$D/pki/admin.key" --facts "$D/aws.json"
wait_for aws-world 60 test -f "$D/aws.json"
wait_for aws-world 10 curl -sf "http://127.0.0.1:$WEBHOOK_PORT/healthz"

say "starting LocalStack (Step Functions activities) on 127.0.0.1:$LOCALSTACK_PORT"
start localstack env GATEWAY_SERVER=hypercorn GATEWAY_LISTEN="127.0.0.1:$LOCALSTACK_PORT" DNS_ADDRESS=0 \
  LOCALSTACK_VOLUME_DIR="$D/localstack" PERSISTENCE=0 SKIP_INFRA_DOWNLOADS=1 DISABLE_EVENTS=1 SERVICES=stepfunctions,sts,iam \
  "$CACHE/localstack-venv/bin/python" -m localstack.runtime.main

cat > "$D/webhook.kubeconfig" <<KC
apiVersion: v1
kind: Config
clusters:
- name: aws-iam-authenticator
  cluster:
    server: http://127.0.0.1:$WEBHOOK_PORT/authenticate
users:
- name: kube-apiserver
contexts:
- name: webhook
  context: {cluster: aws-iam-authenticator, user: kube-apiserver}
current-context: webhook
KC
cat > "$D/admin.kubeconfig" <<KC
apiVersion: v1
kind: Config
clusters:
- name: $CLUSTER
  cluster:
    server: $API
    certificate-authority: $D/pki/ca.crt
users:
- name: local-admin
  user:
    client-certificate: $D/pki/admin.crt
    client-key: $D/pki/admin.key
contexts:
- name: $CLUSTER
  context: {cluster: $CLUSTER, user: local-admin, namespace: $NAMESPACE}
current-context: $CLUSTER
KC

say "starting kube-apiserver on $API"
start kube-apiserver "$KUBE/kube-apiserver" \
  --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
  --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$API_PORT" --insecure-port 0 \
  --tls-cert-file "$D/pki/apiserver.crt" --tls-private-key-file "$D/pki/apiserver.key" \
  --client-ca-file "$D/pki/ca.crt" \
  --service-account-key-file "$D/pki/sa.pub" --service-account-signing-key-file "$D/pki/sa.key" \
  --service-account-issuer "https://kubernetes.default.svc" \
  --authentication-token-webhook-config-file "$D/webhook.kubeconfig" --authentication-token-webhook-cache-ttl 5s \
  --authorization-mode RBAC --anonymous-auth=false \
  --endpoint-reconciler-type none --service-cluster-ip-range 10.96.0.0/16 \
  --kubelet-client-certificate "$D/pki/admin.crt" --kubelet-client-key "$D/pki/admin.key" \
  --kubelet-preferred-address-types InternalIP \
  --feature-gates TTLAfterFinished=true
wait_for kube-apiserver 60 admin_curl -f "$API/readyz"

say "starting kube-controller-manager"
start kube-controller-manager "$KUBE/kube-controller-manager" \
  --kubeconfig "$D/admin.kubeconfig" --port 0 --secure-port 0 --leader-elect=false \
  --service-account-private-key-file "$D/pki/sa.key" --root-ca-file "$D/pki/ca.crt" \
  --controllers '*,-nodeipam,-nodelifecycle,-cloud-node-lifecycle,-service,-route,-csrsigning' \
  --feature-gates TTLAfterFinished=true

wait_for localstack 90 curl -sf "http://127.0.0.1:$LOCALSTACK_PORT/_localstack/health"

say "starting the pod simulator (kubelet API on 127.0.0.1:$KUBELET_PORT)"
start podsim "$PY" "$HERE/podsim.py" --api "$API" --ca "$D/pki/ca.crt" --cert "$D/pki/admin.crt" --key "$D/pki/admin.key" \
  --kubelet-port "$KUBELET_PORT" --kubelet-cert "$D/pki/kubelet.crt" --kubelet-key "$D/pki/kubelet.key"
wait_for podsim 30 admin_curl -f "$API/api/v1/nodes/sim-node"

WORKER_ARN=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["users"]["eks-task-worker"]["arn"])' "$D/aws.json")
say "granting $WORKER_ARN access to namespace $NAMESPACE (seed 004's preparation)"
apply() { # path json
  local code
  code=$(admin_curl -o "$D/logs/apply.out" -w '%{http_code}' -X POST -H 'Content-Type: application/json' --data "$2" "$API$1")
  case "$code" in 201|200) ;;
    409) # Already there (a world started before): replace it, so that changed rules apply.
      local name
      name=$("$PY" -c 'import json,sys; print(json.loads(sys.argv[1])["metadata"]["name"])' "$2")
      code=$(admin_curl -o "$D/logs/apply.out" -w '%{http_code}' -X PUT -H 'Content-Type: application/json' --data "$2" "$API$1/$name")
      case "$code" in 200|201) ;; *) cat "$D/logs/apply.out" >&2; die "PUT $1/$name answered $code";; esac;;
    *) cat "$D/logs/apply.out" >&2; die "POST $1 answered $code";; esac
}
apply /api/v1/namespaces "{\"apiVersion\":\"v1\",\"kind\":\"Namespace\",\"metadata\":{\"name\":\"$NAMESPACE\"}}"
"$REPO/scripts/local-world/rbac.sh" "$NAMESPACE" "$WORKER_ARN" | while IFS= read -r line; do
  apply "${line%% *}" "${line#* }"
done
ADMIN_ARN=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["users"]["cluster-admin"]["arn"])' "$D/aws.json")
say "making $ADMIN_ARN cluster-admin (as EKS makes a cluster's creator)"
apply /apis/rbac.authorization.k8s.io/v1/clusterrolebindings "{\"apiVersion\":\"rbac.authorization.k8s.io/v1\",\"kind\":\"ClusterRoleBinding\",\"metadata\":{\"name\":\"iam-cluster-admin\"},\"subjects\":[{\"kind\":\"User\",\"name\":\"$ADMIN_ARN\",\"apiGroup\":\"rbac.authorization.k8s.io\"}],\"roleRef\":{\"kind\":\"ClusterRole\",\"name\":\"cluster-admin\",\"apiGroup\":\"rbac.authorization.k8s.io\"}}"
# The controller-manager makes the namespace's default service account, which pods need.
wait_for kube-controller-manager 60 admin_curl -f "$API/api/v1/namespaces/$NAMESPACE/serviceaccounts/default"

WEBHOOK_PORT="$WEBHOOK_PORT" LOCALSTACK_PORT="$LOCALSTACK_PORT" "$PY" - "$D" "$API" "$CLUSTER" "$NAMESPACE" "$HERE" <<'PYEOF'
import base64, json, os, sys
d, api, cluster, ns, here = sys.argv[1:6]
aws = json.load(open(f"{d}/aws.json"))
ca = open(f"{d}/pki/ca.crt", "rb").read()
w = aws["users"]["eks-task-worker"]
facts = {
    "cluster": cluster, "namespace": ns, "region": aws["region"], "account": aws["account"],
    "api_endpoint": api, "certificate_authority": base64.b64encode(ca).decode(), "ca_file": f"{d}/pki/ca.crt",
    "aws_endpoint": aws["aws_endpoint"], "worker": w, "functions": aws["functions"], "states_role": aws["states_role"],
    "scheduler_role": aws["scheduler_role"], "schedule_group": aws["schedule_group"], "log_bucket": aws["log_bucket"], "poll_state_key": aws["poll_state_key"], "intruder": aws["users"]["intruder"], "cluster_admin": aws["users"]["cluster-admin"],
    "python": sys.executable, "token_oracle": os.path.join(here, "eks_token.py"),
    "webhook": "http://127.0.0.1:" + os.environ["WEBHOOK_PORT"], "localstack_endpoint": "http://127.0.0.1:" + os.environ["LOCALSTACK_PORT"], "admin": {"kubeconfig": f"{d}/admin.kubeconfig", "cert": f"{d}/pki/admin.crt", "key": f"{d}/pki/admin.key"},
}
json.dump(facts, open(f"{d}/world.json", "w"), indent=2)
with open(f"{d}/world.env", "w") as f:
    for k, v in {"AWS_ENDPOINT_URL": aws["aws_endpoint"], "AWS_REGION": aws["region"], "AWS_ACCESS_KEY_ID": w["access_key_id"],
                 "AWS_SECRET_ACCESS_KEY": w["secret_access_key"], "LOCAL_CLUSTER_NAME": cluster, "LOCAL_NAMESPACE": ns,
                 "KUBECONFIG": f"{d}/admin.kubeconfig"}.items():
        f.write(f"export {k}={v}\n")
PYEOF
say "up: cluster $CLUSTER at $API, AWS at http://127.0.0.1:$MOTO_PORT; facts in $D/world.json"
