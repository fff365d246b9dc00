"""A local Lambda platform for the worker's real `bootstrap` binaries.

Each function's binary runs as `--concurrency` processes against a Lambda Runtime API
served here on 127.0.0.1 (GET .../invocation/next, POST .../response and .../error),
exactly the interface Lambda gives it. A dispatcher then plays the two AWS services that
invoke the worker and that moto cannot:

- Step Functions' Lambda integration: it follows moto's executions and, for every
  TaskScheduled event of `lambda:invoke.waitForTaskToken` that names one of our
  functions, invokes that function with the event's payload (the task then waits for
  SendTaskSuccess/SendTaskFailure, which the function sends to moto itself);
- EventBridge Scheduler: it fires due one-time schedules whose target is one of our
  functions, with the schedule's input, and deletes them after when
  ActionAfterCompletion says DELETE (moto never fires schedules).

As strict as Lambda where the worker meets it:

- each function runs with its settings in template.yaml: its Timeout and MemorySize, and
  the environment the template gives it (plain values, and parameters at their
  defaults); the world adds only what names its own resources (endpoints, keys, the
  poller, the Scheduler role), and a test may shorten a setting with --env, saying why;
- an invocation still running at its deadline is killed (Sandbox.Timedout), as Lambda
  ends a function at its timeout;
- Step Functions invokes synchronously: a function error, crash or timeout is reported
  to the task (SendTaskFailure: the error type of a function error, Lambda.Unknown for a
  crash or a timeout), never delivered again;
- Scheduler invokes asynchronously: a failed invocation is tried twice more (after 1 s
  and 2 s here; Lambda waits about 1 and 2 minutes), then goes to the dead letters
  (logs/dead-letters.jsonl beside the functions' logs), as Lambda's on-failure
  destination.

As CloudTrail would, it records every AWS request each function makes (which function,
with whose credentials, which operation, which role it passes) in a journal
(--aws-journal, default logs/aws-calls.jsonl in the world's folder): each function
reaches AWS through its own relay (the fault proxy's handler, without rules), which
sends Step Functions requests of the activity function to LocalStack (its activities)
and everything else to the world's moto (or --aws-endpoint).

Runs run-job, call, poller, cluster-ops, activity and cleanup.
Usage: lambda_platform.py --world .local-world/world.json --bin target/debug --template template.yaml [--state FILE]
Writes {"functions": {name: runtime API address}} to --state once every function runs.
"""
import argparse
import datetime
import json
import logging
import os
import queue
import re
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3
import yaml

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "local-world"))
import faultproxy  # noqa: E402 - the relay's handler
import aws_journal  # noqa: E402
from sizing import Sizing  # noqa: E402
from concurrency import Concurrency, THROTTLED  # noqa: E402

log = logging.getLogger("lambda-platform")
PREFIX = "/2018-06-01/runtime"


SYNC, ASYNC = "RequestResponse", "Event"
ASYNC_RETRY_DELAYS = (1, 2)


class Invocation:
    def __init__(self, payload, kind, attempt=0):
        self.id = str(uuid.uuid4())
        self.payload = payload
        self.kind, self.attempt = kind, attempt
        self.deadline_ms = None
        # When it was invoked, and when a process took it (Lambda bills from there).
        self.queued, self.started = time.time(), None
        self.done = threading.Event()
        self.result = None
        self.error = None
        # Lambda.Unknown for Step Functions: the function never answered (crash, timeout).
        self.unhandled = False
        # Whether it holds a unit of the function's concurrency (see concurrency.py), and
        # the execution environment (process) that took it.
        self.holds_unit = False
        self.environment = None
        # When it ended (stamped before its unit is given back: the next one may start then).
        self.ended = None


