"""The local world's pod simulator: stands in for the scheduler and the kubelet.

It registers a Node (`sim-node`, Ready, kubelet endpoint 127.0.0.1:--kubelet-port),
binds pending pods to it as they are made (a thread of its own follows the pods that have
no node with a watch, so a busy world does not delay a binding), runs them Pending -> Running -> Succeeded/Failed by the test
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
  sim.eks-task-worker.io/oom-killed[.<c>]      "true": the container ends OOMKilled, exit code 137
  sim.eks-task-worker.io/evicted               "true": at its end the pod is evicted (Failed, reason Evicted)

Without a log annotation a container logs one line naming itself and its image; but for
AWS's sample Job, `perl -Mbignum=bpi -wle 'print bpi(N)'` in a `perl` image, which logs
π to N digits, as perl would (so that the shipped examples carry no annotation).

What a kubelet does by the pod's spec, with no annotation:

  - init containers (spec.initContainers) run first, each with its exit code and log (the
    same annotations, by its name); one that fails fails the pod (restartPolicy Never);
  - a configMap or secret volume whose object does not exist keeps the pod in
    ContainerCreating, with a FailedMount Warning event;
  - an env or envFrom reference to a ConfigMap or Secret that does not exist keeps the
    container in CreateContainerConfigError;
  - with restartPolicy OnFailure, a container that exits non-zero is restarted: it waits
    in CrashLoopBackOff (10 s, a kubelet's first back-off), its restartCount counted and a
    BackOff Warning event recorded, then runs again.

Warning events are aggregated as the kubelet's recorder does: the same one again moves
the event's count and lastTimestamp on.

Objects are looked up when the pod is first bound; one created later is not noticed.

The pods it runs are listed every --interval seconds, all but the finished ones (a world
that has run for a while holds thousands); a step that takes over half a second is
logged with its duration and the number of pods, and a line every minute gives the
slowest step of that minute.
"""
import argparse
import datetime
import json
import logging
import re
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

    def watch(self, path):
        """The events of a watch (`path` with watch=1), one dict each, until the API server
        ends it; an ERROR event (a resourceVersion too old) ends it too."""
        conn = http.client.HTTPSConnection(self.host, self.port, context=self.ctx, timeout=120)
        try:
            conn.request("GET", path)
            r = conn.getresponse()
            if r.status != 200:
                raise RuntimeError(f"watch {path}: {r.status} {r.read()[:300]!r}")
            while True:
                line = r.readline()
                if not line:
                    return
                event = json.loads(line)
                if event.get("type") == "ERROR":
                    log.info("watch ended: %s", event.get("object", {}).get("message"))
                    return
                yield event
        finally:
            conn.close()


def now():
    return datetime.datetime.now(datetime.timezone.utc)


def rfc3339(t):
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(s):
    return datetime.datetime.strptime(s, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc)


