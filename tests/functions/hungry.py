"""A Lambda function of the platform's own tests (not the worker's): it holds memory,
burns CPU or waits as its payload asks, then answers its task.

Payload: {"TaskToken": "...", "allocate_mb": N, "burn_cpu_ms": M, "sleep_s": S}. It
touches N MiB (so they count against its memory limit), spends M ms of CPU, sleeps S
seconds, then sends SendTaskSuccess with {"allocated_mb", "cpu_ms", "wall_ms"}: what it
used and how long that took on the clock. It speaks Lambda's Runtime API itself, as a
custom runtime does, so the platform runs it as it runs the worker's binaries.
"""
import json
import os
import time
import urllib.request

import boto3

API = f"http://{os.environ['AWS_LAMBDA_RUNTIME_API']}/2018-06-01/runtime/invocation"
sfn = boto3.client("stepfunctions")

while True:
    with urllib.request.urlopen(f"{API}/next") as r:
        request_id = r.headers["Lambda-Runtime-Aws-Request-Id"]
        event = json.loads(r.read())
    started, cpu_started = time.monotonic(), time.process_time()
    held = b"\x01" * (int(event.get("allocate_mb", 0)) << 20)
    while (time.process_time() - cpu_started) * 1000 < float(event.get("burn_cpu_ms", 0)):
        pass
    cpu_ms = (time.process_time() - cpu_started) * 1000
    wall_ms = (time.monotonic() - started) * 1000
    time.sleep(float(event.get("sleep_s", 0)))
    output = {"allocated_mb": len(held) >> 20, "cpu_ms": round(cpu_ms), "wall_ms": round(wall_ms)}
    del held
    sfn.send_task_success(taskToken=event["TaskToken"], output=json.dumps(output))
    urllib.request.urlopen(urllib.request.Request(f"{API}/{request_id}/response", data=json.dumps(output).encode(),
                                                  method="POST")).read()