def load_template(path):
    """template.yaml, its CloudFormation tags read as {"!Tag": value}."""
    class Loader(yaml.SafeLoader):
        pass

    def tagged(loader, suffix, node):
        if isinstance(node, yaml.ScalarNode):
            value = loader.construct_scalar(node)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)
        return {"!" + suffix: value}

    Loader.add_multi_constructor("!", tagged)
    with open(path) as f:
        return yaml.load(f, Loader=Loader)


def template_functions(path):
    """Each function's settings as template.yaml gives them, by binary: its Timeout and
    MemorySize (the function's own, else the Globals'), and the environment variables
    whose values the template fixes: plain values, and a `!Ref` of a parameter (its
    default), and the log level Lambda passes from LoggingConfig. Values built from the stack's own resources (`!GetAtt`, `!Sub`, `!If`) are
    the world's to give."""
    template = load_template(path)
    defaults = {k: v.get("Default") for k, v in template.get("Parameters", {}).items()}
    globals_ = template.get("Globals", {}).get("Function", {})
    conditions = template.get("Conditions", {})

    def holds(value):
        """A condition at the parameters' defaults (Equals, Not, And, Or, Condition)."""
        (tag, arg), = value.items()
        if tag == "!Condition":
            return holds(conditions[arg])
        if tag == "!Equals":
            return resolve(arg[0]) == resolve(arg[1])
        if tag == "!Not":
            return not holds(arg[0])
        if tag in ("!And", "!Or"):
            return (all if tag == "!And" else any)(holds(a) for a in arg)
        raise ValueError(f"a condition the platform cannot judge: {value}")

    def resolve(value):
        if isinstance(value, dict) and set(value) == {"!Ref"}:
            return None if value["!Ref"] == "AWS::NoValue" else defaults.get(value["!Ref"])
        if isinstance(value, dict) and set(value) == {"!If"}:
            name, then, otherwise = value["!If"]
            return resolve(then if holds(conditions[name]) else otherwise)
        return value

    def fixed(value):
        if isinstance(value, dict) and set(value) == {"!Ref"} and defaults.get(value["!Ref"]) is not None:
            value = defaults[value["!Ref"]]
        if isinstance(value, bool):
            return "true" if value else "false"
        return str(value) if isinstance(value, (str, int, float)) else None

    functions = {}
    for resource in template.get("Resources", {}).values():
        if resource.get("Type") != "AWS::Serverless::Function":
            continue
        binary = resource.get("Metadata", {}).get("BuildProperties", {}).get("Binary")
        props = resource.get("Properties", {})
        env = {}
        for scope in (globals_, props):
            for k, v in scope.get("Environment", {}).get("Variables", {}).items():
                if fixed(v) is not None:
                    env[k] = fixed(v)
            # Lambda's advanced logging: the application log level reaches the runtime as
            # AWS_LAMBDA_LOG_LEVEL (with the JSON format), which the Rust runtime honours.
            level = fixed(scope.get("LoggingConfig", {}).get("ApplicationLogLevel"))
            if level is not None:
                env["AWS_LAMBDA_LOG_LEVEL"] = level
        reserved = resolve(props.get("ReservedConcurrentExecutions"))
        functions[binary] = {"timeout": int(resolve(props.get("Timeout", globals_.get("Timeout", 3)))),
                             "memory": int(resolve(props.get("MemorySize", globals_.get("MemorySize", 128)))), "env": env,
                             "reserved": None if reserved in (None, "") else int(reserved)}
    return functions


