"""The local world's AWS side, in one process on 127.0.0.1:

- moto (ThreadedMotoServer) serves STS, Step Functions, EKS, Scheduler, EventBridge
  and IAM on --moto-port, with its Step Functions interpreter switched on;
- the EKS authentication webhook on --webhook-port answers the API server's
  TokenReviews as EKS does: aws-iam-authenticator's token rules, the SigV4 signature
  recomputed by botocore with the secret moto holds for the access key, and the
  caller's ARN from moto's STS GetCallerIdentity (called with the presigned request);
- at start it creates the worker's and a second (unauthorised) IAM user, and the EKS
  cluster in moto with its endpoint and CA pointed at the local API server, and
  writes all of it to --facts (JSON);
- every other cluster moto makes answers on an endpoint and a CA of its own, in front
  of the same API server, closed with the cluster (ClusterFront).
"""
import argparse
import asyncio
import base64
import os
import datetime
import json
import logging
import re
import sys
import threading
import urllib.error
import uuid
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

import boto3
from moto.eks.models import eks_backends
from moto.iam.models import iam_backends
from moto.server import ThreadedMotoServer
from moto.core.utils import utcnow
from moto.sts.models import sts_backends

import eks_token

ACCOUNT = "123456789012"
LOG_BUCKET = "eks-task-worker-logs"
log = logging.getLogger("aws-world")


def _share_backend_on_deepcopy():
    """moto 5.1 deep-copies a state machine on StartExecution, and the copy reaches
    the backend through `backend`, and with it every running execution's locks: a
    second execution cannot start while one runs (TypeError: cannot pickle
    '_thread.RLock'). The snapshot needs the definition, not the backend: share it."""
    import copy
    from moto.stepfunctions.models import StateMachine

    def deepcopy_sharing_backend(self, memo):
        clone = self.__class__.__new__(self.__class__)
        memo[id(self)] = clone
        for k, v in self.__dict__.items():
            setattr(clone, k, v if k in ("backend", "executions") else copy.deepcopy(v, memo))
        return clone

    StateMachine.__deepcopy__ = deepcopy_sharing_backend


_share_backend_on_deepcopy()


def _resolve_keyword_paths_in_payloads():
    """moto's ASL lexer reads "RoleArn.$" as the keyword of a Task's Credentials, so in
    a Parameters payload it stays a literal field named "RoleArn.$" holding the path.
    AWS resolves it like any other "<field>.$": so does this world."""
    from moto.stepfunctions.parser.asl.component.common.payload.payloadvalue.payloadbinding.payload_binding import (
        PayloadBindingStringExpressionSimple)
    from moto.stepfunctions.parser.asl.component.common.payload.payloadvalue.payloadvaluelit.payload_value_str import (
        PayloadValueStr)
    from moto.stepfunctions.parser.asl.component.common.string.string_expression import (
        StringContextPath, StringJsonPath)
    from moto.stepfunctions.parser.asl.parse.preprocessor import Preprocessor

    original = Preprocessor.visitPayload_binding_value

    def visit(self, ctx):
        binding = original(self, ctx)
        if binding.field.endswith(".$") and isinstance(binding.payload_value, PayloadValueStr):
            path = binding.payload_value.val
            expression = (StringContextPath(context_object_path=path) if path.startswith("$$")
                          else StringJsonPath(json_path=path))
            return PayloadBindingStringExpressionSimple(field=binding.field[:-2], string_expression_simple=expression)
        return binding

    Preprocessor.visitPayload_binding_value = visit


def _keep_the_cause_of_a_task_failure():
    """moto's SendTaskFailure reads `error` but drops `cause`; the interpreter behind it
    takes both, as AWS does."""
    from moto.stepfunctions.responses import StepFunctionResponse
    from moto.core.responses import EmptyResult

    def send_task_failure(self):
        self.stepfunction_backend.send_task_failure(
            self._get_param("taskToken"), error=self._get_param("error"), cause=self._get_param("cause"))
        return EmptyResult()

    StepFunctionResponse.send_task_failure = send_task_failure


def _normalise_aws_sdk_tasks():
    """moto's aws-sdk tasks hand a Task's Parameters (PascalCase, "ClusterName") to
    botocore unchanged, which fails with KeyError: AWS maps them onto the API's members
    and the response back to PascalCase. So does this world, with botocore's model."""
    import botocore.session
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_aws_sdk import (
        StateTaskServiceAwsSdk)
    session = botocore.session.get_session()

    def operation(self):
        model = session.get_service_model(self._get_boto_service_name())
        action = self.resource.api_action
        return model.operation_model(action[0].upper() + action[1:])

    def normalise_parameters(self, parameters, boto_service_name=None, service_action_name=None):
        self._to_boto_request(parameters, operation(self).input_shape)

    def normalise_response(self, response, boto_service_name=None, service_action_name=None):
        self._from_boto_response(response, operation(self).output_shape)

    StateTaskServiceAwsSdk._normalise_parameters = normalise_parameters
    StateTaskServiceAwsSdk._normalise_response = normalise_response


