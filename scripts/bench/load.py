"""The load run of BENCHMARKS.md and RELIABILITY.md (make load): N Jobs at once through
the worker's real binaries on the local Lambda platform, each its own Step Functions
execution in moto, every request of the functions to the API server and to AWS passing
the fault proxy; then the same with a share of those requests failed at random.

A mix: short Jobs answered inline by run-job, and long ones handed to the poller on a
compressed curve (2 s, then 3 s), all with logs. Counted where things could go wrong:

- answers by attempt: every SendTaskSuccess/SendTaskFailure that reached Step
  Functions, by task token (one per task; a fault the proxy answered in the service's
  place is no attempt: the retry is);
- Jobs by the task's label (`eks-task-worker.io/task`), the manifests written with
  `generateName` as users write them: one per task;
- what is left: Jobs still running and schedules still in the group once every
  execution has ended;
- the executions' ends: every one SUCCEEDED.

Measured: callback latency (the pod's end, as the pod simulator logs it, to the task's
end in moto) for inline and poller Jobs, tasks per minute, API server requests per Job
and watches open at once (the fault proxy's count), AWS calls per Job by service (the
platform's journal), Lambda invocations and GB-seconds per Job (the platform's
invocation log: from a process taking the invocation to its answer, times the
template's MemorySize), peak RSS per function process, and CPU seconds per part of the
world (which part saturates first).

With `--map M`, the N Jobs are the items of one Map state (MaxConcurrency M), each
a run-job task whose `Retry` takes `Lambda.TooManyRequestsException` (the README's
migrated state), with `--reserved R` as run-job's reserved concurrency: how a large
Map meets Lambda's concurrency limit. Counted besides: the throttled invocations
(Step Functions' `TaskFailed` with that error), and a throttled attempt's token is
owed no answer and no Job (its retry is a new task token).

Usage: load.py --world .local-world/world.json --bin target/release [--jobs 200] [--long-share 0.25]
       [--fault-rate 0.02 --seed 7] [--map 50 --reserved 50] [--unsized]
Prints the figures as JSON on stdout, its progress on stderr; exits 1 when a zero count
is not zero.
"""
import argparse
import collections
import concurrent.futures
import datetime
import http.client
import json
import os
import re
import ssl
import statistics
import subprocess
import sys
import time
import urllib.parse
import urllib.request

import boto3

import bench  # noqa: E402 - beside this script: the pod simulator's log, read once

HERE = os.path.dirname(os.path.abspath(__file__))
SIM = "sim.eks-task-worker.io/"
TASK_LABEL = "eks-task-worker.io/task"
# The fault proxy of the load run: beside the tests' (16444, 15002), never in their way.
KUBE_PORT, AWS_PORT = 16445, 15003


