#!/usr/bin/env bash
# Prints, one per line as "<collection path> <json>", the Role and RoleBinding that let
# an IAM identity (by ARN, the Kubernetes username EKS gives it) run the worker in one
# namespace: the worker's rules (shared/src/task/worker-role-rules.json, the same ones
# `eks-task-worker bootstrap` grants), plus configmaps for the tests of `call`.
set -euo pipefail
NS=$1 ARN=$2
RULES="$(cd "$(dirname "$0")/../.." && pwd)/shared/src/task/worker-role-rules.json"
python3 - "$NS" "$ARN" "$RULES" <<'PY'
import json, sys
ns, arn, rules_file = sys.argv[1:4]
rules = json.load(open(rules_file))
rules.append({"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create", "get", "list", "watch", "delete", "patch", "update"]})
role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "eks-task-worker", "namespace": ns}, "rules": rules}
binding = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "eks-task-worker", "namespace": ns},
           "subjects": [{"kind": "User", "name": arn, "apiGroup": "rbac.authorization.k8s.io"}],
           "roleRef": {"kind": "Role", "name": "eks-task-worker", "apiGroup": "rbac.authorization.k8s.io"}}
print(f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/roles {json.dumps(role)}")
print(f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings {json.dumps(binding)}")
PY