class Slot:
    """One process of a function and its own Runtime API (so a crash is known)."""

    def __init__(self, fn, index):
        self.fn, self.index = fn, index
        self.current = None
        self.process = None
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), fn.handler(self))
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.spawn()

    def spawn(self):
        fn = self.fn
        # What Lambda sets last: a function's environment cannot override it.
        penv = {**os.environ, **fn.env, "AWS_LAMBDA_RUNTIME_API": self.address,
                "AWS_LAMBDA_FUNCTION_NAME": fn.arn.split(":")[-1], "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(fn.memory), "AWS_LAMBDA_LOG_FORMAT": "JSON",
                "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{fn.name}", "AWS_LAMBDA_LOG_STREAM_NAME": f"local/{self.index}"}
        # Lambda sets both names of the region.
        if "AWS_REGION" in fn.env:
            penv["AWS_DEFAULT_REGION"] = fn.env["AWS_REGION"]
        out = open(os.path.join(fn.logs, f"{fn.name}-{self.index}.log"), "ab")
        placed = fn.sizing.prepare(self.name, fn.memory)
        self.process = subprocess.Popen(placed + fn.command(), env=penv, stdout=out, stderr=subprocess.STDOUT)

    @property
    def name(self):
        """The execution environment's name: its log file's and its cgroups'."""
        return f"{self.fn.name}-{self.index}"
    def alive(self):
        return self.process.poll() is None


# The chaos switch is one file for every function and thread.
CHAOS_LOCK = threading.Lock()


class InvocationLog:
    """--invocations: one JSON line per ended invocation (function, kind, attempt, when it
    was invoked, taken by a process and ended, the configured memory, how it ended and the
    first key of its result),
    what Lambda's REPORT lines and its bill say: the load run's invocations and
    GB-seconds."""

    def __init__(self, path):
        self.path, self.lock = path, threading.Lock()

    def write(self, fn, inv):
        line = {"function": fn.name, "id": inv.id, "kind": inv.kind, "attempt": inv.attempt,
                "queued": inv.queued, "started": inv.started, "ended": inv.ended, "memory_mb": fn.memory,
                # Lambda's "Max Memory Used": the environment's peak so far (None unsized).
                "max_memory_mb": fn.peak_mb(inv),
                "error": (inv.error or {}).get("errorType") if inv.error is not None else None,
                # What the function's result says it did (run-job: "answered" or "handedOff").
                "outcome": next(iter(inv.result), None) if isinstance(inv.result, dict) else None}
        with self.lock, open(self.path, "a") as f:
            f.write(json.dumps(line) + "\n")


INVOCATIONS = None