def _accept_heartbeats_of_every_waiting_task():
    """moto answers SendTaskHeartbeat with InvalidToken for a waiting task that has no
    HeartbeatSeconds, or whose heartbeat timer is not set up yet (the moments after
    TaskScheduled); AWS accepts a heartbeat for any task waiting on its token."""
    from moto.stepfunctions.parser.asl.eval.callback.callback import CallbackEndpoint

    original = CallbackEndpoint.notify_heartbeat

    def notify_heartbeat(self):
        return original(self) or True

    CallbackEndpoint.notify_heartbeat = notify_heartbeat


def _an_early_answer_is_kept():
    """moto sets up a task's heartbeat timer only once the Lambda it invokes has
    answered, after TaskScheduled: an answer that comes in between (the token is in
    TaskScheduled's parameters) is stored, but the task then waits for a heartbeat that
    never comes and ends in States.HeartbeatTimeout, the answer lost. AWS takes an
    answer to a waiting task whenever it comes; so does the world: a timer set up after
    the answer starts already woken."""
    from moto.stepfunctions.parser.asl.eval.callback.callback import CallbackEndpoint

    original = CallbackEndpoint.setup_heartbeat_endpoint

    def setup_heartbeat_endpoint(self, heartbeat_seconds):
        endpoint = original(self, heartbeat_seconds)
        if self.get_outcome() is not None:
            endpoint.notify()
        return endpoint

    CallbackEndpoint.setup_heartbeat_endpoint = setup_heartbeat_endpoint


def _the_tests_waiter_takes_its_time():
    """moto's Lambda stub answers an invocation at once. A real function takes its time,
    and may answer its task (SendTaskSuccess) before its own invocation returns: the
    tests' waiter function (World::waiter_function, whose tasks only a test answers)
    takes a second, so that a test that answers at once always answers while the invoke
    still runs, the moment `_an_early_answer_is_kept` is about."""
    import time
    from moto.awslambda_simple.models import LambdaSimpleBackend

    original = LambdaSimpleBackend.invoke

    def invoke(self, function_name, *args, **kwargs):
        if str(function_name).endswith("world-task-waiter"):
            time.sleep(1)
        return original(self, function_name, *args, **kwargs)

    LambdaSimpleBackend.invoke = invoke


def _each_attempt_its_own_token():
    """moto makes a waiting task's token once, when the state is entered, and gives its
    retries (a state's Retry) the same one: the answer to the failed attempt is kept on
    it, so every retry fails at once with the first attempt's error. Step Functions gives
    each attempt a token of its own (the failed one is closed); so does the world."""
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_callback import (
        StateTaskServiceCallback,
    )

    original = StateTaskServiceCallback._eval_execution

    def _eval_execution(self, env):
        context = env.states.context_object
        if "Task" in context.context_object_data and context.context_object_data["State"].get("RetryCount", 0) > 0:
            env.callback_pool_manager.add(context.update_task_token())
        return original(self, env)

    StateTaskServiceCallback._eval_execution = _eval_execution


def _stopped_executions_end_at_once():
    """moto marks a stopped execution ABORTED only once its current state wakes up: a
    task waiting on its token stays RUNNING, and accepts heartbeats and answers, until
    then (forever, for a task nobody answers). AWS closes the execution at once and
    refuses the task's token from then on; so does the world."""
    from moto.stepfunctions.parser.api import ExecutionStatus
    from moto.stepfunctions.parser.backend.execution import Execution

    original = Execution.stop

    def stop(self, stop_date, error, cause):
        original(self, stop_date, error, cause)
        self.exec_status = ExecutionStatus.ABORTED
        self.stop_date = stop_date

    Execution.stop = stop


def _heartbeats_keep_the_default_timeout():
    """moto gives a Task state with HeartbeatSeconds and no TimeoutSeconds a timeout of
    60 s (the ASL spec's old default): a task that heartbeats faithfully still ends in
    States.Timeout after a minute. Step Functions' default TimeoutSeconds is 99999999
    with or without HeartbeatSeconds (AWS's own example of a heartbeat, in "Using
    timeouts to avoid stuck executions", sets HeartbeatSeconds: 600 alone); so does the
    world."""
    from moto.stepfunctions.parser.asl.component.common.timeouts.timeout import TimeoutSeconds
    from moto.stepfunctions.parser.asl.component.state.exec.execute_state import ExecutionState

    original = ExecutionState.from_state_props

    def from_state_props(self, state_props):
        original(self, state_props)
        if isinstance(self.timeout, TimeoutSeconds) and self.timeout.timeout_seconds == 60 and self.timeout.is_default:
            self.timeout = TimeoutSeconds(timeout_seconds=TimeoutSeconds.DEFAULT_TIMEOUT_SECONDS)

    ExecutionState.from_state_props = from_state_props


CREDENTIALS_LIFETIME_TAG = "local-world/credentials-lifetime-seconds"


