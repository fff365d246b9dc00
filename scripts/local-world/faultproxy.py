"""A fault-injecting proxy for the reliability matrix, on 127.0.0.1:

- --kube-port (TLS, the API server's own serving certificate, so the local CA verifies
  it): forwards to the API server, streaming (watches, logs);
- --aws-port (HTTP): forwards to moto; the control API lives here too:
  POST /__faults {"rules": [...]} adds rules, DELETE /__faults removes them all,
  GET /__faults says how often each rule fired, GET /__calls lists the AWS calls seen
  ({"target", "token", "status", "injected"}: Step Functions' X-Amz-Target or the path,
  the task token of SendTask* calls, the status sent back, and whether a rule answered
  in the service's place).

A rule: {"id", "side": "kube"|"aws", "method", "path" (regex on the path and query),
"target" (regex on X-Amz-Target or the form Action), "body" (regex on the request body),
"times" (how many requests it takes, default 1; 0 = every one), "probability" (the
share of matching requests it takes, drawn from the proxy's random numbers, seeded by
POST /__faults {"seed": N} so a run's draws can be made again: the load run's 2 %), and
one action:
"status" (+ "headers", "reply" body), "delay" (seconds before forwarding), "reset"
(close the connection without an answer), "cut_after" (forward, then cut the response
after that many bytes), "rate" (forward the response at most that many bytes a second:
a slow log stream), "replace" ([pattern, replacement]: forward, then answer with the
upstream's body so rewritten, a resource shown in another state than it is)}. With "forward_first": true, a "status" or "reset" rule first
forwards the request and reads the upstream answer, then throws it away: the server
did the work, the client never hears of it (an answer lost after the commit); GET
/__faults then also says what the upstream answered ("forwarded": {id: [status]}).

GET /__stats counts the API server's side: requests by method, watches open at most at
once, and how many requests a rule answered.
"""
import argparse
import http.client
import json
import random
import re
import socket
import ssl
import struct
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl

HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection"}


class Faults:
    def __init__(self, on_call=None):
        self.lock = threading.Lock()
        self.rules = []
        self.calls = []
        self.forwarded = {}
        # on_call(entry, method, path, headers, body): told of every AWS call too (the
        # local Lambda platform's journal).
        self.on_call = on_call
        self.random = random.Random(0)
        # The API server's side: requests by method, watches open now and at most.
        self.kube = {"requests": {}, "watches": 0, "watches_max": 0, "injected": 0}

    def kube_request(self, method, watch):
        with self.lock:
            by = self.kube["requests"]
            by[method] = by.get(method, 0) + 1
            if watch:
                self.kube["watches"] += 1
                self.kube["watches_max"] = max(self.kube["watches_max"], self.kube["watches"])

    def kube_done(self, watch, injected):
        with self.lock:
            if watch:
                self.kube["watches"] -= 1
            if injected:
                self.kube["injected"] += 1

    def record(self, entry, method, path, headers, body):
        with self.lock:
            self.calls.append(entry)
        if self.on_call:
            self.on_call(entry, method, path, headers, body)

    def add(self, rules, seed=None):
        with self.lock:
            if seed is not None:
                self.random.seed(seed)
            for r in rules:
                r.setdefault("times", 1)
                r["fired"] = 0
                self.rules.append(r)

    def clear(self):
        with self.lock:
            self.rules = []

    def match(self, side, method, path, target, body):
        with self.lock:
            for r in self.rules:
                if r.get("side", "kube") != side:
                    continue
                if r["times"] and r["fired"] >= r["times"]:
                    continue
                if r.get("method") and r["method"] != method:
                    continue
                if r.get("path") and not re.search(r["path"], path):
                    continue
                if r.get("target") and not re.search(r["target"], target or ""):
                    continue
                if r.get("body") and not re.search(r["body"], body.decode("utf-8", "replace")):
                    continue
                if r.get("probability") is not None and self.random.random() >= float(r["probability"]):
                    continue
                r["fired"] += 1
                return dict(r)
        return None