def say(message):
    print(f"[load {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def percentiles(values):
    values = sorted(values)
    if not values:
        return {}

    def at(q):
        return round(values[min(len(values) - 1, int(round(q * (len(values) - 1))))], 3)

    return {"n": len(values), "p50": at(0.5), "p95": at(0.95), "p99": at(0.99), "max": round(values[-1], 3),
            "mean": round(statistics.mean(values), 3)}


class Kube:
    """The cluster admin's client (counting and cleaning up, not through the proxy)."""

    def __init__(self, world):
        u = urllib.parse.urlsplit(world["api_endpoint"])
        self.host, self.port = u.hostname, u.port
        self.ctx = ssl.create_default_context(cafile=world["ca_file"])
        self.ctx.load_cert_chain(world["admin"]["cert"], world["admin"]["key"])

    def call(self, method, path):
        conn = http.client.HTTPSConnection(self.host, self.port, context=self.ctx, timeout=60)
        try:
            conn.request(method, path)
            r = conn.getresponse()
            return r.status, json.loads(r.read() or b"{}")
        finally:
            conn.close()


def proxy(path, body=None, method=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{AWS_PORT}{path}", data=data, method=method or ("POST" if data else "GET"),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read() or b"{}")


def fault_rules(rate):
    """`rate` of the functions' requests to the API server and to AWS failed at random:
    a third each answered 500 (503 for the API server), answered 429, or reset."""
    if not rate:
        return []
    share = rate / 3
    aws_500 = {"status": 500, "reply": {"__type": "InternalFailure", "message": "injected"}}
    aws_429 = {"status": 429, "reply": {"__type": "ThrottlingException", "message": "injected"}, "headers": {"Retry-After": "1"}}
    kube_503 = {"status": 503, "reply": {"kind": "Status", "code": 503, "reason": "ServiceUnavailable", "message": "injected"}}
    kube_429 = {"status": 429, "reply": {"kind": "Status", "code": 429, "reason": "TooManyRequests", "message": "injected"},
                "headers": {"Retry-After": "1"}}
    rules = []
    # Each rule draws in turn: the second takes share/(1-share) of what the first let
    # through, and so on, so each takes `share` of all requests.
    for side, actions in (("kube", (kube_503, kube_429, {"reset": True})), ("aws", (aws_500, aws_429, {"reset": True}))):
        left = 1.0
        for i, action in enumerate(actions):
            rules.append(dict(action, id=f"{side}-{i}", side=side, times=0, probability=share / left))
            left -= share
    return rules


def pids_of(world_dir):
    out = {}
    for name in os.listdir(os.path.join(world_dir, "pids")):
        try:
            out[name[:-4]] = int(open(os.path.join(world_dir, "pids", name)).read().strip())
        except (OSError, ValueError):
            pass
    return out


def children(pid):
    try:
        return [int(p) for p in open(f"/proc/{pid}/task/{pid}/children").read().split()]
    except OSError:
        return []


def cpu_seconds(pid):
    try:
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError):
        return 0.0


def peak_rss_mb(pid):
    try:
        m = re.search(r"VmHWM:\s+(\d+) kB", open(f"/proc/{pid}/status").read())
        return int(m.group(1)) / 1024 if m else 0.0
    except OSError:
        return 0.0


def parts(world_dir, platform_pid, proxy_pid):
    """The world's processes by part: (part, pid); the function processes by function."""
    out = [(name, pid) for name, pid in pids_of(world_dir).items() if name not in ("lambda",)]
    out += [("lambda platform", platform_pid), ("fault proxy", proxy_pid)]
    for child in children(platform_pid):
        try:
            binary = os.path.basename(open(f"/proc/{child}/cmdline").read().split("\0")[0])
        except OSError:
            continue
        out.append((f"function {binary}", child))
    return out


def cpu_by_part(procs):
    totals = collections.Counter()
    for part, pid in procs:
        totals[part] += cpu_seconds(pid)
    return totals


def log_bytes(world_dir):
    """The bytes each function's processes have logged so far (the platform's files)."""
    out = collections.Counter()
    folder = os.path.join(world_dir, "logs", "lambda")
    for name in os.listdir(folder):
        m = re.fullmatch(r"(.+)-\d+\.log", name)
        if m:
            out[m.group(1)] += os.path.getsize(os.path.join(folder, name))
    return out


def machine(sfn, world, name, endpoint):
    run = {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken", "TimeoutSeconds": 900,
           "Parameters": {"FunctionName": world["functions"]["run-job"], "Payload": {
               "TaskToken.$": "$$.Task.Token", "Job.$": "$.Job", "InlineWaitSeconds.$": "$.InlineWaitSeconds",
               "ClusterName": world["cluster"], "Namespace": world["namespace"], "Endpoint": endpoint,
               "LogOptions": {"RetrieveLogs": True}}}, "End": True}
    definition = {"StartAt": "Run", "States": {"Run": run}}
    return sfn.create_state_machine(name=name, definition=json.dumps(definition), roleArn=world["states_role"])["stateMachineArn"]


THROTTLED = "Lambda.TooManyRequestsException"


def map_machine(sfn, world, name, endpoint, items, concurrency, job_):
    """One Map over `items` Jobs like `job_` (`States.ArrayRange` makes the items: the
    execution's input stays small), at most `concurrency` at once, each a run-job task
    with the migrated state's Retry on a throttle; the Map keeps its input as output
    (a thousand results would pass Step Functions' 256 KiB)."""
    run = {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken", "TimeoutSeconds": 900,
           "Parameters": {"FunctionName": world["functions"]["run-job"], "Payload": {
               "TaskToken.$": "$$.Task.Token", "Job.$": "$.Job", "InlineWaitSeconds.$": "$.InlineWaitSeconds",
               "ClusterName": world["cluster"], "Namespace": world["namespace"], "Endpoint": endpoint,
               "LogOptions": {"RetrieveLogs": True}}},
           "ResultSelector": {"job.$": "$.metadata.name"},
           "Retry": [{"ErrorEquals": [THROTTLED], "IntervalSeconds": 2, "MaxAttempts": 12, "BackoffRate": 1.5,
                      "MaxDelaySeconds": 20, "JitterStrategy": "FULL"}],
           "End": True}
    definition = {"StartAt": "Items", "States": {
        "Items": {"Type": "Pass", "Parameters": {"items.$": f"States.ArrayRange(1, {items}, 1)"}, "Next": "Jobs"},
        "Jobs": {"Type": "Map", "ItemsPath": "$.items", "MaxConcurrency": concurrency,
                 "ItemSelector": {"Job": job_, "InlineWaitSeconds": 120},
                 "ItemProcessor": {"ProcessorConfig": {"Mode": "INLINE"}, "StartAt": "Run", "States": {"Run": run}},
                 "ResultPath": None, "End": True}}}
    return sfn.create_state_machine(name=name, definition=json.dumps(definition), roleArn=world["states_role"])["stateMachineArn"]


def job(prefix, seconds, log_bytes):
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"generateName": f"{prefix}-"},
            "spec": {"backoffLimit": 0, "template": {
                "metadata": {"annotations": {f"{SIM}run-seconds": str(seconds), f"{SIM}log-bytes": str(log_bytes)}},
                "spec": {"restartPolicy": "Never", "containers": [{"name": "main", "image": "busybox:1.36"}]}}}}