def pi_digits(n):
    """π to n significant digits ("3.14…"), as perl's bignum bpi(n) prints it (the last
    digit rounded), by Machin's formula in integers."""
    guard = 10
    scale = 10 ** (n + guard)

    def arctan_inv(x):
        total, term, k, sign = 0, scale // x, 1, 1
        while term:
            total += sign * (term // k)
            term //= x * x
            k += 2
            sign = -sign
        return total

    pi = 4 * (4 * arctan_inv(5) - arctan_inv(239))
    rounded = (pi + 5 * 10 ** (guard)) // 10 ** (guard + 1)
    digits = str(rounded)
    return digits[0] + "." + digits[1:]


def default_log(pod_name, container, spec):
    """A container's log when no annotation gives one: AWS's sample Job's π, else a line
    naming the container and its image."""
    image = spec.get("image", "")
    words = " ".join(spec.get("command", []) + spec.get("args", []))
    sample = re.search(r"-Mbignum=bpi\b.*\bprint bpi\((\d+)\)", words)
    if image.split(":")[0].split("/")[-1] == "perl" and sample and 0 < int(sample.group(1)) <= 100000:
        return pi_digits(int(sample.group(1))) + "\n"
    return f"{pod_name}/{container} ran {image}\n"


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
        # The Warning events recorded, by (pod uid, reason, message, component): their
        # name and count.
        self.events = {}
        self.lock = threading.Lock()
        # The binder's thread records events too.
        self.events_lock = threading.Lock()
        self.minute, self.slowest = time.monotonic(), 0.0

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
        began = time.monotonic()
        status, body = self.api.call("GET", "/api/v1/pods?fieldSelector=status.phase%21%3DSucceeded%2Cstatus.phase%21%3DFailed")
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
        took = time.monotonic() - began
        if took > 0.5:
            log.warning("slow step: %.2f s for %d pods", took, len(seen))
        self.slowest = max(self.slowest, took)
        if time.monotonic() - self.minute >= 60:
            log.info("slowest step of the last minute: %.2f s (%d pods)", self.slowest, len(seen))
            self.minute, self.slowest = time.monotonic(), 0.0

    def binder(self):
        """Binds each pod without a node as soon as it is made: a list, then a watch of
        such pods from the list's resourceVersion, again whenever the watch ends."""
        api = self.api  # its connection is per thread
        unbound = "/api/v1/pods?fieldSelector=spec.nodeName%3D"
        while True:
            try:
                status, body = api.call("GET", unbound)
                if status != 200:
                    raise RuntimeError(f"list unbound pods: {status} {body}")
                for pod in body.get("items", []):
                    self.schedule(api, pod)
                rv = body["metadata"]["resourceVersion"]
                for event in api.watch(f"{unbound}&watch=1&allowWatchBookmarks=false&timeoutSeconds=60&resourceVersion={rv}"):
                    if event.get("type") in ("ADDED", "MODIFIED"):
                        self.schedule(api, event["object"])
            except Exception:  # noqa: BLE001 - keep binding through API hiccups
                log.exception("binder")
                time.sleep(1)

    def schedule(self, api, pod):
        """What the scheduler does with a pod that has no node: binds it to the node, or,
        marked unschedulable, reports it so once."""
        meta, spec, st = pod["metadata"], pod["spec"], pod.get("status", {})
        if meta.get("deletionTimestamp") or spec.get("nodeName"):
            return
        ns, name = meta["namespace"], meta["name"]
        base = f"/api/v1/namespaces/{ns}/pods/{name}"
        if annotation(pod, "unschedulable") == "true":
            if not any(c.get("type") == "PodScheduled" for c in st.get("conditions", [])):
                self.patch_status(base, {"conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                                          "message": "0/1 nodes are available: 1 Insufficient cpu.",
                                                          "lastTransitionTime": rfc3339(now())}]})
                self.warn(pod, "FailedScheduling", "0/1 nodes are available: 1 Insufficient cpu.", "default-scheduler")
            return
        began = time.monotonic()
        code, body = api.call("POST", f"{base}/binding", {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name},
                                                         "target": {"apiVersion": "v1", "kind": "Node", "name": NODE}})
        if code >= 300:
            if code not in (404, 409):  # gone, or bound already
                log.warning("bind %s/%s: %s %s", ns, name, code, body.get("message"))
        else:
            created = parse_time(meta.get("creationTimestamp", rfc3339(now())))
            log.info("bound %s/%s %.1f s after it was made (the call %.2f s)", ns, name,
                     (now() - created).total_seconds(), time.monotonic() - began)

    def warn(self, pod, reason, message, component):
        with self.events_lock:
            self._warn(pod, reason, message, component)

    def _warn(self, pod, reason, message, component):
        """A Warning event about the pod, as the scheduler or the kubelet records it: the
        same reason and message about the same pod again is one event, its count and
        lastTimestamp moved on and its firstTimestamp kept (client-go's aggregation)."""
        meta = pod["metadata"]
        stamp = rfc3339(now())
        key = (meta.get("uid"), reason, message, component)
        known = self.events.get(key)
        if known:
            name, count = known
            status, _ = self.api.call("PATCH", f"/api/v1/namespaces/{meta['namespace']}/events/{name}",
                                      {"count": count + 1, "lastTimestamp": stamp}, "application/merge-patch+json")
            if status < 300:
                self.events[key] = (name, count + 1)
                return
        name = f"{meta['name']}.{int(now().timestamp() * 1e6):x}"
        status, _ = self.api.call("POST", f"/api/v1/namespaces/{meta['namespace']}/events", {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": name, "namespace": meta["namespace"]},
            "involvedObject": {"kind": "Pod", "name": meta["name"], "namespace": meta["namespace"], "uid": meta.get("uid"),
                               "apiVersion": "v1"},
            "reason": reason, "message": message, "type": "Warning", "count": 1,
            "firstTimestamp": stamp, "lastTimestamp": stamp, "source": {"component": component, "host": NODE}})
        if status < 300:
            self.events[key] = (name, 1)
            if len(self.events) > 4096:  # the recorder's cache is bounded too
                self.events.pop(next(iter(self.events)))

    def advance(self, pod):
        meta, spec, st = pod["metadata"], pod["spec"], pod.get("status", {})
        ns, name = meta["namespace"], meta["name"]
        base = f"/api/v1/namespaces/{ns}/pods/{name}"
        if meta.get("deletionTimestamp"):
            self.api.call("DELETE", f"{base}?gracePeriodSeconds=0", {"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0})
            return
        if not spec.get("nodeName"):
            return  # the binder's (scheduler's) part
        if spec.get("nodeName") != NODE:
            return
        phase = st.get("phase", "Pending")
        containers = [c["name"] for c in spec.get("containers", [])]
        inits = [c["name"] for c in spec.get("initContainers", [])]
        images = {c["name"]: c.get("image", "") for c in spec.get("initContainers", []) + spec.get("containers", [])}
        if phase == "Pending" and not st.get("containerStatuses") and self.cannot_create(pod, base, containers, images):
            return
        if phase == "Pending" and st.get("containerStatuses") and any(
                c.get("state", {}).get("waiting", {}).get("reason") in ("ContainerCreating", "PodInitializing", "CreateContainerConfigError")
                for c in st["containerStatuses"]):
            return
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
        if phase == "Pending" and inits:
            codes = {c: int(annotation(pod, "exit-code", c, "0")) for c in inits}
            failed = next((c for c in inits if codes[c]), None)
            if failed is not None and spec.get("restartPolicy", "Always") == "Never":
                stamp = rfc3339(now())
                ran = inits[: inits.index(failed) + 1]
                self.patch_status(base, {
                    "phase": "Failed", "hostIP": "127.0.0.1", "podIP": "127.0.0.1", "startTime": stamp,
                    "conditions": [{"type": "Initialized", "status": "False", "reason": "ContainersNotInitialized",
                                    "message": f"containers with incomplete status: [{' '.join(inits[inits.index(failed):])}]",
                                    "lastTransitionTime": stamp}],
                    "initContainerStatuses": [self.terminated(ns, name, c, images[c], codes[c], stamp, stamp) for c in ran],
                    "containerStatuses": [{"name": c, "image": images[c], "imageID": "", "ready": False, "restartCount": 0,
                                           "started": False, "state": {"waiting": {"reason": "PodInitializing"}}} for c in containers],
                })
                log.info("pod %s/%s Failed in init container %s", ns, name, failed)
                return
        if phase == "Pending":
            started = rfc3339(now())
            init_statuses = [self.terminated(ns, name, c, images[c], 0, started, started) for c in inits]
            self.patch_status(base, {
                "phase": "Running", "hostIP": "127.0.0.1", "podIP": "127.0.0.1", "startTime": started,
                "conditions": [{"type": t, "status": "True", "lastTransitionTime": started}
                               for t in ("PodScheduled", "Initialized", "ContainersReady", "Ready")],
                **({"initContainerStatuses": init_statuses} if init_statuses else {}),
                "containerStatuses": [self.running(ns, name, c, images[c], started, 0) for c in containers],
            })
        elif phase == "Running":
            self.run(pod, base, containers, images)

    @staticmethod
    def terminated(ns, name, c, image, code, started, finished, reason=None, restarts=0):
        return {"name": c, "image": image, "imageID": f"podsim://{image}", "ready": False, "restartCount": restarts,
                "started": False, "containerID": f"podsim://{ns}.{name}.{c}",
                "state": {"terminated": {"exitCode": code, "reason": reason or ("Error" if code else "Completed"),
                                         "startedAt": started, "finishedAt": finished,
                                         "containerID": f"podsim://{ns}.{name}.{c}"}}}

    @staticmethod
    def running(ns, name, c, image, started, restarts, last=None):
        status = {"name": c, "image": image, "imageID": f"podsim://{image}", "ready": True, "restartCount": restarts,
                  "started": True, "containerID": f"podsim://{ns}.{name}.{c}", "state": {"running": {"startedAt": started}}}
        if last:
            status["lastState"] = last
        return status

    def exists(self, ns, kind, name):
        code, _ = self.api.call("GET", f"/api/v1/namespaces/{ns}/{kind}s/{name}")
        return code == 200

    def cannot_create(self, pod, base, containers, images):
        """A kubelet's checks before it starts containers: volumes to mount, then the
        env each container takes from ConfigMaps and Secrets. True when the pod is held."""
        ns = pod["metadata"]["namespace"]
        spec = pod["spec"]
        for v in spec.get("volumes", []) or []:
            for kind, field, key in (("configmap", "configMap", "name"), ("secret", "secret", "secretName")):
                ref = v.get(field)
                if ref and not ref.get("optional") and not self.exists(ns, kind, ref.get(key, "")):
                    # As a kubelet reports it: every container waits (init containers
                    # and, in a pod that has them, the app containers: PodInitializing).
                    inits = [c["name"] for c in spec.get("initContainers", [])]
                    reason = "PodInitializing" if inits else "ContainerCreating"
                    waiting = lambda c, r: {"name": c, "image": images.get(c, ""), "imageID": "", "ready": False, "restartCount": 0,
                                            "started": False, "state": {"waiting": {"reason": r}}}
                    self.patch_status(base, {**({"initContainerStatuses": [waiting(c, "PodInitializing") for c in inits]} if inits else {}),
                                             "containerStatuses": [waiting(c, reason) for c in containers]})
                    self.warn(pod, "FailedMount", f'MountVolume.SetUp failed for volume "{v["name"]}" : {kind} "{ref.get(key, "")}" not found', "kubelet")
                    return True
        missing = {}
        for c in spec.get("containers", []):
            refs = [(("configmap", e["valueFrom"]["configMapKeyRef"]) if "configMapKeyRef" in e.get("valueFrom", {}) else
                     ("secret", e["valueFrom"]["secretKeyRef"])) for e in c.get("env", []) or []
                    if {"configMapKeyRef", "secretKeyRef"} & set(e.get("valueFrom", {}))]
            refs += [(("configmap", e["configMapRef"]) if "configMapRef" in e else ("secret", e["secretRef"]))
                     for e in c.get("envFrom", []) or [] if {"configMapRef", "secretRef"} & set(e)]
            for kind, ref in refs:
                if not ref.get("optional") and not self.exists(ns, kind, ref.get("name", "")):
                    missing[c["name"]] = f'{kind} "{ref.get("name", "")}" not found'
                    break
        if not missing:
            return False
        self.patch_status(base, {"containerStatuses": [
            {"name": c, "image": images[c], "imageID": "", "ready": False, "restartCount": 0, "started": False,
             "state": {"waiting": {"reason": "CreateContainerConfigError", "message": missing[c]} if c in missing else
                       {"reason": "ContainerCreating"}}} for c in containers]})
        for c, why in missing.items():
            self.warn(pod, "Failed", f"Error: {why}", "kubelet")
        return True

    def run(self, pod, base, containers, images):
        """A running pod: its containers end after run-seconds, each with its exit code
        (OOMKilled: 137), the pod Succeeded or Failed (or Evicted); with restartPolicy
        OnFailure a container that failed waits in CrashLoopBackOff and runs again."""
        meta, spec, st = pod["metadata"], pod["spec"], pod.get("status", {})
        ns, name = meta["namespace"], meta["name"]
        statuses = {c["name"]: c for c in st.get("containerStatuses", [])}
        first = next(iter(statuses.values()), {})
        restarts = first.get("restartCount", 0)
        waiting = first.get("state", {}).get("waiting")
        if waiting and waiting.get("reason") == "CrashLoopBackOff":
            ended = parse_time(first.get("lastState", {}).get("terminated", {}).get("finishedAt", rfc3339(now())))
            if (now() - ended).total_seconds() >= 10:
                started = rfc3339(now())
                self.patch_status(base, {"containerStatuses": [
                    self.running(ns, name, c, images[c], started, restarts, statuses.get(c, {}).get("lastState")) for c in containers]})
            return
        started = parse_time(first.get("state", {}).get("running", {}).get("startedAt") or st.get("startTime", rfc3339(now())))
        if (now() - started).total_seconds() < float(annotation(pod, "run-seconds", default="1")):
            return
        finished = rfc3339(now())
        oom = {c: annotation(pod, "oom-killed", c) == "true" for c in containers}
        codes = {c: 137 if oom[c] else int(annotation(pod, "exit-code", c, "0")) for c in containers}
        failed = any(codes.values())
        ended = {c: self.terminated(ns, name, c, images[c], codes[c], rfc3339(started), finished,
                                    "OOMKilled" if oom[c] else None, restarts) for c in containers}
        if failed and spec.get("restartPolicy") == "OnFailure":
            self.patch_status(base, {"containerStatuses": [
                {**ended[c], "restartCount": restarts + 1, "lastState": ended[c]["state"],
                 "state": {"waiting": {"reason": "CrashLoopBackOff",
                                       "message": f"back-off 10s restarting failed container={c} pod={name}_{ns}({meta.get('uid')})"}}}
                for c in containers]})
            for c in containers:
                self.warn(pod, "BackOff", f"Back-off restarting failed container {c} in pod {name}_{ns}({meta.get('uid')})", "kubelet")
            return
        evicted = annotation(pod, "evicted") == "true"
        status = {
            "phase": "Failed" if failed or evicted else "Succeeded",
            "conditions": [{"type": t, "status": "False" if t in ("Ready", "ContainersReady") else "True",
                            "reason": "PodCompleted", "lastTransitionTime": finished}
                           for t in ("PodScheduled", "Initialized", "ContainersReady", "Ready")],
            "containerStatuses": list(ended.values()),
        }
        if evicted:
            status.update({"reason": "Evicted", "message": "The node was low on resource: memory. Container main was using 2Gi, which exceeds its request of 1Gi."})
            status["containerStatuses"] = [self.terminated(ns, name, c, images[c], 137, rfc3339(started), finished, "Error") for c in containers]
        self.patch_status(base, status)
        log.info("pod %s/%s %s", ns, name, status["phase"] + (" (evicted)" if evicted else ""))

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

    @staticmethod
    def status(pod, container):
        st = pod.get("status", {})
        return next((c for c in st.get("initContainerStatuses", []) + st.get("containerStatuses", [])
                     if c["name"] == container and (c.get("state", {}).get("terminated") or c.get("state", {}).get("running")
                                                    or c.get("lastState", {}).get("terminated"))), None)

    @staticmethod
    def started(pod, container):
        return ContainerLog.status(pod, container) is not None

    def __init__(self, pod, container):
        st = pod.get("status", {})
        cs = ContainerLog.status(pod, container) or {}
        state = cs.get("state", {})
        run = state.get("terminated") or state.get("running") or cs.get("lastState", {}).get("terminated") or {}
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
            spec = next((c for c in pod["spec"]["containers"] + pod["spec"].get("initContainers", [])
                         if c["name"] == container), {})
            text = annotation(pod, "log", container, default_log(pod["metadata"]["name"], container, spec))
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
            if container not in [c["name"] for c in pod["spec"].get("containers", []) + pod["spec"].get("initContainers", [])]:
                return self.fail(400, f'container "{container}" in pod "{name}" is not valid')
            if q.get("previous") == "true":
                return self.fail(400, f'previous terminated container "{container}" in pod "{name}" not found')
            if pod.get("status", {}).get("phase", "Pending") == "Pending":
                # The simulator's own view can lag its last status write under load; a
                # kubelet knows its pod's state: ask the API server before refusing.
                pod = sim.pod(ns, name, fresh=True) or pod
            if not ContainerLog.started(pod, container):
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
    threading.Thread(target=sim.binder, daemon=True).start()
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
