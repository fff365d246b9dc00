"""The local world's pod simulator: stands in for the scheduler and the kubelet.

It registers a Node (`sim-node`, Ready, kubelet endpoint 127.0.0.1:--kubelet-port),
binds pending pods to it, runs them Pending -> Running -> Succeeded/Failed by the test
convention below, force-deletes pods being deleted (there is no real kubelet to finish
them), and serves container logs through the kubelet API over HTTPS, so that the API
server's `pods/{name}/log` works, honouring tailLines, limitBytes, sinceSeconds,
sinceTime, timestamps, previous and container.

Test convention: annotations on the pod (set them on the Job's pod template):

  sim.eks-task-worker.io/run-seconds           how long the pod runs (default 1)
  sim.eks-task-worker.io/exit-code[.<c>]       exit code, all containers or container c (default 0)
  sim.eks-task-worker.io/log[.<c>]             the log text
  sim.eks-task-worker.io/log-bytes[.<c>]       a generated log of that many bytes, 100-byte lines
  sim.eks-task-worker.io/unschedulable         "true": the pod stays Pending, PodScheduled=False
  sim.eks-task-worker.io/image-pull-error      "true": the pod stays Pending, its containers in ImagePullBackOff

Without a log annotation a container logs one line naming itself and its image.
"""
import argparse
import datetime
import json
import logging
import ssl
import sys
import threading
import time
import urllib.parse
import http.client
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

A = "sim.eks-task-worker.io/"
NODE = "sim-node"
LINE = 100
log = logging.getLogger("podsim")


class Api:
    """A minimal client for the API server, authenticated by the admin certificate."""

    def __init__(self, endpoint, ca, cert, key):
        u = urllib.parse.urlsplit(endpoint)
        self.host, self.port = u.hostname, u.port or 443
        self.ctx = ssl.create_default_context(cafile=ca)
        self.ctx.load_cert_chain(cert, key)
        self.local = threading.local()

    def call(self, method, path, body=None, content_type="application/json"):
        for attempt in range(2):
            conn = getattr(self.local, "conn", None)
            if conn is None:
                conn = self.local.conn = http.client.HTTPSConnection(self.host, self.port, context=self.ctx, timeout=10)
            try:
                data = None if body is None else json.dumps(body).encode()
                conn.request(method, path, body=data, headers={"Content-Type": content_type} if data else {})
                r = conn.getresponse()
                raw = r.read()
                return r.status, (json.loads(raw) if raw else {})
            except (http.client.HTTPException, OSError):
                self.local.conn = None
                if attempt:
                    raise
        raise RuntimeError("unreachable")


def now():
    return datetime.datetime.now(datetime.timezone.utc)


def rfc3339(t):
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(s):
    return datetime.datetime.strptime(s, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc)


def annotation(pod, name, container=None, default=None):
    ann = pod.get("metadata", {}).get("annotations", {}) or {}
    if container is not None and f"{A}{name}.{container}" in ann:
        return ann[f"{A}{name}.{container}"]
    return ann.get(f"{A}{name}", default)


