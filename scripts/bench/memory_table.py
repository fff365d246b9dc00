"""The memory table of BENCHMARKS.md, as aws-lambda-power-tuning would make it: each
function's work that matters, run at 128, 256, 512, 1,024 and 1,769 MB (Lambda's CPU
share and memory limit at each, made by the local Lambda platform's cgroups), against
its duration and its cost per invocation.

The work, through the release binaries on the local Lambda platform (the invocation
log's duration: from a process taking the invocation to its answer, what Lambda bills):

- run-job answering a short Job inline (a 1 s Job, its logs; mostly waiting on the Job);
- a poll (the poller following a 12 s Job handed off after 1 s, curve 2 s);
- a cluster operation (cluster-ops: createCluster, then deleteCluster, both `.sync`).
  The local EKS makes a cluster ACTIVE at once, so cluster-ops' inline follow answers
  and no cluster poll is made: a cluster poll is one step of that follow (a
  DescribeCluster, a heartbeat, the next schedule), so this bounds it from above;
- a cleanup sweep (the cleanup function fired as its schedule fires it, dry run);

and run-job's log phase at P4's size (100 pods x 2 containers x 20 MB), the release
handler under the same cgroups (bench.py's P4).

Cost: arm64 Lambda in us-east-1, $0.0000133334 per GB-second and $0.20 per million
requests (the template's architecture), duration rounded up to the millisecond.

Usage: memory_table.py --world .local-world/world.json --bin target/release [--sizes 128,256,512,1024,1769]
       [--short-jobs 5] [--p4-pods 100]
Prints the table as JSON on stdout, progress on stderr.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import boto3

import bench

HERE = os.path.dirname(os.path.abspath(__file__))
GB_SECOND = 0.0000133334
REQUEST = 0.0000002
FUNCTIONS = ("run-job", "poller", "cluster-ops", "cleanup")


def say(message):
    print(f"[memory-table {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def cost(ms, memory_mb):
    """One invocation's price: its duration (ms, rounded up) at `memory_mb`, and the request."""
    return round(-(-ms // 1) / 1000 * memory_mb / 1024 * GB_SECOND + REQUEST, 9)


def durations(invocations, function, since):
    """The billed durations (ms) of `function`'s invocations that ended after `since`."""
    out = []
    for line in open(invocations):
        i = json.loads(line)
        if i["function"] == function and i["started"] and i["ended"] >= since and not i["error"]:
            out.append((i["ended"] - i["started"]) * 1000)
    return out


def fire(world, function, payload):
    """Fires `function` once, as its Scheduler schedule does."""
    scheduler = boto3.client("scheduler", endpoint_url=world["aws_endpoint"], region_name=world["region"],
                             aws_access_key_id=world["worker"]["access_key_id"],
                             aws_secret_access_key=world["worker"]["secret_access_key"])
    at = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
    scheduler.create_schedule(Name=f"memtable-{function}-{int(time.time() * 1000)}", ScheduleExpression=f"at({at})",
                              FlexibleTimeWindow={"Mode": "OFF"}, ActionAfterCompletion="DELETE",
                              Target={"Arn": world["functions"][function], "RoleArn": world["scheduler_role"],
                                      "Input": json.dumps(payload)})


def task(world, function, payload, name):
    """A one-task machine invoking `function` with `payload` (and its token), run to its end."""
    sfn = bench.clients(world)
    definition = {"StartAt": "Run", "States": {"Run": {
        "Type": "Task", "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken", "HeartbeatSeconds": 600,
        "Parameters": {"FunctionName": world["functions"][function], "Payload": dict(payload, **{"TaskToken.$": "$$.Task.Token"})},
        "End": True}}}
    stamp = int(time.time() * 1000)
    machine = sfn.create_state_machine(name=f"{name}-{stamp}", definition=json.dumps(definition),
                                       roleArn=world["states_role"])["stateMachineArn"]
    ex = sfn.start_execution(stateMachineArn=machine, name=f"{name}-{stamp}", input="{}")["executionArn"]
    d = bench.wait_end(sfn, ex, 180)
    if d["status"] != "SUCCEEDED":
        raise SystemExit(f"{name}: {d['status']} {d.get('error')} {d.get('cause', '')[:500]}")
    return d


def one_size(args, world, world_dir, memory):
    invocations = os.path.join(world_dir, "logs", f"memory-table-{memory}.jsonl")
    if os.path.exists(invocations):
        os.remove(invocations)
    sized = [a for f in FUNCTIONS for a in ("--memory", f"{f}={memory}")]
    subprocess.run([os.path.join(HERE, "../local-lambda/down.sh")], check=False, stdout=subprocess.DEVNULL)
    subprocess.run([os.path.join(HERE, "../local-lambda/up.sh"), "--concurrency", "1", "--functions", ",".join(FUNCTIONS),
                    "--invocations", invocations, "--env", "POLL_MIN_SECONDS=1", "--env", "POLL_CURVE_SECONDS=2", *sized],
                   check=True, stdout=subprocess.DEVNULL, env=dict(os.environ, LAMBDA_BIN_DIR=os.path.abspath(args.bin)))
    row = {"memory_mb": memory, "cpu_share_of_a_core": round(memory / 1769, 3),
           # How the platform sized the functions, as it says (unsized: the row is not one).
           "platform_sizing": json.load(open(os.path.join(world_dir, "lambda.json"))).get("sizing")}
    try:
        # Every process has started (cold); what follows is warm work.
        start = time.time()
        say(f"{memory} MB: {args.short_jobs} short Jobs answered inline")
        for i in range(args.short_jobs):
            task(world, "run-job", {"ClusterName": world["cluster"], "Namespace": world["namespace"],
                                    "LogOptions": {"RetrieveLogs": True},
                                    "Job": bench.job("mt", {"sim.eks-task-worker.io/run-seconds": "1"})}, f"mt-short-{memory}-{i}")
        row["run_job_inline_ms"] = durations(invocations, "run-job", start)
        say(f"{memory} MB: a 12 s Job through the poller")
        start = time.time()
        task(world, "run-job", {"ClusterName": world["cluster"], "Namespace": world["namespace"], "InlineWaitSeconds": 1,
                                "Job": bench.job("mt-poll", {"sim.eks-task-worker.io/run-seconds": "12"})}, f"mt-poll-{memory}")
        row["poll_ms"] = durations(invocations, "poller", start)
        say(f"{memory} MB: a cluster made and deleted (.sync)")
        start = time.time()
        name = f"mt-{memory}-{int(time.time())}"
        task(world, "cluster-ops", {"Operation": "createCluster", "Name": name, "RoleArn": f"arn:aws:iam::{world['account']}:role/eks-task-worker-cluster",
                                    "ResourcesVpcConfig": {"SubnetIds": ["subnet-a"]}}, f"mt-create-{memory}")
        task(world, "cluster-ops", {"Operation": "deleteCluster", "Name": name}, f"mt-delete-{memory}")
        row["cluster_op_ms"] = durations(invocations, "cluster-ops", start)
        say(f"{memory} MB: a cleanup sweep")
        start = time.time()
        fire(world, "cleanup", {})
        until = time.time() + 120
        while not durations(invocations, "cleanup", start) and time.time() < until:
            time.sleep(0.5)
        row["cleanup_sweep_ms"] = durations(invocations, "cleanup", start)
    finally:
        subprocess.run([os.path.join(HERE, "../local-lambda/down.sh")], check=False, stdout=subprocess.DEVNULL)
    say(f"{memory} MB: run-job's log phase at P4's size")
    sizing = bench.Sizing(True)
    bench.PLACE = sizing.prepare("memory-table", memory)
    try:
        p4 = bench.p4_logs_at_scale(world, world_dir, os.path.join(args.bin, "eks-task-worker"), args.p4_pods, 20)
    finally:
        sizing.remove()
    row["p4_log_phase_ms"] = [p4["phases"]["log_phase_seconds"] * 1000] if p4["phases"].get("log_phase_seconds") else []
    row["p4_peak_rss_mb"] = p4["peak_rss_mb"]
    row["p4_status"] = p4["status"]
    for key in [k for k in row if k.endswith("_ms")]:
        values = row[key]
        median = statistics.median(values) if values else None
        row[key] = {"n": len(values), "median_ms": round(median, 1) if median is not None else None,
                    "cost_per_invocation_usd": cost(median, memory) if median is not None else None}
    return row


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--world", required=True)
    p.add_argument("--bin", required=True)
    p.add_argument("--sizes", default="128,256,512,1024,1769")
    p.add_argument("--short-jobs", type=int, default=5)
    p.add_argument("--p4-pods", type=int, default=100)
    args = p.parse_args()
    world = json.load(open(args.world))
    world_dir = os.path.dirname(os.path.abspath(args.world))
    rows = [one_size(args, world, world_dir, int(m)) for m in args.sizes.split(",")]
    print(json.dumps({"date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "cpus": os.cpu_count(),
                      "price": {"gb_second_usd": GB_SECOND, "request_usd": REQUEST}, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