class Function:
    """One function: its invocation queue and its processes, each with its own Runtime
    API. A process that dies (or is killed at its timeout) is started again; the
    invocation it held ends in an error, which `report` hands to the invoker: Step
    Functions hears of a synchronous one, an asynchronous one is tried again."""

    def __init__(self, name, arn, binary, env, settings, concurrency, logs, report, chaos_file=None,
                 sizing=None, limits=None):
        self.name, self.arn, self.timeout, self.memory = name, arn, settings["timeout"], settings["memory"]
        self.binary, self.env, self.logs, self.chaos_file = binary, env, logs, chaos_file
        self.report = report
        self.sizing = sizing or Sizing(False)
        self.limits = limits or Concurrency(1000, {})
        self.pending = queue.Queue()
        # Asynchronous events Lambda holds until a unit of concurrency is free.
        self.held = queue.Queue()
        self.inflight = {}
        self.lock = threading.Lock()
        self.slots = [Slot(self, i) for i in range(concurrency)]
        self.address = self.slots[0].address
        threading.Thread(target=self.supervise, daemon=True).start()
        threading.Thread(target=self.release_held, daemon=True).start()

    def peak_mb(self, inv):
        return self.sizing.peak_mb(inv.environment) if inv.environment else None

    def command(self):
        """The execution environment's process: `binary`, a path or (for a program run
        under an emulator) the whole command line."""
        if isinstance(self.binary, (list, tuple)):
            return list(self.binary)
        # A Python function of the tests' own runs under the platform's interpreter.
        return [sys.executable, self.binary] if self.binary.endswith(".py") else [self.binary]

    def invoke(self, payload, kind, attempt=0, chaos=True):
        inv = Invocation(payload, kind, attempt)
        with self.lock:
            self.inflight[inv.id] = inv
        log.info("invoke %s %s (%s, attempt %d)", self.name, inv.id, kind, attempt + 1)
        if kind == ASYNC:
            self.held.put(inv)
        elif self.limits.acquire(self.name):
            inv.holds_unit = True
            self.pending.put(inv)
        else:
            log.warning("%s %s throttled: %d of %d in use", self.name, inv.id, self.limits.in_use.get(self.name, 0),
                        self.limits.limit(self.name))
            self.finish(inv, error={"errorType": THROTTLED, "errorMessage": "Rate Exceeded."})
        if chaos and self.chaos("twice"):
            log.warning("delivering %s %s twice at once", self.name, inv.id)
            self.invoke(payload, kind, attempt, chaos=False)
        return inv

    def finish(self, inv, result=None, error=None, unhandled=False):
        """Ends an invocation once (its response, its error, or its process's end)."""
        with self.lock:
            if self.inflight.pop(inv.id, None) is None:
                return False
        inv.ended = time.time()
        if inv.holds_unit:
            self.limits.release(self.name)
        inv.result, inv.error, inv.unhandled = result, error, unhandled
        inv.done.set()
        if INVOCATIONS is not None:
            INVOCATIONS.write(self, inv)
        if error is not None:
            self.report(self, inv)
        return True

    def expire(self, slot, inv, timeout):
        """Lambda ends a function at its timeout: the process is killed."""
        if inv.done.is_set() or slot.current is not inv:
            return
        log.warning("%s %s timed out after %d s: killing %s-%d", self.name, inv.id, timeout, self.name, slot.index)
        # Killed first: the process must not take another invocation while this one is
        # reported (the report may take a call to Step Functions).
        slot.current = None
        slot.process.kill()
        self.finish(inv, error={"errorType": "Sandbox.Timedout",
                                "errorMessage": f"Task timed out after {timeout}.00 seconds"}, unhandled=True)

    def chaos(self, action):
        """The tests' chaos switch, a file "<action> <function> [<seconds>]": `kill`
        kills the process that takes the function's next invocation after so many
        seconds (SIGKILL); `twice` delivers its next invocation twice at once; `timeout`
        gives its next invocation that many seconds in place of the function's Timeout
        (its deadline, and the kill at it; never more than the Timeout), as if it were
        deployed with that setting: a
        cell that needs an invocation short of time gets one without shortening every
        other. One use.
        Returns the seconds (or True) when it applies. Threads of every function read
        the switch (an invocation checks `twice`, the Runtime API that hands it out checks
        `kill`): one at a time, and a switch another thread used up is simply gone."""
        if not self.chaos_file:
            return None
        with CHAOS_LOCK:
            try:
                with open(self.chaos_file) as f:
                    words = f.read().split()
            except FileNotFoundError:
                return None
            if len(words) < 2 or words[0] != action or words[1] != self.name:
                return None
            os.remove(self.chaos_file)
        return float(words[2]) if len(words) > 2 else True

    def release_held(self):
        """Lambda's poller of asynchronous events: each starts once a unit is free."""
        while True:
            inv = self.held.get()
            while not self.limits.acquire(self.name, held=True):
                time.sleep(0.1)
            inv.holds_unit = True
            self.pending.put(inv)

    def supervise(self):
        while True:
            time.sleep(0.2)
            for slot in self.slots:
                if slot.alive() or getattr(self, "stopping", False):
                    continue
                held, slot.current = slot.current, None
                log.warning("%s-%d exited (%s); starting it again", self.name, slot.index, slot.process.returncode)
                # Lambda names a process killed at its memory limit apart from other ends.
                oom = self.sizing.killed_at_limit(slot.name)
                if oom:
                    log.warning("%s was killed at its memory limit (%d MB)", slot.name, self.memory)
                if held is not None and not held.done.is_set():
                    log.warning("%s %s was in flight: it failed", self.name, held.id)
                    if oom:
                        error = {"errorType": "Runtime.OutOfMemory",
                                 "errorMessage": f"RequestId: {held.id} Error: Runtime exited with error: signal: killed"}
                    else:
                        error = {"errorType": "Runtime.ExitError",
                                 "errorMessage": f"Runtime exited with error: exit status {slot.process.returncode}"}
                    self.finish(held, error=error, unhandled=True)
                slot.spawn()

    def maybe_kill(self, slot):
        seconds = self.chaos("kill")
        if seconds is None:
            return
        process = slot.process
        log.warning("killing %s-%d in %s s", self.name, slot.index, seconds)
        threading.Timer(float(seconds), process.kill).start()

    def stop(self):
        self.stopping = True
        for slot in self.slots:
            slot.process.terminate()
        for slot in self.slots:
            try:
                slot.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                slot.process.kill()
                slot.process.wait()
            slot.server.shutdown()

    def handler(self, slot):
        fn = self

        class RuntimeApi(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, fmt, *args):
                log.debug(fmt, *args)

            def reply(self, code, body=b"", headers=None):
                self.send_response(code)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                if self.path != f"{PREFIX}/invocation/next":
                    return self.reply(404)
                process = slot.process
                while True:
                    # Never hand an invocation to a process that is gone.
                    if process.poll() is not None or slot.process is not process:
                        self.close_connection = True
                        return
                    try:
                        inv = fn.pending.get(timeout=0.2)
                        break
                    except queue.Empty:
                        continue
                slot.current = inv
                inv.started = time.time()
                inv.environment = slot.name
                # The switch may only shorten the template's Timeout, never lengthen it.
                timeout = min(int(fn.chaos("timeout") or fn.timeout), fn.timeout)
                inv.deadline_ms = int((time.time() + timeout) * 1000)
                timer = threading.Timer(timeout, fn.expire, (slot, inv, timeout))
                timer.daemon = True
                timer.start()
                fn.maybe_kill(slot)
                self.reply(200, json.dumps(inv.payload).encode(), {
                    "Content-Type": "application/json",
                    "Lambda-Runtime-Aws-Request-Id": inv.id,
                    "Lambda-Runtime-Deadline-Ms": str(inv.deadline_ms),
                    "Lambda-Runtime-Invoked-Function-Arn": fn.arn,
                    "Lambda-Runtime-Trace-Id": f"Root=1-{uuid.uuid4().hex[:8]}-{uuid.uuid4().hex[:24]};Sampled=0",
                })

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0") or 0))
                m = re.fullmatch(f"{PREFIX}/invocation/([^/]+)/(response|error)", self.path)
                if m is None:
                    if self.path == f"{PREFIX}/init/error":
                        log.error("%s failed to start: %s", fn.name, body.decode(errors="replace"))
                        return self.reply(202)
                    return self.reply(404)
                with fn.lock:
                    inv = fn.inflight.get(m.group(1))
                if inv is None:
                    return self.reply(400)
                text = body.decode(errors="replace")
                if slot.current is inv:
                    slot.current = None
                if m.group(2) == "response":
                    log.info("result %s %s: %s", fn.name, inv.id, text[:300])
                    fn.finish(inv, result=json.loads(text) if text else None)
                else:
                    log.info("error %s %s: %s", fn.name, inv.id, text[:300])
                    fn.finish(inv, error=json.loads(text) if text else {})
                self.reply(202)

        return RuntimeApi