def _assumed_roles_live_as_their_role_says():
    """moto's AssumeRole credentials live an hour (or DurationSeconds, at least 900 s on
    AWS): a test cannot wait for them to expire. A role tagged CREDENTIALS_LIFETIME_TAG
    hands out credentials that live that many seconds instead, and the authenticator
    (secret_for) refuses what expired credentials signed, as STS answers ExpiredToken
    and EKS refuses the token."""
    from moto.sts.models import AssumedRole

    original = AssumedRole.__init__

    def init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        for account in list(iam_backends.keys()):
            for backend in iam_backends[account].values():
                try:
                    role = backend.get_role_by_arn(self.role_arn)
                except Exception:  # noqa: BLE001 - another account's, or no such role
                    continue
                for tag in getattr(role, "tags", None) or []:
                    if tag.get("Key") == CREDENTIALS_LIFETIME_TAG:
                        self.expiration = utcnow() + datetime.timedelta(seconds=int(tag["Value"]))
                        return

    AssumedRole.__init__ = init


def _refuse_over(backend, methods, exception, field, limit, size_of):
    """Wraps `backend`'s `methods` so that a request whose `size_of(args, kwargs)` is over
    `limit` raises `exception` with the message AWS gives for `field`."""
    for method in methods:
        original = getattr(backend, method)

        def checked(self, *args, _original=original, **kwargs):
            size = size_of(args, kwargs)
            if size > limit:
                raise exception(
                    f"1 validation error detected: Value at '{field}' failed to satisfy constraint: "
                    f"Member must have length less than or equal to {limit} (it has {size})")
            return _original(self, *args, **kwargs)

        setattr(backend, method, checked)


def _schedule_inputs_within_their_limit():
    """moto stores a schedule whatever the size of its target's Input; Scheduler refuses
    an Input over 8,192 characters (ValidationException). So does the world, so that a
    poll state that grew past it fails here as it would in AWS."""
    from moto.scheduler.exceptions import ValidationException
    from moto.scheduler.models import EventBridgeSchedulerBackend

    _refuse_over(EventBridgeSchedulerBackend, ("create_schedule", "update_schedule"), ValidationException,
                 "target.input", 8192, lambda args, kwargs: len((kwargs.get("target") or {}).get("Input") or ""))


def _mac_messages_within_their_limit():
    """moto MACs a message of any size; KMS refuses a GenerateMac or VerifyMac message
    over 4,096 bytes (ValidationException). So does the world, so that a seal made over
    a whole poll state (up to 8,192 characters) fails here as it would in AWS."""
    import base64 as b64
    from moto.kms.exceptions import ValidationException
    from moto.kms.models import KmsBackend

    def message_bytes(args, kwargs):
        message = kwargs.get("message", args[0] if args else b"") or b""
        try:
            return len(b64.b64decode(message)) if isinstance(message, str) else len(message)
        except ValueError:
            return len(message)

    _refuse_over(KmsBackend, ("generate_mac", "verify_mac"), ValidationException, "message", 4096, message_bytes)


def _a_closed_task_takes_no_answer():
    """moto takes a second SendTaskSuccess or SendTaskFailure for a task already
    answered (the later one wins, while the execution runs), and a SendTaskFailure for
    a task of an execution that has ended. AWS refuses an answer to a closed task with
    TaskTimedOut, and so does the world: a duplicate answer is refused where a worker
    would meet the refusal, and counted as an attempt, not taken."""
    from moto.core.exceptions import AWSError
    from moto.stepfunctions.parser.api import ExecutionStatus
    from moto.stepfunctions.parser.asl.eval.callback.callback import CallbackPoolManager
    from moto.stepfunctions.parser.models import StepFunctionsParserBackend

    class TaskTimedOut(AWSError):
        TYPE = "TaskTimedOut"

        def __init__(self):
            super().__init__("Task Timed Out: 'Provided task does not exist anymore'")

    original_notify = CallbackPoolManager.notify

    def notify(self, callback_id, outcome):
        endpoint = self._pool.get(callback_id)
        if endpoint is not None and endpoint.get_outcome() is not None:
            raise TaskTimedOut()
        return original_notify(self, callback_id, outcome)

    CallbackPoolManager.notify = notify

    def closed(backend, token):
        for execution in backend._get_executions():
            worker = getattr(execution, "exec_worker", None)
            if execution.status != ExecutionStatus.RUNNING and worker is not None and \
                    worker.env.callback_pool_manager.get(token) is not None:
                return True
        return False

    for method in ("send_task_success", "send_task_failure"):
        original = getattr(StepFunctionsParserBackend, method)

        def answer(self, task_token, *args, _original=original, **kwargs):
            if closed(self, task_token):
                raise TaskTimedOut()
            return _original(self, task_token, *args, **kwargs)

        setattr(StepFunctionsParserBackend, method, answer)


def _answers_within_their_limit():
    """moto takes a SendTaskSuccess whose output is over 262,144 bytes and then fails
    the state (States.DataLimitExceeded); AWS refuses the call (ValidationException) and
    the task goes on waiting. So does the world."""
    from moto.stepfunctions.exceptions import ValidationException
    from moto.stepfunctions.parser.models import StepFunctionsParserBackend

    def output_bytes(args, kwargs):
        output = kwargs.get("outcome", args[1] if len(args) > 1 else "") or ""
        return len(output.encode("utf-8")) if isinstance(output, str) else len(output)

    _refuse_over(StepFunctionsParserBackend, ("send_task_success",), ValidationException, "output", 262144,
                 output_bytes)


