"""The figures of BENCHMARKS.md (make bench): P1 callback latency, P3 cold start and
memory, P4 logs at scale, and binary sizes. Needs the local world, the release
binaries (target/release) and, for P1, the local Lambda platform running them.

Every process runs as Lambda would size it (`--memory`, default run-job's MemorySize in
template.yaml, `FunctionMemorySize`'s default:
a CPU share of MemorySize / 1,769 of a core and a memory limit, with the platform's
cgroups, scripts/local-lambda/sizing.py); `--unsized` runs them on whole cores, as the
figures before sizing were made.

Usage: bench.py --world .local-world/world.json --bin target/release [--p1-jobs 20] [--p4-pods 100]
       [--memory MB | --unsized]
Prints a JSON document of every figure with its median and spread on stdout, and its
progress on stderr.
"""
import argparse
import datetime
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "local-lambda"))
from lambda_platform import template_functions  # noqa: E402
from sizing import Sizing  # noqa: E402

# The command prefix that places a measured process in cgroups of Lambda's size (main
# sets it; empty: unsized).
PLACE = []
# The MemorySize the measured processes run at (--memory).
MEMORY_MB = None


def say(message):
    """Progress, on stderr (stdout is the figures' JSON)."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class QuietServer(ThreadingHTTPServer):
    """A Runtime API whose client may be killed mid-request (the benchmark ends each
    cold-started process so): a connection it drops is expected, not an error to print;
    any other error still is."""

    daemon_threads = True

    def handle_error(self, request, client_address):
        if isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
            return
        super().handle_error(request, client_address)


def summary(values):
    values = sorted(values)
    if not values:
        return {}
    p95 = values[min(len(values) - 1, int(round(0.95 * (len(values) - 1))))]
    return {"n": len(values), "median": round(statistics.median(values), 4), "p95": round(p95, 4), "min": round(values[0], 4), "max": round(values[-1], 4)}


def clients(world):
    kw = dict(endpoint_url=world["aws_endpoint"], region_name=world["region"],
              aws_access_key_id=world["worker"]["access_key_id"], aws_secret_access_key=world["worker"]["secret_access_key"])
    return boto3.client("stepfunctions", **kw)


def worker_env(world):
    return dict(os.environ, AWS_ENDPOINT_URL=world["aws_endpoint"], AWS_REGION=world["region"],
                AWS_ACCESS_KEY_ID=world["worker"]["access_key_id"], AWS_SECRET_ACCESS_KEY=world["worker"]["secret_access_key"])


def job(name, annotations, containers=("main",), completions=1):
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"generateName": f"{name}-"},
            "spec": {"backoffLimit": 0, "completions": completions, "parallelism": completions,
                     "template": {"metadata": {"annotations": annotations},
                                  "spec": {"restartPolicy": "Never", "containers": [{"name": c, "image": "busybox:1.36"} for c in containers]}}}}


def waiting_machine(sfn, world, name):
    definition = {"StartAt": "Run", "States": {"Run": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken",
                  "HeartbeatSeconds": 600,
                  "Parameters": {"FunctionName": world["functions"]["run-job"], "Payload": {"TaskToken.$": "$$.Task.Token", "Job.$": "$.Job",
                                 "ClusterName": world["cluster"], "Namespace": world["namespace"], "LogOptions": {"RetrieveLogs": True}}}, "End": True}}}
    return sfn.create_state_machine(name=name, definition=json.dumps(definition), roleArn=world["states_role"])["stateMachineArn"]


def wait_end(sfn, execution, timeout=600):
    end = time.time() + timeout
    while time.time() < end:
        d = sfn.describe_execution(executionArn=execution)
        if d["status"] != "RUNNING":
            return d
        time.sleep(0.2)
    raise SystemExit(f"{execution} still RUNNING")


def podsim_times(world_dir):
    """Pod -> the time the pod simulator marked it Succeeded/Failed (ms precision)."""
    out = {}
    for line in open(os.path.join(world_dir, "logs/podsim.log")):
        m = re.match(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) podsim INFO pod [^/]+/(\S+) (Succeeded|Failed)", line)
        if m:
            out[m.group(2)] = datetime.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
    return out


def p1_callback_latency(world, world_dir, jobs):
    """From the pod's end (the simulator marks it Succeeded) to SendTaskSuccess at moto."""
    sfn = clients(world)
    machine = waiting_machine(sfn, world, f"bench-p1-{int(time.time())}")
    latencies = []
    for i in range(jobs):
        ex = sfn.start_execution(stateMachineArn=machine, name=f"p1-{i}-{int(time.time())}",
                                 input=json.dumps({"Job": job("p1", {"sim.eks-task-worker.io/run-seconds": "1"})}))["executionArn"]
        d = wait_end(sfn, ex, 120)
        assert d["status"] == "SUCCEEDED", d
        pod = next(iter(json.loads(d["output"])["logs"]["pods"]))
        done = next(e["timestamp"].timestamp() for e in sfn.get_execution_history(executionArn=ex)["events"] if e["type"] == "TaskSucceeded")
        time.sleep(0.3)
        latencies.append(done - podsim_times(world_dir)[pod])
    return {"seconds": summary(latencies)}


