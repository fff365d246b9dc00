"""The local world's AWS side, in one process on 127.0.0.1:

- moto (ThreadedMotoServer) serves STS, Step Functions, EKS, Scheduler, EventBridge
  and IAM on --moto-port, with its Step Functions interpreter switched on;
- the EKS authentication webhook on --webhook-port answers the API server's
  TokenReviews as EKS does: aws-iam-authenticator's token rules, the SigV4 signature
  recomputed by botocore with the secret moto holds for the access key, and the
  caller's ARN from moto's STS GetCallerIdentity (called with the presigned request);
- at start it creates the worker's and a second (unauthorised) IAM user, and the EKS
  cluster in moto with its endpoint and CA pointed at the local API server, and
  writes all of it to --facts (JSON).
"""
import argparse
import base64
import json
import logging
import re
import sys
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

import boto3
from moto.eks.models import eks_backends
from moto.iam.models import iam_backends
from moto.server import ThreadedMotoServer
from moto.sts.models import sts_backends

import eks_token

ACCOUNT = "123456789012"
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


def secret_for(access_key):
    """The (secret, session token) moto holds for an access key, or None."""
    for account in list(sts_backends.keys()):
        for backend in sts_backends[account].values():
            role = backend.get_assumed_role_from_access_key(access_key)
            if role is not None:
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
                url = eks_token.verify(token, cluster, secret_for)
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
    # The functions' names exist in moto so that state machines can name them; the
    # local Lambda platform runs the real binaries.
    import io
    import zipfile
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("bootstrap", "#!/bin/sh\n")
    functions = {}
    for fn in ("run-job", "call", "poller", "cluster-ops"):
        name = f"eks-task-worker-{fn}"
        functions[fn] = client("lambda").create_function(
            FunctionName=name, Runtime="provided.al2023", Handler="bootstrap", Code={"ZipFile": buf.getvalue()},
            Role=f"arn:aws:iam::{ACCOUNT}:role/eks-task-worker-function")["FunctionArn"]
    client("eks").create_cluster(
        name=args.cluster, roleArn=f"arn:aws:iam::{ACCOUNT}:role/eks-task-worker-cluster",
        resourcesVpcConfig={"subnetIds": ["subnet-local"]}, tags={"local-world": "true"})
    # moto gives a random endpoint and CA: point them at the local API server.
    for backend in eks_backends[ACCOUNT].values():
        c = backend.clusters.get(args.cluster)
        if c is not None:
            c.endpoint = args.api_endpoint
            c.certificate_authority = {"data": base64.b64encode(open(args.ca_file, "rb").read()).decode()}
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
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s", stream=sys.stdout)
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=args.moto_port, verbose=False)
    moto.start()
    moto_url = f"http://127.0.0.1:{args.moto_port}"
    users, functions = bootstrap(moto_url, args)
    server = ThreadingHTTPServer(("127.0.0.1", args.webhook_port), make_handler(args.cluster, moto_url))
    with open(args.facts + ".tmp", "w") as f:
        json.dump({"aws_endpoint": moto_url, "region": args.region, "account": ACCOUNT, "users": users,
                   "functions": functions, "states_role": f"arn:aws:iam::{ACCOUNT}:role/eks-task-worker-states",
                   "scheduler_role": f"arn:aws:iam::{ACCOUNT}:role/eks-task-worker-scheduler",
                   "schedule_group": "eks-task-worker"}, f, indent=2)
    import os
    os.replace(args.facts + ".tmp", args.facts)
    log.info("moto on %s, webhook on 127.0.0.1:%d", moto_url, args.webhook_port)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    threading.Event().wait()


if __name__ == "__main__":
    main()