def _indefinite_paths_answer_lists():
    """moto answers a JSONPath that can match many values (a deep scan `$.logs..log`, a
    wildcard `$.items[*].name`, a filter, a slice or a union) with the bare value when
    it matched one. Step Functions answers such a path with a list however many it
    matched (an empty one for none), so examples written for AWS, such as a
    `ResultSelector` of `"logs.$": "$.logs..log"`, break in moto alone: the world
    answers as AWS does. Definite paths (`$.a.b`, `$.a[0]`) are moto's own."""
    from moto.stepfunctions.parser.asl.utils import json_path

    original = json_path.extract_json
    indefinite = re.compile(r"\.\.|\.\*|\[\*\]|\[\?|\[[^\]'\"]*[:,][^\]'\"]*\]")

    def extract_json(path, data):
        if indefinite.search(path):
            return [match.value for match in json_path.parse(path).find(data)]
        return original(path, data)

    json_path.extract_json = extract_json
    for name, module in list(sys.modules.items()):
        if name.startswith("moto.stepfunctions") and getattr(module, "extract_json", None) is original:
            module.extract_json = extract_json


_resolve_keyword_paths_in_payloads()
_indefinite_paths_answer_lists()
_normalise_aws_sdk_tasks()
_accept_heartbeats_of_every_waiting_task()
_an_early_answer_is_kept()
_the_tests_waiter_takes_its_time()
_each_attempt_its_own_token()
_stopped_executions_end_at_once()
_keep_the_cause_of_a_task_failure()
_schedule_inputs_within_their_limit()
_mac_messages_within_their_limit()
_a_closed_task_takes_no_answer()
_answers_within_their_limit()
_assumed_roles_live_as_their_role_says()
_heartbeats_keep_the_default_timeout()


class LocalApiServer:
    """The one local API server, as its administrator (client certificate)."""

    def __init__(self, endpoint, ca_file, cert, key):
        import ssl
        self.endpoint = endpoint
        self.context = ssl.create_default_context(cafile=ca_file)
        self.context.load_cert_chain(cert, key)

    def call(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.endpoint + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, context=self.context, timeout=10) as r:
                return r.status, json.loads(r.read() or b"{}")
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"{}")


# EKS's access policies, as the Kubernetes cluster roles they amount to.
ACCESS_POLICIES = {
    "arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy": "cluster-admin",
    "arn:aws:eks::aws:cluster-access-policy/AmazonEKSAdminPolicy": "admin",
    "arn:aws:eks::aws:cluster-access-policy/AmazonEKSEditPolicy": "edit",
    "arn:aws:eks::aws:cluster-access-policy/AmazonEKSViewPolicy": "view",
}
ACCESS_LABEL = "local-world.eks-task-worker.io/access-entry-cluster"