def run(args, world, world_dir, label):
    """One load run; its figures."""
    sfn = boto3.client("stepfunctions", endpoint_url=world["aws_endpoint"], region_name=world["region"],
                       aws_access_key_id=world["worker"]["access_key_id"], aws_secret_access_key=world["worker"]["secret_access_key"])
    scheduler = boto3.client("scheduler", endpoint_url=world["aws_endpoint"], region_name=world["region"],
                             aws_access_key_id=world["worker"]["access_key_id"], aws_secret_access_key=world["worker"]["secret_access_key"])
    kube = Kube(world)
    logs = os.path.join(world_dir, "logs", "load", label)
    os.makedirs(logs, exist_ok=True)
    journal, invocations = os.path.join(logs, "aws-calls.jsonl"), os.path.join(logs, "invocations.jsonl")
    for f in (journal, invocations):
        if os.path.exists(f):
            os.remove(f)
    pki = os.path.dirname(world["ca_file"])
    say(f"{label}: starting the fault proxy and the platform ({args.jobs + 8} run-job processes)")
    proxy_process = subprocess.Popen([world["python"], os.path.join(HERE, "../local-world/faultproxy.py"),
                                      "--kube-port", str(KUBE_PORT), "--aws-port", str(AWS_PORT),
                                      "--api", world["api_endpoint"].removeprefix("https://"),
                                      "--moto", world["aws_endpoint"].removeprefix("http://"),
                                      "--ca", world["ca_file"], "--cert", os.path.join(pki, "apiserver.crt"),
                                      "--key", os.path.join(pki, "apiserver.key")], stdout=subprocess.DEVNULL)
    endpoint = f"https://127.0.0.1:{KUBE_PORT}"
    platform_pid = None
    # This run's Jobs: load-<5 digits>s-… (short) and load-<5 digits>l-… (long).
    prefix = f"load-{int(time.time()) % 100000:05d}"
    try:
        for _ in range(100):
            try:
                proxy("/__stats")
                break
            except OSError:
                time.sleep(0.1)
        rules = fault_rules(args.fault_rate)
        if rules:
            proxy("/__faults", {"rules": rules, "seed": args.seed})
        subprocess.run([os.path.join(HERE, "../local-lambda/down.sh")], check=False, stdout=subprocess.DEVNULL)
        # As many run-job processes as can run at once (Lambda's own limit, when reserved).
        processes = min(args.jobs, args.reserved or args.map or args.jobs) + 8
        sizing = (["--unsized"] if args.unsized else []) + (["--reserved", f"run-job={args.reserved}"] if args.reserved else [])
        subprocess.run([os.path.join(HERE, "../local-lambda/up.sh"), "--concurrency", "2", "--functions", "run-job,poller",
                        "--function-concurrency", f"run-job={processes}", "--function-concurrency", "poller=16", *sizing,
                        "--aws-endpoint", f"http://127.0.0.1:{AWS_PORT}", "--aws-journal", journal, "--invocations", invocations,
                        "--env", "POLL_MIN_SECONDS=1", "--env", "POLL_CURVE_SECONDS=2,3",
                        "--env", f"TRUSTED_ENDPOINTS={world['cluster']}={endpoint}"],
                       check=True, stdout=subprocess.DEVNULL, env=dict(os.environ, LAMBDA_BIN_DIR=os.path.abspath(args.bin)))
        platform_pid = int(open(os.path.join(world_dir, "pids", "lambda.pid")).read())
        stamp = int(time.time())
        if args.map:
            arn = map_machine(sfn, world, f"load-{label}-{stamp}", endpoint, args.jobs, args.map,
                              job(f"{prefix}s", args.short_seconds, args.log_bytes))
        else:
            arn = machine(sfn, world, f"load-{label}-{stamp}", endpoint)
        long_jobs = 0 if args.map else int(round(args.jobs * args.long_share))
        inputs = []
        for i in range(args.jobs):
            long = i < long_jobs
            inputs.append({"Job": job(f"{prefix}{'l' if long else 's'}", args.long_seconds if long else args.short_seconds,
                                      args.log_bytes), "InlineWaitSeconds": 2 if long else 120})
        procs = parts(world_dir, platform_pid, proxy_process.pid)
        cpu_before = cpu_by_part(procs)
        logs_before = log_bytes(world_dir)
        say(f"{label}: starting {args.jobs} executions ({long_jobs} long, handed to the poller)")
        started = time.time()

        def start(i):
            return sfn.start_execution(stateMachineArn=arn, name=f"{prefix}-{i}", input=json.dumps(inputs[i]))["executionArn"]

        if args.map:
            executions = [sfn.start_execution(stateMachineArn=arn, name=f"{prefix}-map", input="{}")["executionArn"]]
        else:
            with concurrent.futures.ThreadPoolExecutor(16) as pool:
                executions = list(pool.map(start, range(args.jobs)))
        say(f"{label}: {args.jobs} executions started in {time.time() - started:.1f} s; waiting for their ends")
        ends = {}
        deadline = time.time() + args.timeout
        while len(ends) < len(executions) and time.time() < deadline:
            for page in sfn.get_paginator("list_executions").paginate(stateMachineArn=arn):
                for e in page["executions"]:
                    if e["status"] != "RUNNING" and e["executionArn"] not in ends:
                        ends[e["executionArn"]] = e["status"]
            say(f"{label}: {len(ends)}/{len(executions)} ended")
            time.sleep(5)
        wall = time.time() - started
        procs = parts(world_dir, platform_pid, proxy_process.pid)
        cpu_after = cpu_by_part(procs)
        peaks = collections.defaultdict(float)
        for part, pid in procs:
            if part.startswith("function "):
                peaks[part[len("function "):]] = max(peaks[part[len("function "):]], peak_rss_mb(pid))
        say(f"{label}: counting")
        figures = count(args, world, world_dir, sfn, scheduler, kube, executions, ends, prefix, journal, invocations,
                        started, wall)
        figures["cpu_seconds_by_part"] = {k: round(cpu_after[k] - cpu_before.get(k, 0.0), 1)
                                          for k in sorted(cpu_after, key=lambda k: -(cpu_after[k] - cpu_before.get(k, 0.0)))}
        figures["peak_rss_mb_by_function"] = {k: round(v, 1) for k, v in sorted(peaks.items())}
        # What CloudWatch Logs would ingest: the functions' log lines (JSON, EMF among them).
        logs_after = log_bytes(world_dir)
        figures["log_bytes_per_job_by_function"] = {
            k: round((logs_after[k] - logs_before.get(k, 0)) / args.jobs) for k in sorted(logs_after)}
        figures["fault_rate"] = args.fault_rate
        # How the platform sized the functions, as it says (not as asked).
        figures["platform_sizing"] = json.load(open(os.path.join(world_dir, "lambda.json"))).get("sizing")
        figures["faults_fired"] = {r["id"]: r["fired"] for r in proxy("/__faults")["rules"]}
        figures["loadavg_at_end"] = open("/proc/loadavg").read().split()[:3]
        return figures
    finally:
        try:
            clean_up(kube, world, prefix)
        except OSError as e:
            say(f"{label}: could not delete this run's Jobs ({e}); they start with {prefix}")
        subprocess.run([os.path.join(HERE, "../local-lambda/down.sh")], check=False, stdout=subprocess.DEVNULL)
        proxy_process.terminate()
        proxy_process.wait(timeout=10)