def at_time(expression):
    m = re.fullmatch(r"at\((\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)\)", expression or "")
    if m is None:
        return None
    return datetime.datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S").replace(tzinfo=datetime.timezone.utc).timestamp()


def reporter(world, dead_letters):
    """What Lambda does with an invocation that failed: a synchronous one (Step
    Functions') fails its task, named as Step Functions names it; an asynchronous one
    (Scheduler's) is tried twice more, then dead-lettered."""
    sfn = boto3.client("stepfunctions", endpoint_url=world["aws_endpoint"], region_name=world["region"],
                       aws_access_key_id=world["worker"]["access_key_id"],
                       aws_secret_access_key=world["worker"]["secret_access_key"])
    lock = threading.Lock()

    def report(fn, inv):
        if inv.kind == SYNC:
            token = inv.payload.get("TaskToken") if isinstance(inv.payload, dict) else None
            if not token:
                return
            error = "Lambda.Unknown" if inv.unhandled else str(inv.error.get("errorType") or "Lambda.Unknown")
            try:
                sfn.send_task_failure(taskToken=token, error=error[:256], cause=json.dumps(inv.error)[:32768])
                log.info("%s %s failed its task: %s", fn.name, inv.id, error)
            except Exception as e:  # noqa: BLE001 - the task may be closed already
                log.info("%s %s: its task was not failed (%s)", fn.name, inv.id, e)
            return
        if inv.attempt < len(ASYNC_RETRY_DELAYS):
            delay = ASYNC_RETRY_DELAYS[inv.attempt]
            log.warning("%s %s failed (%s): trying it again in %d s", fn.name, inv.id, inv.error.get("errorType"), delay)
            timer = threading.Timer(delay, fn.invoke, (inv.payload, ASYNC, inv.attempt + 1))
            timer.daemon = True
            timer.start()
            return
        log.warning("%s %s failed %d times: dead-lettered", fn.name, inv.id, inv.attempt + 1)
        with lock, open(dead_letters, "a") as f:
            f.write(json.dumps({"function": fn.name, "requestPayload": inv.payload, "error": inv.error}) + "\n")

    return report