def serve_access_entries(api):
    """EKS access entries, which moto lacks (CreateAccessEntry, AssociateAccessPolicy,
    ListAccessEntries, DeleteAccessEntry), added to moto's EKS routes. An associated
    access policy becomes what it means on the cluster: a ClusterRoleBinding (scope
    "cluster") or one RoleBinding per namespace (scope "namespace") of the policy's
    cluster role to the principal's username, on the local API server that serves every
    cluster of this world. Deleting the entry or the cluster removes the bindings."""
    import datetime
    import hashlib
    from urllib.parse import unquote
    from moto.eks import urls
    from moto.eks.models import EKSBackend

    entries = {}  # (cluster, principal) -> entry
    lock = threading.Lock()

    def reply(code, body):
        return code, {"Content-Type": "application/json", "x-amzn-RequestId": str(uuid.uuid4())}, json.dumps(body)

    def error(code, kind, message):
        log.info("access entries: %s %s", kind, message)
        return code, {"Content-Type": "application/json", "x-amzn-ErrorType": kind,
                      "x-amzn-RequestId": str(uuid.uuid4())}, json.dumps({"message": message})

    def cluster_exists(name):
        return any(name in b.clusters for b in eks_backends[ACCOUNT].values())

    def authentication_mode(name):
        for b in eks_backends[ACCOUNT].values():
            if name in b.clusters:
                return (getattr(b.clusters[name], "access_config", None) or {}).get("authenticationMode", "CONFIG_MAP")

    def unbind(selector):
        for path in ("/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
                     "/apis/rbac.authorization.k8s.io/v1/rolebindings"):
            _, found = api.call("GET", f"{path}?labelSelector={selector}")
            for item in found.get("items", []):
                meta = item["metadata"]
                ns = f"/namespaces/{meta['namespace']}" if meta.get("namespace") else ""
                kind = path.rsplit("/", 1)[1]
                api.call("DELETE", f"/apis/rbac.authorization.k8s.io/v1{ns}/{kind}/{meta['name']}")

    def principal_label(principal):
        return hashlib.sha256(principal.encode()).hexdigest()[:16]

    def handle(request, full_url, headers):
        path = unquote(urlsplit(full_url).path)
        m = re.fullmatch(r"/clusters/([^/]+)/access-entries(?:/(.+?))?(/access-policies)?/?", path)
        if m is None:
            return error(404, "ResourceNotFoundException", f"No route for {request.method} {path}")
        cluster, principal = m.group(1), m.group(2)
        parts = ["clusters", cluster, "access-entries"] + ([principal] if principal else []) + (
            ["access-policies"] if m.group(3) else [])
        if not cluster_exists(cluster):
            return error(404, "ResourceNotFoundException", f"No cluster found for name: {cluster}.")
        mode = authentication_mode(cluster)
        if mode not in ("API", "API_AND_CONFIG_MAP"):
            # As EKS answers on a cluster whose access is the aws-auth ConfigMap only.
            return error(400, "InvalidRequestException", "The cluster's authentication mode must be set to one of "
                         f"[API, API_AND_CONFIG_MAP] to perform this operation (it is {mode}).")
        body = json.loads(request.get_data() or b"{}")
        now = datetime.datetime.now(datetime.timezone.utc).isoformat()
        with lock:
            if len(parts) == 3 and request.method == "POST":
                principal = body.get("principalArn", "")
                if not principal.startswith("arn:"):
                    return error(400, "InvalidParameterException", "principalArn must be an IAM principal ARN")
                if (cluster, principal) in entries:
                    return error(409, "ResourceInUseException", "The specified access entry resource is already in use on this cluster.")
                entry = {"clusterName": cluster, "principalArn": principal, "username": body.get("username", principal),
                         "kubernetesGroups": body.get("kubernetesGroups", []), "type": body.get("type", "STANDARD"),
                         "accessEntryArn": f"arn:aws:eks:us-east-1:{ACCOUNT}:access-entry/{cluster}/{principal_label(principal)}",
                         "createdAt": now, "modifiedAt": now, "tags": body.get("tags", {})}
                entries[(cluster, principal)] = entry
                return reply(200, {"accessEntry": entry})
            if len(parts) == 3 and request.method == "GET":
                return reply(200, {"accessEntries": [p for (c, p) in entries if c == cluster]})
            entry = entries.get((cluster, principal))
            if entry is None:
                return error(404, "ResourceNotFoundException", f"The specified principalArn could not be found: {principal}")
            selector = f"{ACCESS_LABEL}={cluster},local-world.eks-task-worker.io/principal={principal_label(principal)}"
            if len(parts) == 4 and request.method == "DELETE":
                unbind(selector)
                del entries[(cluster, principal)]
                return reply(200, {})
            if len(parts) == 4 and request.method == "GET":
                return reply(200, {"accessEntry": entry})
            if len(parts) == 5 and request.method == "POST":
                role = ACCESS_POLICIES.get(body.get("policyArn", ""))
                if role is None:
                    return error(400, "InvalidParameterException", f"Unknown access policy: {body.get('policyArn')}")
                scope = body.get("accessScope") or {}
                digest = hashlib.sha256(f"{cluster}|{principal}|{role}".encode()).hexdigest()[:12]
                meta = {"name": f"eks-access-{digest}", "labels": {ACCESS_LABEL: cluster,
                                                                    "local-world.eks-task-worker.io/principal": principal_label(principal)}}
                binding = {"apiVersion": "rbac.authorization.k8s.io/v1", "metadata": meta,
                           "subjects": [{"kind": "User", "name": entry["username"], "apiGroup": "rbac.authorization.k8s.io"}],
                           "roleRef": {"kind": "ClusterRole", "name": role, "apiGroup": "rbac.authorization.k8s.io"}}
                if scope.get("type") == "cluster":
                    targets = [("/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", dict(binding, kind="ClusterRoleBinding"))]
                elif scope.get("type") == "namespace" and scope.get("namespaces"):
                    targets = [(f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings",
                                dict(binding, kind="RoleBinding", metadata=dict(meta, namespace=ns)))
                               for ns in scope["namespaces"]]
                else:
                    return error(400, "InvalidParameterException", "accessScope: type cluster, or type namespace with namespaces")
                for path, obj in targets:
                    code, answer = api.call("POST", path, obj)
                    if code == 409:
                        code, answer = api.call("PUT", f"{path}/{meta['name']}", obj)
                    if code >= 300:
                        return error(500, "ServerException", f"binding on the local API server: {code} {answer}")
                return reply(200, {"clusterName": cluster, "principalArn": principal, "associatedAccessPolicy": {
                    "policyArn": body["policyArn"], "accessScope": scope, "associatedAt": now, "modifiedAt": now}})
        return error(404, "ResourceNotFoundException", f"No route for {request.method} {urlsplit(full_url).path}")

    # A principal ARN in the path holds "/" (user/name, role/path/name), which arrives
    # decoded: one route, and the handler splits the rest.
    urls.url_paths["{0}/clusters/(?P<name>[^/]+)/access-entries(?P<rest>.*)$"] = handle

    original_delete = EKSBackend.delete_cluster

    def delete_cluster(self, name):
        result = original_delete(self, name)
        with lock:
            for key in [k for k in entries if k[0] == name]:
                del entries[key]
        unbind(f"{ACCESS_LABEL}={name}")
        return result

    EKSBackend.delete_cluster = delete_cluster