def count(args, world, world_dir, sfn, scheduler, kube, executions, ends, prefix, journal, invocations, started, wall):
    statuses = collections.Counter(ends.get(e, "RUNNING") for e in executions)
    # Each execution's token and task end, from its history.
    tokens, latency = {}, {"inline": [], "poller": []}
    split = {"inline": {"job_controller": [], "worker": []}, "poller": {"job_controller": [], "worker": []}}
    pod_ends = bench.podsim_times(world_dir)
    _, jobs = kube.call("GET", f"/apis/batch/v1/namespaces/{world['namespace']}/jobs?limit=5000")
    ours = [j for j in jobs.get("items", []) if ours_(j, prefix)]
    completed = {j["metadata"]["name"]: datetime.datetime.strptime(j["status"]["completionTime"], "%Y-%m-%dT%H:%M:%SZ")
                 .replace(tzinfo=datetime.timezone.utc).timestamp() for j in ours if j.get("status", {}).get("completionTime")}
    last_end = started
    task_successes, throttled = 0, 0
    for e in executions:
        history = [ev for page in sfn.get_paginator("get_execution_history").paginate(executionArn=e) for ev in page["events"]]
        for ev in history:
            task_successes += ev["type"] == "TaskSucceeded"
            throttled += ev.get("taskFailedEventDetails", {}).get("error") == THROTTLED
            d = ev.get("taskScheduledEventDetails")
            if d:
                tokens[json.loads(d["parameters"])["Payload"]["TaskToken"]] = e
            if ev["type"] in ("TaskSucceeded", "TaskFailed"):
                done = ev["timestamp"].timestamp()
                last_end = max(last_end, done)
                out = ev.get("taskSucceededEventDetails", {}).get("output")
                pods = list((json.loads(out).get("logs") or {}).get("pods", {})) if out else []
                if pods and pods[0] in pod_ends:
                    kind = "poller" if pods[0].startswith(f"{prefix}l-") else "inline"
                    latency[kind].append(done - pod_ends[pods[0]])
                    # Where the time went: the Job controller marking the Job Complete
                    # (its completionTime, to the second), then the worker.
                    complete = completed.get(pods[0].rsplit("-", 1)[0])
                    if complete is not None:
                        split[kind]["job_controller"].append(max(0.0, complete - pod_ends[pods[0]]))
                        split[kind]["worker"].append(max(0.0, done - complete))
    # Answers by attempt: every SendTask* call that reached Step Functions.
    attempts = collections.Counter()
    injected_answers = 0
    for call in proxy("/__calls")["calls"]:
        if call["token"] in tokens and call["target"] in ("AWSStepFunctions.SendTaskSuccess", "AWSStepFunctions.SendTaskFailure"):
            if call["injected"]:
                injected_answers += 1
            else:
                attempts[call["token"]] += 1
    # Jobs by the task's label.
    by_task = collections.Counter(j["metadata"].get("labels", {}).get(TASK_LABEL) for j in ours)
    running = [j["metadata"]["name"] for j in ours
               if not any(c["type"] in ("Complete", "Failed") and c["status"] == "True" for c in j.get("status", {}).get("conditions", []))]
    schedules = [s["Name"] for page in scheduler.get_paginator("list_schedules").paginate(GroupName=world["schedule_group"])
                 for s in page["Schedules"]]
    # AWS calls per Job, by service (the platform's journal), and Lambda's bill.
    by_service = collections.Counter()
    for line in open(journal):
        c = json.loads(line)
        by_service[c.get("service") or "?"] += 1
    inv_by_fn, gb_seconds, inv_errors = collections.Counter(), collections.Counter(), collections.Counter()
    # run-job's GB-seconds by what the invocation did: a short Job answered inline, a long
    # one handed to the poller.
    by_outcome, outcomes = collections.Counter(), collections.Counter()
    for line in open(invocations):
        i = json.loads(line)
        inv_by_fn[i["function"]] += 1
        if i["error"]:
            inv_errors[f"{i['function']} {i['error']}"] += 1
        if i["started"]:
            gb = (i["ended"] - i["started"]) * i["memory_mb"] / 1024
            gb_seconds[i["function"]] += gb
            if i["function"] == "run-job":
                by_outcome[i.get("outcome") or i["error"] or "?"] += gb
                outcomes[i.get("outcome") or i["error"] or "?"] += 1
    stats = proxy("/__stats")["kube"]
    n = args.jobs
    kube_requests = sum(stats["requests"].values())
    # A throttled attempt's token was never the worker's: no answer, no Job is owed.
    owed = len(tokens) - throttled
    zero = {
        "lost": n - task_successes,
        "executions_not_succeeded": len(executions) - statuses.get("SUCCEEDED", 0),
        "duplicate_answers": sum(max(0, attempts[t] - 1) for t in tokens),
        "unanswered_tasks": sum(1 for t in tokens if attempts[t] == 0) - throttled,
        "duplicate_jobs": sum(c - 1 for c in by_task.values() if c > 1),
        "tasks_without_a_job": owed - len([t for t in by_task if t]),
        "jobs_left_running": len(running),
        "schedules_left": len(schedules),
    }
    return {
        "jobs": n, "long_jobs": 0 if args.map else int(round(n * args.long_share)), "statuses": dict(statuses),
        "map_max_concurrency": args.map or None, "run_job_reserved_concurrency": args.reserved or None,
        "task_attempts": len(tokens), "throttled_attempts": throttled,
        "zero_counts": zero,
        "callback_latency_seconds": {k: percentiles(v) for k, v in latency.items()},
        "callback_latency_split_seconds": {k: {part: percentiles(v) for part, v in parts_.items()} for k, parts_ in split.items()},
        "wall_seconds": round(wall, 1),
        "tasks_per_minute": round(n / max(1e-9, last_end - started) * 60, 1),
        "kube_requests_per_job": round(kube_requests / n, 2),
        "kube_requests_by_method": stats["requests"], "watches_open_at_most": stats["watches_max"],
        "kube_requests_injected": stats["injected"],
        "aws_calls_per_job_by_service": {k: round(v / n, 2) for k, v in sorted(by_service.items())},
        "answers_injected": injected_answers,
        "lambda_invocations_per_job": {k: round(v / n, 3) for k, v in sorted(inv_by_fn.items())},
        "lambda_invocation_errors": dict(inv_errors),
        "lambda_gb_seconds_per_job": {k: round(v / n, 4) for k, v in sorted(gb_seconds.items())},
        "run_job_gb_seconds_per_invocation_by_outcome": {k: round(v / outcomes[k], 3) for k, v in sorted(by_outcome.items())},
        "run_job_invocations_by_outcome": dict(outcomes),
        "schedules_left": schedules[:10],
        "jobs_left_running": running[:10],
    }