def p2_poll_cost(world, world_dir, seconds):
    """A Job handed to the poller (InlineWaitSeconds 1) that runs `seconds`, polled on a
    compressed curve by the release poller on the local Lambda platform: the duration
    of each poller invocation, from the platform's invoke to the function's response."""
    sfn = clients(world)
    definition = {"StartAt": "Run", "States": {"Run": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken", "HeartbeatSeconds": 600,
                  "Parameters": {"FunctionName": world["functions"]["run-job"], "Payload": {"TaskToken.$": "$$.Task.Token", "InlineWaitSeconds": 1,
                                 "ClusterName": world["cluster"], "Namespace": world["namespace"],
                                 "Job": job("p2", {"sim.eks-task-worker.io/run-seconds": str(seconds)})}}, "End": True}}}
    machine = sfn.create_state_machine(name=f"bench-p2-{int(time.time())}", definition=json.dumps(definition), roleArn=world["states_role"])["stateMachineArn"]
    ex = sfn.start_execution(stateMachineArn=machine, name=f"p2-{int(time.time())}", input="{}")["executionArn"]
    d = wait_end(sfn, ex, seconds + 60)
    assert d["status"] == "SUCCEEDED", d
    starts, durations = {}, []
    for line in open(os.path.join(world_dir, "logs/lambda-platform.log")):
        m = re.match(r"(\S+ \S+) lambda-platform (invoke|result) poller (\S+)", line)
        if not m:
            continue
        t = datetime.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
        if m.group(2) == "invoke":
            starts[m.group(3).rstrip(":")] = t
        elif m.group(3).rstrip(":") in starts:
            durations.append((t - starts[m.group(3).rstrip(":")]) * 1000)
    return {"polls": len(durations), "poller_invocation_ms": summary(durations),
            "calls_per_poll": "4: GET the Job, list its pods, SendTaskHeartbeat, CreateSchedule (5 while it has no pods or is held: its Warning events)"}


def inline_window(world, world_dir, invocations):
    """The template's inline window (no InlineWaitSeconds in the payload), both sides of
    it at once: a Job of 45 s, answered inline (its latency from the pod's end to
    SendTaskSuccess, as P1), and a Job of 75 s, handed to the poller when the window
    closes (run-job's billed duration, the invocation's start to its end in the
    platform's invocation log: what a long Job pays for the window)."""
    sfn = clients(world)
    machine = waiting_machine(sfn, world, f"bench-window-{int(time.time())}")
    started = {}
    for seconds in (45, 75):
        started[seconds] = sfn.start_execution(stateMachineArn=machine, name=f"window-{seconds}-{int(time.time())}",
                                               input=json.dumps({"Job": job(f"window{seconds}", {"sim.eks-task-worker.io/run-seconds": str(seconds)})}))["executionArn"]
    ended = {seconds: wait_end(sfn, ex, seconds + 120) for seconds, ex in started.items()}
    for d in ended.values():
        assert d["status"] == "SUCCEEDED", d
    pod = next(iter(json.loads(ended[45]["output"])["logs"]["pods"]))
    done = next(e["timestamp"].timestamp() for e in sfn.get_execution_history(executionArn=started[45])["events"] if e["type"] == "TaskSucceeded")
    time.sleep(0.3)
    runs = [json.loads(line) for line in open(invocations)]
    run_job = [r for r in runs if r["function"] == "run-job"]
    outcomes = sorted((r["outcome"], round((r["ended"] - r["started"]) * 1000)) for r in run_job)
    handed = [ms for outcome, ms in outcomes if outcome == "handedOff"]
    assert len(run_job) == 2 and len(handed) == 1, outcomes
    return {"answered_inline_45s_latency_s": round(done - podsim_times(world_dir)[pod], 3),
            "handed_off_75s_run_job_ms": handed[0], "memory_mb": run_job[0]["memory_mb"],
            "run_job_invocations": outcomes,
            "polls": sum(1 for r in runs if r["function"] == "poller")}