class ClusterFront:
    """One cluster's own endpoint: TLS on a port of its own on 127.0.0.1, under a CA of
    its own (made here, P-256, a day long), relaying each connection's bytes to the one
    API server (verified by the world's CA), on one event loop for every cluster (an
    SSL socket is not read and written from two threads at once). Closed, it stops
    answering, and its open connections are cut."""

    def __init__(self, name, upstream, upstream_ca, folder):
        import socket
        import ssl
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        now = datetime.datetime.now(datetime.timezone.utc)
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{name} cluster CA {uuid.uuid4().hex[:8]}")])
        ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
              .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
              .not_valid_after(now + datetime.timedelta(days=1))
              .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
              .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                                           key_encipherment=False, data_encipherment=False, key_agreement=False,
                                           encipher_only=False, decipher_only=False), critical=True)
              .sign(ca_key, hashes.SHA256()))
        key = ec.generate_private_key(ec.SECP256R1())
        import ipaddress
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]))
                .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
                .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                               critical=False)
                .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
                .sign(ca_key, hashes.SHA256()))
        os.makedirs(folder, mode=0o700, exist_ok=True)
        chain = os.path.join(folder, f"{name}-{uuid.uuid4().hex[:8]}.pem")
        # ssl loads a key from a file only: written private, removed however it goes.
        fd = os.open(chain, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(cert.public_bytes(serialization.Encoding.PEM))
                f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
            self.server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.server_tls.load_cert_chain(chain)
        finally:
            os.remove(chain)
        self.ca_pem = ca.public_bytes(serialization.Encoding.PEM)
        self.client = ssl.create_default_context(cafile=upstream_ca)
        self.upstream = upstream
        self.name = name
        self.writers = set()
        self.server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.server_tls), FRONTS_LOOP).result(10)
        self.endpoint = f"https://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def _serve(self, front_reader, front_writer):
        try:
            back_reader, back_writer = await asyncio.open_connection(
                self.upstream[0], self.upstream[1], ssl=self.client, server_hostname=self.upstream[0])
        except OSError as e:
            log.info("cluster %s front: the API server: %s", self.name, e)
            front_writer.close()
            return
        self.writers.update((front_writer, back_writer))

        async def pipe(reader, writer):
            try:
                while data := await reader.read(65536):
                    writer.write(data)
                    await writer.drain()
            except (OSError, asyncio.IncompleteReadError):
                pass
            finally:
                writer.close()
                self.writers.discard(writer)

        await asyncio.gather(pipe(front_reader, back_writer), pipe(back_reader, front_writer))

    def close(self):
        async def shut():
            self.server.close()
            for w in list(self.writers):
                w.transport.abort()
            self.writers.clear()
        asyncio.run_coroutine_threadsafe(shut(), FRONTS_LOOP).result(10)
        log.info("cluster %s: its endpoint %s closed", self.name, self.endpoint)


FRONTS_LOOP = asyncio.new_event_loop()
threading.Thread(target=FRONTS_LOOP.run_forever, daemon=True, name="cluster-fronts").start()


def give_every_cluster_its_own_endpoint(world_cluster, endpoint, ca_file, folder):
    """moto gives each new cluster a random endpoint and CA. Here the world's own
    cluster answers on the local API server's endpoint under its CA, and every other
    cluster moto makes on an endpoint and a CA of its own ([`ClusterFront`]) in front of
    that same API server; deleting the cluster closes its endpoint. A cluster deleted
    and made again under its name has a new endpoint and a new CA, as on EKS."""
    from moto.eks.models import EKSBackend
    ca = base64.b64encode(open(ca_file, "rb").read()).decode()
    upstream = urlsplit(endpoint)
    fronts = {}  # (account, region, name) -> ClusterFront
    lock = threading.Lock()
    original_create = EKSBackend.create_cluster
    original_delete = EKSBackend.delete_cluster

    def create_cluster(self, *args, **kwargs):
        cluster = original_create(self, *args, **kwargs)
        if cluster.name == world_cluster:
            cluster.endpoint = endpoint
            cluster.certificate_authority = {"data": ca}
            return cluster
        front = ClusterFront(cluster.name, (upstream.hostname, upstream.port), ca_file, folder)
        with lock:
            old = fronts.pop((self.account_id, self.region_name, cluster.name), None)
            fronts[(self.account_id, self.region_name, cluster.name)] = front
        if old is not None:
            old.close()
        cluster.endpoint = front.endpoint
        cluster.certificate_authority = {"data": base64.b64encode(front.ca_pem).decode()}
        log.info("cluster %s answers on %s", cluster.name, front.endpoint)
        return cluster

    def delete_cluster(self, name):
        result = original_delete(self, name)
        with lock:
            front = fronts.pop((self.account_id, self.region_name, name), None)
        if front is not None:
            front.close()
        return result

    EKSBackend.create_cluster = create_cluster
    EKSBackend.delete_cluster = delete_cluster