def ours_(job_, prefix):
    """Whether the Job is one of this run's."""
    return job_["metadata"]["name"].startswith((f"{prefix}s-", f"{prefix}l-"))


def clean_up(kube, world, prefix):
    _, jobs = kube.call("GET", f"/apis/batch/v1/namespaces/{world['namespace']}/jobs?limit=5000")
    for j in jobs.get("items", []):
        if ours_(j, prefix):
            kube.call("DELETE", f"/apis/batch/v1/namespaces/{world['namespace']}/jobs/{j['metadata']['name']}?propagationPolicy=Background")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--world", required=True)
    p.add_argument("--bin", required=True)
    p.add_argument("--jobs", type=int, default=200)
    p.add_argument("--long-share", type=float, default=0.25)
    p.add_argument("--short-seconds", type=int, default=3)
    p.add_argument("--long-seconds", type=int, default=20)
    p.add_argument("--log-bytes", type=int, default=4096)
    p.add_argument("--fault-rate", type=float, default=0.0, help="the share of requests failed at random (0.02: 2 %%)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--timeout", type=int, default=900, help="seconds to wait for every execution's end")
    p.add_argument("--runs", default="clean,faults", help="clean, faults (at --fault-rate, default 0.02 then)")
    p.add_argument("--map", type=int, default=0, help="M: the Jobs as one Map state's items, MaxConcurrency M")
    p.add_argument("--reserved", type=int, default=0, help="R: run-job's reserved concurrency (0: unreserved)")
    p.add_argument("--unsized", action="store_true", help="functions on whole cores, no memory limit (the old figures)")
    args = p.parse_args()
    world = json.load(open(args.world))
    world_dir = os.path.dirname(os.path.abspath(args.world))
    figures = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"), "cpus": os.cpu_count(),
               "bin": args.bin}
    failed = False
    for label in args.runs.split(","):
        rate = args.fault_rate if label == "clean" else (args.fault_rate or 0.02)
        run_args = argparse.Namespace(**{**vars(args), "fault_rate": 0.0 if label == "clean" else rate})
        figures[label] = run(run_args, world, world_dir, label)
        bad = {k: v for k, v in figures[label]["zero_counts"].items() if v}
        say(f"{label}: {'zero counts hold' if not bad else f'NOT ZERO: {bad}'}")
        failed = failed or bool(bad)
    print(json.dumps(figures, indent=2))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