class Simulator:
    def __init__(self, api, kubelet_port):
        self.api = api
        self.kubelet_port = kubelet_port
        self.pods = {}
        self.lock = threading.Lock()

    def register_node(self):
        status, _ = self.api.call("GET", f"/api/v1/nodes/{NODE}")
        if status == 404:
            self.api.call("POST", "/api/v1/nodes", {"apiVersion": "v1", "kind": "Node",
                                                   "metadata": {"name": NODE, "labels": {"kubernetes.io/hostname": NODE}}})
        stamp = rfc3339(now())
        status, body = self.api.call("PATCH", f"/api/v1/nodes/{NODE}/status", {"status": {
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}, {"type": "Hostname", "address": NODE}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": self.kubelet_port}},
            "capacity": {"cpu": "64", "memory": "256Gi", "pods": "1000"},
            "allocatable": {"cpu": "64", "memory": "256Gi", "pods": "1000"},
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "pod simulator",
                            "lastHeartbeatTime": stamp, "lastTransitionTime": stamp}],
            "nodeInfo": {"kubeletVersion": "v1.20.2-podsim", "containerRuntimeVersion": "podsim://1",
                         "architecture": "amd64", "operatingSystem": "linux", "osImage": "podsim",
                         "kernelVersion": "", "kubeProxyVersion": "", "machineID": "", "systemUUID": "", "bootID": ""},
        }}, "application/merge-patch+json")
        if status >= 300:
            raise RuntimeError(f"cannot set the node status: {status} {body}")

    def step(self):
        status, body = self.api.call("GET", "/api/v1/pods")
        if status != 200:
            log.warning("list pods: %s %s", status, body)
            return
        seen = {}
        for pod in body.get("items", []):
            key = (pod["metadata"]["namespace"], pod["metadata"]["name"])
            seen[key] = pod
            try:
                self.advance(pod)
            except Exception:  # noqa: BLE001 - one pod must not stop the others
                log.exception("pod %s/%s", *key)
        with self.lock:
            self.pods = seen

    def warn(self, pod, reason, message, component):
        """A Warning event about the pod, as the scheduler or the kubelet records it."""
        meta = pod["metadata"]
        stamp = rfc3339(now())
        self.api.call("POST", f"/api/v1/namespaces/{meta['namespace']}/events", {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": f"{meta['name']}.{int(now().timestamp() * 1e6):x}", "namespace": meta["namespace"]},
            "involvedObject": {"kind": "Pod", "name": meta["name"], "namespace": meta["namespace"], "uid": meta.get("uid"),
                               "apiVersion": "v1"},
            "reason": reason, "message": message, "type": "Warning", "count": 1,
            "firstTimestamp": stamp, "lastTimestamp": stamp, "source": {"component": component, "host": NODE}})

    def advance(self, pod):
        meta, spec, st = pod["metadata"], pod["spec"], pod.get("status", {})
        ns, name = meta["namespace"], meta["name"]
        base = f"/api/v1/namespaces/{ns}/pods/{name}"
        if meta.get("deletionTimestamp"):
            self.api.call("DELETE", f"{base}?gracePeriodSeconds=0", {"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0})
            return
        if not spec.get("nodeName"):
            if annotation(pod, "unschedulable") == "true":
                if not any(c.get("type") == "PodScheduled" for c in st.get("conditions", [])):
                    self.patch_status(base, {"conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                                              "message": "0/1 nodes are available: 1 Insufficient cpu.",
                                                              "lastTransitionTime": rfc3339(now())}]})
                    self.warn(pod, "FailedScheduling", "0/1 nodes are available: 1 Insufficient cpu.", "default-scheduler")
                return
            self.api.call("POST", f"{base}/binding", {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name},
                                                      "target": {"apiVersion": "v1", "kind": "Node", "name": NODE}})
            return
        if spec.get("nodeName") != NODE:
            return
        phase = st.get("phase", "Pending")
        containers = [c["name"] for c in spec.get("containers", [])]
        images = {c["name"]: c.get("image", "") for c in spec.get("containers", [])}
        if phase == "Pending" and annotation(pod, "image-pull-error") == "true":
            if not st.get("containerStatuses"):
                self.patch_status(base, {"conditions": [{"type": "PodScheduled", "status": "True", "lastTransitionTime": rfc3339(now())}],
                                         "containerStatuses": [{"name": c, "image": images[c], "imageID": "", "ready": False, "restartCount": 0,
                                                                "started": False, "state": {"waiting": {"reason": "ImagePullBackOff",
                                                                "message": f'Back-off pulling image "{images[c]}"'}}} for c in containers]})
                for c in containers:
                    self.warn(pod, "Failed", f'Failed to pull image "{images[c]}": rpc error: code = NotFound desc = '
                              f'failed to pull and unpack image "{images[c]}": not found', "kubelet")
            return
        if phase == "Pending":
            started = rfc3339(now())
            self.patch_status(base, {
                "phase": "Running", "hostIP": "127.0.0.1", "podIP": "127.0.0.1", "startTime": started,
                "conditions": [{"type": t, "status": "True", "lastTransitionTime": started}
                               for t in ("PodScheduled", "Initialized", "ContainersReady", "Ready")],
                "containerStatuses": [{"name": c, "image": images[c], "imageID": f"podsim://{images[c]}", "ready": True,
                                       "restartCount": 0, "started": True, "containerID": f"podsim://{ns}.{name}.{c}",
                                       "state": {"running": {"startedAt": started}}} for c in containers],
            })
        elif phase == "Running":
            started = parse_time(st.get("startTime", rfc3339(now())))
            if (now() - started).total_seconds() < float(annotation(pod, "run-seconds", default="1")):
                return
            finished = rfc3339(now())
            codes = {c: int(annotation(pod, "exit-code", c, "0")) for c in containers}
            failed = any(codes.values())
            self.patch_status(base, {
                "phase": "Failed" if failed else "Succeeded",
                "conditions": [{"type": t, "status": "False" if t in ("Ready", "ContainersReady") else "True",
                                "reason": "PodCompleted", "lastTransitionTime": finished}
                               for t in ("PodScheduled", "Initialized", "ContainersReady", "Ready")],
                "containerStatuses": [{"name": c, "image": images[c], "imageID": f"podsim://{images[c]}", "ready": False,
                                       "restartCount": 0, "started": False, "containerID": f"podsim://{ns}.{name}.{c}",
                                       "state": {"terminated": {"exitCode": codes[c], "reason": "Error" if codes[c] else "Completed",
                                                                "startedAt": rfc3339(started), "finishedAt": finished,
                                                                "containerID": f"podsim://{ns}.{name}.{c}"}}} for c in containers],
            })
            log.info("pod %s/%s %s", ns, name, "Failed" if failed else "Succeeded")

    def patch_status(self, base, status):
        code, body = self.api.call("PATCH", f"{base}/status", {"status": status}, "application/merge-patch+json")
        if code >= 300 and code != 404:
            log.warning("status of %s: %s %s", base, code, body.get("message"))

    def pod(self, ns, name, fresh=False):
        with self.lock:
            p = None if fresh else self.pods.get((ns, name))
        if p is None:
            code, p = self.api.call("GET", f"/api/v1/namespaces/{ns}/pods/{name}")
            if code != 200:
                return None
        return p


