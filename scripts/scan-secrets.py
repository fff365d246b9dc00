"""The last step of `make test`: every line every function wrote in the whole run (the
local Lambda platform's logs, `.local-world/logs/lambda/*.log`, every test binary's)
is JSON and holds no secret: no task token of any execution the run made (read from
moto's Step Functions, every page), no secret key of the world's identities, no
session token (moto's assumed-role tokens, by their fixed prefix, and the header that
carries one), no bearer token and no presigned signature. Exits 1 naming each finding,
and when there was nothing to scan.

Usage: scan-secrets.py --world world.json --logs DIR
"""
import argparse
import json
import os
import sys

import boto3

# moto's session tokens (moto/sts/utils.py SESSION_TOKEN_PREFIX), as AWS's begin with a
# fixed prefix too: an assumed role's credentials would show by it.
MOTO_SESSION_TOKEN_PREFIX = "FQoGZXIvYXdzEBYaD"
PATTERNS = {
    "bearer token": "k8s-aws-v1.",
    "presigned signature": "X-Amz-Signature",
    "session token header": "X-Amz-Security-Token",
    "session token": MOTO_SESSION_TOKEN_PREFIX,
}


def task_tokens(world):
    sfn = boto3.client("stepfunctions", endpoint_url=world["aws_endpoint"], region_name=world["region"],
                       aws_access_key_id=world["worker"]["access_key_id"],
                       aws_secret_access_key=world["worker"]["secret_access_key"])
    tokens = set()
    for machines in sfn.get_paginator("list_state_machines").paginate():
        for machine in machines["stateMachines"]:
            for executions in sfn.get_paginator("list_executions").paginate(stateMachineArn=machine["stateMachineArn"]):
                for execution in executions["executions"]:
                    for page in sfn.get_paginator("get_execution_history").paginate(
                            executionArn=execution["executionArn"]):
                        for event in page["events"]:
                            details = event.get("taskScheduledEventDetails")
                            if not details:
                                continue
                            try:
                                token = json.loads(details["parameters"]).get("Payload", {}).get("TaskToken")
                            except (ValueError, AttributeError):
                                token = None
                            if isinstance(token, str) and token:
                                tokens.add(token)
    return tokens


def secret_keys(world):
    keys = {}
    for who, facts in world.items():
        if isinstance(facts, dict) and facts.get("secret_access_key"):
            keys[f"secret key of {who}"] = facts["secret_access_key"]
    return keys


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--world", required=True)
    p.add_argument("--logs", required=True)
    args = p.parse_args()
    world = json.load(open(args.world))
    secrets = dict(PATTERNS)
    secrets.update(secret_keys(world))
    tokens = task_tokens(world)
    findings, lines, files = [], 0, 0
    for name in sorted(os.listdir(args.logs)):
        if not name.endswith(".log"):
            continue
        files += 1
        with open(os.path.join(args.logs, name), encoding="utf-8", errors="replace") as f:
            for number, line in enumerate(f, 1):
                line = line.rstrip("\n")
                if not line:
                    continue
                lines += 1
                try:
                    json.loads(line)
                except ValueError:
                    findings.append(f"{name}:{number}: not a JSON line: {line[:200]}")
                for what, secret in secrets.items():
                    if secret in line:
                        findings.append(f"{name}:{number}: a {what}")
                for token in tokens:
                    if token in line:
                        findings.append(f"{name}:{number}: a task token")
    if lines == 0 or not tokens:
        findings.append(f"nothing to scan: {lines} lines in {files} files, {len(tokens)} task tokens")
    for f in findings[:50]:
        print(f"[scan-secrets] {f}", file=sys.stderr)
    verdict = "RED" if findings else "no secret"
    print(f"== secret scan: {lines} lines of {files} function logs against {len(tokens)} task tokens, "
          f"{len(secrets)} secrets and patterns: {verdict}" + (f" ({len(findings)} findings)" if findings else ""))
    sys.exit(1 if findings else 0)


if __name__ == "__main__":
    main()
