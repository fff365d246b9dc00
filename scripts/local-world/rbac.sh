#!/usr/bin/env bash
# Prints, one per line as "<collection path> <json>", the Role and RoleBinding that let
# an IAM identity (by ARN, the Kubernetes username EKS gives it) run the worker in one
# namespace: what the worker needs on jobs, pods and pods/log, and configmaps for calls.
set -euo pipefail
NS=$1 ARN=$2
cat <<JSON
/apis/rbac.authorization.k8s.io/v1/namespaces/$NS/roles {"apiVersion":"rbac.authorization.k8s.io/v1","kind":"Role","metadata":{"name":"eks-task-worker","namespace":"$NS"},"rules":[{"apiGroups":["batch"],"resources":["jobs"],"verbs":["create","get","list","watch","delete","patch","update"]},{"apiGroups":[""],"resources":["pods"],"verbs":["get","list","watch","delete"]},{"apiGroups":[""],"resources":["pods/log"],"verbs":["get"]},{"apiGroups":[""],"resources":["configmaps"],"verbs":["create","get","list","watch","delete","patch","update"]}]}
/apis/rbac.authorization.k8s.io/v1/namespaces/$NS/rolebindings {"apiVersion":"rbac.authorization.k8s.io/v1","kind":"RoleBinding","metadata":{"name":"eks-task-worker","namespace":"$NS"},"subjects":[{"kind":"User","name":"$ARN","apiGroup":"rbac.authorization.k8s.io"}],"roleRef":{"kind":"Role","name":"eks-task-worker","apiGroup":"rbac.authorization.k8s.io"}}
JSON