def remember_access_config():
    """moto drops a createCluster's accessConfig and describes no authentication mode.
    EKS keeps it, and a cluster created through the API without one is CONFIG_MAP (with
    the creator made admin): the world does the same, so that code reading the mode
    meets what EKS answers."""
    from moto.eks.responses import EKSResponse
    original = EKSResponse.create_cluster

    def create_cluster(self):
        result = original(self)
        asked = self._get_param("accessConfig") or {}
        cluster = self.eks_backend.clusters[self._get_param("name")]
        cluster.access_config = {
            "authenticationMode": asked.get("authenticationMode", "CONFIG_MAP"),
            "bootstrapClusterCreatorAdminPermissions": asked.get("bootstrapClusterCreatorAdminPermissions", True),
        }
        return result

    EKSResponse.create_cluster = create_cluster


def secret_for(access_key):
    """The (secret, session token) moto holds for an access key, or None."""
    for account in list(sts_backends.keys()):
        for backend in sts_backends[account].values():
            role = backend.get_assumed_role_from_access_key(access_key)
            if role is not None:
                if role.expiration < utcnow():
                    log.info("refused: the credentials %s expired at %s", access_key, role.expiration)
                    return None
                return role.secret_access_key, role.session_token
    for account in list(iam_backends.keys()):
        for backend in iam_backends[account].values():
            user = backend.get_user_from_access_key_id(access_key)
            if user is not None:
                for key in user.access_keys:
                    if key.access_key_id == access_key:
                        return key.secret_access_key, None
    return None


def caller_identity(moto_url, presigned_url):
    """STS GetCallerIdentity at moto with the presigned request. moto picks the
    service from the Authorization header, so it is rebuilt from the query."""
    q = dict((k.lower(), v) for k, v in parse_qsl(urlsplit(presigned_url).query))
    auth = (f"AWS4-HMAC-SHA256 Credential={q['x-amz-credential']}, "
            f"SignedHeaders={q['x-amz-signedheaders']}, Signature={q['x-amz-signature']}")
    req = urllib.request.Request(f"{moto_url}/?Action=GetCallerIdentity&Version=2011-06-15",
                                 headers={"Authorization": auth, "X-Amz-Date": q["x-amz-date"]})
    with urllib.request.urlopen(req, timeout=5) as r:
        body = r.read().decode()
    get = lambda tag: re.search(f"<{tag}>([^<]*)</{tag}>", body).group(1)  # noqa: E731
    return get("Arn"), get("Account"), get("UserId")


def canonical_arn(arn):
    """aws-iam-authenticator's canonical form: an assumed-role session is its role."""
    m = re.match(r"arn:([^:]+):sts::(\d+):assumed-role/([^/]+)/.+", arn)
    return f"arn:{m.group(1)}:iam::{m.group(2)}:role/{m.group(3)}" if m else arn


TOKEN_LIFETIME_TAG = "local-world/token-lifetime-seconds"


def token_lifetime(name):
    """How long the authenticator accepts a token for the cluster `name`: 15 minutes,
    as on EKS, unless the cluster carries the tag TOKEN_LIFETIME_TAG (a test that
    watches across several token lifetimes in seconds)."""
    for backend in eks_backends[ACCOUNT].values():
        cluster = backend.clusters.get(name)
        seconds = (getattr(cluster, "tags", None) or {}).get(TOKEN_LIFETIME_TAG)
        if seconds:
            return datetime.timedelta(seconds=int(seconds))
    return eks_token.LIFETIME


def verify_for_any_cluster(token, default_cluster):
    """The local API server serves every cluster moto holds: a token is good when it
    was signed for one of them (EKS: for the one the API server belongs to)."""
    names = {default_cluster} | {n for b in eks_backends[ACCOUNT].values() for n in b.clusters}
    rejection = None
    for name in [default_cluster] + sorted(names - {default_cluster}):
        try:
            return eks_token.verify(token, name, secret_for, lifetime=token_lifetime(name))
        except eks_token.Rejected as e:
            rejection = e
    raise rejection


def make_handler(cluster, moto_url):
    class Webhook(BaseHTTPRequestHandler):
        def log_message(self, fmt, *args):
            log.debug(fmt, *args)

        def do_GET(self):
            self._send(200, {"ok": True}) if self.path == "/healthz" else self._send(404, {})

        def do_POST(self):
            length = int(self.headers.get("Content-Length", "0"))
            review = json.loads(self.rfile.read(length) or b"{}")
            token = review.get("spec", {}).get("token", "")
            status = {"authenticated": False}
            try:
                url = verify_for_any_cluster(token, cluster)
                arn, account, user_id = caller_identity(moto_url, url)
                status = {"authenticated": True, "user": {
                    "username": canonical_arn(arn),
                    "uid": f"aws-iam-authenticator:{account}:{user_id}",
                    "groups": [],
                    "extra": {"arn": [arn], "accessKeyId": [dict(parse_qsl(urlsplit(url).query))["X-Amz-Credential"].split("/")[0]]},
                }}
                log.info("authenticated %s", arn)
            except eks_token.Rejected as e:
                status["error"] = str(e)
                log.info("rejected: %s", e)
            except Exception as e:  # noqa: BLE001 - the API server needs an answer
                status["error"] = f"authenticator failure: {e}"
                log.exception("webhook failure")
            self._send(200, {"apiVersion": review.get("apiVersion", "authentication.k8s.io/v1beta1"),
                             "kind": "TokenReview", "status": status})

        def _send(self, code, body):
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Webhook