def dispatch(world, functions, stop):
    kw = dict(endpoint_url=world["aws_endpoint"], region_name=world["region"],
              aws_access_key_id=world["worker"]["access_key_id"], aws_secret_access_key=world["worker"]["secret_access_key"])
    sfn, scheduler = boto3.client("stepfunctions", **kw), boto3.client("scheduler", **kw)
    by_name = {f.arn.split(":")[-1]: f for f in functions.values()}
    seen = set()
    while not stop.is_set():
        try:
            # Every page: past 100 state machines (a long test run makes more) the first page
            # alone would leave new executions waiting forever.
            machines = [m for page in sfn.get_paginator("list_state_machines").paginate() for m in page["stateMachines"]]
            for machine in machines:
                running = [e for page in sfn.get_paginator("list_executions").paginate(
                    stateMachineArn=machine["stateMachineArn"], statusFilter="RUNNING") for e in page["executions"]]
                for ex in running:
                    # Every page: a Map's execution holds thousands of events.
                    history = sfn.get_paginator("get_execution_history").paginate(executionArn=ex["executionArn"])
                    for event in (e for page in history for e in page["events"]):
                        d = event.get("taskScheduledEventDetails")
                        key = (ex["executionArn"], event["id"])
                        if not d or key in seen or d.get("resourceType") != "lambda" or d.get("resource") != "invoke.waitForTaskToken":
                            continue
                        seen.add(key)
                        params = json.loads(d["parameters"])
                        name = str(params.get("FunctionName", "")).split(":function:")[-1].split(":")[0]
                        if name in by_name:
                            by_name[name].invoke(params.get("Payload", {}), SYNC)
            for s in [x for page in scheduler.get_paginator("list_schedules").paginate() for x in page["Schedules"]]:
                got = scheduler.get_schedule(Name=s["Name"], GroupName=s.get("GroupName", "default"))
                due = at_time(got.get("ScheduleExpression"))
                target = got.get("Target", {})
                name = target.get("Arn", "").split(":function:")[-1]
                if due is None or due > time.time() or name not in by_name:
                    continue
                # Fire, then delete as ActionAfterCompletion DELETE says (a schedule
                # that is not deleted fires once, as a one-time schedule does).
                key = ("schedule", s["Name"], got.get("ScheduleExpression"))
                if key in seen:
                    continue
                seen.add(key)
                if got.get("ActionAfterCompletion", "NONE") == "DELETE":
                    scheduler.delete_schedule(Name=s["Name"], GroupName=s.get("GroupName", "default"))
                log.info("schedule %s fired", s["Name"])
                by_name[name].invoke(json.loads(target.get("Input") or "{}"), ASYNC)
        except Exception:  # noqa: BLE001 - the dispatcher keeps going
            log.exception("dispatch")
        stop.wait(0.2)