def p3_cold_start(world, binary, runs):
    """exec of the release bootstrap -> its first GET /runtime/invocation/next, then
    -> its response to a run-job request (request/response: the created Job)."""
    first_next, first_response, idle_rss, peak_rss = [], [], [], []
    payload = {"ClusterName": world["cluster"], "Namespace": world["namespace"], "Job": job("p3", {})}
    for _ in range(runs):
        marks, served = {}, threading.Event()

        class Api(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_GET(self):
                if "next" not in marks:
                    marks["next"] = time.perf_counter()
                    body = json.dumps(payload).encode()
                    self.send_response(200)
                    for k, v in {"Lambda-Runtime-Aws-Request-Id": "bench", "Lambda-Runtime-Deadline-Ms": str(int((time.time() + 60) * 1000)),
                                 "Lambda-Runtime-Invoked-Function-Arn": world["functions"]["run-job"], "Content-Length": str(len(body))}.items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(body)
                else:
                    served.wait(30)
                    self.send_response(500)
                    self.send_header("Content-Length", "0")
                    self.end_headers()

            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                marks["response"] = time.perf_counter()
                self.send_response(202)
                self.send_header("Content-Length", "0")
                self.end_headers()
                served.set()

        server = QuietServer(("127.0.0.1", 0), Api)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        env = dict(worker_env(world), AWS_LAMBDA_RUNTIME_API=f"127.0.0.1:{server.server_address[1]}", AWS_LAMBDA_FUNCTION_NAME="run-job",
                   AWS_LAMBDA_FUNCTION_MEMORY_SIZE=str(MEMORY_MB), AWS_LAMBDA_FUNCTION_VERSION="$LATEST")
        t0 = time.perf_counter()
        p = subprocess.Popen(PLACE + [binary], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while "next" not in marks and p.poll() is None:
            time.sleep(0.0005)
        idle_rss.append(rss(p.pid, "VmRSS"))
        served.wait(30)
        peak_rss.append(rss(p.pid, "VmHWM"))
        p.kill()
        p.wait()
        server.shutdown()
        first_next.append((marks["next"] - t0) * 1000)
        first_response.append((marks["response"] - t0) * 1000)
    return {"to_first_next_ms": summary(first_next), "to_first_response_ms": summary(first_response),
            "idle_rss_mb": summary(idle_rss), "peak_rss_mb": summary(peak_rss)}


def rss(pid, field):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def run_handler(world, cli, name, payload):
    """Runs the run-job handler (the command line runs the Lambda's code) under
    /usr/bin/time -v for a callback-pattern task of a waiting moto execution: `payload`
    gets the task token. Returns (execution description, peak RSS MB, wall seconds, report)."""
    sfn = clients(world)
    machine = waiting_machine(sfn, world, f"bench-{name}-{int(time.time())}")
    ex = sfn.start_execution(stateMachineArn=machine, name=f"{name}-{int(time.time())}", input=json.dumps({"Job": {}}))["executionArn"]
    for _ in range(100):
        h = sfn.get_execution_history(executionArn=ex)["events"]
        sched = [e for e in h if e["type"] == "TaskScheduled"]
        if sched:
            break
        time.sleep(0.1)
    payload = dict(payload, TaskToken=json.loads(sched[0]["taskScheduledEventDetails"]["parameters"])["Payload"]["TaskToken"])
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(payload, f)
    t0, started = time.perf_counter(), time.time()
    env = dict(worker_env(world), AWS_LAMBDA_LOG_FORMAT="JSON")
    out = subprocess.run(PLACE + ["/usr/bin/time", "-v", cli, "invoke", "run-job", "--payload", f.name], env=env,
                         capture_output=True, text=True)
    wall = time.perf_counter() - t0
    peak = re.search(r"Maximum resident set size \(kbytes\): (\d+)", out.stderr)
    if out.returncode not in (0, 1) or peak is None:
        raise SystemExit(f"{name}: the handler failed ({out.returncode}):\n{out.stderr[-2000:]}")
    phases = {"started_at": started, "log_phase_seconds": log_phase(out.stderr)}
    try:
        ended = wait_end(sfn, ex, 60)
    except SystemExit:
        # The handler ended without answering: what it said is the reason.
        print(out.stderr[-2000:], file=sys.stderr)
        raise
    return ended, round(int(peak.group(1)) / 1024, 1), round(wall, 2), out.stdout.strip()[:200], phases


def log_phase(stderr):
    """Seconds of the handler's log phase, from its `"log phase"` line (`millis`; the
    functions' JSON lines carry no time of their own: Lambda adds it)."""
    for line in stderr.splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        fields = event.get("fields", {}) if isinstance(event, dict) else {}
        if fields.get("message") == "log phase":
            return round(fields["millis"] / 1000, 3)
    return None


def p4_logs_at_scale(world, world_dir, cli, pods, megabytes):
    """A Job of `pods` pods x 2 containers x `megabytes` MB of log each, answered by the
    real handler under /usr/bin/time -v."""
    payload = {"ClusterName": world["cluster"], "Namespace": world["namespace"], "LogOptions": {"RetrieveLogs": True},
               "Job": job("p4", {"sim.eks-task-worker.io/log-bytes": str(megabytes * 1_000_000), "sim.eks-task-worker.io/run-seconds": "1"},
                          ("main", "sidecar"), pods)}
    served_before = open(os.path.join(world_dir, "logs/podsim.log")).read().count("log served")
    d, peak, wall, report, phase = run_handler(world, cli, "p4", payload)
    lines = open(os.path.join(world_dir, "logs/podsim.log")).read().split("\n")
    served = [l for l in lines if "log served" in l][served_before:]
    read = sum(int(re.search(r"(\d+) bytes", l).group(1)) for l in served if "/p4-" in l)
    # The whole time, accounted for: until the simulator ended the Job's last pod (the
    # Job created, its pods bound, run for a second and ended: the pod simulator's log,
    # to the millisecond), the log phase, and the rest (the Job controller marking the
    # Job Complete, the watch event, the answer, the process's exit).
    started = phase.pop("started_at")
    ends = [t for p_, t in podsim_times(world_dir).items() if p_.startswith("p4-") and t >= started]
    if ends and phase["log_phase_seconds"] is not None:
        phase["until_the_last_pod_ended_seconds"] = round(max(ends) - started, 3)
        phase["rest_seconds"] = round(wall - phase["until_the_last_pod_ended_seconds"] - phase["log_phase_seconds"], 3)
    return {"status": d["status"], "result_bytes": len(d.get("output", "")), "log_bytes_total": pods * 2 * megabytes * 1_000_000,
            "bytes_read_from_api_server": read, "peak_rss_mb": peak, "wall_seconds": wall, "phases": phase,
            "handler_report": report}


def archive(world, cli, megabytes):
    """One container logging `megabytes` MB, archived whole to moto's S3 (LogOptions
    ArchiveUri) while the result keeps its tail: the handler's peak RSS."""
    payload = {"ClusterName": world["cluster"], "Namespace": world["namespace"],
               "LogOptions": {"RetrieveLogs": True, "ArchiveUri": f"s3://{world['log_bucket']}/bench"},
               "Job": job("archive", {"sim.eks-task-worker.io/log-bytes": str(megabytes * 1_000_000)})}
    d, peak, wall, report, phase = run_handler(world, cli, "archive", payload)
    output = json.loads(d.get("output", "{}"))
    entries = [c.get("archive", {}) for p in output.get("logs", {}).get("pods", {}).values() for c in p["containers"].values()]
    return {"status": d["status"], "log_bytes": megabytes * 1_000_000, "archived_bytes": sum(e.get("bytes", 0) for e in entries),
            "result_bytes": len(d.get("output", "")), "peak_rss_mb": peak, "wall_seconds": wall,
            "log_phase_seconds": phase["log_phase_seconds"]}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--world", required=True)
    p.add_argument("--bin", required=True)
    p.add_argument("--p1-jobs", type=int, default=20)
    p.add_argument("--p3-runs", type=int, default=20)
    p.add_argument("--p4-pods", type=int, default=100)
    p.add_argument("--p4-mb", type=int, default=20)
    p.add_argument("--archive-mb", type=int, default=200)
    p.add_argument("--only", default="sizes,p3,archive,p4,p1,p2,window")
    p.add_argument("--memory", type=int, help="the MemorySize every measured process is sized at (default: run-job's in template.yaml)")
    p.add_argument("--unsized", action="store_true", help="whole cores and no memory limit (the figures before sizing)")
    args = p.parse_args()
    global PLACE, MEMORY_MB
    if args.memory is None:
        template = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "template.yaml")
        args.memory = template_functions(template)["run-job"]["memory"]
    MEMORY_MB = args.memory
    sizing = Sizing(not args.unsized)
    PLACE = sizing.prepare("bench", args.memory)
    world = json.load(open(args.world))
    world_dir = os.path.dirname(os.path.abspath(args.world))
    only = args.only.split(",")
    figures = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"), "cpus": os.cpu_count(),
               "sizing": dict(sizing.describe(), memory_mb=None if args.unsized else args.memory)}
    if "sizes" in only:
        say("binary sizes")
        figures["binary_sizes_mb"] = {n: round(os.path.getsize(os.path.join(args.bin, n)) / 1e6, 2)
                                      for n in ("run-job", "call", "poller", "activity", "cluster-ops", "cleanup") if os.path.exists(os.path.join(args.bin, n))}
        arm = {n: round(os.path.getsize(p_) / 1e6, 2) for n, p_ in ((n, f".aws-sam/build/{f}/bootstrap") for n, f in
               (("run-job", "RunJobFunction"), ("call", "CallFunction"), ("poller", "PollerFunction"))) if os.path.exists(p_)}
        if arm:
            figures["arm64_binary_sizes_mb"] = arm
    if "p3" in only:
        say(f"P3: {args.p3_runs} cold starts of the release run-job")
        figures["p3_cold_start"] = p3_cold_start(world, os.path.join(args.bin, "run-job"), args.p3_runs)
    if "archive" in only:
        say(f"archive: one container's {args.archive_mb} MB log to S3")
        figures["archive_200mb"] = archive(world, os.path.join(args.bin, "eks-task-worker"), args.archive_mb)
    if "p4" in only:  # before P1: the platform would take P4's task too
        say(f"P4: {args.p4_pods} pods x 2 containers x {args.p4_mb} MB of log")
        figures["p4_logs_at_scale"] = p4_logs_at_scale(world, world_dir, os.path.join(args.bin, "eks-task-worker"), args.p4_pods, args.p4_mb)
    if "p1" in only or "p2" in only or "window" in only:
        # P1 and P2 run through the local Lambda platform, on the release binaries.
        here = os.path.dirname(os.path.abspath(__file__))
        sized = ["--unsized"] if args.unsized else [a for f in ("run-job", "poller") for a in ("--memory", f"{f}={args.memory}")]
        invocations = os.path.join(world_dir, "logs", "bench-invocations.jsonl")
        if os.path.exists(invocations):
            os.remove(invocations)
        subprocess.run([os.path.join(here, "../local-lambda/up.sh"), "--concurrency", "2", "--env", "POLL_MIN_SECONDS=1",
                        "--env", "POLL_CURVE_SECONDS=2", "--invocations", invocations, *sized], check=True, stdout=sys.stderr,
                       env=dict(os.environ, LAMBDA_BIN_DIR=os.path.abspath(args.bin)))
        try:
            if "p1" in only:
                say(f"P1: {args.p1_jobs} short Jobs through the local Lambda platform")
                figures["p1_callback_latency"] = p1_callback_latency(world, world_dir, args.p1_jobs)
            if "p2" in only:
                say("P2: a 20 s Job through the poller")
                figures["p2_poll_cost"] = p2_poll_cost(world, world_dir, 20)
            if "window" in only:
                say("window: a 45 s and a 75 s Job with the template's inline window")
                if os.path.exists(invocations):
                    os.remove(invocations)
                figures["inline_window"] = inline_window(world, world_dir, invocations)
        finally:
            subprocess.run([os.path.join(here, "../local-lambda/down.sh")], check=False, stdout=sys.stderr)
    sizing.remove()
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