def make_handler(side, faults, upstream):
    """`upstream(headers)`: a new connection to where a request with these headers goes."""
    class Proxy(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):
            pass

        def do_GET(self):
            self.relay()

        do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_GET

        def control(self, body):
            if self.path == "/__faults" and self.command == "POST":
                request = json.loads(body or b"{}")
                faults.add(request.get("rules", []), request.get("seed"))
                return self.reply(200, {"ok": True})
            if self.path == "/__faults" and self.command == "DELETE":
                faults.clear()
                return self.reply(200, {"ok": True})
            if self.path == "/__faults":
                with faults.lock:
                    return self.reply(200, {"rules": faults.rules, "forwarded": faults.forwarded})
            if self.path == "/__stats":
                with faults.lock:
                    return self.reply(200, {"kube": faults.kube})
            if self.path == "/__calls":
                with faults.lock:
                    return self.reply(200, {"calls": faults.calls})
            return self.reply(404, {"message": "no such control path"})

        def reply(self, status, body, headers=None):
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            self.send_response(status)
            for k, v in (headers or {"Content-Type": "application/json"}).items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def reset(self):
            # An RST rather than a FIN: SO_LINGER with a zero timeout.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            self.connection.close()

        def relay(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            if side == "aws" and self.path.startswith("/__"):
                return self.control(body)
            target = self.headers.get("X-Amz-Target")
            if side == "aws" and not target and body:
                target = dict(parse_qsl(body.decode("utf-8", "replace"))).get("Action")
            rule = faults.match(side, self.command, self.path, target, body)
            status = None
            watch = side == "kube" and bool(re.search(r"[?&]watch=(true|1)", self.path))
            if side == "kube":
                faults.kube_request(self.command, watch)
            try:
                if rule and rule.get("delay"):
                    time.sleep(float(rule["delay"]))
                if rule and rule.get("forward_first"):
                    forwarded = self.forward_and_drop(body)
                    with faults.lock:
                        faults.forwarded.setdefault(rule["id"], []).append(forwarded)
                if rule and rule.get("reset"):
                    status = "reset"
                    return self.reset()
                if rule and rule.get("status"):
                    status = int(rule["status"])
                    reply = rule.get("reply", {})
                    return self.reply(status, json.dumps(reply).encode() if not isinstance(reply, str) else reply.encode(),
                                      dict({"Content-Type": "application/json"}, **rule.get("headers", {})))
                if rule and rule.get("replace"):
                    status = self.forward_rewritten(body, *rule["replace"])
                    return
                status = self.forward(body, rule.get("cut_after") if rule else None, rule.get("rate") if rule else None)
            finally:
                if side == "kube":
                    faults.kube_done(watch, bool(rule and (rule.get("status") or rule.get("reset"))))
                if side == "aws":
                    token = None
                    if target and target.startswith("AWSStepFunctions.SendTask"):
                        token = json.loads(body or b"{}").get("taskToken")
                    # "injected": the proxy answered (or reset) in place of the service: the call
                    # never reached it (unless forward_first), so it is no attempt to count.
                    injected = bool(rule and (rule.get("status") or rule.get("reset")) and not rule.get("forward_first"))
                    faults.record({"target": target or f"{self.command} {self.path}", "token": token,
                                   "status": status, "injected": injected}, self.command, self.path, self.headers, body)

        def send_upstream(self, body):
            """The request, sent on to the upstream: (connection, response)."""
            conn = upstream(self.headers)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP and k.lower() != "host"}
            headers["Host"] = conn.host + (f":{conn.port}" if conn.port else "")
            try:
                conn.request(self.command, self.path, body=body or None, headers=headers)
                return conn, conn.getresponse()
            except OSError:
                conn.close()
                raise

        def forward_and_drop(self, body):
            try:
                conn, resp = self.send_upstream(body)
            except OSError as e:
                return f"upstream unreachable: {e}"
            try:
                resp.read()
                return resp.status
            except OSError as e:
                return f"upstream cut: {e}"
            finally:
                conn.close()

        def forward_rewritten(self, body, pattern, replacement):
            try:
                conn, resp = self.send_upstream(body)
            except OSError:
                self.reset()
                return "upstream unreachable"
            try:
                data = re.sub(pattern.encode(), replacement.encode(), resp.read())
                headers = {k: v for k, v in resp.getheaders()
                           if k.lower() not in HOP and k.lower() != "content-length"}
                self.reply(resp.status, data, headers)
                return resp.status
            finally:
                conn.close()

        def forward(self, body, cut_after, rate=None):
            try:
                conn, resp = self.send_upstream(body)
            except OSError:
                self.reset()
                return "upstream unreachable"
            chunked = resp.getheader("Transfer-Encoding", "").lower() == "chunked" or resp.getheader("Content-Length") is None
            self.send_response(resp.status, resp.reason)
            for k, v in resp.getheaders():
                if k.lower() not in HOP and not (chunked and k.lower() == "content-length"):
                    self.send_header(k, v)
            if chunked:
                self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            sent = 0
            began = time.monotonic()
            try:
                while True:
                    if rate:
                        # Hold the response to `rate` bytes a second on average.
                        ahead = sent / float(rate) - (time.monotonic() - began)
                        if ahead > 0:
                            time.sleep(ahead)
                    data = resp.read1(65536) if self.command != "HEAD" else b""
                    if not data:
                        break
                    if cut_after is not None and sent + len(data) > cut_after:
                        data = data[: max(0, cut_after - sent)]
                        if data:
                            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data) if chunked else data)
                        self.wfile.flush()
                        self.reset()
                        return "cut"
                    sent += len(data)
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data) if chunked else data)
                    self.wfile.flush()
                if chunked:
                    self.wfile.write(b"0\r\n\r\n")
            except OSError:
                self.close_connection = True
            finally:
                conn.close()
            return resp.status

    return Proxy


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--kube-port", type=int, required=True)
    p.add_argument("--aws-port", type=int, required=True)
    p.add_argument("--api", required=True, help="the API server, host:port")
    p.add_argument("--moto", required=True, help="moto, host:port")
    p.add_argument("--ca", required=True)
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    args = p.parse_args()
    faults = Faults()
    upstream_ctx = ssl.create_default_context(cafile=args.ca)
    api_host, api_port = args.api.rsplit(":", 1)
    moto_host, moto_port = args.moto.rsplit(":", 1)
    kube = ThreadingHTTPServer(("127.0.0.1", args.kube_port), make_handler(
        "kube", faults, lambda _headers: http.client.HTTPSConnection(api_host, int(api_port), context=upstream_ctx, timeout=120)))
    serving = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    serving.load_cert_chain(args.cert, args.key)
    kube.socket = serving.wrap_socket(kube.socket, server_side=True)
    aws = ThreadingHTTPServer(("127.0.0.1", args.aws_port), make_handler(
        "aws", faults, lambda _headers: http.client.HTTPConnection(moto_host, int(moto_port), timeout=120)))
    kube.daemon_threads = aws.daemon_threads = True
    threading.Thread(target=kube.serve_forever, daemon=True).start()
    print(f"fault proxy: kube https://127.0.0.1:{args.kube_port}, aws http://127.0.0.1:{args.aws_port}", flush=True)
    aws.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