FUNCTIONS = ("run-job", "call", "poller", "cluster-ops", "activity", "cleanup")


def relay(function, upstream, states_upstream, own_key, journal):
    """The function's way to AWS: a relay on 127.0.0.1 that records each request in the
    journal and forwards it (Step Functions to `states_upstream` when given)."""
    import http.client
    from urllib.parse import urlsplit

    def connect(headers):
        service, _ = aws_journal.signing_name(headers)
        url = urlsplit(states_upstream if states_upstream and service == "states" else upstream)
        return http.client.HTTPConnection(url.hostname, url.port, timeout=120)

    faults = faultproxy.Faults(on_call=aws_journal.recorder(function, own_key, journal))
    server = ThreadingHTTPServer(("127.0.0.1", 0), faultproxy.make_handler("aws", faults, connect))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--world", required=True)
    p.add_argument("--bin", required=True)
    p.add_argument("--state", required=True)
    p.add_argument("--logs", required=True)
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--function-concurrency", action="append", default=[],
                   help="NAME=N: this function's processes, in place of --concurrency (the load run's run-job)")
    p.add_argument("--functions", default=",".join(FUNCTIONS), help="the functions to run (default: all six)")
    p.add_argument("--invocations", help="write one JSON line per ended invocation here (see InvocationLog)")
    p.add_argument("--template", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../template.yaml"),
                   help="the SAM template whose function settings apply")
    p.add_argument("--chaos-file", help="tests: \"kill <function> <seconds>\" or \"twice <function>\" (see Function.chaos)")
    p.add_argument("--aws-endpoint", help="the functions' AWS endpoint (default: the world's moto)")
    p.add_argument("--env", action="append", default=[], help="KEY=VALUE for the functions' environment")
    p.add_argument("--unsized", action="store_true",
                   help="run the functions on whole cores with no memory limit (the figures' unsized column)")
    p.add_argument("--account-concurrency", type=int, default=1000,
                   help="the account's concurrency limit (Lambda's default: 1,000)")
    p.add_argument("--reserved", action="append", default=[],
                   help="NAME=N: the function's reserved concurrency, as its template parameter would set it")
    p.add_argument("--memory", action="append", default=[],
                   help="NAME=MB: the function's MemorySize in place of the template's (the memory table)")
    p.add_argument("--test-function", action="append", default=[],
                   help="NAME=PROGRAM: a function of the tests' own beside the worker's (the platform's tests), "
                        "256 MB and 60 s unless --memory says otherwise")
    p.add_argument("--aws-journal", help="the journal of AWS calls (default: logs/aws-calls.jsonl beside --world)")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stdout)
    world = json.load(open(args.world))
    os.makedirs(args.logs, exist_ok=True)
    # What names the world's own resources; the rest comes from the template.
    env = {
        "AWS_ENDPOINT_URL": world["aws_endpoint"], "AWS_REGION": world["region"],
        "AWS_ACCESS_KEY_ID": world["worker"]["access_key_id"], "AWS_SECRET_ACCESS_KEY": world["worker"]["secret_access_key"],
        "POLLER_ARN": world["functions"]["poller"], "SCHEDULER_ROLE_ARN": world["scheduler_role"],
        "SCHEDULE_GROUP": world["schedule_group"], "POLL_STATE_KEY": world["poll_state_key"],
        # As the template sets it: the functions' own identity is let into every cluster
        # they create (here all functions share the worker's IAM user).
        "CLUSTER_ACCESS_PRINCIPALS": world["worker"]["arn"],
    }
    if args.aws_endpoint:
        env["AWS_ENDPOINT_URL"] = args.aws_endpoint
    overrides = dict(kv.split("=", 1) for kv in args.env)
    concurrency = {k: int(v) for k, v in (kv.split("=", 1) for kv in args.function_concurrency)}
    if args.invocations:
        global INVOCATIONS
        INVOCATIONS = InvocationLog(args.invocations)
    settings = template_functions(args.template)
    tests_own = dict(kv.split("=", 1) for kv in args.test_function)
    names = args.functions.split(",") + list(tests_own)
    for name in args.functions.split(","):
        if name not in FUNCTIONS:
            sys.exit(f"no function {name}: one of {', '.join(FUNCTIONS)}")
    for kv in args.memory + args.reserved + args.function_concurrency:
        if kv.split("=", 1)[0] not in names:
            sys.exit(f"{kv}: no function of that name runs here ({', '.join(names)})")
    for name in tests_own:
        settings[name] = {"timeout": 60, "memory": 256, "env": {}, "reserved": None}
    for name, mb in (kv.split("=", 1) for kv in args.memory):
        settings[name]["memory"] = int(mb)
    for name, n in (kv.split("=", 1) for kv in args.reserved):
        settings[name]["reserved"] = int(n)
    sizing = Sizing(not args.unsized)
    limits = Concurrency(args.account_concurrency,
                         {n: settings[n]["reserved"] for n in names if settings[n]["reserved"] is not None})
    report = reporter(world, os.path.join(args.logs, "dead-letters.jsonl"))
    journal = aws_journal.Journal(args.aws_journal or os.path.join(os.path.dirname(os.path.abspath(args.world)),
                                                                    "logs", "aws-calls.jsonl"))
    functions = {}
    # A function of the tests' own answers to an ARN beside the worker's.
    arn_prefix = world["functions"]["run-job"].rsplit(":", 1)[0]
    for name in names:
        if name in tests_own:
            binary = tests_own[name]
            world["functions"][name] = f"{arn_prefix}:{name}"
        else:
            binary = os.path.join(args.bin, name)
        if not os.access(binary, os.R_OK if binary.endswith(".py") else os.X_OK):
            sys.exit(f"{binary} is not built: cargo build --bins")
        fenv = {**settings[name]["env"], **env, **overrides}
        # The tests' own functions reach AWS straight: the journal is the worker's, for
        # the IAM check of its functions.
        if name not in tests_own:
            fenv["AWS_ENDPOINT_URL"] = relay(name, fenv["AWS_ENDPOINT_URL"],
                                             world["localstack_endpoint"] if name == "activity" else None,
                                             fenv["AWS_ACCESS_KEY_ID"], journal)
        log.info("%s: timeout %d s, memory %d MB, concurrency %d (%s), %s", name, settings[name]["timeout"],
                 settings[name]["memory"], limits.limit(name), "reserved" if name in limits.reserved else "unreserved",
                 " ".join(f"{k}={v}" for k, v in sorted(fenv.items()) if not k.startswith("AWS_")))
        functions[name] = Function(name, world["functions"][name], binary, fenv, settings[name],
                                   concurrency.get(name, args.concurrency),
                                   args.logs, report, args.chaos_file, sizing, limits)
    stop = threading.Event()
    with open(args.state + ".tmp", "w") as f:
        json.dump({"functions": {n: f.address for n, f in functions.items()}, "pid": os.getpid(),
                   "sizing": sizing.describe(), "concurrency": limits.describe(),
                   "memory_mb": {n: f.memory for n, f in functions.items()}}, f)
    os.replace(args.state + ".tmp", args.state)
    log.info("running %s", ", ".join(functions))
    import signal
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        dispatch(world, functions, stop)
    finally:
        for f in functions.values():
            f.stop()
        sizing.remove()


if __name__ == "__main__":
    main()