class ContainerLog:
    """A container's log as lines with timestamps, generated on demand."""

    def __init__(self, pod, container):
        st = pod.get("status", {})
        cs = next((c for c in st.get("containerStatuses", []) if c["name"] == container), {})
        state = cs.get("state", {})
        run = state.get("terminated") or state.get("running") or {}
        self.start = parse_time(run.get("startedAt", st.get("startTime", rfc3339(now()))))
        self.end = parse_time(run["finishedAt"]) if "finishedAt" in run else now()
        ann = pod.get("metadata", {}).get("annotations", {}) or {}
        # A container's own annotation beats the pod-wide one.
        own_text = f"{A}log.{container}" in ann
        size = None if own_text else annotation(pod, "log-bytes", container)
        if size is not None:
            self.count = int(size) // LINE
            tag = f" {pod['metadata']['name']}/{container} "[:60]
            self.line = lambda i: (f"{i:012d}{tag}".ljust(LINE - 1, ".") + "\n")
        else:
            image = next((c.get("image", "") for c in pod["spec"]["containers"] if c["name"] == container), "")
            text = annotation(pod, "log", container, f"{pod['metadata']['name']}/{container} ran {image}\n")
            lines = text.splitlines(keepends=True)
            self.count = len(lines)
            self.line = lambda i: lines[i]

    def stamp(self, i):
        span = (self.end - self.start).total_seconds()
        t = self.start + datetime.timedelta(seconds=span * i / max(self.count, 1))
        return t.strftime("%Y-%m-%dT%H:%M:%S.%f000Z")

    def select(self, q):
        first = 0
        since = None
        if "sinceSeconds" in q:
            since = now() - datetime.timedelta(seconds=int(q["sinceSeconds"]))
        elif "sinceTime" in q:
            since = datetime.datetime.strptime(q["sinceTime"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc)
        if since is not None and since > self.start:
            span = (self.end - self.start).total_seconds() or 1
            first = min(self.count, int(((since - self.start).total_seconds() / span) * self.count + 0.999999))
        if "tailLines" in q:
            first = max(first, self.count - int(q["tailLines"]))
        return range(first, self.count)


def make_kubelet(sim):
    class Kubelet(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):
            log.debug(fmt, *args)

        def fail(self, code, message):
            data = message.encode()
            self.send_response(code)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            u = urllib.parse.urlsplit(self.path)
            parts = u.path.strip("/").split("/")
            if len(parts) != 4 or parts[0] != "containerLogs":
                return self.fail(404, "not found")
            _, ns, name, container = parts
            q = dict(urllib.parse.parse_qsl(u.query))
            pod = sim.pod(ns, name)
            if pod is None:
                return self.fail(404, f'pods "{name}" not found')
            if container not in [c["name"] for c in pod["spec"].get("containers", [])]:
                return self.fail(400, f'container "{container}" in pod "{name}" is not valid')
            if q.get("previous") == "true":
                return self.fail(400, f'previous terminated container "{container}" in pod "{name}" not found')
            if pod.get("status", {}).get("phase", "Pending") == "Pending":
                # The simulator's own view can lag its last status write under load; a
                # kubelet knows its pod's state: ask the API server before refusing.
                pod = sim.pod(ns, name, fresh=True) or pod
            if pod.get("status", {}).get("phase", "Pending") == "Pending":
                return self.fail(400, f'container "{container}" in pod "{name}" is waiting to start: ContainerCreating')
            clog = ContainerLog(pod, container)
            stamps = q.get("timestamps") == "true"
            limit = int(q["limitBytes"]) if "limitBytes" in q else None
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            sent, chunk = 0, []
            for i in clog.select(q):
                line = (clog.stamp(i) + " " if stamps else "") + clog.line(i)
                data = line.encode()
                if limit is not None and sent + len(data) > limit:
                    data = data[: limit - sent]
                chunk.append(data)
                sent += len(data)
                if sum(map(len, chunk)) >= 65536:
                    self.write_chunk(b"".join(chunk))
                    chunk = []
                if limit is not None and sent >= limit:
                    break
            if chunk:
                self.write_chunk(b"".join(chunk))
            self.wfile.write(b"0\r\n\r\n")
            log.info("log served: %s/%s/%s %d bytes", ns, name, container, sent)

        def write_chunk(self, data):
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")

    return Kubelet


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--api", required=True)
    p.add_argument("--ca", required=True)
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--kubelet-port", type=int, required=True)
    p.add_argument("--kubelet-cert", required=True)
    p.add_argument("--kubelet-key", required=True)
    p.add_argument("--interval", type=float, default=0.1)
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s", stream=sys.stdout)
    sim = Simulator(Api(args.api, args.ca, args.cert, args.key), args.kubelet_port)
    server = ThreadingHTTPServer(("127.0.0.1", args.kubelet_port), make_kubelet(sim))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(args.kubelet_cert, args.kubelet_key)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    sim.register_node()
    log.info("node %s ready, kubelet on 127.0.0.1:%d", NODE, args.kubelet_port)
    while True:
        try:
            sim.step()
        except Exception:  # noqa: BLE001 - keep simulating through API hiccups
            log.exception("step")
            time.sleep(1)
        time.sleep(args.interval)


if __name__ == "__main__":
    main()
