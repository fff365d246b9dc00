"""What the local Lambda platform records of every AWS request a function makes, as
CloudTrail would: which function, with whose credentials, which service and operation
(named by botocore's service models, as in the IAM action), and which role it passes.

Each function reaches AWS through its own recording relay (the fault proxy's handler,
no rules), so a request is the function's by the port it came in on; the journal, one
JSON object a line, is what `scripts/local-lambda/iam_check.py` compares with the
template's grants.
"""
import functools
import json
import re
import threading
from urllib.parse import parse_qsl, urlsplit

import botocore.session

# The signing name in a request's credential scope, and botocore's name of the service.
SERVICES = {"states": "stepfunctions"}
# Request fields that pass a role to the service (iam:PassRole is checked on them).
PASSED_ROLE_FIELDS = ("RoleArn", "roleArn", "nodeRole", "podExecutionRoleArn")

_session = botocore.session.get_session()
_models = {}
_models_lock = threading.Lock()


def _model(service):
    with _models_lock:
        if service not in _models:
            _models[service] = _session.get_service_model(service)
        return _models[service]


def signing_name(headers):
    """The service a request is signed for, from its Authorization header."""
    m = re.search(r"Credential=([^/]+)/[^/]+/[^/]+/([^/]+)/aws4_request", headers.get("Authorization", ""))
    return (m.group(2), m.group(1)) if m else (None, None)


@functools.lru_cache(maxsize=None)
def _template(uri):
    """A requestUri as a regex on the path, and the query keys it fixes."""
    path, _, query = uri.partition("?")
    pattern = re.sub(r"\{[^}]+\+\}", ".+", re.escape(path).replace(r"\{", "{").replace(r"\}", "}"))
    pattern = re.sub(r"\{[^}]+\}", "[^/]+", pattern)
    return re.compile(f"^{pattern}$"), {k.split("=")[0] for k in query.split("&") if k}


def operation(method, path, headers, body):
    """(service signing name, operation name) of a request, or (name, None)."""
    service, _ = signing_name(headers)
    if not service:
        return None, None
    model = _model(SERVICES.get(service, service))
    target = headers.get("X-Amz-Target")
    if model.protocol in ("json",) and target:
        return service, target.rsplit(".", 1)[-1]
    if model.protocol == "query":
        form = dict(parse_qsl(body.decode("utf-8", "replace"))) if body else {}
        form.update(parse_qsl(urlsplit(path).query))
        return service, form.get("Action")
    url = urlsplit(path)
    query = {k for k, _ in parse_qsl(url.query, keep_blank_values=True)}
    best, best_score = None, -1
    for name in model.operation_names:
        op = model.operation_model(name)
        if op.http.get("method") != method:
            continue
        regex, fixed = _template(op.http.get("requestUri", "/"))
        if not regex.match(url.path) or not fixed <= query:
            continue
        members = op.input_shape.members.items() if op.input_shape else []
        needed = [n for n in (op.input_shape.required_members if op.input_shape else [])]
        required = {m.serialization.get("name", n) for n, m in members
                    if m.serialization.get("location") == "querystring" and n in needed}
        headers_needed = {m.serialization.get("name", n).lower() for n, m in members
                          if m.serialization.get("location") == "header" and n in needed}
        if not required <= query or not headers_needed <= {h.lower() for h in headers.keys()}:
            continue
        score = len(fixed) + len(required) + len(headers_needed)
        if score > best_score:
            best, best_score = name, score
    return service, best


def passed_roles(body):
    """The role ARNs a request body passes (JSON bodies; nested too)."""
    try:
        data = json.loads(body) if body else None
    except ValueError:
        return []
    found = []

    def walk(node):
        if isinstance(node, dict):
            for k, v in node.items():
                if k in PASSED_ROLE_FIELDS and isinstance(v, str):
                    found.append(v)
                else:
                    walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(data)
    return found


class Journal:
    """The journal file, appended to by every relay of every platform process."""

    def __init__(self, path):
        self.path = path
        self.lock = threading.Lock()

    def write(self, entry):
        line = json.dumps(entry) + "\n"
        with self.lock, open(self.path, "a") as f:
            f.write(line)


def recorder(function, own_access_key, journal):
    """A `faultproxy.Faults`'s `record` for one function's relay."""
    def record(entry, method, path, headers, body):
        service, op = operation(method, path, headers, body)
        _, key = signing_name(headers)
        journal.write({"function": function, "service": service, "operation": op,
                       "own_credentials": key == own_access_key, "passes": passed_roles(body),
                       "status": entry.get("status"), "request": f"{method} {urlsplit(path).path}"})
    return record