def bootstrap(moto_url, args):
    """IAM users and the EKS cluster, created through moto's own API."""
    def client(service, key=("testing", "testing")):
        return boto3.client(service, region_name=args.region, endpoint_url=moto_url,
                            aws_access_key_id=key[0], aws_secret_access_key=key[1])

    req = urllib.request.Request(f"{moto_url}/moto-api/config", method="POST",
                                 data=json.dumps({"stepfunctions": {"execute_state_machine": True},
                                                  "lambda": {"use_docker": False}}).encode(),
                                 headers={"Content-Type": "application/json"})
    urllib.request.urlopen(req, timeout=5).read()
    iam = client("iam")
    users = {}
    for name in ("eks-task-worker", "intruder", "cluster-admin"):
        iam.create_user(UserName=name)
        key = iam.create_access_key(UserName=name)["AccessKey"]
        users[name] = {"access_key_id": key["AccessKeyId"], "secret_access_key": key["SecretAccessKey"],
                       "arn": f"arn:aws:iam::{ACCOUNT}:user/{name}"}
    iam.create_role(RoleName="eks-task-worker-cluster", AssumeRolePolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "eks.amazonaws.com"},
                                                 "Action": "sts:AssumeRole"}]}))
    trust = lambda service: json.dumps({"Version": "2012-10-17", "Statement": [  # noqa: E731
        {"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}]})
    iam.create_role(RoleName="eks-task-worker-function", AssumeRolePolicyDocument=trust("lambda.amazonaws.com"))
    iam.create_role(RoleName="eks-task-worker-states", AssumeRolePolicyDocument=trust("states.amazonaws.com"))
    iam.create_role(RoleName="eks-task-worker-scheduler", AssumeRolePolicyDocument=trust("scheduler.amazonaws.com"))
    client("scheduler").create_schedule_group(Name="eks-task-worker")
    client("s3").create_bucket(Bucket=LOG_BUCKET)
    # The poll states' seal: an HMAC key, as the template's PollStateKey (moto names a
    # key by its id in GenerateMac and VerifyMac, not by its ARN).
    users["poll_state_key"] = client("kms").create_key(
        KeySpec="HMAC_256", KeyUsage="GENERATE_VERIFY_MAC",
        Description="eks-task-worker - seals the poll states")["KeyMetadata"]["KeyId"]
    # The functions' names exist in moto so that state machines can name them; the
    # local Lambda platform runs the real binaries.
    import io
    import zipfile
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("bootstrap", "#!/bin/sh\n")
    functions = {}
    for fn in ("run-job", "call", "poller", "cluster-ops", "activity", "cleanup"):
        name = f"eks-task-worker-{fn}"
        functions[fn] = client("lambda").create_function(
            FunctionName=name, Runtime="provided.al2023", Handler="bootstrap", Code={"ZipFile": buf.getvalue()},
            Role=f"arn:aws:iam::{ACCOUNT}:role/eks-task-worker-function")["FunctionArn"]
    client("eks").create_cluster(
        name=args.cluster, roleArn=f"arn:aws:iam::{ACCOUNT}:role/eks-task-worker-cluster",
        resourcesVpcConfig={"subnetIds": ["subnet-local"]}, tags={"local-world": "true"})
    return users, functions


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--moto-port", type=int, required=True)
    p.add_argument("--webhook-port", type=int, required=True)
    p.add_argument("--cluster", required=True)
    p.add_argument("--region", default="us-east-1")
    p.add_argument("--api-endpoint", required=True)
    p.add_argument("--ca-file", required=True)
    p.add_argument("--facts", required=True)
    p.add_argument("--admin-cert", required=True)
    p.add_argument("--admin-key", required=True)
    args = p.parse_args()
    give_every_cluster_its_own_endpoint(args.cluster, args.api_endpoint, args.ca_file,
                                        os.path.join(os.path.dirname(args.ca_file), "clusters"))
    remember_access_config()
    serve_access_entries(LocalApiServer(args.api_endpoint, args.ca_file, args.admin_cert, args.admin_key))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s", stream=sys.stdout)
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=args.moto_port, verbose=False)
    moto.start()
    moto_url = f"http://127.0.0.1:{args.moto_port}"
    users, functions = bootstrap(moto_url, args)
    poll_state_key = users.pop("poll_state_key")
    server = ThreadingHTTPServer(("127.0.0.1", args.webhook_port), make_handler(args.cluster, moto_url))
    with open(args.facts + ".tmp", "w") as f:
        json.dump({"aws_endpoint": moto_url, "region": args.region, "account": ACCOUNT, "users": users,
                   "functions": functions, "states_role": f"arn:aws:iam::{ACCOUNT}:role/eks-task-worker-states",
                   "scheduler_role": f"arn:aws:iam::{ACCOUNT}:role/eks-task-worker-scheduler",
                   "schedule_group": "eks-task-worker", "log_bucket": LOG_BUCKET,
                   "poll_state_key": poll_state_key}, f, indent=2)
    os.replace(args.facts + ".tmp", args.facts)
    log.info("moto on %s, webhook on 127.0.0.1:%d", moto_url, args.webhook_port)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    threading.Event().wait()


if __name__ == "__main__":
    main()
